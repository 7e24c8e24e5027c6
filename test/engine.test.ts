import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { ModelFolder } from "../src/model/folder.js";
import { Engine } from "../src/engine/engine.js";
import { capture } from "../src/engine/forward.js";
import { generate } from "../src/engine/generate.js";
import { headRowRanges } from "../src/engine/graphs.js";
import { SafetensorsFile } from "../src/formats/safetensors.js";
import { readJsonFile } from "../src/formats/files.js";
import { ablation, activationAddition, affineEdit, Intervention } from "../src/engine/interventions.js";
import { ALL_FIXTURES, FIXTURES, relErr } from "./helpers.js";
import { ropeFrequencies } from "../src/engine/rope.js";

const TOL = 1e-4;

interface GenJson {
  tie_margin: number;
  [k: string]: unknown;
}
interface GenRow {
  prompt_index: number;
  tokens: number[];
  margins: number[];
  text: string;
}

/** The greedy generations under `iv` equal the reference's, up to its first near-tie. */
async function checkGenerations(engine: Engine, m: ModelFolder, toks: number[][], k: string, iv?: Intervention) {
  const gens = readJsonFile<GenJson>(path.join(m.dir, "expected", "generations.json"));
  const got = await generate(engine, toks, { maxNewTokens: 8, intervention: iv, stopAtEos: false, batchSize: 4 });
  for (const w of gens[k] as GenRow[]) {
    const g = got[w.prompt_index].tokens;
    // Compare up to (and including) the first step whose reference margin is a near-tie.
    let upto = w.tokens.length;
    const tie = w.margins.findIndex((x) => x < gens.tie_margin);
    if (tie >= 0) upto = tie;
    assert.deepEqual(g.slice(0, upto), w.tokens.slice(0, upto), `${k} generation of prompt ${w.prompt_index}`);
    if (upto === w.tokens.length) assert.equal(m.tokenizer.decode(g), w.text, `${k} text of prompt ${w.prompt_index}`);
  }
}

/** Batched = one prompt at a time (left padding must not change anything). */
async function checkBatchedEqualsSingle(engine: Engine, m: ModelFolder, toks: number[][], iv: Intervention) {
  const opts = { residPrePositions: 5, residPost: true, logits: true, intervention: iv };
  const all = await capture(engine, toks, opts);
  const V = m.spec.vocabSize;
  const n = m.spec.numLayers * 5 * m.spec.hiddenSize;
  for (let i = 0; i < toks.length; i++) {
    const one = await capture(engine, [toks[i]], opts);
    assert.ok(relErr(one.logits!, all.logits!.subarray(i * V, (i + 1) * V)) <= 1e-6, `batched logits of prompt ${i}`);
    assert.ok(
      relErr(one.residPre!, all.residPre!.subarray(i * n, (i + 1) * n)) <= 1e-6,
      `batched resid_pre of prompt ${i}`,
    );
  }
}

/** Row-chunked block calls (with the KV cache split and rejoined) give the same results. */
async function checkChunked(m: ModelFolder, toks: number[][], ex: SafetensorsFile, ivs: Record<string, Intervention>) {
  const chunked = await Engine.load(m, { tokensPerCall: 40 });
  const a = await capture(chunked, toks, {
    residPrePositions: 5,
    residPost: true,
    logits: true,
    intervention: ivs.ablation,
  });
  assert.ok(relErr(a.logits!, ex.readF32("ablated_logits_last")) <= TOL, "chunked ablated logits");
  const gens = readJsonFile<GenJson>(path.join(m.dir, "expected", "generations.json"));
  const gotGen = await generate(chunked, toks, { maxNewTokens: 8, stopAtEos: false, intervention: ivs.actadd });
  for (const w of gens.actadd as GenRow[])
    assert.deepEqual(gotGen[w.prompt_index].tokens, w.tokens, "chunked generation");
  await chunked.release();
}

interface RopeJson {
  batch_dependent: boolean;
  seq_lens: number[];
  [kind: string]: unknown;
}
interface RopeRow {
  seq_len: number;
  attention_scaling: number;
  inv_freq: number[];
}

for (const fam of ALL_FIXTURES) {
  test(`${fam}: RoPE frequencies and their scaling equal the reference's at every call length`, () => {
    const m = ModelFolder.open(path.join(FIXTURES, fam));
    const table = readJsonFile<RopeJson>(path.join(m.dir, "expected", "rope.json"));
    assert.equal("local" in table, m.spec.rope.local !== null, `${fam}: layers with a local RoPE base`);
    for (const kind of ["global", "local"]) {
      const rows = table[kind] as RopeRow[] | undefined;
      if (!rows) continue;
      for (const r of rows) {
        const f = ropeFrequencies(m.spec, r.seq_len, kind === "local");
        const what = `${fam} ${kind} at length ${r.seq_len}`;
        assert.ok(relErr(f.inv, r.inv_freq) <= 1e-6, `${what}: inverse frequencies`);
        assert.ok(Math.abs(f.scaling - r.attention_scaling) <= 1e-6 * r.attention_scaling, `${what}: scaling`);
      }
    }
  });

  test(`${fam}: activations, logits, interventions and greedy generations match the PyTorch reference`, async () => {
    const dir = path.join(FIXTURES, fam);
    const m = ModelFolder.open(dir);
    const engine = await Engine.load(m);
    const inp = readJsonFile<{ prompts: { input_ids: number[] }[] }>(path.join(dir, "expected", "input.json"));
    const toks = inp.prompts.map((p) => p.input_ids);
    const ex = SafetensorsFile.open(path.join(dir, "expected", "expected.safetensors"));
    const dirFile = SafetensorsFile.open(path.join(dir, "expected", "direction.safetensors"));
    const r = dirFile.readF32("direction");
    const mu = dirFile.readF32("reference");
    const L = m.spec.numLayers;

    const c = await capture(engine, toks, { residPrePositions: 5, residPost: true, finalHidden: true, logits: true });
    assert.ok(relErr(c.residPre!, ex.readF32("resid_pre")) <= TOL, "resid_pre");
    assert.ok(relErr(c.residPost!, ex.readF32("resid_post")) <= TOL, "resid_post");
    assert.ok(relErr(c.logits!, ex.readF32("logits_last")) <= TOL, "logits_last");
    if (ex.has("final_hidden")) assert.ok(relErr(c.finalHidden!, ex.readF32("final_hidden")) <= TOL, "final_hidden");

    const ivs: Record<string, Intervention> = {
      ablation: ablation(r, L),
      actadd: activationAddition(r, 1, 1.0, L),
      ace: affineEdit(r, mu, 2, 0.0, L),
    };
    const logitName: Record<string, string> = {
      ablation: "ablated_logits_last",
      actadd: "actadd_logits_last",
      ace: "ace_logits_last",
    };
    await checkGenerations(engine, m, toks, "baseline");
    for (const [k, iv] of Object.entries(ivs)) {
      const got = await capture(engine, toks, { intervention: iv, logits: true });
      const err = relErr(got.logits!, ex.readF32(logitName[k]));
      assert.ok(err <= TOL, `${k} logits: relative error ${err}`);
      await checkGenerations(engine, m, toks, k, iv);
    }
    // Longrope and dynamic RoPE follow the call's length, so a prompt's result depends on its batch (as in HF).
    const rope = readJsonFile<RopeJson>(path.join(dir, "expected", "rope.json"));
    if (!rope.batch_dependent) await checkBatchedEqualsSingle(engine, m, toks, ivs.ablation);
    await engine.release();
    await checkChunked(m, toks, ex, ivs);
  });
}

test("greedy generation stops at EOS, sampling is reproducible from the seed", async () => {
  const m = ModelFolder.open(path.join(FIXTURES, "qwen3"));
  const engine = await Engine.load(m);
  const toks = [m.tokenizer.encode(m.tokenizer.formatPrompt("Hi!"))];
  const greedy = await generate(engine, toks, { maxNewTokens: 6, stopAtEos: false });
  const first = greedy[0].tokens[0];
  const stopped = await generate(engine, toks, { maxNewTokens: 6, eosTokenIds: [first] });
  assert.deepEqual(stopped[0].tokens, [first]);
  assert.ok(stopped[0].stopped);
  const s1 = await generate(engine, toks, { maxNewTokens: 6, temperature: 1.5, topP: 0.9, seed: 7, stopAtEos: false });
  const s2 = await generate(engine, toks, { maxNewTokens: 6, temperature: 1.5, topP: 0.9, seed: 7, stopAtEos: false });
  assert.deepEqual(s1, s2);
  await engine.release();
});

test("generation reports its new-token slots every step, and a batch that stops early jumps to its share", async () => {
  const m = ModelFolder.open(path.join(FIXTURES, "qwen3"));
  const engine = await Engine.load(m);
  const toks = ["Hi!", "How are you?", "Bake bread."].map((p) => m.tokenizer.encode(m.tokenizer.formatPrompt(p)));
  const seen: [number, number][] = [];
  await generate(engine, toks, {
    maxNewTokens: 4,
    stopAtEos: false,
    batchSize: 2,
    onTokens: (d, t) => seen.push([d, t]),
  });
  // the batch of 2 rows: 2, 4, 6, 8; the batch of 1 row: 9, 10, 11, 12 (each count once)
  assert.deepEqual(
    seen.map(([d]) => d),
    [2, 4, 6, 8, 9, 10, 11, 12],
  );
  assert.ok(seen.every(([, t]) => t === 12));
  // Every row stops at its first token: the batch reports its whole share at once.
  const first = (await generate(engine, toks.slice(0, 1), { maxNewTokens: 1, stopAtEos: false }))[0].tokens[0];
  const early: number[] = [];
  await generate(engine, [toks[0], toks[0]], {
    maxNewTokens: 5,
    eosTokenIds: [first],
    batchSize: 2,
    onTokens: (d) => early.push(d),
  });
  assert.deepEqual(early, [10]);
  await engine.release();
});

// ONNX models are protobufs capped at 2 GiB, so a large head is split by vocabulary rows into
// several sessions; forced here with a tiny cap, the split head gives the same logits.
test("a head split by vocabulary rows into several sessions gives the unsplit head's logits", async () => {
  for (const fam of ["gemma2", "llama"] as const) {
    const folder = ModelFolder.open(path.join(FIXTURES, fam));
    const ids = ["Hello there", "How do I bake bread?"].map((p) =>
      folder.tokenizer.encode(folder.tokenizer.formatPrompt(p)),
    );
    const whole = await Engine.load(folder);
    const rowBytes = folder.spec.hiddenSize * 4;
    const split = await Engine.load(folder, { maxSessionBytes: Math.ceil(folder.spec.vocabSize / 3.5) * rowBytes });
    assert.equal(headRowRanges(folder.spec, Math.ceil(folder.spec.vocabSize / 3.5) * rowBytes).length, 4);
    const a = await capture(whole, ids, { logits: true, finalHidden: true });
    const b = await capture(split, ids, { logits: true, finalHidden: true });
    assert.ok(relErr(b.logits!, a.logits!) < 1e-6, `${fam}: logits`);
    assert.ok(relErr(b.finalHidden!, a.finalHidden!) < 1e-7, `${fam}: final hidden`);
    await whole.release();
    await split.release();
  }
});
