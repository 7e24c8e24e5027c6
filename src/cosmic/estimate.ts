/**
 * What the method's forward passes cost, in the engine's own FLOP count (engine/flops.ts),
 * computed from the prompts' token lengths alone — the same batches, schedule and stopping
 * rules as stages/directions.ts and scoring.ts — so that a run can say how long it will take
 * before it starts, and `--dry-run` can print the plan without running it.
 */
import type { ModelSpec } from "../formats/config.js";
import { blockFlops, headFlops, lastTokenBlockFlops } from "../engine/flops.js";
import { decodeCapacity } from "../engine/kv-cache.js";
import type { Mode } from "./modes.js";
import type { PassSchedule, Schedule } from "./scoring.js";
import { firstPrunedLayer } from "./select.js";

/** Rows and padded length of each batch: consecutive slices of `batchSize`, padded to their longest. */
export function batchShapes(lengths: number[], batchSize: number): { B: number; T: number }[] {
  const out: { B: number; T: number }[] = [];
  for (let s = 0; s < lengths.length; s += batchSize) {
    const chunk = lengths.slice(s, s + batchSize);
    out.push({ B: chunk.length, T: Math.max(...chunk) });
  }
  return out;
}

/** Every block and the head over a set (a capture with final hidden states, or a clean scoring pass). */
export function fullPassFlops(spec: ModelSpec, lengths: number[], batchSize: number): number {
  let f = 0;
  for (const { B, T } of batchShapes(lengths, batchSize))
    f += spec.numLayers * blockFlops(spec, B, T, T) + headFlops(spec, B);
  return f;
}

/** Stage 4b (edit sizes): a clean pass of a set through the blocks below `layer`, the deepest probe's (stages/edit-size.ts). */
export function editSizeFlops(spec: ModelSpec, lengths: number[], batchSize: number, layer: number): number {
  let f = 0;
  for (const { B, T } of batchShapes(lengths, batchSize)) f += layer * blockFlops(spec, B, T, T);
  return f;
}

/** Stage 1: the harmful and harmless train sets through the whole model. */
export function directionsFlops(spec: ModelSpec, harmful: number[], harmless: number[], batchSize: number): number {
  return fullPassFlops(spec, harmful, batchSize) + fullPassFlops(spec, harmless, batchSize);
}

/** What a scoring call reads: pooled outputs of some layers, and/or the logits. */
interface Needs {
  poolLayers: number[];
  logits: boolean;
}

/** runCandidates for `c` candidates that first edit block `start`, over one set. */
function candidateRunFlops(
  spec: ModelSpec,
  shapes: { B: number; T: number }[],
  c: number,
  start: number,
  needs: Needs,
  schedule: PassSchedule,
): number {
  const L = spec.numLayers;
  const maxPool = needs.poolLayers.length ? Math.max(...needs.poolLayers) : -1;
  const needHead = needs.logits || maxPool === L - 1;
  const stop = schedule === "naive" || needHead ? L - 1 : maxPool;
  const s0 = schedule === "naive" ? 0 : start;
  if (s0 > stop) return 0;
  const lastOnly = schedule === "fast" && needHead && stop === L - 1;
  let f = 0;
  for (const { B, T } of shapes) {
    const n = c * B;
    for (let l = s0; l <= stop; l++)
      f += lastOnly && l === L - 1 ? lastTokenBlockFlops(spec, n, T, T) : blockFlops(spec, n, T, T);
    if ((needHead || schedule === "naive") && stop === L - 1)
      f += schedule === "naive" ? headFlops(spec, n * T) : headFlops(spec, n);
  }
  return f;
}

export interface ScoringPlan {
  /** the clean passes over both validation sets */
  clean: number;
  /** COSMIC's refusal, steering and KL passes */
  cosmic: number;
  /** the substring baseline's bypass and induce passes (fast schedule: what they add to COSMIC's, which they share) */
  substring: number;
}

/**
 * Stage 3 for `live[l]` candidates at each layer l (the zero directions skip their passes): per
 * layer, ablation on harmful and addition on harmless pooled over L_low, ablation on harmless to
 * the logits (KL), and the substring baseline's two log-odds passes. Under the lazy schedule: the
 * pooled passes, and the baseline's passes at layers below the pruned ones — an upper bound of
 * its per-layer passes (a bypass pass runs only where the induce score is positive); its KL passes
 * (a few candidates', known only from the scores) are not included.
 */
export function scoringFlops(
  spec: ModelSpec,
  harmful: number[],
  harmless: number[],
  batchSize: number,
  lLow: number[],
  mode: Mode,
  schedule: Schedule,
  live: number[],
  /** the last fraction of layers whose candidates selection never takes (lazy schedule only) */
  pruneLayers?: number,
): ScoringPlan {
  const harm = batchShapes(harmful, batchSize);
  const safe = batchShapes(harmless, batchSize);
  const pool = { poolLayers: lLow, logits: false };
  const logits = { poolLayers: [], logits: true };
  const both = { poolLayers: lLow, logits: true };
  const plan: ScoringPlan = {
    clean: fullPassFlops(spec, harmful, batchSize) + fullPassFlops(spec, harmless, batchSize),
    cosmic: 0,
    substring: 0,
  };
  if (schedule === "lazy" && pruneLayers === undefined)
    throw new Error("the lazy schedule's estimate needs pruneLayers");
  const maxLayer = firstPrunedLayer(spec.numLayers, pruneLayers ?? 0);
  const pass: PassSchedule = schedule === "naive" ? "naive" : "fast";
  live.forEach((c, l) => {
    if (c === 0) return;
    // Affine edits start at their layer; linear ablation edits every layer from the first.
    const ablateStart = mode === "affine" ? l : 0;
    const run = (shapes: typeof harm, start: number, needs: Needs) =>
      candidateRunFlops(spec, shapes, c, start, needs, pass);
    const pooled = run(harm, ablateStart, pool) + run(safe, l, pool);
    // The fast schedule runs the baseline's passes and COSMIC's pooled ones as one (scores.ts sharedPasses).
    const shared =
      run(harm, ablateStart, both) - run(harm, ablateStart, pool) + run(safe, l, both) - run(safe, l, pool);
    if (schedule === "lazy") {
      plan.cosmic += pooled;
      if (l < maxLayer) plan.substring += shared;
      return;
    }
    plan.cosmic += pooled + run(safe, ablateStart, logits);
    plan.substring += schedule === "naive" ? run(harm, ablateStart, logits) + run(safe, l, logits) : shared;
  });
  return plan;
}

export function totalScoring(p: ScoringPlan): number {
  return p.clean + p.cosmic + p.substring;
}

/** 1.2 TFLOP, 340 GFLOP, … */
export function formatFlops(f: number): string {
  if (f >= 1e12) return `${(f / 1e12).toFixed(1)} TFLOP`;
  if (f >= 1e9) return `${(f / 1e9).toFixed(1)} GFLOP`;
  return `${(f / 1e6).toFixed(1)} MFLOP`;
}

/** 45 s, 12 min, 2.3 h */
export function formatSeconds(s: number): string {
  if (s < 90) return `${Math.max(1, Math.round(s))} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

/**
 * One generation job over a set: the prompts' prefill, then up to M − 1 decode steps per batch
 * (every row running to M tokens: an upper bound, since a batch stops when all its rows end).
 * Each step attends over the whole cache (S columns, its spare ones included: engine/kv-cache.ts) and itself.
 */
export function generationFlops(
  spec: ModelSpec,
  lengths: number[],
  batchSize: number,
  M: number,
): { prefill: number; steps: { B: number; S: number; flops: number }[] } {
  const steps: { B: number; S: number; flops: number }[] = [];
  for (const { B, T } of batchShapes(lengths, batchSize)) {
    for (let k = 1; k < M; k++) {
      const S = decodeCapacity(T, M, k);
      steps.push({ B, S, flops: spec.numLayers * blockFlops(spec, B, 1, S + 1) + headFlops(spec, B) });
    }
  }
  return { prefill: fullPassFlops(spec, lengths, batchSize), steps };
}

/**
 * The loss judge's pass over prompt + response texts (engine/forward.ts sequenceLogProbs): every
 * block over the whole text, the head at each response token; empty responses are dropped first
 * (eval/loss.ts crossEntropy).
 */
export function logProbFlops(spec: ModelSpec, prompts: number[], responses: number[], batchSize: number): number {
  const kept = responses.flatMap((r, i) => (r > 0 ? [i] : []));
  let f = 0;
  for (let s = 0; s < kept.length; s += batchSize) {
    const chunk = kept.slice(s, s + batchSize);
    const T = Math.max(...chunk.map((i) => prompts[i] + responses[i]));
    const picks = chunk.reduce((a, i) => a + prompts[i] + responses[i] - Math.max(1, prompts[i]), 0);
    f += spec.numLayers * blockFlops(spec, chunk.length, T, T) + headFlops(spec, picks);
  }
  return f;
}

/** What the evaluation (eval/evaluate.ts) generates for: one set (0 harmful, 1 harmless) per job. */
export function evaluationJobSets(directions: number, sweepAlphas: number): number[] {
  return [
    ...Array<number>(1 + directions).fill(0),
    ...Array<number>(1 + 2 * directions).fill(1),
    ...Array.from({ length: sweepAlphas }, () => [0, 1]).flat(),
  ];
}

/**
 * The evaluation's own passes besides generation, at their largest (every reply M tokens long):
 * the loss judge over the model's baseline harmless completions without and with each
 * direction's ablation, and the first-token KL's two passes over the harmless test prompts.
 */
export function evaluationJudgeFlops(
  spec: ModelSpec,
  harmless: number[],
  batchSize: number,
  maxNewTokens: number,
  directions: number,
): number {
  const replies = harmless.map(() => maxNewTokens);
  return (
    (1 + directions) * logProbFlops(spec, harmless, replies, batchSize) + 2 * fullPassFlops(spec, harmless, batchSize)
  );
}
