import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { selectCosmic, selectSubstring, CandidateScore } from "../src/cosmic/select.js";
import { rankLayers } from "../src/cosmic/layers.js";
import { lowerMedian, klFromLogits, refusalLogOdds } from "../src/cosmic/vec.js";
import { isRefusal, REFUSAL_PHRASES } from "../src/eval/judge.js";
import { runCommand, RunFlags, runFlags } from "../src/cli/run.js";
import { readDirection } from "../src/formats/direction.js";
import { CosmicError } from "../src/errors.js";
import { writeReport } from "../src/report/report.js";
import { SafetensorsFile } from "../src/formats/safetensors.js";
import { FIXTURES, maxScoreDifference, REFERENCE_RUNS, scratchDir, SPLITS } from "./helpers.js";

function grid(P: number, L: number, f: (p: number, l: number) => Partial<CandidateScore>): CandidateScore[] {
  const out: CandidateScore[] = [];
  for (let p = -P; p <= -1; p++)
    for (let l = 0; l < L; l++)
      out.push({ position: p, layer: l, refusal_score: 0, steering_score: 0, kl_div_score: 0, ...f(p, l) });
  return out;
}

test("lower median is torch.nanmedian's", () => {
  assert.equal(lowerMedian([4, 1, 3, 2]), 2);
  assert.equal(lowerMedian([5, NaN, 1, 3]), 3);
  assert.equal(lowerMedian([]), null);
});

test("COSMIC selection: filters, position −1 rule, maximum of refusal + steering", () => {
  const L = 10;
  // Scores grow with layer; position −1 is best at layer 7, which the −1 rule removes because
  // the other positions peak at layer 4 (refusal) and 5 (steering).
  const scores = grid(3, L, (p, l) => ({
    refusal_score: p === -1 ? l / 5 : l === 4 ? 0.9 : 0.1,
    steering_score: p === -1 ? l / 5 : l === 5 ? 0.8 : 0.1,
    kl_div_score: l === 3 ? 0.5 : 0.01,
  }));
  const sel = selectCosmic(scores, {
    numLayers: L,
    numPositions: 3,
    klThreshold: 0.1,
    pruneLayers: 0.2,
    zeroNorm: new Set(["-3:0", "-2:0", "-1:0"]),
  });
  assert.deepEqual(sel.positionRule, { limit: 4, cutoff: 5 });
  assert.equal(sel.selected.position, -1);
  assert.equal(sel.selected.layer, 5);
  assert.equal(sel.removed["zero direction"], 3);
  assert.equal(sel.removed["layer ≥ 8 (last 20 %)"], 6);
  assert.equal(sel.removed["KL > 0.1"], 3);
  assert.equal(sel.removed["position −1 rule"], 2); // layers 6 and 7 at position −1
  for (let i = 1; i < sel.filtered.length; i++) {
    const a = sel.filtered[i - 1];
    const b = sel.filtered[i];
    assert.ok(a.refusal_score + a.steering_score >= b.refusal_score + b.steering_score);
  }
});

test("a single EOI position applies no position rule; nothing surviving says why", () => {
  const scores = grid(1, 4, (_, l) => ({ refusal_score: l, steering_score: 0, kl_div_score: 0 }));
  const sel = selectCosmic(scores, {
    numLayers: 4,
    numPositions: 1,
    klThreshold: 0.1,
    pruneLayers: 0.2,
    zeroNorm: new Set(),
  });
  assert.equal(sel.positionRule, null);
  assert.equal(sel.selected.layer, 2);
  const bad = grid(2, 5, () => ({ kl_div_score: 1 }));
  assert.throws(
    () => selectCosmic(bad, { numLayers: 5, numPositions: 2, klThreshold: 0.1, pruneLayers: 0.2, zeroNorm: new Set() }),
    (e: unknown) =>
      e instanceof CosmicError &&
      /every one of the 10 candidate directions was filtered out \(layer ≥ 4 \(last 20 %\): 2, KL > 0\.1: 8\)/.test(
        e.message,
      ),
  );
});

test("substring selection: induce > 0, lowest bypass score", () => {
  const scores = grid(2, 10, (p, l) => ({ refusal_score: -l + (p === -1 ? 0.5 : 0), steering_score: l < 6 ? 1 : -1 }));
  const sel = selectSubstring(scores, {
    numLayers: 10,
    numPositions: 2,
    klThreshold: 0.1,
    pruneLayers: 0.2,
    zeroNorm: new Set(),
  });
  assert.equal(sel.selected.layer, 5);
  assert.equal(sel.selected.position, -2);
  assert.equal(sel.removed["induce score ≤ 0"], 4);
});

test("L_low: ascending cosine similarity, at least one layer, optionally from the second half", () => {
  const d = 2;
  const L = 6;
  const a = new Float64Array(L * d);
  const b = new Float64Array(L * d);
  const angles = [0.1, 0.5, 0.9, 0.3, 0.7, 0.2];
  angles.forEach((t, l) => {
    a.set([1, 0], l * d);
    b.set([Math.cos(t), Math.sin(t)], l * d);
  });
  const r = rankLayers(a, b, L, d, 0.1, false);
  assert.deepEqual(r.ranked, [2, 4, 1, 3, 5, 0]);
  assert.deepEqual(r.low, [2]);
  assert.deepEqual(rankLayers(a, b, L, d, 0.34, true).low, [4, 3]);
});

test("KL and refusal log-odds follow the reference formulas", () => {
  const base = [0, 1, 2];
  assert.equal(klFromLogits(base, 0, base, 0, 3), 0);
  assert.ok(klFromLogits(base, 0, [2, 1, 0], 0, 3) > 0.5);
  const p = Math.exp(2) / (1 + Math.E + Math.exp(2));
  assert.ok(Math.abs(refusalLogOdds(base, 0, 3, [2]) - (Math.log(p + 1e-8) - Math.log(1 - p + 1e-8))) < 1e-12);
});

test("the JailbreakBench judge agrees with the authors' substring verdicts on 2000 real completions", () => {
  const root = REFERENCE_RUNS;
  let n = 0;
  for (const m of fs.readdirSync(root).filter((f) => !f.startsWith("LICENSE"))) {
    for (const f of fs
      .readdirSync(path.join(root, m))
      .filter((f) => f.endsWith("_evaluations.json") && !f.startsWith("direction"))) {
      const d = JSON.parse(fs.readFileSync(path.join(root, m, f), "utf8")) as {
        completions: { response: string; is_jailbreak_substring_matching: number }[];
      };
      for (const c of d.completions) {
        assert.equal(
          !isRefusal(c.response, REFUSAL_PHRASES.jailbreakbench),
          Boolean(c.is_jailbreak_substring_matching),
          `${m}/${f}: ${c.response.slice(0, 60)}`,
        );
        n++;
      }
    }
  }
  assert.equal(n, 2000);
});

function flags(out: string, extra: Partial<RunFlags> = {}): RunFlags {
  return runFlags({
    model: path.join(FIXTURES, "qwen2"),
    out,
    data: SPLITS,
    nTrain: 8,
    nVal: 6,
    nTest: 4,
    maxNewTokens: 4,
    batchSize: 8,
    quiet: true,
    ...extra,
  });
}

const tmp = scratchDir("cosmic-run-");

test("fixture run: fast schedule = naive schedule, fewer FLOPs, reference artifact shapes, resumable", async () => {
  const fast = await runCommand(flags(path.join(tmp, "fast")));
  const naive = await runCommand(flags(path.join(tmp, "naive"), { schedule: "naive", skipEval: true }));
  const diff = maxScoreDifference(path.join(tmp, "fast"), path.join(tmp, "naive"));
  assert.equal(diff.candidates, 2 * 4 * 13);
  assert.ok(diff.max <= 1e-6, diff.where);
  assert.ok(fast.scoring.flops < naive.scoring.flops / 1.5, `${fast.scoring.flops} vs ${naive.scoring.flops}`);
  assert.deepEqual([fast.cosmic.position, fast.cosmic.layer], [naive.cosmic.position, naive.cosmic.layer]);
  assert.deepEqual(fast.cosmic.removed, naive.cosmic.removed);

  // Same JSON shapes as the reference's artifacts.
  const ref = JSON.parse(
    fs.readFileSync(path.join(REFERENCE_RUNS, "qwen-1_8b-chat", "direction_evaluations.json"), "utf8"),
  ) as object[];
  const ours = JSON.parse(
    fs.readFileSync(path.join(tmp, "fast", "select_direction", "direction_evaluations.json"), "utf8"),
  ) as object[];
  assert.deepEqual(Object.keys(ours[0]).sort(), Object.keys(ref[0]).sort());
  const meta = JSON.parse(fs.readFileSync(path.join(tmp, "fast", "direction_metadata.json"), "utf8"));
  assert.deepEqual(Object.keys(meta).sort(), ["layer", "pos"]);
  assert.ok(
    Array.isArray(
      JSON.parse(fs.readFileSync(path.join(tmp, "fast", "select_direction", "COSMIC_evaluation_layers.json"), "utf8"))
        .ranked_layers,
    ),
  );
  const dir = readDirection(path.join(tmp, "fast", "direction.safetensors"));
  assert.equal(dir.layer, meta.layer);
  assert.equal(dir.metadata.position, String(meta.pos));
  assert.equal(dir.metadata.seed, "42");
  assert.equal(dir.direction.length, 64);
  const evals = JSON.parse(
    fs.readFileSync(path.join(tmp, "fast", "completions", "harmful_ablation_evaluations.json"), "utf8"),
  );
  assert.equal(evals.completions.length, 4);
  assert.ok("substring_matching_success_rate" in evals);

  // Each stage's time, and beside the scores' and the evaluation's the estimate the run printed.
  const times = fast.stage_timings!;
  assert.deepEqual(Object.keys(times.stages), ["directions", "scores", "edit_size", "evaluation"]);
  for (const t of Object.values(times.stages)) assert.ok(t.seconds > 0, JSON.stringify(times));
  assert.ok(times.stages.scores.estimate_seconds! > 0 && times.stages.evaluation.estimate_seconds! > 0);
  assert.equal(times.stages.directions.estimate_seconds, null);
  assert.ok(times.session_build_seconds! > 0);
  const timesFile = path.join(tmp, "fast", "stage_timings.json");
  assert.deepEqual(JSON.parse(fs.readFileSync(timesFile, "utf8")), times);
  assert.ok(fast.files!.includes("stage_timings.json"));
  assert.ok(!("stage_timings" in JSON.parse(fs.readFileSync(path.join(tmp, "fast", "summary.json"), "utf8"))));

  // A rerun reuses every stage: same summary, no new scoring, the stages' times those of the first run.
  const before = fs.statSync(path.join(tmp, "fast", "select_direction", "direction_evaluations.json")).mtimeMs;
  const again = await runCommand(flags(path.join(tmp, "fast")));
  assert.deepEqual(again.cosmic, fast.cosmic);
  assert.deepEqual(again.scoring, fast.scoring);
  assert.deepEqual(again.stage_timings, times);
  assert.equal(
    fs.statSync(path.join(tmp, "fast", "select_direction", "direction_evaluations.json")).mtimeMs,
    before,
    "scores were not rewritten",
  );

  // Changing an option that scoring depends on recomputes it: other scores, a linear direction.
  const scoresFile = path.join(tmp, "fast", "select_direction", "direction_evaluations.json");
  const affineScores = fs.readFileSync(scoresFile, "utf8");
  const linear = await runCommand(flags(path.join(tmp, "fast"), { linear: true, skipEval: true }));
  assert.notEqual(fs.readFileSync(scoresFile, "utf8"), affineScores);
  // Its times: the reused directions' first time, new scores, no evaluation.
  assert.deepEqual(linear.stage_timings!.stages.directions, times.stages.directions);
  assert.notEqual(linear.stage_timings!.stages.scores.key, times.stages.scores.key);
  assert.ok(!("evaluation" in linear.stage_timings!.stages));
  assert.equal(readDirection(path.join(tmp, "fast", "direction.safetensors")).metadata.mode, "linear");
});

test("an interrupted scoring stage resumes from its finished layers", async () => {
  const out = path.join(tmp, "resume");
  await runCommand(flags(out, { skipEval: true }));
  const partialFile = path.join(out, "select_direction", ".partial-scores.json");
  const partial = JSON.parse(fs.readFileSync(partialFile, "utf8"));
  // Pretend the run died after layer 1: forget the stage record and the later layers.
  delete partial.layers["2"];
  delete partial.layers["3"];
  const fullFlops = partial.cosmic.flops;
  partial.cosmic.flops = 0;
  fs.writeFileSync(partialFile, JSON.stringify(partial));
  const rec = JSON.parse(fs.readFileSync(path.join(out, ".cosmic-stages.json"), "utf8"));
  delete rec.scores;
  fs.writeFileSync(path.join(out, ".cosmic-stages.json"), JSON.stringify(rec));
  const before = JSON.parse(fs.readFileSync(path.join(out, "select_direction", "direction_evaluations.json"), "utf8"));
  const resumed = await runCommand(flags(out, { skipEval: true }));
  const after = JSON.parse(fs.readFileSync(path.join(out, "select_direction", "direction_evaluations.json"), "utf8"));
  assert.deepEqual(after, before);
  // Only layers 2 and 3 were scored again: some work, less than the whole stage.
  assert.ok(resumed.scoring.flops > 0 && resumed.scoring.flops < fullFlops, `${resumed.scoring.flops} of ${fullFlops}`);
  assert.deepEqual(
    fs.readdirSync(out).filter((f) => f.endsWith(".tmp")),
    [],
  );
});

test("--schedule lazy: another KL threshold that keeps the selection reuses the edit sizes and the evaluation", async () => {
  const out = path.join(tmp, "lz-eval");
  const a = await runCommand(flags(out, { schedule: "lazy", klThreshold: 0.1 }));
  const b = await runCommand(flags(out, { schedule: "lazy", klThreshold: 0.05 }));
  assert.deepEqual([b.cosmic.position, b.cosmic.layer], [a.cosmic.position, a.cosmic.layer]);
  assert.notEqual(b.stage_timings!.stages.scores.key, a.stage_timings!.stages.scores.key);
  // Reused stages keep the record of the run that computed them.
  assert.deepEqual(b.stage_timings!.stages.evaluation, a.stage_timings!.stages.evaluation);
  assert.deepEqual(b.stage_timings!.stages.edit_size, a.stage_timings!.stages.edit_size);
  // A threshold that changes the selection does not reuse them.
  const c = await runCommand(flags(out, { schedule: "lazy", klThreshold: 0.01 }));
  assert.notDeepEqual([c.cosmic.position, c.cosmic.layer], [a.cosmic.position, a.cosmic.layer]);
  assert.notEqual(c.stage_timings!.stages.evaluation.key, a.stage_timings!.stages.evaluation.key);
});

test("a reused scores stage reads a NaN score (null in JSON) back as NaN: the NaN filter takes it", async () => {
  const out = path.join(tmp, "nan-reuse");
  const first = await runCommand(flags(out, { skipEval: true }));
  const file = path.join(out, "select_direction", "direction_evaluations.json");
  const rows = JSON.parse(fs.readFileSync(file, "utf8")) as Record<string, number | null>[];
  const sel = rows.find((r) => r.position === first.cosmic.position && r.layer === first.cosmic.layer)!;
  sel.refusal_score = null;
  fs.writeFileSync(file, JSON.stringify(rows));
  const again = await runCommand(flags(out, { skipEval: true }));
  assert.equal(again.stage_timings!.stages.scores.key, first.stage_timings!.stages.scores.key);
  assert.equal(again.cosmic.removed["NaN score"], 1);
  assert.ok(!("not scored (lazy schedule)" in again.cosmic.removed));
  assert.notDeepEqual([again.cosmic.position, again.cosmic.layer], [first.cosmic.position, first.cosmic.layer]);
});

test("--schedule lazy: the fast schedule's selections and scores where it scores, fewer FLOPs, resumable, reported", async () => {
  // A KL threshold the fixture's leading candidates straddle (the first two fail it; ties follow),
  // so that the lazy loop must go past filtered leaders.
  const opts = { skipEval: true, klThreshold: 0.01 };
  const fast = await runCommand(flags(path.join(tmp, "lz-fast"), opts));
  const out = path.join(tmp, "lz-lazy");
  const lazy = await runCommand(flags(out, { ...opts, schedule: "lazy" }));
  const pick = (s: typeof fast) => ({ cosmic: s.cosmic, substring: s.substring });
  const strip = (s: typeof fast) =>
    JSON.parse(JSON.stringify(pick(s), (k, v) => (k === "removed" || k === "edit_size" ? undefined : v)));
  assert.deepEqual(strip(lazy), strip(fast));
  const diff = maxScoreDifference(path.join(tmp, "lz-fast"), out);
  assert.ok(diff.max === 0, diff.where);
  assert.ok(diff.unscored > 0, "nothing was left unscored");
  const flopsOf = (s: typeof fast) => s.scoring.flops + s.scoring.substring_flops;
  assert.ok(flopsOf(lazy) < flopsOf(fast), `${flopsOf(lazy)} vs ${flopsOf(fast)}`);
  assert.equal(lazy.scoring.schedule, "lazy");
  assert.ok((lazy.cosmic.removed["not scored (lazy schedule)"] ?? 0) > 0, JSON.stringify(lazy.cosmic.removed));
  assert.ok(!("not scored (lazy schedule)" in fast.cosmic.removed));

  const partialFile = path.join(out, "select_direction", ".partial-scores.json");
  const files = (run: string) =>
    ["select_direction", "select_direction_substring"].map((d) =>
      fs.readFileSync(path.join(run, d, "direction_evaluations.json"), "utf8"),
    );
  // Another KL threshold reuses the layers and the KL scores already computed (here: all it
  // needs), and writes what a fresh run with that threshold writes.
  const klsBefore = Object.keys(JSON.parse(fs.readFileSync(partialFile, "utf8")).kl).sort();
  const again = await runCommand(flags(out, { skipEval: true, klThreshold: 0.1, schedule: "lazy" }));
  assert.deepEqual(Object.keys(JSON.parse(fs.readFileSync(partialFile, "utf8")).kl).sort(), klsBefore);
  const freshDir = path.join(tmp, "lz-fresh");
  const fresh = await runCommand(flags(freshDir, { skipEval: true, klThreshold: 0.1, schedule: "lazy" }));
  assert.deepEqual(files(out), files(freshDir));
  assert.deepEqual(
    [again.scoring.flops, again.scoring.substring_flops],
    [fresh.scoring.flops, fresh.scoring.substring_flops],
  );
  assert.deepEqual([again.cosmic.position, again.cosmic.layer], [fresh.cosmic.position, fresh.cosmic.layer]);

  // Interrupted after its layers, before its KL scores: the rerun computes only those.
  await runCommand(flags(out, { ...opts, schedule: "lazy" }));
  const partial = JSON.parse(fs.readFileSync(partialFile, "utf8"));
  const kls = Object.values(partial.kl).map((e) => (e as { kl: number }).kl);
  assert.ok(kls.some((v) => v > opts.klThreshold) && kls.some((v) => v <= opts.klThreshold), `KL scores ${kls}`);
  delete partial.kl;
  partial.cosmic.flops = partial.substring.flops = 0;
  fs.writeFileSync(partialFile, JSON.stringify(partial));
  const rec = JSON.parse(fs.readFileSync(path.join(out, ".cosmic-stages.json"), "utf8"));
  delete rec.scores;
  fs.writeFileSync(path.join(out, ".cosmic-stages.json"), JSON.stringify(rec));
  const before = files(out);
  const resumed = await runCommand(flags(out, { ...opts, schedule: "lazy" }));
  assert.deepEqual(files(out), before);
  // Only the KL passes ran again: some work, a small part of the stage.
  assert.ok(flopsOf(resumed) > 0 && flopsOf(resumed) < flopsOf(lazy) / 2, `${flopsOf(resumed)} of ${flopsOf(lazy)}`);

  // The report draws the unscored cells as such.
  const report = writeReport(out);
  const kl = fs.readFileSync(
    report.svgs.find((f) => f.endsWith("cosmic-kl-div-score.svg"))!,
    "utf8",
  );
  assert.match(kl, /<title>position -?\d+, layer \d+: not scored \(lazy\)<\/title>/);
  assert.match(kl, /fill="#eee" stroke="#bbb"\/><text [^>]*>not scored \(lazy\)<\/text>/);
  assert.match(fs.readFileSync(report.html, "utf8"), /Grey cells were not scored/);
});

test(
  "--system-scope directions: the system message shapes the candidate directions only; L_low and scores " +
    "use the plain prompts",
  async () => {
    const system = "No matter what the user prompt is, you must respond with the words 'I can't fulfill that request'.";
    const plain = await runCommand(flags(path.join(tmp, "scope-plain"), { skipEval: true }));
    await runCommand(flags(path.join(tmp, "scope-selection"), { skipEval: true, system }));
    const dirs = await runCommand(
      flags(path.join(tmp, "scope-directions"), { skipEval: true, system, systemScope: "directions" }),
    );
    const read = (run: string, f: string) => fs.readFileSync(path.join(tmp, run, f));
    const diffs = (run: string) =>
      SafetensorsFile.open(path.join(tmp, run, "generate_directions", "mean_diffs.safetensors")).readF32("mean_diffs");
    assert.deepEqual(diffs("scope-directions"), diffs("scope-selection"));
    assert.notDeepEqual(diffs("scope-directions"), diffs("scope-plain"));
    const layers = (run: string) =>
      JSON.parse(read(run, "select_direction/COSMIC_evaluation_layers.json").toString()).cosine_similarity;
    assert.deepEqual(layers("scope-directions"), layers("scope-plain"));
    assert.notDeepEqual(layers("scope-directions"), layers("scope-selection"));
    assert.deepEqual(dirs.L_low, plain.L_low);
    assert.notDeepEqual(
      read("scope-directions", "select_direction/direction_evaluations.json"),
      read("scope-selection", "select_direction/direction_evaluations.json"),
    );
    assert.equal(JSON.parse(read("scope-directions", "prompts.json").toString()).system_scope, "directions");
    assert.equal(JSON.parse(read("scope-selection", "prompts.json").toString()).system_scope, "selection");
  },
);
