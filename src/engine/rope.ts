/** Rotary-embedding tables and attention masks, computed on the host as HF computes them. */
import { ModelSpec, RopeScaling } from "../formats/config.js";

/** Inverse frequencies [rotaryDim / 2] and the factor HF multiplies cos and sin by. */
export interface RopeFrequencies {
  inv: Float32Array;
  scaling: number;
}

function defaultInv(theta: number, rd: number): Float32Array {
  const inv = new Float32Array(rd / 2);
  for (let i = 0; i < rd / 2; i++) inv[i] = 1 / theta ** ((2 * i) / rd);
  return inv;
}

/**
 * HF's RoPE frequencies (modeling_rope_utils, float32 like HF) for one call whose longest row
 * reaches position seqLen − 1 (HF's `torch.max(position_ids) + 1`): longrope and dynamic scaling
 * depend on it (dynamic_rope_update), so in a batch every row gets the batch's frequencies and
 * each decoding step its own, as in HF's cached generation. `local`: Gemma 3's sliding layers.
 */
export function ropeFrequencies(spec: ModelSpec, seqLen: number, local = false): RopeFrequencies {
  const rd = spec.rope.rotaryDim;
  if (local && spec.rope.local) return { inv: defaultInv(spec.rope.local.theta, rd), scaling: 1 };
  const theta = spec.rope.theta;
  const s = spec.rope.scaling;
  if (s?.type === "dynamic") {
    // NTK: the base grows once the call is longer than the configured window.
    const n = Math.max(seqLen, s.originalMaxPositionEmbeddings);
    const grown = theta * ((s.factor * n) / s.originalMaxPositionEmbeddings - (s.factor - 1)) ** (rd / (rd - 2));
    return { inv: defaultInv(grown, rd), scaling: 1 };
  }
  const inv = defaultInv(theta, rd);
  if (s?.type === "linear") for (let i = 0; i < inv.length; i++) inv[i] = inv[i] / s.factor;
  if (s?.type === "llama3") llama3Inv(inv, s);
  if (s?.type === "yarn") return { inv: yarnInv(theta, rd, s), scaling: s.attentionFactor };
  if (s?.type === "longrope") {
    const ext = seqLen > s.originalMaxPositionEmbeddings ? s.longFactor : s.shortFactor;
    for (let i = 0; i < inv.length; i++) inv[i] = 1 / (ext[i] * theta ** ((2 * i) / rd));
    return { inv, scaling: s.attentionFactor };
  }
  return { inv, scaling: 1 };
}

function llama3Inv(inv: Float32Array, s: Extract<RopeScaling, { type: "llama3" }>): void {
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

/** YaRN: interpolated (÷ factor) frequencies below a ramp over the dimensions, original ones above. */
function yarnInv(theta: number, rd: number, s: Extract<RopeScaling, { type: "yarn" }>): Float32Array {
  const orig = s.originalMaxPositionEmbeddings;
  const correction = (rotations: number) => (rd * Math.log(orig / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
  let low = correction(s.betaFast);
  let high = correction(s.betaSlow);
  if (s.truncate) [low, high] = [Math.floor(low), Math.ceil(high)];
  low = Math.max(low, 0);
  high = Math.min(high, rd - 1);
  if (low === high) high += 0.001; // HF: prevents a division by zero
  const inv = new Float32Array(rd / 2);
  for (let i = 0; i < rd / 2; i++) {
    const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
    const keep = 1 - ramp; // weight of the original (extrapolated) frequency
    const pos = theta ** ((2 * i) / rd);
    inv[i] = (1 / (s.factor * pos)) * (1 - keep) + (1 / pos) * keep;
  }
  return inv;
}

/** cos and sin tables [B, T, rotaryDim] for integer positions [B][T], times `scaling` (YaRN, LongRoPE). */
export function ropeTables(
  inv: Float32Array,
  positions: number[][],
  scaling = 1,
): { cos: Float32Array; sin: Float32Array } {
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
        // HF: cos and sin in float32, then times the (Python float) attention scaling
        const c = scaling === 1 ? Math.cos(a) : Math.fround(Math.cos(a)) * scaling;
        const s = scaling === 1 ? Math.sin(a) : Math.fround(Math.sin(a)) * scaling;
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
 * keyValid[b][j] says whether key j (0 ≤ j < S) is a real token. When the cache has spare
 * capacity, only its first `filled` columns hold keys: the new positions count from there for
 * causality and sliding windows (the spare columns are invalid in keyValid).
 */
export function attentionMask(
  keyValid: Uint8Array[],
  past: number,
  T: number,
  window: number | null,
  filled = past,
): Float32Array {
  const B = keyValid.length;
  const S = past + T;
  const m = new Float32Array(B * T * S);
  for (let b = 0; b < B; b++) {
    const kv = keyValid[b];
    for (let i = 0; i < T; i++) {
      const qi = filled + i;
      const row = (b * T + i) * S;
      for (let j = 0; j < S; j++) {
        const kj = j < past ? j : filled + (j - past);
        const ok = kv[j] === 1 && kj <= qi && (window === null || qi - kj < window);
        m[row + j] = ok ? 0 : MASKED;
      }
    }
  }
  return m;
}
