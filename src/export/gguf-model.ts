/**
 * `cosmic export gguf`: a model folder (optionally abliterated, exactly as `export abliterate`)
 * as one GGUF v3 file for llama.cpp: its architecture keys, its tensor names, and the
 * tokenizer. What follows llama.cpp's own converter (convert_hf_to_gguf.py), and why:
 * - llama.cpp's "llama" architecture rotates adjacent pairs (GPT-J style) while HF Llama rotates
 *   halves, so q/k rows are permuted per head (the other families use NeoX rotation: as is);
 * - Gemma's norms scale by (1 + w) in HF and by w in llama.cpp: 1 is added;
 * - Llama-3 RoPE scaling is the rope_freqs tensor of per-frequency divisors;
 * - 1-D tensors (norms, biases) stay float32 whatever --dtype says.
 * llama.cpp ignores a sliding window for llama/mistral/qwen: the file's context is capped at
 * the window, so within it the two agree exactly.
 */
import path from "node:path";
import { CosmicError, fileError } from "../errors.js";
import { readJsonFile } from "../formats/files.js";
import { DirectionFile } from "../formats/direction.js";
import { encodeFromF32 } from "../formats/dtype.js";
import { Family, layerTensors, TENSORS } from "../formats/families.js";
import { ModelSpec, yarnMscale } from "../formats/config.js";
import { ModelFolder } from "../model/folder.js";
import { checkDirectionFits } from "../model/direction-fit.js";
import { orthogonalise, unitDirection } from "./abliterate.js";
import { GgmlType, GgufTensor, GgufValue, writeGguf } from "./gguf.js";
import { ggufVocabulary } from "./gguf-vocab.js";

export const GGUF_DTYPES = ["f32", "f16", "bf16"] as const;
export type GgufDtype = (typeof GGUF_DTYPES)[number];

/** llama.cpp's architecture names for cosmic's families (GGUF models and control vectors). */
export const LLAMA_CPP_ARCH: Record<Family, string> = {
  llama: "llama",
  mistral: "llama",
  qwen2: "qwen2",
  qwen3: "qwen3",
  gemma: "gemma",
  gemma2: "gemma2",
  gemma3_text: "gemma3",
  phi3: "phi3",
};

/** Architectures whose llama.cpp graph has no separate output matrix. */
const TIED_ONLY = new Set(["gemma", "gemma2"]);

export interface GgufExportOptions {
  dtype: GgufDtype;
  direction?: DirectionFile;
  allowOtherModel?: boolean;
  onTensor?: (done: number, total: number) => void;
}

export interface GgufExportResult {
  architecture: string;
  tensors: number;
  contextLength: number;
  notes: string[];
}

/** Why llama.cpp cannot run this model as cosmic does, or null. */
function unsupported(s: ModelSpec): string | null {
  if (s.family === "gemma3_text") return gemma3Unsupported(s);
  const sc = s.rope.scaling;
  if (sc?.type === "yarn" && YARN_FAMILIES.has(s.family)) {
    const why = yarnUnsupported(sc);
    if (why) return why;
  } else if (sc && sc.type !== "llama3" && sc.type !== "linear")
    return `its RoPE scaling is not one cosmic writes for llama.cpp`;
  if (s.rope.rotaryDim !== s.headDim && s.family !== "phi3") return "it rotates only part of each head (partial RoPE)";
  if (s.family === "gemma2") {
    // llama.cpp's gemma2: 1/√(hidden/heads) for the 46-layer (27B) model, else 1/√head_dim.
    const theirs = 1 / Math.sqrt(s.numLayers === 46 ? s.hiddenSize / s.numHeads : s.headDim);
    if (Math.abs(s.attnScale - theirs) > 1e-6 * theirs)
      return (
        `its query_pre_attn_scalar gives attention scale ${s.attnScale.toPrecision(6)}, while ` +
        `llama.cpp's gemma2 uses ${theirs.toPrecision(6)} for ${s.numLayers} layers`
      );
  }
  return null;
}

/** Families whose llama.cpp graph rotates every layer with the file's YaRN parameters. */
const YARN_FAMILIES = new Set(["llama", "mistral", "qwen2", "qwen3"]);

/**
 * llama.cpp's YaRN takes the factor and the original window from the file, but fixes the rest:
 * β 32 and 1, a truncated ramp, and cos/sin × (0.1 ln factor + 1) (HF's default attention factor).
 */
function yarnUnsupported(sc: Extract<ModelSpec["rope"]["scaling"], { type: "yarn" }>): string | null {
  const theirs = yarnMscale(sc.factor);
  if (Math.abs(sc.attentionFactor - theirs) > 1e-6 * theirs)
    return `its YaRN attention factor ${sc.attentionFactor.toPrecision(6)} is not llama.cpp's ${theirs.toPrecision(6)}`;
  if (sc.betaFast !== 32 || sc.betaSlow !== 1)
    return `its YaRN beta_fast/beta_slow (${sc.betaFast}/${sc.betaSlow}) are not llama.cpp's 32/1`;
  if (!sc.truncate) return "its YaRN ramp is not truncated, as llama.cpp's is";
  return null;
}

/**
 * llama.cpp's gemma3 fixes what HF reads from config.json: the attention scale (1/√head_dim, or
 * 1/√(hidden/heads) for the 62-layer 27B), a periodic layer pattern (the last of every `period`
 * layers attends to everything) and RoPE scaling on the full layers only.
 */
function gemma3Unsupported(s: ModelSpec): string | null {
  const theirs = 1 / Math.sqrt(s.numLayers === 62 ? s.hiddenSize / s.numHeads : s.headDim);
  if (Math.abs(s.attnScale - theirs) > 1e-6 * theirs)
    return (
      `its query_pre_attn_scalar gives attention scale ${s.attnScale.toPrecision(6)}, while llama.cpp's ` +
      `gemma3 uses ${theirs.toPrecision(6)} for ${s.numLayers} layers`
    );
  if (gemma3Period(s) === null) return "its sliding layers do not repeat with one period, as llama.cpp's gemma3 needs";
  // Without a window llama.cpp's gemma3 has no sliding layers, so none would take the local RoPE base.
  if (s.rope.local!.layers.some(Boolean) && s.slidingWindow.every((w) => w === null))
    return "its sliding layers have no sliding_window, and llama.cpp's gemma3 then rotates them with rope_theta";
  return null;
}

/** The period p with layer l sliding exactly when l mod p < p − 1 (llama.cpp's set_swa_pattern), or null. */
function gemma3Period(s: ModelSpec): number | null {
  const local = s.rope.local!.layers;
  for (let p = 1; p <= local.length + 1; p++) if (local.every((v, l) => v === l % p < p - 1)) return p;
  return null;
}

/** The rope_freqs tensor for Llama-3 scaling: the divisor of each rotary frequency. */
function llama3RopeFactors(s: ModelSpec): Float32Array {
  const sc = s.rope.scaling;
  if (sc?.type !== "llama3") throw new Error("not llama3 scaling");
  const dim = s.rope.rotaryDim;
  const lowWavelen = sc.originalMaxPositionEmbeddings / sc.lowFreqFactor;
  const highWavelen = sc.originalMaxPositionEmbeddings / sc.highFreqFactor;
  return Float32Array.from({ length: dim / 2 }, (_, i) => {
    const freq = 1 / Math.pow(s.rope.theta, (2 * i) / dim);
    const wavelen = (2 * Math.PI) / freq;
    if (wavelen < highWavelen) return 1;
    if (wavelen > lowWavelen) return sc.factor;
    const smooth =
      (sc.originalMaxPositionEmbeddings / wavelen - sc.lowFreqFactor) / (sc.highFreqFactor - sc.lowFreqFactor);
    return 1 / ((1 - smooth) / sc.factor + smooth);
  });
}

/** HF rotate-half rows → adjacent pairs, per head: rows (h, j, i) → (h, i, j) for j ∈ {0, 1}. */
function permuteRows(w: Float32Array, heads: number, cols: number): Float32Array {
  const rows = w.length / cols;
  const half = rows / heads / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++)
    for (let j = 0; j < 2; j++)
      for (let i = 0; i < half; i++) {
        const src = (h * 2 * half + j * half + i) * cols;
        const dst = (h * 2 * half + i * 2 + j) * cols;
        out.set(w.subarray(src, src + cols), dst);
      }
  return out;
}

function architectureKeys(s: ModelSpec, arch: string, name: string, ctx: number): Record<string, GgufValue> {
  const u = (value: number): GgufValue => ({ type: "uint32", value });
  const f = (value: number): GgufValue => ({ type: "float32", value });
  const kv: Record<string, GgufValue> = {
    "general.architecture": { type: "string", value: arch },
    "general.name": { type: "string", value: name },
    [`${arch}.context_length`]: u(ctx),
    [`${arch}.embedding_length`]: u(s.hiddenSize),
    [`${arch}.block_count`]: u(s.numLayers),
    [`${arch}.feed_forward_length`]: u(s.intermediateSize),
    [`${arch}.attention.head_count`]: u(s.numHeads),
    [`${arch}.attention.head_count_kv`]: u(s.numKvHeads),
    [`${arch}.attention.key_length`]: u(s.headDim),
    [`${arch}.attention.value_length`]: u(s.headDim),
    [`${arch}.attention.layer_norm_rms_epsilon`]: f(s.norm.eps),
    [`${arch}.rope.freq_base`]: f(s.rope.theta),
    [`${arch}.rope.dimension_count`]: u(s.rope.rotaryDim),
    [`${arch}.vocab_size`]: u(s.vocabSize),
  };
  if (s.rope.scaling?.type === "linear" || s.rope.scaling?.type === "yarn") {
    kv[`${arch}.rope.scaling.type`] = { type: "string", value: s.rope.scaling.type };
    kv[`${arch}.rope.scaling.factor`] = f(s.rope.scaling.factor);
  }
  if (s.rope.scaling?.type === "yarn")
    kv[`${arch}.rope.scaling.original_context_length`] = u(s.rope.scaling.originalMaxPositionEmbeddings);
  if (s.family === "gemma2") {
    if (s.attnSoftcap !== null) kv["gemma2.attn_logit_softcapping"] = f(s.attnSoftcap);
    if (s.finalSoftcap !== null) kv["gemma2.final_logit_softcapping"] = f(s.finalSoftcap);
  }
  if (s.family === "gemma3_text") {
    if (s.finalSoftcap !== null) kv["gemma3.final_logit_softcapping"] = f(s.finalSoftcap);
    kv["gemma3.attention.sliding_window_pattern"] = u(gemma3Period(s)!);
    if (s.rope.local) kv["gemma3.rope.freq_base_swa"] = f(s.rope.local.theta);
  }
  const window = s.slidingWindow.find((w) => w !== null);
  if ((s.family === "gemma2" || s.family === "gemma3_text" || s.family === "phi3") && window != null)
    kv[`${arch}.attention.sliding_window`] = u(window);
  return kv;
}

/** The context written to the file: llama.cpp runs llama/qwen without a sliding window, so cap it there. */
function contextLength(s: ModelSpec): number {
  if (s.family === "gemma2" || s.family === "gemma3_text" || s.family === "phi3") return s.maxPositionEmbeddings;
  const windows = s.slidingWindow.filter((w): w is number => w !== null);
  return Math.min(s.maxPositionEmbeddings, ...windows);
}

/** Refuse, before anything is written, what llama.cpp cannot run as cosmic does. */
function checkExportable(folder: ModelFolder, arch: string, options: GgufExportOptions): void {
  const why = unsupported(folder.spec);
  if (why) throw fileError(folder.dir, `cannot be exported for llama.cpp: ${why}`);
  if (!options.direction) return;
  checkDirectionFits(options.direction, folder, options.allowOtherModel);
  if (TIED_ONLY.has(arch))
    throw fileError(
      folder.dir,
      `cannot be abliterated for llama.cpp: its ${arch} architecture always ties the output layer to the ` +
        `token embeddings, and the exact abliterated model needs the original embeddings as its output ` +
        `layer (use export abliterate for an HF folder)`,
    );
}

/** Every tensor under llama.cpp's name, converted when written (abliterated with `u` if given). */
function ggufTensors(folder: ModelFolder, u: Float64Array | null, matrixType: GgmlType): GgufTensor[] {
  const s = folder.spec;
  const ck = folder.checkpoint;
  const tensors: GgufTensor[] = [];
  /** HF tensor → GGUF tensor, with `edit` applied to its float32 values. */
  const add: Add = (gguf, hf, edit) => {
    const shape = ck.info(hf).shape;
    const type: GgmlType = shape.length === 1 ? "F32" : matrixType;
    const data = () => {
      let w = ck.readF32(hf);
      if (u && hf !== TENSORS.lmHead) orthogonalise(hf, w, shape, u);
      if (edit) w = edit(w, shape);
      return encodeFromF32(w, type);
    };
    tensors.push({ name: gguf, shape: [...shape].reverse(), type, data });
  };
  const onePlus = s.norm.kind === "rms_one_plus" ? (w: Float32Array) => w.map((x) => x + 1) : undefined;
  const norm = (gguf: string, hf: string) => add(gguf, hf, onePlus);
  add("token_embd.weight", TENSORS.embed);
  if (s.rope.scaling?.type === "llama3") {
    const factors = llama3RopeFactors(s);
    const data = () => encodeFromF32(factors, "F32");
    tensors.push({ name: "rope_freqs.weight", shape: [factors.length], type: "F32", data });
  }
  for (let l = 0; l < s.numLayers; l++) layerToGguf(s, l, add, norm);
  norm("output_norm.weight", TENSORS.finalNorm);
  // Abliterating a tied model unties it: the output layer keeps the original embedding.
  if (!s.tieWordEmbeddings) add("output.weight", TENSORS.lmHead);
  else if (u) {
    const shape = ck.info(TENSORS.embed).shape;
    const data = () => encodeFromF32(ck.readF32(TENSORS.embed), matrixType);
    tensors.push({ name: "output.weight", shape: [...shape].reverse(), type: matrixType, data });
  }
  return tensors;
}

export function exportGguf(folder: ModelFolder, out: string, options: GgufExportOptions): GgufExportResult {
  const s = folder.spec;
  const arch = LLAMA_CPP_ARCH[s.family];
  checkExportable(folder, arch, options);
  const u = options.direction ? unitDirection(options.direction) : null;
  const matrixType: GgmlType = options.dtype === "f32" ? "F32" : options.dtype === "f16" ? "F16" : "BF16";
  const tensors = ggufTensors(folder, u, matrixType);
  const ctx = contextLength(s);
  const name = ggufName(folder);
  const eos = folder.eosTokenIds;
  const kv: Record<string, GgufValue> = {
    ...architectureKeys(s, arch, name, ctx),
    ...ggufVocabulary(folder.dir, { ...s, eosTokenIds: eos }, folder.tokenizer.templateSource),
  };
  // llama.cpp stops at its EOS, EOT and EOM ids (and at tokens it recognises by text).
  if (eos.length > 1) kv["tokenizer.ggml.eot_token_id"] = { type: "uint32", value: eos[1] };
  if (eos.length > 2) kv["tokenizer.ggml.eom_token_id"] = { type: "uint32", value: eos[2] };
  if (options.direction && u) {
    kv["cosmic.abliterated_with"] = { type: "string", value: path.basename(options.direction.path) };
    kv["cosmic.direction_unit"] = { type: "float32[]", value: u };
  }
  writeGguf(out, kv, tensors, options.onTensor);
  const notes: string[] = [];
  if (eos.length > 3)
    notes.push(
      `llama.cpp stops at 3 of the model's ${eos.length} EOS tokens (${eos.slice(0, 3).join(", ")}) and at ` +
        `those it recognises by their text`,
    );
  if (name !== folder.name)
    notes.push(
      `general.name is "${name}": llama.cpp gives Phi-3's special tokens rstrip by model name, and this ` +
        `tokenizer's do not rstrip`,
    );
  if (ctx < s.maxPositionEmbeddings)
    notes.push(
      `context capped at the sliding window of ${ctx} tokens (llama.cpp's ${arch} has no sliding window; ` +
        `config.json says ${s.maxPositionEmbeddings})`,
    );
  return { architecture: arch, tensors: tensors.length, contextLength: ctx, notes };
}

/**
 * The model's name for general.name. llama.cpp cannot store a token's rstrip flag, so it sets it
 * for Phi-3's special tokens when the name says "phi3"/"phi-3" (real Phi-3 tokenizers rstrip
 * them). A Phi-3 tokenizer whose special tokens do not rstrip would then lose the whitespace after
 * them: its name is written without the trigger.
 */
function ggufName(folder: ModelFolder): string {
  const name = folder.name;
  if (folder.spec.family !== "phi3" || !/phi-?3/i.test(name)) return name;
  const tj = readJsonFile<{ added_tokens?: { content: string; rstrip?: boolean; special?: boolean }[] }>(
    path.join(folder.dir, "tokenizer.json"),
  );
  const exempt = new Set(["<unk>", "<s>", "<|endoftext|>"]);
  const rstrips = (tj.added_tokens ?? [])
    .filter((a) => a.special && !exempt.has(a.content))
    .every((a) => a.rstrip === true);
  return rstrips ? name : name.replace(/phi-?3/gi, "phi_3");
}

type Add = (gguf: string, hf: string, edit?: (w: Float32Array, shape: number[]) => Float32Array) => void;

/** One decoder layer's tensors under llama.cpp's names. */
function layerToGguf(s: ModelSpec, l: number, add: Add, norm: (gguf: string, hf: string) => void): void {
  const t = layerTensors(l);
  const b = `blk.${l}`;
  const neox = s.family !== "llama" && s.family !== "mistral";
  const permute = (heads: number) =>
    neox ? undefined : (w: Float32Array, shape: number[]) => permuteRows(w, heads, shape[1] ?? 1);
  norm(`${b}.attn_norm.weight`, t.inputNorm);
  if (s.fusedQkv) add(`${b}.attn_qkv.weight`, `${t.qkv}.weight`);
  else {
    add(`${b}.attn_q.weight`, `${t.q}.weight`, permute(s.numHeads));
    add(`${b}.attn_k.weight`, `${t.k}.weight`, permute(s.numKvHeads));
    add(`${b}.attn_v.weight`, `${t.v}.weight`);
    if (s.qkvBias) {
      add(`${b}.attn_q.bias`, `${t.q}.bias`, permute(s.numHeads));
      add(`${b}.attn_k.bias`, `${t.k}.bias`, permute(s.numKvHeads));
      add(`${b}.attn_v.bias`, `${t.v}.bias`);
    }
  }
  add(`${b}.attn_output.weight`, `${t.o}.weight`);
  if (s.oBias) add(`${b}.attn_output.bias`, `${t.o}.bias`);
  if (s.qkNorm) {
    norm(`${b}.attn_q_norm.weight`, t.qNorm);
    norm(`${b}.attn_k_norm.weight`, t.kNorm);
  }
  if (s.sandwichNorms) {
    norm(`${b}.post_attention_norm.weight`, t.postAttentionNorm);
    norm(`${b}.ffn_norm.weight`, t.preFeedforwardNorm);
    norm(`${b}.post_ffw_norm.weight`, t.postFeedforwardNorm);
  } else norm(`${b}.ffn_norm.weight`, t.postAttentionNorm);
  if (s.fusedGateUp) add(`${b}.ffn_up.weight`, `${t.gateUp}.weight`);
  else {
    add(`${b}.ffn_gate.weight`, `${t.gate}.weight`);
    add(`${b}.ffn_up.weight`, `${t.up}.weight`);
  }
  add(`${b}.ffn_down.weight`, `${t.down}.weight`);
  if (s.mlpBias) {
    add(`${b}.ffn_gate.bias`, `${t.gate}.bias`);
    add(`${b}.ffn_up.bias`, `${t.up}.bias`);
    add(`${b}.ffn_down.bias`, `${t.down}.bias`);
  }
}

export function checkGgufDtype(v: string): GgufDtype {
  if (!(GGUF_DTYPES as readonly string[]).includes(v))
    throw new CosmicError(`--dtype must be one of ${GGUF_DTYPES.join(", ")}, got "${v}"`);
  return v as GgufDtype;
}
