/** Rotary-embedding tables and attention masks, computed on the host as HF computes them. */
import { ModelSpec } from "../formats/config.js";

/** HF's inverse frequencies, including the linear and llama3 scalings (float32, like HF). */
export function inverseFrequencies(spec: ModelSpec): Float32Array {
  const rd = spec.rope.rotaryDim;
  const inv = new Float32Array(rd / 2);
  for (let i = 0; i < rd / 2; i++) inv[i] = 1 / spec.rope.theta ** ((2 * i) / rd);
  const s = spec.rope.scaling;
  if (s?.type === "linear") for (let i = 0; i < inv.length; i++) inv[i] = inv[i] / s.factor;
  if (s?.type === "llama3") {
    const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
    const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
    for (let i = 0; i < inv.length; i++) {
      const f = inv[i];
      const wavelen = (2 * Math.PI) / f;
      if (wavelen > lowWavelen) inv[i] = f / s.factor;
      else if (wavelen >= highWavelen) {
        const smooth =
          (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        inv[i] = (1 - smooth) * (f / s.factor) + smooth * f;
      }
    }
  }
  return inv;
}

/** cos and sin tables [B, T, rotaryDim] for integer positions [B][T]. */
export function ropeTables(inv: Float32Array, positions: number[][]): { cos: Float32Array; sin: Float32Array } {
  const B = positions.length;
  const T = positions[0]?.length ?? 0;
  const half = inv.length;
  const rd = half * 2;
  const cos = new Float32Array(B * T * rd);
  const sin = new Float32Array(B * T * rd);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const pos = positions[b][t];
      const base = (b * T + t) * rd;
      for (let i = 0; i < half; i++) {
        const a = Math.fround(inv[i] * pos); // HF multiplies in float32
        const c = Math.cos(a);
        const s = Math.sin(a);
        cos[base + i] = c;
        cos[base + half + i] = c;
        sin[base + i] = s;
        sin[base + half + i] = s;
      }
    }
  }
  return { cos, sin };
}

/** Large negative instead of −∞: a fully masked (padding) row must not turn into NaN. */
export const MASKED = -1e30;

/**
 * Additive attention mask [B, 1, T, S] for T new queries after `past` cached keys.
 * keyValid[b][j] says whether key j (0 ≤ j < S) is a real token.
 */
export function attentionMask(keyValid: Uint8Array[], past: number, T: number, window: number | null): Float32Array {
  const B = keyValid.length;
  const S = past + T;
  const m = new Float32Array(B * T * S);
  for (let b = 0; b < B; b++) {
    const kv = keyValid[b];
    for (let i = 0; i < T; i++) {
      const qi = past + i;
      const row = (b * T + i) * S;
      for (let j = 0; j < S; j++) {
        const ok = kv[j] === 1 && j <= qi && (window === null || qi - j < window);
        m[row + j] = ok ? 0 : MASKED;
      }
    }
  }
  return m;
}
