/**
 * A run folder's stage records: each stage's outputs are written atomically, then the stage is
 * recorded with the key (a hash of everything it depends on) it was computed for and the files
 * it wrote. A rerun with the same key reuses those files; a different key recomputes them. At
 * the end of a run every file this run did not produce or reuse is removed, so a run folder
 * never mixes results of other options.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "../formats/files.js";
import { Input, lockFolder, prepareRunFolder, RUN_MARKER } from "../formats/outputs.js";

const RECORDS = ".cosmic-stages.json";
const HASHES = ".cosmic-hashes.json";
/** Files of the folder itself, never results: kept by the clean-up and not listed. */
const INTERNAL = new Set([RUN_MARKER, RECORDS, HASHES, ".cosmic-lock"]);

interface StageRecord {
  key: string;
  files: string[];
}

export class RunStore {
  readonly dir: string;
  private readonly recordFile: string;
  private records: Record<string, StageRecord>;
  /** files written or reused by this run (relative, "/"-separated) */
  private readonly produced = new Set<string>();
  /** files written since the last finished stage */
  private pending = new Set<string>();
  private release: () => void = () => {};

  /**
   * The run folder `dir`, created (with its marker) and locked against another process. It
   * must be new, empty or a cosmic run folder, and clear of every input.
   */
  static open(dir: string, inputs: Input[]): RunStore {
    prepareRunFolder(dir, inputs);
    const release = lockFolder(dir);
    const s = new RunStore(dir);
    s.release = release;
    return s;
  }

  private constructor(dir: string) {
    this.dir = dir;
    this.recordFile = path.join(dir, RECORDS);
    this.records = {};
    try {
      const raw = JSON.parse(fs.readFileSync(this.recordFile, "utf8")) as Record<string, unknown>;
      for (const [k, v] of Object.entries(raw)) {
        const r = v as Partial<StageRecord>;
        if (r && typeof r.key === "string" && Array.isArray(r.files))
          this.records[k] = { key: r.key, files: r.files.filter((f): f is string => typeof f === "string") };
      }
    } catch {
      this.records = {};
    }
  }

  path(...parts: string[]): string {
    return path.join(this.dir, ...parts);
  }

  /** The path to write `rel` to, counted as an output of this run. */
  output(rel: string): string {
    this.produced.add(rel);
    this.pending.add(rel);
    const p = this.path(rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    return p;
  }

  /** Whether `stage` finished with this key and its files are all present (they are then reused). */
  done(stage: string, key: string, files: string[]): boolean {
    const r = this.records[stage];
    const all = r ? [...new Set([...r.files, ...files])] : files;
    if (!r || r.key !== key || !all.every((f) => fs.existsSync(this.path(f)))) return false;
    for (const f of all) this.produced.add(f);
    return true;
  }

  finish(stage: string, key: string): void {
    this.records[stage] = { key, files: [...this.pending].sort() };
    this.pending = new Set();
    writeFileAtomic(this.recordFile, JSON.stringify(this.records, null, 2) + "\n");
  }

  writeJson(rel: string, value: unknown): void {
    writeJsonFile(this.output(rel), value);
  }

  /** A file of the run itself, not of a stage (no stage record lists it); kept by the clean-up. */
  writeRunJson(rel: string, value: unknown): void {
    this.produced.add(rel);
    writeJsonFile(this.path(rel), value);
  }

  readJson<T>(rel: string): T {
    return JSON.parse(fs.readFileSync(this.path(rel), "utf8")) as T;
  }

  /** Per-file hash cache for the model fingerprint, kept in the run folder. */
  get hashCacheFile(): string {
    return this.path(HASHES);
  }

  /**
   * End of a run: remove every file that this run neither wrote nor reused (an old evaluation
   * after --skip-eval, the other method's direction, an old report), then the empty folders.
   * Returns the run's files, sorted, with `also` (written after this call) included.
   */
  finishRun(also: string[] = []): string[] {
    for (const f of also) this.produced.add(f);
    const walk = (rel: string): void => {
      for (const e of fs.readdirSync(this.path(rel), { withFileTypes: true })) {
        const r = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) {
          walk(r);
          if (fs.readdirSync(this.path(r)).length === 0) fs.rmdirSync(this.path(r));
        } else if (!INTERNAL.has(r) && !this.produced.has(r)) fs.rmSync(this.path(r), { force: true });
      }
    };
    walk("");
    return [...this.produced].filter((f) => !f.split("/").some((p) => p.startsWith("."))).sort();
  }

  /** Release the folder's lock (also released when the process exits). */
  close(): void {
    this.release();
  }
}

function writeJsonFile(file: string, value: unknown): void {
  writeFileAtomic(file, JSON.stringify(value, null, 4) + "\n");
}

export function hashOf(...parts: unknown[]): string {
  const h = crypto.createHash("sha256");
  for (const p of parts) h.update(typeof p === "string" ? p : JSON.stringify(p)).update("\u0000");
  return h.digest("hex").slice(0, 16);
}
