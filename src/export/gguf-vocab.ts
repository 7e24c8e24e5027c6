/**
 * A Hugging Face tokenizer.json as llama.cpp's GGUF vocabulary. Byte-level BPE (GPT-2 style:
 * Llama 3, Qwen, the fixtures) maps exactly: tokens by id, merges, token types, and the
 * pre-tokenizer's split regex named as llama.cpp knows it. Other kinds are refused with the
 * reason: SentencePiece-style BPE (byte fallback, "▁") needs the scores only tokenizer.model
 * holds, and WordPiece (the organisms) meets llama.cpp's only WordPiece tokenizer, BERT's, which
 * lowercases every input.
 */
import path from "node:path";
import { CosmicError, fileError } from "../errors.js";
import { readJsonFile } from "../formats/files.js";
import type { GgufValue } from "./gguf.js";

type Json = Record<string, unknown>;

/** llama.cpp's token types (llama_token_type). */
const TOKEN_TYPE = { normal: 1, control: 3, userDefined: 4, unused: 5 } as const;

/** Split regexes llama.cpp implements, by the name its loader knows them (tokenizer.ggml.pre). */
const KNOWN_SPLITS: Record<string, string> = {
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+":
    "llama-bpe",
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+":
    "qwen2",
};

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
      return KNOWN_SPLITS[regex] ?? null;
  }
  return null;
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
      "it is a WordPiece tokenizer, and llama.cpp's only WordPiece tokenizer (BERT's) lowercases every input, so token ids would differ",
    );
  if (model?.type !== "BPE")
    throw refuse(`its model type is ${JSON.stringify(model?.type)}; cosmic writes byte-level BPE`);
  if (model.byte_fallback === true)
    throw refuse(
      "it is SentencePiece-style BPE (byte fallback); llama.cpp's SentencePiece vocabulary needs the token scores of tokenizer.model, which cosmic does not read yet",
    );
  const merges = Array.isArray(model.merges) ? model.merges.map(mergeText) : [];
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
  // Rows the tokenizer never produces (the model's vocabulary is padded): placeholders, as llama.cpp's converter writes.
  for (let i = 0; i < tokens.length; i++)
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = TOKEN_TYPE.unused;
    }
  if (ids.eosTokenIds.length === 0) throw new CosmicError(`${dir}: the model has no EOS token id; llama.cpp needs one`);
  const kv: Record<string, GgufValue> = {
    "tokenizer.ggml.model": { type: "string", value: "gpt2" },
    "tokenizer.ggml.pre": { type: "string", value: pre },
    "tokenizer.ggml.tokens": { type: "string[]", value: tokens as string[] },
    "tokenizer.ggml.token_type": { type: "int32[]", value: types },
    "tokenizer.ggml.merges": { type: "string[]", value: merges },
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
