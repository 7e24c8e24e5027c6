import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { SafetensorsFile, writeSafetensors } from "../src/formats/safetensors.js";
import { ALL_FIXTURES, FIXTURE_FAMILY, FIXTURES, relErr, ROOT, scratchDir } from "./helpers.js";

const BIN = path.join(ROOT, "bin", "cosmic.js");
const tmp = scratchDir("cosmic-cli-");

function cosmic(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8" });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A user mistake: non-zero exit, one line on stderr that names `file`, no stack trace. */
function assertUserError(r: ReturnType<typeof cosmic>, pattern: RegExp): void {
  assert.equal(r.code, 2, `exit code (stderr: ${r.stderr})`);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, `one line, got: ${r.stderr}`);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.stderr, /\s+at \S+ \(/);
}

test("inspect --json reports family, layers and width for every fixture", () => {
  for (const fam of ALL_FIXTURES) {
    const r = cosmic("inspect", "--model", path.join(FIXTURES, fam), "--json");
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout);
    assert.equal(j.spec.family, FIXTURE_FAMILY[fam]);
    assert.equal(j.spec.numLayers, 4);
    assert.equal(j.spec.hiddenSize, 64);
    assert.ok(j.eoi.ids.length > 0);
    assert.ok(j.renderedPrompt.includes(j.sampleInstruction));
  }
  const text = cosmic("inspect", "--model", path.join(FIXTURES, "llama"));
  assert.match(text.stdout, /EOI tokens/);
});

function copyFixture(fam: string): string {
  const dir = fs.mkdtempSync(path.join(tmp, `${fam}-`));
  for (const f of fs.readdirSync(path.join(FIXTURES, fam))) {
    if (f !== "expected") fs.copyFileSync(path.join(FIXTURES, fam, f), path.join(dir, f));
    fs.chmodSync(path.join(dir, f === "expected" ? "." : f), 0o755);
  }
  return dir;
}

/** A case that replaces one file of a fixture copy with `text`; returns the file. */
const overwrite = (file: string, text: string) => (d: string) => {
  const p = path.join(d, file);
  fs.writeFileSync(p, text);
  return p;
};

test("corrupted copies of a fixture fail inspect with a one-line message naming the file", () => {
  const cases: [string, (dir: string) => string, RegExp][] = [
    [
      "truncated weights",
      (d) => {
        const p = path.join(d, "model.safetensors");
        const b = fs.readFileSync(p);
        fs.writeFileSync(p, b.subarray(0, b.length / 2));
        return p;
      },
      /out of range/,
    ],
    [
      "header length past the end",
      (d) => {
        const p = path.join(d, "model.safetensors");
        const b = fs.readFileSync(p);
        b.writeBigUInt64LE(BigInt(b.length * 2));
        fs.writeFileSync(p, b);
        return p;
      },
      /header length/,
    ],
    ["invalid config.json", overwrite("config.json", "{ nope"), /invalid JSON/],
    ["invalid tokenizer_config.json", overwrite("tokenizer_config.json", "{"), /invalid JSON/],
    ["invalid tokenizer.json", overwrite("tokenizer.json", "[1,"), /invalid JSON/],
    [
      "missing tokenizer",
      (d) => {
        const p = path.join(d, "tokenizer.json");
        fs.rmSync(p);
        return p;
      },
      /missing/,
    ],
    [
      "unsupported model_type",
      (d) => {
        const p = path.join(d, "config.json");
        const c = JSON.parse(fs.readFileSync(p, "utf8"));
        fs.writeFileSync(p, JSON.stringify({ ...c, model_type: "falcon" }));
        return p;
      },
      /unsupported model_type "falcon"/,
    ],
  ];
  for (const [name, mutate, re] of cases) {
    const dir = copyFixture("llama");
    const file = mutate(dir);
    const r = cosmic("inspect", "--model", dir);
    assertUserError(r, re);
    assert.ok(r.stderr.includes(file), `${name}: message names ${file}: ${r.stderr}`);
  }
  const sharded = copyFixture("qwen2");
  const shard = path.join(sharded, "model-00002-of-00002.safetensors");
  fs.rmSync(shard);
  assertUserError(
    cosmic("inspect", "--model", sharded),
    /lists shard "model-00002-of-00002\.safetensors", which does not exist/,
  );
});

test("capture writes the documented tensors and metadata", () => {
  const fx = path.join(FIXTURES, "llama");
  const out = path.join(tmp, "cap.safetensors");
  const r = cosmic(
    "capture",
    "--model",
    fx,
    "--prompts",
    path.join(fx, "expected", "prompts.json"),
    "--out",
    out,
    "--quiet",
  );
  assert.equal(r.code, 0, r.stderr);
  const st = SafetensorsFile.open(out);
  const P = JSON.parse(st.metadata.eoi_token_ids).length;
  assert.deepEqual(st.info("resid_pre").shape, [4, 4, P, 64]);
  assert.deepEqual(st.info("resid_post").shape, [4, 4, 64]);
  assert.deepEqual(st.info("final_hidden").shape, [4, 64]);
  assert.deepEqual(st.info("logits_last").shape, [4, 261]);
  assert.equal(st.metadata.seed, "42");
  assert.equal(st.metadata.weights, "f32", "a 64-wide fixture fits: auto keeps float32");
  assert.equal(st.metadata.positions, String(P));
});

test("generate with a direction file writes instruction, prompt, response and tokens", () => {
  const fx = path.join(FIXTURES, "gemma2");
  const out = path.join(tmp, "gen.json");
  const r = cosmic(
    "generate",
    "--model",
    fx,
    "--prompts",
    path.join(fx, "expected", "prompts.json"),
    "--out",
    out,
    "--quiet",
    "--max-new-tokens",
    "4",
    "--direction",
    path.join(fx, "expected", "direction.safetensors"),
    "--intervention",
    "ace-actadd",
  );
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(fs.readFileSync(out, "utf8"));
  assert.equal(j.length, 4);
  for (const row of j) {
    assert.equal(typeof row.instruction, "string");
    assert.ok(row.prompt.includes(row.instruction));
    assert.equal(typeof row.response, "string");
    assert.ok(row.tokens.length >= 1 && row.tokens.length <= 4);
  }
});

test("engine bad input: wrong width, layer out of range, empty prompts, long prompts; nothing written", () => {
  const fx = path.join(FIXTURES, "llama");
  const prompts = path.join(fx, "expected", "prompts.json");
  const wide = path.join(tmp, "wide.safetensors");
  writeSafetensors(
    wide,
    [{ name: "direction", dtype: "F32", shape: [32], data: Float32Array.from({ length: 32 }, (_, i) => i + 1) }],
    { layer: "1" },
  );
  const out = path.join(tmp, "never.json");
  assertUserError(
    cosmic("generate", "--model", fx, "--prompts", prompts, "--out", out, "--direction", wide),
    /wide\.safetensors: direction has width 32, but .* has hidden size 64/,
  );
  assertUserError(
    cosmic(
      "generate",
      "--model",
      fx,
      "--prompts",
      prompts,
      "--out",
      out,
      "--direction",
      path.join(fx, "expected", "direction.safetensors"),
      "--intervention",
      "actadd",
      "--layer",
      "7",
    ),
    /layer 7 is out of range/,
  );
  const empty = path.join(tmp, "empty.json");
  fs.writeFileSync(empty, "[]");
  assertUserError(
    cosmic("generate", "--model", fx, "--prompts", empty, "--out", out),
    /empty\.json: holds no instructions/,
  );
  const long = path.join(tmp, "long.json");
  fs.writeFileSync(long, JSON.stringify(["x".repeat(2100)]));
  assertUserError(
    cosmic("capture", "--model", fx, "--prompts", long, "--out", path.join(tmp, "never.safetensors")),
    /longer than the model's context of 2048/,
  );
  assertUserError(
    cosmic("generate", "--model", fx, "--prompts", prompts, "--out", out, "--device", "tpu"),
    /--device must be one of cpu, webgpu, cuda/,
  );
  assertUserError(
    cosmic("generate", "--model", fx, "--prompts", prompts, "--out", out, "--device", "cuda"),
    /--device cuda is not available .*available: cpu/,
  );
  assert.ok(!fs.existsSync(out));
  assert.ok(!fs.existsSync(path.join(tmp, "never.safetensors")));
  assert.deepEqual(
    fs.readdirSync(tmp).filter((f) => f.endsWith(".tmp")),
    [],
  );
});

test("run --json: JSON lines on stderr, the summary as JSON on stdout, the sampled prompts in the run folder", () => {
  const out = path.join(tmp, "json-run");
  const r = cosmic(
    "run",
    "--model",
    path.join(ROOT, "organisms", "strong"),
    "--out",
    out,
    "--skip-eval",
    "--json",
    "--n-train",
    "16",
    "--n-val",
    "8",
  );
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stderr.trim().split("\n");
  assert.ok(lines.length > 3);
  for (const l of lines) JSON.parse(l);
  const s = JSON.parse(r.stdout);
  assert.deepEqual(s, JSON.parse(fs.readFileSync(path.join(out, "summary.json"), "utf8")));
  assert.equal(typeof s.cosmic.layer, "number");
  const prompts = JSON.parse(fs.readFileSync(path.join(out, "prompts.json"), "utf8"));
  assert.equal(prompts.harmful_train.length, 16);
  assert.equal(prompts.harmless_val.length, 8);
  assert.equal(typeof prompts.harmful_val[0].instruction, "string");
});

test("flags out of their range, or with empty parts, are one line each: temperature, top-p, KL threshold, learning rates, alphas, refusal phrases", () => {
  const strong = path.join(ROOT, "organisms", "strong");
  const gen = ["generate", "--model", strong, "--prompts", "p.json", "--out", path.join(tmp, "never.json")];
  const cases: [string[], RegExp][] = [
    [[...gen, "--temperature", "-1"], /--temperature must be a number ≥ 0, got "-1"/],
    [[...gen, "--temperature", ""], /--temperature must be a number ≥ 0, got ""/],
    [[...gen, "--top-p", "0"], /--top-p must be a number > 0 and ≤ 1, got "0"/],
    [[...gen, "--top-p", "1.5"], /--top-p must be a number > 0 and ≤ 1, got "1\.5"/],
    [
      ["run", "--model", strong, "--out", path.join(tmp, "never"), "--kl-threshold", "-0.1"],
      /--kl-threshold must be a number ≥ 0/,
    ],
    [["organism", "train", "--out", path.join(tmp, "never-org"), "--lr", "0"], /--lr must be a number > 0, got "0"/],
    [
      ["run", "--model", strong, "--out", path.join(tmp, "never"), "--alphas", "1,,2"],
      /--alphas must be numbers separated by commas, got "1,,2"/,
    ],
    [
      ["run", "--model", strong, "--out", path.join(tmp, "never"), "--refusal-phrases", "I cannot|"],
      /--refusal-phrases must be phrases separated by "\|", none empty/,
    ],
    [
      ["organism", "train", "--out", path.join(tmp, "never-org"), "--safety-lr", "-1e-3"],
      /--safety-lr must be a number > 0/,
    ],
  ];
  for (const [args, pattern] of cases) assertUserError(cosmic(...args), pattern);
  for (const f of ["never.json", "never", "never-org"]) assert.ok(!fs.existsSync(path.join(tmp, f)), f);
});

test("chat: a mistake is one line right after the prompt, and the chat goes on", () => {
  const r = spawnSync(process.execPath, [BIN, "chat", "--model", path.join(ROOT, "organisms", "strong"), "--quiet"], {
    encoding: "utf8",
    input: "/ablate\n/add x\n/quit\n",
  });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(
    r.stdout,
    "[off] you> this chat has no --direction: /ablate and /add need one\n" +
      "[off] you> usage: /add α (a number)\n[off] you> ",
  );
});

test("serve: a port outside 0–65535, an empty --api-key or --model-name, or an address not on this machine is one line", () => {
  const strong = path.join(ROOT, "organisms", "strong");
  for (const port of ["99999", "-1", "1.5", ""])
    assertUserError(
      cosmic("serve", "--model", strong, "--port", port),
      new RegExp(`--port must be an integer from 0 to 65535, got "${port.replace(".", "\\.")}"`),
    );
  assertUserError(cosmic("serve", "--model", strong, "--port", "0", "--model-name", " "), /--model-name is empty/);
  assertUserError(
    cosmic("serve", "--model", strong, "--port", "0", "--host", "0.0.0.0", "--api-key", ""),
    /--api-key is empty \(an unset variable\?\)/,
  );
  const r = cosmic("serve", "--model", strong, "--port", "0", "--host", "192.0.2.1", "--api-key", "k");
  assertUserError(r, /cannot listen on 192\.0\.2\.1:0 \(E[A-Z]+\)/);
});

test("run: an unknown --system-scope is a one-line error and writes nothing", () => {
  const out = path.join(tmp, "bad-scope");
  const r = cosmic(
    "run",
    "--model",
    path.join(ROOT, "organisms", "strong"),
    "--out",
    out,
    "--system",
    "Be brief.",
    "--system-scope",
    "everything",
  );
  assertUserError(r, /--system-scope must be selection or directions, got "everything"/);
  assert.ok(!fs.existsSync(out));
});

test(
  "a direction carries its mode: capture/generate default to its own ablation; abliterate " + "refuses an affine one",
  () => {
    const fx = path.join(FIXTURES, "llama");
    const src = SafetensorsFile.open(path.join(fx, "expected", "direction.safetensors"));
    const r = src.readF32("direction");
    const mu = r.map((_, i) => Math.cos(i) * 0.3);
    const affine = path.join(tmp, "affine-direction.safetensors");
    writeSafetensors(
      affine,
      [
        { name: "direction", dtype: "F32", shape: [r.length], data: r },
        { name: "reference", dtype: "F32", shape: [r.length], data: mu },
      ],
      { layer: "2", mode: "affine", method: "cosmic" },
    );
    const prompts = path.join(fx, "expected", "prompts.json");
    const cap = (name: string, ...extra: string[]) => {
      const out = path.join(tmp, `${name}.safetensors`);
      const res = cosmic("capture", "--model", fx, "--prompts", prompts, "--out", out, "--direction", affine, ...extra);
      assert.equal(res.code, 0, res.stderr);
      return { logits: SafetensorsFile.open(out).readF32("logits_last"), stderr: res.stderr };
    };
    const byDefault = cap("default");
    assert.match(
      byDefault.stderr,
      /applying ace-ablate at the input of block 2 \(chosen by the direction file's mode \(affine\)/,
    );
    const ace = cap("ace", "--intervention", "ace-ablate");
    const linear = cap("linear", "--intervention", "ablate");
    assert.deepEqual(byDefault.logits, ace.logits, "the default is the file's ACE ablation");
    assert.notDeepEqual(byDefault.logits, linear.logits, "not linear ablation at every layer");
    const out = path.join(tmp, "abliterated-affine");
    assertUserError(
      cosmic("export", "abliterate", "--model", fx, "--direction", affine, "--out", out),
      /affine-direction\.safetensors: was selected in affine mode .*--as-linear/,
    );
    assert.ok(!fs.existsSync(out), "nothing written");
    const ok = cosmic("export", "abliterate", "--model", fx, "--direction", affine, "--out", out, "--as-linear");
    assert.equal(ok.code, 0, ok.stderr);
  },
);

test("--weights: a bad value is one line; int8 captures what float32 does, closely, and says so", () => {
  const fx = path.join(FIXTURES, "llama");
  const prompts = path.join(fx, "expected", "prompts.json");
  const bad = cosmic(
    "capture",
    "--model",
    fx,
    "--prompts",
    prompts,
    "--out",
    path.join(tmp, "w.safetensors"),
    "--weights",
    "int3",
  );
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr.trim(), 'cosmic: --weights must be one of auto, f32, int8, int4, got "int3"');
  const captured = (weights: string) => {
    const out = path.join(tmp, `w-${weights}.safetensors`);
    const r = cosmic("capture", "--model", fx, "--prompts", prompts, "--out", out, "--weights", weights, "--quiet");
    assert.equal(r.code, 0, r.stderr);
    return SafetensorsFile.open(out);
  };
  const q = captured("int8");
  assert.equal(q.metadata.weights, "int8");
  const f32 = captured("f32");
  const err = relErr(q.readF32("resid_post"), f32.readF32("resid_post"));
  assert.ok(err > 0 && err < 5e-2, `int8 resid_post: relative error ${err}`);
});
