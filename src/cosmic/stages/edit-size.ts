/**
 * Stage 4b: the edit size of each selected direction's ablation and addition (see
 * ../edit-size.ts), on the harmless validation prompts as the evaluation formats them.
 * Cached like the other stages, so a run whose stages are all reused builds no engine.
 */
import type { PromptRecord } from "../../data/prompts.js";
import { EditProbe, EditSize, editSizes } from "../edit-size.js";
import type { Mode } from "../modes.js";
import type { Selection } from "../select.js";
import type { Stage, StageContext } from "../stage.js";
import { candidateEdits, Directions } from "./directions.js";
import type { Selected } from "./selection.js";

export interface EditSizeInputs {
  /** the key of the scores stage the selections come from */
  scores: string;
  cosmic: Selection["selected"];
  substring: Selection["selected"] | null;
  harmless: PromptRecord[];
  system: string | null;
  mode: Mode;
}

/** One direction's edit sizes at its layer's block input (addition with α = 1, as scored). */
export interface DirectionEditSize {
  layer: number;
  prompts: number;
  ablation: EditSize;
  addition: EditSize;
}

export interface EditSizes {
  cosmic: DirectionEditSize;
  substring: DirectionEditSize | null;
}

const FILE = "select_direction/edit_size.json";

export function editSizeStage(dirs: Directions, sel: Selected): Stage<EditSizeInputs, EditSizes> {
  return {
    name: "edit_size",
    files: [FILE],

    async compute(i, ctx) {
      const prompts = ctx.encode(i.harmless, i.system ?? undefined);
      const chosen = [sel.cosmic, ...(sel.substring ? [sel.substring] : [])];
      const probes = chosen.map((s) => probeOf(ctx, dirs, s, i.mode));
      const P = dirs.r.length / (ctx.folder.spec.numLayers * ctx.folder.spec.hiddenSize);
      // One clean pass serves both methods' directions.
      const sizes = await editSizes(await ctx.engine(), prompts, P, probes, ctx.options.batchSize);
      const result = sizes.map(([ablation, addition], k) => ({
        layer: probes[k].layer,
        prompts: prompts.length,
        ablation,
        addition,
      }));
      return { cosmic: result[0], substring: result[1] ?? null };
    },
    write(out, ctx) {
      ctx.store.writeJson(FILE, out);
    },
    read(ctx) {
      return ctx.store.readJson(FILE) as EditSizes;
    },
  };
}

/** The ablation and the addition (α = 1) of a selected candidate, read at its layer's input. */
function probeOf(ctx: StageContext, dirs: Directions, s: Selection, mode: Mode): EditProbe {
  const L = ctx.folder.spec.numLayers;
  const d = ctx.folder.spec.hiddenSize;
  const { position, layer } = s.selected;
  const ivs = candidateEdits(dirs, mode, position, layer, L, d);
  return { layer, interventions: [ivs.ablate.intervention, ivs.add(1).intervention] };
}
