/**
 * How far an intervention moves the residual stream where it acts: at the selected layer's block
 * input, on the clean run, ‖Δx‖ / ‖x‖ for every prompt position, averaged over the EOI positions
 * (where the direction was measured) and over the rest of the prompt (where it was not).
 *
 * Why: ACE sets the projection of *every* position onto r̂ to one value, μ-·r̂, the harmless mean
 * at the candidate's EOI position. Where the EOI positions carry an offset along r̂ that the
 * other positions do not, the edit moves each of those (and each generated token) far off its
 * own distribution, and the model breaks; a linear ablation sets the projection to 0 instead.
 * The score a run reports cannot show this (it reads the last position only); this can.
 */
import { Engine } from "../engine/engine.js";
import { Intervention, noIntervention } from "../engine/interventions.js";

/** Mean ‖Δx‖ / ‖x‖ over positions. */
export interface EditSize {
  /** the EOI positions (the last P of each prompt) */
  eoi: number;
  /** every other position of the prompt (left padding excluded) */
  other: number;
}

/** Δx = −(x·u)u + a for the block-input hook (u: unit direction or none, a: added vector or none). */
export function relativeEdit(
  x: Float32Array,
  off: number,
  d: number,
  u: Float32Array | null,
  a: Float32Array | null,
): number {
  let xx = 0;
  let xu = 0;
  let ua = 0;
  let aa = 0;
  for (let i = 0; i < d; i++) {
    const v = x[off + i];
    xx += v * v;
    if (u) xu += v * u[i];
    if (a) aa += a[i] * a[i];
    if (u && a) ua += u[i] * a[i];
  }
  // ‖−(x·u)u + a‖² with ‖u‖ = 1
  const dd = xu * xu - 2 * xu * ua + aa;
  return xx > 0 ? Math.sqrt(Math.max(0, dd) / xx) : 0;
}

/**
 * The edit sizes of `interventions` at the input of `layer` over `prompts` (token ids); the last
 * `P` positions of each prompt are its EOI positions. One clean pass through blocks 0..layer−1.
 */
export async function editSizes(
  engine: Engine,
  prompts: number[][],
  P: number,
  layer: number,
  interventions: Intervention[],
  batchSize: number,
): Promise<EditSize[]> {
  const d = engine.spec.hiddenSize;
  const sums = interventions.map(() => ({ eoi: 0, other: 0 }));
  let nEoi = 0;
  let nOther = 0;
  for (let start = 0; start < prompts.length; start += batchSize) {
    const batch = engine.pad(prompts.slice(start, start + batchSize));
    const rows = engine.rowsOf(noIntervention(engine.numLayers), batch.size);
    let h = engine.embed(batch);
    for (let l = 0; l < layer; l++) h = (await engine.runBlock(l, h, batch, rows)).hidden;
    const T = batch.length;
    for (let b = 0; b < batch.size; b++) {
      for (let j = batch.pads[b]; j < T; j++) {
        const eoi = j >= T - P;
        if (eoi) nEoi++;
        else nOther++;
        interventions.forEach((iv, k) => {
          const e = relativeEdit(h, (b * T + j) * d, d, iv.preDir[layer], iv.preAdd[layer]);
          if (eoi) sums[k].eoi += e;
          else sums[k].other += e;
        });
      }
    }
  }
  return sums.map((s) => ({ eoi: nEoi ? s.eoi / nEoi : 0, other: nOther ? s.other / nOther : 0 }));
}
