/**
 * `cosmic demo`: the whole method on the committed strong organism, sized to finish in a few
 * minutes on a laptop CPU, then the report.
 */
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CosmicError } from "../errors.js";
import { writeReport } from "../report/report.js";
import { formatSummary, runCommand, RunFlags, runFlags } from "./run.js";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const DEFAULT_ORGANISM = path.join(ROOT, "organisms", "strong");
/** The guard organism: the demo's strongest judge. */
export const GUARD_ORGANISM = path.join(ROOT, "organisms", "guard");

export async function demoCommand(o: {
  out: string;
  model?: string;
  judgeModel?: string;
  quiet?: boolean;
  jsonProgress?: boolean;
}): Promise<void> {
  const model = o.model ?? DEFAULT_ORGANISM;
  const judgeModel =
    o.judgeModel ?? (fs.existsSync(path.join(GUARD_ORGANISM, "config.json")) ? GUARD_ORGANISM : undefined);
  if (!fs.existsSync(path.join(model, "config.json")))
    throw new CosmicError(`${model}: the demo model is missing (train one with: cosmic organism train --out ${model})`);
  // The defaults with 32 new tokens: the organism's answers are short, and the demo is quick.
  const flags: RunFlags = runFlags({
    model,
    out: o.out,
    data: path.join(model, "prompts"),
    maxNewTokens: 32,
    quiet: o.quiet,
    jsonProgress: o.jsonProgress,
    judgeModel,
  });
  const t0 = performance.now();
  const s = await runCommand(flags);
  const rep = writeReport(o.out);
  process.stdout.write(formatSummary(s, o.out) + "\n");
  process.stdout.write(`report: ${rep.html} (${rep.svgs.length} plots, also as SVG files beside it)\n`);
  process.stdout.write(`demo finished in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
}
