/** Reading an organism folder's marker (organism.json), to tell an organism from other models. */
import fs from "node:fs";
import path from "node:path";
import { MARKER } from "./train.js";

export interface OrganismInfo {
  /** absent in folders written before the guard kind existed */
  organism_kind?: "chat" | "guard";
  alignment?: "strong" | "weak";
  seed: number;
  steps: number;
  command: string;
}

export function readOrganismInfo(dir: string): OrganismInfo | null {
  const f = path.join(dir, MARKER);
  if (!fs.existsSync(f)) return null;
  try {
    return JSON.parse(fs.readFileSync(f, "utf8")) as OrganismInfo;
  } catch {
    return null;
  }
}

/** The organism's own prompt splits, for `cosmic run` defaults. */
export function organismPromptDir(dir: string): string | undefined {
  const p = path.join(dir, "prompts");
  return readOrganismInfo(dir) && fs.existsSync(p) ? p : undefined;
}
