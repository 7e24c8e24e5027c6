/**
 * A random checkpoint with the shape of Qwen2.5-0.5B-Instruct (24 layers, width 896, 14 heads /
 * 2 KV heads, MLP 4864, vocab 151936, tied embeddings), BF16 on disk, written locally.
 * The tokenizer files are borrowed from the qwen2 fixture: the bench feeds token ids directly.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { writeSafetensors, TensorToWrite } from "../src/formats/safetensors.js";
import { expectedTensors, parseConfig } from "../src/formats/config.js";
import { Rng } from "../src/util/random.js";

export const QWEN05_CONFIG = {
  architectures: ["Qwen2ForCausalLM"],
  model_type: "qwen2",
  hidden_size: 896,
  intermediate_size: 4864,
  num_hidden_layers: 24,
  num_attention_heads: 14,
  num_key_value_heads: 2,
  vocab_size: 151936,
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  tie_word_embeddings: true,
  hidden_act: "silu",
  use_sliding_window: false,
  sliding_window: 32768,
  bos_token_id: 151643,
  eos_token_id: 151645,
  torch_dtype: "bfloat16",
};

/**
 * Gemma-2-2B-it's head and block shapes (vocab 256,000 × width 2,304: a 2.2 GiB float32 head,
 * over the 2 GiB ONNX cap), with 2 of its 26 layers: what the head split must handle.
 */
export const GEMMA2_2B_HEAD_CONFIG = {
  architectures: ["Gemma2ForCausalLM"],
  model_type: "gemma2",
  hidden_size: 2304,
  intermediate_size: 9216,
  num_hidden_layers: 2,
  num_attention_heads: 8,
  num_key_value_heads: 4,
  head_dim: 256,
  vocab_size: 256000,
  max_position_embeddings: 8192,
  rms_norm_eps: 1e-6,
  rope_theta: 10000.0,
  query_pre_attn_scalar: 256,
  attn_logit_softcapping: 50.0,
  final_logit_softcapping: 30.0,
  sliding_window: 4096,
  hidden_activation: "gelu_pytorch_tanh",
  tie_word_embeddings: true,
  bos_token_id: 2,
  eos_token_id: 1,
  torch_dtype: "bfloat16",
};

/**
 * Qwen2.5-7B-Instruct's head and block shapes (an untied 152,064 × 3,584 lm_head: 2.03 GiB as
 * float32, over the 2 GiB ONNX cap), with 2 of its 28 layers.
 */
export const QWEN25_7B_HEAD_CONFIG = {
  architectures: ["Qwen2ForCausalLM"],
  model_type: "qwen2",
  hidden_size: 3584,
  intermediate_size: 18944,
  num_hidden_layers: 2,
  num_attention_heads: 28,
  num_key_value_heads: 4,
  vocab_size: 152064,
  max_position_embeddings: 32768,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  tie_word_embeddings: false,
  hidden_act: "silu",
  use_sliding_window: false,
  sliding_window: 131072,
  bos_token_id: 151643,
  eos_token_id: 151645,
  torch_dtype: "bfloat16",
};

/** Meta-Llama-3-8B-Instruct's shapes: 8.0 B parameters, 16 GB as BF16, 32 GB as float32. */
export const LLAMA3_8B_CONFIG = {
  architectures: ["LlamaForCausalLM"],
  model_type: "llama",
  hidden_size: 4096,
  intermediate_size: 14336,
  num_hidden_layers: 32,
  num_attention_heads: 32,
  num_key_value_heads: 8,
  vocab_size: 128256,
  max_position_embeddings: 8192,
  rms_norm_eps: 1e-5,
  rope_theta: 500000.0,
  tie_word_embeddings: false,
  hidden_act: "silu",
  bos_token_id: 128000,
  eos_token_id: 128009,
  torch_dtype: "bfloat16",
};

/** Qwen3-0.6B's shape: 28 layers, width 1,024, 16 heads / 8 KV heads of 128, q/k norms, tied embeddings. */
export const QWEN3_06B_CONFIG = {
  architectures: ["Qwen3ForCausalLM"],
  model_type: "qwen3",
  hidden_size: 1024,
  intermediate_size: 3072,
  num_hidden_layers: 28,
  num_attention_heads: 16,
  num_key_value_heads: 8,
  head_dim: 128,
  vocab_size: 151936,
  max_position_embeddings: 40960,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  tie_word_embeddings: true,
  hidden_act: "silu",
  attention_bias: false,
  use_sliding_window: false,
  bos_token_id: 151643,
  eos_token_id: 151645,
  torch_dtype: "bfloat16",
};

/** Qwen2.5-1.5B-Instruct's and Qwen2.5-3B-Instruct's shapes (tied embeddings, vocab 151,936). */
export const QWEN15_CONFIG = {
  ...QWEN05_CONFIG,
  hidden_size: 1536,
  intermediate_size: 8960,
  num_hidden_layers: 28,
  num_attention_heads: 12,
  num_key_value_heads: 2,
};
export const QWEN3B_CONFIG = {
  ...QWEN05_CONFIG,
  hidden_size: 2048,
  intermediate_size: 11008,
  num_hidden_layers: 36,
  num_attention_heads: 16,
  num_key_value_heads: 2,
};

/** A folder of links: the model's files, and tokenizer.json / tokenizer_config.json from `tok` (a real tokenizer). */
export function withTokenizer(model: string, tok: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cosmic-bench-tok-"));
  // Links and two small files: removed when the bench process ends.
  process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
  for (const f of fs.readdirSync(model))
    if (!f.startsWith("tokenizer") && !f.startsWith(".")) fs.symlinkSync(path.resolve(model, f), path.join(dir, f));
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) fs.copyFileSync(path.join(tok, f), path.join(dir, f));
  return dir;
}

/** Write the Qwen2.5-0.5B-shaped checkpoint into `dir` unless it is already there; returns the folder. */
export function ensureQwenShaped(dir: string, tokenizerFrom: string, log: (s: string) => void): string {
  return ensureShaped(dir, QWEN05_CONFIG, "Qwen2.5-0.5B", tokenizerFrom, log);
}

/** A random BF16 checkpoint of `config` in `dir` (tokenizer files from `tokenizerFrom`), unless already there. */
export function ensureShaped(
  dir: string,
  config: Record<string, unknown>,
  label: string,
  tokenizerFrom: string,
  log: (s: string) => void,
): string {
  const done = path.join(dir, ".complete");
  if (fs.existsSync(done)) return dir;
  fs.mkdirSync(dir, { recursive: true });
  const spec = parseConfig(config, "bench config");
  const rng = new Rng(1234);
  const t0 = performance.now();
  const tensors: TensorToWrite[] = expectedTensors(spec).map((t) => ({
    name: t.name,
    dtype: "BF16",
    shape: t.shape,
    data: () => {
      const n = t.shape.reduce((a, b) => a * b, 1);
      const out = new Uint16Array(n);
      if (t.name.endsWith("norm.weight"))
        out.fill(0x3f80); // 1.0
      else {
        // Uniform in ±√3·σ with σ = 0.02: a realistic scale, and cheap to draw.
        const f = new Float32Array(1);
        const u = new Uint32Array(f.buffer);
        for (let i = 0; i < n; i++) {
          f[0] = (rng.next() * 2 - 1) * 0.0346;
          out[i] = u[0] >>> 16;
        }
      }
      return new Uint8Array(out.buffer);
    },
  }));
  writeSafetensors(path.join(dir, "model.safetensors"), tensors, { format: "pt" });
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 2));
  // The npm tokenizer packages ship no generation_config.json; config.json's eos_token_id serves then.
  for (const f of ["tokenizer.json", "tokenizer_config.json", "generation_config.json"])
    if (f !== "generation_config.json" || fs.existsSync(path.join(tokenizerFrom, f)))
      fs.copyFileSync(path.join(tokenizerFrom, f), path.join(dir, f));
  fs.writeFileSync(done, "");
  log(`wrote a ${label}-shaped random checkpoint to ${dir} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return dir;
}
