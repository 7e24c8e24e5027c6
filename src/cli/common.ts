/** Shared flag parsing and loading for the CLI commands. */
import { CosmicError, fileError } from "../errors.js";
import { DirectionFile, readDirection } from "../formats/direction.js";
import { DEVICES, Device, Engine } from "../engine/engine.js";
import { ablation, activationAddition, affineEdit, Intervention } from "../engine/interventions.js";
import { ModelFolder } from "../model/folder.js";
import { progressBar, ProgressMode } from "./progress.js";

export function intArg(name: string, min = 0): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new CosmicError(`${name} must be an integer ≥ ${min}, got "${v}"`);
    return n;
  };
}

export function floatArg(name: string): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new CosmicError(`${name} must be a number, got "${v}"`);
    return n;
  };
}

export function deviceArg(v: string): Device {
  if (!(DEVICES as readonly string[]).includes(v)) throw new CosmicError(`--device must be one of ${DEVICES.join(", ")}, got "${v}"`);
  return v as Device;
}

export interface EngineFlags {
  device: Device;
  threads?: number;
  quiet?: boolean;
  json?: boolean;
}

export function progressMode(f: { quiet?: boolean; jsonProgress?: boolean }): ProgressMode {
  return f.quiet ? "quiet" : f.jsonProgress ? "json" : "bar";
}

export async function loadEngine(folder: ModelFolder, flags: EngineFlags, mode: ProgressMode): Promise<Engine> {
  const bar = progressBar("building sessions", folder.spec.numLayers + 1, mode);
  try {
    return await Engine.load(folder, { device: flags.device, threads: flags.threads, onBuild: (d) => bar.update(d) });
  } finally {
    bar.stop();
  }
}

export const INTERVENTIONS = ["ablate", "actadd", "ace-ablate", "ace-actadd"] as const;
export type InterventionKind = (typeof INTERVENTIONS)[number];

export interface InterventionFlags {
  direction?: string;
  intervention?: string;
  layer?: number;
  coeff?: number;
}

/** Build the intervention that --direction/--intervention/--layer/--coeff ask for (or none). */
export function interventionFromFlags(f: InterventionFlags, folder: ModelFolder): { intervention?: Intervention; description: Record<string, unknown> } {
  if (!f.direction) {
    if (f.intervention) throw new CosmicError("--intervention needs --direction FILE.safetensors");
    return { description: { intervention: "none" } };
  }
  const dir: DirectionFile = readDirection(f.direction);
  const spec = folder.spec;
  if (dir.direction.length !== spec.hiddenSize) {
    throw fileError(f.direction, `direction has width ${dir.direction.length}, but ${folder.dir} has hidden size ${spec.hiddenSize}`);
  }
  const kind = (f.intervention ?? "ablate") as InterventionKind;
  if (!INTERVENTIONS.includes(kind)) throw new CosmicError(`--intervention must be one of ${INTERVENTIONS.join(", ")}, got "${f.intervention}"`);
  const L = spec.numLayers;
  const layer = f.layer ?? dir.layer;
  const needLayer = (): number => {
    if (layer === null || layer === undefined) throw new CosmicError(`--intervention ${kind} needs --layer (the direction file has no layer metadata)`);
    if (layer < 0 || layer >= L) throw new CosmicError(`layer ${layer} is out of range: ${folder.dir} has layers 0..${L - 1}`);
    return layer;
  };
  const needRef = (): Float32Array => {
    if (!dir.reference) throw fileError(f.direction!, `--intervention ${kind} needs a "reference" tensor (the ACE mean)`);
    return dir.reference;
  };
  const description: Record<string, unknown> = { intervention: kind, direction: f.direction };
  let iv: Intervention;
  switch (kind) {
    case "ablate":
      iv = ablation(dir.direction, L);
      break;
    case "actadd":
      iv = activationAddition(dir.direction, needLayer(), f.coeff ?? 1, L);
      Object.assign(description, { layer, coeff: f.coeff ?? 1 });
      break;
    case "ace-ablate":
      iv = affineEdit(dir.direction, needRef(), needLayer(), 0, L);
      Object.assign(description, { layer, coeff: 0 });
      break;
    case "ace-actadd":
      iv = affineEdit(dir.direction, needRef(), needLayer(), f.coeff ?? 1, L);
      Object.assign(description, { layer, coeff: f.coeff ?? 1 });
      break;
  }
  return { intervention: iv, description };
}
