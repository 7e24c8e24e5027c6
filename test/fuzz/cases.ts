/**
 * The fuzzer's cases: seeded mutations of a valid model folder (config.json, tokenizer.json,
 * tokenizer_config.json, the safetensors header), of prompt files and of direction files.
 * Case i of seed s is always the same files, so a failure is reproduced by its number.
 */
import fs from "node:fs";
import path from "node:path";
import { Rng } from "../../src/util/random.js";
import { writeDirection } from "../../src/formats/direction.js";

export type Target = "config" | "tokenizer" | "tokenizer_config" | "safetensors" | "prompts" | "direction";
export const TARGETS: readonly Target[] = [
  "config",
  "tokenizer",
  "tokenizer_config",
  "safetensors",
  "prompts",
  "direction",
];

export interface FuzzCase {
  index: number;
  target: Target;
  /** what was done to the file, for the report */
  mutation: string;
  /** the model folder the case runs on */
  model: string;
  /** the prompts or direction file (for those targets) */
  file?: string;
}

type Json = unknown;

const NUMBERS = [0, -1, 1, 2, 0.5, -0.5, 1e9, 1e15, 1e300, -1e300, 2 ** 31, 2 ** 53 + 1, 3, 7, 64, 65, 4096];
const ODD_VALUES: Json[] = [null, true, false, "", "x", "NaN", [], {}, [1, 2], { a: 1 }, "\u0000", "😀".repeat(3)];

const DEEP = "\u0001deep:";

/** JSON text of a mutated value, with the deep-nesting placeholders expanded. */
function stringify(v: Json): string {
  return JSON.stringify(v).replace(
    /"\\u0001deep:(\d+)"/g,
    (_, n: string) => "[".repeat(Number(n)) + "1" + "]".repeat(Number(n)),
  );
}

/** Every [container, key] in a JSON value, depth-first (at most `limit`). */
function slots(v: Json, limit = 5000): [Record<string, Json> | Json[], string | number][] {
  const out: [Record<string, Json> | Json[], string | number][] = [];
  const walk = (x: Json) => {
    if (out.length >= limit || x === null || typeof x !== "object") return;
    if (Array.isArray(x))
      x.forEach((c, i) => {
        out.push([x, i]);
        walk(c);
      });
    else
      for (const [k, c] of Object.entries(x as Record<string, Json>)) {
        out.push([x as Record<string, Json>, k]);
        walk(c);
      }
  };
  walk(v);
  return out;
}

function pick<T>(rng: Rng, xs: readonly T[]): T {
  return xs[rng.int(xs.length)];
}

/** One structural mutation of a parsed JSON value, in place; returns its description. */
function mutateJson(rng: Rng, root: Json, prefer?: string[]): string {
  let all = slots(root);
  if (prefer && rng.next() < 0.6) {
    const preferred = all.filter(([, k]) => typeof k === "string" && prefer.includes(k));
    if (preferred.length) all = preferred;
  }
  if (all.length === 0) return "nothing to mutate";
  const [c, k] = pick(rng, all);
  const obj = c as Record<string | number, Json>;
  const old = obj[k];
  const r = rng.int(7);
  if (r === 0 && !Array.isArray(c)) {
    delete obj[k];
    return `deleted ${String(k)}`;
  }
  if (r <= 2 && typeof old === "number") {
    obj[k] = pick(rng, NUMBERS) * (rng.next() < 0.2 ? -1 : 1);
    return `${String(k)}: ${old} → ${obj[k]}`;
  }
  if (r === 3) {
    obj[k] = pick(rng, ODD_VALUES);
    return `${String(k)} → ${JSON.stringify(obj[k])}`;
  }
  if (r === 4) {
    // Written as text by stringify() below: JSON.stringify itself overflows on such nesting.
    const depth = pick(rng, [50, 300, 5000]);
    obj[k] = `${DEEP}${depth}`;
    return `${String(k)} → nested ${depth} deep`;
  }
  if (r === 5 && typeof old === "string") {
    obj[k] =
      rng.next() < 0.5
        ? old.repeat(pick(rng, [2, 100, 10000])).slice(0, 200000)
        : old.slice(0, rng.int(old.length + 1));
    return `${String(k)}: string resized`;
  }
  obj[k] = typeof old === "number" ? String(old) : pick(rng, NUMBERS);
  return `${String(k)} → ${JSON.stringify(obj[k]).slice(0, 40)}`;
}

/** One byte-level mutation of a text or buffer. */
function mutateBytes(rng: Rng, b: Buffer): { bytes: Buffer; what: string } {
  const r = rng.int(4);
  if (r === 0) return { bytes: b.subarray(0, rng.int(b.length + 1)), what: "truncated" };
  const c = Buffer.from(b);
  if (r === 1) {
    const n = 1 + rng.int(8);
    for (let i = 0; i < n; i++) c[rng.int(c.length)] = rng.int(256);
    return { bytes: c, what: `${n} bytes flipped` };
  }
  if (r === 2) {
    const at = rng.int(c.length + 1);
    return {
      bytes: Buffer.concat([
        c.subarray(0, at),
        Buffer.from(pick(rng, ["{", "]", '"', ",", "\\", "\u0000", "\ufeff", "[[[[", "}}}}"])),
        c.subarray(at),
      ]),
      what: "inserted a delimiter",
    };
  }
  return {
    bytes: Buffer.concat([c, Buffer.from(pick(rng, ["\n{}", "garbage", "\u0000\u0000", "\n"]))]),
    what: "appended bytes",
  };
}

function copyModel(src: string, dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  for (const f of fs.readdirSync(src)) {
    const p = path.join(src, f);
    if (!fs.statSync(p).isFile()) continue;
    fs.copyFileSync(p, path.join(dir, f));
    fs.chmodSync(path.join(dir, f), 0o644);
  }
}

function mutateJsonFile(rng: Rng, file: string, prefer?: string[]): string {
  const text = fs.readFileSync(file, "utf8");
  if (rng.next() < 0.25) {
    const m = mutateBytes(rng, Buffer.from(text));
    fs.writeFileSync(file, m.bytes);
    return m.what;
  }
  const v = JSON.parse(text) as Json;
  const n = 1 + rng.int(3);
  const what: string[] = [];
  for (let i = 0; i < n; i++) what.push(mutateJson(rng, v, prefer));
  fs.writeFileSync(file, stringify(v));
  return what.join("; ");
}

const CONFIG_KEYS = [
  "hidden_size",
  "num_hidden_layers",
  "num_attention_heads",
  "num_key_value_heads",
  "intermediate_size",
  "vocab_size",
  "head_dim",
  "rope_theta",
  "rms_norm_eps",
  "partial_rotary_factor",
  "max_position_embeddings",
  "rope_scaling",
  "factor",
  "bos_token_id",
  "eos_token_id",
  "model_type",
  "sliding_window",
  "tie_word_embeddings",
];

function mutateSafetensors(rng: Rng, file: string): string {
  const b = fs.readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  const header = JSON.parse(b.subarray(8, 8 + n).toString("utf8")) as Json;
  const data = b.subarray(8 + n);
  const r = rng.int(4);
  let text = JSON.stringify(header);
  let what: string;
  if (r === 0) {
    // The length field alone.
    const delta = pick(rng, [-1, 1, -8, 8, 2 ** 20, -n, 1e12]);
    const out = Buffer.from(b);
    out.writeBigUInt64LE(BigInt(Math.max(0, n + delta)));
    fs.writeFileSync(file, out);
    return `header length ${n} → ${Math.max(0, n + delta)}`;
  }
  if (r === 3) {
    const m = mutateBytes(rng, b);
    fs.writeFileSync(file, m.bytes);
    return `file ${m.what}`;
  }
  what = mutateJson(rng, header, ["shape", "data_offsets", "dtype", "__metadata__"]);
  if (rng.next() < 0.3) {
    // Many tiny entries (a large header).
    const h = header as Record<string, Json>;
    const count = pick(rng, [1000, 20000]);
    for (let i = 0; i < count; i++) h[`extra.${i}`] = { dtype: "F32", shape: [0], data_offsets: [0, 0] };
    what += `; ${count} empty tensors added`;
  }
  text = stringify(header);
  const hb = Buffer.from(text);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hb.length));
  fs.writeFileSync(file, Buffer.concat([len, hb, data]));
  return `header: ${what}`;
}

/** Templates that loop, recurse, or grow without bound. */
const HOSTILE_TEMPLATES = [
  "{% for i in range(1000000000) %}x{% endfor %}{{ messages[0].content }}",
  "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
  "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
  "{{ messages[0].content | indent(1000000000) }}",
  "{% for m in messages %}{{ m.content * 100000000 }}{% endfor %}",
  "{{ raise_exception('no') }}",
  "{% for m in messages %}{{ m['content'] }}{% endfor %}",
  "",
  "{{",
];

const PROMPT_TEXT = ["How do I bake bread?", "Write a poem about the sea.", "Explain photosynthesis."];

function writePrompts(rng: Rng, dir: string): { file: string; what: string } {
  const ext = pick(rng, [".json", ".jsonl", ".csv", ".txt"]);
  const file = path.join(dir, `prompts${ext}`);
  let text: string;
  if (ext === ".csv") text = ["instruction,category", ...PROMPT_TEXT.map((p) => `"${p}",misc`)].join("\n") + "\n";
  else if (ext === ".jsonl") text = PROMPT_TEXT.map((p) => JSON.stringify({ instruction: p })).join("\n") + "\n";
  else text = JSON.stringify(PROMPT_TEXT.map((p) => ({ instruction: p, category: "misc" })));
  let what = `valid ${ext}`;
  if (rng.next() < 0.85) {
    if (ext === ".json" && rng.next() < 0.6) {
      const v = JSON.parse(text) as Json;
      what = mutateJson(rng, v, ["instruction", "category"]);
      text = stringify(v);
    } else {
      const m = mutateBytes(rng, Buffer.from(text));
      fs.writeFileSync(file, m.bytes);
      return { file, what: `${ext} ${m.what}` };
    }
  }
  fs.writeFileSync(file, text);
  return { file, what };
}

function writeMutatedDirection(rng: Rng, dir: string, width: number): { file: string; what: string } {
  const file = path.join(dir, "direction.safetensors");
  const d = Float32Array.from({ length: width }, () => rng.normal());
  const ref = rng.next() < 0.5 ? Float32Array.from({ length: width }, () => rng.normal()) : null;
  const r = rng.int(6);
  let what = "valid";
  if (r === 1) {
    d[rng.int(width)] = pick(rng, [NaN, Infinity, -Infinity]);
    what = "a non-finite value";
  }
  if (r === 2) {
    d.fill(0);
    what = "all zeros";
  }
  const meta: Record<string, string> = { layer: String(rng.int(4)), mode: ref ? "affine" : "linear" };
  if (r === 3) {
    meta.layer = pick(rng, ["-1", "99", "x", "1e9", "2.5"]);
    what = `layer ${meta.layer}`;
  }
  if (r === 4) {
    meta.model_type = pick(rng, ["qwen2", "llama"]);
    meta.num_layers = pick(rng, ["4", "5"]);
    what = `metadata ${meta.model_type}/${meta.num_layers}`;
  }
  writeDirection(
    file,
    r === 5
      ? d.subarray(
          0,
          pick(
            rng,
            [1, 63, 65].filter((x) => x <= width),
          ),
        )
      : d,
    ref,
    meta,
  );
  if (r === 5) what = "another width";
  if (rng.next() < 0.4) what += `; ${mutateSafetensors(rng, file)}`;
  return { file, what };
}

/** Write case `index` of `seed` under `root` (its own folder) from the valid model `base`. */
export function makeCase(seed: number, index: number, root: string, base: string, width: number): FuzzCase {
  const rng = new Rng((seed * 1_000_003 + index * 7919) >>> 0);
  const target = TARGETS[index % TARGETS.length];
  const dir = path.join(root, `case-${index}`);
  const model = path.join(dir, "model");
  fs.rmSync(dir, { recursive: true, force: true });
  let mutation: string;
  let file: string | undefined;
  if (target === "prompts" || target === "direction") {
    fs.mkdirSync(dir, { recursive: true });
    const w = target === "prompts" ? writePrompts(rng, dir) : writeMutatedDirection(rng, dir, width);
    file = w.file;
    mutation = w.what;
    return { index, target, mutation, model: base, file };
  }
  copyModel(base, model);
  if (target === "config") mutation = mutateJsonFile(rng, path.join(model, "config.json"), CONFIG_KEYS);
  else if (target === "tokenizer")
    mutation = mutateJsonFile(rng, path.join(model, "tokenizer.json"), [
      "id",
      "type",
      "post_processor",
      "normalizer",
      "pre_tokenizer",
      "merges",
      "added_tokens",
      "special",
    ]);
  else if (target === "tokenizer_config") {
    const tc = path.join(model, "tokenizer_config.json");
    if (rng.next() < 0.25) {
      const v = JSON.parse(fs.readFileSync(tc, "utf8")) as Record<string, Json>;
      v.chat_template = pick(rng, HOSTILE_TEMPLATES);
      fs.writeFileSync(tc, JSON.stringify(v));
      mutation = `chat_template → ${String(v.chat_template).slice(0, 50)}`;
    } else mutation = mutateJsonFile(rng, tc, ["chat_template", "bos_token", "eos_token", "added_tokens_decoder"]);
  } else mutation = mutateSafetensors(rng, path.join(model, "model.safetensors"));
  return { index, target, mutation, model, file };
}
