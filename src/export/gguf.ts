/**
 * A GGUF v3 writer: magic, version, counts, metadata key/values (scalars and arrays), tensor
 * infos, then the tensor data, 32-byte aligned. Used for llama.cpp control vectors (small, in
 * memory) and whole models (streamed to a file, one tensor at a time).
 */
import fs from "node:fs";
import { writeWithFdAtomic } from "../formats/files.js";

export type GgufValue =
  | { type: "string"; value: string }
  | { type: "uint32"; value: number }
  | { type: "int32"; value: number }
  | { type: "float32"; value: number }
  | { type: "bool"; value: boolean }
  | { type: "string[]"; value: string[] }
  | { type: "int32[]"; value: ArrayLike<number> }
  | { type: "float32[]"; value: ArrayLike<number> };

const TYPE_ID = { uint32: 4, int32: 5, float32: 6, bool: 7, string: 8, array: 9 } as const;
const ALIGN = 32;

/** ggml's tensor types that cosmic writes. */
export const GGML_TYPE = { F32: 0, F16: 1, BF16: 30 } as const;
export type GgmlType = keyof typeof GGML_TYPE;
const TYPE_BYTES: Record<GgmlType, number> = { F32: 4, F16: 2, BF16: 2 };

export interface GgufTensor {
  name: string;
  /** ggml order: ne[0] is the innermost (contiguous) dimension, i.e. an HF [rows, cols] matrix is [cols, rows] */
  shape: number[];
  type: GgmlType;
  /** the bytes, produced when written (so a model is never all in memory) */
  data: () => Uint8Array;
}

class Out {
  parts: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.parts.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  i32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }
  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  f32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  str(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.u64(b.length);
    this.push(b);
  }
  pad(): void {
    const n = (ALIGN - (this.length % ALIGN)) % ALIGN;
    if (n) this.push(Buffer.alloc(n));
  }
}

function writeValue(out: Out, v: GgufValue): void {
  switch (v.type) {
    case "string":
      out.u32(TYPE_ID.string);
      return out.str(v.value);
    case "uint32":
      out.u32(TYPE_ID.uint32);
      return out.u32(v.value);
    case "int32":
      out.u32(TYPE_ID.int32);
      return out.i32(v.value);
    case "float32":
      out.u32(TYPE_ID.float32);
      return out.f32(v.value);
    case "bool":
      out.u32(TYPE_ID.bool);
      return out.push(Buffer.from([v.value ? 1 : 0]));
    case "string[]":
      out.u32(TYPE_ID.array);
      out.u32(TYPE_ID.string);
      out.u64(v.value.length);
      return v.value.forEach((s) => out.str(s));
    case "int32[]": {
      out.u32(TYPE_ID.array);
      out.u32(TYPE_ID.int32);
      out.u64(v.value.length);
      const b = Buffer.alloc(4 * v.value.length);
      for (let i = 0; i < v.value.length; i++) b.writeInt32LE(v.value[i], 4 * i);
      return out.push(b);
    }
    case "float32[]": {
      out.u32(TYPE_ID.array);
      out.u32(TYPE_ID.float32);
      out.u64(v.value.length);
      const b = Buffer.alloc(4 * v.value.length);
      for (let i = 0; i < v.value.length; i++) b.writeFloatLE(v.value[i], 4 * i);
      return out.push(b);
    }
  }
}

const bytesOf = (t: GgufTensor) => t.shape.reduce((a, b) => a * b, 1) * TYPE_BYTES[t.type];

/** Everything before the tensor data: header, key/values and tensor infos, padded. */
function header(kv: Record<string, GgufValue>, tensors: GgufTensor[]): Buffer {
  const out = new Out();
  out.push(Buffer.from("GGUF", "ascii"));
  out.u32(3);
  out.u64(tensors.length);
  out.u64(Object.keys(kv).length);
  for (const [k, v] of Object.entries(kv)) {
    out.str(k);
    writeValue(out, v);
  }
  let offset = 0;
  for (const t of tensors) {
    out.str(t.name);
    out.u32(t.shape.length);
    for (const n of t.shape) out.u64(n);
    out.u32(GGML_TYPE[t.type]);
    out.u64(offset);
    offset += Math.ceil(bytesOf(t) / ALIGN) * ALIGN;
  }
  out.pad();
  return Buffer.concat(out.parts);
}

const padding = (n: number) => Buffer.alloc((ALIGN - (n % ALIGN)) % ALIGN);

/** A whole GGUF file in memory (small files: control vectors). */
export function encodeGguf(kv: Record<string, GgufValue>, tensors: { name: string; data: Float32Array }[]): Buffer {
  const ts: GgufTensor[] = tensors.map((t) => ({
    name: t.name,
    shape: [t.data.length],
    type: "F32",
    data: () => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
  }));
  const parts = [header(kv, ts)];
  for (const t of ts) {
    const b = Buffer.from(t.data());
    parts.push(b, padding(b.length));
  }
  return Buffer.concat(parts);
}

/** Stream a GGUF file to `file` (temporary name, then renamed), one tensor in memory at a time. */
export function writeGguf(
  file: string,
  kv: Record<string, GgufValue>,
  tensors: GgufTensor[],
  onTensor?: (done: number, total: number) => void,
): void {
  writeWithFdAtomic(file, (fd) => {
    fs.writeSync(fd, header(kv, tensors));
    tensors.forEach((t, i) => {
      const b = t.data();
      if (b.length !== bytesOf(t))
        throw new Error(`tensor ${t.name}: ${b.length} bytes for shape [${t.shape}] ${t.type}`);
      fs.writeSync(fd, b);
      fs.writeSync(fd, padding(b.length));
      onTensor?.(i + 1, tensors.length);
    });
  });
}
