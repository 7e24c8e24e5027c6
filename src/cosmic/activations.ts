/**
 * Activation statistics on the train sets (algorithm §1–2): float64 means of the block inputs at
 * the EOI positions −P…−1 of every layer, and of the last-token layer outputs in HF's
 * `hidden_states[1:]` convention (the last entry is after the final norm).
 */
import { Engine } from "../engine/engine.js";
import { capture } from "../engine/forward.js";

export interface SetMeans {
  count: number;
  positions: number;
  layers: number;
  width: number;
  /** [P, L, d]: mean block input at position −P+k, layer l */
  residPre: Float64Array;
  /** [L, d]: mean last-token output of block j (j = L−1: after the final norm) */
  layerOutputs: Float64Array;
}

export async function meanActivations(
  engine: Engine,
  prompts: number[][],
  positions: number,
  batchSize: number,
  onBatch?: (done: number, total: number) => void,
): Promise<SetMeans> {
  const L = engine.numLayers;
  const d = engine.spec.hiddenSize;
  const P = positions;
  const pre = new Float64Array(P * L * d);
  const out = new Float64Array(L * d);
  for (let start = 0; start < prompts.length; start += batchSize) {
    const chunk = prompts.slice(start, start + batchSize);
    const c = await capture(engine, chunk, { residPrePositions: P, residPost: true, finalHidden: true, batchSize });
    const rp = c.residPre!;
    const ro = c.residPost!;
    const fh = c.finalHidden!;
    for (let b = 0; b < chunk.length; b++) {
      for (let l = 0; l < L; l++) {
        for (let k = 0; k < P; k++) {
          const src = ((b * L + l) * P + k) * d;
          const dst = (k * L + l) * d;
          for (let i = 0; i < d; i++) pre[dst + i] += rp[src + i];
        }
        const src = l === L - 1 ? b * d : (b * L + l) * d;
        const arr = l === L - 1 ? fh : ro;
        for (let i = 0; i < d; i++) out[l * d + i] += arr[src + i];
      }
    }
    onBatch?.(Math.min(prompts.length, start + chunk.length), prompts.length);
  }
  const n = prompts.length;
  for (let i = 0; i < pre.length; i++) pre[i] /= n;
  for (let i = 0; i < out.length; i++) out[i] /= n;
  return { count: n, positions: P, layers: L, width: d, residPre: pre, layerOutputs: out };
}

/** r[p, l] = μ+[p, l] − μ−[p, l] (not normalised), as float32 [P, L, d]. */
export function candidateDirections(harmful: SetMeans, harmless: SetMeans): Float32Array {
  const r = new Float32Array(harmful.residPre.length);
  for (let i = 0; i < r.length; i++) r[i] = harmful.residPre[i] - harmless.residPre[i];
  return r;
}

/** The vector [d] at (position index k, layer l) of a [P, L, d] array. */
export function at<T extends Float32Array | Float64Array>(a: T, k: number, l: number, L: number, d: number): T {
  return a.subarray((k * L + l) * d, (k * L + l + 1) * d) as T;
}
