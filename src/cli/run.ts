/** `cosmic run`: flags → RunOptions, progress, and the summary table. */
import fs from "node:fs";
import path from "node:path";
import { CosmicError } from "../errors.js";
import { loadPrompts, selectPrompts, PromptRecord } from "../data/prompts.js";
import { Device, WeightsChoice } from "../engine/engine.js";
import {
  Method,
  Mode,
  PromptSets,
  RunOptions,
  RunSummary,
  runPipeline,
  SelectedDirection,
  SystemScope,
} from "../cosmic/pipeline.js";
import { planRun, RunPlan } from "../cosmic/plan.js";
import { SetRates } from "../cosmic/evaluation.js";
import { makeEvaluator } from "../eval/evaluate.js";
import { Schedule } from "../cosmic/scoring.js";
import { progressBar, Progress, ProgressMode } from "./progress.js";
import { systemMessage } from "./common.js";
import { Input } from "../formats/outputs.js";
import { pct } from "../util/format.js";
import { formatSeconds } from "../cosmic/estimate.js";
import { describeStageTimings } from "../cosmic/stage-clock.js";

export interface RunFlags {
  model: string;
  out: string;
  data?: string;
  harmfulTrain?: string;
  harmfulVal?: string;
  harmfulTest?: string;
  harmlessTrain?: string;
  harmlessVal?: string;
  harmlessTest?: string;
  nTrain: number;
  nVal: number;
  nTest: number;
  seed: number;
  maxNewTokens: number;
  batchSize: number;
  system?: string;
  /** the system message read from a file (long messages need not go through argv) */
  systemFile?: string;
  /** a Jinja chat template that replaces the model folder's */
  chatTemplate?: string;
  systemScope?: string;
  evalSystem?: string;
  klThreshold: number;
  pruneLayers: number;
  lowLayerFraction: number;
  linear?: boolean;
  affine?: boolean;
  selection: string;
  steerTowardRefusal?: boolean;
  alphas: string;
  judge: string;
  refusalPhrases?: string;
  schedule: string;
  scorePositions?: number;
  skipEval?: boolean;
  /** a Llama-Guard-style classifier folder, the strongest judge */
  judgeModel?: string;
  /** {instruction, response} pairs for the loss judge */
  lossData?: string;
  device: Device;
  threads?: number;
  weights?: WeightsChoice;
  quiet?: boolean;
  jsonProgress?: boolean;
  /** `run --json`: JSON progress lines and a JSON summary */
  json?: boolean;
}

/**
 * The defaults of `cosmic run` (the reference's, except 64 new tokens instead of 512): the
 * flags' defaults, the demo, the tests and the benchmarks all start from this one object.
 */
export const RUN_DEFAULTS = {
  nTrain: 180,
  nVal: 100,
  nTest: 512,
  seed: 42,
  maxNewTokens: 64,
  batchSize: 32,
  klThreshold: 0.1,
  pruneLayers: 0.2,
  lowLayerFraction: 0.1,
  selection: "cosmic",
  alphas: "1,2,3",
  judge: "jailbreakbench",
  schedule: "fast",
  systemScope: "selection",
  device: "cpu",
  weights: "auto",
} as const satisfies Partial<RunFlags>;

/** Run flags: the defaults, then `f`. */
export function runFlags(f: Pick<RunFlags, "model" | "out"> & Partial<RunFlags>): RunFlags {
  return { ...RUN_DEFAULTS, ...f };
}

/** Where each split comes from: an explicit flag, or DIR/<split>.json (the reference layout). */
export function resolveSets(
  f: RunFlags,
  defaultData?: string,
  warn?: (line: string) => void,
  inputs?: Input[],
): PromptSets {
  const data = f.data ?? defaultData;
  if (data && inputs) inputs.push({ path: data, what: "the prompt data folder" });
  const pick = (flag: string | undefined, name: string, n: number, salt: number): PromptRecord[] => {
    const file = flag ?? (data ? path.join(data, `${name}.json`) : undefined);
    if (!file)
      throw new CosmicError(
        `no ${name.replace("_", " ")} prompts: pass --${name.replace("_", "-")} FILE or --data DIR (with ${name}.json)`,
      );
    if (!fs.existsSync(file)) throw new CosmicError(`${file}: missing (${name.replace("_", " ")} prompts)`);
    inputs?.push({ path: file, what: "a prompts file" });
    const nFlag = `--n-${name.split("_")[1]}`;
    return selectPrompts(loadPrompts(file), n, f.seed + salt, warn ? { flag: nFlag, file, say: warn } : undefined);
  };
  return {
    harmfulTrain: pick(f.harmfulTrain, "harmful_train", f.nTrain, 0),
    harmlessTrain: pick(f.harmlessTrain, "harmless_train", f.nTrain, 1),
    harmfulVal: pick(f.harmfulVal, "harmful_val", f.nVal, 2),
    harmlessVal: pick(f.harmlessVal, "harmless_val", f.nVal, 3),
    harmfulTest: f.skipEval ? [] : pick(f.harmfulTest, "harmful_test", f.nTest, 4),
    harmlessTest: f.skipEval ? [] : pick(f.harmlessTest, "harmless_test", f.nTest, 5),
  };
}

function systemScope(v: string | undefined): SystemScope {
  if (v === undefined || v === "selection" || v === "directions") return v ?? "selection";
  throw new CosmicError(`--system-scope must be selection or directions, got "${v}"`);
}

function fraction(name: string, v: number): number {
  if (!(v >= 0 && v < 1)) throw new CosmicError(`${name} must be in [0, 1), got ${v}`);
  return v;
}

export function progressReporter(mode: ProgressMode): {
  progress: (stage: string, done: number, total: number) => void;
  close: () => void;
} {
  let current: { stage: string; bar: Progress } | null = null;
  return {
    progress(stage, done, total) {
      if (!current || current.stage !== stage) {
        current?.bar.stop();
        current = { stage, bar: progressBar(stage, total, mode) };
      }
      current.bar.update(done, total);
    },
    close() {
      current?.bar.stop();
      current = null;
    },
  };
}

/** The run's typed options from its flags (validated), with how it reports progress and messages. */
function optionsFrom(f: RunFlags, defaults: { data?: string }): { options: RunOptions; close(): void } {
  if (f.linear && f.affine) throw new CosmicError("choose one of --affine and --linear");
  const mode: Mode = f.linear ? "linear" : "affine";
  if (f.selection !== "cosmic" && f.selection !== "substring")
    throw new CosmicError(`--selection must be cosmic or substring, got "${f.selection}"`);
  if (f.schedule !== "fast" && f.schedule !== "naive" && f.schedule !== "lazy")
    throw new CosmicError(`--schedule must be fast, lazy or naive, got "${f.schedule}"`);
  const parts = f.alphas.split(",").map((s) => s.trim());
  const alphas = parts.map(Number);
  // An empty element ("1,,2", or "") would read as 0.
  if (parts.some((s) => s === "") || alphas.some((a) => !Number.isFinite(a)))
    throw new CosmicError(`--alphas must be numbers separated by commas, got "${f.alphas}"`);
  const progressMode = f.quiet ? "quiet" : f.jsonProgress || f.json ? "json" : "bar";
  const rep = progressReporter(progressMode);
  const log = (s: string) => {
    if (f.quiet) return;
    rep.close();
    process.stderr.write((progressMode === "json" ? JSON.stringify({ message: s }) : s) + "\n");
  };
  const warn = (line: string) => {
    rep.close();
    process.stderr.write((progressMode === "json" ? JSON.stringify({ warning: line }) : `cosmic: ${line}`) + "\n");
  };
  const inputs: Input[] = [
    ...(f.systemFile ? [{ path: f.systemFile, what: "the system-message file" }] : []),
    ...(f.judgeModel ? [{ path: f.judgeModel, what: "the judge model folder" }] : []),
    ...(f.lossData ? [{ path: f.lossData, what: "the loss data file" }] : []),
  ];
  const system = systemMessage(f);
  const prompts = resolveSets(f, defaults.data, warn, inputs);
  const evaluator = f.skipEval ? undefined : makeEvaluator({ judgeModel: f.judgeModel, lossData: f.lossData });
  const options: RunOptions = {
    model: f.model,
    chatTemplate: f.chatTemplate,
    out: f.out,
    prompts,
    inputs,
    mode,
    selection: f.selection as Method,
    seed: f.seed,
    maxNewTokens: f.maxNewTokens,
    batchSize: f.batchSize,
    system,
    systemScope: systemScope(f.systemScope),
    evalSystem: f.evalSystem,
    klThreshold: f.klThreshold,
    pruneLayers: fraction("--prune-layers", f.pruneLayers),
    lowLayerFraction: fraction("--low-layer-fraction", f.lowLayerFraction),
    steerTowardRefusal: !!f.steerTowardRefusal,
    alphas,
    judge: f.judge,
    refusalPhrases: f.refusalPhrases !== undefined ? refusalPhrasesArg(f.refusalPhrases) : undefined,
    schedule: f.schedule as Schedule,
    scorePositions: f.scorePositions,
    skipEval: !!f.skipEval,
    evaluator,
    device: f.device,
    threads: f.threads,
    weights: f.weights,
    progress: rep.progress,
    log,
  };
  return { options, close: () => rep.close() };
}

/** `use` on the run's options, the progress display closed afterwards whatever happens. */
async function withOptions<T>(
  f: RunFlags,
  defaults: { data?: string },
  use: (o: RunOptions) => Promise<T>,
): Promise<T> {
  const { options, close } = optionsFrom(f, defaults);
  try {
    return await use(options);
  } finally {
    close();
  }
}

export function runCommand(f: RunFlags, defaults: { data?: string } = {}): Promise<RunSummary> {
  return withOptions(f, defaults, runPipeline);
}

/** The plan of the run these flags ask for (nothing is written). */
export function planFor(f: RunFlags, defaults: { data?: string } = {}): Promise<RunPlan> {
  return withOptions(f, defaults, planRun);
}

/** `cosmic run --dry-run`: the plan's lines. */
export async function planCommand(f: RunFlags, defaults: { data?: string } = {}): Promise<string[]> {
  return (await planFor(f, defaults)).lines;
}

/**
 * The evaluation table, led by the strongest judge: attack success on harmful prompts, answered
 * (on task when the prompts have tasks) on harmless ones; the substring figure beside it.
 */
export function formatEvaluation(rates: Record<string, SetRates>, judge: string): string[] {
  const lines = [
    `evaluation — strongest judge: ${judge}`,
    "",
    "| prompts | intervention | n | success (strongest judge) | substring ASR | refused | degenerate | on " +
      "task | guard unsafe | CE on own harmless completions |",
    "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
  ];
  for (const r of Object.values(rates)) {
    const success = r.set === "harmful" ? `attack success ${pct(r.success_rate)}` : `answered ${pct(r.success_rate)}`;
    const own = r.loss_own_completions;
    const loss = own
      ? `${own.baseline.ce.toFixed(3)} → ${own.intervention.ce.toFixed(3)} ` +
        `(${own.relative_increase >= 0 ? "+" : ""}${(100 * own.relative_increase).toFixed(1)} %)`
      : "";
    lines.push(
      `| ${r.set} | ${r.intervention} | ${r.count} | ${success} | ` +
        `${r.set === "harmful" ? pct(r.attack_success_substring) : ""} | ${pct(r.refusal_rate)} | ` +
        `${pct(r.degenerate_rate)} | ${pct(r.on_task_rate)} | ${pct(r.guard_unsafe_rate)} | ${loss} |`,
    );
  }
  return lines;
}

export function formatSummary(s: RunSummary, runDir: string): string {
  const lines: string[] = [];
  const fmt = (x: number) => x.toFixed(4);
  lines.push(
    `model ${s.model} (${s.layers} layers, ${s.positions} EOI positions` +
      `${s.weights === "f32" ? "" : `, ${s.weights} weights`}), ` +
      `mode ${s.mode}, seed ${s.seed}`,
  );
  lines.push(`L_low = [${s.L_low.join(", ")}]; ${s.zero_direction_candidates} zero candidate directions discarded`);
  lines.push(
    `scoring: COSMIC ${s.timings.scoring_seconds.toFixed(1)} s, ${(s.scoring.flops / 1e9).toFixed(1)} GFLOP; ` +
      `substring baseline ${s.timings.substring_scoring_seconds.toFixed(1)} s, ` +
      `${(s.scoring.substring_flops / 1e9).toFixed(1)} GFLOP (${s.scoring.schedule} schedule)`,
  );
  if (s.stage_timings) lines.push(describeStageTimings(s.stage_timings, formatSeconds));
  lines.push("");
  const edits = (d: SelectedDirection) =>
    `${pct(d.edit_size.ablation.other)} (${pct(d.edit_size.ablation.eoi)}) | ` +
    `${pct(d.edit_size.addition.other)} (${pct(d.edit_size.addition.eoi)})`;
  lines.push(
    "| selection | position | layer | refusal score | steering score | KL score | ablation edit | addition edit |",
  );
  lines.push("| --- | --- | --- | --- | --- | --- | --- | --- |");
  lines.push(
    `| COSMIC${s.selection === "cosmic" ? " (used)" : ""} | ${s.cosmic.position} | ${s.cosmic.layer} | ` +
      `${fmt(s.cosmic.refusal_score)} | ${fmt(s.cosmic.steering_score)} | ${fmt(s.cosmic.kl_div_score)} | ` +
      `${edits(s.cosmic)} |`,
  );
  if (s.substring)
    lines.push(
      `| substring${s.selection === "substring" ? " (used)" : ""} | ${s.substring.position} | ` +
        `${s.substring.layer} | ${fmt(s.substring.refusal_score)} (bypass) | ` +
        `${fmt(s.substring.steering_score)} (induce) | ${fmt(s.substring.kl_div_score)} | ${edits(s.substring)} |`,
    );
  lines.push(
    `edit: ‖Δx‖/‖x‖ at the layer's input, mean over the harmless val prompts' positions other than the EOI ` +
      `positions (the EOI positions in brackets); an edit near or above 100 % moves every token off its own ` +
      `distribution (README: "Edit size")`,
  );
  if (s.substring_note) lines.push(`substring baseline: ${s.substring_note.replace(/^the substring baseline /, "")}`);
  if (s.evaluation) lines.push("", ...formatEvaluation(s.evaluation.rates, s.evaluation.strongest_judge.description));
  if (s.evaluation)
    lines.push(
      `first-token KL on harmless test under the COSMIC ablation: ` +
        `${s.evaluation.harmless_ablation_first_token_kl.toFixed(4)}`,
    );
  lines.push("");
  lines.push(`run folder: ${runDir} (summary.json, direction.safetensors, select_direction/, completions/)`);
  return lines.join("\n");
}

/** `--refusal-phrases "A|B|…"`: the phrases as given (a leading space can matter to a tokenizer); none empty. */
function refusalPhrasesArg(v: string): string[] {
  const phrases = v.split("|");
  if (phrases.some((p) => p.trim() === ""))
    throw new CosmicError(`--refusal-phrases must be phrases separated by "|", none empty, got "${v}"`);
  return phrases;
}
