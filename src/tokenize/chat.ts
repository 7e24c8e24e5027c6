/**
 * The model's tokenizer (tokenizer.json via @huggingface/tokenizers) and chat template
 * (tokenizer_config.json's `chat_template` via @huggingface/jinja), and the end-of-instruction
 * (EOI) tokens derived from the template itself.
 */
import fs from "node:fs";
import path from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { Environment, Template } from "@huggingface/jinja";
import { CosmicError, fileError } from "../errors.js";
import { readJsonFile } from "../formats/files.js";
import { describeErrno } from "../formats/outputs.js";

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

/** What one chat-template render may use (a template is code from the model folder). */
export const TEMPLATE_BUDGET = { rangeElements: 1_000_000, milliseconds: 2000, outputChars: 4_000_000 };

/**
 * The library declares its own `range` global in every render and a render's variables cannot
 * redeclare it, so the budgeted range is swapped in where the globals are declared.
 */
let budgetedRange: ((start: number, stop?: number, step?: number) => number[]) | null = null;
const declare = Environment.prototype.set;
Environment.prototype.set = function (this: Environment, name: string, value: unknown) {
  return declare.call(this, name, name === "range" && budgetedRange ? budgetedRange : value);
};

/** Sentinel instruction for deriving EOI tokens: plain words that no template treats specially. */
const SENTINEL = "COSMIC_SENTINEL_INSTRUCTION";

/** The largest id in tokenizer.json's vocabulary and added tokens; every id must be a non-negative integer. */
function maxTokenId(tj: Json, file: string): number {
  let max = -1;
  const see = (id: unknown, what: string) => {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0)
      throw fileError(file, `${what} has id ${JSON.stringify(id)}: ids must be non-negative integers`);
    if (id > max) max = id;
  };
  const model = tj.model as Json;
  const vocab = model?.vocab;
  if (Array.isArray(vocab))
    max = vocab.length - 1; // Unigram: the id is the index
  else if (vocab && typeof vocab === "object")
    for (const [t, id] of Object.entries(vocab as Json)) see(id, `token ${JSON.stringify(t).slice(0, 40)}`);
  if (Array.isArray(tj.added_tokens))
    for (const a of tj.added_tokens as Json[])
      see(a?.id, `added token ${JSON.stringify(a?.content ?? null).slice(0, 40)}`);
  return max;
}

export class ChatTokenizer {
  readonly dir: string;
  private readonly tok: Tokenizer;
  private readonly template: Template;
  readonly templateSource: string;
  readonly bosToken: string | null;
  readonly eosToken: string | null;
  /** where the chat template came from (tokenizer_config.json, chat_template.jinja or .json, or --chat-template), for errors */
  private templateFile: string;
  private readonly tokenizerFile: string;
  /** the largest token id the tokenizer can produce (its vocabulary and added tokens) */
  readonly maxTokenId: number;

  /** `chatTemplateFile`: a Jinja chat template to use instead of the folder's (Llama-2-chat folders have none). */
  constructor(dir: string, chatTemplateFile?: string) {
    this.dir = dir;
    const tjPath = path.join(dir, "tokenizer.json");
    const tcPath = path.join(dir, "tokenizer_config.json");
    this.templateFile = tcPath;
    if (!fs.existsSync(tjPath)) throw fileError(tjPath, "missing: cosmic needs the model's tokenizer.json");
    if (!fs.existsSync(tcPath))
      throw fileError(tcPath, "missing: cosmic needs tokenizer_config.json (for the chat template)");
    const tj = readJsonFile<Json>(tjPath);
    const tc = readJsonFile<Json>(tcPath);
    if (!tj || typeof tj !== "object" || !tj.model)
      throw fileError(tjPath, 'is not a Hugging Face tokenizer (no "model")');
    this.tokenizerFile = tjPath;
    this.maxTokenId = maxTokenId(tj, tjPath);
    try {
      this.tok = new Tokenizer(tj, tc);
      // A broken normalizer, pre-tokenizer or post-processor only fails when it is used.
      this.tok.encode("Hello, world.", { add_special_tokens: true });
    } catch (e) {
      throw fileError(tjPath, `cannot be loaded (${String((e as Error)?.message ?? e).split("\n")[0]})`);
    }
    this.bosToken = tokenText(tc.bos_token);
    this.eosToken = tokenText(tc.eos_token);
    let src: unknown = tc.chat_template;
    const jinjaFile = path.join(dir, "chat_template.jinja");
    if (src === undefined && fs.existsSync(jinjaFile)) {
      src = fs.readFileSync(jinjaFile, "utf8");
      this.templateFile = jinjaFile;
    }
    // Multimodal repos (Gemma 3) keep the processor's template as {"chat_template": …}.
    const jsonFile = path.join(dir, "chat_template.json");
    if (src === undefined && fs.existsSync(jsonFile)) {
      src = readJsonFile<{ chat_template?: unknown }>(jsonFile)?.chat_template;
      if (typeof src !== "string") throw fileError(jsonFile, `has no "chat_template" string`);
      this.templateFile = jsonFile;
    }
    if (chatTemplateFile !== undefined) {
      try {
        src = fs.readFileSync(chatTemplateFile, "utf8");
      } catch (e) {
        throw fileError(chatTemplateFile, `cannot read (${describeErrno(e)})`);
      }
      this.templateFile = chatTemplateFile;
    }
    if (Array.isArray(src)) {
      const named = src as { name?: string; template?: string }[];
      src = (named.find((t) => t.name === "default") ?? named[0])?.template;
    }
    if (typeof src !== "string" || !src.trim()) {
      if (chatTemplateFile !== undefined) throw fileError(chatTemplateFile, "is empty: expected a Jinja chat template");
      throw fileError(
        tcPath,
        "has no chat_template: cosmic works on chat models and formats prompts with their template " +
          "(pass --chat-template FILE; data/chat-templates/ has Llama-2-chat's)",
      );
    }
    this.templateSource = src;
    try {
      this.template = new Template(src);
    } catch (e) {
      throw fileError(this.templateFile, `chat_template does not parse (${(e as Error).message})`);
    }
    // A template given on the command line that leaves the message out (a wrong file) would
    // give every prompt the same text: refuse it here, not only where EOI tokens are needed.
    if (chatTemplateFile !== undefined) this.eoiTokens();
  }

  encode(text: string): number[] {
    // The BOS comes from the template text, so the post-processor must not add another.
    try {
      return this.tok.encode(text, { add_special_tokens: false }).ids;
    } catch (e) {
      throw fileError(
        this.tokenizerFile,
        `the tokenizer failed on a prompt (${String((e as Error)?.message ?? e).split("\n")[0]})`,
      );
    }
  }

  decode(ids: number[], skipSpecial = false): string {
    // The library rejects an empty list; a reply that is only an EOS token decodes to "".
    if (ids.length === 0) return "";
    try {
      return this.tok.decode(ids, { skip_special_tokens: skipSpecial });
    } catch (e) {
      throw fileError(
        this.tokenizerFile,
        `the tokenizer failed to decode a reply (${String((e as Error)?.message ?? e).split("\n")[0]})`,
      );
    }
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  /**
   * Render a conversation with the model's chat template, within a budget: `range()` counts the
   * elements it makes and checks the clock (a template's only unbounded loops run over ranges),
   * and the output's size is bounded.
   */
  renderMessages(messages: ChatMessage[], addGenerationPrompt = true): string {
    const deadline = performance.now() + TEMPLATE_BUDGET.milliseconds;
    let made = 0;
    const over = (what: string) =>
      new CosmicError(
        `${this.templateFile}: the chat template exceeded its budget (${what}): cosmic renders templates with ` +
          `at most ${TEMPLATE_BUDGET.rangeElements.toLocaleString("en-US")} range() elements, ` +
          `${TEMPLATE_BUDGET.milliseconds} ms and ${TEMPLATE_BUDGET.outputChars.toLocaleString("en-US")} characters`,
      );
    const range = (start: number, stop?: number, step = 1): number[] => {
      if (stop === undefined) [start, stop] = [0, start];
      if (!Number.isFinite(start) || !Number.isFinite(stop) || !Number.isFinite(step))
        throw new Error("range() needs finite integers");
      if (step === 0) throw new Error("range() step must not be zero");
      const n = Math.max(0, Math.ceil((stop - start) / step));
      made += n;
      if (made > TEMPLATE_BUDGET.rangeElements) throw over("range() elements");
      if (performance.now() > deadline) throw over("time");
      return Array.from({ length: n }, (_, i) => start + i * step);
    };
    let out: string;
    budgetedRange = range;
    try {
      out = this.template.render({
        messages,
        add_generation_prompt: addGenerationPrompt,
        bos_token: this.bosToken ?? "",
        eos_token: this.eosToken ?? "",
      });
    } catch (e) {
      if (e instanceof CosmicError) throw e;
      const msg = e instanceof RangeError ? `${e.message} (runaway recursion or a huge string?)` : (e as Error).message;
      throw new CosmicError(
        `${this.templateFile}: the chat template rejected the conversation: ${String(msg).split("\n")[0]}`,
      );
    } finally {
      budgetedRange = null;
    }
    if (typeof out !== "string") throw new CosmicError(`${this.templateFile}: the chat template did not render text`);
    if (out.length > TEMPLATE_BUDGET.outputChars) throw over("output size");
    return out;
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
    if (at < 0)
      throw fileError(this.templateFile, "the chat template does not include the user's message in its output");
    const text = rendered.slice(at + SENTINEL.length);
    const ids = this.encode(text);
    if (ids.length === 0)
      throw fileError(
        this.templateFile,
        "the chat template puts nothing between the instruction and the reply, so there are no EOI tokens",
      );
    return { ids, text };
  }
}
