/**
 * `cosmic chat`: an interactive terminal chat that streams tokens and can switch the
 * intervention on and off, so a person can feel the difference.
 */
import readline from "node:readline";
import { CosmicError } from "../errors.js";
import { readDirection } from "../formats/direction.js";
import { ModelFolder } from "../model/folder.js";
import { Device, Engine, preflight } from "../engine/engine.js";
import { generate } from "../engine/generate.js";
import { Intervention } from "../engine/interventions.js";
import { interventionOf, InterventionKind } from "./common.js";
import { ChatMessage } from "../tokenize/chat.js";
import { checkDirectionFits } from "../export/abliterate.js";

export interface ChatFlags {
  model: string;
  direction?: string;
  intervention?: string;
  layer?: number;
  coeff?: number;
  system?: string;
  maxNewTokens: number;
  temperature: number;
  seed: number;
  device: Device;
  threads?: number;
  quiet?: boolean;
  allowOtherModel?: boolean;
}

const HELP = "commands: /ablate  /add α  /off  /reset  /help  /quit";

export async function chatCommand(f: ChatFlags): Promise<void> {
  const folder = ModelFolder.open(f.model);
  const dir = f.direction ? readDirection(f.direction, folder.spec.hiddenSize) : null;
  if (dir) checkDirectionFits(dir, folder, f.allowOtherModel);
  const layer = f.layer ?? dir?.layer ?? null;
  const affine = f.intervention?.startsWith("ace") ?? (dir?.metadata.mode === "affine" && dir.reference !== null);
  const make = (kind: "ablate" | "add", alpha: number): Intervention => {
    if (!dir) throw new CosmicError("this chat has no --direction: /ablate and /add need one");
    const k: InterventionKind = kind === "ablate" ? (affine ? "ace-ablate" : "ablate") : affine ? "ace-actadd" : "actadd";
    return interventionOf(dir, k, folder, layer, alpha);
  };
  let current: { iv?: Intervention; label: string } = { label: "off" };
  const kind = f.intervention;
  if (kind === "ablate" || kind === "ace-ablate") current = { iv: make("ablate", 0), label: "ablation" };
  else if (kind === "actadd" || kind === "ace-actadd") current = { iv: make("add", f.coeff ?? 1), label: `addition α=${f.coeff ?? 1}` };
  else if (kind !== undefined) throw new CosmicError(`--intervention must be ablate, actadd, ace-ablate or ace-actadd, got "${kind}"`);
  const say = (line: string) => { if (!f.quiet) process.stderr.write(line + "\n"); };
  await preflight(folder, f.device);
  say(`loading ${folder.dir} (${f.device})…`);
  const engine = await Engine.load(folder, { device: f.device, threads: f.threads });
  const context = folder.spec.maxPositionEmbeddings;
  if (f.maxNewTokens >= context) throw new CosmicError(`--max-new-tokens ${f.maxNewTokens} leaves no room for a message in the model's context of ${context} tokens`);
  say(`${HELP}\nintervention: ${current.label}`);
  let history: ChatMessage[] = f.system ? [{ role: "system", content: f.system }] : [];
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  const prompt = () => process.stdout.write(`[${current.label}] you> `);
  prompt();
  try {
    await chatLoop();
  } finally {
    rl.close();
    await engine.release();
  }

  async function chatLoop(): Promise<void> {
  // Lines are read as they come (typed or piped); each reply is finished before the next line.
  for await (const line of rl) {
    const text = line.trim();
    if (!text) { prompt(); continue; }
    try {
      if (text === "/quit" || text === "/exit") break;
      if (text === "/help") { process.stdout.write(HELP + "\n"); prompt(); continue; }
      if (text === "/off") { current = { label: "off" }; process.stdout.write("intervention off\n"); prompt(); continue; }
      if (text === "/reset") { history = f.system ? [{ role: "system", content: f.system }] : []; process.stdout.write("conversation cleared\n"); prompt(); continue; }
      if (text === "/ablate") { current = { iv: make("ablate", 0), label: "ablation" }; process.stdout.write("ablating the direction\n"); prompt(); continue; }
      if (text.startsWith("/add")) {
        const a = text.split(/\s+/)[1] === undefined ? 1 : Number(text.split(/\s+/)[1]);
        if (!Number.isFinite(a)) { process.stdout.write("usage: /add α (a number)\n"); prompt(); continue; }
        current = { iv: make("add", a), label: `addition α=${a}` };
        process.stdout.write(`adding the direction, α = ${a}\n`);
        prompt();
        continue;
      }
      if (text.startsWith("/")) { process.stdout.write(`unknown command ${text}; ${HELP}\n`); prompt(); continue; }
    } catch (e) {
      if (e instanceof CosmicError) { process.stdout.write(e.message + "\n"); prompt(); continue; }
      throw e;
    }
    history.push({ role: "user", content: text });
    // The conversation must leave room for the reply: drop the oldest turns (the system
    // message stays), or refuse a message that alone does not fit.
    const fitted = fitToContext(history, (h) => folder.tokenizer.encode(folder.tokenizer.renderMessages(h, true)).length, context - f.maxNewTokens);
    if (!fitted) {
      history.pop();
      process.stdout.write(`that message is too long: with ${f.maxNewTokens} new tokens it does not fit the model's context of ${context} tokens (shorten it, or lower --max-new-tokens)\n`);
      prompt();
      continue;
    }
    if (fitted.dropped > 0) process.stdout.write(`(context full: dropped the ${fitted.dropped} oldest message${fitted.dropped === 1 ? "" : "s"} to fit ${context} tokens)\n`);
    history = fitted.history;
    const ids = folder.tokenizer.encode(folder.tokenizer.renderMessages(history, true));
    const eos = new Set(folder.eosTokenIds);
    const toks: number[] = [];
    let shown = "";
    process.stdout.write("model> ");
    try {
      await generate(engine, [ids], {
      maxNewTokens: f.maxNewTokens, intervention: current.iv, temperature: f.temperature, seed: f.seed,
      onToken: (_, t) => {
        if (eos.has(t)) return;
        toks.push(t);
        const s = folder.tokenizer.decode(toks, true);
        // Print only what is new (a token may complete a multi-byte character).
        if (s.startsWith(shown)) process.stdout.write(s.slice(shown.length));
        shown = s;
      },
      });
    } catch (e) {
      if (!(e instanceof CosmicError)) throw e;
      history.pop();
      process.stdout.write(`\n${e.message}\n`);
      prompt();
      continue;
    }
    process.stdout.write("\n");
    history.push({ role: "assistant", content: shown });
    prompt();
  }
  }
}

/**
 * The longest suffix of the conversation (the system message kept, turns dropped oldest
 * first, never the last message) whose rendered prompt has at most `budget` tokens; null when
 * even the last message alone does not fit.
 */
export function fitToContext(history: ChatMessage[], tokens: (h: ChatMessage[]) => number, budget: number): { history: ChatMessage[]; dropped: number } | null {
  const system = history[0]?.role === "system" ? [history[0]] : [];
  const turns = history.slice(system.length);
  for (let drop = 0; drop < turns.length; drop++) {
    let rest = turns.slice(drop);
    // A conversation starts with the user's message.
    while (rest.length > 1 && rest[0].role !== "user") { rest = rest.slice(1); drop++; }
    const h = [...system, ...rest];
    if (tokens(h) <= budget) return { history: h, dropped: turns.length - rest.length };
  }
  return null;
}
