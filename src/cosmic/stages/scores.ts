/**
 * Stage 3: every candidate's scores — COSMIC's refusal, steering and KL scores, and the
 * substring baseline's bypass and induce log-odds under the same interventions. Finished
 * layers are kept in a partial file, so an interrupted stage resumes where it stopped.
 */
import type { Engine } from "../../engine/engine.js";
import type { PromptRecord } from "../../data/prompts.js";
import type { Mode } from "../modes.js";
import type { RunSummary, Timings } from "../pipeline.js";
import {
  cleanResult,
  CostSplit,
  engineMeter,
  PassSchedule,
  prepareScoringSet,
  RunNeeds,
  runCandidates,
  RunResult,
  Schedule,
  ScoringSet,
  Tally,
} from "../scoring.js";
import { CandidateRow, firstPrunedLayer, key, leadingCandidate, scoredPositions, selectionOptions } from "../select.js";
import type { Stage, StageContext } from "../stage.js";
import { dot, normalize } from "../vec.js";
import { candidateEdits, Directions } from "./directions.js";
import { formatFlops, formatSeconds, scoringFlops } from "../estimate.js";
import { promptRate } from "../calibration.js";
import { hashOf } from "../run-store.js";

export interface ScoresInputs {
  /** the key of the directions stage the candidates come from */
  directions: string;
  lLow: number[];
  harmful: PromptRecord[];
  harmless: PromptRecord[];
  /** the system message the scores see (the selection scope's) */
  system: string | null;
  mode: Mode;
  refusalTokens: number[];
  schedule: Schedule;
  /** score only the last N EOI positions (null: all) */
  scorePositions: number | null;
  /** the selection's filters, which the lazy schedule needs (absent under the others: their keys stay as they were) */
  lazy?: { klThreshold: number; pruneLayers: number };
}

export interface Scores {
  cosmic: CandidateRow[];
  substring: CandidateRow[];
  scoring: RunSummary["scoring"];
  timings: Timings;
}

const COSMIC_FILE = "select_direction/direction_evaluations.json";
const SUBSTRING_FILE = "select_direction_substring/direction_evaluations.json";
const SCORING_FILE = "select_direction/scoring.json";
const TIMINGS_FILE = "timings.json";
const PARTIAL_FILE = "select_direction/.partial-scores.json";

interface Partial {
  key: string;
  layers: Record<string, { cos: CandidateRow[]; sub: CandidateRow[] }>;
  /** the lazy schedule's KL scores ("position:layer"), computed after the layers, with their cost */
  kl?: Record<string, { kl: number } & Tally>;
  cosmic: Tally;
  substring: Tally;
}

/** The clean passes and what every candidate is compared with. */
interface Baseline {
  harm: ScoringSet;
  harmless: ScoringSet;
  cleanHarm: RunResult;
  cleanHarmless: RunResult;
  /** the clean runs' pooled L_low outputs, normalised: b+ (harmful) and b− (harmless) */
  bPlus: Float64Array;
  bMinus: Float64Array;
}

async function baseline(engine: Engine, i: ScoresInputs, ctx: StageContext): Promise<Baseline> {
  const { options: options } = ctx;
  const d = engine.spec.hiddenSize;
  const V = engine.spec.vocabSize;
  const system = i.system ?? undefined;
  options.progress("scoring: clean pass", 0, 2);
  const harm = await prepareScoringSet(engine, ctx.encode(i.harmful, system), options.batchSize);
  options.progress("scoring: clean pass", 1, 2);
  const harmless = await prepareScoringSet(engine, ctx.encode(i.harmless, system), options.batchSize);
  options.progress("scoring: clean pass", 2, 2);
  const needs: RunNeeds = { poolLayers: i.lLow, kl: false, refusalTokens: i.refusalTokens };
  const cleanHarm = cleanResult(harm, needs, d, V);
  const cleanHarmless = cleanResult(harmless, needs, d, V);
  return {
    harm,
    harmless,
    cleanHarm,
    cleanHarmless,
    bPlus: normalize(cleanHarm.pooled!),
    bMinus: normalize(cleanHarmless.pooled!),
  };
}

/** One layer's candidates (the live ones run; zero ones take the clean run's scores). */
async function scoreLayer(
  engine: Engine,
  l: number,
  i: ScoresInputs,
  dirs: Directions,
  zero: Set<string>,
  b: Baseline,
  acc: Partial,
): Promise<{ cos: CandidateRow[]; sub: CandidateRow[] }> {
  const L = engine.numLayers;
  const d = engine.spec.hiddenSize;
  const P = dirs.r.length / (L * d);
  const positions = scoredPositions(P, i.scorePositions);
  const cos: CandidateRow[] = [];
  const sub: CandidateRow[] = [];
  const live: number[] = [];
  for (let k = P - positions; k < P; k++) {
    if (zero.has(key(k - P, l))) {
      // A zero direction edits nothing: its scores are the clean run's.
      const base = { position: k - P, layer: l, kl_div_score: 0 };
      cos.push({
        ...base,
        refusal_score: dot(normalize(b.cleanHarm.pooled!), b.bMinus),
        steering_score: dot(normalize(b.cleanHarmless.pooled!), b.bPlus),
      });
      sub.push({ ...base, refusal_score: b.cleanHarm.logOdds!, steering_score: b.cleanHarmless.logOdds! });
    } else live.push(k);
  }
  if (live.length) {
    const ivs = live.map((k) => candidateEdits(dirs, i.mode, k - P, l, L, d));
    const pass: PassSchedule = i.schedule === "naive" ? "naive" : "fast";
    const run: CandidateRunner = (set, which, needs, cost, only) =>
      runCandidates(
        engine,
        set,
        (only ?? live.map((_, j) => j)).map((j) => (which === "ablate" ? ivs[j].ablate : ivs[j].add(1))),
        needs,
        pass,
        cost,
      );
    if (i.lazy) {
      const scored = await lazyPasses(engine, l, i, b, run, live.length, acc);
      live.forEach((k, j) => {
        const base = { position: k - P, layer: l, kl_div_score: null };
        cos.push({ ...base, refusal_score: scored.refusal[j], steering_score: scored.steering[j] });
        sub.push({ ...base, refusal_score: scored.bypass[j], steering_score: scored.induce[j] });
      });
    } else {
      const [abl, add, bypass, induce] = await sharedPasses(engine, i, b, run, acc);
      // COSMIC's KL: ablation on harmless to the logits.
      const [kl] = await timed(engine, acc.cosmic, async () => [
        await run(b.harmless, "ablate", { poolLayers: [], kl: true, refusalTokens: null }),
      ]);
      live.forEach((k, j) => {
        const base = { position: k - P, layer: l, kl_div_score: kl[j].kl! };
        cos.push({
          ...base,
          refusal_score: dot(normalize(abl[j].pooled!), b.bMinus),
          steering_score: dot(normalize(add[j].pooled!), b.bPlus),
        });
        sub.push({ ...base, refusal_score: bypass[j].logOdds!, steering_score: induce[j].logOdds! });
      });
    }
  }
  const byPos = (x: CandidateRow, y: CandidateRow) => x.position - y.position;
  return { cos: cos.sort(byPos), sub: sub.sort(byPos) };
}

/**
 * The lazy schedule's passes at layer `l` for its `n` live candidates: COSMIC's refusal and
 * steering scores of every one, and the substring baseline's scores only where selection can
 * use them. Layers the selection prunes get no baseline score; elsewhere the addition on
 * harmless runs to the logits (the induce score) and the ablation on harmful does (the bypass
 * score) only for candidates whose induce score is positive, the others being filtered whatever
 * their bypass score. Nothing here computes a KL score (scoresStage does, for the leading candidates).
 */
async function lazyPasses(
  engine: Engine,
  l: number,
  i: ScoresInputs,
  b: Baseline,
  run: CandidateRunner,
  n: number,
  acc: Partial,
): Promise<{ refusal: number[]; steering: number[]; bypass: (number | null)[]; induce: (number | null)[] }> {
  const { pool, both, cost } = passNeeds(i, acc);
  const kept = l < firstPrunedLayer(engine.numLayers, i.lazy!.pruneLayers);
  const add = await run(b.harmless, "add", kept ? both : pool, cost);
  const induce = add.map((r) => (kept ? r.logOdds! : null));
  const all = Array.from({ length: n }, (_, j) => j);
  const bypassed = all.filter((j) => induce[j] !== null && induce[j]! > 0);
  const pooledOnly = all.filter((j) => !bypassed.includes(j));
  const abl: RunResult[] = new Array(n);
  if (bypassed.length) (await run(b.harm, "ablate", both, cost, bypassed)).forEach((r, x) => (abl[bypassed[x]] = r));
  if (pooledOnly.length)
    (await run(b.harm, "ablate", pool, cost, pooledOnly)).forEach((r, x) => (abl[pooledOnly[x]] = r));
  return {
    refusal: abl.map((r) => dot(normalize(r.pooled!), b.bMinus)),
    steering: add.map((r) => dot(normalize(r.pooled!), b.bPlus)),
    bypass: abl.map((r, j) => (bypassed.includes(j) ? r.logOdds! : null)),
    induce,
  };
}

/** Runs a layer's live candidates (`only`: these of them, by index) over a set. */
type CandidateRunner = (
  set: ScoringSet,
  which: "ablate" | "add",
  needs: RunNeeds,
  cost?: CostSplit,
  only?: number[],
) => Promise<RunResult[]>;

/**
 * What a pass reads — the pooled L_low outputs (`pool`), or those and the refusal-token log-odds
 * (`both`) — and, for a pass serving both methods, its cost split at max L_low (`cost`).
 */
function passNeeds(i: ScoresInputs, acc: Partial): { pool: RunNeeds; both: RunNeeds; cost: CostSplit } {
  return {
    pool: { poolLayers: i.lLow, kl: false, refusalTokens: null },
    both: { poolLayers: i.lLow, kl: false, refusalTokens: i.refusalTokens },
    cost: { splitAfter: Math.max(...i.lLow), before: acc.cosmic, after: acc.substring },
  };
}

/**
 * COSMIC's pooled L_low outputs and the substring baseline's refusal-token log-odds come from the
 * same interventions on the same prompts (ablation on harmful, addition on harmless). The fast
 * schedule runs each once: blocks up to max L_low are charged to COSMIC, the rest to the
 * baseline; the scores are the separate passes' to the bit. The naive schedule keeps the
 * reference's separate full passes.
 */
async function sharedPasses(
  engine: Engine,
  i: ScoresInputs,
  b: Baseline,
  run: CandidateRunner,
  acc: Partial,
): Promise<[RunResult[], RunResult[], RunResult[], RunResult[]]> {
  const { pool, both, cost } = passNeeds(i, acc);
  const odds: RunNeeds = { poolLayers: [], kl: false, refusalTokens: i.refusalTokens };
  if (i.schedule === "naive") {
    const [abl, add] = await timed(engine, acc.cosmic, async () => [
      await run(b.harm, "ablate", pool),
      await run(b.harmless, "add", pool),
    ]);
    const [bypass, induce] = await timed(engine, acc.substring, async () => [
      await run(b.harm, "ablate", odds),
      await run(b.harmless, "add", odds),
    ]);
    return [abl, add, bypass, induce];
  }
  const abl = await run(b.harm, "ablate", both, cost);
  const add = await run(b.harmless, "add", both, cost);
  return [abl, add, abl, add];
}

async function timed<T>(engine: Engine, acc: Tally, f: () => Promise<T>): Promise<T> {
  const charge = engineMeter(engine);
  const out = await f();
  charge(acc);
  return out;
}

/** The candidates that run at each layer (zero directions take the clean run's scores). */
export function liveCandidates(L: number, P: number, scorePositions: number | null, zero: Set<string>): number[] {
  const positions = scoredPositions(P, scorePositions);
  return Array.from({ length: L }, (_, l) => {
    let n = 0;
    for (let k = P - positions; k < P; k++) if (!zero.has(key(k - P, l))) n++;
    return n;
  });
}

/**
 * One line before the long part: the candidates' FLOPs and the time they take at the rate of
 * block calls shaped like theirs, timed now (`cleanRate`, the clean passes' own, is printed
 * beside it). Returns those FLOPs (the engine's own count of them: test/estimate.test.ts).
 */
async function announce(
  engine: Engine,
  i: ScoresInputs,
  ctx: StageContext,
  dirs: Directions,
  zero: Set<string>,
  b: Baseline,
  cleanRate: number,
): Promise<{ left: number; perLayer: number[] }> {
  const spec = engine.spec;
  const P = dirs.r.length / (spec.numLayers * spec.hiddenSize);
  const live = liveCandidates(spec.numLayers, P, i.scorePositions, zero);
  // The prompts' token counts, from the batches the clean passes just ran.
  const lengths = (set: ScoringSet) => set.batches.flatMap((sb) => sb.tokens.map((t) => t.length));
  const flopsOf = (liveAt: number[], schedule = i.schedule) => {
    const plan = scoringFlops(
      spec,
      lengths(b.harm),
      lengths(b.harmless),
      ctx.options.batchSize,
      i.lLow,
      i.mode,
      schedule,
      liveAt,
      i.lazy?.pruneLayers ?? ctx.options.pruneLayers,
    );
    return { ...plan, left: plan.cosmic + plan.substring };
  };
  const plan = flopsOf(live);
  const left = plan.left;
  // Each layer's share, so that the progress can take what the lazy schedule skips off its bound.
  const perLayer = i.lazy ? live.map((_, l) => flopsOf(live.map((c, k) => (k === l ? c : 0))).left) : [];
  const candidates = live.reduce((a, c) => a + c, 0);
  if (candidates === 0) return { left, perLayer };
  // A layer's candidates run stacked, each on every prompt of a batch, in calls of at most the
  // engine's tokens per call: time a call of that shape (at a timing budget of ~2 % of the work).
  const batches = [...b.harm.batches, ...b.harmless.batches];
  const T = Math.max(1, Math.round(batches.reduce((a, sb) => a + sb.batch.length, 0) / batches.length));
  const stacked = Math.max(...live) * Math.max(...batches.map((sb) => sb.tokens.length));
  const rows = Math.max(1, Math.min(stacked, Math.floor(engine.tokensPerCall / T)));
  const budget = Math.min(2, Math.max(0.2, (0.02 * left) / cleanRate));
  const rate = await promptRate(engine, rows, T, budget);
  // The lazy schedule's figure is a bound, not an estimate to hold the stage's time against.
  if (!i.lazy) ctx.clock.estimate("scores", left / rate);
  ctx.options.log(
    `scoring: ${candidates} candidates, ${i.lazy ? "at most " : ""}${formatFlops(left)} to go (COSMIC ` +
      `${formatFlops(plan.cosmic)}, substring baseline ${formatFlops(plan.substring)}): about ` +
      `${formatSeconds(left / rate)} at ${(rate / 1e9).toFixed(0)} GFLOP/s (timed now on block calls of their shape, ` +
      `${rows} × ${T} tokens; the clean passes ran at ${(cleanRate / 1e9).toFixed(0)})` +
      (i.lazy
        ? "; lazy schedule: bypass scores only where the induce score is positive, then the KL scores of the " +
          "leading candidates alone, one pass each"
        : i.schedule === "fast"
          ? `; --schedule lazy would select the same with at most ${formatFlops(flopsOf(live, "lazy").left)}`
          : ""),
  );
  return { left, perLayer };
}

/**
 * The lazy schedule's KL scores: for each method in turn, the KL score of the candidate it would
 * select if every KL not yet computed passed the filter, until that candidate's is known (then it
 * is the selection's: select.ts leadingCandidate). A KL score is the same for both methods (the
 * ablation on harmless), so each is computed once and written into both tables. Each is kept in
 * the partial file as it comes, with its cost, whatever the KL threshold: a rerun with another
 * threshold reads the ones it reaches there. The tables and tallies hold only the KL scores this
 * threshold's loops reach, so they are what a fresh run gives.
 */
async function lazyKl(
  engine: Engine,
  i: ScoresInputs,
  ctx: StageContext,
  dirs: Directions,
  zero: Set<string>,
  b: Baseline,
  partial: Partial,
  cosmic: CandidateRow[],
  substring: CandidateRow[],
): Promise<{ cosmic: CandidateRow[]; substring: CandidateRow[]; tallies: Record<LazyMethod, Tally> }> {
  const L = engine.numLayers;
  const d = engine.spec.hiddenSize;
  const P = dirs.r.length / (L * d);
  const kl = (partial.kl ??= {});
  const opts = selectionOptions(L, P, i.scorePositions, i.lazy!, zero);
  // The KL scores this threshold's loops reached, and the method that reached each first.
  const reached = new Map<string, LazyMethod>();
  const fill = (rows: CandidateRow[]) =>
    rows.map((r) => {
      const k = key(r.position, r.layer);
      return r.kl_div_score === null && reached.has(k) ? { ...r, kl_div_score: kl[k].kl } : r;
    });
  for (const method of ["cosmic", "substring"] as const) {
    for (;;) {
      const lead = leadingCandidate(method, fill(method === "cosmic" ? cosmic : substring), opts);
      if (!lead || lead.kl_div_score !== null) break;
      const k = key(lead.position, lead.layer);
      reached.set(k, method);
      if (kl[k]) continue;
      const iv = candidateEdits(dirs, i.mode, lead.position, lead.layer, L, d);
      const needs: RunNeeds = { poolLayers: [], kl: true, refusalTokens: null };
      const cost: Tally = { seconds: 0, flops: 0 };
      const [r] = await timed(engine, cost, () => runCandidates(engine, b.harmless, [iv.ablate], needs, "fast"));
      kl[k] = { kl: r.kl!, ...cost };
      ctx.store.writeJson(PARTIAL_FILE, partial);
      ctx.options.log(
        `scoring (lazy): KL score of (${lead.position}, ${lead.layer}), ${method === "cosmic" ? "COSMIC" : "the substring baseline"}'s ` +
          `leading candidate: ${r.kl!.toFixed(4)} (${r.kl! > opts.klThreshold ? "filtered" : "passes"})`,
      );
    }
  }
  // Written even when nothing was added, so that the stage's record lists it and keeps it for the
  // next threshold.
  ctx.store.writeJson(PARTIAL_FILE, partial);
  const tallies = { cosmic: { ...partial.cosmic }, substring: { ...partial.substring } };
  for (const [k, method] of reached) {
    tallies[method].seconds += kl[k].seconds;
    tallies[method].flops += kl[k].flops;
  }
  return { cosmic: fill(cosmic), substring: fill(substring), tallies };
}

type LazyMethod = "cosmic" | "substring";

/** The unit a progress count of `total` FLOPs is shown in: at least 1,000 steps when it can. */
export function flopUnit(total: number): { name: string; size: number } {
  for (const [name, size] of [
    ["TFLOP", 1e12],
    ["GFLOP", 1e9],
  ] as const)
    if (total / size >= 1000) return { name, size };
  return { name: "MFLOP", size: 1e6 };
}

/**
 * The candidates' progress in FLOPs done (the engine's count, every second and after each layer)
 * rather than in layers: a layer's affine passes start at its block, so early layers cost many
 * times the last ones and a bar counting layers would put its ETA far too late.
 */
function flopProgress(engine: Engine, ctx: StageContext, total: number, doneBefore: number) {
  const unit = flopUnit(total);
  const label = `scoring (${unit.name})`;
  const f0 = engine.flops;
  let of = Math.max(1, Math.round(total / unit.size));
  const report = () => {
    const done = Math.min(total, doneBefore + engine.flops - f0);
    ctx.options.progress(label, Math.min(of, Math.round(done / unit.size)), of);
  };
  report();
  const timer = setInterval(report, 1000);
  return {
    tick: report,
    /** a new total (the lazy schedule's bound, less what it skipped) */
    setTotal: (t: number) => {
      total = t;
      of = Math.max(1, Math.round(total / unit.size));
      report();
    },
    done: () => ctx.options.progress(label, of, of),
    stop: () => clearInterval(timer),
  };
}

/**
 * What the scores stage's results depend on: its key, except under the lazy schedule, whose
 * layer scores and KL scores do not depend on the KL threshold (only which of them its tables
 * hold does). Its partial file is keyed by it, and so are the stages after it (edit sizes,
 * evaluation), which depend on the threshold only through the selections they are also keyed by.
 */
export function scoresIdentity(i: ScoresInputs, stageKey: string): string {
  return i.lazy ? hashOf("scores partial", { ...i, lazy: { pruneLayers: i.lazy.pruneLayers } }) : stageKey;
}

/** The scores stage for these candidate directions (`zero`: the candidates that are zero vectors). */
export function scoresStage(dirs: Directions, zero: Set<string>): Stage<ScoresInputs, Scores> {
  return {
    name: "scores",
    files: [COSMIC_FILE, SUBSTRING_FILE, SCORING_FILE, TIMINGS_FILE],

    async compute(i, ctx, stageKey) {
      const engine = await ctx.engine();
      const L = engine.numLayers;
      const charge = engineMeter(engine);
      const b = await baseline(engine, i, ctx);
      const clean: Tally = { seconds: 0, flops: 0 };
      charge(clean);
      const plan = await announce(engine, i, ctx, dirs, zero, b, clean.flops / clean.seconds);
      let total = plan.left;
      // Partial results survive an interruption: finished layers are not scored again. The lazy
      // schedule's do not depend on the KL threshold (only which KL scores its loops reach does),
      // so a rerun with another threshold starts from them too.
      const partialKey = scoresIdentity(i, stageKey);
      let partial: Partial = {
        key: partialKey,
        layers: {},
        cosmic: { seconds: 0, flops: 0 },
        substring: { seconds: 0, flops: 0 },
      };
      try {
        const p = ctx.store.readJson<Partial>(PARTIAL_FILE);
        if (p.key === partialKey) partial = p;
      } catch {
        /* none yet */
      }
      const bar = flopProgress(engine, ctx, total, partial.cosmic.flops + partial.substring.flops);
      try {
        for (let l = 0; l < L; l++) {
          if (!partial.layers[l]) {
            const f0 = engine.flops;
            partial.layers[l] = await scoreLayer(engine, l, i, dirs, zero, b, partial);
            ctx.store.writeJson(PARTIAL_FILE, partial);
            // The lazy bound counted a bypass pass for every unpruned candidate: take off what was skipped.
            if (i.lazy) bar.setTotal((total -= plan.perLayer[l] - (engine.flops - f0)));
          }
          bar.tick();
        }
        bar.done();
      } finally {
        bar.stop();
      }
      // The reference lists candidates position-major: (−P, 0), (−P, 1), …
      const order = (x: CandidateRow, y: CandidateRow) => x.position - y.position || x.layer - y.layer;
      let cosmic = Object.values(partial.layers)
        .flatMap((x) => x.cos)
        .sort(order);
      let substring = Object.values(partial.layers)
        .flatMap((x) => x.sub)
        .sort(order);
      let tallies = { cosmic: partial.cosmic, substring: partial.substring };
      if (i.lazy)
        ({ cosmic, substring, tallies } = await lazyKl(engine, i, ctx, dirs, zero, b, partial, cosmic, substring));
      return {
        cosmic,
        substring,
        scoring: { flops: tallies.cosmic.flops, schedule: i.schedule, substring_flops: tallies.substring.flops },
        timings: { scoring_seconds: tallies.cosmic.seconds, substring_scoring_seconds: tallies.substring.seconds },
      };
    },

    write(out, ctx) {
      ctx.store.writeJson(COSMIC_FILE, out.cosmic);
      ctx.store.writeJson(SUBSTRING_FILE, out.substring);
      ctx.store.writeJson(SCORING_FILE, out.scoring);
      ctx.store.writeJson(TIMINGS_FILE, out.timings);
    },

    read(ctx) {
      const scoring = ctx.store.readJson<Scores["scoring"]>(SCORING_FILE);
      // JSON has no NaN: a NaN score was written as null. Only the lazy schedule leaves scores out,
      // so elsewhere a null reads back as the NaN it was (and the selection's NaN filter takes it).
      const rows = (file: string) => {
        const r = ctx.store.readJson<CandidateRow[]>(file);
        if (scoring.schedule === "lazy") return r;
        const nan = (v: number | null) => v ?? NaN;
        return r.map((c) => ({
          ...c,
          refusal_score: nan(c.refusal_score),
          steering_score: nan(c.steering_score),
          kl_div_score: nan(c.kl_div_score),
        }));
      };
      return {
        cosmic: rows(COSMIC_FILE),
        substring: rows(SUBSTRING_FILE),
        scoring,
        timings: ctx.store.readJson(TIMINGS_FILE),
      };
    },
  };
}
