/**
 * Weight orthogonalisation ("abliteration"): W ← W − r̂ r̂ᵀ W for every matrix and bias that
 * writes to the residual stream — the token embeddings, each attention output projection and
 * each MLP down projection. Run unmodified, the result behaves like the original model under
 * directional ablation. A tied lm_head is untied (kept as the original embedding) so that the
 * output layer is unchanged. Gemma 2's post-attention/post-MLP norms sit between these
 * projections and the residual stream, so for gemma2 the equivalence is approximate.
 */
import fs from "node:fs";
import path from "node:path";
import { EXPORT_MARKER, prepareFolderOutput, removeOwnedFolder } from "../formats/outputs.js";
import { DType, decodeToF32 } from "../formats/dtype.js";
import { DirectionFile } from "../formats/direction.js";
import { readJsonFile, trackTemporary, untrackTemporary } from "../formats/files.js";
import { canonicalName, writeSafetensors, TensorToWrite } from "../formats/safetensors.js";
import { ModelFolder } from "../model/folder.js";
import { checkDirectionFits } from "../model/direction-fit.js";
import { RESIDUAL_WRITER, RESIDUAL_WRITER_BIAS, TENSORS } from "../formats/families.js";

export interface AbliterateOptions {
  dtype: "original" | "f32";
  force: boolean;
  /** accept a direction whose metadata names another checkpoint or architecture */
  allowOtherModel?: boolean;
}

export interface AbliterateResult {
  edited: string[];
  untied: boolean;
  exact: boolean;
  out: string;
}

function projectRows(w: Float32Array, rows: number, cols: number, u: Float64Array): void {
  // Each row is a d-vector written to the residual stream (embeddings): v ← v − (v·u)u.
  for (let r = 0; r < rows; r++) {
    let c = 0;
    for (let i = 0; i < cols; i++) c += w[r * cols + i] * u[i];
    for (let i = 0; i < cols; i++) w[r * cols + i] -= c * u[i];
  }
}

function projectColumns(w: Float32Array, rows: number, cols: number, u: Float64Array): void {
  // [d, in] matrices: W ← W − u (uᵀ W).
  const c = new Float64Array(cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) c[j] += u[i] * w[i * cols + j];
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) w[i * cols + j] -= u[i] * c[j];
}

/** r̂ in float64, as the edits use it. */
export function unitDirection(dir: DirectionFile): Float64Array {
  let n = 0;
  for (const x of dir.direction) n += x * x;
  n = Math.sqrt(n) + 1e-8;
  return Float64Array.from(dir.direction, (x) => x / n);
}

/** Whether tensor `name` writes to the residual stream (and is edited by abliteration). */
export function writesResidual(name: string): boolean {
  return name === TENSORS.embed || RESIDUAL_WRITER.test(name) || RESIDUAL_WRITER_BIAS.test(name);
}

/** Orthogonalise tensor `name` (HF shape `shape`, float32 `w`) to `u` in place, if it writes to the residual stream. */
export function orthogonalise(name: string, w: Float32Array, shape: number[], u: Float64Array): void {
  const d = u.length;
  if (name === TENSORS.embed) projectRows(w, shape[0], d, u);
  else if (RESIDUAL_WRITER.test(name)) projectColumns(w, d, shape[1], u);
  else if (RESIDUAL_WRITER_BIAS.test(name)) projectRows(w, 1, d, u);
}

export function abliterate(
  folder: ModelFolder,
  dir: DirectionFile,
  out: string,
  options: AbliterateOptions,
): AbliterateResult {
  checkDirectionFits(dir, folder, options.allowOtherModel);
  prepareFolderOutput(out, {
    force: options.force,
    markers: [EXPORT_MARKER],
    what: "an exported model",
    inputs: [
      { path: folder.dir, what: "the source model folder" },
      { path: dir.path, what: "the direction file" },
    ],
  });
  const u = unitDirection(dir);
  // Build beside the target, then swap in: never a half-written checkpoint under the real name.
  const tmp = `${path.resolve(out)}.${process.pid}.tmp`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  trackTemporary(tmp);
  try {
    const shards = writeShards(folder, dir, u, tmp, options.dtype);
    copyFolderFiles(folder, tmp, options.dtype, shards);
    fs.writeFileSync(
      path.join(tmp, EXPORT_MARKER),
      JSON.stringify({ made_by: "cosmic export abliterate", direction: path.basename(dir.path), source: folder.name }) +
        "\n",
    );
    removeOwnedFolder(out, [EXPORT_MARKER]);
    fs.renameSync(tmp, out);
    untrackTemporary(tmp);
    return { edited: shards.edited, untied: folder.spec.tieWordEmbeddings, exact: !folder.spec.sandwichNorms, out };
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

interface Shards {
  edited: string[];
  weightMap: Record<string, string>;
  totalSize: number;
}

/** Every shard with the residual-stream writers orthogonalised to `u` (and a tied lm_head untied). */
function writeShards(
  folder: ModelFolder,
  dir: DirectionFile,
  u: Float64Array,
  tmp: string,
  dtypeOpt: AbliterateOptions["dtype"],
): Shards {
  const untie = folder.spec.tieWordEmbeddings;
  const out: Shards = { edited: [], weightMap: {}, totalSize: 0 };
  for (const file of folder.checkpoint.files) {
    const base = path.basename(file.path);
    const tensors: TensorToWrite[] = [];
    const add = (t: TensorToWrite) => {
      tensors.push(t);
      out.weightMap[t.name] = base;
      out.totalSize += t.shape.reduce((a, b) => a * b, 1) * (t.dtype === "F32" ? 4 : 2);
    };
    const names = [...file.tensors.keys()].sort((a, b) => file.tensors.get(a)!.begin - file.tensors.get(b)!.begin);
    const layout = folder.checkpoint.layout;
    for (const name of names) {
      const info = file.info(name);
      const dtype: DType = dtypeOpt === "f32" ? "F32" : info.dtype;
      // Matched by the text model's causal-LM name (a multimodal checkpoint's vision tower is left alone).
      const canonical = canonicalName(name, layout);
      const edit = canonical !== null && writesResidual(canonical);
      const data = () => {
        if (!edit && dtype === info.dtype) return file.readBytes(name);
        const w = decodeToF32(file.readBytes(name), info.dtype);
        if (canonical !== null) orthogonalise(canonical, w, info.shape, u);
        return w;
      };
      if (edit) out.edited.push(name);
      add({ name, dtype, shape: info.shape, data });
      if (untie && canonical === TENSORS.embed) {
        // The output layer keeps the original embedding.
        add({
          name: layout.lmHead,
          dtype,
          shape: info.shape,
          data: () => (dtype === info.dtype ? file.readBytes(name) : decodeToF32(file.readBytes(name), info.dtype)),
        });
      }
    }
    writeSafetensors(path.join(tmp, base), tensors, {
      ...file.metadata,
      format: file.metadata.format ?? "pt",
      cosmic_abliterated: "true",
      cosmic_direction_file: path.basename(dir.path),
      cosmic_direction_unit: JSON.stringify(Array.from(u, (x) => Number(x.toPrecision(9)))),
      ...Object.fromEntries(Object.entries(dir.metadata).map(([k, v]) => [`cosmic_direction_${k}`, v])),
    });
  }
  return out;
}

/** The folder's other files: config.json (untied, dtype), the shard index (new map and size), the rest copied. */
function copyFolderFiles(folder: ModelFolder, tmp: string, dtypeOpt: AbliterateOptions["dtype"], shards: Shards): void {
  for (const f of fs.readdirSync(folder.dir)) {
    const p = path.join(folder.dir, f);
    if (!fs.statSync(p).isFile() || f.endsWith(".safetensors")) continue;
    if (f === "config.json") {
      const cfg = readJsonFile<Record<string, unknown>>(p);
      if (folder.spec.tieWordEmbeddings) {
        cfg.tie_word_embeddings = false;
        // A multimodal config keeps the text model's setting in text_config.
        const text = cfg.text_config;
        if (typeof text === "object" && text !== null) (text as Record<string, unknown>).tie_word_embeddings = false;
      }
      if (dtypeOpt === "f32") cfg.torch_dtype = "float32";
      fs.writeFileSync(path.join(tmp, f), JSON.stringify(cfg, null, 2) + "\n");
    } else if (f === "model.safetensors.index.json") {
      const idx = readJsonFile<Record<string, unknown>>(p);
      const metadata = { ...((idx.metadata as object) ?? {}), total_size: shards.totalSize };
      fs.writeFileSync(
        path.join(tmp, f),
        JSON.stringify({ ...idx, metadata, weight_map: shards.weightMap }, null, 2) + "\n",
      );
    } else fs.copyFileSync(p, path.join(tmp, f));
  }
}
