/**
 * OpenAI's response shapes for one generation: whole replies and streamed chunks, chat and
 * text completions, with usage and cosmic's own extension (seed, steering, batch rows).
 */
import { randomUUID } from "node:crypto";
import { FinishReason, RowStats } from "./batcher.js";
import { GenerationRequest } from "./requests.js";

export class ReplyShapes {
  private readonly g: GenerationRequest;
  private readonly id: string;
  private readonly object: string;

  constructor(g: GenerationRequest) {
    this.g = g;
    this.id = `${g.endpoint === "chat" ? "chatcmpl" : "cmpl"}-${randomUUID()}`;
    const whole = g.endpoint === "chat" ? "chat.completion" : "text_completion";
    this.object = g.stream && g.endpoint === "chat" ? `${whole}.chunk` : whole;
  }

  private head() {
    return { id: this.id, object: this.object, created: Math.floor(Date.now() / 1000), model: this.g.model };
  }

  private choice(content: string, finish: FinishReason | null, first = false) {
    const base = { index: 0, logprobs: null, finish_reason: finish };
    if (this.g.endpoint !== "chat") return { ...base, text: content };
    if (!this.g.stream) return { ...base, message: { role: "assistant", content } };
    return { ...base, delta: first ? { role: "assistant", content } : content ? { content } : {} };
  }

  private extension(stats: RowStats) {
    return { seed: this.g.seed, steering: this.g.steering, batch_rows: stats.maxRows };
  }

  private usage(stats: RowStats) {
    const { promptTokens: p, completionTokens: c } = stats;
    return { prompt_tokens: p, completion_tokens: c, total_tokens: p + c };
  }

  /** The first chunk of a streamed chat reply: the assistant's role. */
  opening() {
    return { ...this.head(), choices: [this.choice("", null, true)] };
  }

  /** A streamed piece of text. */
  piece(text: string) {
    return { ...this.head(), choices: [this.choice(text, null)] };
  }

  /** The last streamed chunks: the finish reason, then usage if asked for. */
  closing(reason: FinishReason, stats: RowStats): unknown[] {
    const out: unknown[] = [{ ...this.head(), choices: [this.choice("", reason)], cosmic: this.extension(stats) }];
    if (this.g.includeUsage) out.push({ ...this.head(), choices: [], usage: this.usage(stats) });
    return out;
  }

  /** A whole (not streamed) reply. */
  whole(content: string, reason: FinishReason, stats: RowStats) {
    return {
      ...this.head(),
      choices: [this.choice(content, reason)],
      usage: this.usage(stats),
      cosmic: this.extension(stats),
    };
  }
}
