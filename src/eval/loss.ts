/**
 * The loss judge: cross-entropy (and perplexity) of the model on fixed text, with and without an
 * intervention — the authors' `evaluate_loss`. Two kinds of text: the model's own baseline
 * completions of harmless prompts (their `alpaca_custom_completions`: an intervention that keeps
 * the model's behaviour keeps their loss), and user {instruction, response} pairs (`--loss-data`).
 */
import { Engine } from "../engine/engine.js";
import { sequenceLogProbs } from "../engine/forward.js";
import { Intervention } from "../engine/interventions.js";

export interface LossText {
  /** the formatted prompt's token ids */
  prompt: number[];
  /** the response's token ids (the scored tokens) */
  response: number[];
}

export interface LossResult {
  /** mean cross-entropy per response token (nats) */
  ce: number;
  perplexity: number;
  tokens: number;
  sequences: number;
}

export async function crossEntropy(
  engine: Engine,
  texts: LossText[],
  opts: { intervention?: Intervention; batchSize?: number } = {},
): Promise<LossResult> {
  const scored = texts.filter((t) => t.response.length > 0);
  if (scored.length === 0) return { ce: NaN, perplexity: NaN, tokens: 0, sequences: 0 };
  const lp = await sequenceLogProbs(
    engine,
    scored.map((t) => [...t.prompt, ...t.response]),
    scored.map((t) => t.prompt.length),
    opts,
  );
  let sum = 0;
  let n = 0;
  for (const r of lp) {
    sum += r.logProb;
    n += r.tokens;
  }
  const ce = -sum / n;
  return { ce, perplexity: Math.exp(ce), tokens: n, sequences: scored.length };
}

export interface LossComparison {
  baseline: LossResult;
  intervention: LossResult;
  /** (CE with − CE without) / CE without */
  relative_increase: number;
}

/** The intervention's loss on `texts` against a baseline computed once for them (crossEntropy without it). */
export async function compareLoss(
  engine: Engine,
  texts: LossText[],
  baseline: LossResult,
  intervention: Intervention,
  batchSize?: number,
): Promise<LossComparison> {
  const withIv = await crossEntropy(engine, texts, { intervention, batchSize });
  return { baseline, intervention: withIv, relative_increase: (withIv.ce - baseline.ce) / baseline.ce };
}
