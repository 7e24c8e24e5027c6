/**
 * Continuous batching: every request is a row of one running batch, with its own KV cache
 * columns, position, sampling, seed and intervention. Each step admits waiting requests (their
 * prompts are prefilled together, then their caches are merged into the batch's), runs one
 * decode step for every row, and drops the rows that finished or whose client went away. A
 * request waits at most one decode step to join.
 *
 * Cache layout: per layer one [B, K, S, hd] key and value tensor; row b's valid keys are its
 * rightmost `len` columns (rows are right-aligned, padding on the left, as in generate.ts), so
 * every row appends at the same column and the mask is built from `len` alone.
 */
import { CosmicError } from "../errors.js";
import { Engine } from "../engine/engine.js";
import { decodeLayers, prefill } from "../engine/generate.js";
import { Intervention, noIntervention } from "../engine/interventions.js";
import { floatTensor, Tensor } from "../engine/runtime.js";
import { Rng } from "../util/random.js";
import { pickToken, Sampling } from "../engine/sampling.js";

export type FinishReason = "stop" | "length" | "cancelled";

export interface RowRequest {
  prompt: number[];
  intervention?: Intervention;
  maxTokens: number;
  sampling: Sampling;
  seed: number;
  /** tokens that end the row without being emitted (the model's EOS); empty to ignore EOS */
  stopTokens: ReadonlySet<number>;
  /** each generated token; return true to end the row here (a stop string matched) */
  onToken: (token: number) => boolean | void;
  /** the row ended; `rows` is the most rows that ran in one batch with it */
  onEnd: (reason: FinishReason, stats: RowStats) => void;
  onError: (e: Error) => void;
}

export interface RowStats {
  promptTokens: number;
  completionTokens: number;
  maxRows: number;
}

export interface BatcherOptions {
  /** the most rows in the running batch */
  maxBatch: number;
  /** the most requests waiting to join; more are refused */
  maxQueue: number;
}

export class QueueFullError extends Error {}

interface Row {
  req: RowRequest;
  rng: Rng;
  iv: Intervention;
  /** valid cache columns */
  len: number;
  generated: number;
  /** the token to feed at the next decode step */
  pending: number;
  maxRows: number;
  done: FinishReason | null;
  cancelled: boolean;
}

export interface Handle {
  cancel(): void;
}

export class ContinuousBatcher {
  private readonly engine: Engine;
  private readonly opts: BatcherOptions;
  private queue: Row[] = [];
  private rows: Row[] = [];
  private keys: Tensor[] = [];
  private values: Tensor[] = [];
  /** cache columns of the batch */
  private S = 0;
  private looping = false;
  private idleWaiters: (() => void)[] = [];
  /** decode steps run so far, and rows summed over them (for the mean batch size) */
  steps = 0;
  rowSteps = 0;

  constructor(engine: Engine, opts: BatcherOptions) {
    this.engine = engine;
    this.opts = opts;
  }

  get running(): number {
    return this.rows.length;
  }

  get waiting(): number {
    return this.queue.length;
  }

  /** Queue a request; it joins the batch at the next step. Throws QueueFullError when the queue is full. */
  submit(req: RowRequest): Handle {
    const ctx = this.engine.spec.maxPositionEmbeddings;
    if (req.prompt.length === 0) throw new CosmicError("the prompt has no tokens");
    if (req.prompt.length + req.maxTokens > ctx)
      throw new CosmicError(
        `${req.prompt.length} prompt tokens + ${req.maxTokens} new tokens exceed the context of ${ctx}`,
      );
    if (this.queue.length >= this.opts.maxQueue) throw new QueueFullError("too many requests are waiting");
    const row: Row = {
      req,
      rng: new Rng(req.seed),
      iv: req.intervention ?? noIntervention(this.engine.numLayers),
      len: 0,
      generated: 0,
      pending: -1,
      maxRows: 0,
      done: null,
      cancelled: false,
    };
    this.queue.push(row);
    if (!this.looping) {
      this.looping = true;
      // Let requests that arrive together join the first prefill together.
      setImmediate(() => void this.loop());
    }
    return {
      cancel: () => {
        if (row.done) return;
        row.cancelled = true;
        const at = this.queue.indexOf(row);
        if (at >= 0) {
          this.queue.splice(at, 1);
          this.finish(row, "cancelled");
        }
      },
    };
  }

  /** Resolves when no request is running or waiting. */
  idle(): Promise<void> {
    if (!this.looping && this.rows.length === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private async loop(): Promise<void> {
    try {
      while (this.rows.length > 0 || this.queue.length > 0) {
        try {
          await this.admit();
          this.compact();
          if (this.rows.length > 0) await this.decodeStep();
          this.compact();
        } catch (e) {
          // An engine failure ends the rows it ran; the server goes on with the next requests.
          const err = e instanceof Error ? e : new Error(String(e));
          for (const r of this.rows) this.fail(r, err);
          this.rows = [];
          this.keys = [];
          this.values = [];
          this.S = 0;
        }
        // Let the HTTP side run: new requests, disconnects.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      this.looping = false;
      for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private finish(row: Row, reason: FinishReason): void {
    if (row.done) return;
    row.done = reason;
    row.req.onEnd(reason, {
      promptTokens: row.req.prompt.length,
      completionTokens: row.generated,
      maxRows: row.maxRows,
    });
  }

  private fail(row: Row, err: Error): void {
    if (row.done) return;
    row.done = "cancelled";
    row.req.onError(err);
  }

  /** A sampled token for `row`: the end, or the token to feed next. */
  private emit(row: Row, token: number): void {
    if (row.cancelled) return this.finish(row, "cancelled");
    // The EOS ends the reply and is not part of it (nor of the usage counts).
    if (row.req.stopTokens.has(token)) return this.finish(row, "stop");
    row.generated++;
    let stop: boolean | void = false;
    try {
      stop = row.req.onToken(token);
    } catch (e) {
      return this.fail(row, e instanceof Error ? e : new Error(String(e)));
    }
    if (stop) return this.finish(row, "stop");
    if (row.generated >= row.req.maxTokens) return this.finish(row, "length");
    row.pending = token;
  }

  private sampleRows(rows: Row[], logits: Float32Array): void {
    const V = this.engine.spec.vocabSize;
    rows.forEach((r, b) => {
      r.maxRows = Math.max(r.maxRows, this.rows.length);
      this.emit(r, pickToken(logits, b * V, V, r.req.sampling, r.rng));
    });
  }

  /** Prefill the waiting requests that fit, sample their first tokens, merge their caches. */
  private async admit(): Promise<void> {
    const room = this.opts.maxBatch - this.rows.length;
    if (room <= 0 || this.queue.length === 0) return;
    const fresh = this.queue.splice(0, room);
    try {
      await this.prefill(fresh);
    } catch (e) {
      // The running rows' caches are untouched: only the newcomers fail.
      const err = e instanceof Error ? e : new Error(String(e));
      for (const r of fresh) this.fail(r, err);
    }
  }

  private async prefill(fresh: Row[]): Promise<void> {
    const engine = this.engine;
    const batch = engine.pad(fresh.map((r) => r.req.prompt));
    const { keys, values, last } = await prefill(
      engine,
      batch,
      fresh.map((r) => r.iv),
    );
    const { logits } = await engine.runHead(last, fresh.length);
    fresh.forEach((r) => (r.len = r.req.prompt.length));
    this.merge(fresh, keys, values, batch.length);
    this.sampleRows(fresh, logits);
  }

  /** One new token for every row. */
  private async decodeStep(): Promise<void> {
    const engine = this.engine;
    const rows = this.rows;
    const S = this.S;
    const keyValid = rows.map((r) => {
      const v = new Uint8Array(S + 1);
      v.fill(1, S - r.len);
      return v;
    });
    const ctx = engine.stepContext(
      keyValid,
      rows.map((r) => [r.len]),
      S,
    );
    const ivs = rows.map((r) => r.iv);
    const x = await decodeLayers(
      engine,
      rows.map((r) => r.pending),
      ctx,
      ivs,
      this.keys,
      this.values,
    );
    this.S = S + 1;
    for (const r of rows) r.len++;
    const { logits } = await engine.runHead(x, rows.length);
    this.steps++;
    this.rowSteps += rows.length;
    this.sampleRows(rows, logits);
  }

  /** Append rows whose caches are [n, K, T, hd] per layer, right-aligning both sides. */
  private merge(fresh: Row[], keys: Tensor[], values: Tensor[], T: number): void {
    if (this.rows.length === 0) {
      this.rows = fresh;
      this.keys = keys;
      this.values = values;
      this.S = T;
      return;
    }
    const S = Math.max(this.S, T);
    const B0 = this.rows.length;
    const join = (old: Tensor, add: Tensor) => {
      const out = new Float32Array((B0 + fresh.length) * this.perRow(S));
      this.copyRows(old.data as Float32Array, this.S, [...Array(B0).keys()], out, S, 0);
      this.copyRows(add.data as Float32Array, T, [...fresh.keys()], out, S, B0);
      return this.tensor(out, B0 + fresh.length, S);
    };
    this.keys = this.keys.map((k, l) => join(k, keys[l]));
    this.values = this.values.map((v, l) => join(v, values[l]));
    this.rows = [...this.rows, ...fresh];
    this.S = S;
  }

  /** Drop finished and cancelled rows, and the cache columns no remaining row uses. */
  private compact(): void {
    for (const r of this.rows) if (r.cancelled && !r.done) this.finish(r, "cancelled");
    const keep = this.rows.map((r, b) => (r.done ? -1 : b)).filter((b) => b >= 0);
    const S = Math.max(0, ...keep.map((b) => this.rows[b].len));
    if (keep.length === this.rows.length && S === this.S) return;
    if (keep.length === 0) {
      this.rows = [];
      this.keys = [];
      this.values = [];
      this.S = 0;
      return;
    }
    const shrink = (t: Tensor) => {
      const out = new Float32Array(keep.length * this.perRow(S));
      this.copyRows(t.data as Float32Array, this.S, keep, out, S, 0);
      return this.tensor(out, keep.length, S);
    };
    this.keys = this.keys.map(shrink);
    this.values = this.values.map(shrink);
    this.rows = keep.map((b) => this.rows[b]);
    this.S = S;
  }

  private perRow(S: number): number {
    return this.engine.spec.numKvHeads * S * this.engine.spec.headDim;
  }

  private tensor(data: Float32Array, B: number, S: number): Tensor {
    const sp = this.engine.spec;
    return floatTensor(data, [B, sp.numKvHeads, S, sp.headDim]);
  }

  /**
   * Copy rows `from` of a [·, K, srcS, hd] array to consecutive rows from `at` of a
   * [·, K, dstS, hd] one, keeping the last min(srcS, dstS) columns right-aligned.
   */
  private copyRows(src: Float32Array, srcS: number, from: number[], dst: Float32Array, dstS: number, at: number): void {
    const K = this.engine.spec.numKvHeads;
    const hd = this.engine.spec.headDim;
    const n = Math.min(srcS, dstS);
    from.forEach((b, i) => {
      for (let k = 0; k < K; k++) {
        const s = ((b * K + k) * srcS + (srcS - n)) * hd;
        const t = (((at + i) * K + k) * dstS + (dstS - n)) * hd;
        dst.set(src.subarray(s, s + n * hd), t);
      }
    });
  }
}
