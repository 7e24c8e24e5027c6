/**
 * Everything that touches onnxruntime: execution providers, session options and creation,
 * tensors, and the memory policy. The engine and the organism trainer both go through here (as
 * transformers.js keeps its runtime in one backend module).
 */
import v8 from "node:v8";
import vm from "node:vm";
import * as ort from "onnxruntime-node";
import { CosmicError } from "../errors.js";
import { GraphBuilder } from "./onnx/builder.js";

export type Device = "cpu" | "webgpu" | "cuda";
export const DEVICES: readonly Device[] = ["cpu", "webgpu", "cuda"];

export type Session = ort.InferenceSession;
export type SessionOptions = ort.InferenceSession.SessionOptions;
export type Tensor = ort.Tensor;

/** A float32 tensor of `dims` over `data` (no copy). */
export function floatTensor(data: Float32Array, dims: readonly number[]): Tensor {
  return new ort.Tensor("float32", data, dims as number[]);
}

let collect: (() => void) | null | undefined;

/**
 * Collect garbage now: each session build leaves a few hundred MB of JavaScript buffers
 * (weights, serialised graph) that V8 would otherwise free only later, raising peak memory.
 * The host's `gc` is used if it has one; otherwise it is exposed on the first call (not at
 * import), so importing cosmic changes no V8 flag.
 */
export function releaseMemory(): void {
  if (collect === undefined) {
    const host = (globalThis as { gc?: () => void }).gc;
    if (host) collect = host;
    else {
      try {
        v8.setFlagsFromString("--expose-gc");
        collect = vm.runInNewContext("gc") as () => void;
      } catch {
        collect = null;
      }
    }
  }
  collect?.();
}

function availableDevices(): string[] {
  return ort
    .listSupportedBackends()
    .filter((b) => b.bundled || b.name === "cpu")
    .map((b) => b.name);
}

/** Refuse a device this onnxruntime build does not have. */
export function checkDevice(device: Device): void {
  if (!DEVICES.includes(device))
    throw new CosmicError(`unknown device "${device}" (choose from: ${DEVICES.join(", ")})`);
  const avail = availableDevices();
  if (!avail.includes(device)) {
    throw new CosmicError(
      `--device ${device} is not available in this onnxruntime-node build (available: ${avail.join(", ")})`,
    );
  }
}

/**
 * Check that `device` really starts (a bundled GPU provider can still lack a GPU), with a
 * one-node session: commands call this before they write anything.
 */
export async function probeDevice(device: Device): Promise<void> {
  checkDevice(device);
  if (device === "cpu") return;
  const g = new GraphBuilder("probe");
  const x = g.input("x", [1]);
  g.output(g.op("Identity", [x]), "y", [1]);
  try {
    const s = await ort.InferenceSession.create(g.encode(), { executionProviders: [device] });
    await s.release();
  } catch (e) {
    throw new CosmicError(`--device ${device} failed to start: ${(e as Error).message.split("\n")[0]}`);
  }
}

/**
 * Session options. `arena: false` (the engine's choice): with one session per block, per-session
 * arenas each held their largest call's intermediates; calls small enough for malloc to recycle
 * run at the same speed without them.
 */
export function sessionOptions(device: Device, o: { threads?: number; arena?: boolean } = {}): SessionOptions {
  const so: SessionOptions = {
    executionProviders: [device],
    graphOptimizationLevel: "all",
    enableCpuMemArena: o.arena ?? true,
    // Each session has its own intra-op thread pool, and an idle pool spins by default: with one
    // session per block, the pool that just ran kept spinning on the cores the next session needed.
    extra: { session: { intra_op: { allow_spinning: "0" } } },
  };
  if (o.threads) so.intraOpNumThreads = o.threads;
  return so;
}

/** A session from a serialised ONNX model; a GPU provider that fails says so in one line. */
export async function createSession(bytes: Uint8Array, so: SessionOptions): Promise<Session> {
  try {
    return await ort.InferenceSession.create(bytes, so);
  } catch (e) {
    const device = (so.executionProviders?.[0] ?? "cpu") as string;
    if (device !== "cpu")
      throw new CosmicError(`device "${device}" failed to start: ${(e as Error).message.split("\n")[0]}`);
    throw e;
  }
}
