/**
 * The KV cache with spare capacity (engine/kv-cache.ts): its row layout, and generation through
 * it — in generate() and in the server's continuous batcher, across the batcher's capacity
 * growth and a sliding window — against recomputing every step from the whole sequence.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { ModelFolder } from "../src/model/folder.js";
import { Engine } from "../src/engine/engine.js";
import { capture } from "../src/engine/forward.js";
import { generate } from "../src/engine/generate.js";
import { KvCache } from "../src/engine/kv-cache.js";
import { floatTensor } from "../src/engine/runtime.js";
import { parseConfig } from "../src/formats/config.js";
import { ContinuousBatcher } from "../src/serve/batcher.js";
import { FIXTURES } from "./helpers.js";

const spec = parseConfig(
  {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: 8,
    intermediate_size: 16,
    num_hidden_layers: 2,
    num_attention_heads: 2,
    num_key_value_heads: 2,
    vocab_size: 10,
    max_position_embeddings: 64,
    head_dim: 2,
  },
  "test config",
);

/** Layer l, row b, head k, column j of a [B, 2, T, 2] cache: 1000·l + 100·b + 10·k + j (+ 0.5 for the second value). */
function blocks(B: number, T: number, l: number) {
  const data = new Float32Array(B * 2 * T * 2);
  for (let b = 0; b < B; b++)
    for (let k = 0; k < 2; k++)
      for (let j = 0; j < T; j++)
        for (let e = 0; e < 2; e++) data[((b * 2 + k) * T + j) * 2 + e] = 1000 * l + 100 * b + 10 * k + j + e / 2;
  return floatTensor(data, [B, 2, T, 2]);
}

test("the KV cache right-aligns rows, grows in place and writes each new column at `filled`", () => {
  const keys = [blocks(2, 3, 0), blocks(2, 3, 1)];
  const values = [blocks(2, 3, 0), blocks(2, 3, 1)];
  // Row 0 has 3 real positions, row 1 has 2 (one left pad).
  const c = KvCache.fromBlocks(spec, keys, values, [3, 2]).resized(6);
  assert.equal(c.capacity, 6);
  assert.equal(c.filled, 3);
  const k1 = c.past(1).key;
  assert.deepEqual(k1.dims, [2, 2, 6, 2]);
  const at = (t: typeof k1, b: number, k: number, j: number) => (t.data as Float32Array)[((b * 2 + k) * 6 + j) * 2];
  assert.equal(at(k1, 0, 1, 0), 1010);
  assert.equal(at(k1, 1, 1, 2), 1112);
  assert.equal(at(k1, 1, 1, 0), 0, "row 1's pad column is not copied");
  assert.equal(at(k1, 0, 0, 3), 0, "spare columns are empty");
  const { keyValid, positions } = c.stepInputs();
  assert.deepEqual([...keyValid[0]], [1, 1, 1, 0, 0, 0, 1]);
  assert.deepEqual([...keyValid[1]], [0, 1, 1, 0, 0, 0, 1]);
  assert.deepEqual(positions, [[3], [2]]);
  const one = floatTensor(
    Float32Array.from({ length: 2 * 2 * 2 }, (_, i) => -1 - i),
    [2, 2, 1, 2],
  );
  c.write(0, one, one);
  c.write(1, one, one);
  c.advance();
  assert.equal(c.filled, 4);
  assert.equal(at(c.past(1).key, 1, 1, 3), -7, "row 1, head 1's new key at column 3");
  assert.deepEqual([...c.stepInputs().keyValid[1]], [0, 1, 1, 1, 0, 0, 1]);
  // Gather row 1 alone, right-aligned at 3 filled columns (its 3 real positions).
  const g = KvCache.gather([{ cache: c, row: 1 }], 3, 5);
  assert.equal(g.length(0), 3);
  const gk = g.past(0).key.data as Float32Array;
  assert.deepEqual([gk[0], gk[2], gk[4], gk[6]], [101, 102, -5, 0]);
  assert.throws(() => KvCache.gather([{ cache: c, row: 0 }], 3, 5), /internal/);
  for (let i = 0; i < 2; i++) {
    c.write(0, one, one);
    c.advance();
  }
  assert.throws(() => c.write(0, one, one), /full/);
});

/** Every token generate() picked is a maximum of the logits recomputed from the whole sequence so far. */
async function checkAgainstRecompute(engine: Engine, prompts: number[][], gens: number[][]) {
  const V = engine.spec.vocabSize;
  for (let i = 0; i < prompts.length; i++) {
    for (let k = 0; k < gens[i].length; k++) {
      const seq = [...prompts[i], ...gens[i].slice(0, k)];
      const { logits } = await capture(engine, [seq], { logits: true });
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, logits![v]);
      const got = logits![gens[i][k]];
      assert.ok(max - got <= 1e-4 * Math.max(1, Math.abs(max)), `prompt ${i}, token ${k}: ${got} against ${max}`);
    }
  }
}

for (const fam of ["llama", "gemma2"]) {
  const what = fam === "gemma2" ? "past its sliding window" : "past the first spare columns";
  test(`cached generation equals recomputing each step (${fam}, ${what})`, async () => {
    const folder = ModelFolder.open(path.join(FIXTURES, fam));
    const engine = await Engine.load(folder);
    // Different lengths (left padding); the gemma2 fixture's window is 16, and 70 new tokens
    // outgrow generate's first 64 spare columns.
    const prompts = [5, 11, 3].map((n, i) => Array.from({ length: n }, (_, t) => 3 + ((7 * i + 5 * t) % 40)));
    const M = fam === "llama" ? 70 : 20;
    const gens = await generate(engine, prompts, { maxNewTokens: M, stopAtEos: false, batchSize: 3 });
    await checkAgainstRecompute(
      engine,
      prompts,
      gens.map((g) => g.tokens),
    );
    await engine.release();
  });
}

test("the continuous batcher's rows equal generate() across joins, leaves and the cache's growth", async () => {
  const folder = ModelFolder.open(path.join(FIXTURES, "gemma2"));
  const engine = await Engine.load(folder);
  const prompts = [4, 9, 6].map((n, i) => Array.from({ length: n }, (_, t) => 3 + ((11 * i + 3 * t) % 40)));
  // Row 0 runs past the batcher's 64 spare columns; rows 1 and 2 join later and leave earlier.
  const lengths = [90, 30, 12];
  const batcher = new ContinuousBatcher(engine, { maxBatch: 4, maxQueue: 4 });
  const got: number[][] = prompts.map(() => []);
  const submitters: (() => void)[] = [];
  const done = prompts.map(
    (prompt, i) =>
      new Promise<void>((resolve, reject) => {
        const submit = () =>
          batcher.submit({
            prompt,
            maxTokens: lengths[i],
            sampling: { temperature: 0, topP: 1 },
            seed: 1,
            stopTokens: new Set(),
            onToken: (t) => {
              got[i].push(t);
              // Row 2 joins while row 0 is at its 10th token.
              if (i === 0 && got[0].length === 10) submitters[2]();
            },
            onEnd: () => resolve(),
            onError: reject,
          });
        submitters[i] = submit;
      }),
  );
  submitters[0]();
  submitters[1]();
  await Promise.all(done);
  for (let i = 0; i < prompts.length; i++) {
    const [alone] = await generate(engine, [prompts[i]], { maxNewTokens: lengths[i], stopAtEos: false });
    assert.deepEqual(got[i], alone.tokens, `row ${i}`);
  }
  await engine.release();
});
