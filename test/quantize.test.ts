import { test } from "node:test";
import assert from "node:assert/strict";
import { BLOCK_SIZE, dequantize, matrixBytes, quantize } from "../src/engine/quantize.js";
import { GraphBuilder } from "../src/engine/onnx/builder.js";
import { createSession, floatTensor, sessionOptions } from "../src/engine/runtime.js";
import { residentWeightBytes, resolveWeights } from "../src/engine/memory.js";
import { parseConfig } from "../src/formats/config.js";
import { Rng } from "../src/util/random.js";
import path from "node:path";
import { ModelFolder } from "../src/model/folder.js";
import { Engine } from "../src/engine/engine.js";
import { capture } from "../src/engine/forward.js";
import { SafetensorsFile } from "../src/formats/safetensors.js";
import { readJsonFile } from "../src/formats/files.js";
import { FAMILIES, FIXTURES, relErr } from "./helpers.js";
import { LLAMA3_8B_CONFIG } from "../bench/checkpoint.js";

function randomMatrix(N: number, K: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const w = Float32Array.from({ length: N * K }, () => rng.normal() * 0.05);
  // One row all zeros, one block of one row with a single large value: edge cases of the range.
  w.fill(0, 0, K);
  w[K + 3] = 1.5;
  return w;
}

for (const bits of [8, 4] as const) {
  test(`int${bits}: every weight dequantises within half a step of its block`, () => {
    const [N, K] = [6, 40]; // 40 = one full block of 32 and a partial one
    const w = randomMatrix(N, K, 1);
    const q = quantize(w, N, K, bits);
    const back = dequantize(q);
    const blocks = Math.ceil(K / BLOCK_SIZE);
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) {
        const step = q.scales[n * blocks + Math.floor(k / BLOCK_SIZE)];
        const err = Math.abs(back[n * K + k] - w[n * K + k]);
        assert.ok(err <= step / 2 + 1e-7, `w[${n},${k}] = ${w[n * K + k]} came back as ${back[n * K + k]}`);
      }
    }
    for (let k = 0; k < K; k++) assert.equal(back[k], 0, "an all-zero row stays exactly zero");
    assert.equal(q.codes.length + 4 * q.scales.length + q.zeroPoints.length, matrixBytes(`int${bits}`, N, K));
  });

  test(`int${bits}: onnxruntime's MatMulNBits reads our packing as x·dequantise(W)ᵀ`, async () => {
    for (const [N, K] of [
      [5, 64],
      [7, 40],
      [3, 96],
    ]) {
      const w = randomMatrix(N, K, 2 + K);
      const q = quantize(w, N, K, bits);
      const blocks = Math.ceil(K / BLOCK_SIZE);
      const g = new GraphBuilder("nbits");
      const x = g.input("x", ["m", K]);
      const codes = g.uint8("codes", q.codes, [N, blocks, (BLOCK_SIZE * bits) / 8]);
      const scales = g.weight("scales", q.scales, [N * blocks]);
      const zp = g.uint8("zp", q.zeroPoints, [q.zeroPoints.length]);
      const y = g.contribOp("MatMulNBits", [x, codes, scales, zp], { K, N, bits, block_size: BLOCK_SIZE });
      g.output(y, "y", ["m", N]);
      const s = await createSession(g.encode(), sessionOptions("cpu"));
      const M = 3;
      const rng = new Rng(9);
      const xs = Float32Array.from({ length: M * K }, () => rng.normal());
      const got = (await s.run({ x: floatTensor(xs, [M, K]) })).y.data as Float32Array;
      await s.release();
      const deq = dequantize(q);
      const want = new Float64Array(M * N);
      for (let m = 0; m < M; m++)
        for (let n = 0; n < N; n++) for (let k = 0; k < K; k++) want[m * N + n] += xs[m * K + k] * deq[n * K + k];
      assert.ok(relErr(got, want) <= 1e-5, `[${N}, ${K}]: relative error ${relErr(got, want)}`);
    }
  });
}

test("--weights auto keeps float32 when it fits and steps down to int8, then int4, when it does not", () => {
  const spec = parseConfig(LLAMA3_8B_CONFIG, "config.json");
  const f32 = residentWeightBytes(spec, "f32");
  const int8 = residentWeightBytes(spec, "int8");
  const int4 = residentWeightBytes(spec, "int4");
  // Llama-3-8B: 7.5 B weights besides the embedding, ~30 GB as float32.
  assert.ok(f32 > 29e9 && f32 < 31e9, `${f32}`);
  assert.ok(int8 < 0.3 * f32 && int4 < 0.2 * f32, `${int8} ${int4}`);
  const GiB = 2 ** 30;
  assert.deepEqual(resolveWeights(spec, "auto", 64 * GiB), { format: "f32", note: null });
  assert.equal(resolveWeights(spec, "auto", 20 * GiB).format, "int8");
  assert.match(resolveWeights(spec, "auto", 20 * GiB).note!, /^weights: int8 \(float32 needs about 4\d\.\d GiB/);
  assert.equal(resolveWeights(spec, "auto", 8 * GiB).format, "int4");
  assert.deepEqual(resolveWeights(spec, "int8", 1 * GiB), { format: "int8", note: null }, "an explicit choice stands");
});

// Random 64-wide fixtures are a harsh case (no outlier structure, every weight matters): the
// README lists the measured errors; these bounds are 1.5× the largest of them.
test("int8 and int4 logits stay near float32 on every fixture family, int8 an order nearer", async () => {
  for (const fam of FAMILIES) {
    const m = ModelFolder.open(path.join(FIXTURES, fam));
    const inp = readJsonFile<{ prompts: { input_ids: number[] }[] }>(path.join(m.dir, "expected", "input.json"));
    const toks = inp.prompts.map((p) => p.input_ids);
    const want = SafetensorsFile.open(path.join(m.dir, "expected", "expected.safetensors")).readF32("logits_last");
    const err: Record<string, number> = {};
    for (const weights of ["int8", "int4"] as const) {
      const engine = await Engine.load(m, { weights });
      assert.equal(engine.weights, weights);
      err[weights] = relErr((await capture(engine, toks, { logits: true })).logits!, want);
      await engine.release();
    }
    assert.ok(err.int8 <= 5e-2, `${fam} int8: relative error ${err.int8}`);
    assert.ok(err.int4 <= 0.55, `${fam} int4: relative error ${err.int4}`);
    assert.ok(err.int8 * 5 < err.int4, `${fam}: int8 ${err.int8} should be well under int4 ${err.int4}`);
  }
});
