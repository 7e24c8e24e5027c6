import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { parseConfig } from "../src/formats/config.js";
import { ModelFolder } from "../src/model/folder.js";
import { readJsonFile } from "../src/formats/files.js";
import { inverseFrequencies } from "../src/engine/rope.js";
import { FAMILIES, FIXTURES } from "./helpers.js";

test("every fixture config parses into the right spec and its weights match", () => {
  for (const fam of FAMILIES) {
    const m = ModelFolder.open(path.join(FIXTURES, fam));
    assert.equal(m.spec.family, fam);
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
  const inv = inverseFrequencies(s);
  const plain = Array.from({ length: 8 }, (_, i) => 1 / 500000 ** ((2 * i) / 16));
  assert.ok(Math.abs(inv[0] - plain[0]) / plain[0] < 1e-6);
  assert.ok(Math.abs(inv[7] - plain[7] / 8) / plain[7] < 1e-6);
});

test("unsupported model_type names the file and the supported list", () => {
  assert.throws(() => parseConfig({ model_type: "gpt2" }, "x/config.json"), {
    message:
      'x/config.json: unsupported model_type "gpt2" (supported: llama, mistral, qwen2, qwen3, gemma, gemma2, phi3)',
  });
  assert.throws(
    () => parseConfig({ model_type: "llama", hidden_size: 64 }, "c.json"),
    /c\.json: missing "num_attention_heads"/,
  );
  const cfg = readJsonFile<Record<string, unknown>>(path.join(FIXTURES, "llama", "config.json"));
  assert.throws(
    () => parseConfig({ ...cfg, rope_scaling: { rope_type: "yarn", factor: 2 } }, "c.json"),
    /unsupported rope_scaling type "yarn"/,
  );
});

test("a missing or mis-shaped tensor is reported by name", () => {
  const dir = fs.mkdtempSync(path.join(process.env.TMPDIR ?? "/tmp", "cosmic-cfg-"));
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
