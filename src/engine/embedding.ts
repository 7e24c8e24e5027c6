/** Token embedding lookup on the host: rows are decoded from the checkpoint's own dtype on demand. */
import { DType, decodeToF32, dtypeBytes } from "../formats/dtype.js";
import { Checkpoint } from "../formats/safetensors.js";

export class Embedding {
  private readonly raw: Uint8Array;
  private readonly dtype: DType;
  readonly width: number;
  readonly vocab: number;
  private readonly scale: number;

  constructor(ck: Checkpoint, vocab: number, width: number, scale: number) {
    const name = "model.embed_tokens.weight";
    this.raw = ck.fileOf(name).readBytes(name);
    this.dtype = ck.info(name).dtype;
    this.width = width;
    this.vocab = vocab;
    this.scale = scale;
  }

  /** Embeddings of `ids`, written into `out` at row offsets (× the family's scale). */
  lookup(ids: ArrayLike<number>, out: Float32Array, outOffsetRows = 0): void {
    const rowBytes = this.width * dtypeBytes(this.dtype);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (id < 0 || id >= this.vocab) throw new Error(`token id ${id} outside the vocabulary (${this.vocab})`);
      const row = decodeToF32(this.raw.subarray(id * rowBytes, (id + 1) * rowBytes), this.dtype);
      const o = (outOffsetRows + i) * this.width;
      if (this.scale === 1) out.set(row, o);
      else for (let k = 0; k < this.width; k++) out[o + k] = Math.fround(row[k] * this.scale);
    }
  }
}
