/**
 * Token embedding lookup on the host. Rows are read from the checkpoint file on demand and
 * decoded from its dtype: a prompt needs a few thousand rows, and keeping the whole matrix in
 * memory would cost vocab × width × 2–4 bytes (272 MB for Qwen2.5-0.5B) for nothing.
 */
import fs from "node:fs";
import { DType, decodeToF32, dtypeBytes } from "../formats/dtype.js";
import { Checkpoint } from "../formats/safetensors.js";
import { TENSORS } from "../formats/families.js";

const NAME = TENSORS.embed;

export class Embedding {
  private readonly fd: number;
  private readonly offset: number;
  private readonly dtype: DType;
  readonly width: number;
  readonly vocab: number;
  private readonly scale: number;
  private readonly rowBytes: number;
  private readonly cache = new Map<number, Float32Array>();

  constructor(ck: Checkpoint, vocab: number, width: number, scale: number) {
    const file = ck.fileOf(NAME);
    const loc = file.location(ck.storedName(NAME));
    this.fd = fs.openSync(file.path, "r");
    this.offset = loc.offset;
    this.dtype = ck.info(NAME).dtype;
    this.width = width;
    this.vocab = vocab;
    this.scale = scale;
    this.rowBytes = width * dtypeBytes(this.dtype);
  }

  private row(id: number): Float32Array {
    let r = this.cache.get(id);
    if (r) return r;
    if (!Number.isInteger(id) || id < 0 || id >= this.vocab)
      throw new Error(`token id ${id} outside the vocabulary (${this.vocab})`);
    const buf = Buffer.alloc(this.rowBytes);
    fs.readSync(this.fd, buf, 0, this.rowBytes, this.offset + id * this.rowBytes);
    r = decodeToF32(buf, this.dtype);
    if (this.scale !== 1) for (let k = 0; k < r.length; k++) r[k] = Math.fround(r[k] * this.scale);
    // Chat prompts repeat the same template tokens; a small cache saves most reads.
    if (this.cache.size < 65536) this.cache.set(id, r);
    return r;
  }

  /** Embeddings of `ids`, written into `out` from row `outOffsetRows` on (× the family's scale). */
  lookup(ids: ArrayLike<number>, out: Float32Array, outOffsetRows = 0): void {
    for (let i = 0; i < ids.length; i++) out.set(this.row(ids[i]), (outOffsetRows + i) * this.width);
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}
