import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { gguf } from "@huggingface/gguf";
import { ModelFolder } from "../src/model/folder.js";
import { Engine } from "../src/engine/engine.js";
import { capture } from "../src/engine/forward.js";
import { ablation } from "../src/engine/interventions.js";
import { readDirection, writeDirection } from "../src/formats/direction.js";
import { abliterate } from "../src/export/abliterate.js";
import { encodeNpy } from "../src/export/direction.js";
import { readJsonFile } from "../src/formats/files.js";
import { SafetensorsFile } from "../src/formats/safetensors.js";
import { ALL_FIXTURES, FIXTURES, relErr, ROOT, scratchDir } from "./helpers.js";

const tmp = scratchDir("cosmic-export-");
const BIN = path.join(ROOT, "bin", "cosmic.js");
const cosmic = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8" });

async function ablatedVsAbliterated(dir: string, directionFile: string, prompts: number[][]): Promise<number> {
  const src = ModelFolder.open(dir);
  const d = readDirection(directionFile);
  const out = path.join(tmp, `abl-${path.basename(dir)}-${Math.random().toString(36).slice(2)}`);
  abliterate(src, d, out, { dtype: "f32", force: false });
  const e1 = await Engine.load(src);
  const want = await capture(e1, prompts, { logits: true, intervention: ablation(d.direction, src.spec.numLayers) });
  const e2 = await Engine.load(ModelFolder.open(out));
  const got = await capture(e2, prompts, { logits: true });
  await e1.release();
  await e2.release();
  return relErr(got.logits!, want.logits!);
}

for (const fam of ALL_FIXTURES) {
  test(`${fam}: the abliterated checkpoint reproduces ablated logits`, async () => {
    const dir = path.join(FIXTURES, fam);
    const inp = readJsonFile<{ prompts: { input_ids: number[] }[] }>(path.join(dir, "expected", "input.json"));
    // The fixture direction file has no model metadata; the check is by width.
    const err = await ablatedVsAbliterated(
      dir,
      path.join(dir, "expected", "direction.safetensors"),
      inp.prompts.map((p) => p.input_ids),
    );
    if (fam === "gemma2" || fam === "gemma3") {
      // Post-projection norms: weight editing cannot equal the hook here (documented).
      assert.ok(err > 1e-4, `${fam} unexpectedly exact (${err})`);
    } else assert.ok(err <= 1e-4, `relative error ${err}`);
  });
}

test("abliterate keeps the original dtype, shards, untied lm_head, and records the direction", () => {
  const dir = path.join(FIXTURES, "qwen2");
  const out = path.join(tmp, "qwen2-orig");
  const abliterateTo = (to: string) =>
    cosmic(
      "export",
      "abliterate",
      "--model",
      dir,
      "--direction",
      path.join(dir, "expected", "direction.safetensors"),
      "--out",
      to,
    );
  const r = abliterateTo(out);
  assert.equal(r.status, 0, r.stderr);
  const shard = SafetensorsFile.open(path.join(out, "model-00001-of-00002.safetensors"));
  assert.equal(shard.info("model.embed_tokens.weight").dtype, "BF16");
  assert.equal(shard.metadata.cosmic_abliterated, "true");
  assert.equal(JSON.parse(shard.metadata.cosmic_direction_unit).length, 64);
  assert.equal(
    readJsonFile<{ tie_word_embeddings: boolean }>(path.join(out, "config.json")).tie_word_embeddings,
    false,
  );
  const idx = readJsonFile<{ weight_map: Record<string, string> }>(path.join(out, "model.safetensors.index.json"));
  assert.equal(idx.weight_map["lm_head.weight"], "model-00001-of-00002.safetensors");
  assert.ok(fs.existsSync(path.join(out, "tokenizer.json")));
  ModelFolder.open(out);
  // Existing output without --force; output inside the source; a direction from another model.
  const again = abliterateTo(out);
  assert.equal(again.status, 2);
  assert.match(again.stderr, /already holds an exported model: pass --force/);
  const inside = abliterateTo(path.join(dir, "x"));
  assert.equal(inside.status, 2);
  assert.match(inside.stderr, /is inside the source model folder/);
  const other = path.join(tmp, "other.safetensors");
  writeDirection(
    other,
    Float32Array.from({ length: 64 }, (_, i) => i + 1),
    null,
    { model_type: "gemma", num_layers: "4", layer: "1" },
  );
  const mism = cosmic("export", "abliterate", "--model", dir, "--direction", other, "--out", path.join(tmp, "never"));
  assert.equal(mism.status, 2);
  assert.match(mism.stderr, /other\.safetensors: direction was found on a gemma model, but .* is qwen2/);
  assert.ok(!fs.existsSync(path.join(tmp, "never")));
});

test("control vector: GGUF v3 with llama.cpp's names, read back by an independent parser", async () => {
  const d = path.join(tmp, "cv.safetensors");
  const r = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i + 1));
  writeDirection(d, r, null, { layer: "3", model_type: "qwen2", num_layers: "6" });
  const out = path.join(tmp, "cv.gguf");
  const res = cosmic("export", "control-vector", "--direction", d, "--coeff", "2", "--layers", "2-4", "--out", out);
  assert.equal(res.status, 0, res.stderr);
  const parsed = await gguf(out, { allowLocalFile: true });
  assert.equal(parsed.metadata.version, 3);
  assert.equal(parsed.metadata["general.architecture"], "controlvector");
  assert.equal(parsed.metadata["controlvector.model_hint"], "qwen2");
  assert.equal(parsed.metadata["controlvector.layer_count"], 5);
  assert.deepEqual(
    parsed.tensorInfos.map((t) => t.name),
    ["direction.1", "direction.2", "direction.3"],
  );
  for (const t of parsed.tensorInfos) assert.deepEqual(t.shape.map(Number), [64]);
  const bytes = fs.readFileSync(out);
  const t0 = parsed.tensorInfos[0];
  const data = new Float32Array(
    bytes.buffer.slice(
      bytes.byteOffset + Number(parsed.tensorDataOffset) + Number(t0.offset),
      bytes.byteOffset + Number(parsed.tensorDataOffset) + Number(t0.offset) + 256,
    ),
  );
  assert.ok(
    relErr(
      data,
      r.map((x) => 2 * x),
    ) < 1e-7,
  );
  const bad = cosmic(
    "export",
    "control-vector",
    "--direction",
    d,
    "--layers",
    "1",
    "--out",
    path.join(tmp, "bad.gguf"),
  );
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /layer 1 cannot carry a llama\.cpp control vector/);
});

test("npy export follows NumPy's format 1.0", () => {
  const b = encodeNpy(Float32Array.from([1, 2, 3]));
  assert.equal(b.subarray(0, 6).toString("latin1"), "\x93NUMPY");
  const hlen = b.readUInt16LE(8);
  assert.equal((10 + hlen) % 64, 0);
  assert.match(b.subarray(10, 10 + hlen).toString("latin1"), /'descr': '<f4', 'fortran_order': False, 'shape': \(3,\)/);
  assert.deepEqual(
    Array.from(new Float32Array(b.buffer.slice(b.byteOffset + 10 + hlen, b.byteOffset + b.length))),
    [1, 2, 3],
  );
});
