/**
 * The lazy schedule's claim, on the selection alone: computing KL scores only for each method's
 * leading candidate, until its KL is known, selects what computing every score selects. Checked
 * on seeded random score tables built to make the filters bite (ties included), and on the
 * score tables of the authors' runs on five real chat models.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import {
  CandidateRow,
  CandidateScore,
  firstPrunedLayer,
  key,
  leadingCandidate,
  selectCosmic,
  selectSubstring,
  SelectionOptions,
  UNSCORED,
} from "../src/cosmic/select.js";
import { CosmicError } from "../src/errors.js";
import { Rng } from "../src/util/random.js";
import { REFERENCE_RUNS } from "./helpers.js";

type Method = "cosmic" | "substring";
const select = (m: Method) => (m === "cosmic" ? selectCosmic : selectSubstring);

/** What the lazy schedule leaves unscored: every KL, and the bypass score where induce ≤ 0 or the layer is pruned. */
function lazyTable(full: CandidateScore[], method: Method, opts: SelectionOptions): CandidateRow[] {
  const maxLayer = firstPrunedLayer(opts.numLayers, opts.pruneLayers);
  return full.map((s) => {
    if (opts.zeroNorm.has(key(s.position, s.layer))) return s;
    if (method === "cosmic") return { ...s, kl_div_score: null };
    const pruned = s.layer >= maxLayer;
    return {
      ...s,
      kl_div_score: null,
      refusal_score: pruned || !(s.steering_score > 0) ? null : s.refusal_score,
      steering_score: pruned ? null : s.steering_score,
    };
  });
}

/** The lazy schedule's KL loop (stages/scores.ts lazyKl), with `full` standing in for the passes. */
function lazySelect(full: CandidateScore[], method: Method, opts: SelectionOptions) {
  const rows = lazyTable(full, method, opts);
  const truth = new Map(full.map((s) => [key(s.position, s.layer), s.kl_div_score]));
  let computed = 0;
  for (;;) {
    const lead = leadingCandidate(method, rows, opts);
    if (!lead || lead.kl_div_score !== null) break;
    lead.kl_div_score = truth.get(key(lead.position, lead.layer))!;
    computed++;
  }
  return { rows, computed };
}

function outcome(method: Method, rows: CandidateRow[], opts: SelectionOptions): string {
  try {
    const s = select(method)(rows, opts).selected;
    return JSON.stringify(s);
  } catch (e) {
    assert.ok(e instanceof CosmicError);
    return "nothing survives";
  }
}

function randomTable(rng: Rng, P: number, L: number): CandidateScore[] {
  // Coarse values make ties; a third of the KL scores fail a 0.1 threshold.
  const coarse = () => Math.round(rng.next() * 8) / 8;
  const out: CandidateScore[] = [];
  for (let p = -P; p <= -1; p++)
    for (let l = 0; l < L; l++)
      out.push({
        position: p,
        layer: l,
        refusal_score: rng.next() < 0.02 ? NaN : coarse() - 0.3,
        steering_score: coarse() - 0.4,
        kl_div_score: rng.next() < 0.35 ? 0.1 + rng.next() : rng.next() * 0.1,
      });
  return out;
}

test("lazy KL scoring selects what full scoring selects (600 seeded random tables, both methods)", () => {
  const rng = new Rng(20261208);
  let computedSum = 0;
  let kls = 0;
  let nothing = 0;
  for (let t = 0; t < 600; t++) {
    const P = 1 + rng.int(5);
    const L = 2 + rng.int(12);
    const full = randomTable(rng, P, L);
    const opts: SelectionOptions = {
      numLayers: L,
      numPositions: P,
      klThreshold: 0.1,
      pruneLayers: 0.2,
      zeroNorm: new Set(rng.next() < 0.5 ? Array.from({ length: P }, (_, k) => key(k - P, 0)) : []),
    };
    for (const method of ["cosmic", "substring"] as const) {
      const { rows, computed } = lazySelect(full, method, opts);
      const want = outcome(method, full, opts);
      assert.equal(outcome(method, rows, opts), want, `table ${t}, ${method}`);
      if (want === "nothing survives") nothing++;
      computedSum += computed;
      kls += full.length;
      // The candidates left unscored are counted as such, never kept.
      if (want !== "nothing survives") {
        const sel = select(method)(rows, opts);
        assert.ok(sel.filtered.every((s) => s.kl_div_score !== null && s.refusal_score !== null));
      }
    }
  }
  // The tables exercise both outcomes, and the lazy loop computes far fewer KL scores.
  assert.ok(nothing > 20 && nothing < 1000, `nothing survives in ${nothing} of 1,200`);
  assert.ok(computedSum < kls / 4, `${computedSum} KL scores computed of ${kls}`);
});

test("lazy KL scoring on the authors' score tables of five real chat models: same selection, few KL passes", () => {
  for (const model of fs.readdirSync(REFERENCE_RUNS)) {
    const file = path.join(REFERENCE_RUNS, model, "direction_evaluations.json");
    if (!fs.existsSync(file)) continue;
    // Python's json writes NaN, which JSON.parse does not read.
    const text = fs.readFileSync(file, "utf8").replace(/\bNaN\b/g, '"NaN"');
    const full = JSON.parse(text, (_, v) => (v === "NaN" ? NaN : v)) as CandidateScore[];
    const L = Math.max(...full.map((s) => s.layer)) + 1;
    const P = new Set(full.map((s) => s.position)).size;
    const opts: SelectionOptions = {
      numLayers: L,
      numPositions: P,
      klThreshold: 0.1,
      pruneLayers: 0.2,
      zeroNorm: new Set(),
    };
    // These are the substring baseline's scores (bypass, induce, KL).
    const { rows, computed } = lazySelect(full, "substring", opts);
    const sel = selectSubstring(rows, opts);
    assert.equal(JSON.stringify(sel.selected), JSON.stringify(selectSubstring(full, opts).selected), model);
    assert.ok(computed <= 20, `${model}: ${computed} KL passes of ${full.length}`);
    console.log(`${model}: ${computed} KL scores of ${full.length} candidates`);
    assert.ok((sel.removed[UNSCORED] ?? 0) > 0, model);
  }
});
