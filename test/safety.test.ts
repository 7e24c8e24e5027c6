/**
 * Issue 11: no input can lose a user's files, results are never stale, bad input is one line.
 * Each test reproduces a failure that cosmic once had.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import { once } from "node:events";
import fs from "node:fs";
import path from "node:path";
import { fileHashes, FIXTURES, ROOT, scratchDir, SPLITS } from "./helpers.js";
import { parseConfig } from "../src/formats/config.js";
import { SafetensorsFile } from "../src/formats/safetensors.js";
import { readDirection, writeDirection } from "../src/formats/direction.js";
import { fsErrorLine } from "../src/formats/outputs.js";
import { modelFingerprint, modelIdentity } from "../src/model/fingerprint.js";
import { ModelFolder } from "../src/model/folder.js";
import { checkDirectionFits } from "../src/model/direction-fit.js";
import { fitToContext } from "../src/cli/chat.js";
import { ChatMessage } from "../src/tokenize/chat.js";
import { checkOutDir } from "../src/organism/train.js";

const BIN = path.join(ROOT, "bin", "cosmic.js");
const tmp = scratchDir("cosmic-safety-");
const PROMPTS = path.join(SPLITS, "harmful_val.json");

function cosmic(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", input, timeout: 120_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

function assertOneLine(r: ReturnType<typeof cosmic>, pattern: RegExp): void {
  assert.equal(r.signal, null, `killed by ${r.signal}`);
  assert.equal(r.code, 2, `exit code (stderr: ${r.stderr})`);
  const lines = r.stderr
    .trim()
    .split("\n")
    .filter((l) => !l.startsWith("cosmic: warning:"));
  assert.equal(lines.length, 1, `one line, got: ${r.stderr}`);
  assert.match(lines[0], pattern);
  assert.doesNotMatch(r.stderr, /\s+at \S+ \(/);
}

/** The first 6 prompts of a split, as a file of their own. */
function val(name: string): string {
  const f = path.join(tmp, `small-${name}`);
  fs.writeFileSync(f, JSON.stringify(JSON.parse(fs.readFileSync(path.join(SPLITS, name), "utf8")).slice(0, 6)));
  return f;
}

/** `cosmic generate` of one token for one prompt (then the caller's --out and flags). */
function generate(model: string, prompts = PROMPTS): string[] {
  return ["generate", "--model", model, "--prompts", prompts, "--limit", "1", "--max-new-tokens", "1", "--quiet"];
}

/** `cosmic run` on `model` with 6-prompt validation files and 8 train prompts, then `extra`. */
function smallRun(model: string, out: string, extra: string[]): string[] {
  const v = ["--harmful-val", val("harmful_val.json"), "--harmless-val", val("harmless_val.json")];
  return ["run", "--model", model, "--data", SPLITS, ...v, "--n-train", "8", "--out", out, ...extra];
}

/** sha256 of every file under `dir`, by relative path. */
const snapshot = (dir: string) => fileHashes(dir);

/** A copy of a fixture model (no expected tensors) inside a parent folder with a sibling. */
function userModel(name: string): { parent: string; model: string; sibling: string } {
  const parent = fs.mkdtempSync(path.join(tmp, `${name}-`));
  const model = path.join(parent, "model");
  fs.mkdirSync(model);
  for (const f of fs.readdirSync(path.join(FIXTURES, "llama"))) {
    if (f !== "expected") {
      fs.copyFileSync(path.join(FIXTURES, "llama", f), path.join(model, f));
      fs.chmodSync(path.join(model, f), 0o644);
    }
  }
  const sibling = path.join(parent, "notes");
  fs.mkdirSync(sibling);
  fs.writeFileSync(path.join(sibling, "mine.txt"), "the user's own file\n");
  return { parent, model, sibling };
}

function direction(model: string): string {
  const file = path.join(tmp, `dir-${crypto.randomUUID()}.safetensors`);
  const d = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i + 1));
  writeDirection(file, d, null, {
    layer: "2",
    model_type: "llama",
    num_layers: "4",
    model_identity: modelIdentity(model),
  });
  return file;
}

test("no command writes into, over or above the model folder, through symlinks too", () => {
  const { parent, model, sibling } = userModel("guard");
  const dir = direction(model);
  const link = path.join(tmp, `link-${crypto.randomUUID()}`);
  fs.symlinkSync(model, link);
  const gen = generate(model);
  const cases: [string[], RegExp][] = [
    [
      ["export", "abliterate", "--model", model, "--direction", dir, "--out", parent, "--force"],
      /contains the source model folder/,
    ],
    [
      ["export", "abliterate", "--model", link, "--direction", dir, "--out", model, "--force"],
      /is the source model folder/,
    ],
    [
      ["export", "abliterate", "--model", model, "--direction", dir, "--out", sibling, "--force"],
      /is not an exported model written by cosmic/,
    ],
    [
      [
        "capture",
        "--model",
        model,
        "--prompts",
        PROMPTS,
        "--limit",
        "1",
        "--out",
        path.join(model, "model.safetensors"),
        "--force",
      ],
      /inside the model folder/,
    ],
    [[...gen, "--out", path.join(model, "config.json"), "--force"], /inside the model folder/],
    [[...gen, "--out", path.join(link, "new.json")], /inside the model folder/],
    [["run", "--model", model, "--data", SPLITS, "--out", model, "--skip-eval"], /is the model folder/],
    [["run", "--model", model, "--data", SPLITS, "--out", parent, "--skip-eval"], /contains the model folder/],
    [["run", "--model", model, "--data", SPLITS, "--out", sibling, "--skip-eval"], /not a cosmic run folder/],
  ];
  // The prompts file itself as --out (a copy: were the guard broken, nothing of the repo is lost).
  const own = path.join(parent, "prompts.json");
  fs.copyFileSync(PROMPTS, own);
  cases.push([[...generate(model, own), "--out", own, "--force"], /is the prompts file/]);
  const before = snapshot(parent);
  for (const [args, pattern] of cases) assertOneLine(cosmic(args), pattern);
  assert.deepEqual(snapshot(parent), before, "the user's files are unchanged");
  assert.throws(() => checkOutDir(sibling, true), /is not an organism written by cosmic/);
});

test("single-file outputs: an existing file needs --force; folders, devices and unwritable places are one line", () => {
  const { model } = userModel("files");
  const out = path.join(tmp, "existing.json");
  fs.writeFileSync(out, "[]\n");
  const gen = generate(model);
  assertOneLine(cosmic([...gen, "--out", out]), /existing\.json: exists: pass --force/);
  assert.equal(fs.readFileSync(out, "utf8"), "[]\n");
  assert.equal(cosmic([...gen, "--out", out, "--force"]).code, 0);
  assert.equal(JSON.parse(fs.readFileSync(out, "utf8")).length, 1);
  const folderNamedJson = path.join(tmp, "folder.json");
  fs.mkdirSync(folderNamedJson, { recursive: true });
  assertOneLine(
    cosmic([...gen, "--out", folderNamedJson, "--force"]),
    /folder\.json: exists and is not a plain file \(a folder\)/,
  );
  assertOneLine(cosmic([...gen, "--out", "/proc/cosmic-test.json"]), /cosmic-test\.json: cannot write in \/proc/);
  assertOneLine(cosmic([...gen, "--out", path.join(out, "x.json")]), /is not a folder/);
  assertOneLine(
    cosmic(["export", "control-vector", "--direction", direction(model), "--out", "/proc/cosmic-test.gguf"]),
    /cannot write in \/proc/,
  );
  // The exports' single files follow the same rule.
  const cv = path.join(tmp, "existing.gguf");
  fs.writeFileSync(cv, "mine");
  assertOneLine(
    cosmic(["export", "control-vector", "--direction", direction(model), "--out", cv]),
    /existing\.gguf: exists: pass --force/,
  );
  assert.equal(cosmic(["export", "control-vector", "--direction", direction(model), "--out", cv, "--force"]).code, 0);
  const runDir = path.join(tmp, "export-run");
  fs.mkdirSync(runDir);
  fs.copyFileSync(direction(model), path.join(runDir, "direction.safetensors"));
  const npy = path.join(tmp, "existing.npy");
  fs.writeFileSync(npy, "mine");
  assertOneLine(
    cosmic(["export", "direction", "--run", runDir, "--format", "npy", "--out", npy]),
    /existing\.npy: exists: pass --force/,
  );
  assert.equal(fs.readFileSync(npy, "utf8"), "mine");
  assert.equal(cosmic(["export", "direction", "--run", runDir, "--format", "npy", "--out", npy, "--force"]).code, 0);
  assertOneLine(
    cosmic([
      "export",
      "direction",
      "--run",
      runDir,
      "--format",
      "json",
      "--out",
      path.join(runDir, "direction.safetensors"),
    ]),
    /must name a \.json file/,
  );
  const runFile = path.join(tmp, "run-file");
  fs.writeFileSync(runFile, "x");
  assertOneLine(
    cosmic(["run", "--model", model, "--data", SPLITS, "--out", runFile, "--skip-eval"]),
    /exists and is not a folder/,
  );
  // Errors Node raises mid-write (a full disk) map to one line too.
  const e = Object.assign(new Error("ENOSPC: no space left on device, write"), {
    code: "ENOSPC",
    syscall: "write",
    path: "/data/run/summary.json",
  });
  assert.equal(fsErrorLine(e), "/data/run/summary.json: no space left on the device (ENOSPC) during write");
  assert.equal(fsErrorLine(new RangeError("a bug")), null);
});

test("--device is checked before anything is written; a bad one leaves no run folder", () => {
  const { model } = userModel("device");
  const out = path.join(tmp, "device-run");
  assertOneLine(
    cosmic(["run", "--model", model, "--data", SPLITS, "--out", out, "--skip-eval", "--device", "cuda"]),
    /--device cuda is not available/,
  );
  assert.equal(fs.existsSync(out), false);
});

test(
  "run folders: a lock held by a live process is one line; a rerun with other options removes stale files; " +
    "summary lists the files",
  async () => {
    const { model } = userModel("lock");
    const out = path.join(tmp, "locked-run");
    // Validation files of 6 prompts, and --n-val 500.
    const base = smallRun(model, out, ["--n-val", "500", "--n-test", "4", "--max-new-tokens", "2", "--quiet"]);
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, ".cosmic-run"), "{}\n");
    const holder = spawn("sleep", ["60"]);
    try {
      fs.writeFileSync(path.join(out, ".cosmic-lock"), `${holder.pid}\n`);
      assertOneLine(cosmic(base), new RegExp(`in use by pid ${holder.pid}`));
    } finally {
      holder.kill();
      await once(holder, "exit");
    }
    // The holder is gone: its lock is stale and taken over. --n-val 500 is more than the file has.
    const full = cosmic(base);
    assert.equal(full.code, 0, full.stderr);
    assert.match(full.stderr, /warning: --n-val 500 but .*small-harmful_val\.json has 6 prompts: using all 6/);
    assert.ok(fs.existsSync(path.join(out, "evaluation.json")));
    assert.ok(fs.existsSync(path.join(out, "completions", "harmful_ablation_evaluations.json")));
    assert.equal(fs.existsSync(path.join(out, ".cosmic-lock")), false, "the lock is released");
    const again = cosmic([...base, "--skip-eval", "--json"]);
    assert.equal(again.code, 0, again.stderr);
    const summary = JSON.parse(again.stdout) as { files: string[] };
    assert.equal(
      fs.existsSync(path.join(out, "evaluation.json")),
      false,
      "the old evaluation is removed after --skip-eval",
    );
    assert.equal(fs.existsSync(path.join(out, "completions")), false);
    const present = Object.keys(snapshot(out))
      .filter((f) => !f.split(path.sep).some((p) => p.startsWith(".")))
      .sort();
    assert.deepEqual(summary.files, present);
    assert.ok(summary.files.includes("summary.json") && summary.files.includes("direction.safetensors"));
    // `cosmic report` writes into a run folder only: never into a folder of the user's with a summary.json.
    const mine = fs.mkdtempSync(path.join(tmp, "mine-"));
    fs.writeFileSync(path.join(mine, "summary.json"), "{}\n");
    assertOneLine(cosmic(["report", mine]), /is not a cosmic run folder/);
    assert.deepEqual(fs.readdirSync(mine), ["summary.json"]);
    assert.equal(cosmic(["report", out]).code, 0);
  },
);

test("the fingerprint covers every byte of the weights; a rerun after a weight change recomputes", () => {
  const { model } = userModel("fingerprint");
  const cache = path.join(tmp, `hashes-${crypto.randomUUID()}.json`);
  const a = modelFingerprint(model, cache);
  assert.equal(modelFingerprint(model, cache), a);
  const w = path.join(model, "model.safetensors");
  const bytes = fs.readFileSync(w);
  const mid = Math.floor(bytes.length / 2);
  bytes[mid] ^= 0x01; // one bit in the middle: outside the first and last MiB of a large file
  fs.writeFileSync(w, bytes);
  assert.notEqual(modelFingerprint(model, cache), a);
  // A run, one weight bit changed in the middle of the file, the same command: nothing reused.
  const out = path.join(tmp, `fp-run-${crypto.randomUUID()}`);
  const run = smallRun(model, out, ["--skip-eval"]);
  assert.equal(cosmic(run).code, 0);
  assert.match(cosmic(run).stderr, /directions: reused/);
  const again = fs.readFileSync(w);
  again[Math.floor(again.length / 2) + 8] ^= 0x01;
  fs.writeFileSync(w, again);
  const rerun = cosmic(run);
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.doesNotMatch(rerun.stderr, /reused/);
  // The cheap identity tells two checkpoints of one architecture apart (for direction files).
  assert.notEqual(
    modelIdentity(path.join(ROOT, "organisms", "strong")),
    modelIdentity(path.join(ROOT, "organisms", "weak")),
  );
});

test("config.json values that would compute NaN or exhaust memory are refused with the key named", () => {
  const base = JSON.parse(fs.readFileSync(path.join(FIXTURES, "llama", "config.json"), "utf8"));
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ rope_theta: 0 }, /"rope_theta" must be greater than 0/],
    [{ rms_norm_eps: -1 }, /"rms_norm_eps" must be greater than 0/],
    [{ rope_scaling: { rope_type: "linear", factor: 0 } }, /"factor" must be greater than 0/],
    [{ num_hidden_layers: 1e9 }, /"num_hidden_layers" is 1000000000, above cosmic's bound of 1024/],
    [{ num_hidden_layers: 1e15 }, /above cosmic's bound/],
    [{ partial_rotary_factor: 2 }, /"partial_rotary_factor" must be in \(0, 1\]/],
    [{ num_key_value_heads: 3 }, /not a multiple/],
    [{ hidden_size: 65, head_dim: undefined }, /not divisible/],
    [{ vocab_size: -5 }, /positive integer/],
  ];
  for (const [patch, pattern] of cases)
    assert.throws(() => parseConfig({ ...base, ...patch }, "config.json"), pattern, JSON.stringify(patch));
  const { model } = userModel("deep");
  fs.writeFileSync(path.join(model, "config.json"), "[".repeat(5000) + "]".repeat(5000));
  assertOneLine(cosmic(["inspect", "--model", model]), /config\.json: JSON nested deeper than 256 levels/);
});

test(
  "safetensors: offsets must cover the data exactly; the header is bounded; a huge direction is refused " +
    "from its header",
  () => {
    const { model } = userModel("st");
    const w = path.join(model, "model.safetensors");
    const good = fs.readFileSync(w);
    const n = Number(good.readBigUInt64LE(0));
    // A header padded with a space (as writers align it) is valid; its length one byte short
    // still parses, but would shift every tensor by a byte.
    const header = good.subarray(8, 8 + n).toString("utf8");
    const padded = Buffer.concat([Buffer.alloc(8), Buffer.from(header + " "), good.subarray(8 + n)]);
    padded.writeBigUInt64LE(BigInt(n + 1));
    fs.writeFileSync(w, padded);
    assert.ok(SafetensorsFile.open(w).tensors.size > 0);
    padded.writeBigUInt64LE(BigInt(n));
    fs.writeFileSync(w, padded);
    assert.throws(() => SafetensorsFile.open(w), /the tensors cover \d+ bytes of data but the data section has \d+/);
    const short = Buffer.from(good);
    short.writeBigUInt64LE(BigInt(n - 1));
    fs.writeFileSync(w, short);
    assert.throws(() => SafetensorsFile.open(w), /model\.safetensors: /);
    // A 200 MB header (a sparse file: nothing is allocated).
    const big = path.join(tmp, "big.safetensors");
    const fd = fs.openSync(big, "w");
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(200_000_000n);
    fs.writeSync(fd, len, 0, 8, 0);
    fs.ftruncateSync(fd, 200_000_100);
    fs.closeSync(fd);
    assert.throws(() => SafetensorsFile.open(big), /larger than the format's limit of 100000000 bytes/);
    // A direction claiming 1e9 elements: refused by width before 4 GB are read.
    const huge = path.join(tmp, "huge-direction.safetensors");
    const h = Buffer.from(JSON.stringify({ direction: { dtype: "F32", shape: [1e9], data_offsets: [0, 4e9] } }));
    const hfd = fs.openSync(huge, "w");
    const hl = Buffer.alloc(8);
    hl.writeBigUInt64LE(BigInt(h.length));
    fs.writeSync(hfd, hl, 0, 8, 0);
    fs.writeSync(hfd, h, 0, h.length, 8);
    fs.ftruncateSync(hfd, 8 + h.length + 4e9);
    fs.closeSync(hfd);
    const t0 = performance.now();
    assert.throws(() => readDirection(huge, 64), /direction has width 1000000000, but the model has hidden size 64/);
    assert.throws(() => readDirection(huge), /has 1000000000 elements/);
    assert.ok(performance.now() - t0 < 2000);
  },
);

test("directions: NaN or Inf refused; another checkpoint's direction refused unless --allow-other-model", () => {
  const bad = path.join(tmp, "nan-direction.safetensors");
  const d = Float32Array.from({ length: 64 }, (_, i) => i + 1);
  d[7] = NaN;
  writeDirection(bad, d, null, {});
  assert.throws(() => readDirection(bad), /"direction" holds a non-finite value \(NaN at index 7\)/);
  d[7] = Infinity;
  writeDirection(bad, d, null, {});
  assert.throws(() => readDirection(bad), /non-finite value \(Infinity at index 7\)/);

  const strong = ModelFolder.open(path.join(ROOT, "organisms", "strong"));
  const weakDir = path.join(tmp, "weak-direction.safetensors");
  writeDirection(
    weakDir,
    Float32Array.from({ length: strong.spec.hiddenSize }, (_, i) => Math.cos(i)),
    null,
    {
      model: path.join(ROOT, "organisms", "weak"),
      model_type: "llama",
      num_layers: String(strong.spec.numLayers),
      model_identity: modelIdentity(path.join(ROOT, "organisms", "weak")),
    },
  );
  const dir = readDirection(weakDir, strong.spec.hiddenSize);
  assert.throws(() => checkDirectionFits(dir, strong), /was found on another checkpoint .*weak.*--allow-other-model/);
  checkDirectionFits(dir, strong, true);
  const r = cosmic([
    ...generate(path.join(ROOT, "organisms", "strong")),
    "--direction",
    weakDir,
    "--out",
    path.join(tmp, "weak-on-strong.json"),
  ]);
  assertOneLine(r, /another checkpoint/);
});

test("tokenizer and template: ids beyond vocab_size, a broken post-processor, a runaway template are one line", () => {
  const { model } = userModel("tok");
  const tj = path.join(model, "tokenizer.json");
  const orig = JSON.parse(fs.readFileSync(tj, "utf8"));
  const cfg = JSON.parse(fs.readFileSync(path.join(model, "config.json"), "utf8"));
  fs.writeFileSync(
    tj,
    JSON.stringify({
      ...orig,
      added_tokens: [...orig.added_tokens, { ...orig.added_tokens[0], id: cfg.vocab_size + 5, content: "<extra>" }],
    }),
  );
  assertOneLine(
    cosmic(["inspect", "--model", model]),
    new RegExp(
      `tokenizer\\.json: has token id ${cfg.vocab_size + 5}, but config\\.json's vocab_size is ${cfg.vocab_size}`,
    ),
  );
  fs.writeFileSync(tj, JSON.stringify({ ...orig, post_processor: { type: "TemplateProcessing", single: 7 } }));
  assertOneLine(cosmic(["inspect", "--model", model]), /tokenizer\.json: cannot be loaded/);
  fs.writeFileSync(tj, JSON.stringify(orig));
  const tc = path.join(model, "tokenizer_config.json");
  const tco = JSON.parse(fs.readFileSync(tc, "utf8"));
  fs.writeFileSync(
    tc,
    JSON.stringify({
      ...tco,
      chat_template:
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}{{ messages[0].content }}",
    }),
  );
  const t0 = performance.now();
  assertOneLine(cosmic(["inspect", "--model", model]), /tokenizer_config\.json: the chat template exceeded its budget/);
  assert.ok(performance.now() - t0 < 20_000);
});

test(
  "long argument lists do not crash the engine (onnxruntime reads the command line " + "recursively); --system-file",
  () => {
    const { model } = userModel("argv");
    const out = path.join(tmp, "argv.json");
    const seed = "0".repeat(40_000) + "7";
    const r = cosmic([...generate(model), "--seed", seed, "--out", out]);
    assert.equal(r.signal, null);
    assert.equal(r.code, 0, r.stderr);
    const sys = path.join(tmp, "system.txt");
    fs.writeFileSync(sys, "You are terse.\n");
    const s = cosmic([...generate(model), "--system-file", sys, "--out", out, "--force"]);
    assert.equal(s.code, 0, s.stderr);
    assert.match(JSON.parse(fs.readFileSync(out, "utf8"))[0].prompt, /You are terse\.</);
  },
);

test("Ctrl-C: one line, exit 130, no temporary files or lock left, and the rerun resumes", async () => {
  const { model } = userModel("sigint");
  const out = path.join(tmp, "interrupted");
  const args = [
    BIN,
    "run",
    "--model",
    model,
    "--data",
    SPLITS,
    "--n-train",
    "8",
    "--n-val",
    "24",
    "--skip-eval",
    "--out",
    out,
    "--json-progress",
  ];
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  const done = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  child.stderr.on("data", (b: Buffer) => {
    err += b.toString();
    if (/"stage":"scoring/.test(err) && !child.killed) child.kill("SIGINT");
  });
  const code = await done;
  assert.equal(code, 130, err);
  assert.match(err.trim().split("\n").at(-1)!, /^cosmic: interrupted; rerun the same command to resume/);
  const left = Object.keys(snapshot(out)).filter((f) => f.endsWith(".tmp") || f.endsWith(".cosmic-lock"));
  assert.deepEqual(left, []);
  const rerun = cosmic(
    args
      .slice(1)
      .filter((a) => a !== "--json-progress")
      .concat("--quiet"),
  );
  assert.equal(rerun.code, 0, rerun.stderr);
});

test(
  "chat survives a full context: the oldest turns are dropped (said in one line), a message too long is " +
    "refused, /quit works",
  () => {
    // fitToContext on a fake token count: 10 tokens per message.
    const h: ChatMessage[] = [{ role: "system", content: "s" }];
    for (let i = 0; i < 4; i++) h.push({ role: "user", content: `u${i}` }, { role: "assistant", content: `a${i}` });
    h.push({ role: "user", content: "last" });
    const fit = fitToContext(h, (x) => 10 * x.length, 40)!;
    assert.deepEqual(
      fit.history.map((m) => m.content),
      ["s", "u3", "a3", "last"],
    );
    assert.equal(fit.dropped, 6);
    assert.equal(
      fitToContext(h, (x) => 10 * x.length, 15),
      null,
    );

    const { model } = userModel("chat");
    const cfgFile = path.join(model, "config.json");
    fs.writeFileSync(
      cfgFile,
      JSON.stringify({ ...JSON.parse(fs.readFileSync(cfgFile, "utf8")), max_position_embeddings: 96 }),
    );
    const r = cosmic(
      ["chat", "--model", model, "--max-new-tokens", "8", "--quiet"],
      "hello there\nhow are you today\ntell me more about it\nand more\nand more again\n" +
        "word ".repeat(200) +
        "\n/quit\n",
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /context full: dropped the \d+ oldest messages? to fit 96 tokens/);
    assert.match(r.stdout, /that message is too long/);
  },
);
