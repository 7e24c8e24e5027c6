/**
 * Stage 1: candidate directions r = μ+ − μ− at every EOI position and layer (float64 means of
 * the block inputs over the train sets), the harmless means μ− (ACE's reference) and the
 * per-layer output means that L_low is ranked by.
 */
import type { WeightFormat } from "../../engine/quantize.js";
import { SafetensorsFile, writeSafetensors } from "../../formats/safetensors.js";
import { nonFinite } from "../../engine/engine.js";
import type { PromptRecord } from "../../data/prompts.js";
import { at, candidateDirections, meanActivations } from "../activations.js";
import { Mode, modeInterventions } from "../modes.js";
import type { SystemScope } from "../pipeline.js";
import type { Stage } from "../stage.js";

export interface DirectionsInputs {
  /** the model's full fingerprint */
  model: string;
  harmful: PromptRecord[];
  harmless: PromptRecord[];
  system: string | null;
  /** what the system message applies to; with "directions", L_low is ranked without it */
  systemScope: SystemScope | null;
  /** the EOI tokens under the system message (their count P is the number of positions) */
  eoiTokens: number[];
  /** the chat template the prompts are rendered with */
  template: string;
  /** quantised weights (int8, int4); absent for float32 */
  weights?: WeightFormat;
}

export interface Directions {
  /** candidate directions [P, L, d] */
  r: Float32Array;
  /** harmless block-input means μ− [P, L, d] */
  muMinus: Float32Array;
  harmfulMeans: Float32Array;
  /** per-layer last-token output means [L, d] (float64), for L_low */
  harmfulOut: Float64Array;
  harmlessOut: Float64Array;
}

/**
 * The ablation and addition of the candidate at EOI `position` (−P…−1) and `layer`: its direction
 * and its μ− read from the [P, L, d] arrays, as `mode` edits with them.
 */
export function candidateEdits(dirs: Directions, mode: Mode, position: number, layer: number, L: number, d: number) {
  const k = position + dirs.r.length / (L * d);
  return modeInterventions(mode, at(dirs.r, k, layer, L, d), at(dirs.muMinus, k, layer, L, d), layer, L);
}

const FILE = "generate_directions/mean_diffs.safetensors";

export const directionsStage: Stage<DirectionsInputs, Directions> = {
  name: "directions",
  files: [FILE],

  async compute(i, ctx) {
    const { options: options, folder } = ctx;
    const engine = await ctx.engine();
    const P = i.eoiTokens.length;
    const system = i.system ?? undefined;
    const mean = (recs: PromptRecord[], sys: string | undefined, positions: number, label: string) =>
      meanActivations(engine, ctx.encode(recs, sys), positions, options.batchSize, (n, t) =>
        options.progress(label, n, t),
      );
    const plus = await mean(i.harmful, system, P, "directions (harmful)");
    const minus = await mean(i.harmless, system, P, "directions (harmless)");
    const r = candidateDirections(plus, minus);
    if (!r.every(Number.isFinite)) throw nonFinite(folder.dir, "activations");
    let harmfulOut = plus.layerOutputs;
    let harmlessOut = minus.layerOutputs;
    if (system !== undefined && i.systemScope === "directions") {
      // L_low from the same train prompts without the system message.
      const P0 = folder.tokenizer.eoiTokens().ids.length;
      harmfulOut = (await mean(i.harmful, undefined, P0, "L_low (harmful, no system)")).layerOutputs;
      harmlessOut = (await mean(i.harmless, undefined, P0, "L_low (harmless, no system)")).layerOutputs;
    }
    return {
      r,
      muMinus: Float32Array.from(minus.residPre),
      harmfulMeans: Float32Array.from(plus.residPre),
      harmfulOut,
      harmlessOut,
    };
  },

  write(out, ctx) {
    const L = ctx.folder.spec.numLayers;
    const d = ctx.folder.spec.hiddenSize;
    const P = out.r.length / (L * d);
    const eoi = ctx.folder.tokenizer.eoiTokens(ctx.options.system);
    writeSafetensors(
      ctx.store.output(FILE),
      [
        { name: "mean_diffs", dtype: "F32", shape: [P, L, d], data: out.r },
        { name: "harmless_means", dtype: "F32", shape: [P, L, d], data: out.muMinus },
        { name: "harmful_means", dtype: "F32", shape: [P, L, d], data: out.harmfulMeans },
        { name: "harmful_layer_outputs", dtype: "F32", shape: [L, d], data: Float32Array.from(out.harmfulOut) },
        { name: "harmless_layer_outputs", dtype: "F32", shape: [L, d], data: Float32Array.from(out.harmlessOut) },
      ],
      {
        positions: JSON.stringify(Array.from({ length: P }, (_, k) => k - P)),
        eoi_token_ids: JSON.stringify(eoi.ids),
        model: ctx.folder.name,
      },
    );
  },

  read(ctx) {
    const st = SafetensorsFile.open(ctx.store.path(FILE));
    return {
      r: st.readF32("mean_diffs"),
      muMinus: st.readF32("harmless_means"),
      harmfulMeans: st.readF32("harmful_means"),
      harmfulOut: Float64Array.from(st.readF32("harmful_layer_outputs")),
      harmlessOut: Float64Array.from(st.readF32("harmless_layer_outputs")),
    };
  },
};
