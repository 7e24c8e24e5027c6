/**
 * A minimal GGUF v3 writer (metadata key/values and F32 tensors), enough for llama.cpp control
 * vectors: magic, version, counts, key/values, tensor infos, then 32-byte aligned data.
 */
export type GgufValue =
  | { type: "string"; value: string }
  | { type: "uint32"; value: number }
  | { type: "int32"; value: number }
  | { type: "float32"; value: number }
  | { type: "bool"; value: boolean };

const TYPE_ID = { uint32: 4, int32: 5, float32: 6, bool: 7, string: 8 } as const;
const ALIGN = 32;

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

export function encodeGguf(kv: Record<string, GgufValue>, tensors: { name: string; data: Float32Array }[]): Buffer {
  const o = new Out();
  o.push(Buffer.from("GGUF", "ascii"));
  o.u32(3);
  o.u64(tensors.length);
  o.u64(Object.keys(kv).length);
  for (const [k, v] of Object.entries(kv)) {
    o.str(k);
    o.u32(TYPE_ID[v.type]);
    switch (v.type) {
      case "string":
        o.str(v.value);
        break;
      case "uint32":
        o.u32(v.value);
        break;
      case "int32":
        o.i32(v.value);
        break;
      case "float32":
        o.f32(v.value);
        break;
      case "bool":
        o.push(Buffer.from([v.value ? 1 : 0]));
        break;
    }
  }
  let offset = 0;
  for (const t of tensors) {
    o.str(t.name);
    o.u32(1);
    o.u64(t.data.length);
    o.u32(0); // GGML_TYPE_F32
    o.u64(offset);
    offset += Math.ceil((t.data.length * 4) / ALIGN) * ALIGN;
  }
  o.pad();
  for (const t of tensors) {
    o.push(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    o.pad();
  }
  return Buffer.concat(o.parts);
}
