import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { FIXTURES } from "./helpers.js";
import { runFuzz } from "./fuzz/runner.js";

// A 200-case slice of `npm run fuzz` (which runs ≥ 2,000): every mutated config, tokenizer,
// safetensors header, prompt file and direction file either runs to finite outputs or stops
// with one clean line — never a stack trace, a signal, a hang or > 2 GiB.
test("fuzz: 200 seeded mutations of model, prompt and direction files end cleanly", async () => {
  const r = await runFuzz({ seed: 1, cases: 200, base: path.join(FIXTURES, "llama"), width: 64 });
  assert.equal(r.cases, 200);
  assert.deepEqual(r.failures, []);
  // Both outcomes occur: the slice exercises the checks and still runs valid files through.
  assert.ok(r.cleanErrors > 20 && r.passes > 20, `${r.cleanErrors} clean errors, ${r.passes} passes`);
});
