/**
 * ModelSpec → ONNX graphs. The model is split into one graph per decoder block plus a head
 * graph (final norm → lm_head), so a caller can start at any block from cached block inputs
 * and stop early (COSMIC's scores only read a few layers). Hook points are graph inputs:
 *
 *   block input:  x ← x − (x·u_pre) u_pre + c_pre      (ablation, activation addition, ACE)
 *   attn output:  o ← o − (o·u_attn) u_attn             (ablation)
 *   mlp output:   m ← m − (m·u_mlp) u_mlp               (ablation)
 *
 * with one u/c row per batch row; zeros switch a hook off, so one compiled graph serves every
 * intervention and every candidate direction.
 */
import { ModelSpec } from "../formats/config.js";
import { GraphBuilder } from "./onnx/builder.js";
import { layerTensors, TENSORS } from "../formats/families.js";
import { bitsOf, headFormat, quantize, WeightFormat } from "./quantize.js";

/** Where weights come from: float32 values of a checkpoint tensor by HF name. */
export type WeightSource = (name: string) => Float32Array;

/** [rows, cols] → [cols, rows], so MatMul sees HF's Linear weight as x·Wᵀ. */
export function transpose2d(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const B = 64;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(cols, c0 + B);
      for (let r = r0; r < r1; r++) {
        const base = r * cols;
        for (let c = c0; c < c1; c++) out[c * rows + r] = w[base + c];
      }
    }
  }
  return out;
}

/** Vectors end to end; for [rows_i, cols] matrices, their rows stacked (one product for q/k/v or gate/up). */
function concatVec(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/**
 * MatMulNBits' accuracy level 4: activations quantised to int8 per block, int32 accumulation.
 * onnxruntime's level-0 path (float32 activations) dequantises 8-bit weights whole on every
 * call and is many times slower than float32; level 4 adds a little rounding of its own (the
 * fidelity figures in the README are measured with it).
 */
const NBITS_ACCURACY_LEVEL = 4;

/**
 * x·Wᵀ for a Linear weight W [N, K] in HF's layout: a float32 MatMul over its transposed copy,
 * or MatMulNBits over W's quantised rows (MatMulNBits takes HF's layout as it is).
 */
function linear(
  g: GraphBuilder,
  name: string,
  x: string,
  W: Float32Array,
  N: number,
  K: number,
  format: WeightFormat,
): string {
  const bits = bitsOf(format);
  if (bits === null) return g.matmul(x, g.weight(name, transpose2d(W, N, K), [K, N]));
  const q = quantize(W, N, K, bits);
  const blocks = Math.ceil(K / q.blockSize);
  const codes = g.uint8(`${name}_codes`, q.codes, [N, blocks, (q.blockSize * bits) / 8]);
  const scales = g.weight(`${name}_scales`, q.scales, [N * blocks]);
  const zeroPoints = g.uint8(`${name}_zero_points`, q.zeroPoints, [q.zeroPoints.length]);
  return g.contribOp("MatMulNBits", [x, codes, scales, zeroPoints], {
    K,
    N,
    bits,
    block_size: q.blockSize,
    accuracy_level: NBITS_ACCURACY_LEVEL,
  });
}

/** Norm weight as the graph multiplies by it: Gemma's (1 + w) is folded in here, in float32. */
function normWeight(spec: ModelSpec, w: Float32Array): Float32Array {
  if (spec.norm.kind !== "rms_one_plus") return w;
  const out = new Float32Array(w.length);
  for (let i = 0; i < w.length; i++) out[i] = Math.fround(1 + w[i]);
  return out;
}

function rmsNorm(g: GraphBuilder, x: string, weight: string, eps: number): string {
  const ms = g.op("ReduceMean", [g.mul(x, x)], { axes: [-1], keepdims: 1 });
  const inv = g.op("Reciprocal", [g.op("Sqrt", [g.add(ms, g.f32(eps))])]);
  return g.mul(g.mul(x, inv), weight);
}

/** x − (x·u)u for u of shape [B, 1, d] (u = 0 leaves x unchanged). */
function project(g: GraphBuilder, x: string, u: string): string {
  const coef = g.reduceSumLast(g.mul(x, u));
  return g.sub(x, g.mul(coef, u));
}

function activation(g: GraphBuilder, spec: ModelSpec, x: string): string {
  if (spec.activation === "silu") return g.mul(x, g.op("Sigmoid", [x]));
  if (spec.activation === "gelu") {
    const erf = g.op("Erf", [g.mul(x, g.f32(Math.SQRT1_2))]);
    return g.mul(g.mul(x, g.f32(0.5)), g.add(erf, g.f32(1)));
  }
  // tanh approximation (gelu_pytorch_tanh)
  const x3 = g.mul(g.mul(x, x), x);
  const inner = g.mul(g.add(x, g.mul(x3, g.f32(0.044715))), g.f32(Math.sqrt(2 / Math.PI)));
  return g.mul(g.mul(x, g.f32(0.5)), g.add(g.op("Tanh", [inner]), g.f32(1)));
}

/** HF's rotate_half RoPE on the first rotaryDim features of x [B, heads, T, hd]. */
function rope(g: GraphBuilder, spec: ModelSpec, x: string, cos: string, sin: string): string {
  const hd = spec.headDim;
  const rd = spec.rope.rotaryDim;
  const half = rd / 2;
  let rot = x;
  let pass: string | null = null;
  if (rd < hd) [rot, pass] = g.split(x, [rd, hd - rd], -1);
  const [x1, x2] = g.split(rot, [half, half], -1);
  const rotated = g.concat([g.op("Neg", [x2]), x1], -1);
  const out = g.add(g.mul(rot, cos), g.mul(rotated, sin));
  return pass ? g.concat([out, pass], -1) : out;
}

type LayerTensors = ReturnType<typeof layerTensors>;

/** q [B, H, T, hd], k and v [B, K, T, hd] from the normalised block input (before RoPE). */
function queryKeyValue(
  g: GraphBuilder,
  spec: ModelSpec,
  w: WeightSource,
  t: LayerTensors,
  xn: string,
  format: WeightFormat,
): { q: string; k: string; v: string } {
  const d = spec.hiddenSize;
  const H = spec.numHeads;
  const K = spec.numKvHeads;
  const hd = spec.headDim;
  const qDim = H * hd;
  const kvDim = K * hd;
  const qkvW = spec.fusedQkv
    ? w(`${t.qkv}.weight`)
    : concatVec([w(`${t.q}.weight`), w(`${t.k}.weight`), w(`${t.v}.weight`)]);
  let qkv = linear(g, "w_qkv", xn, qkvW, qDim + 2 * kvDim, d, format);
  if (spec.qkvBias) {
    const b = concatVec([w(`${t.q}.bias`), w(`${t.k}.bias`), w(`${t.v}.bias`)]);
    qkv = g.add(qkv, g.weight("b_qkv", b, [qDim + 2 * kvDim]));
  }
  let [q, k, v] = g.split(qkv, [qDim, kvDim, kvDim], -1);
  q = g.reshape(q, [0, 0, H, hd]);
  k = g.reshape(k, [0, 0, K, hd]);
  v = g.reshape(v, [0, 0, K, hd]);
  if (spec.qkNorm) {
    q = rmsNorm(g, q, g.weight("q_norm", normWeight(spec, w(t.qNorm)), [hd]), spec.norm.eps);
    k = rmsNorm(g, k, g.weight("k_norm", normWeight(spec, w(t.kNorm)), [hd]), spec.norm.eps);
  }
  q = g.transpose(q, [0, 2, 1, 3]); // [B, H, T, hd]
  k = g.transpose(k, [0, 2, 1, 3]); // [B, K, T, hd]
  v = g.transpose(v, [0, 2, 1, 3]);
  return { q, k, v };
}

/**
 * Grouped-query attention without copying K/V: query head h uses KV head h / rep, so
 * [B, H, T, hd] regroups as [B, K, rep·T, hd]. The cached keys and the new ones are attended
 * separately and never concatenated (that would copy the whole cache in every call): their
 * scores are joined for one softmax, which is split again for the two value products. Returns
 * the heads' outputs as [B, T, H·hd].
 */
function attention(
  g: GraphBuilder,
  spec: ModelSpec,
  q: string,
  kv: { pastK: string; pastV: string; k: string; v: string },
  mask: string,
): string {
  const H = spec.numHeads;
  const K = spec.numKvHeads;
  const hd = spec.headDim;
  const qg = g.reshape(q, [0, K, -1, hd]);
  const scale = g.f32(spec.attnScale);
  const pastScores = g.mul(g.matmul(qg, g.transpose(kv.pastK, [0, 1, 3, 2])), scale);
  const newScores = g.mul(g.matmul(qg, g.transpose(kv.k, [0, 1, 3, 2])), scale);
  let scores = g.concat([pastScores, newScores], -1);
  scores = g.op("Reshape", [scores, g.i64([0, H, -1, 0])]); // [B, H, T, P + T]
  if (spec.attnSoftcap !== null) {
    const c = g.f32(spec.attnSoftcap);
    scores = g.mul(g.op("Tanh", [g.div(scores, c)]), c);
  }
  scores = g.add(scores, mask);
  const probs = g.reshape(g.op("Softmax", [scores], { axis: -1 }), [0, K, -1, 0]);
  const lengths = g.concat(
    [g.op("Shape", [kv.pastK], { start: 2, end: 3 }), g.op("Shape", [kv.k], { start: 2, end: 3 })],
    0,
  );
  const [pastProbs, newProbs] = g.opN("Split", [probs, lengths], 2, { axis: -1 });
  const ctx = g.add(g.matmul(pastProbs, kv.pastV), g.matmul(newProbs, kv.v)); // [B, K, rep·T, hd]
  return g.reshape(g.transpose(g.reshape(ctx, [0, H, -1, hd]), [0, 2, 1, 3]), [0, 0, H * hd]);
}

/** The gated MLP on the residual stream `x` (its pre-norm included), before the output hook. */
function mlp(
  g: GraphBuilder,
  spec: ModelSpec,
  w: WeightSource,
  t: LayerTensors,
  x: string,
  format: WeightFormat,
): string {
  const d = spec.hiddenSize;
  const I = spec.intermediateSize;
  const ln2Name = spec.sandwichNorms ? t.preFeedforwardNorm : t.postAttentionNorm;
  const xn2 = rmsNorm(g, x, g.weight("ln2", normWeight(spec, w(ln2Name)), [d]), spec.norm.eps);
  const guW = spec.fusedGateUp ? w(`${t.gateUp}.weight`) : concatVec([w(`${t.gate}.weight`), w(`${t.up}.weight`)]);
  let gu = linear(g, "w_gate_up", xn2, guW, 2 * I, d, format);
  if (spec.mlpBias) gu = g.add(gu, g.weight("b_gate_up", concatVec([w(`${t.gate}.bias`), w(`${t.up}.bias`)]), [2 * I]));
  const [gate, up] = g.split(gu, [I, I], -1);
  const h = g.mul(activation(g, spec, gate), up);
  let out = linear(g, "w_down", h, w(`${t.down}.weight`), d, I, format);
  if (spec.mlpBias) out = g.add(out, g.weight("b_down", w(`${t.down}.bias`), [d]));
  return out;
}

/**
 * One decoder block `l` as an ONNX model. With `lastOnly`, the block computes keys and values
 * for every position but attention, o_proj and the MLP only for the last one, and outputs
 * `hidden_out` [B, 1, d] (no cache): what the final block needs when only the last position's
 * logits are read.
 */
export function buildBlockGraph(
  spec: ModelSpec,
  l: number,
  w: WeightSource,
  opts: { lastOnly?: boolean; weights?: WeightFormat } = {},
): Uint8Array {
  const lastOnly = opts.lastOnly ?? false;
  const format = opts.weights ?? "f32";
  const g = new GraphBuilder(`block_${l}`);
  const d = spec.hiddenSize;
  const H = spec.numHeads;
  const K = spec.numKvHeads;
  const hd = spec.headDim;
  const t = layerTensors(l);

  const hidden = g.input("hidden", ["batch", "seq", d]);
  const cos = g.input("cos", ["batch", "seq", spec.rope.rotaryDim]);
  const sin = g.input("sin", ["batch", "seq", spec.rope.rotaryDim]);
  const mask = g.input("mask", ["batch", 1, "seq", "total"]);
  const pastK = g.input("past_key", ["batch", K, "past", hd]);
  const pastV = g.input("past_value", ["batch", K, "past", hd]);
  const preDir = g.unsqueeze(g.input("resid_pre_dir", ["batch", d]), [1]);
  const preAdd = g.unsqueeze(g.input("resid_pre_add", ["batch", d]), [1]);
  const attnDir = g.unsqueeze(g.input("attn_out_dir", ["batch", d]), [1]);
  const mlpDir = g.unsqueeze(g.input("mlp_out_dir", ["batch", d]), [1]);

  // Block-input hook (TransformerLens: hook_resid_pre).
  let x = g.add(project(g, hidden, preDir), preAdd);

  // Self-attention.
  const xn = rmsNorm(g, x, g.weight("ln1", normWeight(spec, w(t.inputNorm)), [d]), spec.norm.eps);
  const qDim = H * hd;
  let { q, k, v } = queryKeyValue(g, spec, w, t, xn, format);
  const cos4 = g.unsqueeze(cos, [1]);
  const sin4 = g.unsqueeze(sin, [1]);
  q = rope(g, spec, q, cos4, sin4);
  k = rope(g, spec, k, cos4, sin4);
  if (lastOnly) {
    const INF = 2 ** 62;
    q = g.slice(q, [-1], [INF], [2]);
    x = g.slice(x, [-1], [INF], [1]);
  } else {
    // Only the new positions' keys and values: the caller keeps the cache.
    g.output(k, "key", ["batch", K, "seq", hd]);
    g.output(v, "value", ["batch", K, "seq", hd]);
  }
  const maskQ = lastOnly ? g.slice(mask, [-1], [2 ** 62], [2]) : mask;

  const ctxT = attention(g, spec, q, { pastK, pastV, k, v }, maskQ);
  let attnOut = linear(g, "w_o", ctxT, w(`${t.o}.weight`), d, qDim, format);
  if (spec.oBias) attnOut = g.add(attnOut, g.weight("b_o", w(`${t.o}.bias`), [d]));
  attnOut = project(g, attnOut, attnDir); // hook_attn_out
  if (spec.sandwichNorms) {
    attnOut = rmsNorm(
      g,
      attnOut,
      g.weight("ln_post_attn", normWeight(spec, w(t.postAttentionNorm)), [d]),
      spec.norm.eps,
    );
  }
  const x2 = g.add(x, attnOut);

  let mlpOut = project(g, mlp(g, spec, w, t, x2, format), mlpDir); // hook_mlp_out
  if (spec.sandwichNorms) {
    mlpOut = rmsNorm(g, mlpOut, g.weight("ln_post_ff", normWeight(spec, w(t.postFeedforwardNorm)), [d]), spec.norm.eps);
  }
  g.output(g.add(x2, mlpOut), "hidden_out", ["batch", lastOnly ? 1 : "seq", d]);
  return g.encode();
}

/**
 * Final norm → lm_head (→ soft-capping) on last-position hidden states [B, d]. The lm_head
 * (often the tied embedding, the largest matrix) stays in HF's [vocab, d] layout under
 * Gemm(transB): no transposed copy is ever made.
 */
export function buildHeadGraph(
  spec: ModelSpec,
  w: WeightSource,
  rows: [number, number] = [0, spec.vocabSize],
  weights: WeightFormat = "f32",
): Uint8Array {
  const g = new GraphBuilder(rows[0] === 0 ? "head" : `head_${rows[0]}`);
  const d = spec.hiddenSize;
  const [r0, r1] = rows;
  const hidden = g.input("hidden", ["batch", d]);
  const normed = rmsNorm(g, hidden, g.weight("ln_f", normWeight(spec, w(TENSORS.finalNorm)), [d]), spec.norm.eps);
  g.output(normed, "final_hidden", ["batch", d]);
  const lm = w(spec.tieWordEmbeddings ? TENSORS.embed : TENSORS.lmHead).subarray(r0 * d, r1 * d);
  const format = headFormat(weights);
  let logits =
    format === "f32"
      ? g.op("Gemm", [normed, g.weight("w_lm", lm, [r1 - r0, d])], { transB: 1 })
      : linear(g, "w_lm", normed, lm, r1 - r0, d, format);
  if (spec.finalSoftcap !== null) {
    const c = g.f32(spec.finalSoftcap);
    logits = g.mul(g.op("Tanh", [g.div(logits, c)]), c);
  }
  g.output(logits, "logits", ["batch", r1 - r0]);
  return g.encode();
}

/**
 * The head's vocabulary rows split so that each session's weights stay under `maxBytes`: an
 * ONNX model is a protobuf, capped at 2 GiB, and a 256,000 × 2,304 float32 head is 2.2 GiB.
 */
export function headRowRanges(spec: ModelSpec, maxBytes: number): [number, number][] {
  const rowBytes = spec.hiddenSize * 4;
  const per = Math.max(1, Math.floor(maxBytes / rowBytes));
  const out: [number, number][] = [];
  for (let r = 0; r < spec.vocabSize; r += per) out.push([r, Math.min(spec.vocabSize, r + per)]);
  return out;
}
