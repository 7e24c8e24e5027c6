/**
 * Batched forward passes with capture (TransformerLens names): `resid_pre` (block inputs at the
 * last N positions), `resid_post` (block outputs at the last position, before the final norm),
 * `final_hidden` (last position after the final norm, HF's last `hidden_states` entry) and the
 * last-position logits. Block inputs and outputs are recorded as they leave one block and before
 * the next block's own hook edits them, so resid_post[l] = resid_pre[l+1] at the last position.
 */
import { CosmicError } from "../errors.js";
import { Engine, lastPosition } from "./engine.js";
import { Intervention } from "./interventions.js";

export interface CaptureOptions {
  /** one intervention for all prompts, or one per prompt */
  intervention?: Intervention | Intervention[];
  /** capture block inputs at this many last positions (0: none) */
  residPrePositions?: number;
  residPost?: boolean;
  finalHidden?: boolean;
  logits?: boolean;
  batchSize?: number;
  onBatch?: (done: number, total: number) => void;
}

export interface Captured {
  count: number;
  layers: number;
  width: number;
  positions: number;
  /** [count, layers, positions, width] */
  residPre?: Float32Array;
  /** [count, layers, width] */
  residPost?: Float32Array;
  /** [count, width] */
  finalHidden?: Float32Array;
  /** [count, vocab] */
  logits?: Float32Array;
}

export async function capture(engine: Engine, prompts: number[][], opts: CaptureOptions = {}): Promise<Captured> {
  const n = prompts.length;
  if (n === 0) throw new CosmicError("the prompt list is empty");
  const L = engine.numLayers;
  const d = engine.spec.hiddenSize;
  const V = engine.spec.vocabSize;
  const N = opts.residPrePositions ?? 0;
  const shortest = Math.min(...prompts.map((p) => p.length));
  if (N > shortest) throw new CosmicError(`cannot capture ${N} positions: the shortest prompt has ${shortest} tokens`);
  const wantHead = opts.finalHidden || opts.logits;
  const res: Captured = { count: n, layers: L, width: d, positions: N };
  if (N) res.residPre = new Float32Array(n * L * N * d);
  if (opts.residPost) res.residPost = new Float32Array(n * L * d);
  if (opts.finalHidden) res.finalHidden = new Float32Array(n * d);
  if (opts.logits) res.logits = new Float32Array(n * V);
  const perPrompt = Array.isArray(opts.intervention) ? opts.intervention : null;
  if (perPrompt && perPrompt.length !== n) throw new Error(`${perPrompt.length} interventions for ${n} prompts`);
  const bs = Math.max(1, opts.batchSize ?? 32);
  const batches = Math.ceil(n / bs);
  for (let bi = 0; bi < batches; bi++) {
    const start = bi * bs;
    const toks = prompts.slice(start, start + bs);
    const B = toks.length;
    const batch = engine.pad(toks);
    const T = batch.length;
    const rows = engine.rowsOf(
      perPrompt ? perPrompt.slice(start, start + B) : (opts.intervention as Intervention | undefined),
      B,
    );
    let h = engine.embed(batch);
    for (let l = 0; l < L; l++) {
      if (res.residPre) {
        for (let b = 0; b < B; b++) {
          const src = h.subarray((b * T + T - N) * d, (b * T + T) * d);
          res.residPre.set(src, ((start + b) * L + l) * N * d);
        }
      }
      h = (await engine.runBlock(l, h, batch, rows)).hidden;
      if (res.residPost) {
        for (let b = 0; b < B; b++)
          res.residPost.set(h.subarray((b * T + T - 1) * d, (b * T + T) * d), ((start + b) * L + l) * d);
      }
    }
    if (wantHead) {
      const head = await engine.runHead(lastPosition(h, B, T, d), B);
      res.finalHidden?.set(head.finalHidden, start * d);
      res.logits?.set(head.logits, start * V);
    }
    opts.onBatch?.(Math.min(n, start + B), n);
  }
  return res;
}

/** Summed log-probability of each sequence's tokens from `from[i]` on, and how many were scored. */
export interface SequenceLogProb {
  logProb: number;
  tokens: number;
}

/**
 * Teacher-forced log-probabilities: each sequence runs once (with the intervention), and the
 * logits at every position before a scored token are read (the head runs on those rows only,
 * in chunks, so a large vocabulary never needs [tokens, vocab] at once). Log-softmax in float64.
 */
export async function sequenceLogProbs(
  engine: Engine,
  sequences: number[][],
  from: number[],
  opts: { intervention?: Intervention; batchSize?: number; onBatch?: (done: number, total: number) => void } = {},
): Promise<SequenceLogProb[]> {
  const n = sequences.length;
  if (from.length !== n) throw new Error(`${from.length} start positions for ${n} sequences`);
  const L = engine.numLayers;
  const d = engine.spec.hiddenSize;
  const V = engine.spec.vocabSize;
  const out: SequenceLogProb[] = sequences.map(() => ({ logProb: 0, tokens: 0 }));
  const bs = Math.max(1, opts.batchSize ?? 32);
  const headRows = Math.max(1, Math.floor(2 ** 24 / V));
  for (let start = 0; start < n; start += bs) {
    const seqs = sequences.slice(start, start + bs);
    const B = seqs.length;
    const batch = engine.pad(seqs);
    const T = batch.length;
    const rows = engine.rowsOf(opts.intervention, B);
    let h = engine.embed(batch);
    for (let l = 0; l < L; l++) h = (await engine.runBlock(l, h, batch, rows)).hidden;
    // (row, padded position of the predicting token, target token)
    const picks: [number, number, number][] = [];
    seqs.forEach((s, b) => {
      const off = T - s.length;
      for (let t = Math.max(1, from[start + b]); t < s.length; t++) picks.push([b, off + t - 1, s[t]]);
    });
    for (let c = 0; c < picks.length; c += headRows) {
      const chunk = picks.slice(c, c + headRows);
      const x = new Float32Array(chunk.length * d);
      chunk.forEach(([b, p], i) => x.set(h.subarray((b * T + p) * d, (b * T + p + 1) * d), i * d));
      const { logits } = await engine.runHead(x, chunk.length);
      chunk.forEach(([b, , target], i) => {
        let max = -Infinity;
        for (let v = 0; v < V; v++) max = Math.max(max, logits[i * V + v]);
        let z = 0;
        for (let v = 0; v < V; v++) z += Math.exp(logits[i * V + v] - max);
        const r = out[start + b];
        r.logProb += logits[i * V + target] - max - Math.log(z);
        r.tokens++;
      });
    }
    opts.onBatch?.(Math.min(n, start + B), n);
  }
  return out;
}
