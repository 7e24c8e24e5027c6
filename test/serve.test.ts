/**
 * `cosmic serve` through the official `openai` client, on the committed strong organism: the
 * endpoints, greedy output equal to `generate`, steering per row of one batch, errors in
 * OpenAI's shape, disconnects, a bounded load test, and the CLI's drain on Ctrl-C.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import OpenAI from "openai";
import { ModelFolder } from "../src/model/folder.js";
import { Engine } from "../src/engine/engine.js";
import { generate, replyTokens } from "../src/engine/generate.js";
import { meanActivations, at } from "../src/cosmic/activations.js";
import { readDirection, writeDirection } from "../src/formats/direction.js";
import { loadPrompts } from "../src/data/prompts.js";
import { ablation } from "../src/engine/interventions.js";
import { loadPreset, Steering } from "../src/serve/steering.js";
import { RunningServer, startServer } from "../src/serve/server.js";
import { isRefusal, REFUSAL_PHRASES } from "../src/eval/judge.js";
import { isOnTask } from "../src/eval/verdicts.js";
import { ROOT, scratchDir } from "./helpers.js";
import type { LoadRound } from "./serve-load.js";

const STRONG = path.join(ROOT, "organisms", "strong");
const KEY = "test-key";
const tmp = scratchDir("cosmic-serve-");
const DIRECTION = path.join(tmp, "refusal.safetensors");
const phrases = REFUSAL_PHRASES.jailbreakbench;

let folder: ModelFolder;
let engine: Engine;
let server: RunningServer;
let client: OpenAI;
const harmful = loadPrompts(path.join(STRONG, "prompts", "harmful_test.json")).slice(0, 8);
const tasks = loadPrompts(path.join(STRONG, "prompts", "harmful_test.json")).map((r) => r.task!);

/** Extra body fields (steering, ignore_eos): the SDK sends unknown keys as they are. */
type Extra = Record<string, unknown>;
const chat = (body: Extra) =>
  client.chat.completions.create(body as unknown as OpenAI.ChatCompletionCreateParamsNonStreaming);

before(async () => {
  folder = ModelFolder.open(STRONG);
  engine = await Engine.load(folder);
  // The direction COSMIC selects on this organism (`cosmic demo`: EOI position −4, layer 5),
  // computed here as the method does: difference of train-set means.
  const enc = (f: string) =>
    loadPrompts(path.join(STRONG, "prompts", f)).map((r) =>
      folder.tokenizer.encode(folder.tokenizer.formatPrompt(r.instruction)),
    );
  const P = folder.tokenizer.eoiTokens().ids.length;
  const pos = await meanActivations(engine, enc("harmful_train.json"), P, 32);
  const neg = await meanActivations(engine, enc("harmless_train.json"), P, 32);
  const L = engine.numLayers;
  const d = engine.spec.hiddenSize;
  const r = Float32Array.from(at(pos.residPre, P - 4, 5, L, d), (x, i) => x - at(neg.residPre, P - 4, 5, L, d)[i]);
  writeDirection(DIRECTION, r, Float32Array.from(at(neg.residPre, P - 4, 5, L, d)), { mode: "linear", layer: "5" });
  const steering = new Steering(folder, [loadPreset(`refusal=${DIRECTION}`, folder)]);
  server = await startServer(engine, folder, steering, {
    host: "127.0.0.1",
    port: 0,
    apiKey: KEY,
    maxBatch: 16,
    maxQueue: 64,
    ctx: folder.spec.maxPositionEmbeddings,
  });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0 });
});

after(async () => {
  await server?.close();
  await engine?.release();
});

test("serve: /v1/models lists the model and a steering alias per intervention", async () => {
  const ids = (await client.models.list()).data.map((m) => m.id);
  assert.deepEqual(ids, [
    "strong",
    "strong+ablate:refusal",
    "strong+actadd:refusal",
    "strong+ace-ablate:refusal",
    "strong+ace-actadd:refusal",
  ]);
  const h = await (await fetch(`${server.url}/health`)).json();
  assert.equal(h.status, "ok");
});

test("serve: greedy replies of 8 concurrent requests equal generate's, token for token", async () => {
  const ids = harmful.map((r) => folder.tokenizer.encode(folder.tokenizer.formatPrompt(r.instruction)));
  const iv = ablation(readDirection(DIRECTION).direction, engine.numLayers);
  const eos = new Set(folder.eosTokenIds);
  for (const steered of [false, true]) {
    const ref = await generate(engine, ids, { maxNewTokens: 32, intervention: steered ? iv : undefined });
    const want = ref.map((g) => folder.tokenizer.decode(replyTokens(g, eos), true));
    const got = await Promise.all(
      harmful.map((r) =>
        chat({
          model: steered ? "strong+ablate:refusal" : "strong",
          messages: [{ role: "user", content: r.instruction }],
          temperature: 0,
          max_tokens: 32,
        }),
      ),
    );
    assert.deepEqual(
      got.map((c) => c.choices[0].message.content),
      want,
    );
    // They ran as one batch, joined as they came.
    assert.ok(Math.max(...got.map((c) => (c as unknown as { cosmic: { batch_rows: number } }).cosmic.batch_rows)) >= 4);
    got.forEach((c, i) => assert.equal(c.usage!.completion_tokens, replyTokens(ref[i], eos).length));
  }
});

test("serve: in one batch, the ablated request answers on task and the plain one refuses", async () => {
  const r = harmful[0];
  const messages = [{ role: "user", content: r.instruction }];
  const [plain, viaField, viaAlias] = await Promise.all([
    chat({ model: "strong", messages, temperature: 0, max_tokens: 32 }),
    chat({
      model: "strong",
      messages,
      temperature: 0,
      max_tokens: 32,
      steering: { direction: "refusal", intervention: "ablate" },
    }),
    chat({ model: "strong+ablate:refusal", messages, temperature: 0, max_tokens: 32 }),
  ]);
  const text = (c: OpenAI.ChatCompletion) => c.choices[0].message.content ?? "";
  assert.ok(isRefusal(text(plain), phrases), text(plain));
  assert.ok(isOnTask(text(viaField), r.task!, tasks, phrases), text(viaField));
  assert.equal(text(viaAlias), text(viaField));
  for (const c of [plain, viaField, viaAlias])
    assert.ok((c as unknown as { cosmic: { batch_rows: number } }).cosmic.batch_rows >= 2, "the three ran together");
});

test(
  "serve: streaming (chat and completions) gives the same text as a whole reply, then " + "usage and [DONE]",
  async () => {
    const messages = [{ role: "user" as const, content: harmful[1].instruction }];
    const whole = await chat({ model: "strong+ablate:refusal", messages, temperature: 0, max_tokens: 24 });
    const stream = await client.chat.completions.create({
      model: "strong+ablate:refusal",
      messages,
      temperature: 0,
      max_tokens: 24,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
      usage = chunk.usage ?? usage;
    }
    assert.equal(text, whole.choices[0].message.content);
    assert.equal(finish, whole.choices[0].finish_reason);
    assert.deepEqual(usage, whole.usage);

    // Raw completions: the rendered prompt itself, so the same reply.
    const prompt = folder.tokenizer.formatPrompt(harmful[1].instruction);
    const raw = await client.completions.create({
      model: "strong+ablate:refusal",
      prompt,
      temperature: 0,
      max_tokens: 24,
    });
    assert.equal(raw.choices[0].text, whole.choices[0].message.content);
    let streamed = "";
    for await (const c of await client.completions.create({
      model: "strong+ablate:refusal",
      prompt,
      temperature: 0,
      max_tokens: 24,
      stream: true,
    }))
      streamed += c.choices[0]?.text ?? "";
    assert.equal(streamed, raw.choices[0].text);

    // A stop string ends the reply before it, streamed or not.
    const cut = await chat({
      model: "strong+ablate:refusal",
      messages,
      temperature: 0,
      max_tokens: 24,
      stop: [" first"],
    });
    const full = whole.choices[0].message.content!;
    assert.ok(full.includes(" first"), full);
    assert.equal(cut.choices[0].message.content, full.slice(0, full.indexOf(" first")));
    assert.equal(cut.choices[0].finish_reason, "stop");
  },
);

test("serve: sampling is seeded per request", async () => {
  const body = {
    model: "strong",
    messages: [{ role: "user", content: harmful[2].instruction }],
    temperature: 1.5,
    top_p: 0.9,
    max_tokens: 24,
  };
  const a = await chat({ ...body, seed: 7 });
  const b = await chat({ ...body, seed: 7 });
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
  assert.equal((a as unknown as { cosmic: { seed: number } }).cosmic.seed, 7);
});

async function raw(pathname: string, init: RequestInit & { body?: string } = {}) {
  const res = await fetch(`${server.url}${pathname}`, {
    method: "POST",
    ...init,
    headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json", ...(init.headers ?? {}) },
  });
  return {
    status: res.status,
    body: (await res.json()) as { error: { message: string; type: string; param: string | null; code: string | null } },
  };
}

const OK_CHAT = { model: "strong", messages: [{ role: "user", content: "hi" }] };
const chatWith = (extra: object) => ({ body: JSON.stringify({ ...OK_CHAT, ...extra }) });
const CHAT = "/v1/chat/completions";
/** path, request, status, message pattern, param */
const ERROR_CASES: [string, RequestInit & { body?: string }, number, RegExp, string | null][] = [
  [CHAT, { body: "{not json" }, 400, /not valid JSON/, null],
  [CHAT, chatWith({ max_tokens: "ten" }), 400, /"max_tokens" must be an integer/, "max_tokens"],
  [CHAT, chatWith({ messages: [{ role: "tool", content: "x" }] }), 400, /role/, "messages[0].role"],
  [CHAT, chatWith({ n: 2 }), 400, /not supported/, "n"],
  [CHAT, chatWith({ model: "gpt-4" }), 404, /does not exist/, "model"],
  [CHAT, chatWith({ steering: { direction: "nope" } }), 404, /no direction named "nope"/, "steering.direction"],
  [CHAT, chatWith({ steering: { direction: "refusal", intervention: "ace-ablate" } }), 200, /./, null],
  [
    CHAT,
    chatWith({ steering: { direction: "refusal", intervention: "scramble" } }),
    400,
    /must be one of/,
    "steering.intervention",
  ],
  [CHAT, chatWith({ max_tokens: 100000 }), 400, /context of 256 tokens/, "max_tokens"],
  [
    "/v1/completions",
    { body: JSON.stringify({ model: "strong", prompt: "word ".repeat(400) }) },
    400,
    /context/,
    "prompt",
  ],
  [CHAT, chatWith({ pad: "x".repeat(1_100_000) }), 413, /limit/, null],
  [CHAT, { body: JSON.stringify(OK_CHAT), headers: { authorization: "Bearer wrong" } }, 401, /API key/, null],
  ["/v1/embeddings", { body: JSON.stringify(OK_CHAT) }, 404, /no endpoint/, null],
  [CHAT, { method: "GET" }, 405, /takes POST/, null],
];

test("serve: mistakes get OpenAI error objects with the right status", async () => {
  const ok = OK_CHAT;
  const cases = ERROR_CASES;
  for (const [p, init, status, pattern, param] of cases) {
    const r = await raw(p, init);
    assert.equal(r.status, status, `${p} ${init.body?.slice(0, 80)}: ${JSON.stringify(r.body)}`);
    if (status === 200) continue;
    assert.match(r.body.error.message, pattern);
    assert.equal(r.body.error.param, param);
    assert.equal(typeof r.body.error.type, "string");
  }
  const ctx = await raw("/v1/chat/completions", { body: JSON.stringify({ ...ok, max_tokens: 100000 }) });
  assert.equal(ctx.body.error.code, "context_length_exceeded");
  // The SDK raises its typed errors from these.
  await assert.rejects(chat({ ...ok, model: "nope" }), (e: unknown) => e instanceof OpenAI.NotFoundError);
  await assert.rejects(
    new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "wrong", maxRetries: 0 }).models.list(),
    (e: unknown) => e instanceof OpenAI.AuthenticationError,
  );
});

test("serve: more waiting requests than --max-queue get 429", async () => {
  const small = await startServer(engine, folder, new Steering(folder, []), {
    host: "127.0.0.1",
    port: 0,
    maxBatch: 1,
    maxQueue: 1,
    ctx: 256,
  });
  try {
    const c = new OpenAI({ baseURL: `${small.url}/v1`, apiKey: "none", maxRetries: 0 });
    const all = await Promise.allSettled(
      Array.from({ length: 6 }, () =>
        c.chat.completions.create({
          model: "strong",
          messages: [{ role: "user", content: "hi" }],
          max_tokens: 16,
          temperature: 0,
        }),
      ),
    );
    const limited = all.filter((r) => r.status === "rejected" && r.reason instanceof OpenAI.RateLimitError).length;
    const done = all.filter((r) => r.status === "fulfilled").length;
    assert.ok(limited >= 1 && done >= 1 && limited + done === 6, JSON.stringify(all.map((r) => r.status)));
  } finally {
    await small.close();
  }
});

test("serve: a client that disconnects mid-stream frees its row", async () => {
  const ac = new AbortController();
  const stream = await client.chat.completions.create(
    {
      model: "strong",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 240,
      stream: true,
      ignore_eos: true,
    } as OpenAI.ChatCompletionCreateParamsStreaming,
    { signal: ac.signal },
  );
  let chunks = 0;
  // The SDK ends the iteration quietly when its request is aborted.
  try {
    for await (const _ of stream) if (++chunks === 3) ac.abort();
  } catch (e) {
    assert.ok(e instanceof OpenAI.APIUserAbortError, String(e));
  }
  assert.equal(chunks, 3);
  // At the next step (a few ms here); polled, so that a loaded machine is not a failure.
  for (let i = 0; i < 200 && server.batcher.running > 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(server.batcher.running, 0);
  assert.equal(server.batcher.waiting, 0);
});

test("serve: 2 rounds of 16 clients × 25 requests: no errors, no memory growth", async (t) => {
  // The rounds run in a child process (test/serve-load.ts) whose malloc returns every block of
  // 128 KiB or more to the system when it is freed (MALLOC_MMAP_THRESHOLD_). Under glibc's default
  // the threshold grows with the first large free, large blocks are kept in the heap, and RSS after
  // a round moved by −7 % to +16 % from the round before, with thread timing and no leak (measured
  // in this test, 5 rounds each: 203 → 203 → 189 → 187 → 206 MiB; 183 → 213 → 217 → 216 → 217). With the
  // fixed threshold it moved by ≤ 1 MiB (151 → 150 → 151 → 151 → 151), so RSS shows what is
  // live. `cosmic serve` itself keeps glibc's default: the fixed threshold cost a fifth of the
  // 16-client throughput in the serve bench (58.5 → 46.0 tokens/s, Qwen2.5-0.5B shape).
  // Two rounds warm up what is allocated once (onnxruntime's first run of each batch shape, each
  // steering kind's intervention); the two rounds after them are compared.
  const child = spawn(
    process.execPath,
    [path.join(ROOT, "dist", "test", "serve-load.js"), STRONG, DIRECTION, "0", "3", "1", "2"],
    // Four rounds take ~25 s here; a server that stops answering fails the test instead of hanging it.
    { env: { ...process.env, MALLOC_MMAP_THRESHOLD_: "131072" }, timeout: 300_000 },
  );
  let out = "";
  let err = "";
  child.stdout.on("data", (c) => (out += c));
  child.stderr.on("data", (c) => (err += c));
  const code = await new Promise((r) => child.on("exit", (c, signal) => r(c ?? signal)));
  assert.equal(code, 0, `load rounds ended with ${code}: ${err}`);
  const rounds = (JSON.parse(out) as LoadRound[]).slice(2);
  for (const r of rounds) {
    assert.deepEqual(r.errors, []);
    assert.equal(r.aborted + r.done, 400);
    assert.ok(r.aborted > 40, `${r.aborted} disconnects`);
    assert.equal(r.busy, 0);
  }
  const mib = (x: number) => (x / 2 ** 20).toFixed(1);
  const line = `after rounds 1 and 2: RSS ${rounds.map((r) => mib(r.rss)).join(" → ")} MiB, JS heap ${rounds.map((r) => mib(r.heapUsed)).join(" → ")} MiB`;
  t.diagnostic(line);
  assert.ok(Math.abs(rounds[1].rss - rounds[0].rss) / rounds[0].rss <= 0.05, line);
  // The JS heap too (15–16 MiB here): a leak of a few kB per request shows there, not in RSS.
  assert.ok(Math.abs(rounds[1].heapUsed - rounds[0].heapUsed) / rounds[0].heapUsed <= 0.05, line);
});

test("serve CLI: Ctrl-C lets an in-flight stream finish, then exits 0; a bad --direction is one line", async () => {
  const serve = (...args: string[]) =>
    spawn(process.execPath, [path.join(ROOT, "bin", "cosmic.js"), "serve", "--model", STRONG, ...args]);
  const bad = serve("--direction", "refusal");
  let badErr = "";
  bad.stderr.on("data", (c) => (badErr += c));
  assert.equal(await new Promise((r) => bad.on("exit", r)), 2);
  assert.match(badErr.trim(), /^cosmic: --direction must be NAME=FILE/);
  assert.equal(badErr.trim().split("\n").length, 1);

  const p = serve("--port", "0", "--quiet");
  let err = "";
  const url = await new Promise<string>((resolve, reject) => {
    p.stderr.on("data", (c) => {
      err += c;
      const m = /listening on (\S+)\/v1/.exec(err);
      if (m) resolve(m[1]);
    });
    p.on("exit", () => reject(new Error(err)));
  });
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "strong",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 120,
      ignore_eos: true,
      stream: true,
    }),
  });
  const reader = res.body!.getReader();
  let text = new TextDecoder().decode((await reader.read()).value);
  p.kill("SIGINT");
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += new TextDecoder().decode(value);
  }
  assert.ok(text.trimEnd().endsWith("data: [DONE]"), text.slice(-200));
  assert.match(text, /"finish_reason":"length"/);
  assert.equal(await new Promise((r) => p.on("exit", r)), 0);
  assert.match(err, /draining/);
});
