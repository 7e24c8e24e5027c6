import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { ModelFolder } from "../src/model/folder.js";
import { Engine } from "../src/engine/engine.js";
import { capture } from "../src/engine/forward.js";
import { ablation, activationAddition, affineEdit, unit } from "../src/engine/interventions.js";
import { editSizes, relativeEdit } from "../src/cosmic/edit-size.js";
import { FIXTURES } from "./helpers.js";

test("relativeEdit: ‖Δx‖/‖x‖ of the block-input hook on hand-made vectors", () => {
  const x = Float32Array.from([3, 4, 0]);
  const u = Float32Array.from([1, 0, 0]);
  // ablation: Δ = −3u
  assert.equal(relativeEdit(x, 0, 3, u, null), 3 / 5);
  // addition only: Δ = a
  assert.equal(relativeEdit(x, 0, 3, null, Float32Array.from([0, 0, 2])), 2 / 5);
  // ablation plus addition off the direction: Δ = (−3, 0, 2)
  assert.ok(Math.abs(relativeEdit(x, 0, 3, u, Float32Array.from([0, 0, 2])) - Math.sqrt(13) / 5) < 1e-12);
  // ACE with the reference at 3 along u: nothing moves; at 8: Δ = 5u
  assert.equal(relativeEdit(x, 0, 3, u, Float32Array.from([3, 0, 0])), 0);
  assert.equal(relativeEdit(x, 0, 3, u, Float32Array.from([8, 0, 0])), 1);
  // an offset into a longer array, and no hook at all
  assert.equal(relativeEdit(Float32Array.from([9, 9, 3, 4, 0]), 2, 3, u, null), 3 / 5);
  assert.equal(relativeEdit(x, 0, 3, null, null), 0);
});

test("editSizes equal the same figure computed from captured block inputs, prompt by prompt (padding skipped)", async () => {
  const folder = ModelFolder.open(path.join(FIXTURES, "llama"));
  const engine = await Engine.load(folder);
  const L = engine.numLayers;
  const d = engine.spec.hiddenSize;
  const P = 3;
  // Different lengths, so the batched pass pads; capture below runs each prompt alone.
  const prompts = [
    [5, 9, 14, 2, 7, 30, 11],
    [8, 3, 21, 40, 6],
    [12, 13, 14, 15, 16, 17, 18, 19, 20],
  ];
  const r = Float32Array.from({ length: d }, (_, i) => Math.sin(2 * i + 1));
  const mu = Float32Array.from(r, (v, i) => v / 2 + Math.cos(3 * i) / 2);
  const layer = 2;
  const ivs = [
    ablation(r, L),
    activationAddition(r, layer, 1, L),
    affineEdit(r, mu, layer, 0, L),
    affineEdit(r, mu, layer, 1, L),
  ];
  const [got] = await editSizes(engine, prompts, P, [{ layer, interventions: ivs }], 2);
  const want = ivs.map(() => ({ eoi: 0, other: 0 }));
  let nEoi = 0;
  let nOther = 0;
  for (const p of prompts) {
    const c = await capture(engine, [p], { residPrePositions: p.length });
    for (let j = 0; j < p.length; j++) {
      const off = (layer * p.length + j) * d;
      const eoi = j >= p.length - P;
      if (eoi) nEoi++;
      else nOther++;
      ivs.forEach((iv, k) => {
        // Δx written out from the intervention's definition, not from relativeEdit.
        const x = c.residPre!.subarray(off, off + d);
        const u = iv.preDir[layer];
        const a = iv.preAdd[layer];
        const xu = u ? x.reduce((s, v, i) => s + v * u[i], 0) : 0;
        let dd = 0;
        let xx = 0;
        for (let i = 0; i < d; i++) {
          const delta = -xu * (u ? u[i] : 0) + (a ? a[i] : 0);
          dd += delta * delta;
          xx += x[i] * x[i];
        }
        const e = Math.sqrt(dd / xx);
        if (eoi) want[k].eoi += e;
        else want[k].other += e;
      });
    }
  }
  got.forEach((g, k) => {
    for (const where of ["eoi", "other"] as const) {
      const w = want[k][where] / (where === "eoi" ? nEoi : nOther);
      assert.ok(w > 0, "never compare against zero");
      assert.ok(Math.abs(g[where] - w) <= 1e-5 * w, `intervention ${k} ${where}: ${g[where]} vs ${w}`);
    }
  });
  // The inputs make ACE's ablation differ from a plain one (its reference μ·r̂ is off zero).
  const uu = unit(r);
  assert.ok(Math.abs(mu.reduce((s, v, i) => s + v * uu[i], 0)) > 0.1, "the reference is off zero along r̂");
  assert.notEqual(got[0].other, got[2].other);
  // Probes at two layers share one pass and give what each gives alone.
  const shallow = { layer: 1, interventions: [ivs[0]] };
  const both = await editSizes(engine, prompts, P, [shallow, { layer, interventions: ivs }], 2);
  assert.deepEqual(both[1], got);
  assert.deepEqual(both[0], (await editSizes(engine, prompts, P, [shallow], 2))[0]);
  await engine.release();
});
