import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { SafetensorsFile, writeSafetensors, Checkpoint } from "../src/formats/safetensors.js";
import { decodeToF32, encodeFromF32 } from "../src/formats/dtype.js";
import { CosmicError } from "../src/errors.js";
import { FIXTURES, scratchDir } from "./helpers.js";

const tmp = scratchDir("cosmic-st-");

test("writer output round-trips with metadata, all dtypes, 8-byte aligned data", () => {
  const a = Float32Array.from({ length: 12 }, (_, i) => (i - 5.5) * 0.37);
  const file = path.join(tmp, "rt.safetensors");
  writeSafetensors(
    file,
    [
      { name: "a", dtype: "F32", shape: [3, 4], data: a },
      { name: "b", dtype: "BF16", shape: [12], data: a },
      { name: "c", dtype: "F16", shape: [2, 6], data: () => a },
    ],
    { layer: "3", note: "x" },
  );
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  assert.equal((8 + n) % 8, 0, "data section must start 8-byte aligned");
  const header = JSON.parse(buf.subarray(8, 8 + n).toString());
  assert.deepEqual(header.__metadata__, { layer: "3", note: "x" });
  assert.deepEqual(header.a.data_offsets, [0, 48]);
  const st = SafetensorsFile.open(file);
  assert.deepEqual(st.metadata, { layer: "3", note: "x" });
  assert.deepEqual(Array.from(st.readF32("a")), Array.from(a));
  const b = st.readF32("b");
  const c = st.readF32("c");
  for (let i = 0; i < a.length; i++) {
    assert.ok(Math.abs(b[i] - a[i]) <= Math.abs(a[i]) * 2 ** -8, `bf16 ${b[i]} vs ${a[i]}`);
    assert.ok(Math.abs(c[i] - a[i]) <= Math.abs(a[i]) * 2 ** -11, `f16 ${c[i]} vs ${a[i]}`);
  }
  assert.deepEqual(st.info("c").shape, [2, 6]);
});

test("bf16 and f16 conversions are exact on representable values and round to nearest even", () => {
  const v = Float32Array.from([1, -2, 0.5, 1.5, 65504, -0.000060975552, 3.140625]);
  assert.deepEqual(Array.from(decodeToF32(encodeFromF32(v, "F16"), "F16")), Array.from(v));
  const w = Float32Array.from([1, -2, 0.5, 1.5, 3.140625, 1 + 2 ** -8]); // last is a tie: rounds to 1
  assert.deepEqual(Array.from(decodeToF32(encodeFromF32(w, "BF16"), "BF16")), [1, -2, 0.5, 1.5, 3.140625, 1]);
});

test("reads the sharded fixture checkpoint through its index", () => {
  const ck = Checkpoint.openFolder(path.join(FIXTURES, "qwen2"));
  assert.equal(ck.files.length, 2);
  assert.equal(ck.info("model.embed_tokens.weight").dtype, "BF16");
  const e = ck.readF32("model.embed_tokens.weight");
  assert.equal(e.length, 259 * 64);
  assert.ok(e.some((x) => x !== 0));
});

function corrupt(name: string, bytes: Buffer): string {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, bytes);
  return p;
}

function header(obj: unknown, dataBytes = 0): Buffer {
  const h = Buffer.from(JSON.stringify(obj));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, Buffer.alloc(dataBytes, 1)]);
}

const cases: [string, () => Buffer, RegExp][] = [
  ["truncated to 5 bytes", () => Buffer.alloc(5), /truncated/],
  [
    "header length past the end",
    () => {
      const b = header({ a: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, 4);
      b.writeBigUInt64LE(10_000n);
      return b;
    },
    /header length 10000 runs past the end/,
  ],
  [
    "invalid JSON header",
    () => {
      const h = Buffer.from("{not json");
      const l = Buffer.alloc(8);
      l.writeBigUInt64LE(BigInt(h.length));
      return Buffer.concat([l, h]);
    },
    /not valid JSON/,
  ],
  ["unknown dtype", () => header({ a: { dtype: "I8", shape: [4], data_offsets: [0, 4] } }, 4), /unsupported dtype I8/],
  [
    "overlapping data_offsets",
    () =>
      header(
        {
          a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
          b: { dtype: "F32", shape: [2], data_offsets: [4, 12] },
        },
        12,
      ),
    /tensor "b" overlaps the tensor before it/,
  ],
  [
    "out-of-range data_offsets",
    () => header({ a: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, 8),
    /out of range/,
  ],
  [
    "shape and offsets disagree",
    () => header({ a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, 8),
    /needs 12/,
  ],
];

for (const [name, make, re] of cases) {
  test(`rejects a safetensors file with ${name}, naming the file`, () => {
    const p = corrupt(name.replace(/\W+/g, "_") + ".safetensors", make());
    assert.throws(
      () => SafetensorsFile.open(p),
      (e: unknown) =>
        e instanceof CosmicError && e.message.startsWith(p) && re.test(e.message) && !e.message.includes("\n"),
    );
  });
}

test("a truncated real fixture is reported by file and tensor", () => {
  const src = fs.readFileSync(path.join(FIXTURES, "llama", "model.safetensors"));
  const p = corrupt("cut.safetensors", src.subarray(0, src.length - 1000));
  assert.throws(() => SafetensorsFile.open(p), /cut\.safetensors: tensor ".*": data_offsets .* out of range/);
});
