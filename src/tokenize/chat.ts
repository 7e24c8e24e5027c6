/**
 * The model's tokenizer (tokenizer.json via @huggingface/tokenizers) and chat template
 * (tokenizer_config.json's `chat_template` via @huggingface/jinja), and the end-of-instruction
 * (EOI) tokens derived from the template itself.
 */
import fs from "node:fs";
import path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";
import { CosmicError, fileError } from "../errors.js";
import { readJsonFile } from "../formats/files.js";

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface EoiTokens {
  ids: number[];
  /** the template text between the instruction and the assistant's reply */
  text: string;
}

type Json = Record<string, unknown>;

function tokenText(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as Json).content === "string") return (v as Json).content as string;
  return null;
}

/** Sentinel instruction for deriving EOI tokens: plain words that no template treats specially. */
const SENTINEL = "COSMIC_SENTINEL_INSTRUCTION";

export class ChatTokenizer {
  readonly dir: string;
  private readonly tok: Tokenizer;
  private readonly template: Template;
  readonly templateSource: string;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  readonly specialIds: Set<number>;
  private readonly configFile: string;

  constructor(dir: string) {
    this.dir = dir;
    const tjPath = path.join(dir, "tokenizer.json");
    const tcPath = path.join(dir, "tokenizer_config.json");
    this.configFile = tcPath;
    if (!fs.existsSync(tjPath)) throw fileError(tjPath, "missing: cosmic needs the model's tokenizer.json");
    if (!fs.existsSync(tcPath)) throw fileError(tcPath, "missing: cosmic needs tokenizer_config.json (for the chat template)");
    const tj = readJsonFile<Json>(tjPath);
    const tc = readJsonFile<Json>(tcPath);
    if (!tj || typeof tj !== "object" || !tj.model) throw fileError(tjPath, "is not a Hugging Face tokenizer (no \"model\")");
    try {
      this.tok = new Tokenizer(tj, tc);
    } catch (e) {
      throw fileError(tjPath, `cannot be loaded (${(e as Error).message})`);
    }
    this.bosToken = tokenText(tc.bos_token);
    this.eosToken = tokenText(tc.eos_token);
    let src: unknown = tc.chat_template;
    const jinjaFile = path.join(dir, "chat_template.jinja");
    if (src === undefined && fs.existsSync(jinjaFile)) src = fs.readFileSync(jinjaFile, "utf8");
    if (Array.isArray(src)) {
      const named = src as { name?: string; template?: string }[];
      src = (named.find((t) => t.name === "default") ?? named[0])?.template;
    }
    if (typeof src !== "string" || !src.trim()) {
      throw fileError(tcPath, "has no chat_template: cosmic works on chat models and formats prompts with their template");
    }
    this.templateSource = src;
    try {
      this.template = new Template(src);
    } catch (e) {
      throw fileError(tcPath, `chat_template does not parse (${(e as Error).message})`);
    }
    this.specialIds = new Set<number>();
    for (const [id, t] of this.tok.get_added_tokens_decoder()) if ((t as { special?: boolean }).special) this.specialIds.add(id);
  }

  encode(text: string): number[] {
    // The BOS comes from the template text, so the post-processor must not add another.
    return this.tok.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: number[], skipSpecial = false): string {
    // The library rejects an empty list; a reply that is only an EOS token decodes to "".
    if (ids.length === 0) return "";
    return this.tok.decode(ids, { skip_special_tokens: skipSpecial });
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  /** Render a conversation with the model's chat template. */
  renderMessages(messages: ChatMessage[], addGenerationPrompt = true): string {
    try {
      return this.template.render({
        messages,
        add_generation_prompt: addGenerationPrompt,
        bos_token: this.bosToken ?? "",
        eos_token: this.eosToken ?? "",
      });
    } catch (e) {
      throw new CosmicError(`${this.configFile}: the chat template rejected the conversation: ${(e as Error).message}`);
    }
  }

  /** One user instruction (with an optional system message) formatted for generation. */
  formatPrompt(instruction: string, system?: string): string {
    const messages: ChatMessage[] = [];
    if (system !== undefined) messages.push({ role: "system", content: system });
    messages.push({ role: "user", content: instruction });
    return this.renderMessages(messages, true);
  }

  /**
   * The EOI tokens: render a sentinel instruction with the generation prompt and tokenize what
   * the template puts after it (as the reference does with its per-family template suffix).
   */
  eoiTokens(system?: string): EoiTokens {
    const rendered = this.formatPrompt(SENTINEL, system);
    const at = rendered.lastIndexOf(SENTINEL);
    if (at < 0) throw fileError(this.configFile, "the chat template does not include the user's message in its output");
    const text = rendered.slice(at + SENTINEL.length);
    const ids = this.encode(text);
    if (ids.length === 0) throw fileError(this.configFile, "the chat template puts nothing between the instruction and the reply, so there are no EOI tokens");
    return { ids, text };
  }
}
