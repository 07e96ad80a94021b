/**
 * The gap to dense against N on the v2 grid (`results/scaling_v2.jsonl`): the existing
 * seed-level trend of `report.ts` (`gapTrend`), restricted to the cells that may enter a fit
 * (at least 5 training tokens per parameter, a tuned learning rate unless asked otherwise), with
 * the span of N it covers, so a reader sees whether the trend rests on ≥ 1.5 decades. On a
 * partial grid the trend averages only the sparsities every size has, its finding makes no test
 * without a seed-level error, and says "not enough runs" with the counts when there is no trend.
 *
 * @module
 */
import { paramCounts } from "../src/nn/config.ts";
import { Figure } from "../src/plot/figure.ts";
import type { RunRecord } from "../src/train/runner.ts";
import { type Finding, gapShrinksFinding } from "./findings.ts";
import { gapsToDense, type GapTrend, gapTrend, groupRuns } from "./report.ts";
import { tQuantile } from "./stats.ts";
import { V2_PROFILES, v2Model } from "./v2_grid.ts";

/** Options of {@link fitCells} and {@link v2GapTrend}. */
export interface FitCellOptions {
  /** Fewest tokens per parameter a cell needs (its `tokensPerParam` tag); default 5. */
  minTokensPerParam?: number;
  /** Keep cells trained at the fallback LR (`lrSource` = `fallback`); default false. */
  allowFallbackLr?: boolean;
}

/**
 * The runs that may enter a fit: enough tokens per parameter and a tuned (or interpolated) LR.
 * Runs without the tags (v1 results) are judged by their `tokens / N`.
 *
 * @param records v2 results.
 * @param opts Thresholds.
 * @returns The kept runs.
 *
 * @example
 * ```ts
 * import type { RunRecord } from "@qsparse/kit/train";
 * import { fitCells } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const r = (tokensPerParam: number, lrSource: string) =>
 *   ({ tags: { tokensPerParam, lrSource }, tokens: 1, N: 1 }) as unknown as RunRecord;
 * assert.equal(fitCells([r(20, "tuned"), r(4, "tuned"), r(20, "fallback")]).length, 1);
 * ```
 */
export function fitCells(records: readonly RunRecord[], opts: FitCellOptions = {}): RunRecord[] {
  const min = opts.minTokensPerParam ?? 5;
  return records.filter((r) => {
    const tpp = typeof r.tags.tokensPerParam === "number" ? r.tags.tokensPerParam : r.tokens / r.N;
    if (!(tpp >= min)) return false;
    return opts.allowFallbackLr || r.tags.lrSource !== "fallback";
  });
}

/** {@link GapTrend} on the v2 grid, with the span of N and the cells left out. */
export interface V2GapTrend {
  /** The trend (null: fewer than two sizes share a sparsity with a gap to dense). */
  trend: GapTrend | null;
  /** log10 of the largest over the smallest N of the trend's sizes. */
  decades: number;
  /** Runs dropped by {@link fitCells}. */
  excluded: number;
  /**
   * The sparsities each size's gap averages: of those asked for (default S ≥ 0.4), the ones
   * every size with such a gap has. On a partial grid, averaging different S at different
   * sizes would mix the shape of the gap in S into its trend in N.
   */
  sparsities: number[];
  /** N of every size with a dense cell and a gap at one of the asked sparsities. */
  sizes: number[];
}

/**
 * The gap-to-dense trend with N of the v2 grid: {@link fitCells}, then
 * `gapTrend(gapsToDense(groupRuns(records)), sparsities)` over the sparsities every size has
 * (see {@link V2GapTrend.sparsities}; on the full grid, all of them). Groups ignore the seed
 * only, so the dense twin of a cell is the S = 0 cell of the same size, LR and budget.
 *
 * @param records `scaling_v2` results.
 * @param sparsities Which S may be averaged (default: S ≥ 0.4, the trend's default).
 * @param opts Which cells enter.
 * @returns The trend, its span in decades, the sparsities it averages and the excluded count.
 *
 * @example
 * ```ts
 * import type { RunRecord } from "@qsparse/kit/train";
 * import { v2GapTrend } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const run = (size: string, N: number, S: number, seed: number, valLoss: number) =>
 *   ({ tags: { size, S, seed, tokensPerParam: 20, lr: 4e-3, lrSource: "tuned" }, valLoss,
 *      valStderr: 0.005, N, Na: N, tokens: 20 * N, sparsity: null }) as unknown as RunRecord;
 * const records = [1, 2].flatMap((seed) => [
 *   run("a", 1e5, 0, seed, 3 + seed / 100), run("a", 1e5, 0.5, seed, 3.2 + seed / 100),
 *   run("a", 1e5, 0.9, seed, 3.9 + seed / 100), // only "a" has S = 0.9: left out of the mean
 *   run("b", 1e7, 0, seed, 2.5 + seed / 100), run("b", 1e7, 0.5, seed, 2.6 + seed / 100),
 * ]);
 * const g = v2GapTrend(records);
 * assert.equal(g.decades, 2);
 * assert.deepEqual(g.sparsities, [0.5]);
 * assert.ok(Math.abs(g.trend!.slope.value + 0.05) < 1e-9); // gap 0.2 → 0.1 over 2 decades
 * ```
 */
export function v2GapTrend(
  records: readonly RunRecord[],
  sparsities?: readonly number[],
  opts: FitCellOptions = {},
): V2GapTrend {
  const kept = fitCells(records, opts);
  const asked = (S: number): boolean =>
    sparsities ? sparsities.some((s) => Math.abs(s - S) < 1e-9) : S >= 0.4 - 1e-9;
  const gaps = gapsToDense(groupRuns(kept)).filter((g) => asked(g.S));
  const sizes = [...new Set(gaps.map((g) => g.N))].sort((a, b) => a - b);
  const sOf = (N: number) => new Set(gaps.filter((g) => g.N === N).map((g) => g.S));
  const common = sizes.length
    ? [...sOf(sizes[0]!)].filter((S) => sizes.every((N) => sOf(N).has(S))).sort((a, b) => a - b)
    : [];
  const trend = common.length ? gapTrend(gaps, common) : null;
  const Ns = trend?.perSize.map((p) => p.N) ?? [];
  return {
    trend,
    decades: Ns.length >= 2 ? Math.log10(Math.max(...Ns) / Math.min(...Ns)) : 0,
    excluded: records.length - kept.length,
    sparsities: common,
    sizes,
  };
}

/**
 * Which cells a profile's analyses admit: the full profile keeps the default floor of
 * {@link fitCells} (≥ 5 tokens per parameter, no fallback LR); the smoke profile trains six
 * steps (well under one token per parameter) to test the pipeline, so its floor is waived, or
 * every smoke analysis would be empty.
 *
 * @param profile `smoke` or `full`.
 * @returns Options for {@link fitCells}, {@link v2GapTrend}.
 *
 * @example
 * ```ts
 * import { v2CellRule } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.deepEqual(v2CellRule("full"), {});
 * assert.equal(v2CellRule("smoke").minTokensPerParam, 0);
 * ```
 */
export function v2CellRule(profile: "smoke" | "full"): FitCellOptions {
  return profile === "smoke" ? { minTokensPerParam: 0 } : {};
}

/** log10 of the span of N the profile's main grid plans. */
function plannedDecades(profile: "smoke" | "full"): number {
  const Ns = V2_PROFILES[profile].sizes.map((z) => paramCounts(v2Model(z)).nonEmbedding);
  return Math.log10(Math.max(...Ns) / Math.min(...Ns));
}

/**
 * The finding "the gap to dense shrinks as N grows" on the v2 grid: `gapShrinksFinding` (a
 * one-sided t-test of the weighted slope against log10 N at level 0.05) once the trend
 * has a seed-level error, with the sparsities averaged, the span of N against the planned one
 * and the cells left out in its note. Without a trend (fewer than two sizes) it says "not enough
 * runs"; without a size of two or more seeds the only error is the evaluation error, which
 * leaves out seed-to-seed noise, so it reports the slope and makes no test.
 *
 * @param g From {@link v2GapTrend}.
 * @param profile Which grid was planned (for the span of N).
 * @returns The finding.
 *
 * @example Not enough runs
 * ```ts
 * import { v2GapFinding, v2GapTrend } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const f = v2GapFinding(v2GapTrend([]), "full");
 * assert.equal(f.verdict, "inconclusive");
 * assert.match(f.measured, /not enough runs: 0 sizes/);
 * ```
 */
export function v2GapFinding(g: V2GapTrend, profile: "smoke" | "full"): Finding {
  const { claim, paper } = gapShrinksFinding(null);
  const id = "v2-gap-vs-N";
  const planned = plannedDecades(profile);
  const left = g.excluded
    ? `; ${g.excluded} runs left out (fewer tokens per parameter or an untuned LR)`
    : "";
  if (!g.trend) {
    return {
      id,
      claim,
      paper,
      measured: `not enough runs: ${g.sizes.length} size${g.sizes.length === 1 ? "" : "s"} with ` +
        `a dense cell and sparse cells at S ≥ 0.4` +
        (g.sizes.length >= 2 ? " but no sparsity common to all" : "") +
        ` (need 2)${left}`,
      verdict: "inconclusive",
      testName: "none: not enough runs for a trend",
    };
  }
  const span = `S averaged: ${g.sparsities.join(", ")} (those every size has); N spans ` +
    `${g.decades.toFixed(2)} decades (planned: ${planned.toFixed(2)})${left}`;
  if (!g.trend.seedNoise) {
    return {
      id,
      claim,
      paper,
      measured: `slope ${g.trend.slope.value >= 0 ? "+" : ""}${g.trend.slope.value.toFixed(4)} ` +
        `nats per 10× N over ${g.trend.perSize.length} sizes; no size has two seeds, so there is ` +
        `no seed-level error`,
      verdict: "inconclusive",
      testName: "none: a test needs a seed-level error (at least one size with two seeds)",
      note: span,
    };
  }
  const f = gapShrinksFinding(g.trend);
  return { ...f, id, note: `${f.note ?? ""}; ${span}` };
}

/**
 * The gap to dense against N (log axis): each size's gap averaged over the trend's sparsities
 * with its 95% t interval over seeds (within-seed differences; labelled as the evaluation error
 * when no size has two seeds), and the weighted line of the trend through the weighted mean
 * point.
 *
 * @param g From {@link v2GapTrend}.
 * @returns The figure (no traces without a trend).
 *
 * @example
 * ```ts
 * import { v2GapFigure, v2GapTrend } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.equal(v2GapFigure(v2GapTrend([])).data.length, 0);
 * ```
 */
export function v2GapFigure(g: V2GapTrend): Figure {
  const t = g.trend;
  if (!t) return new Figure([], { title: { text: "Gap to dense vs N: not enough runs" } });
  const x = t.perSize.map((p) => p.N), y = t.perSize.map((p) => p.gap.value);
  const ci = t.perSize.map((p) => {
    const q = tQuantile(0.975, p.gap.df ?? Infinity);
    return Number.isFinite(p.gap.se) ? q * p.gap.se : 0;
  });
  // The weighted line passes through the weighted mean of the points.
  const w = t.perSize.map((p) => 1 / p.weightSe ** 2);
  const sw = w.reduce((a, b) => a + b, 0);
  const xm = w.reduce((a, wi, i) => a + wi * Math.log10(x[i]!), 0) / sw;
  const ym = w.reduce((a, wi, i) => a + wi * y[i]!, 0) / sw;
  const lo = Math.min(...x) / 1.3, hi = Math.max(...x) * 1.3;
  const lineAt = (N: number) => ym + t.slope.value * (Math.log10(N) - xm);
  const q = tQuantile(0.975, t.slope.df ?? Infinity);
  // Without a size of two seeds the only error is the evaluation error: say so on the figure.
  const bars = t.seedNoise ? "over seeds" : "from the evaluation error: one seed, no seed noise";
  return new Figure([
    {
      type: "scatter",
      mode: "markers",
      name: `mean gap per size (95% CI ${bars})`,
      x,
      y,
      error_y: { type: "data", array: ci, visible: true, width: 4 },
      marker: { size: 9, color: "#1f77b4" },
      text: t.perSize.map((p) => `${p.seeds} seed${p.seeds === 1 ? "" : "s"}`),
    },
    {
      type: "scatter",
      mode: "lines",
      name: `weighted fit: ${t.slope.value >= 0 ? "+" : ""}${t.slope.value.toFixed(4)} ± ${
        (q * t.slope.se).toFixed(4)
      } nats per 10× N (95%)`,
      x: [lo, hi],
      y: [lineAt(lo), lineAt(hi)],
      line: { color: "#d62728", dash: "dash" },
    },
  ], {
    title: {
      text: `Gap to dense vs N (mean over S = ${g.sparsities.join(", ")}; bars: 95% CI ${bars})`,
    },
    xaxis: { title: { text: "non-embedding parameters N" }, type: "log" },
    yaxis: {
      title: { text: "loss(S) − loss(dense) (nats)" },
      zeroline: true,
      zerolinecolor: "#888",
    },
  });
}
