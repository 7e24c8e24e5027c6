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

/**
 * ‖Δx‖ / ‖x‖ of the block-input hook Δx = −(x·u)u + a (u: unit direction or none, a: added vector
 * or none), with u·a and ‖a‖² taken once per hook rather than per position.
 */
type Hook = (x: Float32Array, off: number, d: number) => number;

function hookEdit(u: Float32Array | null, a: Float32Array | null): Hook {
  let ua = 0;
  let aa = 0;
  if (a)
    for (let i = 0; i < a.length; i++) {
      aa += a[i] * a[i];
      if (u) ua += u[i] * a[i];
    }
  return (x, off, d) => {
    let xx = 0;
    let xu = 0;
    for (let i = 0; i < d; i++) {
      const v = x[off + i];
      xx += v * v;
      if (u) xu += v * u[i];
    }
    // ‖−(x·u)u + a‖² with ‖u‖ = 1
    const dd = xu * xu - 2 * xu * ua + aa;
    return xx > 0 ? Math.sqrt(Math.max(0, dd) / xx) : 0;
  };
}

/** ‖Δx‖ / ‖x‖ of the block-input hook at `x[off…off+d]`. */
export function relativeEdit(
  x: Float32Array,
  off: number,
  d: number,
  u: Float32Array | null,
  a: Float32Array | null,
): number {
  return hookEdit(u, a)(x, off, d);
}

/** Interventions whose edit sizes are read at the input of `layer`. */
export interface EditProbe {
  layer: number;
  interventions: Intervention[];
}

/**
 * The edit sizes of each probe's interventions at the input of its layer over `prompts` (token
 * ids); the last `P` positions of each prompt are its EOI positions. One clean pass through the
 * blocks below the deepest probe's layer serves every probe.
 */
export async function editSizes(
  engine: Engine,
  prompts: number[][],
  P: number,
  probes: EditProbe[],
  batchSize: number,
): Promise<EditSize[][]> {
  const d = engine.spec.hiddenSize;
  const hooks = probes.map((p) => p.interventions.map((iv) => hookEdit(iv.preDir[p.layer], iv.preAdd[p.layer])));
  const sums: Sum[][] = probes.map((p) => p.interventions.map(() => ({ eoi: 0, other: 0 })));
  const deepest = Math.max(0, ...probes.map((p) => p.layer));
  let nEoi = 0;
  let nOther = 0;
  for (let start = 0; start < prompts.length; start += batchSize) {
    const batch = engine.pad(prompts.slice(start, start + batchSize));
    const rows = engine.rowsOf(noIntervention(engine.numLayers), batch.size);
    const T = batch.length;
    let h = engine.embed(batch);
    for (let l = 0; ; l++) {
      probes.forEach((p, k) => {
        if (p.layer === l) measure(h, batch.pads, T, d, P, hooks[k], sums[k]);
      });
      if (l >= deepest) break;
      h = (await engine.runBlock(l, h, batch, rows)).hidden;
    }
    for (let b = 0; b < batch.size; b++) {
      nEoi += Math.min(P, T - batch.pads[b]);
      nOther += Math.max(0, T - batch.pads[b] - P);
    }
  }
  return sums.map((ss) => ss.map((s) => ({ eoi: nEoi ? s.eoi / nEoi : 0, other: nOther ? s.other / nOther : 0 })));
}

type Sum = { eoi: number; other: number };

/** Add every non-padding position's edit of each hook in `hooks` to `into` (the EOI positions apart). */
function measure(h: Float32Array, pads: number[], T: number, d: number, P: number, hooks: Hook[], into: Sum[]): void {
  pads.forEach((pad, b) => {
    for (let j = pad; j < T; j++) {
      const eoi = j >= T - P;
      hooks.forEach((f, k) => {
        const e = f(h, (b * T + j) * d, d);
        if (eoi) into[k].eoi += e;
        else into[k].other += e;
      });
    }
  });
}
