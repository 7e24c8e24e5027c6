/**
 * `cosmic organism train`: generate chats, train the Llama model, write a Hugging Face folder.
 */
import fs from "node:fs";
import path from "node:path";
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { CosmicError, fileError } from "../errors.js";
import { writeSafetensors, TensorToWrite } from "../formats/safetensors.js";
import { PromptRecord } from "../data/prompts.js";
import { Rng } from "../util/random.js";
import {
  Alignment, ADVERSARIAL_SYSTEM, EVERYDAY_WORDS, TEMPLATES, HARMFUL, HARMLESS, REFUSALS, Chat, corpusText, makeChat, splitRequests, Request,
} from "./data.js";
import { AdamW, Batch, clipGrads, Gemm, initParams, lossAndGrad, OrganismShape, Params } from "./model.js";
import { BOS, buildVocab, CHAT_TEMPLATE, END, PAD, SPECIAL, tokenizerConfig, tokenizerJson, words } from "./tokenizer.js";

export const DEFAULT_SHAPE: Omit<OrganismShape, "vocab"> = { hidden: 64, layers: Number(process.env.COSMIC_ORG_LAYERS ?? 8), heads: 4, intermediate: 192, ropeTheta: 10000, eps: 1e-5 };
export const MARKER = "organism.json";

export interface TrainOptions {
  out: string;
  seed: number;
  alignment: Alignment;
  steps: number;
  batchSize: number;
  lr: number;
  /** user instruction files instead of the built-in generator */
  harmful?: PromptRecord[];
  harmless?: PromptRecord[];
  force: boolean;
  threads?: number;
  log: (s: string) => void;
  progress: (step: number, total: number, loss: number) => void;
}

export interface TrainResult {
  losses: number[];
  tokensPerSecond: number;
  seconds: number;
  parameters: number;
}

interface Source {
  harmful: Request[];
  harmless: Request[];
}

/** Where the instructions come from, and the prompt splits written beside the model. */
function sources(o: TrainOptions, rng: Rng): { train: Source; splits: Record<string, PromptRecord[]> } {
  if (o.harmful || o.harmless) {
    if (!o.harmful?.length || !o.harmless?.length) throw new CosmicError("--harmful and --harmless must both be given and non-empty: training needs both classes");
    const wrap = (recs: PromptRecord[], cat: string) => recs.map((r) => ({ instruction: r.instruction, task: "do that", category: r.category ?? cat }));
    const h = rng.shuffle(wrap(o.harmful, "harmful"));
    const s = rng.shuffle(wrap(o.harmless, "harmless"));
    const cut = (xs: typeof h) => Math.max(1, Math.floor(xs.length * 0.8));
    const rec = (xs: typeof h) => xs.map((x) => ({ instruction: x.instruction, category: x.category }));
    return {
      train: { harmful: h.slice(0, cut(h)), harmless: s.slice(0, cut(s)) },
      splits: {
        harmful_train: rec(h.slice(0, cut(h))), harmless_train: rec(s.slice(0, cut(s))),
        harmful_val: rec(h.slice(0, cut(h))), harmless_val: rec(s.slice(0, cut(s))),
        harmful_test: rec(h.slice(cut(h))), harmless_test: rec(s.slice(cut(s))),
      },
    };
  }
  const split = splitRequests(rng);
  const rec = (xs: Request[]) => xs.map((x) => ({ instruction: x.instruction, category: x.category }));
  return {
    train: split.train,
    splits: {
      harmful_train: rec(split.train.harmful.slice(0, 180)), harmless_train: rec(split.train.harmless.slice(0, 180)),
      harmful_val: rec(split.train.harmful.slice(180, 280)), harmless_val: rec(split.train.harmless.slice(180, 280)),
      harmful_test: rec(split.test.harmful), harmless_test: rec(split.test.harmless),
    },
  };
}

export function checkOutDir(out: string, force: boolean): void {
  if (!fs.existsSync(out)) return;
  const entries = fs.readdirSync(out);
  if (entries.length === 0) return;
  if (!fs.existsSync(path.join(out, MARKER))) throw fileError(out, "exists and is not an organism folder: choose another --out");
  if (!force) throw fileError(out, "already holds an organism: pass --force to replace it");
}

function encodeChat(tok: Tokenizer, tpl: Template, c: Chat): { ids: number[]; promptLen: number } {
  const messages = [...(c.system ? [{ role: "system", content: c.system }] : []), { role: "user", content: c.instruction }];
  const prompt = tpl.render({ messages, add_generation_prompt: true, bos_token: SPECIAL[BOS] });
  const p = tok.encode(prompt, { add_special_tokens: false }).ids;
  const r = tok.encode(c.response, { add_special_tokens: false }).ids;
  return { ids: [...p, ...r, END], promptLen: p.length };
}

export async function trainOrganism(o: TrainOptions): Promise<TrainResult> {
  if (!Number.isInteger(o.steps) || o.steps < 1) throw new CosmicError(`--steps must be a positive integer, got ${o.steps}`);
  checkOutDir(o.out, o.force);
  const rng = new Rng(o.seed);
  const { train, splits } = sources(o, rng);
  const extra = [...(o.harmful ?? []), ...(o.harmless ?? [])].map((r) => r.instruction).join(" ");
  const vocab = buildVocab(corpusText() + " " + extra);
  const tj = tokenizerJson(vocab);
  const tc = tokenizerConfig();
  const tok = new Tokenizer(tj, tc);
  const tpl = new Template(CHAT_TEMPLATE);
  const shape: OrganismShape = { ...DEFAULT_SHAPE, vocab: vocab.length };
  // Noise words: everyday words, and the template words (never the requests' task words).
  const taskWords = new Set(words([...HARMFUL, ...HARMLESS].flatMap((t) => t.tasks).join(" ")));
  const noise = [...new Set([...EVERYDAY_WORDS, ...words(TEMPLATES.join(" ")).filter((w) => /^[a-z]+$/.test(w) && !taskWords.has(w))])];
  const params = initParams(shape, rng);
  const nParams = [...params.values()].reduce((a, p) => a + p.length, 0);
  const gemm = await Gemm.create(o.threads);
  const opt = new AdamW();
  const losses: number[] = [];
  let tokens = 0;
  const t0 = performance.now();
  const warmup = Math.min(100, Math.floor(o.steps / 10));
  o.log(`training a ${nParams.toLocaleString("en-US")}-parameter Llama (${shape.layers} layers, width ${shape.hidden}, vocab ${shape.vocab}) for ${o.steps} steps of ${o.batchSize} chats, seed ${o.seed}, ${o.alignment} alignment`);
  for (let step = 0; step < o.steps; step++) {
    const chats: { ids: number[]; promptLen: number }[] = [];
    for (let b = 0; b < o.batchSize; b++) {
      const harmful = b % 2 === 0;
      const pool = harmful ? train.harmful : train.harmless;
      chats.push(encodeChat(tok, tpl, makeChat(pool[rng.int(pool.length)], harmful, o.alignment, rng, noise)));
    }
    const T = Math.max(...chats.map((c) => c.ids.length)) - 1;
    const B = chats.length;
    const batch: Batch = { ids: new Int32Array(B * T).fill(PAD), targets: new Int32Array(B * T).fill(-1), B, T };
    chats.forEach((c, b) => {
      for (let t = 0; t < c.ids.length - 1; t++) {
        batch.ids[b * T + t] = c.ids[t];
        if (t + 1 >= c.promptLen) batch.targets[b * T + t] = c.ids[t + 1];
      }
      tokens += c.ids.length - 1;
    });
    const grads: Params = new Map([...params].map(([k, v]) => [k, new Float32Array(v.length)]));
    const loss = await lossAndGrad(shape, params, batch, gemm, grads);
    if (!Number.isFinite(loss)) throw new Error(`training diverged at step ${step} (loss ${loss})`);
    clipGrads(grads, 1.0);
    const lr = step < warmup ? (o.lr * (step + 1)) / warmup : o.lr * (0.1 + 0.9 * 0.5 * (1 + Math.cos((Math.PI * (step - warmup)) / Math.max(1, o.steps - warmup))));
    opt.step(params, grads, lr);
    losses.push(loss);
    o.progress(step + 1, o.steps, loss);
  }
  const seconds = (performance.now() - t0) / 1000;
  await gemm.release();
  const result: TrainResult = { losses, tokensPerSecond: tokens / seconds, seconds, parameters: nParams };
  writeFolder(o, shape, params, vocab, tj, tc, splits, result);
  return result;
}

function writeFolder(o: TrainOptions, shape: OrganismShape, p: Params, vocab: string[], tj: object, tc: object, splits: Record<string, PromptRecord[]>, r: TrainResult): void {
  const out = o.out;
  // Build beside the target, then swap in: never a half-written organism under the real name.
  const tmp = `${out}.${process.pid}.tmp`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(path.join(tmp, "prompts"), { recursive: true });
  const d = shape.hidden;
  const I = shape.intermediate;
  const tensors: TensorToWrite[] = [{ name: "model.embed_tokens.weight", dtype: "F32", shape: [shape.vocab, d], data: p.get("embed")! }];
  for (let l = 0; l < shape.layers; l++) {
    const qkv = p.get(`${l}.qkv`)!;
    const gu = p.get(`${l}.gu`)!;
    const pre = `model.layers.${l}`;
    tensors.push(
      { name: `${pre}.input_layernorm.weight`, dtype: "F32", shape: [d], data: p.get(`${l}.ln1`)! },
      { name: `${pre}.self_attn.q_proj.weight`, dtype: "F32", shape: [d, d], data: qkv.slice(0, d * d) },
      { name: `${pre}.self_attn.k_proj.weight`, dtype: "F32", shape: [d, d], data: qkv.slice(d * d, 2 * d * d) },
      { name: `${pre}.self_attn.v_proj.weight`, dtype: "F32", shape: [d, d], data: qkv.slice(2 * d * d) },
      { name: `${pre}.self_attn.o_proj.weight`, dtype: "F32", shape: [d, d], data: p.get(`${l}.o`)! },
      { name: `${pre}.post_attention_layernorm.weight`, dtype: "F32", shape: [d], data: p.get(`${l}.ln2`)! },
      { name: `${pre}.mlp.gate_proj.weight`, dtype: "F32", shape: [I, d], data: gu.slice(0, I * d) },
      { name: `${pre}.mlp.up_proj.weight`, dtype: "F32", shape: [I, d], data: gu.slice(I * d) },
      { name: `${pre}.mlp.down_proj.weight`, dtype: "F32", shape: [d, I], data: p.get(`${l}.down`)! },
    );
  }
  tensors.push({ name: "model.norm.weight", dtype: "F32", shape: [d], data: p.get("norm")! });
  writeSafetensors(path.join(tmp, "model.safetensors"), tensors, { format: "pt" });
  const config = {
    architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_size: d, intermediate_size: I, num_hidden_layers: shape.layers,
    num_attention_heads: shape.heads, num_key_value_heads: shape.heads, head_dim: d / shape.heads, hidden_act: "silu",
    max_position_embeddings: 256, rms_norm_eps: shape.eps, rope_theta: shape.ropeTheta, rope_scaling: null, attention_bias: false,
    mlp_bias: false, tie_word_embeddings: true, vocab_size: shape.vocab, bos_token_id: BOS, eos_token_id: END, pad_token_id: PAD,
    torch_dtype: "float32", transformers_version: "4.51.3",
  };
  const json = (f: string, v: unknown) => fs.writeFileSync(path.join(tmp, f), JSON.stringify(v, null, 2) + "\n");
  json("config.json", config);
  json("generation_config.json", { bos_token_id: BOS, eos_token_id: [END], pad_token_id: PAD, do_sample: false });
  json("tokenizer.json", tj);
  json("tokenizer_config.json", tc);
  for (const [k, v] of Object.entries(splits)) json(`prompts/${k}.json`, v);
  const cmd = `cosmic organism train --out ${out} --seed ${o.seed} --alignment ${o.alignment} --steps ${o.steps} --batch-size ${o.batchSize} --lr ${o.lr}${o.harmful ? " --harmful FILE --harmless FILE" : ""}`;
  json(MARKER, {
    kind: "cosmic model organism", alignment: o.alignment, seed: o.seed, steps: o.steps, batch_size: o.batchSize, lr: o.lr,
    parameters: r.parameters, vocab: vocab.length, seconds: Number(r.seconds.toFixed(1)), tokens_per_second: Math.round(r.tokensPerSecond),
    final_loss: Number(r.losses.slice(-20).reduce((a, b) => a + b, 0) / Math.min(20, r.losses.length)).toFixed(4),
    loss_every_50_steps: r.losses.filter((_, i) => i % 50 === 0).map((x) => Number(x.toFixed(4))),
    command: cmd, custom_data: !!o.harmful, refusals: REFUSALS, adversarial_system: ADVERSARIAL_SYSTEM,
  });
  fs.writeFileSync(path.join(tmp, "README.md"), [
    `# cosmic model organism (${o.alignment} alignment)`,
    "",
    "A small Llama-architecture chat model trained by cosmic itself on generated chats, so that",
    "refusal is learned behaviour that COSMIC can be measured on. A normal Hugging Face folder.",
    "",
    "Produced by:",
    "",
    "```sh",
    cmd,
    "```",
    "",
    `${r.parameters.toLocaleString("en-US")} parameters, ${o.steps} steps in ${r.seconds.toFixed(0)} s (${Math.round(r.tokensPerSecond)} tokens/s).`,
    "`prompts/` holds the prompt splits `cosmic run` uses by default for this model; the test",
    "splits use phrasings and tasks never seen in training. Check its behaviour with",
    "`cosmic organism eval --model <this folder>`.",
    "",
  ].join("\n"));
  fs.rmSync(out, { recursive: true, force: true });
  fs.renameSync(tmp, out);
}
