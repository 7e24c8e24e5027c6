/**
 * The organism's Llama model, trained in TypeScript: forward and backward written out by hand
 * (as in nanoGPT, one readable file), with every matrix product on onnxruntime (Gemm sessions
 * with dynamic shapes, tens of times faster than JavaScript loops) and the rest
 * (norms, RoPE, attention over short sequences, the optimiser) in JavaScript.
 * Weights use Hugging Face's names and [out, in] layouts, so the result is a LlamaForCausalLM.
 */
import { createSession, floatTensor, Session, sessionOptions } from "../engine/runtime.js";
import { GraphBuilder } from "../engine/onnx/builder.js";
import { Rng } from "../util/random.js";
import { ropeTables as engineRopeTables } from "../engine/rope.js";

export interface OrganismShape {
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  intermediate: number;
  ropeTheta: number;
  eps: number;
}

export type Params = Map<string, Float32Array>;

/** Parameter names and shapes (fused q/k/v and gate/up internally; split when saved). */
export function paramShapes(s: OrganismShape): [string, number[]][] {
  const out: [string, number[]][] = [["embed", [s.vocab, s.hidden]]];
  for (let l = 0; l < s.layers; l++) {
    out.push([`${l}.ln1`, [s.hidden]], [`${l}.qkv`, [3 * s.hidden, s.hidden]], [`${l}.o`, [s.hidden, s.hidden]]);
    out.push(
      [`${l}.ln2`, [s.hidden]],
      [`${l}.gu`, [2 * s.intermediate, s.hidden]],
      [`${l}.down`, [s.hidden, s.intermediate]],
    );
  }
  out.push(["norm", [s.hidden]]);
  return out;
}

export function initParams(s: OrganismShape, rng: Rng): Params {
  const p: Params = new Map();
  for (const [name, shape] of paramShapes(s)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    if (shape.length === 1) a.fill(1);
    else {
      // GPT-2 style: σ = 0.02, residual-writing projections scaled by 1/√(2·layers).
      const std = name.endsWith(".o") || name.endsWith(".down") ? 0.02 / Math.sqrt(2 * s.layers) : 0.02;
      for (let i = 0; i < n; i++) a[i] = rng.normal() * std;
    }
    p.set(name, a);
  }
  return p;
}

/** Matrix products on onnxruntime: Y = op(A)·op(B) for 2-D float32 arrays. */
export class Gemm {
  private sessions = new Map<string, Session>();
  flops = 0;

  static async create(threads?: number): Promise<Gemm> {
    const g = new Gemm();
    for (const ta of [0, 1]) {
      for (const tb of [0, 1]) {
        const b = new GraphBuilder("gemm");
        const A = b.input("A", ["a0", "a1"]);
        const B = b.input("B", ["b0", "b1"]);
        b.output(b.op("Gemm", [A, B], { transA: ta, transB: tb }), "Y", ["m", "n"]);
        g.sessions.set(`${ta}${tb}`, await createSession(b.encode(), sessionOptions("cpu", { threads })));
      }
    }
    return g;
  }

  /** A is [ar, ac], B is [br, bc]; transposes as flagged. */
  async mm(
    A: Float32Array,
    ar: number,
    ac: number,
    B: Float32Array,
    br: number,
    bc: number,
    ta = false,
    tb = false,
  ): Promise<Float32Array> {
    const s = this.sessions.get(`${ta ? 1 : 0}${tb ? 1 : 0}`)!;
    const out = await s.run({ A: floatTensor(A, [ar, ac]), B: floatTensor(B, [br, bc]) });
    const m = ta ? ac : ar;
    const k = ta ? ar : ac;
    const n = tb ? br : bc;
    this.flops += 2 * m * k * n;
    return out.Y.data as Float32Array;
  }

  async release(): Promise<void> {
    for (const s of this.sessions.values()) await s.release();
  }
}

/** The engine's RoPE tables ([T, hd]: each half repeated, as HF lays them out) for positions 0 … T−1. */
function ropeTables(s: OrganismShape, T: number): { cos: Float32Array; sin: Float32Array } {
  const hd = s.hidden / s.heads;
  const inv = Float32Array.from({ length: hd / 2 }, (_, i) => 1 / s.ropeTheta ** ((2 * i) / hd));
  return engineRopeTables(inv, [Array.from({ length: T }, (_, t) => t)]);
}

/** y = x·rms⁻¹·w per row; returns y and rms⁻¹ per row. */
function rmsForward(
  x: Float32Array,
  w: Float32Array,
  N: number,
  d: number,
  eps: number,
): { y: Float32Array; inv: Float32Array } {
  const y = new Float32Array(N * d);
  const inv = new Float32Array(N);
  for (let n = 0; n < N; n++) {
    let ss = 0;
    for (let i = 0; i < d; i++) ss += x[n * d + i] * x[n * d + i];
    const r = 1 / Math.sqrt(ss / d + eps);
    inv[n] = r;
    for (let i = 0; i < d; i++) y[n * d + i] = x[n * d + i] * r * w[i];
  }
  return { y, inv };
}

/** Adds the input gradient to dx and the weight gradient to dw. */
function rmsBackward(
  dy: Float32Array,
  x: Float32Array,
  inv: Float32Array,
  w: Float32Array,
  N: number,
  d: number,
  dx: Float32Array,
  dw: Float32Array,
): void {
  for (let n = 0; n < N; n++) {
    const r = inv[n];
    let dot = 0;
    for (let i = 0; i < d; i++) {
      const g = dy[n * d + i];
      dw[i] += g * x[n * d + i] * r;
      dot += g * w[i] * x[n * d + i];
    }
    const c = (r * r * r * dot) / d;
    for (let i = 0; i < d; i++) dx[n * d + i] += r * dy[n * d + i] * w[i] - c * x[n * d + i];
  }
}

/** HF rotate_half RoPE in place on [N, heads, hd] rows laid out per token; sign −1 = inverse (backward). */
function rope(
  x: Float32Array,
  B: number,
  T: number,
  heads: number,
  hd: number,
  off: number,
  stride: number,
  cos: Float32Array,
  sin: Float32Array,
  sign: 1 | -1,
): void {
  const half = hd / 2;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const row = (b * T + t) * stride + off;
      for (let h = 0; h < heads; h++) {
        const base = row + h * hd;
        for (let i = 0; i < half; i++) {
          const c = cos[t * hd + i];
          const s = sign * sin[t * hd + i];
          const x1 = x[base + i];
          const x2 = x[base + half + i];
          x[base + i] = x1 * c - x2 * s;
          x[base + half + i] = x2 * c + x1 * s;
        }
      }
    }
  }
}

interface LayerCache {
  h: Float32Array;
  inv1: Float32Array;
  a: Float32Array;
  qkv: Float32Array;
  probs: Float32Array;
  o: Float32Array;
  h2: Float32Array;
  inv2: Float32Array;
  m: Float32Array;
  gu: Float32Array;
  s: Float32Array;
}

export interface Batch {
  /** [B, T] token ids, right-padded */
  ids: Int32Array;
  /** [B, T] next-token targets, −1 where no loss */
  targets: Int32Array;
  B: number;
  T: number;
}

/** The sizes every per-operation kernel below needs, computed once per batch. */
interface Dims {
  B: number;
  T: number;
  N: number;
  d: number;
  H: number;
  hd: number;
  I: number;
  V: number;
  scale: number;
  cos: Float32Array;
  sin: Float32Array;
}

function dimsOf(s: OrganismShape, batch: Batch): Dims {
  const { B, T } = batch;
  const hd = s.hidden / s.heads;
  const { cos, sin } = ropeTables(s, T);
  const V = s.vocab;
  return { B, T, N: B * T, d: s.hidden, H: s.heads, hd, I: s.intermediate, V, scale: 1 / Math.sqrt(hd), cos, sin };
}

/** Rows of the embedding matrix for each token. */
function embedForward(E: Float32Array, ids: Int32Array, N: number, d: number): Float32Array {
  const x = new Float32Array(N * d);
  for (let n = 0; n < N; n++) x.set(E.subarray(ids[n] * d, ids[n] * d + d), n * d);
  return x;
}

/** Scatter-adds each token's input gradient into its embedding row. */
function embedBackward(dx: Float32Array, ids: Int32Array, N: number, d: number, gE: Float32Array): void {
  for (let n = 0; n < N; n++) {
    const o = ids[n] * d;
    for (let i = 0; i < d; i++) gE[o + i] += dx[n * d + i];
  }
}

/** a + b elementwise (the residual stream's additions). */
function addArrays(a: Float32Array, b: Float32Array): Float32Array {
  const out = new Float32Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] + b[i];
  return out;
}

/**
 * Causal softmax attention over the rotated q/k and v in `qkv` ([N, 3d]); returns the mixed
 * values and the probabilities.
 */
function attentionForward(qkv: Float32Array, dm: Dims): { o: Float32Array; probs: Float32Array } {
  const { B, T, H, hd, d, scale } = dm;
  const probs = new Float32Array(B * H * T * T);
  const o = new Float32Array(B * T * d);
  for (let b = 0; b < B; b++) {
    for (let hh = 0; hh < H; hh++) {
      for (let i = 0; i < T; i++) {
        const qo = (b * T + i) * 3 * d + hh * hd;
        const prow = ((b * H + hh) * T + i) * T;
        let mx = -Infinity;
        for (let j = 0; j <= i; j++) {
          const ko = (b * T + j) * 3 * d + d + hh * hd;
          let sc = 0;
          for (let k = 0; k < hd; k++) sc += qkv[qo + k] * qkv[ko + k];
          sc *= scale;
          probs[prow + j] = sc;
          if (sc > mx) mx = sc;
        }
        let z = 0;
        for (let j = 0; j <= i; j++) z += probs[prow + j] = Math.exp(probs[prow + j] - mx);
        const oo = (b * T + i) * d + hh * hd;
        for (let j = 0; j <= i; j++) {
          const pj = (probs[prow + j] /= z);
          const vo = (b * T + j) * 3 * d + 2 * d + hh * hd;
          for (let k = 0; k < hd; k++) o[oo + k] += pj * qkv[vo + k];
        }
      }
    }
  }
  return { o, probs };
}

/** Gradient of attentionForward: from dO ([N, d]) to dqkv ([N, 3d], before the inverse RoPE). */
function attentionBackward(dO: Float32Array, qkv: Float32Array, probs: Float32Array, dm: Dims): Float32Array {
  const { B, T, H, hd, d, scale } = dm;
  const dqkv = new Float32Array(B * T * 3 * d);
  const dp = new Float32Array(T);
  for (let b = 0; b < B; b++) {
    for (let hh = 0; hh < H; hh++) {
      for (let i = 0; i < T; i++) {
        const prow = ((b * H + hh) * T + i) * T;
        const oo = (b * T + i) * d + hh * hd;
        let sum = 0;
        for (let j = 0; j <= i; j++) {
          const vo = (b * T + j) * 3 * d + 2 * d + hh * hd;
          let g = 0;
          for (let k = 0; k < hd; k++) g += dO[oo + k] * qkv[vo + k];
          dp[j] = g;
          sum += g * probs[prow + j];
          const pj = probs[prow + j];
          for (let k = 0; k < hd; k++) dqkv[vo + k] += pj * dO[oo + k];
        }
        const qo = (b * T + i) * 3 * d + hh * hd;
        for (let j = 0; j <= i; j++) {
          const dsc = probs[prow + j] * (dp[j] - sum) * scale;
          if (dsc === 0) continue;
          const ko = (b * T + j) * 3 * d + d + hh * hd;
          for (let k = 0; k < hd; k++) {
            dqkv[qo + k] += dsc * qkv[ko + k];
            dqkv[ko + k] += dsc * qkv[qo + k];
          }
        }
      }
    }
  }
  return dqkv;
}

/** SwiGLU: silu(gate) · up, from the fused [N, 2I] gate/up product. */
function swigluForward(gu: Float32Array, N: number, I: number): Float32Array {
  const sv = new Float32Array(N * I);
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < I; i++) {
      const g = gu[n * 2 * I + i];
      sv[n * I + i] = (g / (1 + Math.exp(-g))) * gu[n * 2 * I + I + i];
    }
  }
  return sv;
}

/** Gradient of swigluForward with respect to the fused gate/up product. */
function swigluBackward(ds: Float32Array, gu: Float32Array, N: number, I: number): Float32Array {
  const dgu = new Float32Array(N * 2 * I);
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < I; i++) {
      const g = gu[n * 2 * I + i];
      const u = gu[n * 2 * I + I + i];
      const sg = 1 / (1 + Math.exp(-g));
      const dsv = ds[n * I + i];
      dgu[n * 2 * I + i] = dsv * u * sg * (1 + g * (1 - sg));
      dgu[n * 2 * I + I + i] = dsv * g * sg;
    }
  }
  return dgu;
}

/** Mean cross-entropy over the targets ≥ 0 and, when asked, its gradient with respect to the logits. */
function crossEntropy(
  logits: Float32Array,
  targets: Int32Array,
  N: number,
  V: number,
  withGrad: boolean,
): { loss: number; dlogits: Float32Array | null } {
  let loss = 0;
  let count = 0;
  for (let n = 0; n < N; n++) if (targets[n] >= 0) count++;
  const dlogits = withGrad ? new Float32Array(N * V) : null;
  for (let n = 0; n < N; n++) {
    const t = targets[n];
    if (t < 0) continue;
    let mx = -Infinity;
    for (let v = 0; v < V; v++) mx = Math.max(mx, logits[n * V + v]);
    let z = 0;
    for (let v = 0; v < V; v++) z += Math.exp(logits[n * V + v] - mx);
    loss += Math.log(z) + mx - logits[n * V + t];
    if (dlogits) {
      for (let v = 0; v < V; v++) dlogits[n * V + v] = Math.exp(logits[n * V + v] - mx) / z / count;
      dlogits[n * V + t] -= 1 / count;
    }
  }
  return { loss: loss / count, dlogits };
}

/** One decoder layer: x → x + attn(ln1(x)) → … + mlp(ln2(·)); keeps what backward needs. */
async function layerForward(
  l: number,
  h: Float32Array,
  s: OrganismShape,
  p: Params,
  dm: Dims,
  gemm: Gemm,
): Promise<{ out: Float32Array; cache: LayerCache }> {
  const { B, T, N, d, H, hd, I, cos, sin } = dm;
  const { y: a, inv: inv1 } = rmsForward(h, p.get(`${l}.ln1`)!, N, d, s.eps);
  const qkv = await gemm.mm(a, N, d, p.get(`${l}.qkv`)!, 3 * d, d, false, true); // [N, 3d]
  rope(qkv, B, T, H, hd, 0, 3 * d, cos, sin, 1);
  rope(qkv, B, T, H, hd, d, 3 * d, cos, sin, 1);
  const { o, probs } = attentionForward(qkv, dm);
  const h2 = addArrays(h, await gemm.mm(o, N, d, p.get(`${l}.o`)!, d, d, false, true));
  const { y: m, inv: inv2 } = rmsForward(h2, p.get(`${l}.ln2`)!, N, d, s.eps);
  const gu = await gemm.mm(m, N, d, p.get(`${l}.gu`)!, 2 * I, d, false, true); // [N, 2I]
  const sv = swigluForward(gu, N, I);
  const out = addArrays(h2, await gemm.mm(sv, N, I, p.get(`${l}.down`)!, d, I, false, true));
  return { out, cache: { h, inv1, a, qkv, probs, o, h2, inv2, m, gu, s: sv } };
}

/** Gradient of layerForward: from d(out) to d(h), adding the layer's weight gradients into `grads`. */
async function layerBackward(
  l: number,
  dx: Float32Array,
  c: LayerCache,
  p: Params,
  grads: Params,
  dm: Dims,
  gemm: Gemm,
): Promise<Float32Array> {
  const { B, T, N, d, H, hd, I, cos, sin } = dm;
  // MLP.
  const ds = await gemm.mm(dx, N, d, p.get(`${l}.down`)!, d, I); // [N, I]
  addInto(grads.get(`${l}.down`)!, await gemm.mm(dx, N, d, c.s, N, I, true, false));
  const dgu = swigluBackward(ds, c.gu, N, I);
  addInto(grads.get(`${l}.gu`)!, await gemm.mm(dgu, N, 2 * I, c.m, N, d, true, false));
  const dm2 = await gemm.mm(dgu, N, 2 * I, p.get(`${l}.gu`)!, 2 * I, d);
  const dh2 = Float32Array.from(dx);
  rmsBackward(dm2, c.h2, c.inv2, p.get(`${l}.ln2`)!, N, d, dh2, grads.get(`${l}.ln2`)!);
  // Attention.
  const dO = await gemm.mm(dh2, N, d, p.get(`${l}.o`)!, d, d);
  addInto(grads.get(`${l}.o`)!, await gemm.mm(dh2, N, d, c.o, N, d, true, false));
  const dqkv = attentionBackward(dO, c.qkv, c.probs, dm);
  rope(dqkv, B, T, H, hd, 0, 3 * d, cos, sin, -1);
  rope(dqkv, B, T, H, hd, d, 3 * d, cos, sin, -1);
  addInto(grads.get(`${l}.qkv`)!, await gemm.mm(dqkv, N, 3 * d, c.a, N, d, true, false));
  const da = await gemm.mm(dqkv, N, 3 * d, p.get(`${l}.qkv`)!, 3 * d, d);
  // The residual gradient and the attention branch's both land in dh2.
  rmsBackward(da, c.h, c.inv1, p.get(`${l}.ln1`)!, N, d, dh2, grads.get(`${l}.ln1`)!);
  return dh2;
}

/**
 * Mean cross-entropy over the target tokens, and (when `grads` is given) its gradient added
 * into `grads`.
 */
export async function lossAndGrad(
  s: OrganismShape,
  p: Params,
  batch: Batch,
  gemm: Gemm,
  grads?: Params,
): Promise<number> {
  const dm = dimsOf(s, batch);
  const { N, d, V } = dm;
  const E = p.get("embed")!;
  let x = embedForward(E, batch.ids, N, d);
  const caches: LayerCache[] = [];
  for (let l = 0; l < s.layers; l++) {
    const { out, cache } = await layerForward(l, x, s, p, dm, gemm);
    caches.push(cache);
    x = out;
  }
  const { y: f, inv: invF } = rmsForward(x, p.get("norm")!, N, d, s.eps);
  const logits = await gemm.mm(f, N, d, E, V, d, false, true); // tied lm_head
  const { loss, dlogits } = crossEntropy(logits, batch.targets, N, V, grads !== undefined);
  if (!grads || !dlogits) return loss;

  // Backward: the tied embedding gets the lm_head's gradient here and the input's at the end.
  const gE = grads.get("embed")!;
  addInto(gE, await gemm.mm(dlogits, N, V, f, N, d, true, false)); // [V, d]
  const df = await gemm.mm(dlogits, N, V, E, V, d); // [N, d]
  let dx: Float32Array = new Float32Array(N * d);
  rmsBackward(df, x, invF, p.get("norm")!, N, d, dx, grads.get("norm")!);
  for (let l = s.layers - 1; l >= 0; l--) dx = await layerBackward(l, dx, caches[l], p, grads, dm, gemm);
  embedBackward(dx, batch.ids, N, d, gE);
  return loss;
}

function addInto(a: Float32Array, b: Float32Array): void {
  for (let i = 0; i < a.length; i++) a[i] += b[i];
}

/** AdamW with decoupled weight decay on matrices. */
export class AdamW {
  private m = new Map<string, Float32Array>();
  private v = new Map<string, Float32Array>();
  private t = 0;
  constructor(
    private readonly beta1 = 0.9,
    private readonly beta2 = 0.95,
    private readonly weightDecay = 0.01,
  ) {}

  step(p: Params, g: Params, lr: number): void {
    this.t++;
    const bc1 = 1 - this.beta1 ** this.t;
    const bc2 = 1 - this.beta2 ** this.t;
    for (const [name, w] of p) {
      const grad = g.get(name)!;
      let m = this.m.get(name);
      let v = this.v.get(name);
      if (!m || !v) {
        m = new Float32Array(w.length);
        v = new Float32Array(w.length);
        this.m.set(name, m);
        this.v.set(name, v);
      }
      const decay =
        name === "embed" ||
        name.includes(".qkv") ||
        name.includes(".o") ||
        name.includes(".gu") ||
        name.includes(".down")
          ? this.weightDecay
          : 0;
      for (let i = 0; i < w.length; i++) {
        m[i] = this.beta1 * m[i] + (1 - this.beta1) * grad[i];
        v[i] = this.beta2 * v[i] + (1 - this.beta2) * grad[i] * grad[i];
        w[i] -= lr * (m[i] / bc1 / (Math.sqrt(v[i] / bc2) + 1e-8) + decay * w[i]);
      }
    }
  }
}

/** Scale gradients so their global L2 norm is at most `max`; returns the norm before. */
export function clipGrads(g: Params, max: number): number {
  let ss = 0;
  for (const a of g.values()) for (let i = 0; i < a.length; i++) ss += a[i] * a[i];
  const n = Math.sqrt(ss);
  if (n > max) for (const a of g.values()) for (let i = 0; i < a.length; i++) a[i] *= max / n;
  return n;
}
