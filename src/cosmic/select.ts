/**
 * Selection (algorithm §5 for COSMIC, §6 for the substring baseline), with every filter counted so
 * that "nothing survived" can say what removed what.
 */
import { CosmicError } from "../errors.js";
import { lowerMedian } from "./vec.js";

/** A candidate with every score. */
export interface CandidateScore {
  position: number;
  layer: number;
  refusal_score: number;
  steering_score: number;
  kl_div_score: number;
}

/**
 * A candidate as the scores stage writes it: a null score was not computed (the lazy schedule
 * scores only what the selections read: stages/scores.ts).
 */
export interface CandidateRow {
  position: number;
  layer: number;
  refusal_score: number | null;
  steering_score: number | null;
  kl_div_score: number | null;
}

export interface SelectionOptions {
  numLayers: number;
  /** positions −P…−1 */
  numPositions: number;
  klThreshold: number;
  pruneLayers: number;
  /** candidates whose direction is (numerically) zero */
  zeroNorm: Set<string>;
}

/** How many EOI positions are scored: the last `scorePositions` of the P (all of them when unset). */
export function scoredPositions(P: number, scorePositions: number | null | undefined): number {
  return Math.min(P, scorePositions ?? P);
}

/** The selection's options for a model of `numLayers` layers and P EOI positions, under these filters. */
export function selectionOptions(
  numLayers: number,
  P: number,
  scorePositions: number | null | undefined,
  filters: { klThreshold: number; pruneLayers: number },
  zeroNorm: Set<string>,
): SelectionOptions {
  return {
    numLayers,
    numPositions: scoredPositions(P, scorePositions),
    klThreshold: filters.klThreshold,
    pruneLayers: filters.pruneLayers,
    zeroNorm,
  };
}

export interface Selection {
  selected: CandidateScore;
  filtered: CandidateScore[];
  removed: Record<string, number>;
  /** the position −1 rule's limits (null: rule not applied) */
  positionRule: { limit: number; cutoff: number } | null;
}

export const key = (position: number, layer: number) => `${position}:${layer}`;

/** The first layer selection prunes: candidates at it and after are never selected (the last `pruneLayers` of them). */
export function firstPrunedLayer(numLayers: number, pruneLayers: number): number {
  return Math.floor(numLayers * (1 - pruneLayers));
}

/** The filter count of candidates left unscored by the lazy schedule. */
export const UNSCORED = "not scored (lazy schedule)";

function argmaxLayer(scores: CandidateRow[], position: number, field: "refusal_score" | "steering_score"): number {
  let best = NaN;
  let bestLayer = NaN;
  for (const s of scores) {
    const v = s[field];
    if (s.position !== position || v === null || Number.isNaN(v)) continue;
    if (Number.isNaN(best) || v > best) {
      best = v;
      bestLayer = s.layer;
    }
  }
  return bestLayer;
}

function explain(method: string, removed: Record<string, number>, total: number): CosmicError {
  const parts = Object.entries(removed)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k}: ${n}`);
  return new CosmicError(
    `${method}: every one of the ${total} candidate directions was filtered out (${parts.join(", ")})`,
  );
}

/** Every score computed. */
const complete = (s: CandidateRow): s is CandidateScore =>
  s.refusal_score !== null && s.steering_score !== null && s.kl_div_score !== null;

/**
 * The filters both methods share (NaN, zero direction, last layers, KL), then a method's own
 * rule, then any candidate a score of which was not computed (the lazy schedule leaves out only
 * scores the ranking cannot reach); returns the survivors and what each filter removed, or
 * throws saying so.
 */
function filterCandidates(
  method: string,
  scores: CandidateRow[],
  options: SelectionOptions,
  ruleName: string,
  rule: (s: CandidateRow) => boolean,
): { kept: CandidateScore[]; removed: Record<string, number> } {
  const maxLayer = firstPrunedLayer(options.numLayers, options.pruneLayers);
  const pruneKey = `layer ≥ ${maxLayer} (last ${Math.round(options.pruneLayers * 100)} %)`;
  const klKey = `KL > ${options.klThreshold}`;
  const removed: Record<string, number> = {
    "NaN score": 0,
    "zero direction": 0,
    [pruneKey]: 0,
    [klKey]: 0,
    [ruleName]: 0,
  };
  const kept: CandidateScore[] = [];
  for (const s of scores) {
    if ([s.refusal_score, s.steering_score, s.kl_div_score].some((v) => v !== null && Number.isNaN(v)))
      removed["NaN score"]++;
    else if (options.zeroNorm.has(key(s.position, s.layer))) removed["zero direction"]++;
    else if (s.layer >= maxLayer) removed[pruneKey]++;
    else if (s.kl_div_score !== null && s.kl_div_score > options.klThreshold) removed[klKey]++;
    else if (rule(s)) removed[ruleName]++;
    // Counted only when it happens, so that full schedules' counts read as before.
    else if (!complete(s)) removed[UNSCORED] = (removed[UNSCORED] ?? 0) + 1;
    else kept.push(s);
  }
  if (kept.length === 0) throw explain(method, removed, scores.length);
  return { kept, removed };
}

/** COSMIC: filters, the position −1 rule, then the maximum of refusal + steering score. */
export function selectCosmic(scores: CandidateRow[], options: SelectionOptions): Selection {
  let rule: Selection["positionRule"] = null;
  if (options.numPositions > 1) {
    const limits: number[] = [];
    const cutoffs: number[] = [];
    for (let p = -options.numPositions; p <= -2; p++) {
      limits.push(argmaxLayer(scores, p, "refusal_score"));
      cutoffs.push(argmaxLayer(scores, p, "steering_score"));
    }
    const limit = lowerMedian(limits);
    const cutoff = lowerMedian(cutoffs);
    if (limit !== null && cutoff !== null) rule = { limit, cutoff };
  }
  const { kept, removed } = filterCandidates(
    "COSMIC selection",
    scores,
    options,
    "position −1 rule",
    (s) => !!rule && s.position === -1 && s.layer > rule.limit && s.layer > rule.cutoff,
  );
  const filtered = [...kept].sort((a, b) => b.refusal_score + b.steering_score - (a.refusal_score + a.steering_score));
  return { selected: filtered[0], filtered, removed, positionRule: rule };
}

/**
 * Arditi et al.: refusal_score = bypass score (mean refusal-token log-odds on harmful prompts
 * under ablation, lower is better), steering_score = induce score (on harmless under addition,
 * must be > 0); KL filter and layer pruning as above; the lowest bypass score wins.
 */
export function selectSubstring(scores: CandidateRow[], options: SelectionOptions): Selection {
  const { kept, removed } = filterCandidates(
    "substring selection",
    scores,
    options,
    "induce score ≤ 0",
    (s) => s.steering_score !== null && s.steering_score <= 0,
  );
  const filtered = [...kept].sort((a, b) => a.refusal_score - b.refusal_score);
  return { selected: filtered[0], filtered, removed, positionRule: null };
}

/**
 * The candidate a selection takes if every KL score not yet computed passes the filter (null
 * when none survives). Under the lazy schedule this is the next candidate whose KL score must be
 * computed, until it is one whose KL is known: then it is the selection's, exactly as if every
 * KL had been computed (every candidate ranked above it is known to fail the KL filter, and the
 * ranking is the same stable sort of the same rows).
 */
export function leadingCandidate(
  method: "cosmic" | "substring",
  scores: CandidateRow[],
  options: SelectionOptions,
): CandidateRow | null {
  const optimistic = scores.map((s) => (s.kl_div_score === null ? { ...s, kl_div_score: 0 } : s));
  let selected: CandidateScore;
  try {
    selected = (method === "cosmic" ? selectCosmic : selectSubstring)(optimistic, options).selected;
  } catch (e) {
    if (e instanceof CosmicError) return null;
    throw e;
  }
  return scores.find((s) => s.position === selected.position && s.layer === selected.layer)!;
}
