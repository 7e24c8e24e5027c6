/**
 * The evaluation layers L_low (algorithm §2): layers ranked by ascending cosine similarity of the
 * harmful and harmless mean last-token outputs; the first floor(fraction·L) of them, at least one
 * (the reference returns none below 10 layers).
 *
 * With single-layer (affine) interventions, block 0's output cannot be changed by any candidate
 * (layer-0 candidates are zero: every prompt has the same EOI embeddings), so scores read there
 * would tie every candidate; such a layer is left out (`minLayer` 1).
 */
import { cosine } from "./vec.js";

export interface LayerRanking {
  /** cosine similarity per layer */
  similarity: number[];
  /** layers by ascending similarity */
  ranked: number[];
  /** the chosen evaluation layers, in ranked order */
  low: number[];
}

/** How many layers L_low holds: ⌊fraction · L⌋, at least one. */
export function lowLayerCount(L: number, fraction: number): number {
  return Math.max(1, Math.floor(fraction * L));
}

/** The layers L_low may take: from `minLayer` on, and from the second half only when asked. */
export function eligibleLayers(L: number, secondHalfOnly: boolean, minLayer: number): number[] {
  return Array.from({ length: L }, (_, l) => l).filter(
    (l) => l >= minLayer && (!secondHalfOnly || l >= Math.floor(L / 2)),
  );
}

export function rankLayers(
  harmfulOut: Float64Array,
  harmlessOut: Float64Array,
  L: number,
  d: number,
  fraction: number,
  secondHalfOnly = false,
  minLayer = 0,
): LayerRanking {
  const similarity = Array.from({ length: L }, (_, l) =>
    cosine(harmfulOut.subarray(l * d, (l + 1) * d), harmlessOut.subarray(l * d, (l + 1) * d)),
  );
  const ranked = eligibleLayers(L, secondHalfOnly, minLayer).sort((a, b) => similarity[a] - similarity[b] || a - b);
  const k = lowLayerCount(L, fraction);
  return { similarity, ranked, low: ranked.slice(0, Math.min(k, ranked.length)) };
}
