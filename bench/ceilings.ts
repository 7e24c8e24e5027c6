/**
 * The ceilings the benches measure against, in the same process: a bare onnxruntime MatMul of a
 * given shape, and memory bandwidth as decode at batch 1 sees it.
 */
import * as ort from "onnxruntime-node";
import { GraphBuilder } from "../src/engine/onnx/builder.js";
import { sessionOptions } from "../src/engine/runtime.js";
import type { ModelSpec } from "../src/formats/config.js";
import { Rng } from "../src/util/random.js";

/** Bare onnxruntime MatMul [M, K] × [K, N] with the weight as an initializer (prepacked). */
export async function bareMatmul(M: number, K: number, N: number, device: string): Promise<number> {
  const g = new GraphBuilder("matmul");
  const x = g.input("x", [M, K]);
  const w = new Float32Array(K * N);
  const rng = new Rng(5);
  for (let i = 0; i < w.length; i++) w[i] = rng.next() - 0.5;
  g.output(g.matmul(x, g.weight("w", w, [K, N])), "y", [M, N]);
  const s = await ort.InferenceSession.create(g.encode(), {
    executionProviders: [device],
    graphOptimizationLevel: "all",
  });
  const xs = new ort.Tensor(
    "float32",
    Float32Array.from({ length: M * K }, () => rng.next() - 0.5),
    [M, K],
  );
  for (let i = 0; i < 3; i++) await s.run({ x: xs });
  let sec = Infinity;
  for (let i = 0; i < 10; i++) {
    const t0 = performance.now();
    await s.run({ x: xs });
    sec = Math.min(sec, (performance.now() - t0) / 1000);
  }
  await s.release();
  return (2 * M * K * N) / sec / 1e9;
}

/**
 * Memory bandwidth as decode at batch 1 sees it: a bare [1, 8192] × [8192, 8192] float32 MatMul
 * (256 MiB of weights, far over any cache), bytes read per second, best of 10.
 */
export async function bandwidth(device: string): Promise<number> {
  const n = 8192;
  const gflops = await bareMatmul(1, n, n, device);
  return ((gflops * 1e9) / (2 * n * n)) * 4 * n * n;
}

/**
 * One decode step's Linear layers and nothing else: every block's q/k/v, o, gate/up and down
 * products, then the head, chained through slices, each layer with its own random weights (so
 * the weights stream from memory as in a real step, which a bare MatMul reusing one matrix does
 * not), in two sessions (blocks; head) built with the engine's session options. Seconds of one
 * step at `rows` rows, best of 5. What a step spends beyond this (attention, norms, RoPE, hooks,
 * session calls, JavaScript) is all that could be saved at equal FLOPs.
 */
export async function linearStepSeconds(spec: ModelSpec, rows: number, device: string): Promise<number> {
  const d = spec.hiddenSize;
  const q = spec.numHeads * spec.headDim;
  const kv = spec.numKvHeads * spec.headDim;
  const I = spec.intermediateSize;
  const rng = new Rng(7);
  // Uniform on ±√(3/K): unit variance in, unit variance out, so the chain neither overflows nor
  // falls into denormals.
  const mat = (K: number, N: number): Float32Array => {
    const a = Math.sqrt(3 / K);
    const w = new Float32Array(K * N);
    for (let i = 0; i < w.length; i++) w[i] = (2 * rng.next() - 1) * a;
    return w;
  };
  const blocks = new GraphBuilder("linear_blocks");
  let x = blocks.input("x", [rows, d]);
  const first = (t: string, n: number) => blocks.slice(t, [0], [n], [1]);
  for (let l = 0; l < spec.numLayers; l++) {
    const qkv = blocks.matmul(x, blocks.weight(`qkv${l}`, mat(d, q + 2 * kv), [d, q + 2 * kv]));
    const o = blocks.matmul(first(qkv, q), blocks.weight(`o${l}`, mat(q, d), [q, d]));
    const gu = blocks.matmul(o, blocks.weight(`gu${l}`, mat(d, 2 * I), [d, 2 * I]));
    x = blocks.matmul(first(gu, I), blocks.weight(`down${l}`, mat(I, d), [I, d]));
  }
  blocks.output(x, "y", [rows, d]);
  const head = new GraphBuilder("linear_head");
  const hx = head.input("x", [rows, d]);
  head.output(head.matmul(hx, head.weight("w", mat(d, spec.vocabSize), [d, spec.vocabSize])), "y", [
    rows,
    spec.vocabSize,
  ]);
  const so = sessionOptions(device as "cpu", { arena: false });
  const sb = await ort.InferenceSession.create(blocks.encode(), so);
  const sh = await ort.InferenceSession.create(head.encode(), so);
  const xs = new ort.Tensor(
    "float32",
    Float32Array.from({ length: rows * d }, () => rng.next() - 0.5),
    [rows, d],
  );
  const step = async () => {
    const y = (await sb.run({ x: xs })).y;
    await sh.run({ x: y });
  };
  for (let i = 0; i < 2; i++) await step();
  let sec = Infinity;
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    await step();
    sec = Math.min(sec, (performance.now() - t0) / 1000);
  }
  await sb.release();
  await sh.release();
  return sec;
}
