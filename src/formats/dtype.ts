/** Storage dtypes cosmic reads and writes; compute is always float32. */
export type DType = "F32" | "F16" | "BF16";
export const SUPPORTED_DTYPES: readonly DType[] = ["F32", "F16", "BF16"];

export function dtypeBytes(d: DType): number {
  return d === "F32" ? 4 : 2;
}

export function isDType(s: string): s is DType {
  return (SUPPORTED_DTYPES as readonly string[]).includes(s);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function floatToHalf(v: number): number {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

/** Decode little-endian raw bytes of `dtype` into a new Float32Array. */
export function decodeToF32(bytes: Uint8Array, dtype: DType): Float32Array {
  const n = bytes.byteLength / dtypeBytes(dtype);
  const out = new Float32Array(n);
  if (dtype === "F32") {
    new Uint8Array(out.buffer).set(bytes);
    return out;
  }
  const halves = new Uint16Array(n);
  new Uint8Array(halves.buffer).set(bytes);
  if (dtype === "BF16") {
    const o = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) o[i] = halves[i] << 16;
  } else {
    for (let i = 0; i < n; i++) out[i] = halfToFloat(halves[i]);
  }
  return out;
}

/** Encode float32 values as little-endian bytes of `dtype` (round to nearest even). */
export function encodeFromF32(values: Float32Array, dtype: DType): Uint8Array {
  if (dtype === "F32")
    return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  const out = new Uint16Array(values.length);
  if (dtype === "BF16") {
    const src = new Uint32Array(values.buffer, values.byteOffset, values.length);
    for (let i = 0; i < values.length; i++) {
      const x = src[i];
      if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) {
        out[i] = (x >>> 16) | 0x40;
        continue;
      }
      out[i] = (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
    }
  } else {
    for (let i = 0; i < values.length; i++) out[i] = floatToHalf(values[i]);
  }
  return new Uint8Array(out.buffer);
}
