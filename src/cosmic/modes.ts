/** The two modes' interventions for one candidate direction (the paper's ablation and addition). */
import { ablation, activationAddition, affineEdit } from "../engine/interventions.js";
import type { CandidateRun } from "./scoring.js";

export type Mode = "affine" | "linear";

/**
 * The lowest layer L_low may hold: in affine mode not layer 0 (a single-layer edit at a block
 * input cannot change block 0's output, so every candidate would tie there).
 */
export function firstLowLayer(mode: Mode): number {
  return mode === "affine" ? 1 : 0;
}

/**
 * Affine (ACE, the reference's default): edit the input of `layer` only; linear: ablate at every
 * layer, add at `layer`. `start` is the first block the edit changes (where scoring restarts).
 */
export function modeInterventions(
  mode: Mode,
  r: Float32Array,
  mu: Float32Array,
  layer: number,
  L: number,
): { ablate: CandidateRun; add: (alpha: number) => CandidateRun } {
  if (mode === "affine") {
    return {
      ablate: { intervention: affineEdit(r, mu, layer, 0, L), start: layer },
      add: (alpha) => ({ intervention: affineEdit(r, mu, layer, alpha, L), start: layer }),
    };
  }
  return {
    ablate: { intervention: ablation(r, L), start: 0 },
    add: (alpha) => ({ intervention: activationAddition(r, layer, alpha, L), start: layer }),
  };
}
