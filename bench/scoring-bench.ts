/**
 * The COSMIC scoring stage, fast schedule against the naive one (the reference's full forward
 * passes per candidate, logits at every position), on one model. Prints one JSON line.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { runCommand, RunFlags, runFlags } from "../src/cli/run.js";

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
  let maxDiff = 0;
  for (const sub of ["select_direction", "select_direction_substring"]) {
    const a = JSON.parse(fs.readFileSync(path.join(out, "fast", sub, "direction_evaluations.json"), "utf8")) as Record<
      string,
      number
    >[];
    const b = JSON.parse(fs.readFileSync(path.join(out, "naive", sub, "direction_evaluations.json"), "utf8")) as Record<
      string,
      number
    >[];
    for (let i = 0; i < a.length; i++)
      for (const k of ["refusal_score", "steering_score", "kl_div_score"])
        maxDiff = Math.max(maxDiff, Math.abs(a[i][k] - b[i][k]));
  }
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
    }),
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
