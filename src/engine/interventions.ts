/**
 * Interventions as data. Every hook of the block graph is a per-layer vector; null = off.
 * The constructors follow the algorithm doc (§3): r̂ = r / (‖r‖ + 1e-8).
 */
import { CosmicError } from "../errors.js";

export interface Intervention {
  /** unit direction projected out of the block input, per layer */
  preDir: (Float32Array | null)[];
  /** vector added to the block input after the projection, per layer */
  preAdd: (Float32Array | null)[];
  /** unit direction projected out of the attention output, per layer */
  attnDir: (Float32Array | null)[];
  /** unit direction projected out of the MLP output, per layer */
  mlpDir: (Float32Array | null)[];
}

export function noIntervention(numLayers: number): Intervention {
  const nulls = () => new Array<Float32Array | null>(numLayers).fill(null);
  return { preDir: nulls(), preAdd: nulls(), attnDir: nulls(), mlpDir: nulls() };
}

export function norm(v: Float32Array): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i] * v[i];
  return Math.sqrt(s);
}

export function unit(r: Float32Array): Float32Array {
  const n = norm(r) + 1e-8;
  const out = new Float32Array(r.length);
  for (let i = 0; i < r.length; i++) out[i] = r[i] / n;
  return out;
}

function dot(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

function checkLayer(layer: number, numLayers: number): void {
  if (!Number.isInteger(layer) || layer < 0 || layer >= numLayers) {
    throw new CosmicError(`layer ${layer} is out of range: the model has layers 0..${numLayers - 1}`);
  }
}

/** Directional ablation: x ← x − (x·r̂)r̂ on every block input, attention output and MLP output. */
export function ablation(r: Float32Array, numLayers: number): Intervention {
  const u = unit(r);
  const all = () => new Array<Float32Array | null>(numLayers).fill(u);
  return { preDir: all(), preAdd: new Array(numLayers).fill(null), attnDir: all(), mlpDir: all() };
}

/** Activation addition at one block input: x ← x + α·r. */
export function activationAddition(r: Float32Array, layer: number, alpha: number, numLayers: number): Intervention {
  checkLayer(layer, numLayers);
  const iv = noIntervention(numLayers);
  const add = new Float32Array(r.length);
  for (let i = 0; i < r.length; i++) add[i] = alpha * r[i];
  iv.preAdd[layer] = add;
  return iv;
}

/** Affine concept editing at one block input: x ← x − (x·r̂)r̂ + (μ·r̂)r̂ + α·r. */
export function affineEdit(
  r: Float32Array,
  mu: Float32Array,
  layer: number,
  alpha: number,
  numLayers: number,
): Intervention {
  checkLayer(layer, numLayers);
  const iv = noIntervention(numLayers);
  const u = unit(r);
  const m = dot(mu, u);
  const add = new Float32Array(r.length);
  for (let i = 0; i < r.length; i++) add[i] = m * u[i] + alpha * r[i];
  iv.preDir[layer] = u;
  iv.preAdd[layer] = add;
  return iv;
}
