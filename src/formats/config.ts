/**
 * config.json → one normalised ModelSpec. Everything the engine needs to know about an
 * architecture is here, so the graph builder never looks at family names for numbers.
 */
import { fileError } from "../errors.js";

import { FAMILIES, Family, layerTensors, SUPPORTED_MODEL_TYPES, TENSORS } from "./families.js";

export { SUPPORTED_MODEL_TYPES, type Family } from "./families.js";

export type Activation = "silu" | "gelu_tanh" | "gelu";

export type RopeScaling =
  | { type: "linear"; factor: number }
  | {
      type: "llama3";
      factor: number;
      lowFreqFactor: number;
      highFreqFactor: number;
      originalMaxPositionEmbeddings: number;
    }
  | {
      type: "yarn";
      factor: number;
      originalMaxPositionEmbeddings: number;
      /** cos/sin are multiplied by this */
      attentionFactor: number;
      betaFast: number;
      betaSlow: number;
      truncate: boolean;
    }
  | {
      /** short factors while a call's length stays within originalMaxPositionEmbeddings, long ones beyond */
      type: "longrope";
      factor: number;
      originalMaxPositionEmbeddings: number;
      attentionFactor: number;
      shortFactor: number[];
      longFactor: number[];
    }
  | {
      /** NTK base growth once a call is longer than originalMaxPositionEmbeddings */
      type: "dynamic";
      factor: number;
      originalMaxPositionEmbeddings: number;
    };

export interface ModelSpec {
  family: Family;
  architecture: string;
  numLayers: number;
  hiddenSize: number;
  intermediateSize: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  /** "rms": x/rms·w; "rms_one_plus": x/rms·(1+w) (Gemma) */
  norm: { kind: "rms" | "rms_one_plus"; eps: number };
  rope: {
    theta: number;
    scaling: RopeScaling | null;
    rotaryDim: number;
    /** Gemma 3: these layers rotate with `theta` of their own and no scaling */
    local: { theta: number; layers: boolean[] } | null;
  };
  /** q/k/v projections have biases */
  qkvBias: boolean;
  /** o_proj has a bias */
  oBias: boolean;
  /** gate/up/down projections have biases */
  mlpBias: boolean;
  /** per-head RMSNorm on q and k before RoPE (Qwen3) */
  qkNorm: boolean;
  /** fused qkv_proj / gate_up_proj (Phi-3) */
  fusedQkv: boolean;
  fusedGateUp: boolean;
  /** norms after attention and MLP as well as before (Gemma 2) */
  sandwichNorms: boolean;
  tieWordEmbeddings: boolean;
  /** embeddings are multiplied by this (Gemma: √hidden), or 1 */
  embeddingScale: number;
  /** attention scores are multiplied by this */
  attnScale: number;
  attnSoftcap: number | null;
  finalSoftcap: number | null;
  /** sliding window per layer (null = full causal attention) */
  slidingWindow: (number | null)[];
  activation: Activation;
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
}

type Json = Record<string, unknown>;

function num(cfg: Json, file: string, key: string, fallback?: number): number {
  const v = cfg[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw fileError(file, `missing "${key}"`);
  }
  if (typeof v !== "number" || !Number.isFinite(v))
    throw fileError(file, `"${key}" must be a number, got ${JSON.stringify(v)}`);
  return v;
}

/**
 * Upper bounds on config.json sizes (documented in the README): generous for every released
 * model (the largest have 126 layers, width 16384, 262144-token vocabularies), small enough that
 * a wrong or hostile config is refused before anything is allocated.
 */
export const CONFIG_BOUNDS: Record<string, number> = {
  num_hidden_layers: 1024,
  hidden_size: 65536,
  intermediate_size: 524288,
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  head_dim: 1024,
  vocab_size: 4194304,
  max_position_embeddings: 1 << 26,
  sliding_window: 1 << 26,
};

function posInt(cfg: Json, file: string, key: string, fallback?: number): number {
  const v = num(cfg, file, key, fallback);
  if (!Number.isInteger(v) || v <= 0) throw fileError(file, `"${key}" must be a positive integer, got ${v}`);
  const max = CONFIG_BOUNDS[key];
  if (max !== undefined && v > max) throw fileError(file, `"${key}" is ${v}, above cosmic's bound of ${max}`);
  return v;
}

/** A number that must be > 0 (and finite). */
function positive(cfg: Json, file: string, key: string, fallback?: number): number {
  const v = num(cfg, file, key, fallback);
  if (!(v > 0)) throw fileError(file, `"${key}" must be greater than 0, got ${v}`);
  return v;
}

function ids(v: unknown): number[] {
  if (typeof v === "number") return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === "number");
  return [];
}

function activationOf(name: unknown, file: string): Activation {
  switch (name) {
    case "silu":
    case "swish":
      return "silu";
    case "gelu_pytorch_tanh":
    case "gelu_new":
    case "gelu_fast":
      return "gelu_tanh";
    case "gelu":
      return "gelu";
    default:
      throw fileError(
        file,
        `unsupported activation ${JSON.stringify(name)} (supported: silu, gelu, gelu_pytorch_tanh)`,
      );
  }
}

function ropeScalingOf(cfg: Json, file: string, mpe: number, rotaryDim: number): RopeScaling | null {
  const rs = cfg.rope_scaling as Json | null | undefined;
  if (!rs) return null;
  if (typeof rs !== "object" || Array.isArray(rs))
    throw fileError(file, `"rope_scaling" must be an object, got ${JSON.stringify(rs).slice(0, 40)}`);
  const type = (rs.rope_type ?? rs.type) as string | undefined;
  if (type === undefined || type === "default") return null;
  const where = `${file} rope_scaling`;
  if (type === "linear") return { type: "linear", factor: positive(rs, where, "factor") };
  if (type === "llama3") {
    const r: RopeScaling = {
      type: "llama3",
      factor: positive(rs, where, "factor"),
      lowFreqFactor: positive(rs, where, "low_freq_factor"),
      highFreqFactor: positive(rs, where, "high_freq_factor"),
      originalMaxPositionEmbeddings: posInt(rs, where, "original_max_position_embeddings"),
    };
    if (r.highFreqFactor <= r.lowFreqFactor)
      throw fileError(
        file,
        `rope_scaling "high_freq_factor" (${r.highFreqFactor}) must be greater than "low_freq_factor" ` +
          `(${r.lowFreqFactor})`,
      );
    return r;
  }
  if (type === "yarn") return yarnOf(rs, where, mpe);
  if (type === "longrope") return longropeOf(cfg, rs, file, mpe, rotaryDim);
  if (type === "dynamic")
    return { type: "dynamic", factor: positive(rs, where, "factor"), originalMaxPositionEmbeddings: mpe };
  throw fileError(
    file,
    `unsupported rope_scaling type "${type}" (supported: default, linear, llama3, yarn, longrope, dynamic)`,
  );
}

/** YaRN's magnitude correction for a context `scale`: 0.1·m·ln(scale) + 1 (HF's get_mscale; also llama.cpp's). */
export function yarnMscale(scale: number, m = 1): number {
  return scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1;
}

/** YaRN as transformers 5 reads it: `factor` as given (else max / original), truncation on by default. */
function yarnOf(rs: Json, where: string, mpe: number): RopeScaling {
  const orig = posInt(rs, where, "original_max_position_embeddings", mpe);
  const factor = positive(rs, where, "factor", mpe / orig);
  let attention = rs.attention_factor == null ? null : positive(rs, where, "attention_factor");
  if (attention === null) {
    const m = rs.mscale == null ? 0 : positive(rs, where, "mscale");
    const mAll = rs.mscale_all_dim == null ? 0 : positive(rs, where, "mscale_all_dim");
    attention = m && mAll ? yarnMscale(factor, m) / yarnMscale(factor, mAll) : yarnMscale(factor);
  }
  // HF reads `beta_fast or 32`: a 0 falls back to the default too.
  const betaFast = rs.beta_fast ? positive(rs, where, "beta_fast") : 32;
  const betaSlow = rs.beta_slow ? positive(rs, where, "beta_slow") : 1;
  if (rs.truncate != null && typeof rs.truncate !== "boolean")
    throw fileError(where, `"truncate" must be true or false, got ${JSON.stringify(rs.truncate)}`);
  return {
    type: "yarn",
    factor,
    originalMaxPositionEmbeddings: orig,
    attentionFactor: attention,
    betaFast,
    betaSlow,
    truncate: rs.truncate !== false,
  };
}

/** LongRoPE (Phi-3/3.5): the original window may sit in rope_scaling or at the top of config.json. */
function longropeOf(cfg: Json, rs: Json, file: string, mpe: number, rotaryDim: number): RopeScaling {
  const where = `${file} rope_scaling`;
  const factors = (key: string): number[] => {
    const v = rs[key];
    if (!Array.isArray(v) || v.length !== rotaryDim / 2 || !v.every((x) => typeof x === "number" && x > 0))
      throw fileError(where, `"${key}" must list ${rotaryDim / 2} positive numbers (one per rotary frequency)`);
    return v as number[];
  };
  const orig =
    rs.original_max_position_embeddings != null
      ? posInt(rs, where, "original_max_position_embeddings")
      : posInt(cfg, file, "original_max_position_embeddings", mpe);
  const factor = positive(rs, where, "factor", mpe / orig);
  const attention =
    rs.attention_factor != null
      ? positive(rs, where, "attention_factor")
      : factor <= 1
        ? 1
        : Math.sqrt(1 + Math.log(factor) / Math.log(orig));
  return {
    type: "longrope",
    factor,
    originalMaxPositionEmbeddings: orig,
    attentionFactor: attention,
    shortFactor: factors("short_factor"),
    longFactor: factors("long_factor"),
  };
}

/** The longest sequence cosmic accepts: dynamic and YaRN scaling exist to reach past max_position_embeddings. */
function contextOf(mpe: number, scaling: RopeScaling | null): number {
  if (scaling?.type === "dynamic") return Math.floor(mpe * scaling.factor);
  if (scaling?.type === "yarn")
    return Math.max(mpe, Math.floor(scaling.originalMaxPositionEmbeddings * scaling.factor));
  return mpe;
}

/** A family's own config rule (layer kinds), with its message tied to the file. */
function familyRule<T>(file: string, rule: () => T): T {
  try {
    return rule();
  } catch (e) {
    throw fileError(file, (e as Error).message);
  }
}

/** The rotary embedding (partial rotation, scaling, Gemma 3's local layers) and the longest sequence accepted. */
function ropeOf(
  c: Json,
  file: string,
  family: Family,
  headDim: number,
  numLayers: number,
): { rope: ModelSpec["rope"]; context: number } {
  const partial = num(c, file, "partial_rotary_factor", 1);
  if (!(partial > 0 && partial <= 1))
    throw fileError(file, `"partial_rotary_factor" must be in (0, 1], got ${partial}`);
  const rotaryDim = Math.floor(headDim * partial);
  if (rotaryDim % 2 !== 0 || rotaryDim <= 0)
    throw fileError(file, `partial_rotary_factor ${partial} gives an odd rotary dimension`);
  const localLayers = familyRule(file, () => FAMILIES[family].localRopeLayers(c, numLayers));
  const mpe = posInt(c, file, "max_position_embeddings", 4096);
  const scaling = ropeScalingOf(c, file, mpe, rotaryDim);
  const rope: ModelSpec["rope"] = {
    theta: positive(c, file, "rope_theta", family === "gemma3_text" ? 1e6 : 10000),
    scaling,
    rotaryDim,
    local: localLayers && { theta: positive(c, file, "rope_local_base_freq", 10000), layers: localLayers },
  };
  return { rope, context: contextOf(mpe, scaling) };
}

/**
 * Gemma3TextConfig's defaults (transformers): a Gemma 3 config.json may leave any of these out,
 * and a multimodal one's text_config leaves out most (Gemma-3-4B-it's names a handful).
 */
const GEMMA3_TEXT_DEFAULTS: Json = {
  vocab_size: 262208,
  hidden_size: 2304,
  intermediate_size: 9216,
  num_hidden_layers: 26,
  num_attention_heads: 8,
  num_key_value_heads: 4,
  head_dim: 256,
  hidden_activation: "gelu_pytorch_tanh",
  max_position_embeddings: 131072,
  rms_norm_eps: 1e-6,
  pad_token_id: 0,
  eos_token_id: 1,
  bos_token_id: 2,
  tie_word_embeddings: true,
  rope_theta: 1e6,
  attention_bias: false,
  query_pre_attn_scalar: 256,
  sliding_window: 4096,
  rope_local_base_freq: 10000,
  sliding_window_pattern: 6,
};

/**
 * A Gemma3ForConditionalGeneration config (model_type "gemma3"): its text model, as a
 * gemma3_text config. The token ids at the top level (where HF's generation reads them) win, and
 * there is no final soft-cap: HF's Gemma3ForConditionalGeneration returns the lm_head's logits as
 * they are, whatever text_config's final_logit_softcapping says (Gemma3ForCausalLM applies it).
 */
function textModelConfig(c: Json, file: string): Json {
  const t = c.text_config;
  if (typeof t !== "object" || t === null || Array.isArray(t))
    throw fileError(file, `model_type "gemma3" needs a "text_config" object (the text model's settings)`);
  const ids = Object.fromEntries(
    ["bos_token_id", "eos_token_id", "pad_token_id"].filter((k) => c[k] != null).map((k) => [k, c[k]]),
  );
  return {
    ...(t as Json),
    ...ids,
    final_logit_softcapping: null,
    model_type: "gemma3_text",
    architectures: c.architectures,
  };
}

/** Parse a config.json object (already read from `file`) into a ModelSpec. */
export function parseConfig(cfg: unknown, file: string): ModelSpec {
  if (typeof cfg !== "object" || cfg === null || Array.isArray(cfg)) throw fileError(file, "is not a JSON object");
  let c = cfg as Json;
  if (c.model_type === "gemma3") c = textModelConfig(c, file);
  // As Gemma3TextConfig(**config): a key that is present, null included, overrides its default.
  if (c.model_type === "gemma3_text") c = { ...GEMMA3_TEXT_DEFAULTS, ...c };
  const mt = c.model_type;
  if (typeof mt !== "string" || !(SUPPORTED_MODEL_TYPES as readonly string[]).includes(mt)) {
    throw fileError(
      file,
      `unsupported model_type ${JSON.stringify(mt ?? null)} (supported: ${SUPPORTED_MODEL_TYPES.join(", ")}, and gemma3 for its text model)`,
    );
  }
  const family = mt as Family;
  const hiddenSize = posInt(c, file, "hidden_size");
  const numHeads = posInt(c, file, "num_attention_heads");
  const numKvHeads = posInt(c, file, "num_key_value_heads", numHeads);
  if (numHeads % numKvHeads !== 0)
    throw fileError(file, `num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  if (numKvHeads > numHeads)
    throw fileError(file, `num_key_value_heads ${numKvHeads} is more than num_attention_heads ${numHeads}`);
  const headDim = c.head_dim == null ? hiddenSize / numHeads : posInt(c, file, "head_dim");
  if (!Number.isInteger(headDim))
    throw fileError(file, `hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`);
  if (headDim > CONFIG_BOUNDS.head_dim)
    throw fileError(file, `head dimension ${headDim} is above cosmic's bound of ${CONFIG_BOUNDS.head_dim}`);
  const numLayers = posInt(c, file, "num_hidden_layers");
  const fam = FAMILIES[family];
  const sw = c.sliding_window == null ? null : posInt(c, file, "sliding_window");
  const sliding =
    sw === null
      ? new Array<number | null>(numLayers).fill(null)
      : familyRule(file, () => fam.slidingWindow(c, numLayers, sw));
  const { rope, context } = ropeOf(c, file, family, headDim, numLayers);

  const eps = positive(c, file, "rms_norm_eps", 1e-6);
  if (eps >= 1) throw fileError(file, `"rms_norm_eps" must be small (0 < eps < 1), got ${eps}`);
  const softcap = (key: string, used: boolean): number | null =>
    used && c[key] != null ? positive(c, file, key) : null;
  const arch =
    Array.isArray(c.architectures) && typeof c.architectures[0] === "string"
      ? c.architectures[0]
      : `${family}ForCausalLM`;
  return {
    family,
    architecture: arch,
    numLayers,
    hiddenSize,
    intermediateSize: posInt(c, file, "intermediate_size"),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: posInt(c, file, "vocab_size"),
    maxPositionEmbeddings: context,
    norm: { kind: fam.normOnePlus ? "rms_one_plus" : "rms", eps },
    rope,
    qkvBias: fam.qkvBias(c),
    oBias: fam.oBias(c),
    mlpBias: fam.mlpBias(c),
    qkNorm: fam.qkNorm,
    fusedQkv: fam.fused,
    fusedGateUp: fam.fused,
    sandwichNorms: fam.sandwichNorms,
    tieWordEmbeddings: c.tie_word_embeddings === undefined ? fam.tiedByDefault : c.tie_word_embeddings === true,
    // HF multiplies by a float32 tensor of √hidden, so round it to float32 here too.
    embeddingScale: fam.scaleEmbeddings ? Math.fround(Math.sqrt(hiddenSize)) : 1,
    attnScale: fam.sandwichNorms
      ? positive(c, file, "query_pre_attn_scalar", family === "gemma3_text" ? 256 : headDim) ** -0.5
      : headDim ** -0.5,
    attnSoftcap: softcap("attn_logit_softcapping", fam.attnSoftcap),
    finalSoftcap: softcap("final_logit_softcapping", fam.sandwichNorms),
    slidingWindow: sliding,
    activation: activationOf(fam.activation(c), file),
    bosTokenId: typeof c.bos_token_id === "number" ? c.bos_token_id : null,
    eosTokenIds: ids(c.eos_token_id),
    padTokenId: typeof c.pad_token_id === "number" ? c.pad_token_id : null,
  };
}

export interface ExpectedTensor {
  name: string;
  shape: number[];
}

/** The tensors a checkpoint of this spec must hold, with their shapes. */
export function expectedTensors(s: ModelSpec): ExpectedTensor[] {
  const out: ExpectedTensor[] = [];
  const d = s.hiddenSize;
  const q = s.numHeads * s.headDim;
  const kv = s.numKvHeads * s.headDim;
  const I = s.intermediateSize;
  const add = (name: string, shape: number[]) => out.push({ name, shape });
  add(TENSORS.embed, [s.vocabSize, d]);
  for (let l = 0; l < s.numLayers; l++) {
    const t = layerTensors(l);
    add(t.inputNorm, [d]);
    add(t.postAttentionNorm, [d]);
    if (s.sandwichNorms) {
      add(t.preFeedforwardNorm, [d]);
      add(t.postFeedforwardNorm, [d]);
    }
    if (s.fusedQkv) add(`${t.qkv}.weight`, [q + 2 * kv, d]);
    else {
      add(`${t.q}.weight`, [q, d]);
      add(`${t.k}.weight`, [kv, d]);
      add(`${t.v}.weight`, [kv, d]);
      if (s.qkvBias) {
        add(`${t.q}.bias`, [q]);
        add(`${t.k}.bias`, [kv]);
        add(`${t.v}.bias`, [kv]);
      }
    }
    add(`${t.o}.weight`, [d, q]);
    if (s.oBias) add(`${t.o}.bias`, [d]);
    if (s.qkNorm) {
      add(t.qNorm, [s.headDim]);
      add(t.kNorm, [s.headDim]);
    }
    if (s.fusedGateUp) add(`${t.gateUp}.weight`, [2 * I, d]);
    else {
      add(`${t.gate}.weight`, [I, d]);
      add(`${t.up}.weight`, [I, d]);
    }
    add(`${t.down}.weight`, [d, I]);
    if (s.mlpBias) {
      add(`${t.gate}.bias`, [I]);
      add(`${t.up}.bias`, [I]);
      add(`${t.down}.bias`, [d]);
    }
  }
  add(TENSORS.finalNorm, [d]);
  if (!s.tieWordEmbeddings) add(TENSORS.lmHead, [s.vocabSize, d]);
  return out;
}
