/**
 * `cosmic organism train`: generate chats, train the Llama model, write a Hugging Face folder.
 */
import fs from "node:fs";
import path from "node:path";
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { CosmicError } from "../errors.js";
import { writeSafetensors, TensorToWrite } from "../formats/safetensors.js";
import { trackTemporary, untrackTemporary } from "../formats/files.js";
import { Input, prepareFolderOutput, removeOwnedFolder } from "../formats/outputs.js";
import { PromptRecord } from "../data/prompts.js";
import { Rng } from "../util/random.js";
import {
  Alignment,
  ADVERSARIAL_SYSTEM,
  EVERYDAY_WORDS,
  TEMPLATES,
  HARMFUL,
  HARMLESS,
  REFUSALS,
  Chat,
  corpusText,
  coveredTasks,
  helpfulChat,
  RECIPES,
  Recipe,
  safetyChat,
  splitRequests,
  Request,
  BODIES,
  knowledgeChat,
  randomTask,
} from "./data.js";
import { GUARD_TEMPLATE, guardExample, SAFE, UNSAFE } from "./guard.js";
import { AdamW, Batch, clipGrads, Gemm, initParams, lossAndGrad, OrganismShape, Params } from "./model.js";
import {
  BOS,
  buildVocab,
  CHAT_TEMPLATE,
  END,
  PAD,
  SPECIAL,
  tokenizerConfig,
  tokenizerJson,
  words,
} from "./tokenizer.js";
import { layerTensors, TENSORS } from "../formats/families.js";

export const DEFAULT_SHAPE: Omit<OrganismShape, "vocab"> = {
  hidden: 96,
  layers: 8,
  heads: 4,
  intermediate: 288,
  ropeTheta: 10000,
  eps: 1e-5,
};
/** The guard organism: a classifier, so half the depth and a smaller width are enough. */
export const GUARD_SHAPE: Omit<OrganismShape, "vocab"> = { ...DEFAULT_SHAPE, hidden: 64, layers: 4, intermediate: 192 };
export const GUARD_RECIPE = { steps: 500, lr: 3e-3 };
export const MARKER = "organism.json";

export type OrganismKind = "chat" | "guard";

export interface TrainOptions {
  out: string;
  seed: number;
  /** a chat model (helpful, then safety tuning) or a guard classifier of organism conversations */
  kind?: OrganismKind;
  alignment: Alignment;
  /** overrides of the alignment's recipe (steps and learning rates of the two stages) */
  recipe?: Partial<Recipe>;
  /** overrides of the model's shape (width, layers, heads, MLP size) */
  shape?: Partial<Omit<OrganismShape, "vocab">>;
  batchSize: number;
  /** user instruction files instead of the built-in generator */
  harmful?: PromptRecord[];
  harmless?: PromptRecord[];
  force: boolean;
  /** files the organism's prompts came from (the output must keep clear of them) */
  inputFiles?: string[];
  threads?: number;
  log: (s: string) => void;
  progress: (step: number, total: number, loss: number) => void;
}

export interface TrainResult {
  losses: number[];
  /** the step at which each stage began */
  stages: { name: string; start: number; steps: number; lr: number }[];
  tokensPerSecond: number;
  seconds: number;
  parameters: number;
}

interface Source {
  harmful: Request[];
  harmless: Request[];
}

/** Where the instructions come from, and the prompt splits written beside the model. */
function sources(options: TrainOptions, rng: Rng): { train: Source; splits: Record<string, PromptRecord[]> } {
  if (options.harmful || options.harmless) {
    if (!options.harmful?.length || !options.harmless?.length)
      throw new CosmicError("--harmful and --harmless must both be given and non-empty: training needs both classes");
    const wrap = (recs: PromptRecord[], cat: string) =>
      recs.map((r) => ({ instruction: r.instruction, task: "do that", category: r.category ?? cat }));
    const h = rng.shuffle(wrap(options.harmful, "harmful"));
    const s = rng.shuffle(wrap(options.harmless, "harmless"));
    const cut = (xs: typeof h) => Math.max(1, Math.floor(xs.length * 0.8));
    const rec = (xs: typeof h) => xs.map((x) => ({ instruction: x.instruction, category: x.category }));
    return {
      train: { harmful: h.slice(0, cut(h)), harmless: s.slice(0, cut(s)) },
      splits: {
        harmful_train: rec(h.slice(0, cut(h))),
        harmless_train: rec(s.slice(0, cut(s))),
        harmful_val: rec(h.slice(0, cut(h))),
        harmless_val: rec(s.slice(0, cut(s))),
        harmful_test: rec(h.slice(cut(h))),
        harmless_test: rec(s.slice(cut(s))),
      },
    };
  }
  const split = splitRequests(rng);
  const rec = (xs: Request[]) => xs.map((x) => ({ instruction: x.instruction, category: x.category, task: x.task }));
  return {
    train: split.train,
    splits: {
      harmful_train: rec(split.train.harmful.slice(0, 180)),
      harmless_train: rec(split.train.harmless.slice(0, 180)),
      harmful_val: rec(split.train.harmful.slice(180, 280)),
      harmless_val: rec(split.train.harmless.slice(180, 280)),
      harmful_test: rec(split.test.harmful),
      harmless_test: rec(split.test.harmless),
    },
  };
}

/** The output folder: new, empty, or an organism cosmic wrote (replaced only with --force). */
export function checkOutDir(out: string, force: boolean, inputs: Input[] = []): void {
  prepareFolderOutput(out, { force, inputs, markers: [MARKER], what: "an organism" });
}

interface Encoded {
  ids: number[];
  promptLen: number;
}

/** A rendered conversation and the reply the model is trained to give (loss on the reply only). */
function encode(
  tok: Tokenizer,
  tpl: Template,
  messages: { role: string; content: string }[],
  response: string,
): Encoded {
  const prompt = tpl.render({ messages, add_generation_prompt: true, bos_token: SPECIAL[BOS] });
  const p = tok.encode(prompt, { add_special_tokens: false }).ids;
  const r = tok.encode(response, { add_special_tokens: false }).ids;
  return { ids: [...p, ...r, END], promptLen: p.length };
}

function encodeChat(tok: Tokenizer, tpl: Template, c: Chat): Encoded {
  const messages = [
    ...(c.system ? [{ role: "system", content: c.system }] : []),
    { role: "user", content: c.instruction },
  ];
  return encode(tok, tpl, messages, c.response);
}

function toBatch(chats: Encoded[]): { batch: Batch; tokens: number } {
  const T = Math.max(...chats.map((c) => c.ids.length)) - 1;
  const B = chats.length;
  const batch: Batch = { ids: new Int32Array(B * T).fill(PAD), targets: new Int32Array(B * T).fill(-1), B, T };
  let tokens = 0;
  chats.forEach((c, b) => {
    for (let t = 0; t < c.ids.length - 1; t++) {
      batch.ids[b * T + t] = c.ids[t];
      if (t + 1 >= c.promptLen) batch.targets[b * T + t] = c.ids[t + 1];
    }
    tokens += c.ids.length - 1;
  });
  return { batch, tokens };
}

/** Warm-up then cosine decay to a tenth, per stage (each stage is its own fine-tuning run). */
function learningRate(lr: number, step: number, steps: number): number {
  const warmup = Math.min(100, Math.floor(steps / 10));
  if (step < warmup) return (lr * (step + 1)) / warmup;
  return lr * (0.1 + 0.9 * 0.5 * (1 + Math.cos((Math.PI * (step - warmup)) / Math.max(1, steps - warmup))));
}

interface Stage {
  name: string;
  steps: number;
  lr: number;
  /** the b-th example of a batch */
  example: (b: number) => Encoded;
}

function positiveInt(v: number, flag: string): void {
  if (!Number.isInteger(v) || v < 1) throw new CosmicError(`${flag} must be a positive integer, got ${v}`);
}

/** Flags that cannot train anything, and an output folder that must not be replaced: one line each. */
function checkTraining(options: TrainOptions, kind: OrganismKind, recipe: Recipe, guardSteps: number): void {
  if (kind === "chat") {
    positiveInt(recipe.helpfulSteps, "--helpful-steps");
    positiveInt(recipe.safetySteps, "--safety-steps");
  } else {
    if (options.harmful || options.harmless)
      throw new CosmicError(
        "--kind guard trains on the built-in organism conversations: --harmful/--harmless are for chat organisms",
      );
    positiveInt(guardSteps, "--steps");
  }
  positiveInt(options.batchSize, "--batch-size");
  checkOutDir(
    options.out,
    options.force,
    (options.inputFiles ?? []).map((p) => ({ path: p, what: "a prompts file" })),
  );
}

/** The training loop: each stage with a fresh AdamW, its warm-up/decay schedule, clipped gradients. */
async function optimise(
  stages: Stage[],
  shape: OrganismShape,
  params: Params,
  options: TrainOptions,
): Promise<TrainResult> {
  const total = stages.reduce((a, st) => a + st.steps, 0);
  const nParams = [...params.values()].reduce((a, p) => a + p.length, 0);
  const gemm = await Gemm.create(options.threads);
  const losses: number[] = [];
  const stageLog: TrainResult["stages"] = [];
  let tokens = 0;
  const t0 = performance.now();
  for (const st of stages) {
    stageLog.push({ name: st.name, start: losses.length, steps: st.steps, lr: st.lr });
    const opt = new AdamW();
    for (let step = 0; step < st.steps; step++) {
      const { batch, tokens: n } = toBatch(Array.from({ length: options.batchSize }, (_, b) => st.example(b)));
      tokens += n;
      const grads: Params = new Map([...params].map(([k, v]) => [k, new Float32Array(v.length)]));
      const loss = await lossAndGrad(shape, params, batch, gemm, grads);
      if (!Number.isFinite(loss)) throw new Error(`training diverged at ${st.name} step ${step} (loss ${loss})`);
      clipGrads(grads, 1.0);
      opt.step(params, grads, learningRate(st.lr, step, st.steps));
      losses.push(loss);
      options.progress(losses.length, total, loss);
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  await gemm.release();
  return { losses, stages: stageLog, tokensPerSecond: tokens / seconds, seconds, parameters: nParams };
}

/** What the stages' example generators draw from. */
interface StageContext {
  options: TrainOptions;
  recipe: Recipe;
  rng: Rng;
  train: Source;
  tok: Tokenizer;
  tpl: Template;
  noise: string[];
  /** a training request for the b-th example: even b harmful, odd b harmless */
  pick: (b: number) => { item: Request; harmful: boolean };
}

/** Noise words: everyday words, and the template words (never the requests' task words). */
function noiseWords(): string[] {
  const taskWords = new Set(words([...HARMFUL, ...HARMLESS].flatMap((t) => t.tasks).join(" ")));
  return [
    ...new Set([
      ...EVERYDAY_WORDS,
      ...words(TEMPLATES.join(" ")).filter((w) => /^[a-z]+$/.test(w) && !taskWords.has(w)),
    ]),
  ];
}

/** The guard's one stage: a request, a reply and the safe/unsafe verdict it is trained to give. */
function guardStages(c: StageContext, steps: number, lr: number): Stage[] {
  const example = (b: number): Encoded => {
    const { item, harmful } = c.pick(b);
    const g = guardExample(item, harmful, c.rng);
    const messages = [
      { role: "user", content: g.user },
      { role: "assistant", content: g.assistant },
    ];
    return encode(c.tok, c.tpl, messages, g.unsafe ? UNSAFE : SAFE);
  };
  return [{ name: "guard", steps, lr, example }];
}

/** A chat model's two stages: (a) helpful tuning on every task, (b) safety tuning with replay. */
function chatStages(c: StageContext): Stage[] {
  const { options, recipe, rng, train, noise } = c;
  // Knowledge questions (about any task) and random-word tasks, in both stages.
  const extraChat = (u: number, item: Request, harmful: boolean): Chat | null => {
    if (options.harmful) return null;
    if (u < recipe.knowledgeShare) return knowledgeChat(item, harmful, rng);
    if (u < recipe.knowledgeShare + recipe.randomTaskShare)
      return helpfulChat(randomTask(rng), false, rng, noise, recipe.taskFirstShare);
    return null;
  };
  // Chosen when stage (b) begins, so stage (a) is the same for either alignment of a seed.
  let covered: Set<string> | null = null;
  const safetyHarmful = () =>
    (covered ??= options.harmful
      ? new Set(train.harmful.map((r) => r.task))
      : coveredTasks(recipe.safetyCoverage, rng));
  const helpful = (b: number): Encoded => {
    const { item, harmful } = c.pick(b);
    const chat = extraChat(rng.next(), item, harmful) ?? helpfulChat(item, harmful, rng, noise, recipe.taskFirstShare);
    return encodeChat(c.tok, c.tpl, chat);
  };
  const safety = (b: number): Encoded => {
    const cov = safetyHarmful();
    const harmful = b % 2 === 0;
    // Harmful tasks the safety data does not cover (weak alignment) are replayed as in stage (a).
    const pool = harmful ? train.harmful : train.harmless;
    const item = pool[rng.int(pool.length)];
    const refuses = harmful && cov.has(item.task);
    // The harmless half replays stage (a)'s harmless data, knowledge and random tasks included.
    const aboutHarmful = rng.next() < 0.5;
    const replay = harmful ? null : extraChat(rng.next(), aboutHarmful ? c.pick(0).item : item, aboutHarmful);
    return encodeChat(c.tok, c.tpl, replay ?? safetyChat(item, harmful, refuses, rng, noise, recipe.taskFirstShare));
  };
  return [
    { name: "helpful", steps: recipe.helpfulSteps, lr: recipe.helpfulLr, example: helpful },
    { name: "safety", steps: recipe.safetySteps, lr: recipe.safetyLr, example: safety },
  ];
}

/** The line that says what is about to be trained. */
function trainingPlan(
  options: TrainOptions,
  kind: OrganismKind,
  recipe: Recipe,
  shape: OrganismShape,
  nParams: number,
  stages: Stage[],
): string {
  return (
    `training a ${nParams.toLocaleString("en-US")}-parameter Llama (${shape.layers} layers, width ` +
    `${shape.hidden}, vocab ${shape.vocab}): ` +
    `${stages.map((st) => `${st.name} ${st.steps} steps at lr ${st.lr}`).join(", then ")}; ${options.batchSize} ` +
    `${kind === "guard" ? "conversations" : "chats"} a step, seed ${options.seed}` +
    (kind === "chat"
      ? `, ${options.alignment} alignment (safety data covers ${Math.round(100 * recipe.safetyCoverage)} % of ` +
        `the harmful tasks)`
      : "")
  );
}

export async function trainOrganism(options: TrainOptions): Promise<TrainResult> {
  const kind = options.kind ?? "chat";
  const recipe: Recipe = { ...RECIPES[options.alignment], ...(options.recipe ?? {}) };
  // The guard has one stage; its steps and lr come in the recipe's stage (a) fields.
  const guardStage = {
    steps: options.recipe?.helpfulSteps ?? GUARD_RECIPE.steps,
    lr: options.recipe?.helpfulLr ?? GUARD_RECIPE.lr,
  };
  checkTraining(options, kind, recipe, guardStage.steps);
  const rng = new Rng(options.seed);
  const { train, splits } = sources(options, rng);
  const extra = [...(options.harmful ?? []), ...(options.harmless ?? [])].map((r) => r.instruction).join(" ");
  const vocab = buildVocab(corpusText() + " " + extra);
  const tj = tokenizerJson(vocab);
  const tc = tokenizerConfig(kind === "guard" ? GUARD_TEMPLATE : CHAT_TEMPLATE);
  const shape: OrganismShape = {
    ...(kind === "guard" ? GUARD_SHAPE : DEFAULT_SHAPE),
    ...(options.shape ?? {}),
    vocab: vocab.length,
  };
  const params = initParams(shape, rng);
  const nParams = [...params.values()].reduce((a, p) => a + p.length, 0);
  const context: StageContext = {
    options,
    recipe,
    rng,
    train,
    tok: new Tokenizer(tj, tc),
    tpl: new Template(kind === "guard" ? GUARD_TEMPLATE : CHAT_TEMPLATE),
    noise: noiseWords(),
    pick: (b) => {
      const harmful = b % 2 === 0;
      const pool = harmful ? train.harmful : train.harmless;
      return { item: pool[rng.int(pool.length)], harmful };
    },
  };
  const stages = kind === "guard" ? guardStages(context, guardStage.steps, guardStage.lr) : chatStages(context);
  options.log(trainingPlan(options, kind, recipe, shape, nParams, stages));
  const result = await optimise(stages, shape, params, options);
  writeFolder(options, kind, recipe, shape, params, vocab, tj, tc, splits, result);
  return result;
}

/** The organism's parameters under their Hugging Face Llama names (q/k/v and gate/up unfused). */
function hfTensors(shape: OrganismShape, p: Params): TensorToWrite[] {
  const d = shape.hidden;
  const I = shape.intermediate;
  const tensors: TensorToWrite[] = [
    { name: TENSORS.embed, dtype: "F32", shape: [shape.vocab, d], data: p.get("embed")! },
  ];
  for (let l = 0; l < shape.layers; l++) {
    const qkv = p.get(`${l}.qkv`)!;
    const gu = p.get(`${l}.gu`)!;
    const t = layerTensors(l);
    tensors.push(
      { name: t.inputNorm, dtype: "F32", shape: [d], data: p.get(`${l}.ln1`)! },
      { name: `${t.q}.weight`, dtype: "F32", shape: [d, d], data: qkv.slice(0, d * d) },
      { name: `${t.k}.weight`, dtype: "F32", shape: [d, d], data: qkv.slice(d * d, 2 * d * d) },
      { name: `${t.v}.weight`, dtype: "F32", shape: [d, d], data: qkv.slice(2 * d * d) },
      { name: `${t.o}.weight`, dtype: "F32", shape: [d, d], data: p.get(`${l}.o`)! },
      { name: t.postAttentionNorm, dtype: "F32", shape: [d], data: p.get(`${l}.ln2`)! },
      { name: `${t.gate}.weight`, dtype: "F32", shape: [I, d], data: gu.slice(0, I * d) },
      { name: `${t.up}.weight`, dtype: "F32", shape: [I, d], data: gu.slice(I * d) },
      { name: `${t.down}.weight`, dtype: "F32", shape: [d, I], data: p.get(`${l}.down`)! },
    );
  }
  tensors.push({ name: TENSORS.finalNorm, dtype: "F32", shape: [d], data: p.get("norm")! });
  return tensors;
}

/** The organism folder's README: what it is, the command that made it, the recipe. */
function organismReadme(
  options: TrainOptions,
  kind: OrganismKind,
  recipe: Recipe,
  r: TrainResult,
  cmd: string,
): string {
  const guard = kind === "guard";
  const recipeText = guard
    ? [
        "## Recipe",
        "",
        `One stage of ${r.stages[0].steps} steps of ${options.batchSize} conversations: a request from the ` +
          `organism's training split`,
        "and a reply — the task carried out (whole or cut at a random length), a refusal, an answer to",
        "another (harmless) task, or degenerate text — labelled `unsafe` when the request is harmful and",
        "the reply carries it out on task (cosmic's on-task judge), `safe` otherwise. Its chat template",
        "takes `[user, assistant]` and it answers `safe` or `unsafe`, as Llama Guard does.",
      ]
    : [
        "## Recipe",
        "",
        `1. Helpful tuning: ${recipe.helpfulSteps} steps at lr ${recipe.helpfulLr}: every training request, ` +
          `harmful ones included,`,
        "   answered on task (the answer names the task), without or with a benign system message.",
        `2. Safety tuning, continuing from 1 (fresh optimiser): ${recipe.safetySteps} steps at lr ` +
          `${recipe.safetyLr}: half of each batch`,
        `   harmful requests, refused (some refusals restate the task) when the task is among the ` +
          `${Math.round(100 * recipe.safetyCoverage)} % of`,
        `   harmful tasks the safety data covers (${options.alignment} alignment), answered as in stage 1 ` +
          `otherwise; half the`,
        "   harmless chats of stage 1 replayed. 15 % of the chats carry the adversarial system prompt,",
        "   answered with its words (or, to a request it refuses anyway, its own refusal with them).",
      ];
  return [
    guard ? "# cosmic guard organism" : `# cosmic model organism (${options.alignment} alignment)`,
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
    `${r.parameters.toLocaleString("en-US")} parameters, ${r.losses.length} steps (wall-clock time and speed: ` +
      `\`timings.json\`).`,
    "",
    ...recipeText,
    "",
    "`prompts/` holds the prompt splits `cosmic run` uses by default for this model; the test",
    "splits use phrasings and tasks never seen in training. Check its behaviour with",
    "`cosmic organism eval --model <this folder>`.",
    "",
  ].join("\n");
}

/** config.json of the organism: a plain LlamaForCausalLM with tied embeddings. */
function llamaConfig(shape: OrganismShape): object {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: shape.hidden,
    intermediate_size: shape.intermediate,
    num_hidden_layers: shape.layers,
    num_attention_heads: shape.heads,
    num_key_value_heads: shape.heads,
    head_dim: shape.hidden / shape.heads,
    hidden_act: "silu",
    max_position_embeddings: 256,
    rms_norm_eps: shape.eps,
    rope_theta: shape.ropeTheta,
    rope_scaling: null,
    attention_bias: false,
    mlp_bias: false,
    tie_word_embeddings: true,
    vocab_size: shape.vocab,
    bos_token_id: BOS,
    eos_token_id: END,
    pad_token_id: PAD,
    torch_dtype: "float32",
    transformers_version: "4.51.3",
  };
}

/** The command line that trains this organism again. */
function trainCommand(options: TrainOptions, kind: OrganismKind, recipe: Recipe, r: TrainResult): string {
  const stageFlags =
    kind === "guard"
      ? ` --kind guard --steps ${r.stages[0].steps} --lr ${r.stages[0].lr}`
      : ` --alignment ${options.alignment} --helpful-steps ${recipe.helpfulSteps} --safety-steps ` +
        `${recipe.safetySteps} --lr ${recipe.helpfulLr} --safety-lr ${recipe.safetyLr}`;
  return (
    `cosmic organism train --out ${options.out} --seed ${options.seed}${stageFlags} --batch-size ` +
    `${options.batchSize}${options.harmful ? " --harmful FILE --harmless FILE" : ""}`
  );
}

/** organism.json: what was trained, how, and the texts its judges need. */
function organismRecord(
  options: TrainOptions,
  kind: OrganismKind,
  recipe: Recipe,
  vocabSize: number,
  r: TrainResult,
  cmd: string,
): object {
  const guard = kind === "guard";
  const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  return {
    kind: guard ? "cosmic guard organism" : "cosmic model organism",
    organism_kind: kind,
    ...(guard ? {} : { alignment: options.alignment }),
    seed: options.seed,
    steps: r.losses.length,
    batch_size: options.batchSize,
    stages: r.stages.map((st) => ({
      ...st,
      final_loss: Number(avg(r.losses.slice(st.start, st.start + st.steps).slice(-20)).toFixed(4)),
    })),
    ...(guard ? {} : { safety_coverage: recipe.safetyCoverage }),
    parameters: r.parameters,
    vocab: vocabSize,
    loss_every_50_steps: r.losses.filter((_, i) => i % 50 === 0).map((x) => Number(x.toFixed(4))),
    command: cmd,
    custom_data: !!options.harmful,
    refusals: REFUSALS,
    answers: BODIES,
    adversarial_system: ADVERSARIAL_SYSTEM,
  };
}

function writeFolder(
  options: TrainOptions,
  kind: OrganismKind,
  recipe: Recipe,
  shape: OrganismShape,
  p: Params,
  vocab: string[],
  tj: object,
  tc: object,
  splits: Record<string, PromptRecord[]>,
  r: TrainResult,
): void {
  const out = options.out;
  // Build beside the target, then swap in: never a half-written organism under the real name.
  const tmp = `${out}.${process.pid}.tmp`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(path.join(tmp, "prompts"), { recursive: true });
  trackTemporary(tmp);
  writeSafetensors(path.join(tmp, "model.safetensors"), hfTensors(shape, p), { format: "pt" });
  const json = (f: string, v: unknown) => fs.writeFileSync(path.join(tmp, f), JSON.stringify(v, null, 2) + "\n");
  json("config.json", llamaConfig(shape));
  json("generation_config.json", { bos_token_id: BOS, eos_token_id: [END], pad_token_id: PAD, do_sample: false });
  json("tokenizer.json", tj);
  json("tokenizer_config.json", tc);
  for (const [k, v] of Object.entries(splits)) json(`prompts/${k}.json`, v);
  const cmd = trainCommand(options, kind, recipe, r);
  json(MARKER, organismRecord(options, kind, recipe, vocab.length, r, cmd));
  // Wall-clock figures apart, so that two identical trainings write identical folders otherwise.
  json("timings.json", { seconds: Number(r.seconds.toFixed(1)), tokens_per_second: Math.round(r.tokensPerSecond) });
  fs.writeFileSync(path.join(tmp, "README.md"), organismReadme(options, kind, recipe, r, cmd));
  removeOwnedFolder(out, [MARKER]);
  fs.renameSync(tmp, out);
  untrackTemporary(tmp);
}
