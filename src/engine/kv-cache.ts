/**
 * A batch's KV cache with spare capacity: per layer, keys and values [B, K, capacity, hd] whose
 * first `filled` columns hold positions, each row's real ones right-aligned (its last
 * `lengths[b]` filled columns; padding before them). A decode step writes its one new column at
 * `filled` in place. (A cache grown by concatenation was copied whole by every block in every
 * step, and again into JavaScript: at 32 rows on the Qwen3-0.6B shape a step took 0.66 s at 25
 * cached positions and 1.29 s at 80, against ~0.4 s of compute.) The spare columns are masked;
 * attention runs over them (a few percent of a step's FLOPs at these lengths).
 */
import type { ModelSpec } from "../formats/config.js";
import { floatTensor, Tensor } from "./runtime.js";

/** Spare columns added at a time: a rebuild every GROW steps, attention over at most GROW masked columns. */
export const GROW = 64;

/**
 * generate()'s capacity at decode step k (1-based) of a batch padded to T with M new tokens:
 * room for GROW more positions at a time, never more than the reply needs.
 */
export function decodeCapacity(T: number, M: number, k: number): number {
  return Math.min(T + M - 1, T + GROW * Math.ceil(k / GROW));
}

export class KvCache {
  private constructor(
    private readonly K: number,
    private readonly hd: number,
    private readonly keys: Float32Array[],
    private readonly values: Float32Array[],
    readonly capacity: number,
    private filledColumns: number,
    private readonly rowLengths: number[],
  ) {}

  /** Columns that hold positions (the next step writes at this column). */
  get filled(): number {
    return this.filledColumns;
  }

  get rows(): number {
    return this.rowLengths.length;
  }

  /** Real positions of row `b` (the last `length(b)` filled columns). */
  length(b: number): number {
    return this.rowLengths[b];
  }

  /** The blocks' keys and values of a prefill ([B, K, T, hd] per layer) as a full cache; `lengths`: each row's real tokens. */
  static fromBlocks(spec: ModelSpec, keys: Tensor[], values: Tensor[], lengths: number[]): KvCache {
    const T = keys[0].dims[2];
    return new KvCache(
      spec.numKvHeads,
      spec.headDim,
      keys.map((k) => k.data as Float32Array),
      values.map((v) => v.data as Float32Array),
      T,
      T,
      [...lengths],
    );
  }

  /**
   * Rows of caches, in order, in a new cache of `capacity` columns: each row's real positions
   * right-aligned at `filled` (at least every row's length, at most `capacity`).
   */
  static gather(parts: { cache: KvCache; row: number }[], filled: number, capacity: number): KvCache {
    const { K, hd } = parts[0].cache;
    const L = parts[0].cache.keys.length;
    const per = K * capacity * hd;
    const keys = Array.from({ length: L }, () => new Float32Array(parts.length * per));
    const values = Array.from({ length: L }, () => new Float32Array(parts.length * per));
    const lengths = parts.map((p) => p.cache.rowLengths[p.row]);
    if (filled > capacity || lengths.some((n) => n > filled))
      throw new Error(`internal: rows of up to ${Math.max(...lengths)} positions in ${filled} of ${capacity} columns`);
    parts.forEach(({ cache: src, row }, i) => {
      const n = src.rowLengths[row];
      for (let l = 0; l < L; l++) {
        for (let k = 0; k < K; k++) {
          const s = ((row * K + k) * src.capacity + src.filledColumns - n) * hd;
          const t = ((i * K + k) * capacity + filled - n) * hd;
          keys[l].set(src.keys[l].subarray(s, s + n * hd), t);
          values[l].set(src.values[l].subarray(s, s + n * hd), t);
        }
      }
    });
    return new KvCache(K, hd, keys, values, capacity, filled, lengths);
  }

  /** The same rows with `capacity` columns. */
  resized(capacity: number): KvCache {
    return KvCache.gather(
      Array.from({ length: this.rows }, (_, row) => ({ cache: this as KvCache, row })),
      this.filledColumns,
      capacity,
    );
  }

  /** Layer `l`'s cache as a block's past ([B, K, capacity, hd]: no copy). */
  past(l: number): { key: Tensor; value: Tensor } {
    const dims = [this.rows, this.K, this.capacity, this.hd];
    return { key: floatTensor(this.keys[l], dims), value: floatTensor(this.values[l], dims) };
  }

  /** Validity [B][capacity + 1] of a decode step's keys (each row's real columns, then the new position) and each row's new position. */
  stepInputs(): { keyValid: Uint8Array[]; positions: number[][] } {
    const F = this.filledColumns;
    const keyValid = this.rowLengths.map((n) => {
      const v = new Uint8Array(this.capacity + 1);
      v.fill(1, F - n, F);
      v[this.capacity] = 1;
      return v;
    });
    return { keyValid, positions: this.rowLengths.map((n) => [n]) };
  }

  /** Layer `l`'s keys and values of one new position per row ([B, K, 1, hd]), written at column `filled`. */
  write(l: number, key: Tensor, value: Tensor): void {
    const F = this.filledColumns;
    if (F >= this.capacity) throw new Error(`internal: the KV cache is full (${this.capacity} columns)`);
    const kd = key.data as Float32Array;
    const vd = value.data as Float32Array;
    const hd = this.hd;
    for (let r = 0; r < this.rows * this.K; r++) {
      const t = (r * this.capacity + F) * hd;
      this.keys[l].set(kd.subarray(r * hd, (r + 1) * hd), t);
      this.values[l].set(vd.subarray(r * hd, (r + 1) * hd), t);
    }
  }

  /** After every layer's write: the new column belongs to every row. */
  advance(): void {
    this.filledColumns++;
    for (let b = 0; b < this.rows; b++) this.rowLengths[b]++;
  }
}
