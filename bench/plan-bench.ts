/**
 * The projected time of a default `cosmic run` (the paper's splits, n_train 180, n_val 100,
 * n_test 512, 64 new tokens) on a model folder: `cosmic run --dry-run`'s estimates, with a real
 * tokenizer for a random checkpoint. Prints one JSON line.
 * Usage: node dist/bench/plan-bench.js MODEL_DIR [TOKENIZER_DIR]
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { planFor, runFlags } from "../src/cli/run.js";
import { PAPER_SPLITS } from "../src/data/splits.js";
import { withTokenizer } from "./checkpoint.js";

async function main(): Promise<void> {
  const [model, tokenizer] = process.argv.slice(2);
  const dir = tokenizer ? withTokenizer(model, tokenizer) : model;
  const out = path.join(os.tmpdir(), `cosmic-plan-${process.pid}`);
  const plan = await planFor(runFlags({ model: dir, out, data: PAPER_SPLITS, quiet: true }));
  if (fs.existsSync(out)) throw new Error("the dry run wrote a run folder");
  console.log(JSON.stringify({ ...plan.seconds, lines: plan.lines }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
