/**
 * `cosmic run --dry-run`: the plan of a run — prompt sets, candidates, passes, FLOPs, memory and
 * an estimated time — without running it or writing anything. The time comes from a short
 * calibration on this machine (calibration.ts).
 */
import { PEAK_OVER_WEIGHTS, residentWeightBytes, resolveWeights } from "../engine/memory.js";
import { ModelFolder } from "../model/folder.js";
import { PromptRecord } from "../data/prompts.js";
import { directionsFlops, editSizeFlops, formatFlops, formatSeconds, scoringFlops, totalScoring } from "./estimate.js";
import { calibrate, describeCalibration, evaluationEstimate, EvaluationEstimate } from "./calibration.js";
import { eligibleLayers, lowLayerCount } from "./layers.js";
import { firstLowLayer } from "./modes.js";
import { firstPrunedLayer, scoredPositions } from "./select.js";
import { checkPromptSets, encodePrompts, RunOptions, selectionSystemOf } from "./pipeline.js";
import { describeMachine } from "../util/machine.js";

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

/** Stage 5's line: the bound for two directions, and for COSMIC's alone. */
function evaluationLine(
  test: number[][],
  maxNewTokens: number,
  both: EvaluationEstimate | null,
  cosmicOnly: EvaluationEstimate | null,
): string {
  if (!both || !cosmicOnly) return `5. evaluation: skipped (--skip-eval)`;
  return (
    `5. evaluation: ${both.jobs} generation jobs of ${test[0].length} + ${test[1].length} prompts ` +
    `(${cosmicOnly.jobs} if the substring baseline selects no direction), up to ${maxNewTokens} new ` +
    `tokens each (${formatFlops(both.generationFlops)}), the loss judge and first-token KL ` +
    `(${formatFlops(both.judgeFlops)}): about ${formatSeconds(both.seconds)} ` +
    `(${formatSeconds(cosmicOnly.seconds)}) if every reply runs to ${maxNewTokens} tokens; EOS ends most sooner`
  );
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
  const positions = scoredPositions(P, options.scorePositions);
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
  const scoring = (lLow: number[], schedule = options.schedule) =>
    scoringFlops(spec, val[0], val[1], bs, lLow, options.mode, schedule, live, options.pruneLayers);
  const early = scoring(eligible.slice(0, k));
  const late = scoring(eligible.slice(-k));
  // What the lazy schedule would run at most, offered beside the fast one.
  const lazyBound = [scoring(eligible.slice(0, k), "lazy"), scoring(eligible.slice(-k), "lazy")].map(totalScoring);
  // The selected layers are below the pruned last layers; one pass serves both methods' directions.
  const lastLayer = Math.max(0, firstPrunedLayer(L, options.pruneLayers) - 1);
  const edits = editSizeFlops(spec, lengths(p.harmlessVal, options.evalSystem), bs, lastLayer);
  const T = Math.round(mean([...train[0], ...train[1]]));
  const rows = Math.min(bs, train[0].length);
  const cal = await calibrate(folder, options, format, rows, Math.max(1, T), options.maxNewTokens);
  const seconds = (f: number) => f / cal.flopsPerSecond;
  // Two directions when the substring baseline selects one too (known only after the scores).
  const evaluation = options.skipEval ? null : evaluationEstimate(spec, format, options, test, 2, cal);
  const cosmicOnly = options.skipEval ? null : evaluationEstimate(spec, format, options, test, 1, cal);
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
    `calibration (the first blocks and the head on this machine, ${describeMachine()}): ${describeCalibration(cal)}`,
    `1. directions: ${formatFlops(dirFlops)}${lowPasses ? " (with L_low's passes without the system message)" : ""}, ` +
      `about ${formatSeconds(seconds(dirFlops))}`,
    `2. L_low: from the directions' layer outputs (no passes)`,
    `3. scores (${options.schedule} schedule): ${options.schedule === "lazy" ? "at most " : ""}` +
      `${formatFlops(totalScoring(early))} if L_low lies in the earliest ` +
      `layers, ${formatFlops(totalScoring(late))} in the latest: about ` +
      `${formatSeconds(seconds(totalScoring(early)))} to ${formatSeconds(seconds(totalScoring(late)))}` +
      (options.schedule === "fast"
        ? `; --schedule lazy (the same selections, only the scores they read) at most ` +
          `${formatFlops(lazyBound[0])} / ${formatFlops(lazyBound[1])}, about ${formatSeconds(seconds(lazyBound[0]))} ` +
          `to ${formatSeconds(seconds(lazyBound[1]))}`
        : ""),
    `4. selection: no passes; edit sizes: at most ${formatFlops(edits)} (the harmless val prompts through the ` +
      `blocks below the deeper method's selected layer, at most layer ${lastLayer}), about ${formatSeconds(seconds(edits))}`,
    evaluationLine(test, options.maxNewTokens, evaluation, cosmicOnly),
    `session build and a --judge-model's passes are not included; nothing was written`,
  ];
  return {
    lines,
    flops: {
      directions: dirFlops,
      scoresEarliest: totalScoring(early),
      scoresLatest: totalScoring(late),
      evaluationAtMost: evaluation ? evaluation.generationFlops + evaluation.judgeFlops : null,
    },
    seconds: {
      directions: seconds(dirFlops),
      scoresEarliest: seconds(totalScoring(early)),
      scoresLatest: seconds(totalScoring(late)),
      evaluationAtMost: evaluation ? evaluation.seconds : null,
    },
  };
}
