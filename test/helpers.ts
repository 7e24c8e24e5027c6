import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
/** The repository root (tests run from dist/test). */
export const ROOT = path.resolve(here, "..", "..");
/** ../shared beside the repository: fixtures and data, read in place, never copied. */
export const SHARED = path.resolve(ROOT, "..", "shared");
export const FIXTURES = path.join(SHARED, "fixtures");
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
