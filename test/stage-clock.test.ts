import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { RunStore } from "../src/cosmic/run-store.js";
import { describeStageTimings, STAGE_TIMINGS_FILE, StageClock, StageTimings } from "../src/cosmic/stage-clock.js";
import { runStage, Stage, StageContext } from "../src/cosmic/stage.js";
import { formatSeconds } from "../src/cosmic/estimate.js";
import { describeMachine } from "../src/util/machine.js";
import { scratchDir } from "./helpers.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A stage that takes `ms`, of which `buildMs` are "building sessions" (reported to the clock as
 * such), then `preludeMs` of work before it prints its 0.05 s estimate.
 */
function slowStage(name: string, ms: number, buildMs = 0, preludeMs = 0): Stage<{ x: number }, number> {
  return {
    name,
    files: [`${name}.json`],
    async compute(i, ctx) {
      if (buildMs) {
        await sleep(buildMs);
        ctx.clock.built(buildMs / 1000);
      }
      if (preludeMs) await sleep(preludeMs);
      ctx.clock.estimate(name, 0.05);
      await sleep(ms - buildMs - preludeMs);
      return i.x;
    },
    write(out, ctx) {
      ctx.store.writeJson(`${name}.json`, out);
    },
    read(ctx) {
      return ctx.store.readJson<number>(`${name}.json`);
    },
  };
}

/** One invocation of a two-stage run over `dir`: its stage timings. */
let lastElapsedA = 0;

async function invoke(
  dir: string,
  inputs: { a: number; b: number },
  reach: "a" | "both" = "both",
): Promise<StageTimings> {
  const store = RunStore.open(dir, []);
  const clock = new StageClock(store);
  const ctx = { store, clock, options: { log: () => {} } } as unknown as StageContext;
  try {
    const t0 = performance.now();
    await runStage(slowStage("a", 120, 60), { x: inputs.a }, ctx);
    lastElapsedA = (performance.now() - t0) / 1000;
    if (reach === "both") await runStage(slowStage("b", 40), { x: inputs.b }, ctx);
    return clock.finish();
  } finally {
    store.close();
  }
}

test("stage timings: computed stages timed without the sessions' build, kept when reused, dropped when recomputed or not reached", async () => {
  const dir = path.join(scratchDir("cosmic-clock-"), "run");
  const first = await invoke(dir, { a: 1, b: 2 });
  assert.deepEqual(Object.keys(first.stages), ["a", "b"]);
  const a = first.stages.a;
  // 120 ms of which 60 building: the stage's time is its wall-clock time less the 60 ms (timers
  // run late, never early, so at least the 60 ms of its own).
  assert.ok(a.seconds >= 0.059 && a.seconds <= lastElapsedA - 0.06 + 1e-3, `${a.seconds} of ${lastElapsedA}`);
  // The estimate printed (0.05 s) plus what the stage had run by then: nothing but its build, which
  // the clock leaves out, so only the build's sleep running late (at most the whole stage's lateness,
  // not a fixed slack that a loaded machine can exceed).
  const late = lastElapsedA - 0.12;
  assert.ok(
    a.estimate_seconds! >= 0.05 && a.estimate_seconds! <= 0.05 + late + 1e-3,
    `${a.estimate_seconds} (stage ran ${late} s late)`,
  );
  assert.equal(first.session_build_seconds, 0.06);
  // Each time names the machine it was measured on.
  assert.equal(a.machine, describeMachine());
  const file = JSON.parse(fs.readFileSync(path.join(dir, STAGE_TIMINGS_FILE), "utf8")) as StageTimings;
  assert.deepEqual(file, first);

  // Same inputs: both stages reused, their times those of the invocation that computed them.
  const again = await invoke(dir, { a: 1, b: 2 });
  assert.deepEqual(again, first);

  // b's inputs change: a's time stays, b's is new.
  const changed = await invoke(dir, { a: 1, b: 3 });
  assert.deepEqual(changed.stages.a, first.stages.a);
  assert.notEqual(changed.stages.b.key, first.stages.b.key);

  // A run that stops after a (as after --skip-eval) lists a alone.
  const short = await invoke(dir, { a: 1, b: 3 }, "a");
  assert.deepEqual(Object.keys(short.stages), ["a"]);
  // A recomputed a replaces its old time.
  const other = await invoke(dir, { a: 5, b: 3 }, "a");
  assert.notEqual(other.stages.a.key, first.stages.a.key);
});

test("stage timings: an unreadable file is replaced, not trusted", async () => {
  const dir = path.join(scratchDir("cosmic-clock-bad-"), "run");
  await invoke(dir, { a: 1, b: 2 }, "a");
  fs.writeFileSync(path.join(dir, STAGE_TIMINGS_FILE), '{"stages": {"a": {"key": 3}}, "session_build_seconds": "x"}');
  const t = await invoke(dir, { a: 1, b: 2 });
  // a was reused, but its old time is unreadable: it has none; b was computed.
  assert.deepEqual(Object.keys(t.stages), ["b"]);
  assert.equal(t.session_build_seconds, null);
});

test("stage timings: a file from before times named their machine is read, its machine unknown", async () => {
  const dir = path.join(scratchDir("cosmic-clock-old-"), "run");
  const first = await invoke(dir, { a: 1, b: 2 });
  const old = { ...first, stages: { a: { key: first.stages.a.key, seconds: 7, estimate_seconds: null } } };
  fs.writeFileSync(path.join(dir, STAGE_TIMINGS_FILE), JSON.stringify(old));
  const t = await invoke(dir, { a: 1, b: 2 });
  assert.deepEqual(t.stages.a, { key: first.stages.a.key, seconds: 7, estimate_seconds: null, machine: null });
});

test("stage timings: an estimate printed partway through a stage is kept with the time the stage had run by then", async () => {
  const dir = path.join(scratchDir("cosmic-clock-"), "run");
  const store = RunStore.open(dir, []);
  const clock = new StageClock(store);
  const ctx = { store, clock, options: { log: () => {} } } as unknown as StageContext;
  try {
    // 80 ms of clean passes, then the long part's estimate (0.05 s), then 40 ms of it.
    await runStage(slowStage("scores", 120, 0, 80), { x: 1 }, ctx);
    const t = clock.finish().stages.scores;
    assert.ok(
      t.estimate_seconds! >= 0.079 + 0.05 && t.estimate_seconds! <= t.seconds - 0.039 + 0.05,
      JSON.stringify(t),
    );
  } finally {
    store.close();
  }
});

test("stage timings: one line, with each printed estimate and how far off it was", () => {
  const line = describeStageTimings(
    {
      stages: {
        directions: { key: "k1", seconds: 197, estimate_seconds: null, machine: null },
        scores: { key: "k2", seconds: 5766, estimate_seconds: 5280, machine: null },
        evaluation: { key: "k3", seconds: 3000, estimate_seconds: 6120, machine: null },
      },
      session_build_seconds: 38,
    },
    formatSeconds,
  );
  assert.equal(
    line,
    "stage times: directions 3 min, scores 1.6 h (estimate 88 min, +9 %), evaluation 50 min (estimate 1.7 h, -51 %); " +
      "building sessions 38 s",
  );
});
