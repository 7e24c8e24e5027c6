/**
 * `cosmic chat`: an interactive terminal chat that streams tokens and can switch the
 * intervention on and off, so a person can feel the difference.
 */
import readline from "node:readline";
import { CosmicError } from "../errors.js";
import { readDirection } from "../formats/direction.js";
import { ModelFolder } from "../model/folder.js";
import { Device, Engine, preflight, WeightsChoice } from "../engine/engine.js";
import { generate } from "../engine/generate.js";
import { Intervention } from "../engine/interventions.js";
import { interventionOf, InterventionKind } from "../engine/steer.js";
import { ChatMessage } from "../tokenize/chat.js";
import { checkDirectionFits } from "../model/direction-fit.js";

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
  weights?: WeightsChoice;
  quiet?: boolean;
  allowOtherModel?: boolean;
  chatTemplate?: string;
}

const HELP = "commands: /ablate  /add α  /off  /reset  /help  /quit";

type Current = { iv?: Intervention; label: string };

/** The chat's interventions from its direction: `make` for /ablate and /add, and the one it starts with. */
function chatInterventions(
  f: ChatFlags,
  folder: ModelFolder,
): { make: (kind: "ablate" | "add", alpha: number) => Intervention; initial: Current } {
  const dir = f.direction ? readDirection(f.direction, folder.spec.hiddenSize) : null;
  if (dir) checkDirectionFits(dir, folder, f.allowOtherModel);
  const layer = f.layer ?? dir?.layer ?? null;
  const affine = f.intervention?.startsWith("ace") ?? (dir?.metadata.mode === "affine" && dir.reference !== null);
  const make = (kind: "ablate" | "add", alpha: number): Intervention => {
    if (!dir) throw new CosmicError("this chat has no --direction: /ablate and /add need one");
    const k: InterventionKind =
      kind === "ablate" ? (affine ? "ace-ablate" : "ablate") : affine ? "ace-actadd" : "actadd";
    return interventionOf(dir, k, folder, layer, alpha);
  };
  const kind = f.intervention;
  if (kind === "ablate" || kind === "ace-ablate")
    return { make, initial: { iv: make("ablate", 0), label: "ablation" } };
  if (kind === "actadd" || kind === "ace-actadd")
    return { make, initial: { iv: make("add", f.coeff ?? 1), label: `addition α=${f.coeff ?? 1}` } };
  if (kind !== undefined)
    throw new CosmicError(`--intervention must be ablate, actadd, ace-ablate or ace-actadd, got "${kind}"`);
  return { make, initial: { label: "off" } };
}

/** What a chat carries between lines: the intervention in use and the conversation. */
interface ChatState {
  current: Current;
  history: ChatMessage[];
  readonly make: (kind: "ablate" | "add", alpha: number) => Intervention;
  /** a new conversation (the system message only) */
  readonly fresh: () => ChatMessage[];
}

/** A /command; returns "quit" to end the chat. */
function slashCommand(text: string, st: ChatState): "quit" | void {
  const say = (line: string) => process.stdout.write(line + "\n");
  if (text === "/quit" || text === "/exit") return "quit";
  if (text === "/help") say(HELP);
  else if (text === "/off") {
    st.current = { label: "off" };
    say("intervention off");
  } else if (text === "/reset") {
    st.history = st.fresh();
    say("conversation cleared");
  } else if (text === "/ablate") {
    st.current = { iv: st.make("ablate", 0), label: "ablation" };
    say("ablating the direction");
  } else if (text.startsWith("/add")) {
    const arg = text.split(/\s+/)[1];
    const a = arg === undefined ? 1 : Number(arg);
    if (!Number.isFinite(a)) say("usage: /add α (a number)");
    else {
      st.current = { iv: st.make("add", a), label: `addition α=${a}` };
      say(`adding the direction, α = ${a}`);
    }
  } else say(`unknown command ${text}; ${HELP}`);
}

export async function chatCommand(f: ChatFlags): Promise<void> {
  const folder = ModelFolder.open(f.model, { chatTemplate: f.chatTemplate });
  const { make, initial } = chatInterventions(f, folder);
  const fresh = (): ChatMessage[] => (f.system ? [{ role: "system", content: f.system }] : []);
  const st: ChatState = { current: initial, history: fresh(), make, fresh };
  const context = folder.spec.maxPositionEmbeddings;
  if (f.maxNewTokens >= context)
    throw new CosmicError(
      `--max-new-tokens ${f.maxNewTokens} leaves no room for a message in the model's context of ${context} tokens`,
    );
  const say = (line: string) => {
    if (!f.quiet) process.stderr.write(line + "\n");
  };
  const weights = await preflight(folder, f.device, f.weights, say);
  say(`loading ${folder.dir} (${f.device})…`);
  const engine = await Engine.load(folder, { device: f.device, threads: f.threads, weights });
  say(`${HELP}\nintervention: ${st.current.label}`);
  const eos = new Set(folder.eosTokenIds);
  const rl = readline.createInterface({ input: process.stdin, terminal: false });
  const prompt = () => process.stdout.write(`[${st.current.label}] you> `);

  /** One user message: fit the conversation to the context, stream the reply. */
  const reply = async (text: string): Promise<void> => {
    // The conversation must leave room for the reply: drop the oldest turns (the system
    // message stays), or refuse a message that alone does not fit.
    const fitted = fitToContext(
      [...st.history, { role: "user", content: text }],
      (h) => folder.tokenizer.encode(folder.tokenizer.renderMessages(h, true)).length,
      context - f.maxNewTokens,
    );
    if (!fitted) {
      process.stdout.write(
        `that message is too long: with ${f.maxNewTokens} new tokens it does not fit the model's context of ` +
          `${context} tokens (shorten it, or lower --max-new-tokens)\n`,
      );
      return;
    }
    if (fitted.dropped > 0)
      process.stdout.write(
        `(context full: dropped the ${fitted.dropped} oldest message${fitted.dropped === 1 ? "" : "s"} to fit ` +
          `${context} tokens)\n`,
      );
    const ids = folder.tokenizer.encode(folder.tokenizer.renderMessages(fitted.history, true));
    const toks: number[] = [];
    let shown = "";
    process.stdout.write("model> ");
    try {
      await generate(engine, [ids], {
        maxNewTokens: f.maxNewTokens,
        intervention: st.current.iv,
        temperature: f.temperature,
        seed: f.seed,
        onToken: (_, t) => {
          if (eos.has(t)) return;
          toks.push(t);
          const s = folder.tokenizer.decode(toks, true);
          // Print only what is new (a token may complete a multi-byte character).
          if (s.startsWith(shown)) process.stdout.write(s.slice(shown.length));
          shown = s;
        },
      });
    } finally {
      // The reply's line ends here, also when it fails (the error then starts a line of its own).
      process.stdout.write("\n");
    }
    st.history = [...fitted.history, { role: "assistant", content: shown }];
  };

  try {
    await readLines(rl, prompt, async (text) =>
      text.startsWith("/") ? slashCommand(text, st) : text ? reply(text) : undefined,
    );
  } finally {
    rl.close();
    await engine.release();
  }
}

/**
 * Lines as they come (typed or piped); each is handled before the next is read. A mistake is
 * one line and the chat goes on; "quit" ends it.
 */
async function readLines(
  rl: readline.Interface,
  prompt: () => void,
  handle: (text: string) => Promise<"quit" | void>,
): Promise<void> {
  prompt();
  for await (const line of rl) {
    try {
      if ((await handle(line.trim())) === "quit") return;
    } catch (e) {
      if (!(e instanceof CosmicError)) throw e;
      process.stdout.write(`${e.message}\n`);
    }
    prompt();
  }
}

/**
 * The longest suffix of the conversation (the system message kept, turns dropped oldest
 * first, never the last message) whose rendered prompt has at most `budget` tokens; null when
 * even the last message alone does not fit.
 */
export function fitToContext(
  history: ChatMessage[],
  tokens: (h: ChatMessage[]) => number,
  budget: number,
): { history: ChatMessage[]; dropped: number } | null {
  const system = history[0]?.role === "system" ? [history[0]] : [];
  const turns = history.slice(system.length);
  for (let start = 0; start < turns.length; start++) {
    // What is left starts with a message of the user's.
    if (start > 0 && turns[start].role !== "user") continue;
    const h = [...system, ...turns.slice(start)];
    if (tokens(h) <= budget) return { history: h, dropped: start };
  }
  return null;
}
