/** `cosmic export direction`: a run's direction as safetensors, NumPy .npy or JSON. */
import fs from "node:fs";
import path from "node:path";
import { CosmicError, fileError } from "../errors.js";
import { readDirection } from "../formats/direction.js";
import { writeFileAtomic } from "../formats/files.js";
import { prepareFileOutput } from "../formats/outputs.js";

export type DirectionFormat = "safetensors" | "npy" | "json";

/** NumPy format 1.0: magic, header length, a Python-dict header padded to 64 bytes, the data. */
export function encodeNpy(v: Float32Array): Buffer {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${v.length},), }`;
  const total = 10 + header.length + 1;
  header += " ".repeat((64 - (total % 64)) % 64) + "\n";
  const pre = Buffer.alloc(10);
  pre.write("\x93NUMPY", 0, "latin1");
  pre[6] = 1;
  pre[7] = 0;
  pre.writeUInt16LE(header.length, 8);
  return Buffer.concat([pre, Buffer.from(header, "latin1"), Buffer.from(v.buffer, v.byteOffset, v.byteLength)]);
}

export function exportDirection(runDir: string, format: DirectionFormat, out?: string, force = false): string {
  const src = path.join(runDir, "direction.safetensors");
  if (!fs.existsSync(src)) throw fileError(runDir, "has no direction.safetensors: is it a finished cosmic run folder?");
  const dir = readDirection(src);
  const target = out ?? path.join(runDir, `direction.${format}`);
  // The run's own direction.safetensors is already the safetensors export.
  if (format === "safetensors" && out === undefined) return src;
  // A re-export of the run's own default file is a rewrite of cosmic's output, not a user file.
  const own = out === undefined;
  prepareFileOutput(target, {
    ext: `.${format}`,
    force: force || own,
    inputs: [{ path: src, what: "the run's direction file" }],
  });
  switch (format) {
    case "safetensors":
      writeFileAtomic(target, fs.readFileSync(src));
      break;
    case "npy":
      writeFileAtomic(target, encodeNpy(dir.direction));
      break;
    case "json":
      writeFileAtomic(
        target,
        JSON.stringify(
          {
            ...dir.metadata,
            layer: dir.layer,
            position: dir.metadata.position !== undefined ? Number(dir.metadata.position) : null,
            direction: Array.from(dir.direction),
            reference: dir.reference ? Array.from(dir.reference) : null,
          },
          null,
          2,
        ) + "\n",
      );
      break;
    default:
      throw new CosmicError(`--format must be safetensors, npy or json, got "${format as string}"`);
  }
  return target;
}
