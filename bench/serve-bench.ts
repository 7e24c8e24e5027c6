/**
 * `cosmic serve` under load: one streaming client, then 16 concurrent ones, on one model folder
 * (the Qwen2.5-0.5B-shaped checkpoint in `npm run bench`). Each figure is printed beside the
 * bare engine decoding the same batch with generate(), the ceiling the server is measured
 * against. Prints one JSON line.
 * Usage: node dist/bench/serve-bench.js MODEL_DIR [TOKENIZER_DIR] (COSMIC_BENCH_CLIENTS, _TOKENS)
 * TOKENIZER_DIR: a real tokenizer for a random checkpoint (every sampled id then decodes to
 * text, so every token is one streamed chunk, as with a real model).
 */
import { ModelFolder } from "../src/model/folder.js";
import { Engine } from "../src/engine/engine.js";
import { generate } from "../src/engine/generate.js";
import { Steering } from "../src/serve/steering.js";
import { startServer } from "../src/serve/server.js";
import { Rng } from "../src/util/random.js";
import { withTokenizer } from "./checkpoint.js";

interface Timing {
  ttft: number;
  perToken: number;
  tokens: number;
}

/** One streaming completion; times from the request to the first and last content chunks. */
async function stream(url: string, prompt: number[], tokens: number): Promise<Timing> {
  const t0 = performance.now();
  const res = await fetch(`${url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "bench",
      prompt,
      max_tokens: tokens,
      temperature: 0,
      ignore_eos: true,
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let buf = "";
  let first = 0;
  let last = 0;
  let n = 0;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let at: number;
    while ((at = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, at);
      buf = buf.slice(at + 2);
      if (!ev.startsWith("data: ") || ev === "data: [DONE]") continue;
      const j = JSON.parse(ev.slice(6));
      if (j.usage) n = j.usage.completion_tokens;
      else if (j.choices?.[0]?.finish_reason === null || j.choices?.[0]?.text) {
        const now = performance.now();
        if (!first) first = now;
        last = now;
      }
    }
  }
  if (n !== tokens) throw new Error(`${n} tokens instead of ${tokens}`);
  return { ttft: (first - t0) / 1000, perToken: (last - first) / 1000 / Math.max(1, n - 1), tokens: n };
}

/** Decode steps timed for the bare engine's step figures. */
const STEP_SPAN = 48;

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};

/** p50 and p95 of the time to first token and of the per-token latency, as PREFIXTtftP50 … PREFIXTokP95. */
function percentiles(prefix: string, ts: Timing[]): Record<string, number> {
  const ttft = ts.map((t) => t.ttft);
  const tok = ts.map((t) => t.perToken);
  return {
    [`${prefix}TtftP50`]: quantile(ttft, 0.5),
    [`${prefix}TtftP95`]: quantile(ttft, 0.95),
    [`${prefix}TokP50`]: quantile(tok, 0.5),
    [`${prefix}TokP95`]: quantile(tok, 0.95),
  };
}

async function main(): Promise<void> {
  const [model, tokenizer] = process.argv.slice(2);
  const clients = Number(process.env.COSMIC_BENCH_CLIENTS ?? 16);
  const tokens = Number(process.env.COSMIC_BENCH_TOKENS ?? 32);
  const promptTokens = 32;
  const folder = ModelFolder.open(tokenizer ? withTokenizer(model, tokenizer) : model);
  const engine = await Engine.load(folder);
  const rng = new Rng(11);
  const maxId = Math.min(folder.spec.vocabSize, folder.tokenizer.maxTokenId + 1);
  const prompt = () => Array.from({ length: promptTokens }, () => rng.int(maxId));
  const server = await startServer(engine, folder, new Steering(folder, [], "bench"), {
    host: "127.0.0.1",
    port: 0,
    maxBatch: clients,
    maxQueue: clients * 4,
    ctx: Math.min(folder.spec.maxPositionEmbeddings, 4096),
  });
  // Warm-up, then one client alone.
  await stream(server.url, prompt(), 4);
  const single: Timing[] = [];
  const s0 = performance.now();
  for (let i = 0; i < 3; i++) single.push(await stream(server.url, prompt(), tokens));
  const singleTps = (3 * tokens) / ((performance.now() - s0) / 1000);
  // `clients` at once, each with 2 requests back to back.
  const many: Timing[] = [];
  const steps0 = server.batcher.steps;
  const rows0 = server.batcher.rowSteps;
  const m0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (let i = 0; i < 2; i++) many.push(await stream(server.url, prompt(), tokens));
    }),
  );
  const manyTps = (2 * clients * tokens) / ((performance.now() - m0) / 1000);
  const meanRows = (server.batcher.rowSteps - rows0) / (server.batcher.steps - steps0);
  await server.close();
  // Seconds for the bare engine to generate M tokens for each of `ps`, in one batch.
  const seconds = async (ps: number[][], M: number) => {
    const t0 = performance.now();
    await generate(engine, ps, { maxNewTokens: M, stopAtEos: false, batchSize: ps.length });
    return (performance.now() - t0) / 1000;
  };
  // The ceiling: the bare engine generating the same batch (1 and `clients` rows).
  const bare = async (B: number) => (B * tokens) / (await seconds(Array.from({ length: B }, prompt), tokens));
  const bare1 = await bare(1);
  const bareMany = await bare(clients);
  // A decode step alone (no prefill), from the difference of two reply lengths: what the ratio
  // approaches as replies grow long against their prompts.
  const step = async (B: number) => {
    const ps = Array.from({ length: B }, prompt);
    const short = await seconds(ps, 8);
    return ((await seconds(ps, 8 + STEP_SPAN)) - short) / STEP_SPAN;
  };
  const step1 = await step(1);
  const stepMany = await step(clients);
  await engine.release();
  console.log(
    JSON.stringify({
      clients,
      promptTokens,
      tokens,
      step1,
      stepMany,
      singleTps,
      manyTps,
      bare1,
      bareMany,
      meanRows,
      ...percentiles("single", single),
      ...percentiles("many", many),
    }),
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
