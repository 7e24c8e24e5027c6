/**
 * Engine speed on one model folder, run in its own process so peak RSS is the engine's alone.
 * Prints one JSON line. Usage: node dist/bench/engine-bench.js MODEL_DIR [DEVICE] [WEIGHTS] [PREFILL_REPS=3]
 */
import { ModelFolder } from "../src/model/folder.js";
import { Engine } from "../src/engine/engine.js";
import { capture } from "../src/engine/forward.js";
import { generate } from "../src/engine/generate.js";
import { Rng } from "../src/util/random.js";
import { residentWeightBytes } from "../src/engine/memory.js";
import { bandwidth, bareMatmul } from "./ceilings.js";
import type { WeightFormat } from "../src/engine/quantize.js";

function randomTokens(rng: Rng, n: number, len: number, vocab: number): number[][] {
  return Array.from({ length: n }, () => Array.from({ length: len }, () => rng.int(vocab)));
}

async function main(): Promise<void> {
  const dir = process.argv[2];
  const device = (process.argv[3] ?? "cpu") as "cpu";
  const weights = (process.argv[4] ?? "f32") as WeightFormat;
  // Timed prefills (the best is kept): one for shapes where each takes minutes.
  const reps = Number(process.argv[5] ?? 3);
  const model = ModelFolder.open(dir);
  const s = model.spec;
  // The ceiling first, in a quiet process: best of 10 runs, same shapes as the prefill's MLP.
  const ceiling = await bareMatmul(32 * 64, s.hiddenSize, s.intermediateSize, device);
  const ceilingPerCall = await bareMatmul(256, s.hiddenSize, s.intermediateSize, device);
  const rssBefore = process.memoryUsage().rss;
  const bytesPerSecond = await bandwidth(device);
  const engine = await Engine.load(model, { device, weights });
  const rssAfterBuild = process.memoryUsage().rss;
  const rng = new Rng(99);
  const B = 32;
  const T = 64;
  const prompts = randomTokens(rng, B, T, s.vocabSize);
  await capture(
    engine,
    prompts.slice(0, 2).map((p) => p.slice(0, 8)),
    { logits: true },
  ); // warm-up
  let best = Infinity;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await capture(engine, prompts, { logits: true, batchSize: B });
    best = Math.min(best, (performance.now() - t0) / 1000);
  }
  const q = s.numHeads * s.headDim;
  const kv = s.numKvHeads * s.headDim;
  const blockParams = s.hiddenSize * (q + 2 * kv) + q * s.hiddenSize + 3 * s.hiddenSize * s.intermediateSize;
  const attn = 2 * 2 * B * s.numHeads * T * T * s.headDim; // QKᵀ and PV (full square, as computed)
  const prefillFlops = s.numLayers * (2 * blockParams * B * T + attn) + 2 * B * s.hiddenSize * s.vocabSize;
  const prefillGflops = prefillFlops / best / 1e9;

  const decode = async (batch: number): Promise<number> => {
    const ps = prompts.slice(0, batch);
    const steps = 16;
    const t1 = performance.now();
    await generate(engine, ps, { maxNewTokens: 1, stopAtEos: false, batchSize: batch });
    const t2 = performance.now();
    await generate(engine, ps, { maxNewTokens: 1 + steps, stopAtEos: false, batchSize: batch });
    const t3 = performance.now();
    const decodeSec = (t3 - t2 - (t2 - t1)) / 1000;
    return (batch * steps) / decodeSec;
  };
  const decode1 = await decode(1);
  const decode32 = await decode(32);
  const fp32WeightBytes = model.checkpoint.parameterCount() * 4;
  const peakRss = process.resourceUsage().maxRSS * 1024;
  console.log(
    JSON.stringify({
      device,
      weights,
      residentWeightBytes: residentWeightBytes(s, weights),
      bandwidthBytesPerSecond: bytesPerSecond,
      params: model.checkpoint.parameterCount(),
      buildSeconds: engine.buildSeconds,
      prefillSeconds: best,
      prefillGflops,
      matmulCeilingGflops: ceiling,
      matmulPerCallGflops: ceilingPerCall,
      decode1,
      decode32,
      fp32WeightBytes,
      peakRss,
      rssBefore,
      rssAfterBuild,
    }),
  );
  await engine.release();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
