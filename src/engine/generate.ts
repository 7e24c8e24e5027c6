/**
 * Batched generation with a KV cache: greedy, or temperature / top-p sampling from a seeded
 * generator. Interventions apply at every position, prompt and generated tokens alike.
 */
import type { Tensor } from "./runtime.js";
import { CosmicError } from "../errors.js";
import { Rng } from "../util/random.js";
import { Engine, lastPosition } from "./engine.js";
import { Intervention } from "./interventions.js";

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
  /** record the top-1 − top-2 logit margin of each step */
  margins?: boolean;
  onBatch?: (done: number, total: number) => void;
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
  margins?: number[];
}

function top2Margin(logits: Float32Array, off: number, V: number): number {
  let a = -Infinity;
  let b = -Infinity;
  for (let i = 0; i < V; i++) {
    const x = logits[off + i];
    if (x > a) {
      b = a;
      a = x;
    } else if (x > b) b = x;
  }
  return a - b;
}

function argmax(logits: Float32Array, off: number, V: number): number {
  let best = 0;
  for (let i = 1; i < V; i++) if (logits[off + i] > logits[off + best]) best = i;
  return best;
}

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

export async function generate(engine: Engine, prompts: number[][], opts: GenerateOptions): Promise<Generation[]> {
  if (prompts.length === 0) throw new CosmicError("the prompt list is empty");
  if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 1)
    throw new CosmicError(`--max-new-tokens must be a positive integer, got ${opts.maxNewTokens}`);
  const spec = engine.spec;
  const longest = Math.max(...prompts.map((p) => p.length));
  if (longest + opts.maxNewTokens > spec.maxPositionEmbeddings) {
    throw new CosmicError(
      `a prompt of ${longest} tokens plus ${opts.maxNewTokens} new tokens exceeds the model's context of ` +
        `${spec.maxPositionEmbeddings}`,
    );
  }
  const eos = new Set(opts.eosTokenIds ?? engine.model.eosTokenIds);
  const stopAtEos = opts.stopAtEos ?? true;
  const temperature = opts.temperature ?? 0;
  const topP = opts.topP ?? 1;
  const rng = new Rng(opts.seed ?? 0);
  const d = spec.hiddenSize;
  const V = spec.vocabSize;
  const L = spec.numLayers;
  const bs = Math.max(1, opts.batchSize ?? 32);
  const results: Generation[] = [];
  for (let start = 0; start < prompts.length; start += bs) {
    const toks = prompts.slice(start, start + bs);
    const B = toks.length;
    const batch = engine.pad(toks);
    const rows = engine.rowsOf(opts.intervention, B);
    const gens: Generation[] = toks.map(() => ({
      tokens: [],
      stopped: false,
      ...(opts.margins ? { margins: [] } : {}),
    }));
    // Prefill.
    let h = engine.embed(batch);
    const keys: Tensor[] = [];
    const values: Tensor[] = [];
    for (let l = 0; l < L; l++) {
      const o = await engine.runBlock(l, h, batch, rows);
      h = o.hidden;
      keys.push(o.key);
      values.push(o.value);
    }
    let last = lastPosition(h, B, batch.length, d);
    const keyValid = batch.keyValid.map((v) => Array.from(v));
    const nextPos = batch.tokens.map((t) => t.length);
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
        g.margins?.push(top2Margin(logits, off, V));
        opts.onToken?.(start + b, t);
        if (stopAtEos && eos.has(t)) g.stopped = true;
      }
      if (step === opts.maxNewTokens - 1 || gens.every((g) => g.stopped)) break;
      // One decode step for every row (finished rows keep running; their tokens are dropped).
      const past = keyValid[0].length;
      for (const kv of keyValid) kv.push(1);
      const positions = nextPos.map((p) => [p]);
      nextPos.forEach((_, b) => nextPos[b]++);
      const ctx = engine.stepContext(
        keyValid.map((v) => Uint8Array.from(v)),
        positions,
        past,
      );
      let x: Float32Array = new Float32Array(B * d);
      for (let b = 0; b < B; b++) engine.embedTokens([next[b]], x, b);
      for (let l = 0; l < L; l++) {
        const o = await engine.runBlock(l, x, ctx, rows, { key: keys[l], value: values[l] });
        x = o.hidden;
        keys[l] = o.key;
        values[l] = o.value;
      }
      last = x;
    }
    results.push(...gens);
    opts.onBatch?.(Math.min(prompts.length, start + B), prompts.length);
  }
  return results;
}
