/**
 * Router statistics of MoE layers over a measurement window: per-expert load and importance,
 * load entropy, router entropy, the window's load-balancing loss, dropped tokens (with a
 * capacity) and a router-collapse flag. They are computed from the counters `MoeFeedForward`
 * accumulates on the device (read by `measureSparsity`, one readback per log), so a collapse
 * (all tokens to one expert, or to the same k) shows in the training log instead of hiding in
 * a low-looking loss.
 *
 * @module
 */

/**
 * Collapse threshold: a router has collapsed when its k most-loaded experts receive at least
 * this share of the assignments while E > k (balanced: k/E).
 *
 * @example
 * ```ts
 * import { COLLAPSE_SHARE, routerLayerStats } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * assert.equal(COLLAPSE_SHARE, 0.9);
 * // 4 experts, top-1, 100 tokens: counters are routed ×4, kept ×4, dropped, tokens.
 * const stats = (top: number) => {
 *   const counts = [top, 100 - top, 0, 0, top, 100 - top, 0, 0, 0, 100];
 *   return routerLayerStats("layers.0.ffn", 1, counts, [1, 1, 1, 1, 0]);
 * };
 * assert.equal(stats(90).collapsed, true); // the top expert takes COLLAPSE_SHARE
 * assert.equal(stats(89).collapsed, false);
 * ```
 */
export const COLLAPSE_SHARE = 0.9;

/** Router statistics of one MoE layer over a window. */
export interface RouterLayerStats {
  /** The MoE FFN, e.g. `layers.0.ffn`. */
  layer: string;
  /** Experts E. */
  experts: number;
  /** Experts per token k. */
  topK: number;
  /** Tokens routed in the window. */
  tokens: number;
  /** Share of the N·k assignments routed to each expert, before capacity (sums to 1). */
  load: number[];
  /** Mean router probability of each expert (sums to 1). */
  importance: number[];
  /** Entropy of `load` divided by log E: 1 = balanced, 0 = everything on one expert. */
  loadEntropy: number;
  /** Largest load relative to the balanced share 1/E (1 = balanced, E = collapsed onto one). */
  maxLoad: number;
  /** Mean per-token router entropy, in nats (log E = uniform router). */
  routerEntropy: number;
  /** The window's Switch load-balancing loss `E·Σ load_e·importance_e` (1 = balanced). */
  balanceLoss: number;
  /** Share of assignments dropped by the capacity (0 without one). */
  dropped: number;
  /** Whether the k most-loaded experts take ≥ {@link COLLAPSE_SHARE} of the load (E > k). */
  collapsed: boolean;
}

/** Router statistics of a model over a window. */
export interface RouterReport {
  /** One entry per MoE layer, in layer order. */
  layers: RouterLayerStats[];
  /** Names of the layers whose router has collapsed (empty when healthy). */
  collapsed: string[];
  /** Share of all assignments dropped by the capacity, over every layer. */
  dropped: number;
  /** Mean normalised load entropy over the layers. */
  loadEntropy: number;
}

/**
 * Statistics of one layer from its raw counters.
 *
 * @param layer Layer name.
 * @param topK k.
 * @param counts u32 counters `[2E + 2]`: routed per expert, kept per expert, dropped, tokens.
 * @param mass f32 counters `[E + 1]`: probability mass per expert, summed router entropy.
 * @returns The statistics (all zero loads when no token was routed).
 *
 * @example
 * ```ts
 * import { routerLayerStats } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * // 4 experts, top-1, 100 tokens all sent to expert 2: a collapse.
 * const s = routerLayerStats("layers.0.ffn", 1, [0, 0, 100, 0, 0, 0, 100, 0, 0, 100], [5, 5, 85, 5, 40]);
 * assert.equal(s.collapsed, true);
 * assert.equal(s.maxLoad, 4);
 * assert.equal(s.loadEntropy, 0);
 * ```
 */
export function routerLayerStats(
  layer: string,
  topK: number,
  counts: ArrayLike<number>,
  mass: ArrayLike<number>,
): RouterLayerStats {
  const e = (counts.length - 2) / 2;
  const tokens = counts[2 * e + 1]!;
  const routed = Array.from({ length: e }, (_, i) => counts[i]!);
  const total = routed.reduce((a, b) => a + b, 0);
  const load = routed.map((r) => (total > 0 ? r / total : 0));
  const massTotal = Array.from({ length: e }, (_, i) => mass[i]!).reduce((a, b) => a + b, 0);
  const importance = Array.from(
    { length: e },
    (_, i) => (massTotal > 0 ? mass[i]! / massTotal : 0),
  );
  let h = 0;
  for (const l of load) if (l > 0) h -= l * Math.log(l);
  const loadEntropy = e > 1 ? (total > 0 ? h / Math.log(e) : 0) : 1;
  const sorted = [...load].sort((a, b) => b - a);
  const topShare = sorted.slice(0, topK).reduce((a, b) => a + b, 0);
  return {
    layer,
    experts: e,
    topK,
    tokens,
    load,
    importance,
    loadEntropy,
    maxLoad: e * (sorted[0] ?? 0),
    routerEntropy: tokens > 0 ? mass[e]! / tokens : 0,
    balanceLoss: e * load.reduce((a, l, i) => a + l * importance[i]!, 0),
    dropped: total > 0 ? counts[2 * e]! / total : 0,
    collapsed: e > topK && total > 0 && topShare >= COLLAPSE_SHARE,
  };
}

/**
 * Combines per-layer statistics into a model report.
 *
 * @param layers Per-layer statistics.
 * @returns The report.
 *
 * @example
 * ```ts
 * import { routerLayerStats, routerReport } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const ok = routerLayerStats("layers.0.ffn", 1, [25, 25, 25, 25, 25, 25, 25, 25, 0, 100], [1, 1, 1, 1, 100]);
 * const r = routerReport([ok]);
 * assert.deepEqual(r.collapsed, []);
 * assert.equal(r.loadEntropy, 1);
 * ```
 */
export function routerReport(layers: RouterLayerStats[]): RouterReport {
  let dropped = 0, assigned = 0;
  for (const l of layers) {
    const n = l.tokens * l.topK;
    dropped += l.dropped * n;
    assigned += n;
  }
  return {
    layers,
    collapsed: layers.filter((l) => l.collapsed).map((l) => l.layer),
    dropped: assigned > 0 ? dropped / assigned : 0,
    loadEntropy: layers.length ? layers.reduce((a, l) => a + l.loadEntropy, 0) / layers.length : 1,
  };
}
