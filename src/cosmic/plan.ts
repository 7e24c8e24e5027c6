/**
 * `cosmic run --dry-run`: the plan of a run — prompt sets, candidates, passes, FLOPs, memory and
 * an estimated time — without running it or writing anything. The time comes from a short
 * calibration on this machine: block 0 alone, timed on a batch shaped like the run's prompts
 * (compute-bound passes) and on one new token per row (decode steps, bound by memory bandwidth).
 */
import { Engine } from "../engine/engine.js";
import { blockFlops, headFlops } from "../engine/flops.js";
import { blockWeightBytes, PEAK_OVER_WEIGHTS, residentWeightBytes, resolveWeights } from "../engine/memory.js";
import { headFormat, matrixBytes, WeightFormat } from "../engine/quantize.js";
import type { ModelSpec } from "../formats/config.js";
import { noIntervention } from "../engine/interventions.js";
import { ModelFolder } from "../model/folder.js";
import { PromptRecord } from "../data/prompts.js";
import {
  directionsFlops,
  editSizeFlops,
  formatFlops,
  formatSeconds,
  generationFlops,
  scoringFlops,
  totalScoring,
} from "./estimate.js";
import { eligibleLayers, lowLayerCount } from "./layers.js";
import { firstLowLayer } from "./modes.js";
import { checkPromptSets, encodePrompts, RunOptions, selectionSystemOf } from "./pipeline.js";

/** Measured rates: FLOP/s of a prompt-shaped block call, seconds of a decode-shaped one per block. */
export interface Calibration {
  flopsPerSecond: number;
  /** one block, one new token for `rows` rows */
  decodeBlockSeconds: number;
  rows: number;
}

/**
 * Seconds of a typical call: the median of `n` after a warm-up. (The best of a few overstated the
 * rate: on the Qwen3-0.6B shape block 0's best call ran at 123–162 GFLOP/s, its median at 117–118,
 * and a default run's candidate passes at 99–112.)
 */
async function timedMedian(f: () => Promise<unknown>, n = 5): Promise<number> {
  await f();
  const t: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await f();
    t.push((performance.now() - t0) / 1000);
  }
  return t.sort((a, b) => a - b)[Math.floor(n / 2)];
}

/** Block 0 on `rows` prompts of `T` tokens, and on one token for each of `rows` rows after T cached ones. */
export async function calibrate(
  folder: ModelFolder,
  options: Pick<RunOptions, "device" | "threads">,
  format: WeightFormat,
  rows: number,
  T: number,
): Promise<Calibration> {
  const engine = await Engine.load(folder, {
    device: options.device,
    threads: options.threads,
    weights: format,
    firstBlocks: 1,
  });
  try {
    const ivs = Array.from({ length: rows }, () => noIntervention(folder.spec.numLayers));
    const prompts = Array.from({ length: rows }, () => Array.from({ length: T }, (_, t) => 1 + (t % 50)));
    const batch = engine.pad(prompts);
    const h = engine.embed(batch);
    const prefill = await timedMedian(() => engine.runBlock(0, h, batch, ivs));
    const first = await engine.runBlock(0, h, batch, ivs);
    const step = engine.stepContext(
      batch.keyValid.map((v) => Uint8Array.from([...v, 1])),
      batch.positions.map((p) => [p.length]),
      T,
    );
    const x = new Float32Array(rows * folder.spec.hiddenSize).fill(0.01);
    const decode = await timedMedian(() => engine.runBlock(0, x, step, ivs, { key: first.key, value: first.value }));
    return {
      flopsPerSecond: blockFlops(folder.spec, rows, T, T) / prefill,
      decodeBlockSeconds: decode,
      rows,
    };
  } finally {
    await engine.release();
  }
}

/**
 * The evaluation's generations (eval/evaluate.ts): both baselines, then per direction (COSMIC's
 * and, when it selects one, the substring baseline's: counted) ablation on both sets and
 * addition on harmless, and the α sweep; every row running to the last new token.
 */
function evaluationEstimate(
  spec: ModelSpec,
  format: WeightFormat,
  options: RunOptions,
  test: number[][],
  cal: Calibration,
): { jobs: number; flops: number; seconds: number } {
  const D = 2;
  const jobs: number[] = [
    ...Array<number>(1 + D).fill(0),
    ...Array<number>(1 + 2 * D).fill(1),
    ...(options.steerTowardRefusal ? options.alphas.flatMap(() => [0, 1]) : []),
  ];
  const seconds = (f: number) => f / cal.flopsPerSecond;
  // The head per decode step: compute-bound for many rows, bandwidth-bound (its bytes at the rate
  // a decode-shaped block call reads its own) for few.
  const bandwidth = blockWeightBytes(spec, format) / cal.decodeBlockSeconds;
  const headBytes = matrixBytes(headFormat(format), spec.vocabSize, spec.hiddenSize);
  const headStep = (B: number) => Math.max(seconds(headFlops(spec, B)), headBytes / bandwidth);
  // A decode step: every block for one token per row (as calibrated), then the head.
  const step = (B: number) => spec.numLayers * cal.decodeBlockSeconds * Math.max(1, B / cal.rows) + headStep(B);
  let flops = 0;
  let total = 0;
  for (const set of jobs) {
    const g = generationFlops(spec, test[set], options.batchSize, options.maxNewTokens);
    flops += g.prefill + g.steps.reduce((a, st) => a + st.flops, 0);
    total += seconds(g.prefill) + g.steps.reduce((a, st) => a + step(st.B), 0);
  }
  return { jobs: jobs.length, flops, seconds: total };
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);

/** Per stage: the directions, the scores with L_low in the earliest and the latest layers, the evaluation's bound. */
export interface StageFigures {
  directions: number;
  scoresEarliest: number;
  scoresLatest: number;
  evaluationAtMost: number | null;
}

/** The plan: its printable lines, and the estimated FLOPs and seconds per stage. */
export interface RunPlan {
  lines: string[];
  flops: StageFigures;
  seconds: StageFigures;
}

export async function planRun(options: RunOptions): Promise<RunPlan> {
  const folder = ModelFolder.open(options.model, { chatTemplate: options.chatTemplate });
  const spec = folder.spec;
  checkPromptSets(options);
  const { format, note } = resolveWeights(spec, options.weights ?? "auto");
  const lengths = (recs: PromptRecord[], system?: string) => encodePrompts(folder, recs, system).map((t) => t.length);
  const p = options.prompts;
  const selSystem = selectionSystemOf(options);
  const train = [lengths(p.harmfulTrain, options.system), lengths(p.harmlessTrain, options.system)];
  const val = [lengths(p.harmfulVal, selSystem), lengths(p.harmlessVal, selSystem)];
  const test = [lengths(p.harmfulTest, options.evalSystem), lengths(p.harmlessTest, options.evalSystem)];
  const L = spec.numLayers;
  const P = folder.tokenizer.eoiTokens(options.system).ids.length;
  const positions = Math.min(P, options.scorePositions ?? P);
  const bs = options.batchSize;
  // --system-scope directions: L_low comes from a second pair of train passes without the system message.
  const lowPasses = options.system !== undefined && selSystem === undefined;
  const dirFlops =
    directionsFlops(spec, train[0], train[1], bs) +
    (lowPasses ? directionsFlops(spec, lengths(p.harmfulTrain), lengths(p.harmlessTrain), bs) : 0);
  // L_low's cost depends on where it lies (known after the directions): its earliest and latest placements.
  const k = lowLayerCount(L, options.lowLayerFraction);
  const eligible = eligibleLayers(L, options.steerTowardRefusal, firstLowLayer(options.mode));
  const live = Array.from({ length: L }, (_, l) => (l === 0 ? 0 : positions));
  const scoring = (lLow: number[]) =>
    scoringFlops(spec, val[0], val[1], bs, lLow, options.mode, options.schedule, live);
  const early = scoring(eligible.slice(0, k));
  const late = scoring(eligible.slice(-k));
  // The selected layers are below the pruned last layers; one pass serves both methods' directions.
  const lastLayer = Math.max(0, Math.floor(L * (1 - options.pruneLayers)) - 1);
  const edits = editSizeFlops(spec, lengths(p.harmlessVal, options.evalSystem), bs, lastLayer);
  const T = Math.round(mean([...train[0], ...train[1]]));
  const cal = await calibrate(folder, options, format, Math.min(bs, train[0].length), Math.max(1, T));
  const seconds = (f: number) => f / cal.flopsPerSecond;
  const evaluation = options.skipEval ? null : evaluationEstimate(spec, format, options, test, cal);
  const resident = residentWeightBytes(spec, format);
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
  const lines = [
    `model ${folder.name}: ${L} layers, width ${spec.hiddenSize}, vocab ${spec.vocabSize}`,
    `weights ${format}${note ? ` (${note.replace(/^weights: [a-z0-9]+ /, "")})` : ""}: ${gib(resident)} resident, ` +
      `peak about ${gib(PEAK_OVER_WEIGHTS * resident)}`,
    `prompts: train ${p.harmfulTrain.length} + ${p.harmlessTrain.length}, val ${p.harmfulVal.length} + ` +
      `${p.harmlessVal.length}, test ${p.harmfulTest.length} + ${p.harmlessTest.length} (harmful + harmless); ` +
      `mean ${T} tokens (train), batch ${bs}`,
    `candidates: ${positions} EOI positions × ${L} layers (${positions * L}; layer 0's are zero whenever every ` +
      `prompt ends with the same EOI tokens); L_low: ${k} of ${eligible.length} eligible layers`,
    `calibration (block 0 on this machine): ${(cal.flopsPerSecond / 1e9).toFixed(0)} GFLOP/s on ${cal.rows} × ${T} ` +
      `tokens; ${(cal.decodeBlockSeconds * 1000).toFixed(1)} ms per block for one new token on ${cal.rows} rows`,
    `1. directions: ${formatFlops(dirFlops)}${lowPasses ? " (with L_low's passes without the system message)" : ""}, ` +
      `about ${formatSeconds(seconds(dirFlops))}`,
    `2. L_low: from the directions' layer outputs (no passes)`,
    `3. scores (${options.schedule} schedule): ${formatFlops(totalScoring(early))} if L_low lies in the earliest ` +
      `layers, ${formatFlops(totalScoring(late))} in the latest: about ` +
      `${formatSeconds(seconds(totalScoring(early)))} ` +
      `to ${formatSeconds(seconds(totalScoring(late)))}`,
    `4. selection: no passes; edit sizes: at most ${formatFlops(edits)} (the harmless val prompts through the ` +
      `blocks below the deeper method's selected layer, at most layer ${lastLayer}), about ${formatSeconds(seconds(edits))}`,
    !evaluation
      ? `5. evaluation: skipped (--skip-eval)`
      : `5. evaluation: ${evaluation!.jobs} generation jobs of ${test[0].length}–${test[1].length} prompts, up to ` +
        `${options.maxNewTokens} new tokens each (${formatFlops(evaluation!.flops)}): at most about ` +
        `${formatSeconds(evaluation!.seconds)} (EOS ends most replies sooner); the judges' passes not included`,
    `session build and the judges' own model are not included; nothing was written`,
  ];
  return {
    lines,
    flops: {
      directions: dirFlops,
      scoresEarliest: totalScoring(early),
      scoresLatest: totalScoring(late),
      evaluationAtMost: evaluation ? evaluation.flops : null,
    },
    seconds: {
      directions: seconds(dirFlops),
      scoresEarliest: seconds(totalScoring(early)),
      scoresLatest: seconds(totalScoring(late)),
      evaluationAtMost: evaluation ? evaluation.seconds : null,
    },
  };
}
