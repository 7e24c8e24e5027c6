/**
 * The forward pass's FLOPs as the engine counts them (weight products and attention; norms and
 * element-wise work left out), shared by the engine's counter and the run's estimates so that the
 * two cannot drift apart.
 */
import type { ModelSpec } from "../formats/config.js";

/** Weights one token multiplies in a decoder block: q/k/v, o and the gated MLP. */
export function blockParams(spec: ModelSpec): number {
  const q = spec.numHeads * spec.headDim;
  const kv = spec.numKvHeads * spec.headDim;
  return spec.hiddenSize * (q + 2 * kv) + q * spec.hiddenSize + 3 * spec.hiddenSize * spec.intermediateSize;
}

/** One block over `rows` rows of T new positions attending to S keys: weights plus QKᵀ and PV. */
export function blockFlops(spec: ModelSpec, rows: number, T: number, S: number): number {
  return 2 * blockParams(spec) * rows * T + 4 * rows * spec.numHeads * T * S * spec.headDim;
}

/** The final block for the last position only: q/k/v for every position, the rest for one. */
export function lastTokenBlockFlops(spec: ModelSpec, rows: number, T: number, S: number): number {
  const qkv = spec.hiddenSize * (spec.numHeads + 2 * spec.numKvHeads) * spec.headDim;
  return 2 * qkv * rows * T + 2 * (blockParams(spec) - qkv) * rows + 4 * rows * spec.numHeads * S * spec.headDim;
}

/** Final norm and logits for `rows` positions. */
export function headFlops(spec: ModelSpec, rows: number): number {
  return 2 * rows * spec.hiddenSize * spec.vocabSize;
}
