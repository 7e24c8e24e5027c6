/**
 * The engine: one onnxruntime session per decoder block plus a head session, built from the
 * model folder's ModelSpec and weights. Batches are left-padded; position ids follow HF
 * (cumsum(mask) − 1, padding set to 1). Hook points and captures are described in graphs.ts.
 */
import * as ort from "onnxruntime-node";
import { CosmicError } from "../errors.js";
import { ModelSpec } from "../formats/config.js";
import { ModelFolder } from "../model/folder.js";
import { Embedding } from "./embedding.js";
import { buildBlockGraph, buildHeadGraph } from "./graphs.js";
import { Intervention, noIntervention } from "./interventions.js";
import { attentionMask, inverseFrequencies, ropeTables } from "./rope.js";

export type Device = "cpu" | "webgpu" | "cuda";
export const DEVICES: readonly Device[] = ["cpu", "webgpu", "cuda"];

export interface EngineOptions {
  device?: Device;
  /** intra-op threads per session (default: onnxruntime's choice) */
  threads?: number;
  /** called after each session is built */
  onBuild?: (done: number, total: number) => void;
}

/** A left-padded batch with everything the block graphs need besides the hidden states. */
export interface PaddedBatch {
  size: number;
  length: number;
  /** number of padding tokens on the left of each row */
  pads: number[];
  tokens: number[][];
  keyValid: Uint8Array[];
  positions: number[][];
  cos: ort.Tensor;
  sin: ort.Tensor;
  /** additive masks, keyed by sliding window ("full" for none) */
  masks: Map<string, ort.Tensor>;
}

export interface KvCache {
  keys: ort.Tensor[];
  values: ort.Tensor[];
}

function availableDevices(): string[] {
  return ort.listSupportedBackends().filter((b) => b.bundled || b.name === "cpu").map((b) => b.name);
}

function sessionOptions(device: Device, threads?: number): ort.InferenceSession.SessionOptions {
  const o: ort.InferenceSession.SessionOptions = {
    executionProviders: [device],
    graphOptimizationLevel: "all",
  };
  if (threads) o.intraOpNumThreads = threads;
  return o;
}

export class Engine {
  readonly spec: ModelSpec;
  readonly folder: ModelFolder;
  readonly device: Device;
  private readonly blocks: ort.InferenceSession[];
  private readonly head: ort.InferenceSession;
  private readonly embedding: Embedding;
  private readonly invFreq: Float32Array;
  private readonly zeroRow: Float32Array;
  /** seconds spent building sessions */
  readonly buildSeconds: number;

  private constructor(folder: ModelFolder, device: Device, blocks: ort.InferenceSession[], head: ort.InferenceSession, buildSeconds: number) {
    this.folder = folder;
    this.spec = folder.spec;
    this.device = device;
    this.blocks = blocks;
    this.head = head;
    this.buildSeconds = buildSeconds;
    this.embedding = new Embedding(folder.checkpoint, this.spec.vocabSize, this.spec.hiddenSize, this.spec.embeddingScale);
    this.invFreq = inverseFrequencies(this.spec);
    this.zeroRow = new Float32Array(this.spec.hiddenSize);
  }

  static async load(folder: ModelFolder, opts: EngineOptions = {}): Promise<Engine> {
    const device = opts.device ?? "cpu";
    if (!DEVICES.includes(device)) throw new CosmicError(`unknown device "${device}" (choose from: ${DEVICES.join(", ")})`);
    const avail = availableDevices();
    if (!avail.includes(device)) {
      throw new CosmicError(`device "${device}" is not available in this onnxruntime-node build (available: ${avail.join(", ")})`);
    }
    const t0 = performance.now();
    const ck = folder.checkpoint;
    const w = (name: string) => ck.readF32(name);
    const so = sessionOptions(device, opts.threads);
    const total = folder.spec.numLayers + 1;
    const create = async (bytes: Uint8Array): Promise<ort.InferenceSession> => {
      try {
        return await ort.InferenceSession.create(bytes, so);
      } catch (e) {
        if (device !== "cpu") throw new CosmicError(`device "${device}" failed to start: ${(e as Error).message.split("\n")[0]}`);
        throw e;
      }
    };
    const blocks: ort.InferenceSession[] = [];
    for (let l = 0; l < folder.spec.numLayers; l++) {
      blocks.push(await create(buildBlockGraph(folder.spec, l, w)));
      opts.onBuild?.(l + 1, total);
    }
    const head = await create(buildHeadGraph(folder.spec, w));
    opts.onBuild?.(total, total);
    return new Engine(folder, device, blocks, head, (performance.now() - t0) / 1000);
  }

  get numLayers(): number {
    return this.spec.numLayers;
  }

  /** Left-pad token lists into one batch. */
  pad(tokens: number[][]): PaddedBatch {
    if (tokens.length === 0) throw new CosmicError("no prompts to run");
    const T = Math.max(...tokens.map((t) => t.length));
    if (T === 0) throw new CosmicError("a prompt has no tokens");
    if (T > this.spec.maxPositionEmbeddings) {
      throw new CosmicError(`a prompt has ${T} tokens, longer than the model's context of ${this.spec.maxPositionEmbeddings}`);
    }
    const pads = tokens.map((t) => T - t.length);
    const keyValid = tokens.map((t, b) => {
      const v = new Uint8Array(T);
      v.fill(1, pads[b]);
      return v;
    });
    const positions = tokens.map((_, b) => Array.from({ length: T }, (_, j) => (j < pads[b] ? 1 : j - pads[b])));
    const { cos, sin } = ropeTables(this.invFreq, positions);
    const rd = this.spec.rope.rotaryDim;
    const B = tokens.length;
    const masks = new Map<string, ort.Tensor>();
    for (const win of new Set(this.spec.slidingWindow)) {
      masks.set(String(win ?? "full"), new ort.Tensor("float32", attentionMask(keyValid, 0, T, win), [B, 1, T, T]));
    }
    return {
      size: B,
      length: T,
      pads,
      tokens,
      keyValid,
      positions,
      cos: new ort.Tensor("float32", cos, [B, T, rd]),
      sin: new ort.Tensor("float32", sin, [B, T, rd]),
      masks,
    };
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

  private hookTensor(rows: Intervention[], pick: (iv: Intervention) => Float32Array | null): ort.Tensor {
    const d = this.spec.hiddenSize;
    const data = new Float32Array(rows.length * d);
    rows.forEach((iv, b) => {
      const v = pick(iv);
      if (v) {
        if (v.length !== d) throw new CosmicError(`direction has width ${v.length}, but the model's hidden size is ${d}`);
        data.set(v, b * d);
      }
    });
    return new ort.Tensor("float32", data, [rows.length, d]);
  }

  private emptyPast(B: number): ort.Tensor {
    return new ort.Tensor("float32", new Float32Array(0), [B, this.spec.numKvHeads, 0, this.spec.headDim]);
  }

  /**
   * Run block `l` on hidden states [B, T, d]. `rows` holds one intervention per batch row.
   * With `past`, T new positions follow the cached keys/values; cos/sin/mask must match.
   */
  async runBlock(
    l: number,
    hidden: Float32Array,
    ctx: { size: number; length: number; cos: ort.Tensor; sin: ort.Tensor; masks: Map<string, ort.Tensor> },
    rows: Intervention[],
    past?: { key: ort.Tensor; value: ort.Tensor },
  ): Promise<{ hidden: Float32Array; key: ort.Tensor; value: ort.Tensor }> {
    const B = ctx.size;
    const d = this.spec.hiddenSize;
    const feeds: Record<string, ort.Tensor> = {
      hidden: new ort.Tensor("float32", hidden, [B, ctx.length, d]),
      cos: ctx.cos,
      sin: ctx.sin,
      mask: ctx.masks.get(String(this.spec.slidingWindow[l] ?? "full"))!,
      past_key: past?.key ?? this.emptyPast(B),
      past_value: past?.value ?? this.emptyPast(B),
      pre_dir: this.hookTensor(rows, (iv) => iv.preDir[l]),
      pre_add: this.hookTensor(rows, (iv) => iv.preAdd[l]),
      attn_dir: this.hookTensor(rows, (iv) => iv.attnDir[l]),
      mlp_dir: this.hookTensor(rows, (iv) => iv.mlpDir[l]),
    };
    const out = await this.blocks[l].run(feeds);
    return { hidden: out.hidden_out.data as Float32Array, key: out.present_key, value: out.present_value };
  }

  /** Final norm and logits for last-position hidden states [B, d]. */
  async runHead(last: Float32Array, B: number): Promise<{ finalHidden: Float32Array; logits: Float32Array }> {
    const out = await this.head.run({ hidden: new ort.Tensor("float32", last, [B, this.spec.hiddenSize]) });
    return { finalHidden: out.final_hidden.data as Float32Array, logits: out.logits.data as Float32Array };
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
    await this.head.release();
  }
}

/** Last position's features [B, d] of hidden states [B, T, d]. */
export function lastPosition(hidden: Float32Array, B: number, T: number, d: number): Float32Array {
  const out = new Float32Array(B * d);
  for (let b = 0; b < B; b++) out.set(hidden.subarray((b * T + T - 1) * d, (b * T + T) * d), b * d);
  return out;
}
