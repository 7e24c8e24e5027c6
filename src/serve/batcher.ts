/**
 * Continuous batching: every request is a row of one running batch, with its own KV cache
 * columns, position, sampling, seed and intervention. Each step admits waiting requests (their
 * prompts are prefilled together, then their caches are merged into the batch's), runs one
 * decode step for every row, and drops the rows that finished or whose client went away. A
 * request waits at most one decode step to join.
 *
 * Cache layout (engine/kv-cache.ts): per layer one [B, K, capacity, hd] key and value array;
 * row b's real keys are its last `len` filled columns (rows right-aligned, padding on the left,
 * as in generate.ts), so every row appends at the same column, in place. The capacity grows by
 * GROW columns when it runs out, and is rebuilt when rows join or leave.
 */
import { CosmicError } from "../errors.js";
import { Engine } from "../engine/engine.js";
import { decodeLayers, prefill } from "../engine/generate.js";
import { Intervention, noIntervention } from "../engine/interventions.js";
import { GROW, KvCache } from "../engine/kv-cache.js";
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
  /** the running rows' cache, row for row (null when none runs) */
  private cache: KvCache | null = null;
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
          this.cache = null;
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
    const added = KvCache.fromBlocks(
      engine.spec,
      keys,
      values,
      fresh.map((r) => r.req.prompt.length),
    );
    this.merge(fresh, added);
    this.sampleRows(fresh, logits);
  }

  /** One new token for every row. */
  private async decodeStep(): Promise<void> {
    const engine = this.engine;
    const rows = this.rows;
    let cache = this.cache!;
    if (cache.filled === cache.capacity) cache = this.cache = cache.resized(cache.capacity + GROW);
    const x = await decodeLayers(
      engine,
      rows.map((r) => r.pending),
      cache,
      rows.map((r) => r.iv),
    );
    const { logits } = await engine.runHead(x, rows.length);
    this.steps++;
    this.rowSteps += rows.length;
    this.sampleRows(rows, logits);
  }

  /** Append the newcomers (their prefill's cache), right-aligning both sides. */
  private merge(fresh: Row[], added: KvCache): void {
    const old = this.cache;
    const parts = [
      ...this.rows.map((_, row) => ({ cache: old!, row })),
      ...fresh.map((_, row) => ({ cache: added, row })),
    ];
    const filled = Math.max(old?.filled ?? 0, added.filled);
    this.cache = KvCache.gather(parts, filled, filled + GROW);
    this.rows = [...this.rows, ...fresh];
  }

  /** Drop finished and cancelled rows, and the cache columns no remaining row uses. */
  private compact(): void {
    for (const r of this.rows) if (r.cancelled && !r.done) this.finish(r, "cancelled");
    const keep = this.rows.map((r, b) => (r.done ? -1 : b)).filter((b) => b >= 0);
    if (keep.length === this.rows.length) return;
    const cache = this.cache!;
    this.rows = keep.map((b) => this.rows[b]);
    if (keep.length === 0) {
      this.cache = null;
      return;
    }
    const filled = Math.max(...keep.map((b) => cache.length(b)));
    this.cache = KvCache.gather(
      keep.map((row) => ({ cache, row })),
      filled,
      filled + GROW,
    );
  }
}
