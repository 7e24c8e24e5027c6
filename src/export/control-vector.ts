/**
 * llama.cpp control vectors. llama.cpp's loader reads tensors `direction.N` (N ≥ 1; N = 0 is
 * rejected) into slot N and, while building the graph, adds slot `il` to the *output* of
 * decoder block `il` (0-based) — i.e. to the input of block il + 1. cosmic's `actadd --layer ℓ`
 * adds to the input of block ℓ, so it lands in `direction.(ℓ − 1)`, and ℓ must be ≥ 2.
 */
import { CosmicError, fileError } from "../errors.js";
import { writeFileAtomic } from "../formats/files.js";
import { DirectionFile } from "../formats/direction.js";
import { encodeGguf } from "./gguf.js";
import { LLAMA_CPP_ARCH } from "./gguf-model.js";
import type { Family } from "../formats/families.js";

export interface ControlVectorOptions {
  coeff: number;
  /** block-input layers (cosmic's convention, 0-based) to add the vector at */
  layers: number[];
  numLayers: number;
  modelHint: string;
}

export function parseLayerRange(s: string): number[] {
  const m = /^(\d+)(?:-(\d+))?$/.exec(s.trim());
  if (!m) throw new CosmicError(`--layers must look like 12 or 10-14, got "${s}"`);
  const a = Number(m[1]);
  const b = m[2] === undefined ? a : Number(m[2]);
  if (b < a) throw new CosmicError(`--layers ${s}: the range ends before it starts`);
  return Array.from({ length: b - a + 1 }, (_, i) => a + i);
}

export function controlVectorOptions(dir: DirectionFile, coeff: number, layers?: string): ControlVectorOptions {
  const numLayers = Number(dir.metadata.num_layers);
  if (!Number.isInteger(numLayers) || numLayers < 1)
    throw fileError(dir.path, "has no num_layers metadata: a control vector needs the model's layer count");
  let ls: number[];
  if (layers) ls = parseLayerRange(layers);
  else if (dir.layer !== null) ls = [dir.layer];
  else throw new CosmicError("--layers is needed: the direction file has no layer metadata");
  for (const l of ls) {
    if (l < 2 || l >= numLayers) {
      throw new CosmicError(
        `layer ${l} cannot carry a llama.cpp control vector: llama.cpp adds direction.N to the output of ` +
          `block N for N = 1…${numLayers - 1}, so block inputs 2…${numLayers - 1} (cosmic's convention) ` +
          "are reachable",
      );
    }
  }
  const fam = dir.metadata.model_type ?? "llama";
  return {
    coeff,
    layers: ls,
    numLayers,
    modelHint: Object.hasOwn(LLAMA_CPP_ARCH, fam) ? LLAMA_CPP_ARCH[fam as Family] : fam,
  };
}

export function writeControlVector(file: string, dir: DirectionFile, options: ControlVectorOptions): void {
  const scaled = dir.direction.map((x) => x * options.coeff);
  const tensors = options.layers.map((l) => ({ name: `direction.${l - 1}`, data: Float32Array.from(scaled) }));
  writeFileAtomic(
    file,
    encodeGguf(
      {
        "general.architecture": { type: "string", value: "controlvector" },
        "controlvector.model_hint": { type: "string", value: options.modelHint },
        "controlvector.layer_count": { type: "uint32", value: options.numLayers - 1 },
      },
      tensors,
    ),
  );
}
