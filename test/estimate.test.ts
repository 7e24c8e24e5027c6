import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { planFor, runCommand, runFlags, RunFlags } from "../src/cli/run.js";
import { ModelFolder } from "../src/model/folder.js";
import { SafetensorsFile } from "../src/formats/safetensors.js";
import { readJsonFile } from "../src/formats/files.js";
import { PromptRecord } from "../src/data/prompts.js";
import { zeroCandidates } from "../src/cosmic/pipeline.js";
import { flopUnit, liveCandidates } from "../src/cosmic/stages/scores.js";
import {
  editSizeFlops,
  evaluationJobSets,
  evaluationJudgeFlops,
  fullPassFlops,
  generationFlops,
  logProbFlops,
  scoringFlops,
} from "../src/cosmic/estimate.js";
import { crossEntropy } from "../src/eval/loss.js";
import { Calibration, calibrateEngine, evaluationEstimate } from "../src/cosmic/calibration.js";
import { describeMachine } from "../src/util/machine.js";
import { capture } from "../src/engine/forward.js";
import { ablation } from "../src/engine/interventions.js";
import { editSizes } from "../src/cosmic/edit-size.js";
import { noIntervention } from "../src/engine/interventions.js";
import { Engine } from "../src/engine/engine.js";
import { generate } from "../src/engine/generate.js";
import { meanActivations } from "../src/cosmic/activations.js";
import { spawnSync } from "node:child_process";
import { FIXTURES, ROOT, scratchDir, SPLITS } from "./helpers.js";

/** A run on a fixture, then its scoring FLOPs predicted from token lengths alone. */
async function predictedAndCounted(fam: string, extra: Partial<RunFlags>) {
  const out = scratchDir("cosmic-estimate-");
  const model = path.join(FIXTURES, fam);
  const s = await runCommand(
    runFlags({ model, out, data: SPLITS, nTrain: 6, nVal: 5, batchSize: 3, skipEval: true, quiet: true, ...extra }),
  );
  const folder = ModelFolder.open(model);
  const prompts = readJsonFile<Record<string, PromptRecord[]>>(path.join(out, "prompts.json"));
  const lengths = (recs: PromptRecord[]) =>
    recs.map((r) => folder.tokenizer.encode(folder.tokenizer.formatPrompt(r.instruction)).length);
  const r = SafetensorsFile.open(path.join(out, "generate_directions", "mean_diffs.safetensors")).readF32("mean_diffs");
  const L = folder.spec.numLayers;
  const P = s.positions;
  const zero = zeroCandidates({ r }, folder, undefined);
  const plan = scoringFlops(
    folder.spec,
    lengths(prompts.harmful_val),
    lengths(prompts.harmless_val),
    3,
    s.L_low,
    s.mode,
    s.scoring.schedule,
    liveCandidates(L, P, null, zero),
  );
  return { plan, s };
}

for (const [label, fam, extra] of [
  ["affine, fast schedule", "llama", {}],
  ["linear, fast schedule", "qwen2", { linear: true }],
  ["affine, naive schedule", "gemma2", { schedule: "naive" }],
] as const) {
  test(`the scoring estimate is the engine's own FLOP count (${label}, ${fam})`, async () => {
    const { plan, s } = await predictedAndCounted(fam, extra);
    // Under the fast schedule the baseline shares COSMIC's passes: its own cost is what they add
    // (nothing when L_low is the last layer, as on the llama fixture: the pooled pass already reaches the head).
    assert.ok(s.scoring.flops > 0 && s.scoring.substring_flops >= 0);
    if (s.L_low.includes(s.layers - 1) && s.scoring.schedule === "fast") assert.equal(s.scoring.substring_flops, 0);
    else assert.ok(s.scoring.substring_flops > 0, `substring FLOPs with L_low [${s.L_low}]`);
    const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * b;
    assert.ok(close(plan.cosmic, s.scoring.flops), `COSMIC: predicted ${plan.cosmic}, counted ${s.scoring.flops}`);
    assert.ok(
      close(plan.substring, s.scoring.substring_flops),
      `substring: predicted ${plan.substring}, counted ${s.scoring.substring_flops}`,
    );
  });
}

test("the directions, generation and edit-size estimates are the engine's own FLOP count", async () => {
  const folder = ModelFolder.open(path.join(FIXTURES, "qwen3"));
  const engine = await Engine.load(folder);
  const prompts = ["Hi!", "Tell me a story about a cat.", "2+2?", "Write a haiku about rain, please.", "Why?"].map(
    (t) => folder.tokenizer.encode(folder.tokenizer.formatPrompt(t)),
  );
  const lengths = prompts.map((p) => p.length);
  let f0 = engine.flops;
  await meanActivations(engine, prompts, 2, 2);
  assert.equal(engine.flops - f0, fullPassFlops(folder.spec, lengths, 2));
  f0 = engine.flops;
  await generate(engine, prompts, { maxNewTokens: 5, stopAtEos: false, batchSize: 2 });
  const g = generationFlops(folder.spec, lengths, 2, 5);
  assert.equal(engine.flops - f0, g.prefill + g.steps.reduce((a, s) => a + s.flops, 0));
  // Past the cache's first 64 spare columns (it grows while the steps attend over it).
  f0 = engine.flops;
  await generate(engine, prompts.slice(0, 2), { maxNewTokens: 140, stopAtEos: false, batchSize: 2 });
  const long = generationFlops(folder.spec, lengths.slice(0, 2), 2, 140);
  assert.equal(engine.flops - f0, long.prefill + long.steps.reduce((a, s) => a + s.flops, 0));
  f0 = engine.flops;
  // Probes at layers 1 and 3: one pass through blocks 0–2 serves both.
  const none = [noIntervention(folder.spec.numLayers)];
  await editSizes(
    engine,
    prompts,
    5,
    [
      { layer: 1, interventions: none },
      { layer: 3, interventions: none },
    ],
    2,
  );
  assert.equal(engine.flops - f0, editSizeFlops(folder.spec, lengths, 2, 3));
  assert.ok(engine.flops > f0);
  await engine.release();
});

test("the evaluation's judge passes are the engine's own FLOP count", async () => {
  const folder = ModelFolder.open(path.join(FIXTURES, "llama"));
  const spec = folder.spec;
  const engine = await Engine.load(folder);
  const prompts = ["Hi!", "Tell me a story about a cat.", "2+2?", "Write a haiku about rain, please.", "Why?"].map(
    (t) => folder.tokenizer.encode(folder.tokenizer.formatPrompt(t)),
  );
  // Replies of different lengths, one empty (the loss judge drops it).
  const replies = [5, 0, 3, 7, 1].map((n, i) => Array.from({ length: n }, (_, t) => 3 + ((i + t) % 20)));
  const texts = prompts.map((prompt, i) => ({ prompt, response: replies[i] }));
  const lengths = prompts.map((p) => p.length);
  let f0 = engine.flops;
  await crossEntropy(engine, texts, { batchSize: 2 });
  const predicted = logProbFlops(
    spec,
    lengths,
    replies.map((r) => r.length),
    2,
  );
  assert.equal(engine.flops - f0, predicted);
  f0 = engine.flops;
  const r = Float32Array.from({ length: spec.hiddenSize }, (_, i) => Math.sin(i + 1));
  await crossEntropy(engine, texts, { batchSize: 2, intervention: ablation(r, spec.numLayers) });
  assert.equal(engine.flops - f0, predicted, "an intervention adds no counted FLOPs");
  f0 = engine.flops;
  await capture(engine, prompts, { logits: true, batchSize: 2 });
  assert.equal(engine.flops - f0, fullPassFlops(spec, lengths, 2));
  // Every reply at its longest: the judges' bound for one and for two directions.
  const full = logProbFlops(
    spec,
    lengths,
    lengths.map(() => 4),
    2,
  );
  assert.equal(evaluationJudgeFlops(spec, lengths, 2, 4, 1), 2 * full + 2 * fullPassFlops(spec, lengths, 2));
  assert.equal(evaluationJudgeFlops(spec, lengths, 2, 4, 2), 3 * full + 2 * fullPassFlops(spec, lengths, 2));
  await engine.release();
});

test("the evaluation estimate counts the jobs the evaluation runs", async () => {
  const out = scratchDir("cosmic-estimate-jobs-");
  const model = path.join(FIXTURES, "qwen2");
  const s = await runCommand(
    runFlags({
      model,
      out,
      data: SPLITS,
      nTrain: 6,
      nVal: 4,
      nTest: 3,
      maxNewTokens: 3,
      batchSize: 3,
      steerTowardRefusal: true,
      alphas: "1,2",
      quiet: true,
    }),
  );
  const files = fs.readdirSync(path.join(out, "completions")).filter((f) => f.endsWith("_evaluations.json"));
  const directions = s.substring ? 2 : 1;
  const sets = evaluationJobSets(directions, 2);
  assert.equal(files.length, sets.length, files.join(", "));
  assert.equal(files.filter((f) => /(^|_)harmful_/.test(f)).length, sets.filter((x) => x === 0).length);
});

test("the scoring progress counts FLOPs: it starts at 0 and ends at the candidates' counted FLOPs", () => {
  assert.deepEqual(flopUnit(588.9e12), { name: "GFLOP", size: 1e9 });
  assert.deepEqual(flopUnit(2.4e15), { name: "TFLOP", size: 1e12 });
  assert.deepEqual(flopUnit(3e8), { name: "MFLOP", size: 1e6 });
  const out = scratchDir("cosmic-progress-");
  const r = spawnSync(
    process.execPath,
    [
      path.join(ROOT, "bin", "cosmic.js"),
      ...`run --model ${path.join(FIXTURES, "llama")} --data ${SPLITS} --n-train 6 --n-val 5 --batch-size 3`.split(" "),
      ...`--skip-eval --out ${path.join(out, "run")} --json-progress`.split(" "),
    ],
    { encoding: "utf8" },
  );
  assert.equal(r.status, 0, r.stderr);
  const events = r.stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as { stage?: string; done: number; total: number })
    .filter((e) => e.stage?.startsWith("scoring ("));
  assert.ok(events.length >= 2, r.stderr);
  const scoring = readJsonFile<{ flops: number; substring_flops: number }>(
    path.join(out, "run", "select_direction", "scoring.json"),
  );
  const unit = flopUnit(scoring.flops + scoring.substring_flops);
  assert.ok(events.every((e) => e.stage === `scoring (${unit.name})`));
  const total = Math.round((scoring.flops + scoring.substring_flops) / unit.size);
  assert.ok(total >= 1000, `${total} ${unit.name}`);
  assert.deepEqual([events[0].done, events[0].total], [0, total]);
  assert.deepEqual([events.at(-1)!.done, events.at(-1)!.total], [total, total]);
  for (let k = 1; k < events.length; k++) assert.ok(events[k].done >= events[k - 1].done);
});

test("cosmic run --dry-run prints the plan and writes nothing", () => {
  const out = path.join(os.tmpdir(), `cosmic-dry-${process.pid}`);
  const r = spawnSync(
    process.execPath,
    [
      path.join(ROOT, "bin", "cosmic.js"),
      ...`run --model ${path.join(FIXTURES, "llama")} --data ${SPLITS} --n-train 8 --n-val 4 --n-test 4`.split(" "),
      ...`--out ${out} --dry-run`.split(" "),
    ],
    { encoding: "utf8" },
  );
  assert.equal(r.status, 0, r.stderr);
  for (const stage of [
    "1. directions: ",
    "3. scores (fast schedule): ",
    "; --schedule lazy (the same selections, only the scores they read) at most ",
    "4. selection: no passes; edit sizes: at most ",
    "5. evaluation: ",
    "calibration",
  ])
    assert.ok(r.stdout.includes(stage), `${stage} in:\n${r.stdout}`);
  assert.match(r.stdout, /weights f32: /);
  // The estimate is only as good as the machine it was calibrated on: it names it.
  assert.ok(r.stdout.includes(`on this machine, ${describeMachine()}): `), r.stdout);
  assert.ok(!fs.existsSync(out), "no run folder");
});

test("the directions estimate counts L_low's extra passes under --system-scope directions", async () => {
  const base = { model: path.join(FIXTURES, "llama"), out: "unused", data: SPLITS, nTrain: 6, nVal: 4, nTest: 4 };
  const plan = (extra: Partial<RunFlags>) => planFor(runFlags({ ...base, skipEval: true, quiet: true, ...extra }));
  const bare = await plan({});
  const system = "You are a careful assistant.";
  const selection = await plan({ system });
  const directions = await plan({ system, systemScope: "directions" });
  assert.ok(selection.flops.directions > bare.flops.directions, "the system message lengthens the prompts");
  assert.equal(directions.flops.directions, selection.flops.directions + bare.flops.directions);
  assert.ok(directions.lines.some((l) => l.includes("without the system message")));
});

test("the calibration times real block calls, and the evaluation estimate charges each batch's padded cache length", async () => {
  const folder = ModelFolder.open(path.join(FIXTURES, "llama"));
  const engine = await Engine.load(folder, { firstBlocks: 2, withHead: true });
  try {
    const cal = await calibrateEngine(engine, 3, 6, 8);
    for (const v of [cal.flopsPerSecond, cal.decodeBlockSeconds, cal.headStepSeconds ?? NaN])
      assert.ok(Number.isFinite(v) && v > 0, String(v));
    // T + M/2 = 10 columns, raised to the 62 the timed decode steps write into (one each).
    assert.equal(cal.decodeCache, 62);
    const long = await calibrateEngine(engine, 2, 70, 8);
    assert.equal(long.decodeCache, 70 + 4, "T + M/2 columns");
    assert.ok(cal.decodeSecondsPerPosition >= 0);
  } finally {
    await engine.release();
  }
  // Same prompt count, one batch padded much longer: its steps cost more by the per-position rate.
  const cal: Calibration = {
    flopsPerSecond: 1e12,
    promptTokens: 10,
    decodeBlockSeconds: 0.01,
    decodeCache: 10,
    decodeSecondsPerPosition: 1e-4,
    headStepSeconds: 0.02,
    rows: 2,
  };
  const options = { batchSize: 2, maxNewTokens: 5, steerTowardRefusal: false, alphas: [] };
  const at = (lengths: number[]) => evaluationEstimate(folder.spec, "f32", options, [lengths, lengths], 1, cal);
  const short = at([10, 10]);
  const long = at([10, 50]);
  // 5 jobs, 4 steps each, every block 40 positions further along the cache; the rest is the
  // longer prefill and judge passes at the FLOP rate (the decode steps' own FLOPs, a few µs here,
  // are not charged by rate: hence the tolerance).
  const extra = 5 * 4 * folder.spec.numLayers * 40 * 1e-4;
  const byRate = (e: typeof short) => (e.generationFlops + e.judgeFlops) / cal.flopsPerSecond;
  const seconds = long.seconds - short.seconds - (byRate(long) - byRate(short));
  assert.ok(Math.abs(seconds - extra) < 1e-3 * extra, `${seconds} vs ${extra}`);
});
