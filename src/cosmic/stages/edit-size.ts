/**
 * Stage 4b: the edit size of each selected direction's ablation and addition (see
 * ../edit-size.ts), on the harmless validation prompts as the evaluation formats them.
 * Cached like the other stages, so a run whose stages are all reused builds no engine.
 */
import type { PromptRecord } from "../../data/prompts.js";
import { at } from "../activations.js";
import { EditSize, editSizes } from "../edit-size.js";
import { Mode, modeInterventions } from "../modes.js";
import type { Selection } from "../select.js";
import type { Stage, StageContext } from "../stage.js";
import type { Directions } from "./directions.js";
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
      const one = (s: Selection | null) => (s ? directionEditSize(ctx, dirs, s, prompts, i.mode) : null);
      return { cosmic: (await one(sel.cosmic))!, substring: await one(sel.substring) };
    },
    write(out, ctx) {
      ctx.store.writeJson(FILE, out);
    },
    read(ctx) {
      return ctx.store.readJson(FILE) as EditSizes;
    },
  };
}

async function directionEditSize(
  ctx: StageContext,
  dirs: Directions,
  s: Selection,
  prompts: number[][],
  mode: Mode,
): Promise<DirectionEditSize> {
  const engine = await ctx.engine();
  const L = ctx.folder.spec.numLayers;
  const d = ctx.folder.spec.hiddenSize;
  const P = dirs.r.length / (L * d);
  const { position, layer } = s.selected;
  const ivs = modeInterventions(
    mode,
    at(dirs.r, position + P, layer, L, d),
    at(dirs.muMinus, position + P, layer, L, d),
    layer,
    L,
  );
  const [ablation, addition] = await editSizes(
    engine,
    prompts,
    P,
    layer,
    [ivs.ablate.intervention, ivs.add(1).intervention],
    ctx.options.batchSize,
  );
  return { layer, prompts: prompts.length, ablation, addition };
}
