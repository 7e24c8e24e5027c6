/**
 * The ceilings the benches measure against, in the same process: a bare onnxruntime MatMul of a
 * given shape, and memory bandwidth as decode at batch 1 sees it.
 */
import * as ort from "onnxruntime-node";
import { GraphBuilder } from "../src/engine/onnx/builder.js";
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
