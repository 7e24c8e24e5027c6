/**
 * Choosing the next token of one row from its logits: greedy (temperature 0, first maximum, as
 * `cosmic generate`), or temperature / nucleus sampling from the row's own seeded generator.
 * The vocabulary of a real model is ~150k tokens, so nothing here sorts the whole of it.
 */
import { Rng } from "../util/random.js";

export interface Sampling {
  /** 0 = greedy */
  temperature: number;
  /** nucleus mass in (0, 1] */
  topP: number;
}

/** The first maximum of row `off` (greedy decoding). */
export function argmax(logits: Float32Array, off: number, V: number): number {
  let best = 0;
  for (let i = 1; i < V; i++) if (logits[off + i] > logits[off + best]) best = i;
  return best;
}

export function pickToken(logits: Float32Array, off: number, V: number, s: Sampling, rng: Rng): number {
  const best = argmax(logits, off, V);
  if (s.temperature <= 0) return best;
  const max = logits[off + best];
  const p = new Float64Array(V);
  let total = 0;
  for (let i = 0; i < V; i++) total += p[i] = Math.exp((logits[off + i] - max) / s.temperature);
  if (s.topP >= 1) {
    let u = rng.next() * total;
    for (let i = 0; i < V; i++) if ((u -= p[i]) <= 0) return i;
    return best;
  }
  const nucleus = nucleusOf(p, total, s.topP);
  let mass = 0;
  for (const i of nucleus) mass += p[i];
  let u = rng.next() * mass;
  for (const i of nucleus) if ((u -= p[i]) <= 0) return i;
  return nucleus[nucleus.length - 1];
}

/**
 * The smallest most-probable set with mass ≥ topP, most probable first. Only tokens above a
 * threshold are sorted; the threshold drops until they hold the mass, and since they are a
 * prefix of the sorted vocabulary the nucleus is the same as sorting everything.
 */
function nucleusOf(p: Float64Array, total: number, topP: number): number[] {
  for (let t = 1e-3; ; t *= 1e-3) {
    const cand: number[] = [];
    let mass = 0;
    const floor = t > 1e-300 ? t : 0;
    for (let i = 0; i < p.length; i++)
      if (p[i] >= floor) {
        cand.push(i);
        mass += p[i];
      }
    if (mass < topP * total && floor > 0) continue;
    cand.sort((a, b) => p[b] - p[a] || a - b);
    const out: number[] = [];
    let cum = 0;
    for (const i of cand) {
      out.push(i);
      cum += p[i];
      if (cum >= topP * total) break;
    }
    return out;
  }
}
