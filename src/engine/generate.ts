/**
 * Batched generation with a KV cache: greedy, or temperature / top-p sampling from a seeded
 * generator. Interventions apply at every position, prompt and generated tokens alike.
 */
import type { Tensor } from "./runtime.js";
import { CosmicError } from "../errors.js";
import { Rng } from "../util/random.js";
import { Engine, lastPosition, PaddedBatch } from "./engine.js";
import { decodeCapacity, KvCache } from "./kv-cache.js";
import { Intervention } from "./interventions.js";
import { argmax } from "./sampling.js";

export interface GenerateOptions {
  maxNewTokens: number;
  intervention?: Intervention;
  /** 0 = greedy */
  temperature?: number;
  topP?: number;
  seed?: number;
  /** stop a row at any of these tokens (default: the model's EOS tokens) */
  eosTokenIds?: number[];
  stopAtEos?: boolean;
  batchSize?: number;
  onBatch?: (done: number, total: number) => void;
  /**
   * After every decode step: new-token slots done of prompts × maxNewTokens (a batch that every
   * row ends early jumps to its full share; each count once), so a bar moves every step rather
   * than every batch.
   */
  onTokens?: (done: number, total: number) => void;
  /** streaming: called with each new token of a row */
  onToken?: (row: number, token: number) => void;
}

/** A generation's reply tokens: without the EOS token it stopped at, if it stopped at one. */
export function replyTokens(g: Generation, eos: ReadonlySet<number>): number[] {
  return g.stopped && eos.has(g.tokens[g.tokens.length - 1]) ? g.tokens.slice(0, -1) : g.tokens;
}

export interface Generation {
  tokens: number[];
  /** whether the row stopped at an EOS token (which is included in `tokens`) */
  stopped: boolean;
}

/**
 * Temperature / top-p sampling over the sorted vocabulary. The server's pickToken (sampling.ts)
 * draws the same distribution without sorting, but consumes the seed differently for top_p = 1;
 * this one stays so that seeded `cosmic generate` outputs stay as they were.
 */
function sample(logits: Float32Array, off: number, V: number, temperature: number, topP: number, rng: Rng): number {
  const idx = Array.from({ length: V }, (_, i) => i).sort((x, y) => logits[off + y] - logits[off + x]);
  const maxL = logits[off + idx[0]] / temperature;
  const probs = idx.map((i) => Math.exp(logits[off + i] / temperature - maxL));
  const total = probs.reduce((a, b) => a + b, 0);
  let keep = 0;
  let cum = 0;
  while (keep < V) {
    cum += probs[keep] / total;
    keep++;
    if (cum >= topP) break;
  }
  const mass = probs.slice(0, keep).reduce((a, b) => a + b, 0);
  let u = rng.next() * mass;
  for (let k = 0; k < keep; k++) {
    u -= probs[k];
    if (u <= 0) return idx[k];
  }
  return idx[keep - 1];
}

/** Every block over a padded batch: each layer's KV cache and the last position's hidden states [B, d]. */
export async function prefill(
  engine: Engine,
  batch: PaddedBatch,
  rows: Intervention[],
): Promise<{ keys: Tensor[]; values: Tensor[]; last: Float32Array }> {
  let h = engine.embed(batch);
  const keys: Tensor[] = [];
  const values: Tensor[] = [];
  for (let l = 0; l < engine.numLayers; l++) {
    const out = await engine.runBlock(l, h, batch, rows, { cache: true });
    h = out.hidden;
    keys.push(out.key!);
    values.push(out.value!);
  }
  return { keys, values, last: lastPosition(h, batch.size, batch.length, engine.spec.hiddenSize) };
}

/**
 * One new token per row through every block, its keys and values written into `cache` (which then
 * advances). `blocks` stops after the first blocks: the calibration times decode steps on the
 * first few this way, through the code path generation runs.
 */
export async function decodeLayers(
  engine: Engine,
  tokens: number[],
  cache: KvCache,
  rows: Intervention[],
  blocks = engine.numLayers,
): Promise<Float32Array> {
  const { keyValid, positions } = cache.stepInputs();
  const ctx = engine.stepContext(keyValid, positions, cache.capacity, cache.filled);
  let x: Float32Array = new Float32Array(tokens.length * engine.spec.hiddenSize);
  tokens.forEach((t, b) => engine.embedTokens([t], x, b));
  for (let l = 0; l < blocks; l++) {
    const out = await engine.runBlock(l, x, ctx, rows, { past: cache.past(l), cache: true });
    x = out.hidden;
    cache.write(l, out.key!, out.value!);
  }
  cache.advance();
  return x;
}

function checkGeneration(engine: Engine, prompts: number[][], maxNewTokens: number): void {
  if (prompts.length === 0) throw new CosmicError("the prompt list is empty");
  if (!Number.isInteger(maxNewTokens) || maxNewTokens < 1)
    throw new CosmicError(`--max-new-tokens must be a positive integer, got ${maxNewTokens}`);
  const longest = Math.max(...prompts.map((p) => p.length));
  const context = engine.spec.maxPositionEmbeddings;
  if (longest + maxNewTokens > context)
    throw new CosmicError(
      `a prompt of ${longest} tokens plus ${maxNewTokens} new tokens exceeds the model's context of ${context}`,
    );
}

export async function generate(engine: Engine, prompts: number[][], opts: GenerateOptions): Promise<Generation[]> {
  checkGeneration(engine, prompts, opts.maxNewTokens);
  const eos = new Set(opts.eosTokenIds ?? engine.model.eosTokenIds);
  const stopAtEos = opts.stopAtEos ?? true;
  const temperature = opts.temperature ?? 0;
  const topP = opts.topP ?? 1;
  const rng = new Rng(opts.seed ?? 0);
  const V = engine.spec.vocabSize;
  const bs = Math.max(1, opts.batchSize ?? 32);
  const results: Generation[] = [];
  const slots = prompts.length * opts.maxNewTokens;
  for (let start = 0; start < prompts.length; start += bs) {
    const toks = prompts.slice(start, start + bs);
    const B = toks.length;
    const batch = engine.pad(toks);
    const rows = engine.rowsOf(opts.intervention, B);
    const gens: Generation[] = toks.map(() => ({ tokens: [], stopped: false }));
    const { keys, values, last: first } = await prefill(engine, batch, rows);
    let last = first;
    // Spare room for the next GROW tokens' keys: steps write in place, a rebuild every GROW steps.
    const T = batch.length;
    const M = opts.maxNewTokens;
    let cache = KvCache.fromBlocks(
      engine.spec,
      keys,
      values,
      toks.map((t) => t.length),
    ).resized(decodeCapacity(T, M, 1));
    for (let step = 0; step < opts.maxNewTokens; step++) {
      const { logits } = await engine.runHead(last, B);
      const next: number[] = [];
      for (let b = 0; b < B; b++) {
        const off = b * V;
        const t = temperature > 0 ? sample(logits, off, V, temperature, topP, rng) : argmax(logits, off, V);
        next.push(t);
        const g = gens[b];
        if (g.stopped) continue;
        g.tokens.push(t);
        opts.onToken?.(start + b, t);
        if (stopAtEos && eos.has(t)) g.stopped = true;
      }
      if (step === opts.maxNewTokens - 1 || gens.every((g) => g.stopped)) break;
      // (A batch's last step is reported once, below.)
      opts.onTokens?.(start * M + B * (step + 1), slots);
      // One decode step for every row (finished rows keep running; their tokens are dropped).
      if (cache.filled === cache.capacity) cache = cache.resized(decodeCapacity(T, M, step + 1));
      last = await decodeLayers(engine, next, cache, rows);
    }
    results.push(...gens);
    opts.onTokens?.((start + B) * M, slots);
    opts.onBatch?.(Math.min(prompts.length, start + B), prompts.length);
  }
  return results;
}
