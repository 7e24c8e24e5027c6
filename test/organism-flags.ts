import path from "node:path";
import { RunFlags, runFlags } from "../src/cli/run.js";
import { ROOT } from "./helpers.js";

const GUARD = path.join(ROOT, "organisms", "guard");

/** `cosmic run` flags for an organism, at the sizes the organism tests use. */
export function organismRunFlags(model: string, out: string, extra: Partial<RunFlags> = {}): RunFlags {
  return runFlags({
    model,
    out,
    data: path.join(model, "prompts"),
    nVal: 64,
    nTest: 100,
    maxNewTokens: 32,
    quiet: true,
    judgeModel: GUARD,
    ...extra,
  });
}
