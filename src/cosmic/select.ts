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
    if (Number.isNaN(best) || s[field] > best) { best = s[field]; bestLayer = s.layer; }
  }
  return bestLayer;
}

function explain(method: string, removed: Record<string, number>, total: number): CosmicError {
  const parts = Object.entries(removed).filter(([, n]) => n > 0).map(([k, n]) => `${k}: ${n}`);
  return new CosmicError(`${method}: every one of the ${total} candidate directions was filtered out (${parts.join(", ")})`);
}

/** COSMIC: filters, the position −1 rule, then the maximum of refusal + steering score. */
export function selectCosmic(scores: CandidateScore[], o: SelectionOptions): Selection {
  const maxLayer = Math.floor(o.numLayers * (1 - o.pruneLayers));
  const removed: Record<string, number> = { "NaN score": 0, "zero direction": 0, [`layer ≥ ${maxLayer} (last ${Math.round(o.pruneLayers * 100)} %)`]: 0, [`KL > ${o.klThreshold}`]: 0, "position −1 rule": 0 };
  const pruneKey = `layer ≥ ${maxLayer} (last ${Math.round(o.pruneLayers * 100)} %)`;
  let rule: Selection["positionRule"] = null;
  if (o.numPositions > 1) {
    const limits: number[] = [];
    const cutoffs: number[] = [];
    for (let p = -o.numPositions; p <= -2; p++) {
      limits.push(argmaxLayer(scores, p, "refusal_score"));
      cutoffs.push(argmaxLayer(scores, p, "steering_score"));
    }
    const limit = lowerMedian(limits);
    const cutoff = lowerMedian(cutoffs);
    if (limit !== null && cutoff !== null) rule = { limit, cutoff };
  }
  const kept: CandidateScore[] = [];
  for (const s of scores) {
    if ([s.refusal_score, s.steering_score, s.kl_div_score].some(Number.isNaN)) removed["NaN score"]++;
    else if (o.zeroNorm.has(key(s.position, s.layer))) removed["zero direction"]++;
    else if (s.layer >= maxLayer) removed[pruneKey]++;
    else if (s.kl_div_score > o.klThreshold) removed[`KL > ${o.klThreshold}`]++;
    else if (rule && s.position === -1 && s.layer > rule.limit && s.layer > rule.cutoff) removed["position −1 rule"]++;
    else kept.push(s);
  }
  if (kept.length === 0) throw explain("COSMIC selection", removed, scores.length);
  const filtered = [...kept].sort((a, b) => b.refusal_score + b.steering_score - (a.refusal_score + a.steering_score));
  return { selected: filtered[0], filtered, removed, positionRule: rule };
}

/**
 * Arditi et al.: refusal_score = bypass score (mean refusal-token log-odds on harmful prompts
 * under ablation, lower is better), steering_score = induce score (on harmless under addition,
 * must be > 0); KL filter and layer pruning as above; the lowest bypass score wins.
 */
export function selectSubstring(scores: CandidateScore[], o: SelectionOptions): Selection {
  const maxLayer = Math.floor(o.numLayers * (1 - o.pruneLayers));
  const pruneKey = `layer ≥ ${maxLayer} (last ${Math.round(o.pruneLayers * 100)} %)`;
  const removed: Record<string, number> = { "NaN score": 0, "zero direction": 0, [pruneKey]: 0, [`KL > ${o.klThreshold}`]: 0, "induce score ≤ 0": 0 };
  const kept: CandidateScore[] = [];
  for (const s of scores) {
    if ([s.refusal_score, s.steering_score, s.kl_div_score].some(Number.isNaN)) removed["NaN score"]++;
    else if (o.zeroNorm.has(key(s.position, s.layer))) removed["zero direction"]++;
    else if (s.layer >= maxLayer) removed[pruneKey]++;
    else if (s.kl_div_score > o.klThreshold) removed[`KL > ${o.klThreshold}`]++;
    else if (s.steering_score <= 0) removed["induce score ≤ 0"]++;
    else kept.push(s);
  }
  if (kept.length === 0) throw explain("substring selection", removed, scores.length);
  const filtered = [...kept].sort((a, b) => a.refusal_score - b.refusal_score);
  return { selected: filtered[0], filtered, removed, positionRule: null };
}
