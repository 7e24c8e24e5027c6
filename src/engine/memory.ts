/**
 * How much memory the engine's weights take in each format, whether a model fits, and which
 * format `--weights auto` picks: float32 when it fits in the memory available now, else the
 * smallest loss of fidelity that fits (int8, then int4).
 */
import fs from "node:fs";
import os from "node:os";
import { fileError } from "../errors.js";
import { expectedTensors, ModelSpec } from "../formats/config.js";
import type { Checkpoint } from "../formats/safetensors.js";
import { TENSORS } from "../formats/families.js";
import { headFormat, matrixBytes, WeightFormat } from "./quantize.js";

export type WeightsChoice = WeightFormat | "auto";
export const WEIGHTS_CHOICES: readonly WeightsChoice[] = ["auto", "f32", "int8", "int4"];

/** Peak resident memory over the weights' own size while loading and running (measured by `npm run bench`). */
export const PEAK_OVER_WEIGHTS = 1.5;

const GIB = 2 ** 30;
const gib = (b: number) => `${(b / GIB).toFixed(1)} GiB`;

/** What a fit check needs of a model. */
export interface SizedModel {
  readonly spec: ModelSpec;
  readonly checkpoint: Checkpoint;
  readonly dir: string;
}

/** A block's tensor in `format`: Linear weights as quantised (or not), norms and biases float32. */
function blockTensorBytes(t: { name: string; shape: number[] }, format: WeightFormat): number {
  const linear = t.shape.length === 2 && t.name.endsWith(".weight");
  return linear ? matrixBytes(format, t.shape[0], t.shape[1]) : 4 * t.shape.reduce((a, b) => a * b, 1);
}

/**
 * Bytes of weights the engine's sessions hold in `format`: the blocks and the head (the
 * embedding is read from the checkpoint file on demand, unless it is also the head).
 */
export function residentWeightBytes(spec: ModelSpec, format: WeightFormat): number {
  let total = 0;
  for (const t of expectedTensors(spec)) {
    const [rows, cols] = t.shape;
    if (t.name === TENSORS.embed && !spec.tieWordEmbeddings) continue;
    if (t.name === TENSORS.lmHead || t.name === TENSORS.embed) total += matrixBytes(headFormat(format), rows, cols);
    else if (t.name.startsWith("model.layers.")) total += blockTensorBytes(t, format);
    else total += 4 * t.shape.reduce((a, b) => a * b, 1);
  }
  return total;
}

/** One decoder block's weight bytes in `format` (a block is one session, so it must fit alone). */
export function blockWeightBytes(spec: ModelSpec, format: WeightFormat): number {
  return expectedTensors(spec)
    .filter((t) => t.name.startsWith("model.layers.0."))
    .reduce((a, t) => a + blockTensorBytes(t, format), 0);
}

/** Memory available to a new process now (Linux's MemAvailable; elsewhere free memory). */
export function availableMemory(): number {
  try {
    const m = /^MemAvailable:\s+(\d+) kB/m.exec(fs.readFileSync("/proc/meminfo", "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return os.freemem();
}

/**
 * The format `choice` stands for on this model and this machine, and a line saying why when auto
 * picked a smaller one.
 */
export function resolveWeights(
  spec: ModelSpec,
  choice: WeightsChoice,
  available = availableMemory(),
): { format: WeightFormat; note: string | null } {
  if (choice !== "auto") return { format: choice, note: null };
  const need = (f: WeightFormat) => PEAK_OVER_WEIGHTS * residentWeightBytes(spec, f);
  for (const f of ["f32", "int8", "int4"] as const) {
    if (need(f) <= available) {
      const note =
        f === "f32"
          ? null
          : `weights: ${f} (float32 needs about ${gib(need("f32"))}, ${gib(available)} is available; ` +
            `--weights f32 to insist)`;
      return { format: f, note };
    }
  }
  // Nothing fits now; int4 is the best chance (checkEngineFits says if even that is over the machine's memory).
  return {
    format: "int4",
    note: `weights: int4 (about ${gib(need("int4"))} needed, only ${gib(available)} available now)`,
  };
}

/**
 * Check, before any output is written, that the engine can hold `model` in `format`: every
 * tensor as one float32 buffer while it is read (≤ 4 GiB, Node's limit), each block under the
 * 2 GiB cap on one ONNX model, and the weights within this machine's memory.
 */
export function checkEngineFits(model: SizedModel, format: WeightFormat = "f32"): void {
  const limit = 2 ** 32 - 1;
  for (const f of model.checkpoint.files) {
    for (const t of f.tensors.values()) {
      const bytes = t.shape.reduce((a, b) => a * b, 1) * 4;
      if (bytes > limit)
        throw fileError(
          f.path,
          `tensor "${t.name}" needs ${gib(bytes)} as float32; this version holds each tensor in one buffer of ` +
            `at most 4 GiB`,
        );
    }
  }
  // The head is split by vocabulary rows; a decoder block is one session, so it must fit alone.
  const blockBytes = blockWeightBytes(model.spec, format);
  if (blockBytes > 2 ** 31 - 2 ** 26) {
    throw fileError(
      model.dir,
      `one decoder block needs ${(blockBytes / GIB).toFixed(2)} GiB of ${format} weights in one onnxruntime ` +
        `session, over the 2 GiB cap on an ONNX model (not supported yet)`,
    );
  }
  const total = residentWeightBytes(model.spec, format);
  const mem = os.totalmem();
  if (total > mem)
    throw fileError(
      model.dir,
      `needs ${gib(total)} of ${format} weights, but this machine has ${gib(mem)} of memory` +
        (format === "int4" ? "" : " (--weights int8 or int4 hold less)"),
    );
}
