/**
 * Stage 5: the evaluation, by the caller's Evaluator (src/eval implements it; the method only
 * declares the shapes it hands over and gets back, in ../evaluation.ts).
 */
import { activationAddition } from "../../engine/interventions.js";
import type { Engine } from "../../engine/engine.js";
import type { PromptRecord } from "../../data/prompts.js";
import { at } from "../activations.js";
import type { Evaluation, EvaluatedDirection, Evaluator } from "../evaluation.js";
import { calibrateEngine, describeCalibration, evaluationEstimate } from "../calibration.js";
import { formatFlops, formatSeconds } from "../estimate.js";
import type { Method } from "../pipeline.js";
import type { Selection } from "../select.js";
import type { Stage, StageContext } from "../stage.js";
import { candidateEdits, Directions } from "./directions.js";
import type { Selected } from "./selection.js";

export interface EvaluationInputs {
  /** the key of the scores stage the selections come from */
  scores: string;
  cosmic: Selection["selected"];
  substring: Selection["selected"] | null;
  harmful: PromptRecord[];
  harmless: PromptRecord[];
  maxNewTokens: number;
  evalSystem: string | null;
  judge: string;
  steerTowardRefusal: boolean;
  alphas: number[];
  /** what the evaluator's judges depend on (its guard model, loss data) */
  evaluator: unknown;
}

const FILE = "evaluation.json";

/** Before the generations start: their bound, timed by the loaded engine's first blocks on the test prompts' shape. */
async function logEstimate(engine: Engine, ctx: StageContext, test: number[][], directions: number): Promise<void> {
  const { options } = ctx;
  const all = [...test[0], ...test[1]];
  const T = Math.max(1, Math.round(all.reduce((a, b) => a + b, 0) / Math.max(1, all.length)));
  const rows = Math.max(1, Math.min(options.batchSize, test[0].length));
  const cal = await calibrateEngine(engine, rows, T, options.maxNewTokens);
  const e = evaluationEstimate(engine.spec, engine.weights, options, test, directions, cal);
  ctx.clock.estimate("evaluation", e.seconds);
  options.log(
    `evaluation: ${e.jobs} generation jobs, up to ${options.maxNewTokens} new tokens (${formatFlops(e.generationFlops)}), ` +
      `loss judge and first-token KL ${formatFlops(e.judgeFlops)}: about ${formatSeconds(e.seconds)} if every reply runs ` +
      `to ${options.maxNewTokens} tokens, less as EOS ends them ` +
      `(timed now: ${describeCalibration(cal)})`,
  );
}

export function evaluationStage(
  evaluator: Evaluator,
  dirs: Directions,
  sel: Selected,
): Stage<EvaluationInputs, Evaluation> {
  return {
    name: "evaluation",
    files: [FILE],

    async compute(_i, ctx) {
      const { options, folder } = ctx;
      const engine = await ctx.engine();
      const L = folder.spec.numLayers;
      const d = folder.spec.hiddenSize;
      const P = dirs.r.length / (L * d);
      const direction = (s: Selection, method: Method): EvaluatedDirection => {
        const { position, layer } = s.selected;
        const ivs = candidateEdits(dirs, options.mode, position, layer, L, d);
        return { method, position, layer, ablate: ivs.ablate.intervention, add: (a) => ivs.add(a).intervention };
      };
      const c = sel.cosmic.selected;
      // The sweep adds α·r to the block input (activation addition, §8) in either mode: ACE would
      // set every prompt's projection to the same value, losing the prompt's own harmfulness, and
      // on a weakly aligned model that steers all prompts or none.
      const r0 = at(dirs.r, c.position + P, c.layer, L, d);
      const lengths = (recs: PromptRecord[]) => ctx.encode(recs, options.evalSystem).map((t) => t.length);
      const test = [lengths(options.prompts.harmfulTest), lengths(options.prompts.harmlessTest)];
      await logEstimate(engine, ctx, test, sel.substring ? 2 : 1);
      return evaluator.run({
        engine: engine,
        tokenizer: folder.tokenizer,
        eosTokenIds: folder.eosTokenIds,
        prompts: options.prompts,
        options: options,
        directions: [
          direction(sel.cosmic, "cosmic"),
          ...(sel.substring ? [direction(sel.substring, "substring")] : []),
        ],
        sweep: (a) => activationAddition(r0, c.layer, a, L),
        substringNote: sel.note,
        encode: ctx.encode,
        writeJson: (f, v) => ctx.store.writeJson(f, v),
        progress: options.progress,
      });
    },

    write(out, ctx) {
      ctx.store.writeJson(FILE, out);
    },

    read(ctx) {
      return ctx.store.readJson(FILE);
    },
  };
}
