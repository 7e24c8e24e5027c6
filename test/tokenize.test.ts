import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { ChatTokenizer } from "../src/tokenize/chat.js";
import { readJsonFile } from "../src/formats/files.js";
import { CosmicError } from "../src/errors.js";
import { ALL_FIXTURES, FIXTURES } from "./helpers.js";

interface InputJson {
  prompts: { instruction: string; rendered: string; input_ids: number[] }[];
}

test("rendered prompts and token ids equal expected/input.json for every family", () => {
  for (const fam of ALL_FIXTURES) {
    const tok = new ChatTokenizer(path.join(FIXTURES, fam));
    const inp = readJsonFile<InputJson>(path.join(FIXTURES, fam, "expected", "input.json"));
    for (const p of inp.prompts) {
      const rendered = tok.formatPrompt(p.instruction);
      assert.equal(rendered, p.rendered, `${fam}: rendered prompt`);
      assert.deepEqual(tok.encode(rendered), p.input_ids, `${fam}: token ids`);
    }
  }
});

test("EOI tokens come from the template and end every formatted prompt", () => {
  const expectText: Record<string, string> = {
    llama: "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    qwen2: "<|im_end|>\n<|im_start|>assistant\n",
    gemma: "<end_of_turn>\n<start_of_turn>model\n",
  };
  for (const fam of ALL_FIXTURES) {
    const tok = new ChatTokenizer(path.join(FIXTURES, fam));
    const eoi = tok.eoiTokens();
    assert.ok(eoi.ids.length >= 1);
    if (expectText[fam]) assert.equal(eoi.text, expectText[fam]);
    const inp = readJsonFile<InputJson>(path.join(FIXTURES, fam, "expected", "input.json"));
    for (const p of inp.prompts)
      assert.deepEqual(p.input_ids.slice(-eoi.ids.length), eoi.ids, `${fam}: prompt ends with EOI tokens`);
  }
});

test("a system message is rendered where the template supports one", () => {
  const tok = new ChatTokenizer(path.join(FIXTURES, "qwen2"));
  const r = tok.formatPrompt("Hi", "Be brief.");
  assert.ok(r.startsWith("<|im_start|>system\nBe brief.<|im_end|>\n"), r);
});

test("a template that rejects the system role gives its own error, naming the file", () => {
  const dir = path.join(FIXTURES, "gemma");
  const tok = new ChatTokenizer(dir);
  assert.throws(
    () => tok.formatPrompt("Hi", "Be brief."),
    (e: unknown) =>
      e instanceof CosmicError &&
      e.message.includes(path.join(dir, "tokenizer_config.json")) &&
      /System role not supported/.test(e.message),
  );
});

test("decoding skips special tokens on request", () => {
  const tok = new ChatTokenizer(path.join(FIXTURES, "llama"));
  const ids = tok.encode("<|eot_id|>ok");
  assert.equal(tok.decode(ids), "<|eot_id|>ok");
  assert.equal(tok.decode(ids, true), "ok");
});
