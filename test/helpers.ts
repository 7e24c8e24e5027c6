import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
/** The repository root (tests run from dist/test). */
export const ROOT = path.resolve(here, "..", "..");
/** Test fixtures (tiny checkpoints with reference activations; see test/fixtures/README.md). */
export const FIXTURES = path.join(ROOT, "test", "fixtures");
/** The paper's prompt splits, shipped with cosmic (data/cosmic-splits, with its LICENSE). */
export const SPLITS = path.join(ROOT, "data", "cosmic-splits");
/** Recorded completions of five real models with the authors' verdicts (test/data, with its LICENSE). */
export const REFERENCE_RUNS = path.join(ROOT, "test", "data", "refusal-direction-runs");
export const FAMILIES = ["llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "phi3"] as const;

/** ‖a − b‖ / ‖b‖ */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  if (den === 0) throw new Error("reference is all zeros: a comparison against it proves nothing");
  return Math.sqrt(num / den);
}
