/**
 * The 2 GiB wall: a checkpoint with Gemma-2-2B's head (256,000 × 2,304, 2.2 GiB as float32) loads,
 * its head split by vocabulary rows, and its logits equal a float64 reference computed here
 * from the same weights (final hidden state · embeddingᵀ, soft-capped).
 * `node dist/bench/head-bench.js [qwen2.5-7b]` prints one JSON line (the argument: Qwen2.5-7B's
 * untied 152,064 × 3,584 head instead).
 */
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { ModelFolder } from "../src/model/folder.js";
import { Engine } from "../src/engine/engine.js";
import { capture } from "../src/engine/forward.js";
import { headRowRanges } from "../src/engine/graphs.js";
import { MAX_SESSION_BYTES } from "../src/engine/engine.js";
import { TENSORS } from "../src/formats/families.js";
import { ensureShaped, GEMMA2_2B_HEAD_CONFIG, QWEN25_7B_HEAD_CONFIG } from "./checkpoint.js";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
// `qwen2.5-7b` for Qwen2.5-7B's untied head (2.03 GiB); Gemma-2-2B's tied, soft-capped one by default.
const qwen = process.argv[2] === "qwen2.5-7b";
const dir = ensureShaped(
  path.join(
    process.env.COSMIC_BENCH_DIR ?? path.join(os.tmpdir(), "cosmic-bench"),
    qwen ? "qwen2.5-7b-head-shaped" : "gemma2-2b-head-shaped",
  ),
  qwen ? QWEN25_7B_HEAD_CONFIG : GEMMA2_2B_HEAD_CONFIG,
  qwen ? "Qwen2.5-7B head" : "Gemma-2-2B head",
  path.join(root, "test", "fixtures", qwen ? "qwen2" : "gemma2"),
  (s) => console.error(s),
);
const folder = ModelFolder.open(dir);
const t0 = performance.now();
const engine = await Engine.load(folder);
const loadSeconds = (performance.now() - t0) / 1000;
const ids = ["Hello there", "How do I bake bread?"].map((p) =>
  folder.tokenizer.encode(folder.tokenizer.formatPrompt(p)),
);
const c = await capture(engine, ids, { logits: true, finalHidden: true });
const rssGiB = process.memoryUsage().rss / 2 ** 30;
await engine.release();
const spec = folder.spec;
const d = spec.hiddenSize;
const V = spec.vocabSize;
const E = folder.checkpoint.readF32(spec.tieWordEmbeddings ? TENSORS.embed : TENSORS.lmHead);
const cap = spec.finalSoftcap;
let num = 0;
let den = 0;
for (let p = 0; p < ids.length; p++) {
  for (let v = 0; v < V; v++) {
    let z = 0;
    for (let i = 0; i < d; i++) z += c.finalHidden![p * d + i] * E[v * d + i];
    const want = cap === null ? z : Math.tanh(z / cap) * cap;
    num += (c.logits![p * V + v] - want) ** 2;
    den += want ** 2;
  }
}
console.log(
  JSON.stringify({
    head_gib_f32: (V * d * 4) / 2 ** 30,
    head_sessions: headRowRanges(spec, MAX_SESSION_BYTES).length,
    load_seconds: loadSeconds,
    rss_gib: rssGiB,
    logits_rel_err_vs_f64: Math.sqrt(num / den),
  }),
);
