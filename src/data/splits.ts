/** The paper's prompt splits, shipped in the package (data/cosmic-splits, Apache 2.0). */
import path from "node:path";
import { fileURLToPath } from "node:url";

/** dist/src/data → the package root. */
export const PAPER_SPLITS = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  "..",
  "..",
  "..",
  "data",
  "cosmic-splits",
);
