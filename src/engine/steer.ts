/**
 * Interventions made from a direction file (its layer, its ACE reference, its mode): shared by
 * the commands (capture, generate, chat) and the server.
 */
import { CosmicError, fileError } from "../errors.js";
import { DirectionFile } from "../formats/direction.js";
import { ablation, activationAddition, affineEdit, Intervention } from "./interventions.js";
import type { EngineModel } from "./engine.js";

export const INTERVENTIONS = ["ablate", "actadd", "ace-ablate", "ace-actadd"] as const;
export type InterventionKind = (typeof INTERVENTIONS)[number];

/**
 * The intervention of `kind` from a direction file: the layer is `layer` or the file's, the ACE
 * reference is the file's `reference`. Shared by capture/generate and chat.
 */
export function interventionOf(
  dir: DirectionFile,
  kind: InterventionKind,
  folder: Pick<EngineModel, "spec" | "dir">,
  layer: number | null,
  coeff: number,
): Intervention {
  const L = folder.spec.numLayers;
  const needLayer = (): number => {
    if (layer === null)
      throw new CosmicError(`--intervention ${kind} needs --layer (the direction file has no layer metadata)`);
    if (layer < 0 || layer >= L)
      throw new CosmicError(`layer ${layer} is out of range: ${folder.dir} has layers 0..${L - 1}`);
    return layer;
  };
  const needRef = (): Float32Array => {
    if (!dir.reference) throw fileError(dir.path, `--intervention ${kind} needs a "reference" tensor (the ACE mean)`);
    return dir.reference;
  };
  switch (kind) {
    case "ablate":
      return ablation(dir.direction, L);
    case "actadd":
      return activationAddition(dir.direction, needLayer(), coeff, L);
    case "ace-ablate":
      return affineEdit(dir.direction, needRef(), needLayer(), 0, L);
    case "ace-actadd":
      return affineEdit(dir.direction, needRef(), needLayer(), coeff, L);
  }
}

/**
 * What a direction does when no --intervention is given: its own mode's ablation. A direction
 * selected with ACE at one layer (affine) is ablated that way; linear ablation of it at every
 * layer is another intervention, which COSMIC did not select it for.
 */
export function defaultIntervention(dir: DirectionFile): InterventionKind {
  if (dir.metadata.mode === "affine") {
    if (!dir.reference)
      throw fileError(
        dir.path,
        'is an affine (ACE) direction without its "reference" tensor: pass --intervention ablate to ablate it linearly',
      );
    return "ace-ablate";
  }
  return "ablate";
}
