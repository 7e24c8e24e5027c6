/**
 * `cosmic run`: candidate directions → L_low → refusal, steering and KL scores for every
 * candidate (and the substring baseline's scores) → filters → selection → evaluation.
 * Each stage is a module of stages/ with a declared inputs object (its cache key); the
 * resumable stages are reused from the run folder when their key matches (see stage.ts,
 * run-store.ts), and the engine is only built when a stage must run.
 */
import { CosmicError } from "../errors.js";
import { Engine, Device, preflight, WeightsChoice } from "../engine/engine.js";
import type { WeightFormat } from "../engine/quantize.js";
import { Input } from "../formats/outputs.js";
import { norm } from "../engine/interventions.js";
import { ModelFolder } from "../model/folder.js";
import { PromptRecord } from "../data/prompts.js";
import { judgeList } from "../data/refusal-phrases.js";
import { modelFingerprint, modelIdentity } from "../model/fingerprint.js";
import { Evaluation, Evaluator } from "./evaluation.js";
import { at } from "./activations.js";
import { rankLayers, LayerRanking } from "./layers.js";
import { Schedule } from "./scoring.js";
import { CandidateScore, key, scoredPositions, selectionOptions } from "./select.js";
import { RunStore } from "./run-store.js";
import { runStage, StageContext } from "./stage.js";
import { StageClock, StageTimings } from "./stage-clock.js";
import { pct } from "../util/format.js";
import { Directions, directionsStage } from "./stages/directions.js";
import { Scores, scoresIdentity, scoresStage } from "./stages/scores.js";
import { Selected, selectDirections, writeSelection } from "./stages/selection.js";
import { DirectionEditSize, editSizeStage, EditSizes } from "./stages/edit-size.js";
import { evaluationStage } from "./stages/evaluation.js";
import { firstLowLayer, type Mode } from "./modes.js";

export type { Mode } from "./modes.js";
export type Method = "cosmic" | "substring";

export type SystemScope = "selection" | "directions";

/** What `--system` applies to in this run (default: directions and selection). */
function systemScopeOf(options: Pick<RunOptions, "systemScope">): SystemScope {
  return options.systemScope ?? "selection";
}

/** The system message the selection stages (L_low, scores) see. */
export function selectionSystemOf(options: Pick<RunOptions, "system" | "systemScope">): string | undefined {
  return systemScopeOf(options) === "selection" ? options.system : undefined;
}

export interface PromptSets {
  harmfulTrain: PromptRecord[];
  harmfulVal: PromptRecord[];
  harmfulTest: PromptRecord[];
  harmlessTrain: PromptRecord[];
  harmlessVal: PromptRecord[];
  harmlessTest: PromptRecord[];
}

export interface RunOptions {
  model: string;
  out: string;
  prompts: PromptSets;
  mode: Mode;
  /** which selection's direction is the run's result (both are scored) */
  selection: Method;
  seed: number;
  maxNewTokens: number;
  batchSize: number;
  /** system message for direction generation and selection */
  system?: string;
  /**
   * What `system` applies to: "selection" (candidate directions, L_low and scores) or
   * "directions" (only the candidate directions and μ−, as the authors' run_systemprompt_ace.py:
   * L_low and every score then use the prompts without it). Default "selection".
   */
  systemScope?: SystemScope;
  /** system message for the evaluation generations */
  evalSystem?: string;
  klThreshold: number;
  pruneLayers: number;
  lowLayerFraction: number;
  steerTowardRefusal: boolean;
  alphas: number[];
  judge: string;
  /** phrases whose first tokens are the substring baseline's refusal tokens (default: the judge's list) */
  refusalPhrases?: string[];
  schedule: Schedule;
  /** score only the last N EOI positions (default: all, as the reference) */
  scorePositions?: number;
  skipEval: boolean;
  /** the evaluation stage (src/eval's makeEvaluator); without one the run stops after selection */
  evaluator?: Evaluator;
  device: Device;
  threads?: number;
  /** how the Linear weights are held (default auto: float32 when it fits; see engine/memory.ts) */
  weights?: WeightsChoice;
  /** a Jinja chat template that replaces the model folder's */
  chatTemplate?: string;
  /**
   * files and folders the run reads besides the model (prompt files, the judge model, …): the run
   * folder must keep clear of them
   */
  inputs?: Input[];
  progress: (stage: string, done: number, total: number) => void;
  log: (line: string) => void;
}

export interface Timings {
  /** COSMIC's scoring (refusal, steering, KL) */
  scoring_seconds: number;
  /** the substring baseline's (bypass, induce) */
  substring_scoring_seconds: number;
}

/** summary.json: the summary without its wall-clock timings (those are in timings.json and stage_timings.json). */
export function summaryFile(s: RunSummary): Omit<RunSummary, "timings" | "stage_timings"> {
  const { timings: _, stage_timings: __, ...rest } = s;
  return rest;
}

/** A method's selected candidate with its scores, and how many candidates each filter removed. */
export type SelectedDirection = CandidateScore & {
  removed: Record<string, number>;
  /** how far its ablation and addition move the residual stream at its layer (edit-size.ts) */
  edit_size: DirectionEditSize;
};

export interface RunSummary {
  model: string;
  /** how the Linear weights were held (f32, int8, int4) */
  weights: WeightFormat;
  mode: Mode;
  selection: Method;
  seed: number;
  layers: number;
  positions: number;
  eoi_tokens: number[];
  L_low: number[];
  refusal_tokens: number[];
  cosmic: SelectedDirection;
  substring: SelectedDirection | null;
  zero_direction_candidates: number;
  /** the COSMIC scoring stage (refusal, steering, KL) and the substring baseline's (bypass, induce) */
  scoring: { flops: number; schedule: Schedule; substring_flops: number };
  /**
   * wall-clock seconds of the scoring stage: in timings.json, not in summary.json (two identical
   * runs write identical summaries)
   */
  timings: Timings;
  /** each stage's wall-clock time beside the estimate printed before it: stage_timings.json, not summary.json */
  stage_timings?: StageTimings;
  evaluation?: Evaluation;
  /** why the substring baseline selected nothing, when it did not */
  substring_note?: string;
  /** every file of the run folder this run wrote or reused (others were removed) */
  files?: string[];
}

/** First tokens of the refusal phrases (Arditi et al.'s refusal tokens), from this tokenizer. */
export function refusalTokens(folder: ModelFolder, phrases: readonly string[]): number[] {
  const ids = new Set<number>();
  for (const p of phrases) {
    const t = folder.tokenizer.encode(p);
    if (t.length) ids.add(t[0]);
  }
  return [...ids].sort((a, b) => a - b);
}

/** Instructions through the model's chat template (with an optional system message) to token ids. */
export function encodePrompts(folder: ModelFolder, recs: PromptRecord[], system?: string): number[][] {
  return recs.map((r) => folder.tokenizer.encode(folder.tokenizer.formatPrompt(r.instruction, system)));
}

/** The prompt sets must not be empty (the test sets may be, with --skip-eval). */
export function checkPromptSets(options: Pick<RunOptions, "prompts" | "skipEval">): void {
  for (const [name, set] of Object.entries(options.prompts)) {
    if (set.length === 0 && !(options.skipEval && name.endsWith("Test")))
      throw new CosmicError(`the ${name} prompt set is empty`);
  }
}

export async function runPipeline(options: RunOptions): Promise<RunSummary> {
  const folder = ModelFolder.open(options.model, { chatTemplate: options.chatTemplate });
  checkPromptSets(options);
  // Nothing is written before the device is known to start and the run folder is safe to use.
  const weights = await preflight(folder, options.device, options.weights ?? "auto", options.log);
  const store = RunStore.open(options.out, [
    { path: options.model, what: "the model folder" },
    ...(options.inputs ?? []),
  ]);
  const ctx = stageContext(options, folder, store, weights);
  try {
    return await runStages(ctx);
  } finally {
    await ctx.release();
    store.close();
  }
}

/** The method, stage by stage. */
async function runStages(ctx: StageContext): Promise<RunSummary> {
  const { options, folder, store } = ctx;
  const scope = systemScopeOf(options);
  const refTokens = refusalTokens(folder, options.refusalPhrases ?? [...judgeList(options.judge)]);
  // Checked before anything is written: the substring baseline's scores need a refusal token.
  if (refTokens.length === 0)
    throw new CosmicError("--refusal-phrases: no phrase gives a token in this model's tokenizer");
  writePrompts(ctx, scope);
  const eoi = folder.tokenizer.eoiTokens(options.system).ids;
  const dirs = await candidateDirections(ctx, scope, eoi);
  const ranking = lowLayers(ctx, dirs.out);
  writeLayerRanking(ctx, ranking);
  const zero = zeroCandidates(dirs.out, folder, options.scorePositions);
  const scores = await scoreCandidates(ctx, dirs, ranking.low, zero, refTokens);
  const sel = selectionOf(ctx, scores.out, eoi.length, zero);
  writeSelection(sel, dirs.out, ctx, modelIdentity(folder.dir));
  const edits = await editSizesOf(ctx, dirs.out, scores.key, sel);
  const summary = summaryOf(ctx, { eoi, lLow: ranking.low, refTokens, zero, scores: scores.out, sel, edits });
  if (!options.skipEval && options.evaluator)
    summary.evaluation = await evaluate(ctx, options.evaluator, dirs.out, scores.key, sel);
  summary.stage_timings = ctx.clock.finish();
  summary.files = store.finishRun(["summary.json"]);
  store.writeJson("summary.json", summaryFile(summary));
  return summary;
}

/** Stage 1: candidate directions (difference of means at every EOI position and layer). */
function candidateDirections(
  ctx: StageContext,
  scope: SystemScope,
  eoi: number[],
): Promise<{ out: Directions; key: string }> {
  const { options, folder, store } = ctx;
  const inputs = {
    model: modelFingerprint(folder.dir, store.hashCacheFile),
    harmful: options.prompts.harmfulTrain,
    harmless: options.prompts.harmlessTrain,
    system: options.system ?? null,
    systemScope: options.system ? scope : null,
    eoiTokens: eoi,
    template: folder.tokenizer.templateSource,
    // Absent for float32, so that the keys of float32 runs are what they were before quantisation.
    weights: ctx.weights === "f32" ? undefined : ctx.weights,
  };
  return runStage(directionsStage, inputs, ctx);
}

/** Stage 2: L_low, the layers where harmful and harmless activations are least alike. */
function lowLayers(ctx: StageContext, dirs: Directions): LayerRanking {
  const { options, folder } = ctx;
  return rankLayers(
    dirs.harmfulOut,
    dirs.harmlessOut,
    folder.spec.numLayers,
    folder.spec.hiddenSize,
    options.lowLayerFraction,
    options.steerTowardRefusal,
    firstLowLayer(options.mode),
  );
}

/** Stage 3: refusal, steering and KL scores of every candidate, and the substring baseline's. */
async function scoreCandidates(
  ctx: StageContext,
  dirs: { out: Directions; key: string },
  lLow: number[],
  zero: Set<string>,
  refTokens: number[],
): Promise<{ out: Scores; key: string }> {
  const { options } = ctx;
  const inputs = {
    directions: dirs.key,
    lLow,
    harmful: options.prompts.harmfulVal,
    harmless: options.prompts.harmlessVal,
    system: selectionSystemOf(options) ?? null,
    mode: options.mode,
    refusalTokens: refTokens,
    schedule: options.schedule,
    scorePositions: options.scorePositions ?? null,
    lazy:
      options.schedule === "lazy" ? { klThreshold: options.klThreshold, pruneLayers: options.pruneLayers } : undefined,
  };
  const { out, key } = await runStage(scoresStage(dirs.out, zero), inputs, ctx);
  // The later stages are keyed by what the scores depend on (under the lazy schedule: not the KL threshold).
  return { out, key: scoresIdentity(inputs, key) };
}

/** Stage 4: the filters, then each method's best candidate. */
function selectionOf(ctx: StageContext, scores: Scores, positions: number, zero: Set<string>): Selected {
  const { options, folder } = ctx;
  const opts = selectionOptions(folder.spec.numLayers, positions, options.scorePositions, options, zero);
  return selectDirections(scores, opts, options.selection, options.log);
}

/** Stage 4b: how far each selected direction's edits move the residual stream where they act. */
async function editSizesOf(ctx: StageContext, dirs: Directions, scoresKey: string, sel: Selected): Promise<EditSizes> {
  const { options } = ctx;
  const inputs = {
    scores: scoresKey,
    cosmic: sel.cosmic.selected,
    substring: sel.substring?.selected ?? null,
    harmless: options.prompts.harmlessVal,
    system: options.evalSystem ?? null,
    mode: options.mode,
  };
  const edits = (await runStage(editSizeStage(dirs, sel), inputs, ctx)).out;
  const e = edits.cosmic;
  options.log(
    `edit size at layer ${e.layer}'s input (‖Δx‖/‖x‖, ${e.prompts} harmless val prompts): ablation ` +
      `${pct(e.ablation.other)} at the prompt's other positions, ${pct(e.ablation.eoi)} at the EOI positions; ` +
      `addition ${pct(e.addition.other)} / ${pct(e.addition.eoi)}`,
  );
  return edits;
}

/** Stage 5: the evaluator's completions and judges for the selected directions. */
async function evaluate(
  ctx: StageContext,
  evaluator: Evaluator,
  dirs: Directions,
  scoresKey: string,
  sel: Selected,
): Promise<Evaluation> {
  const { options } = ctx;
  const inputs = {
    scores: scoresKey,
    cosmic: sel.cosmic.selected,
    substring: sel.substring?.selected ?? null,
    harmful: options.prompts.harmfulTest,
    harmless: options.prompts.harmlessTest,
    maxNewTokens: options.maxNewTokens,
    evalSystem: options.evalSystem ?? null,
    judge: options.judge,
    steerTowardRefusal: options.steerTowardRefusal,
    alphas: options.alphas,
    evaluator: evaluator.key,
  };
  return (await runStage(evaluationStage(evaluator, dirs, sel), inputs, ctx)).out;
}

/** What the run found, before evaluation. */
function summaryOf(
  ctx: StageContext,
  found: {
    eoi: number[];
    lLow: number[];
    refTokens: number[];
    zero: Set<string>;
    scores: Scores;
    sel: Selected;
    edits: EditSizes;
  },
): RunSummary {
  const { options, folder } = ctx;
  const { sel, scores } = found;
  return {
    model: folder.name,
    weights: ctx.weights,
    mode: options.mode,
    selection: options.selection,
    seed: options.seed,
    layers: folder.spec.numLayers,
    positions: found.eoi.length,
    eoi_tokens: found.eoi,
    L_low: found.lLow,
    refusal_tokens: found.refTokens,
    cosmic: { ...sel.cosmic.selected, removed: sel.cosmic.removed, edit_size: found.edits.cosmic },
    substring: sel.substring
      ? { ...sel.substring.selected, removed: sel.substring.removed, edit_size: found.edits.substring! }
      : null,
    zero_direction_candidates: found.zero.size,
    scoring: scores.scoring,
    timings: scores.timings,
    ...(sel.note ? { substring_note: sel.note } : {}),
  };
}

/** The stages' context: the engine is built on first use and released by `release`. */
function stageContext(
  options: RunOptions,
  folder: ModelFolder,
  store: RunStore,
  weights: WeightFormat,
): StageContext & { release(): Promise<void> } {
  let engine: Engine | null = null;
  const clock = new StageClock(store);
  return {
    folder,
    store,
    options: options,
    weights,
    clock,
    async engine() {
      if (!engine) {
        options.log(
          `building ${folder.spec.numLayers + 1} onnxruntime sessions for ${folder.dir} (${options.device})…`,
        );
        engine = await Engine.load(folder, {
          device: options.device,
          threads: options.threads,
          weights,
          onBuild: (n, t) => options.progress("sessions", n, t),
        });
        clock.built(engine.buildSeconds);
      }
      return engine;
    },
    encode: (recs, system) => encodePrompts(folder, recs, system),
    async release() {
      if (engine) await engine.release();
      engine = null;
    },
  };
}

/** The sampled sets, so that another implementation (the Python reference) can be run on exactly these prompts. */
function writePrompts(ctx: StageContext, scope: SystemScope): void {
  const { prompts: p, system } = ctx.options;
  ctx.store.writeJson("prompts.json", {
    harmful_train: p.harmfulTrain,
    harmless_train: p.harmlessTrain,
    harmful_val: p.harmfulVal,
    harmless_val: p.harmlessVal,
    harmful_test: p.harmfulTest,
    harmless_test: p.harmlessTest,
    system: system ?? null,
    system_scope: system ? scope : null,
  });
}

function writeLayerRanking(ctx: StageContext, ranking: LayerRanking): void {
  ctx.store.writeJson("select_direction/COSMIC_evaluation_layers.json", {
    ranked_layers: ranking.low,
    all_layers_ranked: ranking.ranked,
    cosine_similarity: ranking.similarity,
    second_half_only: ctx.options.steerTowardRefusal,
  });
}

/** Candidates that are zero vectors (layer 0: every prompt has the same EOI embeddings), among those scored. */
export function zeroCandidates(
  dirs: Pick<Directions, "r">,
  folder: ModelFolder,
  scorePositions: number | undefined,
): Set<string> {
  const L = folder.spec.numLayers;
  const d = folder.spec.hiddenSize;
  const P = dirs.r.length / (L * d);
  let maxNorm = 0;
  for (let k = 0; k < P; k++) for (let l = 0; l < L; l++) maxNorm = Math.max(maxNorm, norm(at(dirs.r, k, l, L, d)));
  const zero = new Set<string>();
  for (let k = P - scoredPositions(P, scorePositions); k < P; k++) {
    for (let l = 0; l < L; l++) if (norm(at(dirs.r, k, l, L, d)) <= 1e-6 * maxNorm) zero.add(key(k - P, l));
  }
  return zero;
}
