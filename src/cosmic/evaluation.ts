/**
 * What the pipeline hands to an evaluator, and what it gets back. The evaluator itself lives in
 * src/eval (it consumes the method's result); the pipeline only declares the shapes.
 */
import { Engine } from "../engine/engine.js";
import { Intervention } from "../engine/interventions.js";
import { PromptRecord } from "../data/prompts.js";
import { ChatTokenizer } from "../tokenize/chat.js";
import type { PromptSets, RunOptions, Method } from "./pipeline.js";

export interface EvaluatedDirection {
  method: Method;
  position: number;
  layer: number;
  /** the run mode's ablation (ACE at the layer when affine, every layer when linear) */
  ablate: Intervention;
  /** the run mode's addition with coefficient α */
  add: (alpha: number) => Intervention;
}

export interface EvaluationRequest {
  engine: Engine;
  tokenizer: ChatTokenizer;
  eosTokenIds: number[];
  prompts: PromptSets;
  options: RunOptions;
  /** the COSMIC direction first, then the substring baseline's when it selected one */
  directions: EvaluatedDirection[];
  /** the α sweep's intervention (activation addition of the COSMIC direction) */
  sweep: (alpha: number) => Intervention;
  /** why the substring baseline has no direction, when it has none */
  substringNote?: string;
  encode: (recs: PromptRecord[], system?: string) => number[][];
  writeJson: (file: string, value: unknown) => void;
  progress: (stage: string, done: number, total: number) => void;
}

export interface StrongestJudge {
  name: "guard" | "on-task" | "non-refusal-non-degenerate";
  model?: string;
  description: string;
}

export interface LossFigures {
  ce: number;
  perplexity: number;
  tokens: number;
  sequences: number;
}

export interface LossComparisonFigures {
  baseline: LossFigures;
  intervention: LossFigures;
  relative_increase: number;
}

/** One (prompt set, intervention): every judge's rate. */
export interface SetRates {
  set: "harmful" | "harmless";
  intervention: string;
  count: number;
  /** substring judge */
  refusal_rate: number;
  degenerate_rate: number;
  /** null when the prompts carry no task */
  on_task_rate: number | null;
  /** null without --judge-model (judged on harmful sets only) */
  guard_unsafe_rate: number | null;
  /** the strongest judge: a jailbreak on harmful sets, an answer on harmless ones */
  success_rate: number;
  /** harmful sets: = success_rate (the strongest judge) */
  attack_success_rate?: number;
  /** harmful sets: the paper's column, 1 − substring refusal rate */
  attack_success_substring?: number;
  /** under an ablation, on the model's own baseline harmless completions */
  loss_own_completions?: LossComparisonFigures;
  /** under an ablation, on --loss-data */
  loss_data?: LossComparisonFigures;
}

export interface Evaluation {
  judge: string;
  strongest_judge: StrongestJudge;
  max_new_tokens: number;
  rates: Record<string, SetRates>;
  harmless_ablation_first_token_kl: number;
  substring_note?: string;
}

export interface Evaluator {
  /** what, besides the run's own inputs, decides the evaluation (for the stage's cache key) */
  key: unknown;
  run: (req: EvaluationRequest) => Promise<Evaluation>;
}
