/**
 * One table per model family: what config.json means for each family that cosmic loads, and
 * the Hugging Face tensor names every family shares. Config parsing, the graph builder,
 * abliteration, the organism writer and the embedding lookup read from here, so adding a
 * family is one adapter (and a fixture), as TransformerLens keeps one per architecture.
 */

export const SUPPORTED_MODEL_TYPES = [
  "llama",
  "mistral",
  "qwen2",
  "qwen3",
  "gemma",
  "gemma2",
  "gemma3_text",
  "phi3",
] as const;
export type Family = (typeof SUPPORTED_MODEL_TYPES)[number];

type Json = Record<string, unknown>;

export interface FamilyAdapter {
  /** RMSNorm scales by (1 + w) instead of w */
  normOnePlus: boolean;
  /** q/k/v projections have biases, given the config */
  qkvBias(c: Json): boolean;
  /** o_proj has a bias */
  oBias(c: Json): boolean;
  /** gate/up/down have biases */
  mlpBias(c: Json): boolean;
  /** per-head RMSNorm on q and k before RoPE */
  qkNorm: boolean;
  /** fused qkv_proj and gate_up_proj */
  fused: boolean;
  /** norms after attention and MLP as well as before (with query_pre_attn_scalar and the final soft-cap) */
  sandwichNorms: boolean;
  /** attn_logit_softcapping is applied (Gemma 2; Gemma 3's attention ignores the field, as HF's does) */
  attnSoftcap: boolean;
  /** tie_word_embeddings when config.json does not say */
  tiedByDefault: boolean;
  /** embeddings are multiplied by √hidden */
  scaleEmbeddings: boolean;
  /** the activation's config value, with the family's default */
  activation(c: Json): unknown;
  /** each layer's sliding window (null: full causal attention), given `window` */
  slidingWindow(c: Json, layers: number, window: number): (number | null)[];
  /** which layers rotate with rope_local_base_freq instead of rope_theta (Gemma 3's sliding layers) */
  localRopeLayers(c: Json, layers: number): boolean[] | null;
}

/**
 * Gemma 2/3 layer kinds: `layer_types` when config.json has it, else every `pattern`-th layer
 * attends to everything and the others slide (Gemma 2: odd layers full; Gemma 3: one in six).
 */
export function slidingLayers(c: Json, layers: number, pattern: number): boolean[] {
  const lt = c.layer_types;
  if (Array.isArray(lt)) {
    if (lt.length !== layers || !lt.every((t) => t === "sliding_attention" || t === "full_attention"))
      throw new Error(
        `"layer_types" must list ${layers} entries of "sliding_attention" or "full_attention", got ` +
          JSON.stringify(lt).slice(0, 60),
      );
    return lt.map((t) => t === "sliding_attention");
  }
  return Array.from({ length: layers }, (_, l) => (l + 1) % pattern !== 0);
}

function gemma3Pattern(c: Json): number {
  const p = c.sliding_window_pattern ?? 6;
  if (typeof p !== "number" || !Number.isInteger(p) || p < 1)
    throw new Error(`"sliding_window_pattern" must be a positive integer, got ${JSON.stringify(p)}`);
  return p;
}

const bias = (c: Json) => c.attention_bias === true;
const none = () => false;
const silu = (c: Json) => c.hidden_act ?? "silu";
const gelu = (c: Json) => c.hidden_activation ?? c.hidden_act ?? "gelu_pytorch_tanh";
const full = (_c: Json, layers: number) => new Array<number | null>(layers).fill(null);
const everyLayer = (_c: Json, layers: number, w: number) => new Array<number | null>(layers).fill(w);
/** Qwen: only with use_sliding_window, from max_window_layers on. */
const qwenWindow = (c: Json, layers: number, w: number) => {
  if (c.use_sliding_window !== true) return full(c, layers);
  const from = typeof c.max_window_layers === "number" ? c.max_window_layers : layers;
  return Array.from({ length: layers }, (_, l) => (l >= from ? w : null));
};

const base: FamilyAdapter = {
  normOnePlus: false,
  qkvBias: bias,
  oBias: bias,
  mlpBias: none,
  qkNorm: false,
  fused: false,
  sandwichNorms: false,
  attnSoftcap: false,
  tiedByDefault: false,
  scaleEmbeddings: false,
  activation: silu,
  slidingWindow: full,
  localRopeLayers: () => null,
};

const gemmaBase: FamilyAdapter = {
  ...base,
  normOnePlus: true,
  tiedByDefault: true,
  scaleEmbeddings: true,
  activation: gelu,
};

export const FAMILIES: Record<Family, FamilyAdapter> = {
  llama: { ...base, mlpBias: (c) => c.mlp_bias === true },
  mistral: { ...base, slidingWindow: everyLayer },
  qwen2: { ...base, qkvBias: () => true, oBias: none, slidingWindow: qwenWindow },
  qwen3: { ...base, qkNorm: true, slidingWindow: qwenWindow },
  gemma: gemmaBase,
  gemma2: {
    ...gemmaBase,
    sandwichNorms: true,
    attnSoftcap: true,
    // Even layers slide, odd layers attend to everything.
    slidingWindow: (c, layers, w) => slidingLayers(c, layers, 2).map((s) => (s ? w : null)),
  },
  gemma3_text: {
    ...gemmaBase,
    sandwichNorms: true,
    qkNorm: true,
    slidingWindow: (c, layers, w) => slidingLayers(c, layers, gemma3Pattern(c)).map((s) => (s ? w : null)),
    localRopeLayers: (c, layers) => slidingLayers(c, layers, gemma3Pattern(c)),
  },
  phi3: { ...base, qkvBias: none, oBias: none, fused: true, slidingWindow: everyLayer },
};

/** The tensor names of one decoder layer (projections without their .weight/.bias suffix). */
export function layerTensors(l: number) {
  const p = `model.layers.${l}`;
  return {
    inputNorm: `${p}.input_layernorm.weight`,
    postAttentionNorm: `${p}.post_attention_layernorm.weight`,
    preFeedforwardNorm: `${p}.pre_feedforward_layernorm.weight`,
    postFeedforwardNorm: `${p}.post_feedforward_layernorm.weight`,
    q: `${p}.self_attn.q_proj`,
    k: `${p}.self_attn.k_proj`,
    v: `${p}.self_attn.v_proj`,
    qkv: `${p}.self_attn.qkv_proj`,
    o: `${p}.self_attn.o_proj`,
    qNorm: `${p}.self_attn.q_norm.weight`,
    kNorm: `${p}.self_attn.k_norm.weight`,
    gate: `${p}.mlp.gate_proj`,
    up: `${p}.mlp.up_proj`,
    gateUp: `${p}.mlp.gate_up_proj`,
    down: `${p}.mlp.down_proj`,
  };
}

/** The model-level tensor names. */
export const TENSORS = {
  embed: "model.embed_tokens.weight",
  finalNorm: "model.norm.weight",
  lmHead: "lm_head.weight",
} as const;

/** Matrices and biases that write into the residual stream (what abliteration edits), besides the embedding. */
export const RESIDUAL_WRITER = /^model\.layers\.\d+\.(self_attn\.o_proj|mlp\.down_proj)\.weight$/;
export const RESIDUAL_WRITER_BIAS = /^model\.layers\.\d+\.(self_attn\.o_proj|mlp\.down_proj)\.bias$/;
