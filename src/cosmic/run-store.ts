/**
 * A run folder's stage records: each stage's outputs are written atomically, then the stage is
 * recorded with the key (a hash of everything it depends on) it was computed for. A rerun with
 * the same key reuses the outputs; a different key recomputes them.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "../formats/files.js";

export class RunStore {
  readonly dir: string;
  private readonly recordFile: string;
  private records: Record<string, string>;

  constructor(dir: string) {
    this.dir = dir;
    fs.mkdirSync(dir, { recursive: true });
    this.recordFile = path.join(dir, ".cosmic-stages.json");
    try {
      this.records = JSON.parse(fs.readFileSync(this.recordFile, "utf8")) as Record<string, string>;
    } catch {
      this.records = {};
    }
  }

  path(...parts: string[]): string {
    return path.join(this.dir, ...parts);
  }

  /** Whether `stage` finished with this key and its files are all present. */
  done(stage: string, key: string, files: string[]): boolean {
    return this.records[stage] === key && files.every((f) => fs.existsSync(this.path(f)));
  }

  finish(stage: string, key: string): void {
    this.records[stage] = key;
    writeFileAtomic(this.recordFile, JSON.stringify(this.records, null, 2) + "\n");
  }

  writeJson(rel: string, value: unknown): void {
    writeFileAtomic(this.path(rel), JSON.stringify(value, null, 4) + "\n");
  }

  readJson<T>(rel: string): T {
    return JSON.parse(fs.readFileSync(this.path(rel), "utf8")) as T;
  }
}

export function hashOf(...parts: unknown[]): string {
  const h = crypto.createHash("sha256");
  for (const p of parts) h.update(typeof p === "string" ? p : JSON.stringify(p)).update("\u0000");
  return h.digest("hex").slice(0, 16);
}

/**
 * A fingerprint of a model folder: its JSON files, and each weight file's size, safetensors
 * header and first and last MiB (hashing whole multi-GB files would take longer than a run stage).
 */
export function modelFingerprint(dir: string): string {
  const h = crypto.createHash("sha256");
  for (const f of fs.readdirSync(dir).sort()) {
    const p = path.join(dir, f);
    if (!fs.statSync(p).isFile()) continue;
    if (f.endsWith(".json") || f.endsWith(".jinja")) h.update(f).update(fs.readFileSync(p));
    else if (f.endsWith(".safetensors")) {
      const size = fs.statSync(p).size;
      const fd = fs.openSync(p, "r");
      const n = Math.min(size, 1 << 20);
      const head = Buffer.alloc(n);
      const tail = Buffer.alloc(n);
      fs.readSync(fd, head, 0, n, 0);
      fs.readSync(fd, tail, 0, n, size - n);
      fs.closeSync(fd);
      h.update(f).update(String(size)).update(head).update(tail);
    }
  }
  return h.digest("hex").slice(0, 16);
}
