/** `cosmic export abliterate | control-vector | direction`. */
import { CosmicError } from "../errors.js";
import { readDirection } from "../formats/direction.js";
import { ModelFolder } from "../model/folder.js";
import { abliterate } from "../export/abliterate.js";
import { controlVectorOptions, writeControlVector } from "../export/control-vector.js";
import { DirectionFormat, exportDirection } from "../export/direction.js";
import { prepareFileOutput } from "../formats/outputs.js";
import { checkGgufDtype, exportGguf } from "../export/gguf-model.js";

/**
 * An affine (ACE) direction edits one layer's input toward the harmless mean; weight
 * orthogonalisation removes the direction from everything that writes to the residual stream,
 * which is linear ablation at every layer — another intervention. No weight edit reproduces the
 * ACE edit exactly (blocks before the layer would see it too, and the constant (μ·r̂)r̂ needs a
 * bias the architecture does not have), so an affine direction is refused unless asked for.
 */
export function affineAbliterationError(file: string, layer: string | undefined): string {
  return (
    `${file}: was selected in affine mode (ACE at the input of block ${layer ?? "?"}), which no weight edit ` +
    `reproduces exactly; ` +
    "abliteration is linear ablation at every layer: pass --as-linear to apply that, or select a direction " +
    "with `cosmic run --linear`"
  );
}

/** The flags of the two model exports (abliterate, gguf). */
interface ModelExportFlags {
  model: string;
  direction?: string;
  out: string;
  dtype: string;
  force?: boolean;
  asLinear?: boolean;
  allowOtherModel?: boolean;
}

export function abliterateCommand(flags: ModelExportFlags & { direction: string }): void {
  if (flags.dtype !== "original" && flags.dtype !== "f32")
    throw new CosmicError(`--dtype must be original or f32, got "${flags.dtype}"`);
  const folder = ModelFolder.open(flags.model);
  const dir = readDirection(flags.direction, folder.spec.hiddenSize);
  if (dir.metadata.mode === "affine" && !flags.asLinear)
    throw new CosmicError(affineAbliterationError(flags.direction, dir.metadata.layer));
  const r = abliterate(folder, dir, flags.out, {
    dtype: flags.dtype,
    force: !!flags.force,
    allowOtherModel: flags.allowOtherModel,
  });
  process.stdout.write(
    `wrote ${r.out}: ${r.edited.length} tensors orthogonalised to the ` +
      `direction${r.untied ? "; lm_head untied from the embeddings" : ""}\n` +
      (r.exact
        ? ""
        : `note: ${folder.spec.family} has norms after its output projections, so the result only ` +
          `approximates directional ablation\n`),
  );
}

export function controlVectorCommand(flags: {
  direction: string;
  coeff: number;
  layers?: string;
  out: string;
  force?: boolean;
}): void {
  prepareFileOutput(flags.out, {
    ext: ".gguf",
    force: flags.force,
    inputs: [{ path: flags.direction, what: "the direction file" }],
  });
  const dir = readDirection(flags.direction);
  const cv = controlVectorOptions(dir, flags.coeff, flags.layers);
  writeControlVector(flags.out, dir, cv);
  if (dir.metadata.mode === "affine") {
    process.stderr.write(
      "note: llama.cpp control vectors only add: this writes activation addition α·r (cosmic's actadd), not " +
        "the direction's ACE edit\n",
    );
  }
  process.stdout.write(
    `wrote ${flags.out}: ${cv.layers.length} vector(s) × ${flags.coeff} for ${cv.modelHint}, added to the input of ` +
      `block(s) ${cv.layers.join(", ")} ` +
      `(llama.cpp tensors ${cv.layers.map((l) => `direction.${l - 1}`).join(", ")})\n` +
      `use: llama-cli -m MODEL.gguf --control-vector ${flags.out}\n`,
  );
}

export function directionCommand(flags: { run: string; format: string; out?: string; force?: boolean }): void {
  if (!["safetensors", "npy", "json"].includes(flags.format))
    throw new CosmicError(`--format must be safetensors, npy or json, got "${flags.format}"`);
  const target = exportDirection(flags.run, flags.format as DirectionFormat, flags.out, !!flags.force);
  process.stdout.write(`wrote ${target}\n`);
}

export function ggufCommand(flags: ModelExportFlags): void {
  const dtype = checkGgufDtype(flags.dtype);
  const inputs = [{ path: flags.model, what: "the model folder" }];
  if (flags.direction) inputs.push({ path: flags.direction, what: "the direction file" });
  prepareFileOutput(flags.out, { ext: ".gguf", force: flags.force, inputs });
  const folder = ModelFolder.open(flags.model);
  const dir = flags.direction ? readDirection(flags.direction, folder.spec.hiddenSize) : undefined;
  if (dir && dir.metadata.mode === "affine" && !flags.asLinear)
    throw new CosmicError(affineAbliterationError(flags.direction!, dir.metadata.layer));
  const r = exportGguf(folder, flags.out, { dtype, direction: dir, allowOtherModel: flags.allowOtherModel });
  process.stdout.write(
    `wrote ${flags.out}: llama.cpp architecture ${r.architecture}, ${r.tensors} tensors (${dtype}), context ` +
      `${r.contextLength}${dir ? ", abliterated with the direction" : ""}\n` +
      r.notes.map((n) => `note: ${n}\n`).join(""),
  );
}
