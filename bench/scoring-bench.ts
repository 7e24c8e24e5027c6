/**
 * The COSMIC scoring stage, fast schedule against the naive one (the reference's full forward
 * passes per candidate, logits at every position), on one model; and the whole stage (COSMIC and
 * the substring baseline) under the lazy schedule against the fast one. Prints one JSON line.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { runCommand, RunFlags, runFlags } from "../src/cli/run.js";
import { maxScoreDifference } from "../test/helpers.js";

async function main(): Promise<void> {
  const [model, data, nTrain, nVal, positions] = process.argv.slice(2);
  const out = fs.mkdtempSync(path.join(os.tmpdir(), "cosmic-scoring-bench-"));
  const flags = (schedule: string): RunFlags =>
    runFlags({
      model,
      out: path.join(out, schedule),
      data,
      nTrain: Number(nTrain),
      nVal: Number(nVal),
      schedule,
      quiet: true,
      skipEval: true,
      ...(positions !== "all" ? { scorePositions: Number(positions) } : {}),
    });
  const fast = await runCommand(flags("fast"));
  const naive = await runCommand(flags("naive"));
  const lazy = await runCommand(flags("lazy"));
  const maxDiff = maxScoreDifference(path.join(out, "fast"), path.join(out, "naive")).max;
  const lazyDiff = maxScoreDifference(path.join(out, "fast"), path.join(out, "lazy"));
  const both = (s: typeof fast) => ({
    flops: s.scoring.flops + s.scoring.substring_flops,
    seconds: s.timings.scoring_seconds + s.timings.substring_scoring_seconds,
  });
  const at = (s: typeof fast) => JSON.stringify([s.cosmic, s.substring].map((x) => x && [x.position, x.layer]));
  fs.rmSync(out, { recursive: true, force: true });
  console.log(
    JSON.stringify({
      layers: fast.layers,
      L_low: fast.L_low,
      positions: positions,
      fast: { ...fast.scoring, seconds: fast.timings.scoring_seconds },
      naive: { ...naive.scoring, seconds: naive.timings.scoring_seconds },
      maxScoreDiff: maxDiff,
      selectedSame: fast.cosmic.position === naive.cosmic.position && fast.cosmic.layer === naive.cosmic.layer,
      // Both methods: the lazy schedule against the fast one.
      fastBoth: both(fast),
      lazyBoth: both(lazy),
      lazyMaxScoreDiff: lazyDiff.max,
      lazyUnscored: lazyDiff.unscored,
      lazySelectedSame: at(lazy) === at(fast),
    }),
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
