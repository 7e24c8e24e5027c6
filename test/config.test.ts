import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { parseConfig } from "../src/formats/config.js";
import { ModelFolder } from "../src/model/folder.js";
import { readJsonFile } from "../src/formats/files.js";
import { ropeFrequencies } from "../src/engine/rope.js";
import { ALL_FIXTURES, FIXTURE_FAMILY, FIXTURES, scratchDir } from "./helpers.js";

test("every fixture config parses into the right spec and its weights match", () => {
  for (const fam of ALL_FIXTURES) {
    const m = ModelFolder.open(path.join(FIXTURES, fam));
    assert.equal(m.spec.family, FIXTURE_FAMILY[fam]);
    assert.equal(m.spec.numLayers, 4);
    assert.equal(m.spec.hiddenSize, 64);
    assert.equal(m.spec.numHeads, 4);
    assert.equal(m.spec.numKvHeads, 2);
    assert.equal(m.spec.headDim, 16);
    assert.equal(m.spec.intermediateSize, 160);
  }
});

test("family features are read from config.json", () => {
  const spec = (f: string) => ModelFolder.open(path.join(FIXTURES, f)).spec;
  const llama = spec("llama");
  assert.equal(llama.rope.scaling?.type, "llama3");
  assert.ok(llama.qkvBias && llama.oBias && llama.mlpBias);
  assert.equal(llama.tieWordEmbeddings, false);
  const qwen2 = spec("qwen2");
  assert.ok(qwen2.qkvBias && !qwen2.oBias && qwen2.tieWordEmbeddings);
  assert.deepEqual(qwen2.slidingWindow, [null, null, null, null]);
  assert.ok(spec("qwen3").qkNorm);
  const g2 = spec("gemma2");
  assert.equal(g2.attnSoftcap, 3);
  assert.equal(g2.finalSoftcap, 5);
  assert.deepEqual(g2.slidingWindow, [16, null, 16, null]);
  assert.equal(g2.attnScale, 32 ** -0.5);
  assert.ok(g2.sandwichNorms);
  assert.equal(g2.embeddingScale, 8);
  assert.equal(spec("gemma").norm.kind, "rms_one_plus");
  assert.equal(spec("gemma").activation, "gelu_tanh");
  assert.ok(spec("phi3").fusedQkv && spec("phi3").fusedGateUp);
});

test("llama3 rope scaling leaves high frequencies, divides low ones by the factor", () => {
  const s = ModelFolder.open(path.join(FIXTURES, "llama")).spec;
  const inv = ropeFrequencies(s, 1).inv;
  const plain = Array.from({ length: 8 }, (_, i) => 1 / 500000 ** ((2 * i) / 16));
  assert.ok(Math.abs(inv[0] - plain[0]) / plain[0] < 1e-6);
  assert.ok(Math.abs(inv[7] - plain[7] / 8) / plain[7] < 1e-6);
});

test("unsupported model_type names the file and the supported list", () => {
  assert.throws(() => parseConfig({ model_type: "gpt2" }, "x/config.json"), {
    message:
      'x/config.json: unsupported model_type "gpt2" (supported: llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3_text, phi3, and gemma3 for its text model)',
  });
  assert.throws(
    () => parseConfig({ model_type: "llama", hidden_size: 64 }, "c.json"),
    /c\.json: missing "num_attention_heads"/,
  );
  const cfg = readJsonFile<Record<string, unknown>>(path.join(FIXTURES, "llama", "config.json"));
  assert.throws(
    () => parseConfig({ ...cfg, rope_scaling: { rope_type: "su", factor: 2 } }, "c.json"),
    /c\.json: unsupported rope_scaling type "su" \(supported: default, linear, llama3, yarn, longrope, dynamic\)/,
  );
});

test("yarn, longrope and dynamic scalings are read as HF reads them; bad ones are one line", () => {
  const cfg = readJsonFile<Record<string, unknown>>(path.join(FIXTURES, "llama", "config.json"));
  const parse = (rope_scaling: unknown, extra: Record<string, unknown> = {}) =>
    parseConfig({ ...cfg, ...extra, rope_scaling }, "c.json");
  // Qwen2.5's yarn: 4 × a 32768 window, max_position_embeddings left at 32768.
  const y = parse(
    { type: "yarn", factor: 4, original_max_position_embeddings: 32768 },
    { max_position_embeddings: 32768 },
  );
  assert.equal(y.rope.scaling?.type, "yarn");
  assert.equal(y.maxPositionEmbeddings, 131072);
  if (y.rope.scaling?.type === "yarn")
    assert.ok(Math.abs(y.rope.scaling.attentionFactor - (0.1 * Math.log(4) + 1)) < 1e-12);
  const dyn = parse({ type: "dynamic", factor: 2 }, { max_position_embeddings: 4096 });
  assert.equal(dyn.maxPositionEmbeddings, 8192);
  // Below the window dynamic is plain RoPE; beyond it the base grows.
  const plain = ropeFrequencies({ ...dyn, rope: { ...dyn.rope, scaling: null } }, 100).inv;
  assert.deepEqual(ropeFrequencies(dyn, 4096).inv, plain);
  assert.ok(ropeFrequencies(dyn, 6000).inv[7] < plain[7]);
  const half = (dyn.rope.rotaryDim / 2) as number;
  const lr = (n: number) => new Array<number>(n).fill(1.5);
  const phi = parse(
    { type: "longrope", short_factor: lr(half), long_factor: lr(half).map((x) => x * 2) },
    { original_max_position_embeddings: 4096, max_position_embeddings: 131072 },
  );
  assert.ok(Math.abs(ropeFrequencies(phi, 4096).inv[1] / ropeFrequencies(phi, 4097).inv[1] - 2) < 1e-6);
  assert.throws(() => parse({ type: "longrope", short_factor: [1], long_factor: lr(half) }), {
    message: `c.json rope_scaling: "short_factor" must list ${half} positive numbers (one per rotary frequency)`,
  });
  assert.throws(() => parse({ type: "dynamic" }), /c\.json rope_scaling: missing "factor"/);
  assert.throws(() => parse({ type: "yarn", factor: 4, truncate: "yes" }), /"truncate" must be true or false/);
});

test("Gemma 3: layer kinds from layer_types or sliding_window_pattern, local RoPE on sliding layers", () => {
  const cfg = readJsonFile<Record<string, unknown>>(path.join(FIXTURES, "gemma3", "config.json"));
  const g3 = ModelFolder.open(path.join(FIXTURES, "gemma3")).spec;
  assert.deepEqual(g3.slidingWindow, [16, null, 16, null]);
  assert.deepEqual(g3.rope.local, { theta: 10000, layers: [true, false, true, false] });
  assert.equal(g3.rope.scaling?.type, "linear");
  assert.equal(g3.attnScale, 24 ** -0.5);
  assert.ok(g3.qkNorm && g3.sandwichNorms && g3.norm.kind === "rms_one_plus");
  const types = ["full_attention", "sliding_attention", "sliding_attention", "full_attention"];
  const lt = parseConfig({ ...cfg, layer_types: types }, "c.json");
  assert.deepEqual(lt.slidingWindow, [null, 16, 16, null]);
  const six = parseConfig({ ...cfg, sliding_window_pattern: undefined, num_hidden_layers: 6 }, "c.json");
  assert.deepEqual(six.rope.local?.layers, [true, true, true, true, true, false]);
  // HF's Gemma 3 attention passes no soft-cap: the field is read and ignored, as there.
  assert.equal(parseConfig({ ...cfg, attn_logit_softcapping: 50 }, "c.json").attnSoftcap, null);
  assert.throws(() => parseConfig({ ...cfg, layer_types: ["sliding_attention"] }, "c.json"), {
    message:
      'c.json: "layer_types" must list 4 entries of "sliding_attention" or "full_attention", got ["sliding_attention"]',
  });
});

test("a missing or mis-shaped tensor is reported by name", () => {
  const dir = scratchDir("cosmic-cfg-");
  for (const f of fs.readdirSync(path.join(FIXTURES, "mistral"))) {
    if (f !== "expected") fs.copyFileSync(path.join(FIXTURES, "mistral", f), path.join(dir, f));
  }
  const cfgPath = path.join(dir, "config.json");
  const cfg = readJsonFile<Record<string, unknown>>(cfgPath);
  fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, num_hidden_layers: 5 }));
  assert.throws(() => ModelFolder.open(dir), /missing tensor "model\.layers\.4\.input_layernorm\.weight"/);
  fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, intermediate_size: 128 }));
  assert.throws(
    () => ModelFolder.open(dir),
    /tensor "model\.layers\.0\.mlp\.gate_proj\.weight" has shape \[160,64\], expected \[128,64\]/,
  );
});

test("real shapes: Phi-3-mini-128k's longrope and Gemma 3 1B's layer pattern", () => {
  const phi = parseConfig(
    {
      model_type: "phi3",
      hidden_size: 3072,
      intermediate_size: 8192,
      num_hidden_layers: 32,
      num_attention_heads: 32,
      num_key_value_heads: 32,
      vocab_size: 32064,
      max_position_embeddings: 131072,
      original_max_position_embeddings: 4096,
      rope_scaling: { type: "longrope", short_factor: new Array(48).fill(1.05), long_factor: new Array(48).fill(4) },
    },
    "phi3.json",
  );
  // Phi-3's published LongRoPE scaling: √(1 + ln 32 / ln 4096) = 1.1902.
  assert.equal(phi.rope.scaling?.type, "longrope");
  if (phi.rope.scaling?.type === "longrope") assert.ok(Math.abs(phi.rope.scaling.attentionFactor - 1.1902) < 1e-4);
  assert.equal(phi.maxPositionEmbeddings, 131072);
  const g = parseConfig(
    {
      model_type: "gemma3_text",
      hidden_size: 1152,
      intermediate_size: 6912,
      num_hidden_layers: 26,
      num_attention_heads: 4,
      num_key_value_heads: 1,
      head_dim: 256,
      vocab_size: 262144,
      sliding_window: 512,
      sliding_window_pattern: 6,
    },
    "gemma3.json",
  );
  const full = g.slidingWindow.flatMap((w, l) => (w === null ? [l] : []));
  assert.deepEqual(full, [5, 11, 17, 23]);
  assert.deepEqual(
    g.rope.local?.layers.flatMap((x, l) => (x ? [] : [l])),
    full,
  );
  assert.equal(g.rope.theta, 1e6);
  assert.equal(g.attnScale, 1 / 16);
});
