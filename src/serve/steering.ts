/**
 * Which intervention a request asks for: none, a `steering` object naming a direction preset, or
 * a model alias `MODEL+KIND:NAME[:α]` for clients that cannot send extra fields (chat UIs).
 */
import path from "node:path";
import { CosmicError } from "../errors.js";
import { DirectionFile, readDirection } from "../formats/direction.js";
import { Intervention } from "../engine/interventions.js";
import { ModelFolder } from "../model/folder.js";
import { checkDirectionFits } from "../model/direction-fit.js";
import { defaultIntervention, interventionOf, INTERVENTIONS, InterventionKind } from "../engine/steer.js";
import { ApiError } from "./errors.js";

export interface DirectionPreset {
  name: string;
  file: DirectionFile;
}

/** What a request's steering resolved to, as reported back in the response. */
export interface SteeringChoice {
  direction: string;
  intervention: InterventionKind;
  layer?: number;
  coeff?: number;
}

/** `--direction NAME=FILE` → a preset, checked against the model like every direction. */
export function loadPreset(arg: string, folder: ModelFolder, allowOtherModel = false): DirectionPreset {
  const eq = arg.indexOf("=");
  if (eq <= 0 || eq === arg.length - 1)
    throw new CosmicError(`--direction must be NAME=FILE (e.g. refusal=runs/demo/direction.safetensors), got "${arg}"`);
  const name = arg.slice(0, eq);
  if (!/^[A-Za-z0-9_.-]+$/.test(name))
    throw new CosmicError(`--direction name "${name}" may only hold letters, digits, "_", "." and "-"`);
  const file = readDirection(arg.slice(eq + 1), folder.spec.hiddenSize);
  checkDirectionFits(file, folder, allowOtherModel);
  return { name, file };
}

const ALIAS = /^(.+)\+(ablate|actadd|ace-ablate|ace-actadd):([A-Za-z0-9_.-]+)(?::([^:]+))?$/;
const CACHE_LIMIT = 64;

export class Steering {
  readonly modelId: string;
  private readonly folder: ModelFolder;
  private readonly presets: Map<string, DirectionPreset>;
  /** built interventions by choice (a client may vary α freely, so the cache is bounded) */
  private readonly cache = new Map<string, Intervention>();

  constructor(folder: ModelFolder, presets: DirectionPreset[], modelId?: string) {
    this.folder = folder;
    this.modelId = modelId ?? path.basename(path.resolve(folder.dir));
    if (this.modelId.trim() === "") throw new CosmicError("--model-name is empty: give the id clients will send");
    this.presets = new Map();
    for (const p of presets) {
      if (this.presets.has(p.name)) throw new CosmicError(`--direction name "${p.name}" is given twice`);
      this.presets.set(p.name, p);
    }
  }

  /** The model and, for each preset, an alias per intervention it supports. */
  modelIds(): string[] {
    const ids = [this.modelId];
    for (const p of this.presets.values())
      for (const kind of INTERVENTIONS)
        if (!kind.startsWith("ace") || p.file.reference) ids.push(`${this.modelId}+${kind}:${p.name}`);
    return ids;
  }

  /** The intervention of a request's `model` and `steering` fields (undefined: none). */
  resolve(model: string, steering: unknown): { intervention?: Intervention; choice: SteeringChoice | null } {
    const alias = model === this.modelId ? null : ALIAS.exec(model);
    if (model !== this.modelId && (!alias || alias[1] !== this.modelId))
      throw new ApiError(404, `the model "${model}" does not exist; this server has ${this.modelIds().join(", ")}`, {
        param: "model",
        code: "model_not_found",
      });
    if (alias && steering !== undefined && steering !== null)
      throw new ApiError(400, `choose one of a steering alias in "model" and a "steering" object`, {
        param: "steering",
      });
    let raw: Record<string, unknown> | null = null;
    if (alias) {
      raw = { direction: alias[3], intervention: alias[2] };
      if (alias[4] !== undefined) raw.coeff = Number(alias[4]);
    } else if (steering !== undefined && steering !== null) {
      if (typeof steering !== "object" || Array.isArray(steering))
        throw new ApiError(400, `"steering" must be an object {direction, intervention, coeff, layer}`, {
          param: "steering",
        });
      raw = steering as Record<string, unknown>;
    }
    if (!raw) return { choice: null };
    const choice = this.choose(raw);
    const key = JSON.stringify(choice);
    let iv = this.cache.get(key);
    if (!iv) {
      const p = this.presets.get(choice.direction)!;
      try {
        iv = interventionOf(p.file, choice.intervention, this.folder, choice.layer ?? null, choice.coeff ?? 0);
      } catch (e) {
        if (e instanceof CosmicError) throw new ApiError(400, e.message, { param: "steering" });
        throw e;
      }
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(key, iv);
    }
    return { intervention: iv, choice };
  }

  private choose(raw: Record<string, unknown>): SteeringChoice {
    const bad = (what: string, param: string) => new ApiError(400, what, { param: `steering.${param}` });
    if (typeof raw.direction !== "string") throw bad(`"steering.direction" must be a direction name`, "direction");
    const p = this.presets.get(raw.direction);
    if (!p)
      throw new ApiError(
        404,
        `no direction named "${raw.direction}"; this server has ` +
          `${[...this.presets.keys()].join(", ") || "none (start it with --direction NAME=FILE)"}`,
        { param: "steering.direction", code: "direction_not_found" },
      );
    let kind: InterventionKind;
    if (raw.intervention === undefined) {
      try {
        kind = defaultIntervention(p.file);
      } catch (e) {
        throw bad((e as Error).message, "intervention");
      }
    } else if (typeof raw.intervention === "string" && (INTERVENTIONS as readonly string[]).includes(raw.intervention))
      kind = raw.intervention as InterventionKind;
    else throw bad(`"steering.intervention" must be one of ${INTERVENTIONS.join(", ")}`, "intervention");
    const choice: SteeringChoice = { direction: p.name, intervention: kind };
    if (kind === "ablate") return choice;
    const layer = raw.layer ?? p.file.layer ?? undefined;
    if (layer !== undefined && (typeof layer !== "number" || !Number.isInteger(layer)))
      throw bad(`"steering.layer" must be an integer`, "layer");
    if (layer !== undefined) choice.layer = layer as number;
    if (kind === "ace-ablate") return choice;
    const coeff = raw.coeff ?? 1;
    if (typeof coeff !== "number" || !Number.isFinite(coeff)) throw bad(`"steering.coeff" must be a number`, "coeff");
    choice.coeff = coeff;
    return choice;
  }
}
