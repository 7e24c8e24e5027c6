/**
 * Selection (algorithm §5 for COSMIC, §6 for the substring baseline), with every filter counted so
 * that "nothing survived" can say what removed what.
 */
import { CosmicError } from "../errors.js";
import { lowerMedian } from "./vec.js";

export interface CandidateScore {
  position: number;
  layer: number;
  refusal_score: number;
  steering_score: number;
  kl_div_score: number;
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

export interface Selection {
  selected: CandidateScore;
  filtered: CandidateScore[];
  removed: Record<string, number>;
  /** the position −1 rule's limits (null: rule not applied) */
  positionRule: { limit: number; cutoff: number } | null;
}

export const key = (position: number, layer: number) => `${position}:${layer}`;

function argmaxLayer(scores: CandidateScore[], position: number, field: "refusal_score" | "steering_score"): number {
  let best = NaN;
  let bestLayer = NaN;
  for (const s of scores) {
    if (s.position !== position || Number.isNaN(s[field])) continue;
    if (Number.isNaN(best) || s[field] > best) {
      best = s[field];
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

/**
 * The filters both methods share (NaN, zero direction, last layers, KL), then a method's own
 * rule; returns the survivors and what each filter removed, or throws saying so.
 */
function filterCandidates(
  method: string,
  scores: CandidateScore[],
  options: SelectionOptions,
  ruleName: string,
  rule: (s: CandidateScore) => boolean,
): { kept: CandidateScore[]; removed: Record<string, number> } {
  const maxLayer = Math.floor(options.numLayers * (1 - options.pruneLayers));
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
    if ([s.refusal_score, s.steering_score, s.kl_div_score].some(Number.isNaN)) removed["NaN score"]++;
    else if (options.zeroNorm.has(key(s.position, s.layer))) removed["zero direction"]++;
    else if (s.layer >= maxLayer) removed[pruneKey]++;
    else if (s.kl_div_score > options.klThreshold) removed[klKey]++;
    else if (rule(s)) removed[ruleName]++;
    else kept.push(s);
  }
  if (kept.length === 0) throw explain(method, removed, scores.length);
  return { kept, removed };
}

/** COSMIC: filters, the position −1 rule, then the maximum of refusal + steering score. */
export function selectCosmic(scores: CandidateScore[], options: SelectionOptions): Selection {
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
export function selectSubstring(scores: CandidateScore[], options: SelectionOptions): Selection {
  const { kept, removed } = filterCandidates(
    "substring selection",
    scores,
    options,
    "induce score ≤ 0",
    (s) => s.steering_score <= 0,
  );
  const filtered = [...kept].sort((a, b) => a.refusal_score - b.refusal_score);
  return { selected: filtered[0], filtered, removed, positionRule: null };
}
