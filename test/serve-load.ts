/**
 * The serve load test's process (run by serve.test.ts as a child, not a test file itself): a
 * server on the strong organism with one direction preset, and 16 streaming clients × 25
 * requests per round, mixed steering, ~1 in 5 disconnecting mid-stream. Prints one JSON line:
 * per round, its errors and counts, and the memory measured after it, with the batcher idle.
 *
 * Usage: node dist/test/serve-load.js MODEL_DIR DIRECTION_FILE SEED…
 *
 * It runs apart so that its malloc can be set up for measuring: see serve.test.ts.
 */
import path from "node:path";
import OpenAI from "openai";
import { ModelFolder } from "../src/model/folder.js";
import { Engine } from "../src/engine/engine.js";
import { loadPrompts } from "../src/data/prompts.js";
import { releaseMemory } from "../src/engine/runtime.js";
import { loadPreset, Steering } from "../src/serve/steering.js";
import { startServer } from "../src/serve/server.js";
import { Rng } from "../src/util/random.js";

export interface LoadRound {
  seed: number;
  errors: string[];
  aborted: number;
  done: number;
  /** rows running and requests waiting once the round's clients are done */
  busy: number;
  rss: number;
  heapUsed: number;
}

const [model, direction, ...seeds] = process.argv.slice(2);
const folder = ModelFolder.open(model);
const engine = await Engine.load(folder);
const steering = new Steering(folder, [loadPreset(`refusal=${direction}`, folder)]);
const server = await startServer(engine, folder, steering, {
  host: "127.0.0.1",
  port: 0,
  apiKey: "load-key",
  maxBatch: 16,
  maxQueue: 64,
  ctx: folder.spec.maxPositionEmbeddings,
});
const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "load-key", maxRetries: 0 });
const harmful = loadPrompts(path.join(model, "prompts", "harmful_test.json")).slice(0, 8);
const models = ["strong", "strong+ablate:refusal", "strong+actadd:refusal:2", "strong+ace-ablate:refusal"];

async function round(seed: number): Promise<LoadRound> {
  const errors: string[] = [];
  let aborted = 0;
  let done = 0;
  await Promise.all(
    Array.from({ length: 16 }, async (_, c) => {
      // Each client its own generator: the same requests every time, whatever the timing.
      const rng = new Rng(seed * 100 + c);
      for (let i = 0; i < 25; i++) {
        const model = models[rng.int(models.length)];
        const messages = [{ role: "user" as const, content: harmful[rng.int(harmful.length)].instruction }];
        const disconnect = rng.next() < 0.2;
        try {
          if (disconnect) {
            const ac = new AbortController();
            const s = await client.chat.completions.create(
              { model, messages, max_tokens: 16, stream: true, seed: i },
              { signal: ac.signal },
            );
            try {
              for await (const _ of s) ac.abort();
            } catch (e) {
              if (!(e instanceof OpenAI.APIUserAbortError)) throw e;
            }
            aborted++;
          } else {
            const c = await client.chat.completions.create({
              model,
              messages,
              max_tokens: 16,
              temperature: 0.7,
              seed: i,
            });
            if (typeof c.choices[0].message.content !== "string") errors.push("no content");
            done++;
          }
        } catch (e) {
          errors.push(String(e));
        }
      }
    }),
  );
  // A disconnect frees its row at the next step: give the batcher up to 2 s.
  for (let i = 0; i < 200 && server.batcher.running + server.batcher.waiting > 0; i++)
    await new Promise((res) => setTimeout(res, 10));
  const busy = server.batcher.running + server.batcher.waiting;
  // Collect twice: onnxruntime's output tensors are freed by finalizers that run after a GC.
  releaseMemory();
  await new Promise((res) => setTimeout(res, 50));
  releaseMemory();
  const m = process.memoryUsage();
  return { seed, errors, aborted, done, busy, rss: m.rss, heapUsed: m.heapUsed };
}

const rounds: LoadRound[] = [];
for (const s of seeds) rounds.push(await round(Number(s)));
await server.close();
await engine.release();
process.stdout.write(JSON.stringify(rounds) + "\n");
