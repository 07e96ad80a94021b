/**
 * The gap to dense against N on the v2 grid (`results/scaling_v2.jsonl`): the existing
 * seed-level trend of `report.ts` (`gapTrend`), restricted to the cells that may enter a fit
 * (at least 5 training tokens per parameter, a tuned learning rate unless asked otherwise), with
 * the span of N it covers, so a reader sees whether the trend rests on ≥ 1.5 decades.
 *
 * @module
 */
import type { RunRecord } from "../src/train/runner.ts";
import { gapsToDense, type GapTrend, gapTrend, groupRuns } from "./report.ts";

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
  /** The trend (null: fewer than two sizes with a dense twin). */
  trend: GapTrend | null;
  /** log10 of the largest over the smallest N of the trend's sizes. */
  decades: number;
  /** Runs dropped by {@link fitCells}. */
  excluded: number;
}

/**
 * The gap-to-dense trend with N of the v2 grid: {@link fitCells}, then
 * `gapTrend(gapsToDense(groupRuns(records)), sparsities)`. Groups ignore the seed only, so the
 * dense twin of a cell is the S = 0 cell of the same size, LR and budget.
 *
 * @param records `scaling_v2` results.
 * @param sparsities Which S to average (default: the trend's default, S ≥ 0.4).
 * @param opts Which cells enter.
 * @returns The trend, its span in decades and the excluded count.
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
 *   run("b", 1e7, 0, seed, 2.5 + seed / 100), run("b", 1e7, 0.5, seed, 2.6 + seed / 100),
 * ]);
 * const g = v2GapTrend(records);
 * assert.equal(g.decades, 2);
 * assert.ok(Math.abs(g.trend!.slope.value + 0.05) < 1e-9); // gap 0.2 → 0.1 over 2 decades
 * ```
 */
export function v2GapTrend(
  records: readonly RunRecord[],
  sparsities?: readonly number[],
  opts: FitCellOptions = {},
): V2GapTrend {
  const kept = fitCells(records, opts);
  const trend = gapTrend(gapsToDense(groupRuns(kept)), sparsities);
  const Ns = trend?.perSize.map((p) => p.N) ?? [];
  return {
    trend,
    decades: Ns.length >= 2 ? Math.log10(Math.max(...Ns) / Math.min(...Ns)) : 0,
    excluded: records.length - kept.length,
  };
}
