/** Shared flag parsing and loading for the CLI commands. */
import fs from "node:fs";
import { CosmicError, fileError } from "../errors.js";
import { describeErrno, Input } from "../formats/outputs.js";
import { DirectionFile, readDirection } from "../formats/direction.js";
import { DEVICES, Device, Engine } from "../engine/engine.js";
import { WEIGHTS_CHOICES, WeightsChoice } from "../engine/memory.js";
import { WeightFormat } from "../engine/quantize.js";
import { Intervention } from "../engine/interventions.js";
import { defaultIntervention, interventionOf, INTERVENTIONS, InterventionKind } from "../engine/steer.js";
import { ModelFolder } from "../model/folder.js";
import { checkDirectionFits } from "../model/direction-fit.js";
import { progressBar, ProgressMode } from "./progress.js";

export function intArg(name: string, min = 0, max = Infinity): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === "" || !Number.isInteger(n) || n < min || n > max)
      throw new CosmicError(
        `${name} must be an integer ${max === Infinity ? `≥ ${min}` : `from ${min} to ${max}`}, got "${v}"`,
      );
    return n;
  };
}

/** A finite number; with `range`, within it (`above`: strictly greater than; `min`/`max`: inclusive). */
export function floatArg(
  name: string,
  range: { above?: number; min?: number; max?: number } = {},
): (v: string) => number {
  const { above, min, max } = range;
  const bounds = [
    above !== undefined ? `> ${above}` : min !== undefined ? `≥ ${min}` : "",
    max !== undefined ? `≤ ${max}` : "",
  ].filter(Boolean);
  const what = bounds.length ? `a number ${bounds.join(" and ")}` : "a number";
  return (v: string) => {
    const n = Number(v);
    const ok =
      v.trim() !== "" &&
      Number.isFinite(n) &&
      (above === undefined || n > above) &&
      (min === undefined || n >= min) &&
      (max === undefined || n <= max);
    if (!ok) throw new CosmicError(`${name} must be ${what}, got "${v}"`);
    return n;
  };
}

export function deviceArg(v: string): Device {
  if (!(DEVICES as readonly string[]).includes(v))
    throw new CosmicError(`--device must be one of ${DEVICES.join(", ")}, got "${v}"`);
  return v as Device;
}

export function weightsArg(v: string): WeightsChoice {
  if (!(WEIGHTS_CHOICES as readonly string[]).includes(v))
    throw new CosmicError(`--weights must be one of ${WEIGHTS_CHOICES.join(", ")}, got "${v}"`);
  return v as WeightsChoice;
}

export interface EngineFlags {
  device: Device;
  threads?: number;
  /** how the Linear weights are held (default auto) */
  weights?: WeightsChoice;
  quiet?: boolean;
  json?: boolean;
}

export function progressMode(f: { quiet?: boolean; jsonProgress?: boolean }): ProgressMode {
  return f.quiet ? "quiet" : f.jsonProgress ? "json" : "bar";
}

/** The engine, with the weights in `weights` (what preflight resolved `--weights` to). */
export async function loadEngine(
  folder: ModelFolder,
  flags: EngineFlags,
  mode: ProgressMode,
  weights: WeightFormat,
): Promise<Engine> {
  const bar = progressBar("building sessions", folder.spec.numLayers + 1, mode);
  try {
    const onBuild = (d: number) => bar.update(d);
    return await Engine.load(folder, { device: flags.device, threads: flags.threads, weights, onBuild });
  } finally {
    bar.stop();
  }
}

export interface InterventionFlags {
  direction?: string;
  allowOtherModel?: boolean;
  intervention?: string;
  layer?: number;
  coeff?: number;
}

/** Build the intervention that --direction/--intervention/--layer/--coeff ask for (or none). */
export function interventionFromFlags(
  f: InterventionFlags,
  folder: ModelFolder,
): { intervention?: Intervention; description: Record<string, unknown> } {
  if (!f.direction) {
    if (f.intervention) throw new CosmicError("--intervention needs --direction FILE.safetensors");
    return { description: { intervention: "none" } };
  }
  const dir: DirectionFile = readDirection(f.direction, folder.spec.hiddenSize);
  checkDirectionFits(dir, folder, f.allowOtherModel);
  const kind = (f.intervention ?? defaultIntervention(dir)) as InterventionKind;
  if (!INTERVENTIONS.includes(kind))
    throw new CosmicError(`--intervention must be one of ${INTERVENTIONS.join(", ")}, got "${f.intervention}"`);
  const layer = f.layer ?? dir.layer;
  const coeff = kind === "ace-ablate" ? 0 : (f.coeff ?? 1);
  const intervention = interventionOf(dir, kind, folder, layer, coeff);
  const description: Record<string, unknown> = { intervention: kind, direction: f.direction };
  if (kind !== "ablate") Object.assign(description, { layer, coeff });
  if (!f.intervention)
    description.chosen_by = `the direction file's mode (${dir.metadata.mode ?? "none recorded: linear"})`;
  return { intervention, description };
}

/** One line saying which intervention a command applies, and why. */
export function describeIntervention(d: Record<string, unknown>): string {
  if (d.intervention === "none") return "no intervention";
  const where = d.intervention === "ablate" ? "at every layer" : `at the input of block ${d.layer}`;
  const coeff = d.intervention === "actadd" || d.intervention === "ace-actadd" ? `, α = ${d.coeff}` : "";
  return (
    `applying ${d.intervention} ` +
    `${where}${coeff}${d.chosen_by ? ` (chosen by ${d.chosen_by}; --intervention overrides)` : ""}`
  );
}

/** --system TEXT or --system-file FILE (a long system message need not go through argv). */
export function systemMessage(f: { system?: string; systemFile?: string }, flag = "--system"): string | undefined {
  if (f.systemFile === undefined) return f.system;
  if (f.system !== undefined) throw new CosmicError(`choose one of ${flag} and ${flag}-file`);
  let text: string;
  try {
    text = fs.readFileSync(f.systemFile, "utf8");
  } catch (e) {
    throw fileError(f.systemFile, `cannot read (${describeErrno(e)})`);
  }
  return text.replace(/\r?\n$/, "");
}

/** The inputs an engine command reads (its outputs must keep clear of them). */
export function commandInputs(f: {
  model?: string;
  prompts?: string;
  direction?: string;
  systemFile?: string;
  chatTemplate?: string;
}): Input[] {
  const out: Input[] = [];
  if (f.model) out.push({ path: f.model, what: "the model folder" });
  if (f.prompts) out.push({ path: f.prompts, what: "the prompts file" });
  if (f.direction) out.push({ path: f.direction, what: "the direction file" });
  if (f.systemFile) out.push({ path: f.systemFile, what: "the system-message file" });
  if (f.chatTemplate) out.push({ path: f.chatTemplate, what: "the chat template file" });
  return out;
}
