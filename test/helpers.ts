import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { readJsonFile } from "../src/formats/files.js";
import { SafetensorsFile, TEXT_LAYOUTS, writeSafetensors } from "../src/formats/safetensors.js";

const here = path.dirname(fileURLToPath(import.meta.url));
/** The repository root (tests run from dist/test). */
export const ROOT = path.resolve(here, "..", "..");
/** Test fixtures (tiny checkpoints with reference activations; see test/fixtures/README.md). */
export const FIXTURES = path.join(ROOT, "test", "fixtures");
/** The paper's prompt splits, shipped with cosmic (data/cosmic-splits, with its LICENSE). */
export const SPLITS = path.join(ROOT, "data", "cosmic-splits");
/** Recorded completions of five real models with the authors' verdicts (test/data, with its LICENSE). */
export const REFERENCE_RUNS = path.join(ROOT, "test", "data", "refusal-direction-runs");
export const FAMILIES = ["llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "phi3"] as const;
/** Fixtures beyond one per family: Gemma 3, and RoPE scaling types on a family's shape. */
export const MORE_FIXTURES = {
  gemma3: "gemma3_text",
  "qwen2-yarn": "qwen2",
  "phi3-longrope": "phi3",
  "llama-dynamic": "llama",
} as const;
/** Every fixture folder with the model_type its config.json declares. */
export const FIXTURE_FAMILY: Record<string, string> = {
  ...Object.fromEntries(FAMILIES.map((f) => [f, f])),
  ...MORE_FIXTURES,
};
export const ALL_FIXTURES = Object.keys(FIXTURE_FAMILY);

const scratch: string[] = [];
process.on("exit", () => {
  for (const dir of scratch) fs.rmSync(dir, { recursive: true, force: true });
});
/** A fresh folder under the system's temporary directory, removed when the test process exits
 * (node --test runs each file in its own process), so test runs leave nothing behind. */
export function scratchDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  scratch.push(dir);
  return dir;
}

/** ‖a − b‖ / ‖b‖ */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  if (den === 0) throw new Error("reference is all zeros: a comparison against it proves nothing");
  return Math.sqrt(num / den);
}

/**
 * The largest |difference| between two run folders' candidate scores (refusal, steering, KL),
 * COSMIC's and the substring baseline's, with the number of candidates compared; a score runB
 * left unscored (null: the lazy schedule) is counted in `unscored` instead.
 */
export function maxScoreDifference(
  runA: string,
  runB: string,
): { max: number; candidates: number; where: string; unscored: number } {
  let max = 0;
  let where = "";
  let candidates = 0;
  let unscored = 0;
  for (const sub of ["select_direction", "select_direction_substring"]) {
    const read = (run: string) =>
      JSON.parse(fs.readFileSync(path.join(run, sub, "direction_evaluations.json"), "utf8")) as Record<
        string,
        number | null
      >[];
    const a = read(runA);
    const b = read(runB);
    if (a.length !== b.length) throw new Error(`${sub}: ${a.length} vs ${b.length} candidates`);
    candidates += a.length;
    for (let i = 0; i < a.length; i++) {
      if (a[i].position !== b[i].position || a[i].layer !== b[i].layer)
        throw new Error(`${sub}[${i}]: other candidate`);
      for (const k of ["refusal_score", "steering_score", "kl_div_score"]) {
        const [x, y] = [a[i][k], b[i][k]];
        if (y === null) {
          unscored++;
          continue;
        }
        if (x === null) throw new Error(`${sub}[${i}].${k}: null in ${runA}`);
        const diff = Math.abs(x - y);
        if (diff > max) [max, where] = [diff, `${sub}[${i}].${k}: ${a[i][k]} vs ${b[i][k]}`];
      }
    }
  }
  return { max, candidates, where, unscored };
}

/** sha256 of every file under `dir` by relative path, skipping names that `skip` accepts. */
export function fileHashes(dir: string, skip: (name: string) => boolean = () => false): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      if (skip(e.name)) continue;
      const r = path.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else
        out[r] = crypto
          .createHash("sha256")
          .update(fs.readFileSync(path.join(dir, r)))
          .digest("hex");
    }
  };
  walk("");
  return out;
}

/** The vision tower multimodalGemma3 adds (its tensors' names in layout 1). */
export const GEMMA3_VISION = [
  { name: "vision_tower.vision_model.post_layernorm.weight", shape: [8] },
  { name: "multi_modal_projector.mm_input_projection_weight", shape: [8, 64] },
];

/**
 * A Gemma 3 causal-LM folder `src` rewritten as a Gemma3ForConditionalGeneration folder `dir` in
 * tensor layout `layout` (1: transformers < 4.52, 2: ≥ 4.52), with a small vision tower beside the
 * text model and, with `templateAsJson`, the chat template in chat_template.json.
 */
export function multimodalGemma3(src: string, dir: string, layout: 1 | 2, templateAsJson: boolean): string {
  const L = TEXT_LAYOUTS[layout];
  fs.mkdirSync(dir);
  const text = readJsonFile<Record<string, unknown>>(path.join(src, "config.json"));
  const { architectures: _a, eos_token_id: eos, bos_token_id: bos, ...textConfig } = text;
  fs.writeFileSync(
    path.join(dir, "config.json"),
    JSON.stringify({
      architectures: ["Gemma3ForConditionalGeneration"],
      model_type: "gemma3",
      eos_token_id: eos,
      bos_token_id: bos,
      text_config: textConfig,
      vision_config: { hidden_size: 8, model_type: "siglip_vision_model" },
      mm_tokens_per_image: 4,
    }),
  );
  const st = SafetensorsFile.open(path.join(src, "model.safetensors"));
  const renamed = [...st.tensors.keys()].map((name) => ({
    name: name === "lm_head.weight" ? L.lmHead : `${L.model}${name.slice("model.".length)}`,
    dtype: st.info(name).dtype,
    shape: st.info(name).shape,
    data: st.readBytes(name),
  }));
  const vision = GEMMA3_VISION.map((v) => ({
    name: layout === 2 ? `model.${v.name}` : v.name,
    dtype: "F32" as const,
    shape: v.shape,
    data: Float32Array.from({ length: v.shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i + 0.5)),
  }));
  writeSafetensors(path.join(dir, "model.safetensors"), [...vision, ...renamed], { format: "pt" });
  for (const f of ["tokenizer.json", "generation_config.json"]) fs.copyFileSync(path.join(src, f), path.join(dir, f));
  const tc = readJsonFile<Record<string, unknown>>(path.join(src, "tokenizer_config.json"));
  if (templateAsJson) {
    // As multimodal repos ship it: the processor's template in chat_template.json.
    fs.writeFileSync(path.join(dir, "chat_template.json"), JSON.stringify({ chat_template: tc.chat_template }));
    delete tc.chat_template;
  }
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(tc));
  return dir;
}
