/**
 * Quantised weights on the committed strong organism: COSMIC's selection is the one float32
 * makes, every candidate's scores stay close, and the run says which weights it used.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { runCommand, runFlags } from "../../src/cli/run.js";
import { readJsonFile } from "../../src/formats/files.js";
import { ROOT, scratchDir } from "../helpers.js";

const STRONG = path.join(ROOT, "organisms", "strong");
const tmp = scratchDir("cosmic-weights-");

interface Scored {
  position: number;
  layer: number;
  refusal_score: number;
  steering_score: number;
  kl_div_score: number;
}

async function selection(weights: "f32" | "int8" | "int4") {
  const out = path.join(tmp, weights);
  const s = await runCommand(
    runFlags({ model: STRONG, out, data: path.join(STRONG, "prompts"), skipEval: true, quiet: true, weights }),
  );
  assert.equal(s.weights, weights);
  const scores = readJsonFile<Scored[]>(path.join(out, "select_direction", "direction_evaluations.json"));
  return { s, scores: new Map(scores.map((c) => [`${c.position}:${c.layer}`, c])) };
}

test("int8 and int4 weights select the float32 direction on the strong organism, with close scores", async () => {
  const f32 = await selection("f32");
  for (const [weights, tol] of [
    ["int8", 0.01],
    ["int4", 0.05],
  ] as const) {
    const q = await selection(weights);
    assert.deepEqual([q.s.cosmic.layer, q.s.cosmic.position], [f32.s.cosmic.layer, f32.s.cosmic.position], weights);
    assert.deepEqual(q.s.L_low, f32.s.L_low, `${weights} L_low`);
    let worst = 0;
    for (const [k, c] of f32.scores) {
      const d = q.scores.get(k)!;
      for (const m of ["refusal_score", "steering_score", "kl_div_score"] as const)
        if (Number.isFinite(c[m])) worst = Math.max(worst, Math.abs(c[m] - d[m]));
    }
    assert.ok(worst <= tol, `${weights}: largest score difference ${worst}`);
  }
});
