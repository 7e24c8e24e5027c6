/**
 * `cosmic run`: candidate directions → L_low → refusal, steering and KL scores for every
 * candidate (and the substring baseline's scores) → filters → selection → evaluation.
 * Every stage is resumable (see run-store.ts); the engine is only built when a stage must run.
 */
import path from "node:path";
import { CosmicError } from "../errors.js";
import { SafetensorsFile, writeSafetensors } from "../formats/safetensors.js";
import { writeDirection } from "../formats/direction.js";
import { Engine, Device, nonFinite, preflight } from "../engine/engine.js";
import { Input } from "../formats/outputs.js";
import { ablation, activationAddition, affineEdit, Intervention, norm } from "../engine/interventions.js";
import { ModelFolder } from "../model/folder.js";
import { PromptRecord } from "../data/prompts.js";
import { judgeList } from "../data/refusal-phrases.js";
import { Evaluation, EvaluatedDirection, Evaluator } from "./evaluation.js";
import { candidateDirections, meanActivations, at } from "./activations.js";
import { rankLayers, LayerRanking } from "./layers.js";
import { CandidateRun, cleanResult, prepareScoringSet, runCandidates, Schedule, ScoringSet } from "./scoring.js";
import { CandidateScore, key, selectCosmic, selectSubstring, Selection } from "./select.js";
import { RunStore, hashOf } from "./run-store.js";
import { modelFingerprint, modelIdentity } from "../model/fingerprint.js";
import { dot, normalize } from "./vec.js";

export type Mode = "affine" | "linear";
export type Method = "cosmic" | "substring";

export type SystemScope = "selection" | "directions";

/** What `--system` applies to in this run (default: directions and selection). */
function systemScopeOf(o: RunOptions): SystemScope {
  return o.systemScope ?? "selection";
}

/** The system message the selection stages (L_low, scores) see. */
function selectionSystemOf(o: RunOptions): string | undefined {
  return systemScopeOf(o) === "selection" ? o.system : undefined;
}

export interface PromptSets {
  harmfulTrain: PromptRecord[];
  harmfulVal: PromptRecord[];
  harmfulTest: PromptRecord[];
  harmlessTrain: PromptRecord[];
  harmlessVal: PromptRecord[];
  harmlessTest: PromptRecord[];
}

export interface RunOptions {
  model: string;
  out: string;
  prompts: PromptSets;
  mode: Mode;
  /** which selection's direction is the run's result (both are scored) */
  selection: Method;
  seed: number;
  maxNewTokens: number;
  batchSize: number;
  /** system message for direction generation and selection */
  system?: string;
  /**
   * What `system` applies to: "selection" (candidate directions, L_low and scores) or
   * "directions" (only the candidate directions and μ−, as the authors' run_systemprompt_ace.py:
   * L_low and every score then use the prompts without it). Default "selection".
   */
  systemScope?: SystemScope;
  /** system message for the evaluation generations */
  evalSystem?: string;
  klThreshold: number;
  pruneLayers: number;
  lowLayerFraction: number;
  steerTowardRefusal: boolean;
  alphas: number[];
  judge: string;
  /** phrases whose first tokens are the substring baseline's refusal tokens (default: the judge's list) */
  refusalPhrases?: string[];
  schedule: Schedule;
  /** score only the last N EOI positions (default: all, as the reference) */
  scorePositions?: number;
  skipEval: boolean;
  /** the evaluation stage (src/eval's makeEvaluator); without one the run stops after selection */
  evaluator?: Evaluator;
  device: Device;
  threads?: number;
  /** files and folders the run reads besides the model (prompt files, the judge model, …): the run folder must keep clear of them */
  inputs?: Input[];
  progress: (stage: string, done: number, total: number) => void;
  log: (line: string) => void;
}

export interface Timings {
  /** COSMIC's scoring (refusal, steering, KL) */
  scoring_seconds: number;
  /** the substring baseline's (bypass, induce) */
  substring_scoring_seconds: number;
}

/** summary.json: the summary without its wall-clock timings (those are in timings.json). */
export function summaryFile(s: RunSummary): Omit<RunSummary, "timings"> {
  const { timings: _, ...rest } = s;
  return rest;
}

export interface RunSummary {
  model: string;
  mode: Mode;
  selection: Method;
  seed: number;
  layers: number;
  positions: number;
  eoi_tokens: number[];
  L_low: number[];
  refusal_tokens: number[];
  cosmic: { position: number; layer: number; refusal_score: number; steering_score: number; kl_div_score: number; removed: Record<string, number> };
  substring: { position: number; layer: number; refusal_score: number; steering_score: number; kl_div_score: number; removed: Record<string, number> } | null;
  zero_direction_candidates: number;
  /** the COSMIC scoring stage (refusal, steering, KL) and the substring baseline's (bypass, induce) */
  scoring: { flops: number; schedule: Schedule; substring_flops: number };
  /** wall-clock seconds of the scoring stage: in timings.json, not in summary.json (two identical runs write identical summaries) */
  timings: Timings;
  evaluation?: Evaluation;
  /** why the substring baseline selected nothing, when it did not */
  substring_note?: string;
  /** every file of the run folder this run wrote or reused (others were removed) */
  files?: string[];
}

interface Prepared {
  folder: ModelFolder;
  store: RunStore;
  engine: () => Promise<Engine>;
  encode: (recs: PromptRecord[], system?: string) => number[][];
}

function modeInterventions(mode: Mode, r: Float32Array, mu: Float32Array, layer: number, L: number) {
  if (mode === "affine") {
    return {
      ablate: { intervention: affineEdit(r, mu, layer, 0, L), start: layer } as CandidateRun,
      add: (alpha: number) => ({ intervention: affineEdit(r, mu, layer, alpha, L), start: layer }) as CandidateRun,
    };
  }
  return {
    ablate: { intervention: ablation(r, L), start: 0 } as CandidateRun,
    add: (alpha: number) => ({ intervention: activationAddition(r, layer, alpha, L), start: layer }) as CandidateRun,
  };
}

/** First tokens of the refusal phrases (Arditi et al.'s refusal tokens), from this tokenizer. */
export function refusalTokens(folder: ModelFolder, phrases: readonly string[]): number[] {
  const ids = new Set<number>();
  for (const p of phrases) {
    const t = folder.tokenizer.encode(p);
    if (t.length) ids.add(t[0]);
  }
  return [...ids].sort((a, b) => a - b);
}

export async function runPipeline(o: RunOptions): Promise<RunSummary> {
  const folder = ModelFolder.open(o.model);
  for (const [name, set] of Object.entries(o.prompts)) {
    if (set.length === 0 && !(o.skipEval && name.endsWith("Test"))) throw new CosmicError(`the ${name} prompt set is empty`);
  }
  // Nothing is written before the device is known to start and the run folder is safe to use.
  await preflight(folder, o.device);
  const store = RunStore.open(o.out, [{ path: o.model, what: "the model folder" }, ...(o.inputs ?? [])]);
  try {
    return await runStages(o, folder, store);
  } finally {
    store.close();
  }
}

async function runStages(o: RunOptions, folder: ModelFolder, store: RunStore): Promise<RunSummary> {
  const spec = folder.spec;
  const L = spec.numLayers;
  const d = spec.hiddenSize;
  const scope = systemScopeOf(o);
  let engine: Engine | null = null;
  const prep: Prepared = {
    folder,
    store,
    engine: async () => {
      if (!engine) {
        o.log(`building ${L + 1} onnxruntime sessions for ${folder.dir} (${o.device})…`);
        engine = await Engine.load(folder, { device: o.device, threads: o.threads, onBuild: (n, t) => o.progress("sessions", n, t) });
      }
      return engine;
    },
    encode: (recs, system) => recs.map((r) => folder.tokenizer.encode(folder.tokenizer.formatPrompt(r.instruction, system))),
  };
  // The sampled sets, so that another implementation (the Python reference) can be run on exactly these prompts.
  store.writeJson("prompts.json", {
    harmful_train: o.prompts.harmfulTrain, harmless_train: o.prompts.harmlessTrain,
    harmful_val: o.prompts.harmfulVal, harmless_val: o.prompts.harmlessVal,
    harmful_test: o.prompts.harmfulTest, harmless_test: o.prompts.harmlessTest,
    system: o.system ?? null,
    system_scope: o.system ? scope : null,
  });
  const eoi = folder.tokenizer.eoiTokens(o.system);
  const P = eoi.ids.length;
  const fingerprint = modelFingerprint(folder.dir, store.hashCacheFile);
  const identity = modelIdentity(folder.dir);

  // Stage 1: candidate directions and per-layer output means (train sets).
  const dirKey = hashOf("directions", fingerprint, o.prompts.harmfulTrain, o.prompts.harmlessTrain, o.system ?? null, P, o.system ? scope : null);
  const meansFile = "generate_directions/mean_diffs.safetensors";
  let r: Float32Array, muMinus: Float32Array, harmfulOut: Float64Array, harmlessOut: Float64Array;
  if (store.done("directions", dirKey, [meansFile])) {
    const st = SafetensorsFile.open(store.path(meansFile));
    r = st.readF32("mean_diffs");
    muMinus = st.readF32("harmless_means");
    harmfulOut = Float64Array.from(st.readF32("harmful_layer_outputs"));
    harmlessOut = Float64Array.from(st.readF32("harmless_layer_outputs"));
    o.log("directions: reused from the run folder");
  } else {
    const e = await prep.engine();
    const hp = prep.encode(o.prompts.harmfulTrain, o.system);
    const hl = prep.encode(o.prompts.harmlessTrain, o.system);
    const plus = await meanActivations(e, hp, P, o.batchSize, (n, t) => o.progress("directions (harmful)", n, t));
    const minus = await meanActivations(e, hl, P, o.batchSize, (n, t) => o.progress("directions (harmless)", n, t));
    r = candidateDirections(plus, minus);
    if (!r.every(Number.isFinite)) throw nonFinite(folder.dir, "activations");
    muMinus = Float32Array.from(minus.residPre);
    harmfulOut = plus.layerOutputs;
    harmlessOut = minus.layerOutputs;
    if (o.system && scope === "directions") {
      // L_low from the same train prompts without the system message.
      const P0 = folder.tokenizer.eoiTokens().ids.length;
      harmfulOut = (await meanActivations(e, prep.encode(o.prompts.harmfulTrain), P0, o.batchSize, (n, t) => o.progress("L_low (harmful, no system)", n, t))).layerOutputs;
      harmlessOut = (await meanActivations(e, prep.encode(o.prompts.harmlessTrain), P0, o.batchSize, (n, t) => o.progress("L_low (harmless, no system)", n, t))).layerOutputs;
    }
    writeSafetensors(store.output(meansFile), [
      { name: "mean_diffs", dtype: "F32", shape: [P, L, d], data: r },
      { name: "harmless_means", dtype: "F32", shape: [P, L, d], data: muMinus },
      { name: "harmful_means", dtype: "F32", shape: [P, L, d], data: Float32Array.from(plus.residPre) },
      { name: "harmful_layer_outputs", dtype: "F32", shape: [L, d], data: Float32Array.from(harmfulOut) },
      { name: "harmless_layer_outputs", dtype: "F32", shape: [L, d], data: Float32Array.from(harmlessOut) },
    ], { positions: JSON.stringify(Array.from({ length: P }, (_, k) => k - P)), eoi_token_ids: JSON.stringify(eoi.ids), model: folder.name });
    store.finish("directions", dirKey);
  }

  // Stage 2: L_low.
  const ranking: LayerRanking = rankLayers(harmfulOut, harmlessOut, L, d, o.lowLayerFraction, o.steerTowardRefusal, o.mode === "affine" ? 1 : 0);
  store.writeJson("select_direction/COSMIC_evaluation_layers.json", {
    ranked_layers: ranking.low,
    all_layers_ranked: ranking.ranked,
    cosine_similarity: ranking.similarity,
    second_half_only: o.steerTowardRefusal,
  });

  // Stage 3: scores for every candidate, COSMIC's and the substring baseline's.
  let maxNorm = 0;
  for (let k = 0; k < P; k++) for (let l = 0; l < L; l++) maxNorm = Math.max(maxNorm, norm(at(r, k, l, L, d)));
  const zeroNorm = new Set<string>();
  for (let k = 0; k < P; k++) for (let l = 0; l < L; l++) if (norm(at(r, k, l, L, d)) <= 1e-6 * maxNorm && k >= P - Math.min(P, o.scorePositions ?? P)) zeroNorm.add(key(k - P, l));
  const phrases = o.refusalPhrases ?? [...judgeList(o.judge)];
  const refTokens = refusalTokens(folder, phrases);
  const scoreKey = hashOf("scores", dirKey, ranking.low, o.prompts.harmfulVal, o.prompts.harmlessVal, o.mode, refTokens, o.schedule, o.scorePositions ?? null);
  const cosFile = "select_direction/direction_evaluations.json";
  const subFile = "select_direction_substring/direction_evaluations.json";
  let cosScores: CandidateScore[];
  let subScores: CandidateScore[];
  let scoring: RunSummary["scoring"];
  let timings: Timings;
  if (store.done("scores", scoreKey, [cosFile, subFile, "select_direction/scoring.json", "timings.json"])) {
    cosScores = store.readJson(cosFile);
    subScores = store.readJson(subFile);
    scoring = store.readJson("select_direction/scoring.json");
    timings = store.readJson("timings.json");
    o.log("scores: reused from the run folder");
  } else {
    const e = await prep.engine();
    ({ cosScores, subScores, scoring, timings } = await scoreCandidates(e, prep, o, r, muMinus, ranking.low, zeroNorm, refTokens, scoreKey));
    store.writeJson(cosFile, cosScores);
    store.writeJson(subFile, subScores);
    store.writeJson("select_direction/scoring.json", scoring);
    store.writeJson("timings.json", timings);
    store.finish("scores", scoreKey);
  }

  // Stage 4: selection.
  const selOpts = { numLayers: L, numPositions: Math.min(P, o.scorePositions ?? P), klThreshold: o.klThreshold, pruneLayers: o.pruneLayers, zeroNorm };
  const cos: Selection = selectCosmic(cosScores, selOpts);
  let sub: Selection | null = null;
  let substringNote: string | undefined;
  try {
    sub = selectSubstring(subScores, selOpts);
  } catch (e) {
    if (o.selection === "substring") throw e;
    substringNote = `the substring baseline selected no direction: ${(e as Error).message}`;
    o.log(substringNote);
  }
  store.writeJson("select_direction/direction_evaluations_filtered.json", cos.filtered);
  if (sub) store.writeJson("select_direction_substring/direction_evaluations_filtered.json", sub.filtered);
  const chosen = o.selection === "cosmic" ? cos : sub!;
  const pick = (s: Selection) => ({ k: s.selected.position + P, layer: s.selected.layer });
  const writeDir = (s: Selection, method: Method, file: string) => {
    const { k, layer } = pick(s);
    writeDirection(store.output(file), Float32Array.from(at(r, k, layer, L, d)), Float32Array.from(at(muMinus, k, layer, L, d)), {
      layer: String(layer), position: String(s.selected.position), method, mode: o.mode, model: folder.name,
      model_type: spec.family, hidden_size: String(d), num_layers: String(L), seed: String(o.seed), model_identity: identity,
    });
  };
  writeDir(chosen, o.selection, "direction.safetensors");
  store.writeJson("direction_metadata.json", { pos: chosen.selected.position, layer: chosen.selected.layer });
  writeDir(cos, "cosmic", "select_direction/direction.safetensors");
  if (sub) writeDir(sub, "substring", "select_direction_substring/direction.safetensors");

  const summary: RunSummary = {
    model: folder.name,
    mode: o.mode,
    selection: o.selection,
    seed: o.seed,
    layers: L,
    positions: P,
    eoi_tokens: eoi.ids,
    L_low: ranking.low,
    refusal_tokens: refTokens,
    cosmic: { ...cos.selected, removed: cos.removed },
    substring: sub ? { ...sub.selected, removed: sub.removed } : null,
    zero_direction_candidates: zeroNorm.size,
    scoring,
    timings,
    ...(substringNote ? { substring_note: substringNote } : {}),
  };

  // Stage 5: evaluation (src/eval), when the caller gave an evaluator.
  if (!o.skipEval && o.evaluator) {
    const evalKey = hashOf("eval", scoreKey, cos.selected, sub?.selected ?? null, o.prompts.harmfulTest, o.prompts.harmlessTest, o.maxNewTokens,
      o.evalSystem ?? null, o.judge, o.steerTowardRefusal, o.alphas, o.evaluator.key);
    if (store.done("evaluation", evalKey, ["evaluation.json"])) {
      summary.evaluation = store.readJson("evaluation.json");
      o.log("evaluation: reused from the run folder");
    } else {
      const e = await prep.engine();
      const direction = (s: Selection, method: Method): EvaluatedDirection => {
        const k = s.selected.position + P;
        const ivs = modeInterventions(o.mode, at(r, k, s.selected.layer, L, d), at(muMinus, k, s.selected.layer, L, d), s.selected.layer, L);
        return { method, position: s.selected.position, layer: s.selected.layer, ablate: ivs.ablate.intervention, add: (a) => ivs.add(a).intervention };
      };
      const c = cos.selected;
      // The sweep adds α·r to the block input (activation addition, §8) in either mode: ACE would
      // set every prompt's projection to the same value, losing the prompt's own harmfulness, and
      // on a weakly aligned model that steers all prompts or none.
      const r0 = at(r, c.position + P, c.layer, L, d);
      summary.evaluation = await o.evaluator.run({
        engine: e, tokenizer: folder.tokenizer, eosTokenIds: folder.eosTokenIds, prompts: o.prompts, options: o,
        directions: [direction(cos, "cosmic"), ...(sub ? [direction(sub, "substring")] : [])],
        sweep: (a) => activationAddition(r0, c.layer, a, L),
        substringNote, encode: prep.encode, writeJson: (f, v) => store.writeJson(f, v), progress: o.progress,
      });
      store.writeJson("evaluation.json", summary.evaluation);
      store.finish("evaluation", evalKey);
    }
  }
  summary.files = store.finishRun(["summary.json"]);
  store.writeJson("summary.json", summaryFile(summary));
  if (engine) await (engine as Engine).release();
  return summary;
}

async function scoreCandidates(
  e: Engine, prep: Prepared, o: RunOptions, r: Float32Array, muMinus: Float32Array, low: number[],
  zeroNorm: Set<string>, refTokens: number[], scoreKey: string,
): Promise<{ cosScores: CandidateScore[]; subScores: CandidateScore[]; scoring: RunSummary["scoring"]; timings: Timings }> {
  const L = e.numLayers;
  const d = e.spec.hiddenSize;
  const V = e.spec.vocabSize;
  const P = r.length / (L * d);
  const positions = Math.min(P, o.scorePositions ?? P);
  o.progress("scoring: clean pass", 0, 2);
  const selectionSystem = selectionSystemOf(o);
  const harm: ScoringSet = await prepareScoringSet(e, prep.encode(o.prompts.harmfulVal, selectionSystem), o.batchSize);
  o.progress("scoring: clean pass", 1, 2);
  const harmless: ScoringSet = await prepareScoringSet(e, prep.encode(o.prompts.harmlessVal, selectionSystem), o.batchSize);
  o.progress("scoring: clean pass", 2, 2);
  const pool = { poolLayers: low, kl: false, refusalTokens: null };
  const odds = { poolLayers: [], kl: false, refusalTokens: refTokens };
  const klNeeds = { poolLayers: [], kl: true, refusalTokens: null };
  const cleanHarm = cleanResult(harm, { ...pool, refusalTokens: refTokens }, d, V);
  const cleanHarmless = cleanResult(harmless, { ...pool, refusalTokens: refTokens }, d, V);
  const bPlus = normalize(cleanHarm.pooled!);
  const bMinus = normalize(cleanHarmless.pooled!);
  const timed = async <T>(acc: { seconds: number; flops: number }, f: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    const f0 = e.flops;
    const out = await f();
    acc.seconds += (performance.now() - t0) / 1000;
    acc.flops += e.flops - f0;
    return out;
  };

  // Partial results survive an interruption: finished layers are not scored again.
  const partialFile = "select_direction/.partial-scores.json";
  type Acc = { seconds: number; flops: number };
  let partial: { key: string; layers: Record<string, { cos: CandidateScore[]; sub: CandidateScore[] }>; cosmic: Acc; substring: Acc } = {
    key: scoreKey, layers: {}, cosmic: { seconds: 0, flops: 0 }, substring: { seconds: 0, flops: 0 },
  };
  try {
    const p = prep.store.readJson<typeof partial>(partialFile);
    if (p.key === scoreKey) partial = p;
  } catch { /* none yet */ }
  for (let l = 0; l < L; l++) {
    if (partial.layers[l]) { o.progress("scoring", l + 1, L); continue; }
    const cos: CandidateScore[] = [];
    const sub: CandidateScore[] = [];
    const live: number[] = [];
    for (let k = P - positions; k < P; k++) {
      if (zeroNorm.has(key(k - P, l))) {
        // A zero direction edits nothing: its scores are the clean run's.
        cos.push({ position: k - P, layer: l, refusal_score: dot(normalize(cleanHarm.pooled!), bMinus), steering_score: dot(normalize(cleanHarmless.pooled!), bPlus), kl_div_score: 0 });
        sub.push({ position: k - P, layer: l, refusal_score: cleanHarm.logOdds!, steering_score: cleanHarmless.logOdds!, kl_div_score: 0 });
      } else live.push(k);
    }
    if (live.length) {
      const ivs = live.map((k) => modeInterventions(o.mode, at(r, k, l, L, d), at(muMinus, k, l, L, d), l, L));
      // COSMIC: pooled L_low outputs (the forward stops after L_low) and the KL (to the logits).
      const [abl, add, kl] = await timed(partial.cosmic, async () => [
        await runCandidates(e, harm, ivs.map((v) => v.ablate), pool, o.schedule),
        await runCandidates(e, harmless, ivs.map((v) => v.add(1)), pool, o.schedule),
        await runCandidates(e, harmless, ivs.map((v) => v.ablate), klNeeds, o.schedule),
      ]);
      // The substring baseline: refusal-token log-odds under the same interventions.
      const [bypass, induce] = await timed(partial.substring, async () => [
        await runCandidates(e, harm, ivs.map((v) => v.ablate), odds, o.schedule),
        await runCandidates(e, harmless, ivs.map((v) => v.add(1)), odds, o.schedule),
      ]);
      live.forEach((k, i) => {
        const base = { position: k - P, layer: l, kl_div_score: kl[i].kl! };
        cos.push({ ...base, refusal_score: dot(normalize(abl[i].pooled!), bMinus), steering_score: dot(normalize(add[i].pooled!), bPlus) });
        sub.push({ ...base, refusal_score: bypass[i].logOdds!, steering_score: induce[i].logOdds! });
      });
    }
    const byPos = (a: CandidateScore, b: CandidateScore) => a.position - b.position;
    partial.layers[l] = { cos: cos.sort(byPos), sub: sub.sort(byPos) };
    prep.store.writeJson(partialFile, partial);
    o.progress("scoring", l + 1, L);
  }
  // The reference lists candidates position-major: (−P, 0), (−P, 1), …
  const order = (a: CandidateScore, b: CandidateScore) => a.position - b.position || a.layer - b.layer;
  const cosScores = Object.values(partial.layers).flatMap((x) => x.cos).sort(order);
  const subScores = Object.values(partial.layers).flatMap((x) => x.sub).sort(order);
  return {
    cosScores,
    subScores,
    scoring: { flops: partial.cosmic.flops, schedule: o.schedule, substring_flops: partial.substring.flops },
    timings: { scoring_seconds: partial.cosmic.seconds, substring_scoring_seconds: partial.substring.seconds },
  };
}
