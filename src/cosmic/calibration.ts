/**
 * Seconds from FLOPs: a short calibration on this machine — the first few blocks in turn, timed on
 * a batch shaped like the run's prompts (compute-bound passes) and on one new token per row
 * (decode steps, bound by memory bandwidth) — and the evaluation's time from it. Used by `--dry-run` (plan.ts) and by
 * the evaluation stage before it starts.
 */
import { Engine } from "../engine/engine.js";
import { blockFlops, headFlops } from "../engine/flops.js";
import { blockWeightBytes } from "../engine/memory.js";
import { headFormat, matrixBytes, WeightFormat } from "../engine/quantize.js";
import type { ModelSpec } from "../formats/config.js";
import { noIntervention } from "../engine/interventions.js";
import { floatTensor } from "../engine/runtime.js";
import { decodeLayers } from "../engine/generate.js";
import { KvCache } from "../engine/kv-cache.js";
import { argmax } from "../engine/sampling.js";
import { ModelFolder } from "../model/folder.js";
import { evaluationJobSets, evaluationJudgeFlops, generationFlops } from "./estimate.js";
import type { RunOptions } from "./pipeline.js";

/** Measured rates: FLOP/s of a prompt-shaped block call, seconds of decode-shaped calls. */
export interface Calibration {
  /** per block, on `rows` prompts of `promptTokens` tokens */
  flopsPerSecond: number;
  promptTokens: number;
  /** one decode step of one block for `rows` rows over `decodeCache` cache columns (through decodeLayers) */
  decodeBlockSeconds: number;
  decodeCache: number;
  /** what each further cached position adds to it (from a second timing at 3 × decodeCache; ≥ 0) */
  decodeSecondsPerPosition: number;
  /** the head and the greedy pick for `rows` rows (null on an engine without its head) */
  headStepSeconds: number | null;
  rows: number;
}

/**
 * Seconds of a typical call: the median after a warm-up, of at least 5 calls and of as many as
 * fill `budget` seconds (at most 60). The best of a few overstated the rate (on the Qwen3-0.6B
 * shape block 0's best call ran at 123–162 GFLOP/s, its median at 117–118, and a default run's
 * candidate passes at 99–112); single calls here vary by ±30 % (prompt-shaped: 169–321 ms in one
 * process), so five were not enough either: three dry runs in a row calibrated 65, 81 and 102.
 */
async function timedMedian(f: () => Promise<unknown>, budget = 2, maxCalls = 61): Promise<number> {
  await f();
  const t: number[] = [];
  const start = performance.now();
  while (t.length < 5 || (t.length < maxCalls - 1 && performance.now() - start < budget * 1000)) {
    const t0 = performance.now();
    await f();
    t.push((performance.now() - t0) / 1000);
  }
  return t.sort((a, b) => a - b)[Math.floor(t.length / 2)];
}

/**
 * Distinct blocks a calibration call runs in turn. One block timed again and again kept its
 * weights and its cache half in the 32 MB L3 here and ran 12.8 ms a decode step on the Qwen3-0.6B
 * shape, against 15.2 ms each for blocks 0–27 in turn (as generation runs them); four blocks of
 * that shape are 250 MB, so each call finds its block's weights out of cache, as in a real pass.
 */
export const CALIBRATION_BLOCKS = 4;

/** Decode steps one timing may run (the warm-up included): each writes one column of its cache. */
const STEP_ROOM = 61;

/**
 * The first blocks of a loaded engine (up to CALIBRATION_BLOCKS, each with its own cache), in
 * turn: on `rows` prompts of `T` tokens, and for a decode step of `rows` rows over a cache of
 * T + M/2 columns (a reply of M tokens' middle; at least STEP_ROOM + 1); and the head with the greedy pick over its logits for
 * `rows` rows, when the engine has its head. Rates are per block.
 */
export async function calibrateEngine(engine: Engine, rows: number, T: number, M = 1): Promise<Calibration> {
  const spec = engine.spec;
  const k = calibrationBlocks(engine);
  const layers = Array.from({ length: k }, (_, l) => l);
  const ivs = Array.from({ length: rows }, () => noIntervention(spec.numLayers));
  const flopsPerSecond = await promptRate(engine, rows, T);
  const x = new Float32Array(rows * spec.hiddenSize).fill(0.01);
  // Decode steps over a cache of S columns: the padded prompts of a batch can be much longer than
  // the mean (the paper's harmful test prompts: mean 34 tokens, batches padded to 65–79), so the
  // cost of each cached position is timed too. The steps run through decodeLayers on a real
  // KvCache of the first blocks (embedding, step context, cache writes included): timing the
  // block calls alone missed ~20 % of a real step on the Qwen3-0.6B shape (6.2 against 7.7 ms a block).
  const columns = (S: number) => Math.max(S, STEP_ROOM + 1);
  const decodeAt = async (S: number): Promise<number> => {
    // Room for the timed steps to write into: a step attends over every column, filled or not.
    const capacity = columns(S);
    const start = capacity - STEP_ROOM;
    const dims = [rows, spec.numKvHeads, start, spec.headDim];
    const cached = () => floatTensor(new Float32Array(rows * spec.numKvHeads * start * spec.headDim).fill(0.01), dims);
    const cache = KvCache.fromBlocks(
      spec,
      layers.map(cached),
      layers.map(cached),
      Array.from({ length: rows }, () => start),
    ).resized(capacity);
    const tokens = Array.from({ length: rows }, (_, b) => 1 + (b % 50));
    return (await timedMedian(() => decodeLayers(engine, tokens, cache, ivs, k), 2, STEP_ROOM)) / k;
  };
  const S = columns(T + Math.floor(M / 2));
  const decode = await decodeAt(S);
  const decodeLong = await decodeAt(3 * S);
  const V = spec.vocabSize;
  const head = engine.hasHead
    ? await timedMedian(async () => {
        const { logits } = await engine.runHead(x, rows);
        for (let b = 0; b < rows; b++) argmax(logits, b * V, V);
      })
    : null;
  return {
    flopsPerSecond,
    promptTokens: T,
    decodeBlockSeconds: decode,
    decodeCache: S,
    decodeSecondsPerPosition: Math.max(0, (decodeLong - decode) / (2 * S)),
    headStepSeconds: head,
    rows,
  };
}

function calibrationBlocks(engine: Engine): number {
  return Math.max(1, Math.min(CALIBRATION_BLOCKS, engine.builtBlocks));
}

/**
 * FLOP/s of a block call on `rows` prompts of `T` tokens: the first blocks in turn, the median
 * call after a warm-up. The scores stage times its candidates' call shape this way rather than
 * taking the clean passes' rate: at `--n-val 10` on the Qwen3-0.6B shape those are one batch per
 * set, each session's first call, and ran at 82, 99 and 151 GFLOP/s in three runs where the
 * candidates' passes ran at 135, 148 and 134 (this timing read 138 and 169 in the last two).
 */
export async function promptRate(engine: Engine, rows: number, T: number, budget = 2): Promise<number> {
  const k = calibrationBlocks(engine);
  const layers = Array.from({ length: k }, (_, l) => l);
  const ivs = Array.from({ length: rows }, () => noIntervention(engine.spec.numLayers));
  const prompts = Array.from({ length: rows }, () => Array.from({ length: T }, (_, t) => 1 + (t % 50)));
  const batch = engine.pad(prompts);
  const h = engine.embed(batch);
  const seconds = (await timedMedian(() => inTurn(layers, (l) => engine.runBlock(l, h, batch, ivs)), budget)) / k;
  return blockFlops(engine.spec, rows, T, T) / seconds;
}

/** What was timed, for the dry run's and the evaluation stage's lines. */
export function describeCalibration(cal: Calibration): string {
  const ms = (x: number) => `${(x * 1000).toFixed(1)} ms`;
  const head = cal.headStepSeconds === null ? "" : `; the head and greedy pick ${ms(cal.headStepSeconds)}`;
  return (
    `${(cal.flopsPerSecond / 1e9).toFixed(0)} GFLOP/s per block on ${cal.rows} × ${cal.promptTokens} tokens; ` +
    `${ms(cal.decodeBlockSeconds)} per block for one new token on ${cal.rows} rows over ${cal.decodeCache} cached columns ` +
    `(+${(cal.decodeSecondsPerPosition * 1e6).toFixed(0)} µs per further one)${head}`
  );
}

async function inTurn(layers: number[], f: (l: number) => Promise<unknown>): Promise<void> {
  for (const l of layers) await f(l);
}

/** The same on an engine of the first CALIBRATION_BLOCKS blocks and the head (`--dry-run`: nothing else is loaded). */
export async function calibrate(
  folder: ModelFolder,
  options: Pick<RunOptions, "device" | "threads">,
  format: WeightFormat,
  rows: number,
  T: number,
  M = 1,
): Promise<Calibration> {
  const engine = await Engine.load(folder, {
    device: options.device,
    threads: options.threads,
    weights: format,
    firstBlocks: Math.min(CALIBRATION_BLOCKS, folder.spec.numLayers),
    withHead: true,
  });
  try {
    return await calibrateEngine(engine, rows, T, M);
  } finally {
    await engine.release();
  }
}

export interface EvaluationEstimate {
  jobs: number;
  /** the generations, every row running to the last new token */
  generationFlops: number;
  /** the loss judge's and the first-token KL's passes, every reply at its longest */
  judgeFlops: number;
  seconds: number;
}

/**
 * The evaluation (eval/evaluate.ts) for `directions` selected directions (COSMIC's, and the
 * substring baseline's when it selects one): both baselines, per direction ablation on both sets
 * and addition on harmless, the α sweep; then the loss judge and the first-token KL. The work is
 * an upper bound (every row runs to the last new token); its seconds are an estimate, not a
 * bound (a default run on the Qwen3-0.6B shape ran 12 % over the one timed with block calls
 * alone). The guard model's passes are not counted.
 */
export function evaluationEstimate(
  spec: ModelSpec,
  format: WeightFormat,
  options: Pick<RunOptions, "batchSize" | "maxNewTokens" | "steerTowardRefusal" | "alphas">,
  test: number[][],
  directions: number,
  cal: Calibration,
): EvaluationEstimate {
  const sets = evaluationJobSets(directions, options.steerTowardRefusal ? options.alphas.length : 0);
  const seconds = (f: number) => f / cal.flopsPerSecond;
  // The head per decode step (as timed, with the greedy pick, else by its FLOPs): scaled with the
  // rows, but never under reading its bytes at the rate a decode-shaped block call reads its own.
  const bandwidth = blockWeightBytes(spec, format) / cal.decodeBlockSeconds;
  const headBytes = matrixBytes(headFormat(format), spec.vocabSize, spec.hiddenSize);
  const headStep = (B: number) =>
    Math.max(
      cal.headStepSeconds !== null ? (cal.headStepSeconds * B) / cal.rows : seconds(headFlops(spec, B)),
      headBytes / bandwidth,
    );
  // A decode step over S cached positions: every block for one token per row (as calibrated,
  // never under the calibrated length's time), then the head.
  const block = (S: number) => cal.decodeBlockSeconds + cal.decodeSecondsPerPosition * Math.max(0, S - cal.decodeCache);
  const step = (B: number, S: number) => spec.numLayers * block(S) * Math.max(1, B / cal.rows) + headStep(B);
  let generation = 0;
  let total = 0;
  for (const set of sets) {
    const g = generationFlops(spec, test[set], options.batchSize, options.maxNewTokens);
    generation += g.prefill + g.steps.reduce((a, st) => a + st.flops, 0);
    total += seconds(g.prefill) + g.steps.reduce((a, st) => a + step(st.B, st.S), 0);
  }
  const judges = evaluationJudgeFlops(spec, test[1], options.batchSize, options.maxNewTokens, directions);
  return { jobs: sets.length, generationFlops: generation, judgeFlops: judges, seconds: total + seconds(judges) };
}
