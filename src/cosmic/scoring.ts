/**
 * Running candidate interventions on a validation set and reducing what the scores need:
 * the last-token outputs pooled over prompts × L_low (COSMIC), the KL of the next-token
 * distribution against the clean run, and the mean refusal-token log-odds (the substring baseline).
 *
 * The fast schedule exploits that an intervention first editing block `start` leaves blocks
 * before it unchanged: it starts from the clean run's cached block inputs at `start`, and stops
 * after the last layer it must read (max L_low) unless logits are needed. The naive schedule is the
 * reference's: a full forward pass from the embeddings through the head, per candidate.
 */
import { Engine, PaddedBatch, lastPosition } from "../engine/engine.js";
import { Intervention } from "../engine/interventions.js";
import { klFromLogits, refusalLogOdds } from "./vec.js";

export interface ScoringBatch {
  tokens: number[][];
  batch: PaddedBatch;
  /** clean block inputs [B, T, d] per layer */
  inputs: Float32Array[];
  /** clean last-token outputs [B, d] per layer, HF convention (last = after the final norm) */
  outputs: Float32Array[];
  /** clean last-position logits [B, V] */
  logits: Float32Array;
}

export interface ScoringSet {
  count: number;
  batches: ScoringBatch[];
}

/** One clean pass over a set, caching what the fast schedule restarts from. */
export async function prepareScoringSet(engine: Engine, prompts: number[][], batchSize: number): Promise<ScoringSet> {
  const L = engine.numLayers;
  const d = engine.spec.hiddenSize;
  const batches: ScoringBatch[] = [];
  for (let s = 0; s < prompts.length; s += batchSize) {
    const tokens = prompts.slice(s, s + batchSize);
    const batch = engine.pad(tokens);
    const rows = engine.rowsOf(undefined, tokens.length);
    const inputs: Float32Array[] = [];
    const outputs: Float32Array[] = [];
    let h = engine.embed(batch);
    for (let l = 0; l < L; l++) {
      inputs.push(h);
      h = (await engine.runBlock(l, h, batch, rows)).hidden;
      outputs.push(lastPosition(h, tokens.length, batch.length, d));
    }
    const head = await engine.runHead(outputs[L - 1], tokens.length);
    outputs[L - 1] = head.finalHidden;
    batches.push({ tokens, batch, inputs, outputs, logits: head.logits });
  }
  return { count: prompts.length, batches };
}

export interface CandidateRun {
  intervention: Intervention;
  /** the first block whose computation the intervention changes */
  start: number;
}

export interface RunNeeds {
  /** pool last-token outputs over these layers (empty: no pooling) */
  poolLayers: number[];
  kl: boolean;
  /** refusal tokens for the mean log-odds (null: not needed) */
  refusalTokens: number[] | null;
}

export interface RunResult {
  /** mean over prompts × poolLayers of last-token outputs, float64 [d] */
  pooled: Float64Array | null;
  kl: number | null;
  logOdds: number | null;
}

/** How one call's passes run: from the candidate's first edited block (fast) or the reference's full passes (naive). */
export type PassSchedule = "fast" | "naive";

/**
 * The scoring stage's schedule: a pass schedule for every score of every candidate, or `lazy`:
 * fast passes, and only the scores the two selections read (stages/scores.ts).
 */
export type Schedule = PassSchedule | "lazy";

/** Seconds and FLOPs spent. */
export interface Tally {
  seconds: number;
  flops: number;
}

/**
 * Where one run's cost goes when it serves two consumers: blocks up to and including
 * `splitAfter` (and the head, when that is the last block) to `before`, the rest to `after`.
 */
export interface CostSplit {
  splitAfter: number;
  before: Tally;
  after: Tally;
}

/** Clean-run results of a set (what a no-op intervention gives). */
export function cleanResult(set: ScoringSet, needs: RunNeeds, d: number, V: number): RunResult {
  const pooled = needs.poolLayers.length ? new Float64Array(d) : null;
  let logOdds = 0;
  for (const sb of set.batches) {
    const B = sb.tokens.length;
    if (pooled) for (const j of needs.poolLayers) for (let i = 0; i < B * d; i++) pooled[i % d] += sb.outputs[j][i];
    if (needs.refusalTokens)
      for (let b = 0; b < B; b++) logOdds += refusalLogOdds(sb.logits, b * V, V, needs.refusalTokens);
  }
  if (pooled) for (let i = 0; i < d; i++) pooled[i] /= set.count * needs.poolLayers.length;
  return { pooled, kl: needs.kl ? 0 : null, logOdds: needs.refusalTokens ? logOdds / set.count : null };
}

/**
 * Run several candidates over a set. Candidates are stacked as batch rows (candidate-major), so
 * one block call serves many candidates.
 */
export async function runCandidates(
  engine: Engine,
  set: ScoringSet,
  cands: CandidateRun[],
  needs: RunNeeds,
  schedule: PassSchedule,
  cost?: CostSplit,
): Promise<RunResult[]> {
  const L = engine.numLayers;
  const d = engine.spec.hiddenSize;
  const C = cands.length;
  const wantLogits = needs.kl || needs.refusalTokens !== null;
  const maxPool = needs.poolLayers.length ? Math.max(...needs.poolLayers) : -1;
  const needHead = wantLogits || maxPool === L - 1;
  const plan: Plan = {
    needs,
    schedule,
    needHead,
    stop: schedule === "naive" || needHead ? L - 1 : maxPool,
    pool: new Set(needs.poolLayers),
  };
  const acc: Sums = {
    pooled: needs.poolLayers.length ? cands.map(() => new Float64Array(d)) : null,
    kl: new Float64Array(C),
    logOdds: new Float64Array(C),
  };
  // Candidates are grouped by start layer: each group restarts from its own cached input.
  const groups = new Map<number, number[]>();
  cands.forEach((c, i) => {
    const s = schedule === "naive" ? 0 : c.start;
    groups.set(s, [...(groups.get(s) ?? []), i]);
  });
  for (const sb of set.batches) {
    for (const [start, idx] of groups) {
      const meter = costMeter(engine, cost);
      await runGroup(engine, sb, cands, idx, start, plan, acc, meter.mark);
      meter.done();
    }
  }
  const { pooled, kl, logOdds } = acc;
  const norm = set.count * Math.max(1, needs.poolLayers.length);
  return cands.map((_, ci) => {
    if (pooled) for (let i = 0; i < d; i++) pooled[ci][i] /= norm;
    return {
      pooled: pooled ? pooled[ci] : null,
      kl: needs.kl ? kl[ci] / set.count : null,
      logOdds: needs.refusalTokens ? logOdds[ci] / set.count : null,
    };
  });
}

/** What one call of runCandidates computes, and where it stops. */
interface Plan {
  needs: RunNeeds;
  schedule: PassSchedule;
  /** the final norm and logits are needed */
  needHead: boolean;
  /** the last block that must run */
  stop: number;
  pool: Set<number>;
}

/** Per-candidate sums over prompts (divided by the counts at the end). */
interface Sums {
  pooled: Float64Array[] | null;
  kl: Float64Array;
  logOdds: Float64Array;
}

/** `charge(to)` adds the seconds and engine FLOPs since the last charge (or since the meter began) to `to`. */
export function engineMeter(engine: Engine): (to: Tally) => void {
  let t0 = performance.now();
  let f0 = engine.flops;
  return (to) => {
    to.seconds += (performance.now() - t0) / 1000;
    to.flops += engine.flops - f0;
    t0 = performance.now();
    f0 = engine.flops;
  };
}

/** Charges a run's cost to a CostSplit: `mark(l)` after block l, `done()` at the end. */
function costMeter(engine: Engine, cost: CostSplit | undefined) {
  const charge = engineMeter(engine);
  return {
    mark: (l: number) => {
      if (cost && l === cost.splitAfter && l < engine.numLayers - 1) charge(cost.before);
    },
    done: () => {
      if (cost) charge(cost.splitAfter === engine.numLayers - 1 ? cost.before : cost.after);
    },
  };
}

/** One batch of prompts for the candidates `idx` that first edit block `start`; `mark(l)` after each block. */
async function runGroup(
  engine: Engine,
  sb: ScoringBatch,
  cands: CandidateRun[],
  idx: number[],
  start: number,
  plan: Plan,
  acc: Sums,
  mark: (l: number) => void,
): Promise<void> {
  const L = engine.numLayers;
  const d = engine.spec.hiddenSize;
  const V = engine.spec.vocabSize;
  const { needs, schedule, needHead, stop, pool } = plan;
  const pooled = acc.pooled;
  const B = sb.tokens.length;
  const T = sb.batch.length;
  const n = idx.length;
  // Pooled layers before `start` keep their clean outputs.
  for (const j of needs.poolLayers) {
    if (j >= start) continue;
    for (const ci of idx) for (let i = 0; i < B * d; i++) pooled![ci][i % d] += sb.outputs[j][i];
  }
  // Nothing the scores read is downstream of an edit after `stop`.
  if (start > stop) return;
  const rows: Intervention[] = [];
  const tokens: number[][] = [];
  for (const ci of idx)
    for (let b = 0; b < B; b++) {
      rows.push(cands[ci].intervention);
      tokens.push(sb.tokens[b]);
    }
  const ctx = engine.pad(tokens);
  let h: Float32Array;
  if (start === 0) h = engine.embed(ctx);
  else {
    h = new Float32Array(n * B * T * d);
    for (let k = 0; k < n; k++) h.set(sb.inputs[start], k * B * T * d);
  }
  // When only the last position's logits are read, the final block runs for that position
  // alone (its keys and values still see every position).
  const lastOnly = schedule === "fast" && needHead && stop === L - 1 && start <= L - 1;
  let last: Float32Array | null = null;
  for (let l = start; l <= stop; l++) {
    if (lastOnly && l === L - 1) {
      last = await engine.runFinalBlockLastToken(h, ctx, rows);
      break;
    }
    h = (await engine.runBlock(l, h, ctx, rows)).hidden;
    if (pool.has(l) && l < L - 1) {
      const lp = lastPosition(h, n * B, T, d);
      for (let k = 0; k < n; k++) {
        const sum = pooled![idx[k]];
        for (let i = 0; i < B * d; i++) sum[i % d] += lp[k * B * d + i];
      }
    }
    mark(l);
  }
  if (!((needHead || schedule === "naive") && stop === L - 1)) return;
  let head: { finalHidden: Float32Array; logits: Float32Array };
  if (schedule === "naive") {
    // A full forward pass as the reference's HF call makes it: final norm and logits at
    // every position; the scores then read the last one.
    const all = await engine.runHead(h, n * B * T);
    head = { finalHidden: lastPosition(all.finalHidden, n * B, T, d), logits: lastPosition(all.logits, n * B, T, V) };
  } else head = await engine.runHead(last ?? lastPosition(h, n * B, T, d), n * B);
  for (let k = 0; k < n; k++) {
    const ci = idx[k];
    if (pool.has(L - 1)) for (let i = 0; i < B * d; i++) pooled![ci][i % d] += head.finalHidden[k * B * d + i];
    for (let b = 0; b < B; b++) {
      const row = (k * B + b) * V;
      if (needs.kl) acc.kl[ci] += klFromLogits(sb.logits, b * V, head.logits, row, V);
      if (needs.refusalTokens) acc.logOdds[ci] += refusalLogOdds(head.logits, row, V, needs.refusalTokens);
    }
  }
}
