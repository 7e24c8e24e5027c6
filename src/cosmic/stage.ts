/**
 * A resumable stage of `cosmic run`: it declares its inputs as one object, and its cache key is
 * the hash of that object, so nothing it depends on can be left out of the key by hand.
 */
import type { Engine } from "../engine/engine.js";
import type { ModelFolder } from "../model/folder.js";
import type { PromptRecord } from "../data/prompts.js";
import type { RunOptions } from "./pipeline.js";
import type { WeightFormat } from "../engine/quantize.js";
import { hashOf, RunStore } from "./run-store.js";
import type { StageClock } from "./stage-clock.js";

/** What every stage may use besides its inputs (none of it changes a result). */
export interface StageContext {
  folder: ModelFolder;
  store: RunStore;
  options: RunOptions;
  /** how the engine holds the Linear weights (what --weights resolved to) */
  weights: WeightFormat;
  /** the engine, built on first use (a run whose stages are all reused never builds it) */
  engine(): Promise<Engine>;
  /** each stage's wall-clock time and printed estimate (stage_timings.json) */
  clock: StageClock;
  /** instructions through the chat template (with an optional system message) to token ids */
  encode(recs: PromptRecord[], system?: string): number[][];
}

export interface Stage<I, O> {
  readonly name: string;
  /** the files that hold its output (all must exist for a reuse) */
  readonly files: readonly string[];
  compute(inputs: I, ctx: StageContext, key: string): Promise<O>;
  write(out: O, ctx: StageContext): void;
  read(ctx: StageContext): O;
}

/** The stage's output: reused from the run folder when its key matches, else computed and written. */
export async function runStage<I, O>(
  stage: Stage<I, O>,
  inputs: I,
  ctx: StageContext,
): Promise<{ out: O; key: string }> {
  const key = hashOf(stage.name, inputs);
  if (ctx.store.done(stage.name, key, [...stage.files])) {
    ctx.options.log(`${stage.name}: reused from the run folder`);
    ctx.clock.reused(stage.name, key);
    return { out: stage.read(ctx), key };
  }
  ctx.clock.begin();
  const out = await stage.compute(inputs, ctx, key);
  stage.write(out, ctx);
  ctx.store.finish(stage.name, key);
  ctx.clock.computed(stage.name, key);
  return { out, key };
}
