/**
 * A Hugging Face tokenizer.json as llama.cpp's GGUF vocabulary. Byte-level BPE (GPT-2 style:
 * Llama 3, Qwen, the fixtures) maps exactly: tokens by id, merges, token types, and the
 * pre-tokenizer's split regex named as llama.cpp knows it. SentencePiece-style BPE (byte
 * fallback, "▁": Llama 2, Mistral, Gemma) becomes llama.cpp's "llama" vocabulary with scores
 * derived from the merge ranks. WordPiece (the organisms) is refused: llama.cpp's only WordPiece
 * tokenizer, BERT's, lowercases every input.
 */
import path from "node:path";
import { CosmicError, fileError } from "../errors.js";
import { readJsonFile } from "../formats/files.js";
import type { GgufValue } from "./gguf.js";

type Json = Record<string, unknown>;

/** llama.cpp's token types (llama_token_type). */
const TOKEN_TYPE = { normal: 1, unknown: 2, control: 3, userDefined: 4, unused: 5, byte: 6 } as const;

/** Split regexes llama.cpp implements, by the name its loader knows them (tokenizer.ggml.pre). */
const KNOWN_SPLITS = new Map<string, string>([
  [
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|" +
      " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "llama-bpe",
  ],
  [
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|" +
      " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    "qwen2",
  ],
]);

/**
 * The name of the pre-tokenizer for llama.cpp, or null if it has none that splits the same way.
 * Without merges every byte is its own token, so any split gives the same ids ("default").
 */
export function preTokenizerName(pre: unknown, hasMerges: boolean): string | null {
  const p = pre as Json | null | undefined;
  const byteLevel = (x: Json | undefined) => x?.type === "ByteLevel";
  if (!hasMerges && (!p || byteLevel(p) || p.type === "Sequence")) return "default";
  if (byteLevel(p ?? undefined) && p!.use_regex !== false) return "gpt-2";
  if (p?.type === "Sequence" && Array.isArray(p.pretokenizers)) {
    const [split, bl, ...rest] = p.pretokenizers as Json[];
    const regex = (split?.pattern as Json | undefined)?.Regex;
    if (
      rest.length === 0 &&
      split?.type === "Split" &&
      byteLevel(bl) &&
      bl.use_regex === false &&
      typeof regex === "string"
    )
      return KNOWN_SPLITS.get(regex) ?? null;
  }
  return null;
}

/** Ids no token has (a padded vocabulary): "[PADn]", unused. Afterwards every entry is a string. */
function fillPlaceholders(tokens: (string | undefined)[], types: Int32Array): asserts tokens is string[] {
  for (let i = 0; i < tokens.length; i++)
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = TOKEN_TYPE.unused;
    }
}

function mergeText(m: unknown): string {
  if (typeof m === "string") return m;
  if (Array.isArray(m) && m.length === 2) return `${m[0]} ${m[1]}`;
  throw new Error("bad merge");
}

export interface VocabIds {
  vocabSize: number;
  bosTokenId: number | null;
  eosTokenIds: number[];
  padTokenId: number | null;
}

/** tokenizer.ggml.* and tokenizer.chat_template for the folder's tokenizer.json. */
export function ggufVocabulary(dir: string, ids: VocabIds, chatTemplate: string): Record<string, GgufValue> {
  const file = path.join(dir, "tokenizer.json");
  const tj = readJsonFile<Json>(file);
  const model = tj.model as Json;
  const refuse = (why: string) => fileError(file, `cannot be written as a llama.cpp vocabulary: ${why}`);
  if (model?.type === "WordPiece")
    throw refuse(
      "it is a WordPiece tokenizer, and llama.cpp's only WordPiece tokenizer (BERT's) lowercases every input, " +
        "so token ids would differ",
    );
  if (model?.type !== "BPE")
    throw refuse(`its model type is ${JSON.stringify(model?.type)}; cosmic writes byte-level BPE`);
  const merges = Array.isArray(model.merges) ? model.merges.map(mergeText) : [];
  if (model.byte_fallback === true) return { ...sentencePiece(tj, merges, ids, refuse), ...common(ids, chatTemplate) };
  const pre = preTokenizerName(tj.pre_tokenizer, merges.length > 0);
  if (!pre)
    throw refuse(
      "its pre-tokenizer splits text in a way cosmic does not know llama.cpp's name for (llama-bpe, qwen2, gpt-2)",
    );
  const tokens = new Array<string | undefined>(ids.vocabSize);
  const types = new Int32Array(ids.vocabSize).fill(TOKEN_TYPE.normal);
  for (const [t, id] of Object.entries((model.vocab ?? {}) as Record<string, number>))
    if (id < ids.vocabSize) tokens[id] = t;
  for (const a of (tj.added_tokens ?? []) as Json[]) {
    const id = a.id as number;
    if (id >= ids.vocabSize)
      throw refuse(`added token ${JSON.stringify(a.content)} has id ${id}, beyond the model's ${ids.vocabSize} rows`);
    tokens[id] = a.content as string;
    types[id] = a.special === true ? TOKEN_TYPE.control : TOKEN_TYPE.userDefined;
  }
  // Rows the tokenizer never produces (the model's vocabulary is padded): placeholders, as
  // llama.cpp's converter writes.
  fillPlaceholders(tokens, types);
  return {
    "tokenizer.ggml.model": { type: "string", value: "gpt2" },
    "tokenizer.ggml.pre": { type: "string", value: pre },
    "tokenizer.ggml.tokens": { type: "string[]", value: tokens as string[] },
    "tokenizer.ggml.token_type": { type: "int32[]", value: types },
    "tokenizer.ggml.merges": { type: "string[]", value: merges },
    ...common(ids, chatTemplate),
  };
}

/** The keys every vocabulary has: special ids, the chat template. */
function common(ids: VocabIds, chatTemplate: string): Record<string, GgufValue> {
  if (ids.eosTokenIds.length === 0) throw new CosmicError("the model has no EOS token id; llama.cpp needs one");
  const kv: Record<string, GgufValue> = {
    "tokenizer.ggml.eos_token_id": { type: "uint32", value: ids.eosTokenIds[0] },
    // cosmic's prompts carry the BOS in the chat template's text; llama.cpp must not add another.
    "tokenizer.ggml.add_bos_token": { type: "bool", value: false },
    "tokenizer.ggml.add_eos_token": { type: "bool", value: false },
    "tokenizer.chat_template": { type: "string", value: chatTemplate },
  };
  if (ids.bosTokenId !== null) kv["tokenizer.ggml.bos_token_id"] = { type: "uint32", value: ids.bosTokenId };
  if (ids.padTokenId !== null) kv["tokenizer.ggml.padding_token_id"] = { type: "uint32", value: ids.padTokenId };
  return kv;
}

/**
 * SentencePiece-style BPE (byte fallback, "▁" for spaces: Llama 2, Mistral, Gemma) as llama.cpp's
 * "llama" vocabulary. llama.cpp merges the adjacent pair whose merged piece scores highest; HF
 * merges the pair of lowest merge rank. Scoring each piece −(rank of the first merge that makes
 * it) gives the same order, provided every multi-character piece is made by a merge (checked).
 * The normalizer must be the plain SentencePiece one: spaces → "▁", with or without a "▁" prefix.
 */
function sentencePiece(
  tj: Json,
  merges: string[],
  ids: VocabIds,
  refuse: (why: string) => CosmicError,
): Record<string, GgufValue> {
  const model = tj.model as Json;
  const prefix = spaceHandling(tj.normalizer as Json | null);
  if (prefix === null)
    throw refuse('its normalizer is not SentencePiece\'s plain one (spaces → "▁", optionally a "▁" prefix)');
  if (tj.pre_tokenizer && !isNoOpSplit(tj.pre_tokenizer as Json))
    throw refuse("it has a pre-tokenizer, which llama.cpp's SentencePiece vocabulary does not apply");
  const rank = new Map<string, number>();
  merges.forEach((m, i) => {
    const piece = m.replace(" ", "");
    if (!rank.has(piece)) rank.set(piece, i);
  });
  const n = ids.vocabSize;
  const tokens = new Array<string | undefined>(n);
  const scores = new Float32Array(n);
  const types = new Int32Array(n).fill(TOKEN_TYPE.normal);
  const added = new Map(((tj.added_tokens ?? []) as Json[]).map((a) => [a.id as number, a]));
  for (const [t, id] of Object.entries((model.vocab ?? {}) as Record<string, number>)) {
    if (id >= n) continue;
    tokens[id] = t;
    if (/^<0x[0-9A-F]{2}>$/.test(t)) types[id] = TOKEN_TYPE.byte;
    else if (t === model.unk_token) types[id] = TOKEN_TYPE.unknown;
    else if ([...t].length > 1 && !added.has(id)) {
      const r = rank.get(t);
      if (r === undefined)
        throw refuse(`the piece ${JSON.stringify(t)} is made by no merge, so llama.cpp would merge differently`);
      scores[id] = -r;
    }
  }
  for (const [id, a] of added) {
    if (id >= n) throw refuse(`added token ${JSON.stringify(a.content)} has id ${id}, beyond the model's ${n} rows`);
    tokens[id] = a.content as string;
    if (types[id] !== TOKEN_TYPE.unknown) types[id] = a.special === true ? TOKEN_TYPE.control : TOKEN_TYPE.userDefined;
  }
  // Rows the tokenizer never produces: placeholders, as for byte-level BPE.
  fillPlaceholders(tokens, types);
  const kv: Record<string, GgufValue> = {
    "tokenizer.ggml.model": { type: "string", value: "llama" },
    "tokenizer.ggml.tokens": { type: "string[]", value: tokens as string[] },
    "tokenizer.ggml.scores": { type: "float32[]", value: scores },
    "tokenizer.ggml.token_type": { type: "int32[]", value: types },
    "tokenizer.ggml.add_space_prefix": { type: "bool", value: prefix },
  };
  const unk = (model.vocab as Record<string, number>)[model.unk_token as string];
  if (typeof unk === "number") kv["tokenizer.ggml.unknown_token_id"] = { type: "uint32", value: unk };
  return kv;
}

/** true: a "▁" is prepended; false: not; null: not SentencePiece's normalizer. */
function spaceHandling(norm: Json | null): boolean | null {
  const steps = norm?.type === "Sequence" ? (norm.normalizers as Json[]) : norm ? [norm] : [];
  const replace = (x: Json | undefined) =>
    x?.type === "Replace" && (x.pattern as Json)?.String === " " && x.content === "\u2581";
  if (steps.length === 1 && replace(steps[0])) return false;
  if (steps.length === 2 && steps[0].type === "Prepend" && steps[0].prepend === "\u2581" && replace(steps[1]))
    return true;
  return null;
}

/** Gemma's split on " " runs after spaces became "▁", so it never splits. */
function isNoOpSplit(pre: Json): boolean {
  return pre.type === "Split" && (pre.pattern as Json)?.String === " ";
}
