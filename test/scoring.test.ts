import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { ModelFolder } from "../src/model/folder.js";
import { Engine } from "../src/engine/engine.js";
import { capture } from "../src/engine/forward.js";
import { ablation, activationAddition, affineEdit } from "../src/engine/interventions.js";
import { CandidateRun, prepareScoringSet, runCandidates } from "../src/cosmic/scoring.js";
import { klFromLogits, refusalLogOdds } from "../src/cosmic/vec.js";
import { GraphBuilder } from "../src/engine/onnx/builder.js";
import { createSession, floatTensor } from "../src/engine/runtime.js";
import { FIXTURES, relErr } from "./helpers.js";

// The fast schedule restarts each candidate from the clean run's cached block inputs at its
// first edited block and stops as early as the scores allow; here every score it returns is
// checked against plain forward passes of the whole model under the same intervention.
test(
  "fast-schedule candidate runs equal full forward passes: pooled L_low outputs, KL and " + "refusal log-odds",
  async () => {
    const folder = ModelFolder.open(path.join(FIXTURES, "qwen2"));
    const engine = await Engine.load(folder);
    const L = engine.numLayers;
    const d = engine.spec.hiddenSize;
    const V = engine.spec.vocabSize;
    const prompts = ["How do I bake bread?", "Write a poem about rain.", "What is a prime number?"].map((p) =>
      folder.tokenizer.encode(folder.tokenizer.formatPrompt(p)),
    );
    const r = Float32Array.from({ length: d }, (_, i) => Math.sin(3 * i + 1));
    const mu = Float32Array.from({ length: d }, (_, i) => Math.cos(i) / 4);
    const cands: CandidateRun[] = [
      { intervention: ablation(r, L), start: 0 },
      { intervention: activationAddition(r, 1, 2, L), start: 1 },
      { intervention: affineEdit(r, mu, 2, 0, L), start: 2 },
      { intervention: affineEdit(r, mu, 3, 1.5, L), start: 3 },
    ];
    const poolLayers = [1, 2];
    const refusalTokens = [5, 17, 40];
    const set = await prepareScoringSet(engine, prompts, 2); // two batches
    const pooledRes = await runCandidates(engine, set, cands, { poolLayers, kl: false, refusalTokens: null }, "fast");
    const logitRes = await runCandidates(engine, set, cands, { poolLayers: [], kl: true, refusalTokens }, "fast");
    // One run serving both (the shared passes): the separate runs' values to the bit, its cost
    // split at max(poolLayers) between the two consumers.
    const oddsOnly = await runCandidates(engine, set, cands, { poolLayers: [], kl: false, refusalTokens }, "fast");
    const cost = { splitAfter: 2, before: { seconds: 0, flops: 0 }, after: { seconds: 0, flops: 0 } };
    const f0 = engine.flops;
    const both = await runCandidates(engine, set, cands, { poolLayers, kl: false, refusalTokens }, "fast", cost);
    assert.equal(cost.before.flops + cost.after.flops, engine.flops - f0, "the split covers the whole run");
    assert.ok(cost.before.flops > 0 && cost.after.flops > 0);
    for (let c = 0; c < cands.length; c++) {
      assert.deepEqual(both[c].pooled, pooledRes[c].pooled, `candidate ${c}: shared pooled outputs`);
      assert.equal(both[c].logOdds, oddsOnly[c].logOdds, `candidate ${c}: shared log-odds`);
    }

    const clean = await capture(engine, prompts, { logits: true });
    for (let c = 0; c < cands.length; c++) {
      const full = await capture(engine, prompts, {
        residPost: true,
        logits: true,
        intervention: cands[c].intervention,
      });
      const pooled = new Float64Array(d);
      for (let p = 0; p < prompts.length; p++)
        for (const l of poolLayers) for (let i = 0; i < d; i++) pooled[i] += full.residPost![(p * L + l) * d + i];
      for (let i = 0; i < d; i++) pooled[i] /= prompts.length * poolLayers.length;
      assert.ok(relErr(pooledRes[c].pooled!, pooled) < 1e-5, `candidate ${c}: pooled outputs`);
      let kl = 0;
      let odds = 0;
      for (let p = 0; p < prompts.length; p++) {
        kl += klFromLogits(clean.logits!, p * V, full.logits!, p * V, V);
        odds += refusalLogOdds(full.logits!, p * V, V, refusalTokens);
      }
      assert.ok(
        Math.abs(logitRes[c].kl! - kl / prompts.length) <= 1e-5 * Math.max(1, Math.abs(kl)),
        `candidate ${c}: KL ${logitRes[c].kl} vs ${kl / prompts.length}`,
      );
      assert.ok(Math.abs(logitRes[c].logOdds! - odds / prompts.length) <= 1e-4, `candidate ${c}: log-odds`);
      assert.ok(logitRes[c].kl! > 0, `candidate ${c} changes the logits`);
    }
    await engine.release();
  },
);

// The protobuf writer is checked by onnxruntime itself: every attribute kind the graphs use
// (int, ints, float, string) and initialisers round-trip into a model it runs.
test(
  "ONNX protobuf round-trip: a graph with every attribute kind runs in onnxruntime with the " + "expected values",
  async () => {
    const g = new GraphBuilder("roundtrip");
    const a = g.input("a", [2, 3]);
    const w = g.weight("w", Float32Array.from([1, 2, 3, 4, 5, 6]), [3, 2]);
    const y = g.op("Gemm", [a, w], { alpha: { float: 0.5 }, transB: 0 }); // float + int attributes
    const t = g.transpose(y, [1, 0]); // ints
    const e = g.op("Einsum", [t, t], { equation: "ij,ij->j" }); // string
    g.output(e, "out", [2]);
    const s = await createSession(g.encode(), { executionProviders: ["cpu"] });
    const A = Float32Array.from([1, 0, 2, -1, 3, 1]);
    const o = (await s.run({ a: floatTensor(A, [2, 3]) })).out.data as Float32Array;
    // y = 0.5 · A·W (2×2); e_j = Σ_i yᵀ[i][j]² = Σ over y's row j.
    const W = [
      [1, 2],
      [3, 4],
      [5, 6],
    ];
    const Y = [0, 1].map((i) => [0, 1].map((j) => 0.5 * [0, 1, 2].reduce((acc, k) => acc + A[i * 3 + k] * W[k][j], 0)));
    const want = [0, 1].map((j) => Y[j][0] ** 2 + Y[j][1] ** 2);
    assert.ok(relErr(o, want) < 1e-6, `${Array.from(o)} vs ${want}`);
    await s.release();
  },
);
