/**
 * The cost of the run fingerprint (a full sha256 of every model file, cached per file by size,
 * mtime, ctime and inode) on a 1 GiB checkpoint, against the ceilings measured in the same run:
 * sha256 of an in-memory buffer and a plain read of the file.
 * `node dist/bench/fingerprint-bench.js [MiB]` prints one JSON line.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { modelFingerprint } from "../src/model/fingerprint.js";

const mib = Number(process.argv[2] ?? 1024);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cosmic-fp-"));
const file = path.join(dir, "model.safetensors");
const chunk = crypto.randomBytes(8 << 20);
const fd = fs.openSync(file, "w");
for (let i = 0; i < mib / 8; i++) fs.writeSync(fd, chunk);
fs.closeSync(fd);
fs.writeFileSync(path.join(dir, "config.json"), "{}\n");
const cache = path.join(dir, ".hashes.json");
const time = (f: () => void) => {
  const t0 = performance.now();
  f();
  return (performance.now() - t0) / 1000;
};

const inMemory = time(() => {
  const h = crypto.createHash("sha256");
  for (let i = 0; i < mib / 8; i++) h.update(chunk);
  h.digest();
});
const read = time(() => {
  const b = Buffer.allocUnsafe(8 << 20);
  const d = fs.openSync(file, "r");
  while (fs.readSync(d, b, 0, b.length, null) > 0);
  fs.closeSync(d);
});
const first = time(() => modelFingerprint(dir, cache));
const cached = time(() => modelFingerprint(dir, cache));
fs.rmSync(dir, { recursive: true, force: true });
const gibs = mib / 1024;
console.log(
  JSON.stringify({
    size_gib: gibs,
    fingerprint_first_s: first,
    fingerprint_first_gib_s: gibs / first,
    fingerprint_cached_s: cached,
    ceiling_sha256_in_memory_gib_s: gibs / inMemory,
    ceiling_read_page_cache_gib_s: gibs / read,
  }),
);
