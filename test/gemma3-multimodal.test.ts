// Gemma 3's multimodal checkpoints (Gemma3ForConditionalGeneration: 4B, 12B, 27B): cosmic runs
// their text model. The gemma3 fixture is rewritten into both tensor layouts transformers has
// saved them in, with a vision tower beside it, and must give the fixture's reference results.
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { ModelFolder } from "../src/model/folder.js";
import { Engine } from "../src/engine/engine.js";
import { capture } from "../src/engine/forward.js";
import { parseConfig } from "../src/formats/config.js";
import { readJsonFile } from "../src/formats/files.js";
import { readDirection } from "../src/formats/direction.js";
import { SafetensorsFile, TEXT_LAYOUTS, writeSafetensors } from "../src/formats/safetensors.js";
import { abliterate } from "../src/export/abliterate.js";
import { FIXTURES, GEMMA3_VISION, multimodalGemma3, relErr, scratchDir } from "./helpers.js";

const SRC = path.join(FIXTURES, "gemma3");
const tmp = scratchDir("cosmic-gemma3mm-");
test("a multimodal Gemma 3 config.json: the text model's settings, with Gemma3TextConfig's defaults for what it leaves out", () => {
  // Shaped like Gemma-3-4B-it's: text_config names only what differs from the defaults.
  const spec = parseConfig(
    {
      architectures: ["Gemma3ForConditionalGeneration"],
      model_type: "gemma3",
      eos_token_id: [1, 106],
      text_config: {
        hidden_size: 2560,
        intermediate_size: 10240,
        model_type: "gemma3_text",
        num_hidden_layers: 34,
        rope_scaling: { factor: 8.0, rope_type: "linear" },
        sliding_window: 1024,
        // Not applied by HF's Gemma3ForConditionalGeneration (only by Gemma3ForCausalLM).
        final_logit_softcapping: 30.0,
      },
      vision_config: { hidden_size: 1152, model_type: "siglip_vision_model" },
    },
    "config.json",
  );
  assert.equal(spec.family, "gemma3_text");
  assert.equal(spec.architecture, "Gemma3ForConditionalGeneration");
  assert.deepEqual([spec.numHeads, spec.numKvHeads, spec.headDim, spec.vocabSize], [8, 4, 256, 262208]);
  assert.equal(spec.attnScale, 256 ** -0.5);
  assert.equal(spec.rope.theta, 1e6);
  assert.equal(spec.rope.local!.theta, 10000);
  const full = spec.slidingWindow.flatMap((w, l) => (w === null ? [l] : []));
  assert.deepEqual(full, [5, 11, 17, 23, 29]);
  assert.ok(spec.slidingWindow.every((w) => w === null || w === 1024));
  assert.deepEqual(spec.eosTokenIds, [1, 106]);
  assert.equal(spec.bosTokenId, 2);
  assert.equal(spec.tieWordEmbeddings, true);
  assert.equal(spec.finalSoftcap, null);
  assert.throws(
    () => parseConfig({ model_type: "gemma3", vision_config: {} }, "x/config.json"),
    /x\/config\.json: model_type "gemma3" needs a "text_config" object/,
  );
});

for (const layout of [1, 2] as const) {
  test(`multimodal Gemma 3, layout ${layout} (${TEXT_LAYOUTS[layout].model}…): the text model matches the PyTorch reference; abliteration edits it and leaves the vision tower`, async () => {
    const dir = multimodalGemma3(SRC, path.join(tmp, `layout${layout}`), layout, layout === 2);
    const m = ModelFolder.open(dir);
    const engine = await Engine.load(m);
    const inp = readJsonFile<{ prompts: { input_ids: number[] }[] }>(path.join(SRC, "expected", "input.json"));
    const toks = inp.prompts.map((p) => p.input_ids);
    const ex = SafetensorsFile.open(path.join(SRC, "expected", "expected.safetensors"));
    const c = await capture(engine, toks, { residPrePositions: 5, logits: true });
    assert.ok(relErr(c.residPre!, ex.readF32("resid_pre")) <= 1e-4, "resid_pre");
    assert.ok(relErr(c.logits!, ex.readF32("logits_last")) <= 1e-4, "logits_last");
    // The chat template is found (in chat_template.json for layout 2) and renders as the fixture's.
    const plain = ModelFolder.open(SRC);
    assert.equal(m.tokenizer.formatPrompt("Hello there"), plain.tokenizer.formatPrompt("Hello there"));
    await engine.release();

    // Abliteration: the text model's residual writers as for the causal-LM fixture, the vision tower untouched.
    const d = readDirection(path.join(SRC, "expected", "direction.safetensors"));
    const outMm = path.join(tmp, `abl-mm${layout}`);
    const outPlain = path.join(tmp, `abl-plain${layout}`);
    const r = abliterate(m, d, outMm, { dtype: "f32", force: false });
    abliterate(plain, d, outPlain, { dtype: "f32", force: false });
    assert.ok(r.edited.length > 0 && r.edited.every((n) => n.startsWith(TEXT_LAYOUTS[layout].model)), r.edited.join());
    const a = SafetensorsFile.open(path.join(outMm, "model.safetensors"));
    const b = SafetensorsFile.open(path.join(outPlain, "model.safetensors"));
    for (const name of b.tensors.keys()) {
      const stored =
        name === "lm_head.weight" ? TEXT_LAYOUTS[layout].lmHead : `${TEXT_LAYOUTS[layout].model}${name.slice(6)}`;
      assert.deepEqual(a.readBytes(stored), b.readBytes(name), name);
    }
    const src = SafetensorsFile.open(path.join(dir, "model.safetensors"));
    for (const v of GEMMA3_VISION) {
      const name = layout === 2 ? `model.${v.name}` : v.name;
      assert.deepEqual(a.readBytes(name), src.readBytes(name), `${name} is copied as it was`);
    }
    const cfg = readJsonFile<{ tie_word_embeddings: boolean; text_config: { tie_word_embeddings: boolean } }>(
      path.join(outMm, "config.json"),
    );
    assert.equal(cfg.text_config.tie_word_embeddings, false, "the untied lm_head is used");
    assert.equal(cfg.tie_word_embeddings, false);
    const e1 = await Engine.load(ModelFolder.open(outMm));
    const e2 = await Engine.load(ModelFolder.open(outPlain));
    const got = await capture(e1, toks, { logits: true });
    const want = await capture(e2, toks, { logits: true });
    assert.ok(relErr(got.logits!, want.logits!) <= 1e-6);
    await e1.release();
    await e2.release();
  });
}

test("chat_template.json: read when tokenizer_config.json has no template; one without a string is a one-line error", () => {
  const dir = path.join(tmp, "template-json");
  fs.mkdirSync(dir);
  for (const f of fs.readdirSync(SRC)) if (f !== "expected") fs.copyFileSync(path.join(SRC, f), path.join(dir, f));
  const tc = readJsonFile<Record<string, unknown>>(path.join(dir, "tokenizer_config.json"));
  const template = tc.chat_template;
  delete tc.chat_template;
  fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify(tc));
  fs.writeFileSync(path.join(dir, "chat_template.json"), JSON.stringify({ chat_template: 5 }));
  assert.throws(() => ModelFolder.open(dir), /template-json\/chat_template\.json: has no "chat_template" string$/);
  fs.writeFileSync(path.join(dir, "chat_template.json"), JSON.stringify({ chat_template: template }));
  assert.equal(ModelFolder.open(dir).tokenizer.templateSource, template);
});

test("a multimodal folder missing a text-model tensor names it as stored", () => {
  const dir = multimodalGemma3(SRC, path.join(tmp, "missing"), 1, false);
  const st = SafetensorsFile.open(path.join(dir, "model.safetensors"));
  const gone = "language_model.model.layers.1.mlp.down_proj.weight";
  assert.ok(st.has(gone));
  const keep = [...st.tensors.keys()].filter((n) => n !== gone);
  const tensors = keep.map((n) => ({
    name: n,
    dtype: st.info(n).dtype,
    shape: st.info(n).shape,
    data: st.readBytes(n),
  }));
  writeSafetensors(path.join(dir, "model.safetensors"), tensors, { format: "pt" });
  assert.throws(
    () => ModelFolder.open(dir),
    /model\.safetensors: missing tensor "language_model\.model\.layers\.1\.mlp\.down_proj\.weight" \(expected shape \[64,160\]\)$/,
  );
});
