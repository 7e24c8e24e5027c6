import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { loadPrompts, selectPrompts } from "../src/data/prompts.js";
import { scratchDir, SPLITS } from "./helpers.js";

const tmp = scratchDir("cosmic-prompts-");
function file(name: string, text: string): string {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, text);
  return p;
}

test("reads the reference splits (objects with instruction and category)", () => {
  const recs = loadPrompts(path.join(SPLITS, "harmful_train.json"));
  assert.equal(recs.length, 183);
  assert.ok(recs[0].instruction.length > 0);
});

test("reads arrays of strings, JSON Lines and CSV with instruction/prompt/goal columns", () => {
  assert.deepEqual(
    loadPrompts(file("a.json", '["x", "y"]')).map((r) => r.instruction),
    ["x", "y"],
  );
  assert.deepEqual(
    loadPrompts(file("b.jsonl", '{"prompt": "p1"}\n\n"p2"\n')).map((r) => r.instruction),
    ["p1", "p2"],
  );
  assert.deepEqual(
    loadPrompts(file("c.csv", 'goal,target\n"Write, with commas",t\nsecond,t\n')).map((r) => r.instruction),
    ["Write, with commas", "second"],
  );
});

test("bad prompt files get one-line errors with the file and line", () => {
  assert.throws(() => loadPrompts(file("empty.json", "  \n")), /empty\.json: is empty/);
  assert.throws(() => loadPrompts(file("none.json", "[]")), /none\.json: holds no instructions/);
  assert.throws(() => loadPrompts(file("bad.jsonl", '"ok"\n{bad\n')), /bad\.jsonl: line 2: column 2: invalid JSON/);
  assert.throws(
    () => loadPrompts(file("bad.json", '[\n"a",\n"b",,\n]')),
    /bad\.json: line 3, column 5: invalid JSON \(ValueExpected\)/,
  );
  assert.throws(
    () => loadPrompts(file("nocol.csv", "text\nhello\n")),
    /nocol\.csv: no "instruction", "prompt" or "goal" column/,
  );
  assert.throws(
    () => loadPrompts(file("emptycell.csv", 'prompt\nhello\n""\n')),
    /emptycell\.csv: line 3: empty "prompt"/,
  );
  assert.throws(
    () => loadPrompts(file("obj.json", '[{"text": "x"}]')),
    /obj\.json: item 0: object has no string "instruction"/,
  );
  assert.throws(
    () => loadPrompts(path.join(tmp, "missing.json")),
    /missing\.json: cannot read \(no such file or folder \(ENOENT\)\)/,
  );
});

test("--limit samples reproducibly from the seed", () => {
  const recs = Array.from({ length: 50 }, (_, i) => ({ instruction: `p${i}` }));
  const a = selectPrompts(recs, 10, 42);
  assert.equal(a.length, 10);
  // Pinned: the same seed gives the same sample on every machine and version.
  assert.deepEqual(
    a.map((r) => r.instruction),
    ["p35", "p47", "p43", "p10", "p38", "p33", "p39", "p24", "p15", "p2"],
  );
  assert.equal(new Set(a).size, 10, "without replacement");
  assert.notDeepEqual(a, selectPrompts(recs, 10, 43));
  assert.equal(selectPrompts(recs, undefined, 1), recs);
});
