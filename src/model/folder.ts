/**
 * A Hugging Face chat-model folder: config.json → ModelSpec, the safetensors checkpoint
 * (checked against the spec), the tokenizer with its chat template, and generation_config.json.
 */
import fs from "node:fs";
import path from "node:path";
import { fileError } from "../errors.js";
import { ModelSpec, parseConfig, expectedTensors } from "../formats/config.js";
import { readJsonFile } from "../formats/files.js";
import { Checkpoint } from "../formats/safetensors.js";
import { ChatTokenizer } from "../tokenize/chat.js";

export class ModelFolder {
  readonly dir: string;
  readonly spec: ModelSpec;
  readonly checkpoint: Checkpoint;
  readonly tokenizer: ChatTokenizer;
  /** token ids that end generation */
  readonly eosTokenIds: number[];

  private constructor(dir: string, spec: ModelSpec, ck: Checkpoint, tok: ChatTokenizer, eos: number[]) {
    this.dir = dir;
    this.spec = spec;
    this.checkpoint = ck;
    this.tokenizer = tok;
    this.eosTokenIds = eos;
  }

  /** `chatTemplate`: a Jinja file that replaces the folder's chat template. */
  static open(dir: string, opts: { chatTemplate?: string } = {}): ModelFolder {
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw fileError(dir, "is not a model folder");
    const cfgPath = path.join(dir, "config.json");
    if (!fs.existsSync(cfgPath)) throw fileError(cfgPath, "missing: not a Hugging Face model folder");
    const raw = readJsonFile<Record<string, unknown>>(cfgPath);
    const spec = parseConfig(raw, cfgPath);
    const ck = Checkpoint.openFolder(dir);
    checkWeights(spec, ck);
    const tok = new ChatTokenizer(dir, opts.chatTemplate);
    if (tok.maxTokenId >= spec.vocabSize) {
      throw fileError(
        path.join(dir, "tokenizer.json"),
        `has token id ${tok.maxTokenId}, but config.json's vocab_size is ${spec.vocabSize}: the embedding ` +
          `has no row for it`,
      );
    }
    for (const [what, id] of [
      ["bos_token_id", spec.bosTokenId],
      ...spec.eosTokenIds.map((e) => ["eos_token_id", e] as const),
    ] as const) {
      if (id !== null && (!Number.isInteger(id) || id < 0 || id >= spec.vocabSize))
        throw fileError(cfgPath, `${what} ${id} is outside the vocabulary (vocab_size ${spec.vocabSize})`);
    }
    let eos: number[] = [];
    const genPath = path.join(dir, "generation_config.json");
    if (fs.existsSync(genPath)) {
      const g = readJsonFile<Record<string, unknown>>(genPath);
      const e = g?.eos_token_id;
      eos = typeof e === "number" ? [e] : Array.isArray(e) ? e.filter((x): x is number => typeof x === "number") : [];
    }
    if (eos.length === 0) eos = spec.eosTokenIds;
    if (eos.length === 0 && tok.eosToken) {
      const id = tok.tokenToId(tok.eosToken);
      if (id !== undefined) eos = [id];
    }
    return new ModelFolder(dir, spec, ck, tok, eos);
  }

  /** A short, stable name for outputs: the folder's base name. */
  get name(): string {
    return path.basename(path.resolve(this.dir));
  }
}

/** Every tensor the spec needs must be present with the right shape. */
export function checkWeights(spec: ModelSpec, ck: Checkpoint): void {
  for (const t of expectedTensors(spec)) {
    if (!ck.has(t.name))
      throw fileError(
        ck.files.length === 1 ? ck.files[0].path : path.dirname(ck.files[0].path),
        `missing tensor "${ck.storedName(t.name)}" (expected shape [${t.shape}])`,
      );
    const info = ck.info(t.name);
    if (info.shape.length !== t.shape.length || info.shape.some((d, i) => d !== t.shape[i])) {
      throw fileError(
        ck.fileOf(t.name).path,
        `tensor "${ck.storedName(t.name)}" has shape [${info.shape}], expected [${t.shape}] from config.json`,
      );
    }
  }
}
