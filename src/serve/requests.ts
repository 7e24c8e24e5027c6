/**
 * OpenAI request bodies → what the batcher runs. Every field is type-checked (a wrong type is a
 * 400 naming the field); parameters cosmic does not implement are refused rather than ignored,
 * except those a client may send with their neutral value (penalties 0, n 1, …).
 */
import { randomInt } from "node:crypto";
import { CosmicError } from "../errors.js";
import { Intervention } from "../engine/interventions.js";
import { ModelFolder } from "../model/folder.js";
import { ChatMessage } from "../tokenize/chat.js";
import { ApiError } from "./errors.js";
import { Steering, SteeringChoice } from "./steering.js";

export type Endpoint = "chat" | "completion";

export interface GenerationRequest {
  endpoint: Endpoint;
  /** the model string as the client sent it (echoed back) */
  model: string;
  prompt: number[];
  intervention?: Intervention;
  steering: SteeringChoice | null;
  maxTokens: number;
  temperature: number;
  topP: number;
  seed: number;
  stop: string[];
  stream: boolean;
  includeUsage: boolean;
  ignoreEos: boolean;
}

type Body = Record<string, unknown>;

const bad = (param: string, what: string) => new ApiError(400, `"${param}" ${what}`, { param });

function optNumber(b: Body, key: string, min: number, max: number, dflt: number, integer = false): number {
  const v = b[key];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "number" || !Number.isFinite(v) || (integer && !Number.isInteger(v)))
    throw bad(key, `must be ${integer ? "an integer" : "a number"}`);
  if (v < min || v > max) throw bad(key, `must be between ${min} and ${max}, got ${v}`);
  return v;
}

function optBool(b: Body, key: string): boolean {
  const v = b[key];
  if (v === undefined || v === null) return false;
  if (typeof v !== "boolean") throw bad(key, "must be true or false");
  return v;
}

function stopStrings(b: Body): string[] {
  const v = b.stop;
  if (v === undefined || v === null) return [];
  const list = typeof v === "string" ? [v] : v;
  if (!Array.isArray(list) || list.length > 4 || !list.every((s) => typeof s === "string" && s.length > 0))
    throw bad("stop", "must be a non-empty string or an array of at most 4 of them");
  return list as string[];
}

/** Parameters with no implementation here: refused unless neutral. */
function refuseUnsupported(b: Body): void {
  const no = (key: string, what: string) =>
    new ApiError(400, `"${key}" ${what} is not supported by cosmic serve`, { param: key });
  if (b.n !== undefined && b.n !== null && b.n !== 1) throw no("n", "other than 1");
  for (const key of ["presence_penalty", "frequency_penalty"])
    if (b[key] !== undefined && b[key] !== null && b[key] !== 0) throw no(key, "other than 0");
  if (b.logprobs !== undefined && b.logprobs !== null && b.logprobs !== false && b.logprobs !== 0)
    throw no("logprobs", "(log-probabilities)");
  for (const key of ["tools", "functions"])
    if (Array.isArray(b[key]) && (b[key] as unknown[]).length > 0) throw no(key, "(tool calls)");
  if (b.logit_bias && typeof b.logit_bias === "object" && Object.keys(b.logit_bias).length > 0)
    throw no("logit_bias", "");
  const rf = b.response_format as Body | undefined;
  if (rf && typeof rf === "object" && rf.type !== undefined && rf.type !== "text")
    throw no("response_format", `of type ${JSON.stringify(rf.type)}`);
}

function messagesOf(b: Body): ChatMessage[] {
  const v = b.messages;
  if (!Array.isArray(v) || v.length === 0) throw bad("messages", "must be a non-empty array");
  return v.map((m, i) => {
    const p = `messages[${i}]`;
    if (!m || typeof m !== "object") throw bad(p, "must be an object {role, content}");
    const { role, content } = m as Body;
    const r = role === "developer" ? "system" : role;
    if (r !== "system" && r !== "user" && r !== "assistant")
      throw bad(`${p}.role`, `must be system, developer, user or assistant, got ${JSON.stringify(role)}`);
    return { role: r, content: textOf(content, `${p}.content`) };
  });
}

/** A message's content: a string, or text parts [{type: "text", text}]. */
function textOf(content: unknown, p: string): string {
  if (typeof content === "string") return content;
  if (content === null || content === undefined) return "";
  if (Array.isArray(content))
    return content
      .map((part, j) => {
        const q = part as Body;
        if (!q || q.type !== "text" || typeof q.text !== "string")
          throw bad(`${p}[${j}]`, 'must be a text part {type: "text", text} (cosmic serves text models)');
        return q.text;
      })
      .join("");
  throw bad(p, "must be a string or an array of text parts");
}

function promptTokens(endpoint: Endpoint, b: Body, folder: ModelFolder): number[] {
  const tok = folder.tokenizer;
  try {
    if (endpoint === "chat") return tok.encode(tok.renderMessages(messagesOf(b), true));
    let p = b.prompt;
    if (Array.isArray(p) && p.length === 1 && typeof p[0] === "string") p = p[0];
    if (typeof p === "string") return tok.encode(p);
    if (Array.isArray(p) && p.length > 0 && p.every((t) => Number.isInteger(t) && t >= 0 && t < folder.spec.vocabSize))
      return p as number[];
    throw bad("prompt", `must be a string, one string in an array, or token ids below ${folder.spec.vocabSize}`);
  } catch (e) {
    // A chat template may refuse a conversation (e.g. a system message it does not take).
    if (e instanceof CosmicError)
      throw new ApiError(400, e.message, { param: endpoint === "chat" ? "messages" : "prompt" });
    throw e;
  }
}

function topP(b: Body): number {
  const p = optNumber(b, "top_p", 0, 1, 1);
  if (p === 0) throw bad("top_p", "must be greater than 0");
  return p;
}

export function parseRequest(
  endpoint: Endpoint,
  body: unknown,
  folder: ModelFolder,
  steering: Steering,
  ctx: number,
): GenerationRequest {
  if (!body || typeof body !== "object" || Array.isArray(body))
    throw new ApiError(400, "the body must be a JSON object");
  const b = body as Body;
  if (typeof b.model !== "string") throw bad("model", `must be a model name (${steering.modelId})`);
  const { intervention, choice } = steering.resolve(b.model, b.steering);
  refuseUnsupported(b);
  const prompt = promptTokens(endpoint, b, folder);
  if (prompt.length === 0) throw bad(endpoint === "chat" ? "messages" : "prompt", "has no tokens");
  const room = ctx - prompt.length;
  const key =
    b.max_completion_tokens !== undefined && b.max_completion_tokens !== null ? "max_completion_tokens" : "max_tokens";
  const asked = b[key];
  if (room < 1 || (typeof asked === "number" && asked > room))
    throw new ApiError(
      400,
      `the prompt has ${prompt.length} ` +
        `tokens${typeof asked === "number" ? ` and asks for ${asked} more` : ""}: over this server's context ` +
        `of ${ctx} tokens`,
      { param: room < 1 ? (endpoint === "chat" ? "messages" : "prompt") : key, code: "context_length_exceeded" },
    );
  const so = b.stream_options as Body | undefined | null;
  if (so !== undefined && so !== null && (typeof so !== "object" || Array.isArray(so)))
    throw bad("stream_options", "must be an object");
  return {
    endpoint,
    model: b.model,
    prompt,
    intervention,
    steering: choice,
    maxTokens: optNumber(b, key, 1, room, room, true),
    temperature: optNumber(b, "temperature", 0, 2, 1),
    topP: topP(b),
    seed: optNumber(b, "seed", Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, randomInt(2 ** 31), true),
    stop: stopStrings(b),
    stream: optBool(b, "stream"),
    includeUsage: so ? optBool(so, "include_usage") : false,
    ignoreEos: optBool(b, "ignore_eos"),
  };
}
