/**
 * Direction files: safetensors with a F32 `direction` [d], an optional F32 `reference` [d]
 * (the ACE reference μ−), and string metadata (layer, position, method, model, seed, …).
 */
import { fileError } from "../errors.js";
import { SafetensorsFile, writeSafetensors } from "./safetensors.js";
import { CONFIG_BOUNDS } from "./config.js";

export interface DirectionFile {
  direction: Float32Array;
  reference: Float32Array | null;
  metadata: Record<string, string>;
  /** metadata.layer as a number, if present */
  layer: number | null;
  path: string;
}

/**
 * Read a direction file. `width`, when given, is checked from the header before any data is
 * read (a file claiming a billion elements is refused at once). The values must be finite and
 * not all zero.
 */
export function readDirection(file: string, width?: number): DirectionFile {
  const st = SafetensorsFile.open(file);
  if (!st.has("direction"))
    throw fileError(file, `has no tensor named "direction" (tensors: ${[...st.tensors.keys()].join(", ") || "none"})`);
  const info = st.info("direction");
  if (info.shape.length !== 1) throw fileError(file, `"direction" must be 1-D, has shape [${info.shape}]`);
  const n = info.shape[0];
  if (width !== undefined && n !== width)
    throw fileError(
      file,
      `direction has width ${n}, but the model has hidden size ${width}: it comes from another model`,
    );
  if (n === 0 || n > CONFIG_BOUNDS.hidden_size)
    throw fileError(file, `"direction" has ${n} elements: a hidden size must be 1..${CONFIG_BOUNDS.hidden_size}`);
  if (st.has("reference")) {
    const ri = st.info("reference");
    if (ri.shape.length !== 1 || ri.shape[0] !== n)
      throw fileError(file, `"reference" has shape [${ri.shape}] but "direction" has [${n}]`);
  }
  const direction = st.readF32("direction");
  const reference = st.has("reference") ? st.readF32("reference") : null;
  const bad = (v: Float32Array) => v.findIndex((x) => !Number.isFinite(x));
  if (bad(direction) >= 0)
    throw fileError(
      file,
      `"direction" holds a non-finite value (${direction[bad(direction)]} at index ${bad(direction)})`,
    );
  if (reference && bad(reference) >= 0)
    throw fileError(
      file,
      `"reference" holds a non-finite value (${reference[bad(reference)]} at index ${bad(reference)})`,
    );
  if (!direction.some((x) => x !== 0)) throw fileError(file, `"direction" is all zeros`);
  let layer: number | null = null;
  if (st.metadata.layer !== undefined) {
    layer = Number(st.metadata.layer);
    if (!Number.isInteger(layer) || layer < 0)
      throw fileError(file, `metadata layer "${st.metadata.layer}" is not a non-negative integer`);
  }
  return { direction, reference, metadata: st.metadata, layer, path: file };
}

export function writeDirection(
  file: string,
  direction: Float32Array,
  reference: Float32Array | null,
  metadata: Record<string, string>,
): void {
  const tensors = [{ name: "direction", dtype: "F32" as const, shape: [direction.length], data: direction }];
  if (reference) tensors.push({ name: "reference", dtype: "F32" as const, shape: [reference.length], data: reference });
  writeSafetensors(file, tensors, metadata);
}
