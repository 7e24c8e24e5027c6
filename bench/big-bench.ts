/**
 * A Llama-3-8B-shaped random checkpoint (BF16 on disk, ~16 GB, written once into the bench
 * folder): `cosmic capture` and a short `cosmic run` with quantised weights, in this process,
 * reporting wall time and peak RSS (the target is ≤ 16 GB). Prints one JSON line.
 * Usage: node dist/bench/big-bench.js CACHE_DIR [WEIGHTS=int8] (tokenizer files: the llama fixture's)
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { captureCommand } from "../src/cli/run-engine.js";
import { runCommand, runFlags } from "../src/cli/run.js";
import type { WeightFormat } from "../src/engine/quantize.js";
import { ensureShaped, LLAMA3_8B_CONFIG } from "./checkpoint.js";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

async function main(): Promise<void> {
  const [cacheDir, weightsArg] = process.argv.slice(2);
  const tokenizerFrom = path.join(root, "test", "fixtures", "llama");
  const weights = (weightsArg ?? "int8") as WeightFormat;
  const model = ensureShaped(
    path.join(cacheDir, "llama-3-8b-shaped"),
    LLAMA3_8B_CONFIG,
    "Llama-3-8B",
    tokenizerFrom,
    (s) => console.error(s),
  );
  const splits = path.join(root, "data", "cosmic-splits");
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "cosmic-big-"));
  const t0 = performance.now();
  await captureCommand({
    model,
    prompts: path.join(splits, "harmful_val.json"),
    limit: 4,
    seed: 1,
    batchSize: 4,
    out: path.join(work, "acts.safetensors"),
    quiet: true,
    device: "cpu",
    weights,
  });
  const captureSeconds = (performance.now() - t0) / 1000;
  const captureRss = process.resourceUsage().maxRSS * 1024;
  const t1 = performance.now();
  const s = await runCommand(
    runFlags({
      model,
      out: path.join(work, "run"),
      data: splits,
      nTrain: 4,
      nVal: 2,
      scorePositions: 1,
      skipEval: true,
      quiet: true,
      weights,
    }),
  );
  const runSeconds = (performance.now() - t1) / 1000;
  fs.rmSync(work, { recursive: true, force: true });
  console.log(
    JSON.stringify({
      weights,
      captureSeconds,
      captureRss,
      runSeconds,
      peakRss: process.resourceUsage().maxRSS * 1024,
      layers: s.layers,
      lLow: s.L_low,
      selected: { layer: s.cosmic.layer, position: s.cosmic.position },
      scoringGflop: s.scoring.flops / 1e9,
    }),
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
