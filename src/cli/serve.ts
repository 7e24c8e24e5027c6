/** `cosmic serve`: the OpenAI-compatible server, with direction presets and a drain on Ctrl-C. */
import { CosmicError } from "../errors.js";
import { ModelFolder } from "../model/folder.js";
import { Device, preflight, WeightsChoice } from "../engine/engine.js";
import { loadEngine, progressMode } from "./common.js";
import { loadPreset, Steering } from "../serve/steering.js";
import { startServer } from "../serve/server.js";

export interface ServeFlags {
  model: string;
  direction: string[];
  modelName?: string;
  host: string;
  port: number;
  apiKey?: string;
  maxBatch: number;
  maxQueue: number;
  ctx?: number;
  device: Device;
  threads?: number;
  weights?: WeightsChoice;
  quiet?: boolean;
  jsonProgress?: boolean;
  allowOtherModel?: boolean;
  chatTemplate?: string;
}

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

export async function serveCommand(f: ServeFlags): Promise<void> {
  const say = (line: string) => process.stderr.write(`cosmic serve: ${line}\n`);
  const folder = ModelFolder.open(f.model, { chatTemplate: f.chatTemplate });
  const presets = f.direction.map((a) => loadPreset(a, folder, f.allowOtherModel));
  const steering = new Steering(folder, presets, f.modelName);
  const ctx = f.ctx ?? folder.spec.maxPositionEmbeddings;
  if (ctx > folder.spec.maxPositionEmbeddings)
    throw new CosmicError(`--ctx ${ctx} is over the model's context of ${folder.spec.maxPositionEmbeddings} tokens`);
  // An empty --api-key is most likely an unset shell variable ("$KEY"): serving without the key
  // the user meant to require would be the wrong way to fail.
  if (f.apiKey !== undefined && f.apiKey.trim() === "")
    throw new CosmicError("--api-key is empty (an unset variable?): give the key, or leave the flag out");
  const apiKey = f.apiKey ?? process.env.COSMIC_API_KEY;
  if (!LOOPBACK.has(f.host) && !apiKey)
    say(`warning: listening on ${f.host} without an API key: anyone who can reach it can use the model`);
  const weights = await preflight(folder, f.device, f.weights, say);
  const engine = await loadEngine(folder, f, progressMode(f), weights);
  const server = await startServer(engine, folder, steering, {
    host: f.host,
    port: f.port,
    apiKey,
    maxBatch: f.maxBatch,
    maxQueue: f.maxQueue,
    ctx,
    log: f.quiet ? undefined : say,
  }).catch(async (e: unknown) => {
    await engine.release();
    throw e;
  });
  say(`listening on ${server.url}/v1 — models: ${steering.modelIds().join(", ")}`);
  say(`batch up to ${f.maxBatch} rows, queue up to ${f.maxQueue}, context ${ctx} tokens; Ctrl-C drains and exits`);
  // Ctrl-C: finish what is running, take nothing new; a second Ctrl-C exits at once.
  process.removeAllListeners("SIGINT");
  process.removeAllListeners("SIGTERM");
  await new Promise<void>((resolve) => {
    const drain = () => {
      say(`draining ${server.batcher.running + server.batcher.waiting} request(s); Ctrl-C again to stop now`);
      const now = () => {
        say("interrupted");
        process.exit(130);
      };
      process.once("SIGINT", now);
      process.once("SIGTERM", now);
      void server.close().then(resolve);
    };
    process.once("SIGINT", drain);
    process.once("SIGTERM", drain);
  });
  await engine.release();
  say("stopped");
}
