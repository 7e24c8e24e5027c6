/**
 * Fingerprints of a model folder: the full one (every byte that matters, for reusing a run's
 * stages) and a cheap identity (for the model a direction file names).
 */
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { writeFileAtomic } from "../formats/files.js";

type HashCache = Record<string, { size: number; mtimeMs: number; ctimeMs: number; ino: number; sha256: string }>;

/** sha256 of a whole file, read in 8 MiB pieces. */
export function hashFile(file: string): string {
  const h = crypto.createHash("sha256");
  const fd = fs.openSync(file, "r");
  const buf = Buffer.allocUnsafe(8 << 20);
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest("hex");
}

/**
 * A fingerprint of a model folder that covers every byte that matters: each file's full sha256
 * (all files but *.md and dot files; sub-folders such as an organism's prompts/ are covered by
 * the prompt hashes). Hashes are cached in `cacheFile` by path, size, mtime, ctime and inode, so
 * a rerun reads no weights unless a file changed.
 */
export function modelFingerprint(dir: string, cacheFile?: string): string {
  let cache: HashCache = {};
  if (cacheFile) {
    try {
      cache = JSON.parse(fs.readFileSync(cacheFile, "utf8")) as HashCache;
    } catch {
      cache = {};
    }
  }
  const next: HashCache = {};
  const h = crypto.createHash("sha256");
  const real = fs.realpathSync(dir);
  for (const f of fs.readdirSync(real).sort()) {
    if (f.startsWith(".") || f.endsWith(".md")) continue;
    const p = path.join(real, f);
    const st = fs.statSync(p);
    if (!st.isFile()) continue;
    const c = cache[p];
    const sha =
      c && c.size === st.size && c.mtimeMs === st.mtimeMs && c.ctimeMs === st.ctimeMs && c.ino === st.ino
        ? c.sha256
        : hashFile(p);
    next[p] = { size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, ino: st.ino, sha256: sha };
    h.update(f).update("\u0000").update(sha).update("\u0000");
  }
  if (cacheFile) writeFileAtomic(cacheFile, JSON.stringify({ ...cache, ...next }, null, 1) + "\n");
  return h.digest("hex").slice(0, 16);
}

/**
 * A cheap identity of a model (config, every safetensors header and the first and last MiB of
 * each weights file): enough to tell two checkpoints of one architecture apart, for the
 * metadata of a direction. Staleness of results uses the full modelFingerprint.
 */
export function modelIdentity(dir: string): string {
  const h = crypto.createHash("sha256");
  for (const f of fs.readdirSync(dir).sort()) {
    const p = path.join(dir, f);
    if (!fs.statSync(p).isFile()) continue;
    if (f === "config.json") h.update(f).update(fs.readFileSync(p));
    else if (f.endsWith(".safetensors")) {
      const size = fs.statSync(p).size;
      const fd = fs.openSync(p, "r");
      try {
        const n = Math.min(size, 1 << 20);
        const head = Buffer.alloc(n);
        const tail = Buffer.alloc(n);
        fs.readSync(fd, head, 0, n, 0);
        fs.readSync(fd, tail, 0, n, size - n);
        h.update(f).update(String(size)).update(head).update(tail);
      } finally {
        fs.closeSync(fd);
      }
    }
  }
  return h.digest("hex").slice(0, 16);
}
