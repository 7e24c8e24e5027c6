/**
 * Weight-only quantisation for onnxruntime's MatMulNBits (com.microsoft): each row of a Linear
 * weight [N, K] (Hugging Face's [out, in] layout, which is MatMulNBits' own) is cut into blocks
 * of BLOCK_SIZE along K; a block keeps a float scale and an unsigned zero point, and each weight
 * becomes round(w / scale) + zero_point in `bits` bits (round to nearest, asymmetric: the block's
 * minimum and maximum, widened to include 0, map to 0 and 2^bits − 1). Activations stay float32.
 */

export type WeightFormat = "f32" | "int8" | "int4";
export const WEIGHT_FORMATS: readonly WeightFormat[] = ["f32", "int8", "int4"];

/** Weights per block: one scale and zero point each. 32 is what llama.cpp's Q4_0/Q8_0 use. */
export const BLOCK_SIZE = 32;

export interface QuantizedMatrix {
  bits: 4 | 8;
  N: number;
  K: number;
  blockSize: number;
  /** [N, blocks, blockSize·bits/8]: codes packed low nibble first along K */
  codes: Uint8Array;
  /** [N, blocks] */
  scales: Float32Array;
  /** 8 bits: [N, blocks]; 4 bits: [N, ⌈blocks/2⌉], two zero points per byte, low nibble first */
  zeroPoints: Uint8Array;
}

/**
 * The head's format: 8 bits whenever the blocks are quantised (as llama.cpp's Q4 types keep the
 * output matrix at higher precision): every logit, and so every score, goes through it.
 */
export function headFormat(format: WeightFormat): WeightFormat {
  return format === "f32" ? "f32" : "int8";
}

export function bitsOf(format: WeightFormat): 4 | 8 | null {
  return format === "int8" ? 8 : format === "int4" ? 4 : null;
}

/** Bytes a [N, K] weight takes in `format` (codes, scales, zero points). */
export function matrixBytes(format: WeightFormat, N: number, K: number): number {
  const bits = bitsOf(format);
  if (bits === null) return 4 * N * K;
  const blocks = Math.ceil(K / BLOCK_SIZE);
  const zp = bits === 8 ? blocks : Math.ceil(blocks / 2);
  return N * (blocks * ((BLOCK_SIZE * bits) / 8) + 4 * blocks + zp);
}

export function quantize(w: Float32Array, N: number, K: number, bits: 4 | 8, blockSize = BLOCK_SIZE): QuantizedMatrix {
  if (w.length !== N * K) throw new Error(`quantize: ${w.length} values for a [${N}, ${K}] matrix`);
  const blocks = Math.ceil(K / blockSize);
  const qmax = 2 ** bits - 1;
  const blob = (blockSize * bits) / 8;
  const zpPerRow = bits === 8 ? blocks : Math.ceil(blocks / 2);
  const codes = new Uint8Array(N * blocks * blob);
  const scales = new Float32Array(N * blocks);
  const zeroPoints = new Uint8Array(N * zpPerRow);
  for (let n = 0; n < N; n++) {
    const row = n * K;
    for (let b = 0; b < blocks; b++) {
      const k0 = b * blockSize;
      const k1 = Math.min(K, k0 + blockSize);
      let lo = 0;
      let hi = 0;
      for (let k = k0; k < k1; k++) {
        const v = w[row + k];
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      // An all-zero block keeps scale 1 so that it dequantises to exact zeros.
      const scale = hi > lo ? Math.fround((hi - lo) / qmax) : 1;
      const zp = Math.min(qmax, Math.max(0, Math.round(-lo / scale)));
      scales[n * blocks + b] = scale;
      if (bits === 8) zeroPoints[n * zpPerRow + b] = zp;
      else zeroPoints[n * zpPerRow + (b >> 1)] |= zp << ((b & 1) * 4);
      const at = (n * blocks + b) * blob;
      // Padding past K (a last partial block) is coded as the zero point: it dequantises to 0.
      for (let i = 0; i < blockSize; i++) {
        const k = k0 + i;
        const q = k < K ? Math.min(qmax, Math.max(0, Math.round(w[row + k] / scale) + zp)) : zp;
        if (bits === 8) codes[at + i] = q;
        else codes[at + (i >> 1)] |= q << ((i & 1) * 4);
      }
    }
  }
  return { bits, N, K, blockSize, codes, scales, zeroPoints };
}

/** The float weights a quantised matrix stands for (tests and fidelity checks). */
export function dequantize(q: QuantizedMatrix): Float32Array {
  const { N, K, bits, blockSize } = q;
  const blocks = Math.ceil(K / blockSize);
  const blob = (blockSize * bits) / 8;
  const zpPerRow = bits === 8 ? blocks : Math.ceil(blocks / 2);
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const b = Math.floor(k / blockSize);
      const i = k - b * blockSize;
      const at = (n * blocks + b) * blob;
      const code = bits === 8 ? q.codes[at + i] : (q.codes[at + (i >> 1)] >> ((i & 1) * 4)) & 15;
      const zp =
        bits === 8 ? q.zeroPoints[n * zpPerRow + b] : (q.zeroPoints[n * zpPerRow + (b >> 1)] >> ((b & 1) * 4)) & 15;
      out[n * K + k] = (code - zp) * q.scales[n * blocks + b];
    }
  }
  return out;
}
