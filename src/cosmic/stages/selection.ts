/**
 * Stage 4: selection, COSMIC's and the substring baseline's, from the scores, and the selected
 * directions written as direction files (cheap: recomputed on every run, never cached).
 */
import { writeDirection } from "../../formats/direction.js";
import { at } from "../activations.js";
import type { Method } from "../pipeline.js";
import { selectCosmic, selectSubstring, Selection, SelectionOptions } from "../select.js";
import type { StageContext } from "../stage.js";
import type { Directions } from "./directions.js";
import type { Scores } from "./scores.js";

export interface Selected {
  cosmic: Selection;
  /** null when every candidate was filtered out (then `note` says why) */
  substring: Selection | null;
  note?: string;
}

export function selectDirections(
  scores: Scores,
  opts: SelectionOptions,
  require: Method,
  log: (line: string) => void,
): Selected {
  const cosmic = selectCosmic(scores.cosmic, opts);
  try {
    return { cosmic, substring: selectSubstring(scores.substring, opts) };
  } catch (e) {
    if (require === "substring") throw e;
    const note = `the substring baseline selected no direction: ${(e as Error).message}`;
    log(note);
    return { cosmic, substring: null, note };
  }
}

/** The filtered score lists, the run's direction (of `options.selection`) and each method's direction. */
export function writeSelection(sel: Selected, dirs: Directions, ctx: StageContext, identity: string): void {
  const { store, folder, options: options } = ctx;
  const L = folder.spec.numLayers;
  const d = folder.spec.hiddenSize;
  const P = dirs.r.length / (L * d);
  store.writeJson("select_direction/direction_evaluations_filtered.json", sel.cosmic.filtered);
  if (sel.substring)
    store.writeJson("select_direction_substring/direction_evaluations_filtered.json", sel.substring.filtered);
  const write = (s: Selection, method: Method, file: string) => {
    const { position, layer } = s.selected;
    const k = position + P;
    writeDirection(
      store.output(file),
      Float32Array.from(at(dirs.r, k, layer, L, d)),
      Float32Array.from(at(dirs.muMinus, k, layer, L, d)),
      {
        layer: String(layer),
        position: String(position),
        method,
        mode: options.mode,
        model: folder.name,
        model_type: folder.spec.family,
        hidden_size: String(d),
        num_layers: String(L),
        seed: String(options.seed),
        model_identity: identity,
      },
    );
  };
  const chosen = options.selection === "cosmic" ? sel.cosmic : sel.substring!;
  write(chosen, options.selection, "direction.safetensors");
  store.writeJson("direction_metadata.json", { pos: chosen.selected.position, layer: chosen.selected.layer });
  write(sel.cosmic, "cosmic", "select_direction/direction.safetensors");
  if (sel.substring) write(sel.substring, "substring", "select_direction_substring/direction.safetensors");
}
