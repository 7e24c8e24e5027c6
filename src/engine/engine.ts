/**
 * The engine: one onnxruntime session per decoder block plus the head's sessions, built from a
 * ModelSpec and its weights. Batches are left-padded; position ids follow HF (cumsum(mask) − 1,
 * padding set to 1). The hook points are described in graphs.ts, captures in forward.ts.
 */
import { CosmicError, fileError } from "../errors.js";
import { ModelSpec } from "../formats/config.js";
import type { Checkpoint } from "../formats/safetensors.js";
import { Embedding } from "./embedding.js";
import { buildBlockGraph, buildHeadGraph, headRowRanges } from "./graphs.js";
import { WeightFormat } from "./quantize.js";
import { blockFlops, headFlops, lastTokenBlockFlops } from "./flops.js";
import { checkEngineFits, resolveWeights, WeightsChoice } from "./memory.js";
export { checkEngineFits, type WeightsChoice } from "./memory.js";
import { TENSORS } from "../formats/families.js";
import {
  checkDevice,
  createSession,
  Device,
  floatTensor,
  probeDevice,
  releaseMemory,
  Session,
  SessionOptions,
  sessionOptions,
  Tensor,
} from "./runtime.js";
import { Intervention, noIntervention } from "./interventions.js";
import { attentionMask, ropeFrequencies, ropeTables } from "./rope.js";

export { checkDevice, DEVICES, probeDevice, type Device } from "./runtime.js";

export interface EngineOptions {
  device?: Device;
  /** intra-op threads per session (default: onnxruntime's choice) */
  threads?: number;
  /** how the weights of the Linear layers are held (default f32; see quantize.ts) */
  weights?: WeightFormat;
  /**
   * build only the first N blocks and no head (unless `withHead`): an engine for timing calls
   * (run estimates), on which only runBlock of those blocks (and runHead) may be called
   */
  firstBlocks?: number;
  withHead?: boolean;
  /** split block calls into row chunks of at most this many tokens (default TOKENS_PER_CALL) */
  tokensPerCall?: number;
  /** called after each session is built */
  onBuild?: (done: number, total: number) => void;
  /**
   * the most weight bytes one session holds (default MAX_SESSION_BYTES); the head is split by
   * vocabulary rows to stay under it
   */
  maxSessionBytes?: number;
}

/** Weight bytes per session: well under onnxruntime's 2 GiB cap on one ONNX protobuf. */
export const MAX_SESSION_BYTES = 1.5 * 2 ** 30;

/**
 * What the block graphs need besides hidden states for one call: T new positions of B rows
 * after `past` cached positions. Host arrays, so a call can be split into row chunks.
 */
export interface StepContext {
  size: number;
  length: number;
  past: number;
  /** [B, T, rotaryDim] */
  cos: Float32Array;
  sin: Float32Array;
  /** the same for layers with a local RoPE base (Gemma 3's sliding layers), else null */
  localCos: Float32Array | null;
  localSin: Float32Array | null;
  /** additive masks [B, 1, T, past + T], keyed by sliding window ("full" for none) */
  masks: Map<string, Float32Array>;
}

/** A block's output [B, T, d], and with `cache` the new positions' keys and values [B, K, T, hd]. */
export interface BlockOutput {
  hidden: Float32Array;
  key: Tensor | null;
  value: Tensor | null;
}

/** A left-padded batch of prompts. */
export interface PaddedBatch extends StepContext {
  /** number of padding tokens on the left of each row */
  pads: number[];
  tokens: number[][];
  keyValid: Uint8Array[];
  positions: number[][];
}

/**
 * Rows × tokens per block call: large enough that a call runs as fast per token as a much larger
 * one (`npm run bench` measures it), small enough that its intermediates are recycled by malloc
 * without onnxruntime's per-session arenas (see runtime.ts's sessionOptions).
 */
export const TOKENS_PER_CALL = 256;

export function nonFinite(dir: string, what: string): CosmicError {
  return fileError(
    dir,
    `the model computed non-finite ${what} (NaN or Inf in float32): its weights are corrupt or overflow`,
  );
}

/**
 * What the engine needs of a model: its spec, a weights source and its EOS token ids — not its
 * tokenizer or chat template (a ModelFolder is one).
 */
export interface EngineModel {
  readonly spec: ModelSpec;
  readonly checkpoint: Checkpoint;
  readonly eosTokenIds: number[];
  /** where the weights come from, for messages */
  readonly dir: string;
}

/**
 * Everything an engine command checks before it writes: the weights' format (`auto` resolved
 * on this machine, announced through `log` when it is not float32), that the model fits, and
 * that the device starts.
 */
export async function preflight(
  folder: EngineModel,
  device: Device,
  weights: WeightsChoice = "f32",
  log: (line: string) => void = () => {},
): Promise<WeightFormat> {
  const { format, note } = resolveWeights(folder.spec, weights);
  checkEngineFits(folder, format);
  await probeDevice(device);
  if (note) log(note);
  return format;
}

export class Engine {
  readonly spec: ModelSpec;
  readonly model: EngineModel;
  readonly device: Device;
  private readonly blocks: Session[];
  /** the head's sessions, each for a range of vocabulary rows */
  private readonly heads: { session: Session; rows: [number, number] }[];
  private lastTokenBlock: Session | null = null;
  private readonly sessionOpts: SessionOptions;
  private readonly embedding: Embedding;
  /** how the Linear layers' weights are held */
  readonly weights: WeightFormat;
  /** seconds spent building sessions */
  readonly buildSeconds: number;
  readonly tokensPerCall: number;
  /** forward-pass FLOPs spent so far (weight products and attention, counted per call) */
  flops = 0;

  private constructor(
    folder: EngineModel,
    device: Device,
    blocks: Session[],
    heads: { session: Session; rows: [number, number] }[],
    buildSeconds: number,
    tokensPerCall: number,
    so: SessionOptions,
    weights: WeightFormat,
  ) {
    this.weights = weights;
    this.tokensPerCall = tokensPerCall;
    this.sessionOpts = so;
    this.model = folder;
    this.spec = folder.spec;
    this.device = device;
    this.blocks = blocks;
    this.heads = heads;
    this.buildSeconds = buildSeconds;
    this.embedding = new Embedding(
      folder.checkpoint,
      this.spec.vocabSize,
      this.spec.hiddenSize,
      this.spec.embeddingScale,
    );
  }

  static async load(folder: EngineModel, opts: EngineOptions = {}): Promise<Engine> {
    const device = opts.device ?? "cpu";
    checkDevice(device);
    const t0 = performance.now();
    const ck = folder.checkpoint;
    const w = (name: string) => {
      const v = ck.readF32(name);
      // A NaN or Inf weight would only show as NaN logits much later.
      for (let i = 0; i < v.length; i++) {
        if (!Number.isFinite(v[i]))
          throw fileError(
            ck.fileOf(name).path,
            `tensor "${ck.storedName(name)}" holds a non-finite value (${v[i]} at index ${i})`,
          );
      }
      return v;
    };
    const weights = opts.weights ?? "f32";
    const so = sessionOptions(device, { threads: opts.threads, arena: false });
    const total = folder.spec.numLayers + 1;
    const create = (bytes: Uint8Array): Promise<Session> => createSession(bytes, so);
    // The head first: its matrix is the largest, and building it while little else is
    // resident keeps the peak low. Large buffers are dropped (and collected) after each build.
    const lmName = folder.spec.tieWordEmbeddings ? TENSORS.embed : TENSORS.lmHead;
    let lm: Float32Array | null = null;
    const wHead = (name: string) => (name === lmName ? (lm ??= w(name)) : w(name));
    const heads: { session: Session; rows: [number, number] }[] = [];
    const nBlocks = opts.firstBlocks ?? folder.spec.numLayers;
    const headRows =
      opts.firstBlocks && !opts.withHead ? [] : headRowRanges(folder.spec, opts.maxSessionBytes ?? MAX_SESSION_BYTES);
    for (const rows of headRows) {
      heads.push({ session: await create(buildHeadGraph(folder.spec, wHead, rows, weights)), rows });
    }
    lm = null;
    releaseMemory();
    opts.onBuild?.(1, total);
    const blocks: Session[] = [];
    for (let l = 0; l < nBlocks; l++) {
      blocks.push(await create(buildBlockGraph(folder.spec, l, w, { weights })));
      releaseMemory();
      opts.onBuild?.(l + 2, total);
    }
    return new Engine(
      folder,
      device,
      blocks,
      heads,
      (performance.now() - t0) / 1000,
      opts.tokensPerCall ?? TOKENS_PER_CALL,
      so,
      weights,
    );
  }

  get numLayers(): number {
    return this.spec.numLayers;
  }

  /** How many blocks have sessions (all but on a `firstBlocks` engine). */
  get builtBlocks(): number {
    return this.blocks.length;
  }

  /** Whether runHead can be called (not on a `firstBlocks` engine built without it). */
  get hasHead(): boolean {
    return this.heads.length > 0;
  }

  /** Left-pad token lists into one batch. */
  pad(tokens: number[][]): PaddedBatch {
    if (tokens.length === 0) throw new CosmicError("no prompts to run");
    const T = Math.max(...tokens.map((t) => t.length));
    if (T === 0) throw new CosmicError("a prompt has no tokens");
    if (T > this.spec.maxPositionEmbeddings) {
      throw new CosmicError(
        `a prompt has ${T} tokens, longer than the model's context of ${this.spec.maxPositionEmbeddings}`,
      );
    }
    const pads = tokens.map((t) => T - t.length);
    const keyValid = tokens.map((t, b) => {
      const v = new Uint8Array(T);
      v.fill(1, pads[b]);
      return v;
    });
    const positions = tokens.map((_, b) => Array.from({ length: T }, (_, j) => (j < pads[b] ? 1 : j - pads[b])));
    return { ...this.stepContext(keyValid, positions, 0), pads, tokens, keyValid, positions };
  }

  /**
   * Rotary tables and masks for new `positions` [B][T] after `past` cached columns, of which the
   * first `filled` hold keys (the rest: a cache's spare capacity, invalid in keyValid).
   */
  stepContext(keyValid: Uint8Array[], positions: number[][], past: number, filled = past): StepContext {
    const B = positions.length;
    const T = positions[0].length;
    // HF's seq_len for the length-dependent RoPE types: the call's largest position + 1.
    let seqLen = 0;
    for (const row of positions) for (const p of row) seqLen = Math.max(seqLen, p + 1);
    const tables = (local: boolean) => {
      const f = ropeFrequencies(this.spec, seqLen, local);
      return ropeTables(f.inv, positions, f.scaling);
    };
    const { cos, sin } = tables(false);
    const local = this.spec.rope.local ? tables(true) : null;
    const masks = new Map<string, Float32Array>();
    for (const win of new Set(this.spec.slidingWindow))
      masks.set(String(win ?? "full"), attentionMask(keyValid, past, T, win, filled));
    return { size: B, length: T, past, cos, sin, localCos: local?.cos ?? null, localSin: local?.sin ?? null, masks };
  }

  /** Block-0 input: token embeddings [B, T, d] of a padded batch (padding rows use token 0). */
  embed(batch: PaddedBatch): Float32Array {
    const d = this.spec.hiddenSize;
    const out = new Float32Array(batch.size * batch.length * d);
    for (let b = 0; b < batch.size; b++) {
      const ids = new Array<number>(batch.length).fill(0);
      batch.tokens[b].forEach((t, j) => (ids[batch.pads[b] + j] = t));
      this.embedding.lookup(ids, out, b * batch.length);
    }
    return out;
  }

  /** Embeddings of `ids` written at row `row` of `out` (rows of width d). */
  embedTokens(ids: number[], out: Float32Array, row: number): void {
    this.embedding.lookup(ids, out, row);
  }

  private hookTensor(rows: Intervention[], pick: (iv: Intervention) => Float32Array | null): Tensor {
    const d = this.spec.hiddenSize;
    const data = new Float32Array(rows.length * d);
    rows.forEach((iv, b) => {
      const v = pick(iv);
      if (v) {
        if (v.length !== d)
          throw new CosmicError(`direction has width ${v.length}, but the model's hidden size is ${d}`);
        data.set(v, b * d);
      }
    });
    return floatTensor(data, [rows.length, d]);
  }

  /**
   * Run block `l` on hidden states [B, T, d]. `rows` holds one intervention per batch row.
   * With `past`, the T new positions follow `ctx.past` cached positions ([B, K, ctx.past, hd];
   * the mask says which of them are valid). With `cache`, the new positions' keys and values
   * come back too ([B, K, T, hd]: the caller keeps the cache; engine/kv-cache.ts). Large calls
   * are split into row chunks of at most TOKENS_PER_CALL tokens (see above).
   */
  async runBlock(
    l: number,
    hidden: Float32Array,
    ctx: StepContext,
    rows: Intervention[],
    opts: { past?: { key: Tensor; value: Tensor }; cache?: boolean } = {},
  ): Promise<BlockOutput> {
    const B = ctx.size;
    const T = ctx.length;
    const chunk = Math.max(1, Math.floor(this.tokensPerCall / T));
    if (chunk >= B) return this.runBlockRows(l, hidden, ctx, rows, 0, B, opts);
    const d = this.spec.hiddenSize;
    const K = this.spec.numKvHeads;
    const hd = this.spec.headDim;
    const out = new Float32Array(B * T * d);
    const keys = opts.cache ? new Float32Array(B * K * T * hd) : null;
    const values = opts.cache ? new Float32Array(B * K * T * hd) : null;
    for (let r0 = 0; r0 < B; r0 += chunk) {
      const r1 = Math.min(B, r0 + chunk);
      const o = await this.runBlockRows(l, hidden, ctx, rows, r0, r1, opts);
      out.set(o.hidden, r0 * T * d);
      keys?.set(o.key!.data as Float32Array, r0 * K * T * hd);
      values?.set(o.value!.data as Float32Array, r0 * K * T * hd);
    }
    const dims = [B, K, T, hd];
    return {
      hidden: out,
      key: keys ? floatTensor(keys, dims) : null,
      value: values ? floatTensor(values, dims) : null,
    };
  }

  private async runBlockRows(
    l: number,
    hidden: Float32Array,
    ctx: StepContext,
    rows: Intervention[],
    r0: number,
    r1: number,
    opts: { past?: { key: Tensor; value: Tensor }; cache?: boolean },
    lastOnly = false,
  ): Promise<BlockOutput> {
    const n = r1 - r0;
    const T = ctx.length;
    const S = ctx.past + T;
    const d = this.spec.hiddenSize;
    const rd = this.spec.rope.rotaryDim;
    const K = this.spec.numKvHeads;
    const hd = this.spec.headDim;
    const all = r0 === 0 && r1 === ctx.size;
    const rowsOf = (a: Float32Array, per: number) => (all ? a : a.subarray(r0 * per, r1 * per));
    const pastRows = (t: Tensor | undefined): Tensor => {
      if (!t) return floatTensor(new Float32Array(0), [n, K, 0, hd]);
      return all ? t : floatTensor(rowsOf(t.data as Float32Array, K * ctx.past * hd), [n, K, ctx.past, hd]);
    };
    const mask = ctx.masks.get(String(this.spec.slidingWindow[l] ?? "full"))!;
    const localRope = this.spec.rope.local?.layers[l] === true;
    const rowIvs = rows.slice(r0, r1);
    const feeds: Record<string, Tensor> = {
      hidden: floatTensor(rowsOf(hidden, T * d), [n, T, d]),
      cos: floatTensor(rowsOf(localRope ? ctx.localCos! : ctx.cos, T * rd), [n, T, rd]),
      sin: floatTensor(rowsOf(localRope ? ctx.localSin! : ctx.sin, T * rd), [n, T, rd]),
      mask: floatTensor(rowsOf(mask, T * S), [n, 1, T, S]),
      past_key: pastRows(opts.past?.key),
      past_value: pastRows(opts.past?.value),
      resid_pre_dir: this.hookTensor(rowIvs, (iv) => iv.preDir[l]),
      resid_pre_add: this.hookTensor(rowIvs, (iv) => iv.preAdd[l]),
      attn_out_dir: this.hookTensor(rowIvs, (iv) => iv.attnDir[l]),
      mlp_out_dir: this.hookTensor(rowIvs, (iv) => iv.mlpDir[l]),
    };
    if (lastOnly) {
      const out = await (await this.lastTokenSession()).run(feeds);
      // q/k/v for every token; attention, o_proj and the MLP for the last one.
      this.flops += lastTokenBlockFlops(this.spec, n, T, S);
      return { hidden: out.hidden_out.data as Float32Array, key: null, value: null };
    }
    // Only what the caller reads comes back (onnxruntime-node copies every fetched output).
    const out = await this.blocks[l].run(feeds, opts.cache ? ["hidden_out", "key", "value"] : ["hidden_out"]);
    // Weight products for every token plus QKᵀ and PV over all S keys.
    this.flops += blockFlops(this.spec, n, T, S);
    return {
      hidden: out.hidden_out.data as Float32Array,
      key: opts.cache ? out.key : null,
      value: opts.cache ? out.value : null,
    };
  }

  private async lastTokenSession(): Promise<Session> {
    if (!this.lastTokenBlock) {
      const ck = this.model.checkpoint;
      this.lastTokenBlock = await createSession(
        buildBlockGraph(this.spec, this.numLayers - 1, (n) => ck.readF32(n), { lastOnly: true, weights: this.weights }),
        this.sessionOpts,
      );
      releaseMemory();
    }
    return this.lastTokenBlock;
  }

  /**
   * The final block for the last position only: [B, T, d] in, [B, d] out. Used when only the
   * last position's logits are read (the scores' KL and log-odds); built on first use.
   */
  async runFinalBlockLastToken(hidden: Float32Array, ctx: StepContext, rows: Intervention[]): Promise<Float32Array> {
    const B = ctx.size;
    const d = this.spec.hiddenSize;
    const chunk = Math.max(1, Math.floor(this.tokensPerCall / ctx.length));
    const out = new Float32Array(B * d);
    for (let r0 = 0; r0 < B; r0 += chunk) {
      const r1 = Math.min(B, r0 + chunk);
      const o = await this.runBlockRows(this.numLayers - 1, hidden, ctx, rows, r0, r1, {}, true);
      out.set(o.hidden, r0 * d);
    }
    return out;
  }

  /** Final norm and logits for last-position hidden states [B, d]. */
  async runHead(last: Float32Array, B: number): Promise<{ finalHidden: Float32Array; logits: Float32Array }> {
    const V = this.spec.vocabSize;
    const input = { hidden: floatTensor(last, [B, this.spec.hiddenSize]) };
    let finalHidden: Float32Array | null = null;
    let logits: Float32Array;
    if (this.heads.length === 1) {
      const out = await this.heads[0].session.run(input);
      finalHidden = out.final_hidden.data as Float32Array;
      logits = out.logits.data as Float32Array;
    } else {
      // Each session gives [B, rows] of the logits; they are placed side by side per row.
      logits = new Float32Array(B * V);
      for (const h of this.heads) {
        const out = await h.session.run(input);
        finalHidden ??= out.final_hidden.data as Float32Array;
        const part = out.logits.data as Float32Array;
        const n = h.rows[1] - h.rows[0];
        for (let b = 0; b < B; b++) logits.set(part.subarray(b * n, (b + 1) * n), b * V + h.rows[0]);
      }
    }
    this.flops += headFlops(this.spec, B);
    // Finite weights can still overflow float32 (a corrupted checkpoint): say so, not NaN scores.
    for (let i = 0; i < logits.length; i++) if (!Number.isFinite(logits[i])) throw nonFinite(this.model.dir, "logits");
    return { finalHidden: finalHidden!, logits };
  }

  /** Per-row interventions from one shared value or a list. */
  rowsOf(iv: Intervention | Intervention[] | undefined, B: number): Intervention[] {
    if (Array.isArray(iv)) {
      if (iv.length !== B) throw new Error(`${iv.length} interventions for ${B} rows`);
      return iv;
    }
    return new Array<Intervention>(B).fill(iv ?? noIntervention(this.numLayers));
  }

  async release(): Promise<void> {
    for (const s of this.blocks) await s.release();
    for (const h of this.heads) await h.session.release();
    await this.lastTokenBlock?.release();
    this.embedding.close();
  }
}

/** Last position's features [B, d] of hidden states [B, T, d]. */
export function lastPosition(hidden: Float32Array, B: number, T: number, d: number): Float32Array {
  const out = new Float32Array(B * d);
  for (let b = 0; b < B; b++) out.set(hidden.subarray((b * T + T - 1) * d, (b * T + T) * d), b * d);
  return out;
}
