/**
 * Direction files: safetensors with a F32 `direction` [d], an optional F32 `reference` [d]
 * (the ACE reference μ−), and string metadata (layer, position, method, model, seed, …).
 */
import { fileError } from "../errors.js";
import { SafetensorsFile, writeSafetensors } from "./safetensors.js";

export interface DirectionFile {
  direction: Float32Array;
  reference: Float32Array | null;
  metadata: Record<string, string>;
  /** metadata.layer as a number, if present */
  layer: number | null;
  path: string;
}

export function readDirection(file: string): DirectionFile {
  const st = SafetensorsFile.open(file);
  if (!st.has("direction")) throw fileError(file, `has no tensor named "direction" (tensors: ${[...st.tensors.keys()].join(", ") || "none"})`);
  const info = st.info("direction");
  if (info.shape.length !== 1) throw fileError(file, `"direction" must be 1-D, has shape [${info.shape}]`);
  const direction = st.readF32("direction");
  let reference: Float32Array | null = null;
  if (st.has("reference")) {
    reference = st.readF32("reference");
    if (reference.length !== direction.length) throw fileError(file, `"reference" has width ${reference.length} but "direction" has ${direction.length}`);
  }
  if (!direction.some((x) => x !== 0)) throw fileError(file, `"direction" is all zeros`);
  let layer: number | null = null;
  if (st.metadata.layer !== undefined) {
    layer = Number(st.metadata.layer);
    if (!Number.isInteger(layer)) throw fileError(file, `metadata layer "${st.metadata.layer}" is not an integer`);
  }
  return { direction, reference, metadata: st.metadata, layer, path: file };
}

export function writeDirection(file: string, direction: Float32Array, reference: Float32Array | null, metadata: Record<string, string>): void {
  const tensors = [{ name: "direction", dtype: "F32" as const, shape: [direction.length], data: direction }];
  if (reference) tensors.push({ name: "reference", dtype: "F32" as const, shape: [reference.length], data: reference });
  writeSafetensors(file, tensors, metadata);
}
