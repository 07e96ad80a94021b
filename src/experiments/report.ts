/**
 * Analysis of sweep results for the notebooks and the README: group runs over seeds (mean ±
 * standard error), gaps to the dense run of the same size, the scaling-law fit on a grid with its
 * degenerate cases reported instead of thrown, comparisons at equal activated parameters, and
 * the sparsity statistics of the paper's findings (qsparse.md §9).
 *
 * **Which S the fit uses.** The law `L(N, S)` is fitted with the nominal top-K sparsity of each
 * run (its `S` tag), as the paper does and as `cli.ts fit` does by default. The measured overall
 * sparsity of a record is higher: it also counts the natural zeros of ReLU² on the down-projection
 * input (about half of it even in a dense run), which the law's S does not model.
 *
 * @module
 */
import { ValueError } from "../core/errors.ts";
import type { RunRecord } from "../train/runner.ts";
import {
  type FitOptions,
  fitScalingLaw,
  type ScalingLawFit,
  type ScalingPoint,
} from "../train/scaling_law.ts";

/** A mean with its standard error. */
export interface MeanSe {
  /** The mean. */
  mean: number;
  /** Its standard error. */
  se: number;
  /** Number of values averaged. */
  n: number;
}

/**
 * Mean and standard error of the mean. With one value there is no spread to measure, so the
 * standard error is `fallbackSe` (a run's own evaluation noise, say).
 *
 * @param values The values (e.g. one validation loss per seed).
 * @param fallbackSe The standard error to report for a single value; default NaN.
 * @returns Mean, standard error and count.
 * @throws {ValueError} For an empty list.
 *
 * @example
 * ```ts
 * import { meanSe } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const m = meanSe([1, 3]);
 * assert.equal(m.mean, 2);
 * assert.equal(m.se, 1); // sd √2 over √2 values
 * assert.equal(meanSe([5], 0.1).se, 0.1);
 * ```
 */
export function meanSe(values: readonly number[], fallbackSe = NaN): MeanSe {
  const n = values.length;
  if (n === 0) throw new ValueError("meanSe", "no values to average");
  const mean = values.reduce((a, b) => a + b, 0) / n;
  if (n === 1) return { mean, se: fallbackSe, n };
  const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1);
  return { mean, se: Math.sqrt(variance / n), n };
}

/** Runs that differ only in their seed, summarised. */
export interface RunGroup {
  /** The shared tags as `k=v` pairs in key order, e.g. `S=0.5,size=xs,variant=topk`. */
  key: string;
  /** The shared tags (the ignored ones, such as `seed`, removed). */
  tags: RunRecord["tags"];
  /** The runs. */
  records: RunRecord[];
  /**
   * Final validation loss over the runs. With several seeds the standard error is over seeds;
   * with one it is that run's evaluation standard error, which leaves out seed-to-seed spread.
   */
  loss: MeanSe;
  /** Non-embedding parameters (mean over the runs; equal for runs of one size). */
  N: number;
  /** Measured activated parameters (mean over the runs). */
  Na: number;
  /** Measured overall sparsity, or null when no run reported it. */
  sparsity: MeanSe | null;
  /** Measured sparsity per site kind (`qkv`, `o`, `gateUp`, `down`), mean over the runs. */
  perSite: Record<string, number>;
}

/** Options of {@link groupRuns}. */
export interface GroupOptions {
  /** Tags that do not distinguish groups; default `["seed"]`. */
  ignore?: readonly string[];
}

function tagKey(tags: RunRecord["tags"], ignore: ReadonlySet<string>): string {
  return Object.keys(tags).filter((k) => !ignore.has(k)).sort()
    .map((k) => `${k}=${tags[k]}`).join(",");
}

/**
 * Groups runs whose tags agree apart from the ignored ones (the seed) and summarises each group.
 *
 * @param records Results (e.g. from `readResults`).
 * @param opts Tags to ignore.
 * @returns One group per distinct tag set, in order of first appearance.
 *
 * @example
 * ```ts
 * import type { RunRecord } from "@qsparse/kit/train";
 * import { groupRuns } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const run = (seed: number, valLoss: number) =>
 *   ({ tags: { size: "xs", S: 0.5, seed }, valLoss, valStderr: 0.01, N: 1e5, Na: 5e4, sparsity: null }) as unknown as RunRecord;
 * const [g] = groupRuns([run(1, 2.0), run(2, 2.2)]);
 * assert.equal(g!.key, "S=0.5,size=xs");
 * assert.ok(Math.abs(g!.loss.mean - 2.1) < 1e-12);
 * ```
 */
export function groupRuns(records: readonly RunRecord[], opts: GroupOptions = {}): RunGroup[] {
  const ignore = new Set(opts.ignore ?? ["seed"]);
  const byKey = new Map<string, RunRecord[]>();
  for (const r of records) {
    const k = tagKey(r.tags, ignore);
    const list = byKey.get(k);
    if (list) list.push(r);
    else byKey.set(k, [r]);
  }
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  return [...byKey].map(([key, runs]) => {
    const tags = Object.fromEntries(
      Object.entries(runs[0]!.tags).filter(([k]) => !ignore.has(k)),
    );
    // Single-run fallback: the evaluation noise of that run.
    const loss = meanSe(runs.map((r) => r.valLoss), runs[0]!.valStderr);
    const measured = runs.filter((r) => r.sparsity);
    const sites = new Set(measured.flatMap((r) => Object.keys(r.sparsity!.perSite)));
    return {
      key,
      tags,
      records: runs,
      loss,
      N: mean(runs.map((r) => r.N)),
      Na: mean(runs.map((r) => r.Na)),
      sparsity: measured.length ? meanSe(measured.map((r) => r.sparsity!.overall), 0) : null,
      perSite: Object.fromEntries(
        [...sites].map((s) => [s, mean(measured.map((r) => r.sparsity!.perSite[s] ?? 0))]),
      ),
    };
  });
}

/** Options of {@link sweepPoints} and {@link fitSweep}. */
export interface SweepPointOptions {
  /**
   * `"nominal"` (default): each run's `S` tag, the top-K sparsity the law models; runs without
   * a numeric `S` tag use the measured overall sparsity. `"measured"`: the measured overall
   * sparsity (which also counts ReLU²'s natural zeros).
   */
  sparsity?: "nominal" | "measured";
}

/**
 * The scaling-law points `{ N, S, loss }` of a sweep, one per run (seeds stay separate points, as
 * the paper fits over all runs).
 *
 * @param records Results.
 * @param opts Which S to use.
 * @returns The points.
 *
 * @example
 * ```ts
 * import type { RunRecord } from "@qsparse/kit/train";
 * import { sweepPoints } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const r = { tags: { S: 0.5 }, N: 1e5, valLoss: 2, sparsity: { overall: 0.6 } } as unknown as RunRecord;
 * assert.deepEqual(sweepPoints([r]), [{ N: 1e5, S: 0.5, loss: 2 }]);
 * assert.equal(sweepPoints([r], { sparsity: "measured" })[0]!.S, 0.6);
 * ```
 */
export function sweepPoints(
  records: readonly RunRecord[],
  opts: SweepPointOptions = {},
): ScalingPoint[] {
  const measured = opts.sparsity === "measured";
  return records.map((r) => ({
    N: r.N,
    S: !measured && typeof r.tags.S === "number" ? r.tags.S : r.sparsity?.overall ?? 0,
    loss: r.valLoss,
  }));
}

/** A fit that worked, with warnings about what it cannot resolve. */
export interface SweepFitOk {
  /** The fit worked. */
  ok: true;
  /** The fitted law, S* and intervals. */
  fit: ScalingLawFit;
  /** The points it was fitted to. */
  points: ScalingPoint[];
  /** Why the fit should be read with care (unresolved S*, constants at a bound, ...). */
  warnings: string[];
}

/** A fit that could not be made (too few points, a degenerate grid). */
export interface SweepFitFailed {
  /** The fit could not be made. */
  ok: false;
  /** Why. */
  reason: string;
  /** The points. */
  points: ScalingPoint[];
}

/** Result of {@link fitSweep}. */
export type SweepFit = SweepFitOk | SweepFitFailed;

/**
 * Fits the Q-Sparse scaling law to a sweep's runs, reporting rather than throwing when the grid
 * cannot support a fit (a smoke run with two sizes and a handful of steps), and listing what the
 * fit cannot resolve. N is in units of 1e6 non-embedding parameters by default, as `cli.ts fit`.
 *
 * @param records Results of a sparsity × size grid.
 * @param opts Which S (nominal by default) and the fit options (bootstrap 200, seed 0).
 * @returns `{ ok: true, fit, warnings }` or `{ ok: false, reason }`.
 *
 * @example A grid too small to fit is reported, not thrown
 * ```ts
 * import type { RunRecord } from "@qsparse/kit/train";
 * import { fitSweep } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const r = { tags: { S: 0 }, N: 1e5, valLoss: 2 } as unknown as RunRecord;
 * const res = await fitSweep([r]);
 * assert.equal(res.ok, false);
 * ```
 */
export async function fitSweep(
  records: readonly RunRecord[],
  opts: SweepPointOptions & FitOptions = {},
): Promise<SweepFit> {
  const { sparsity, ...fitOpts } = opts;
  const points = sweepPoints(records, { sparsity });
  let fit: ScalingLawFit;
  try {
    fit = await fitScalingLaw(points, { nScale: 1e6, bootstrap: 200, ...fitOpts });
  } catch (e) {
    if (e instanceof ValueError) return { ok: false, reason: e.message, points };
    throw e;
  }
  const warnings: string[] = [];
  if (!fit.converged) warnings.push("the best start did not converge before the iteration cap");
  if (fit.ci) {
    const [lo, hi] = fit.ci.sStar;
    if (hi - lo > 0.3) {
      warnings.push(
        `S* is not resolved: its ${100 * fit.ci.level}% interval is ${pct(lo)}–${pct(hi)}`,
      );
    }
    if (fit.ci.samples < 0.8 * (fitOpts.bootstrap ?? 200)) {
      warnings.push(`only ${fit.ci.samples} bootstrap refits reached a finite objective`);
    }
  }
  if (fit.alpha < 0.01) {
    warnings.push(`α = ${fit.alpha.toPrecision(2)}: the loss barely depends on N on this grid`);
  }
  if (fit.beta < 1e-6) {
    warnings.push("β is at its lower bound: the loss does not grow with S on this grid");
  }
  if (fit.C < 1e-6) warnings.push("C is at its lower bound: the dense factor is not identified");
  return { ok: true, fit, points, warnings };
}

function pct(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

/** The gap of one sparse group to the dense group with the same other tags. */
export interface DenseGap {
  /** The sparse group. */
  group: RunGroup;
  /** Its dense twin (nominal S = 0). */
  dense: RunGroup;
  /** Nominal sparsity (the `S` tag). */
  S: number;
  /** Non-embedding parameters. */
  N: number;
  /** `loss(S) − loss(0)` in nats. */
  gap: number;
  /** Standard error of the gap (the two groups' errors in quadrature). */
  se: number;
  /** `gap / loss(0)`. */
  relative: number;
}

/**
 * Gaps to dense: for every group with a numeric `S` tag > 0, its loss minus the loss of the group
 * with the same tags and `S` = 0 (same size, same variant).
 *
 * @param groups Groups from {@link groupRuns}.
 * @returns One row per sparse group that has a dense twin, in group order.
 *
 * @example
 * ```ts
 * import type { RunRecord } from "@qsparse/kit/train";
 * import { gapsToDense, groupRuns } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const run = (S: number, valLoss: number) =>
 *   ({ tags: { size: "xs", S }, valLoss, valStderr: 0.01, N: 1e5, Na: 1e5 * (1 - S), sparsity: null }) as unknown as RunRecord;
 * const [row] = gapsToDense(groupRuns([run(0, 2.0), run(0.5, 2.1)]));
 * assert.ok(Math.abs(row!.gap - 0.1) < 1e-12);
 * assert.ok(Math.abs(row!.se - Math.SQRT2 * 0.01) < 1e-12);
 * ```
 */
export function gapsToDense(groups: readonly RunGroup[]): DenseGap[] {
  const noS = (g: RunGroup): string =>
    Object.keys(g.tags).filter((k) => k !== "S").sort().map((k) => `${k}=${g.tags[k]}`).join(",");
  const dense = new Map<string, RunGroup>();
  for (const g of groups) if (g.tags.S === 0) dense.set(noS(g), g);
  const out: DenseGap[] = [];
  for (const g of groups) {
    const S = g.tags.S;
    if (typeof S !== "number" || S <= 0) continue;
    const d = dense.get(noS(g));
    if (!d) continue;
    const gap = g.loss.mean - d.loss.mean;
    out.push({
      group: g,
      dense: d,
      S,
      N: g.N,
      gap,
      se: Math.hypot(g.loss.se, d.loss.se),
      relative: gap / d.loss.mean,
    });
  }
  return out;
}

/** A statistic with its standard error. */
export interface Estimate {
  /** The value. */
  value: number;
  /** Its standard error. */
  se: number;
}

/** How much faster than linear the gap grows from `lo` to `hi` sparsity, per size and pooled. */
export interface Convexity {
  /** Lower sparsity compared. */
  lo: number;
  /** Upper sparsity compared. */
  hi: number;
  /** Per size: both gaps and the excess `gap(hi) − (hi/lo)·gap(lo)` over linear growth. */
  perSize: { N: number; gapLo: number; gapHi: number; excess: Estimate }[];
  /** The excess averaged over sizes (> 0: super-linear). */
  excess: Estimate;
  /** `gap(lo)` averaged over sizes. */
  gapLo: number;
  /** `gap(hi)` averaged over sizes. */
  gapHi: number;
  /**
   * `gapHi / gapLo`, the ratio of the averaged gaps (a mean of per-size ratios would explode when
   * some size's `gap(lo)` is near zero); NaN when `gapLo` is not positive.
   */
  ratio: number;
}

/**
 * Tests whether the gap to dense grows faster than linearly in S (the paper's `exp(β/(1−S))`):
 * a gap linear in S (through 0 at S = 0) would have `gap(hi) = (hi/lo)·gap(lo)`; the excess over
 * that is positive for a super-linear law. Uses the sizes that have both sparsities.
 *
 * @param gaps Rows from {@link gapsToDense}.
 * @param lo Lower sparsity; default 0.4.
 * @param hi Upper sparsity; default 0.8.
 * @returns Per-size and pooled statistics, or null when no size has both.
 *
 * @example
 * ```ts
 * import type { RunRecord } from "@qsparse/kit/train";
 * import { gapConvexity, gapsToDense, groupRuns } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const run = (S: number, valLoss: number) =>
 *   ({ tags: { S }, valLoss, valStderr: 0.001, N: 1e5, Na: 1e5, sparsity: null }) as unknown as RunRecord;
 * const c = gapConvexity(gapsToDense(groupRuns([run(0, 2), run(0.4, 2.01), run(0.8, 2.08)])));
 * assert.ok(c!.excess.value > 0 && Math.abs(c!.ratio - 8) < 1e-9);
 * ```
 */
export function gapConvexity(gaps: readonly DenseGap[], lo = 0.4, hi = 0.8): Convexity | null {
  const perSize: Convexity["perSize"] = [];
  for (const N of new Set(gaps.map((g) => g.N))) {
    const a = gaps.find((g) => g.N === N && Math.abs(g.S - lo) < 1e-9);
    const b = gaps.find((g) => g.N === N && Math.abs(g.S - hi) < 1e-9);
    if (!a || !b) continue;
    // The two gaps share the dense run, so their errors are correlated; using the sparse runs'
    // errors plus the dense error once through the combined coefficient keeps that honest.
    const k = hi / lo;
    const se = Math.hypot(b.group.loss.se, k * a.group.loss.se, (1 - k) * a.dense.loss.se);
    perSize.push({ N, gapLo: a.gap, gapHi: b.gap, excess: { value: b.gap - k * a.gap, se } });
  }
  if (!perSize.length) return null;
  const m = perSize.length;
  const mean = (f: (p: Convexity["perSize"][number]) => number) =>
    perSize.reduce((s, p) => s + f(p), 0) / m;
  const gapLo = mean((p) => p.gapLo), gapHi = mean((p) => p.gapHi);
  return {
    lo,
    hi,
    perSize,
    excess: {
      value: perSize.reduce((s, p) => s + p.excess.value, 0) / m,
      se: Math.sqrt(perSize.reduce((s, p) => s + p.excess.se ** 2, 0)) / m,
    },
    gapLo,
    gapHi,
    ratio: gapLo > 0 ? gapHi / gapLo : NaN,
  };
}

/** How the gap to dense changes with model size. */
export interface GapTrend {
  /** Per size: the gap averaged over the chosen sparsities. */
  perSize: { N: number; gap: Estimate }[];
  /** Weighted least-squares slope of the mean gap against log10 N (nats per 10× of N). */
  slope: Estimate;
  /**
   * Relative change per 10× of N, `slope / mean gap` (the paper's law: 10^−α − 1 ≈ −21%); NaN
   * when the mean gap is not positive, where a relative change means nothing.
   */
  relativePerDecade: number;
}

/**
 * The trend of the gap to dense with N: the gap averaged over `sparsities` at each size, then a
 * weighted least-squares line against log10 N. Negative slope: the gap shrinks with N.
 *
 * @param gaps Rows from {@link gapsToDense}.
 * @param sparsities Which S to average; default every S ≥ 0.4 (where the gap is large enough
 *   to measure at small scale).
 * @returns The trend, or null with fewer than 2 sizes.
 *
 * @example
 * ```ts
 * import type { RunRecord } from "@qsparse/kit/train";
 * import { gapsToDense, gapTrend, groupRuns } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const run = (N: number, S: number, valLoss: number) =>
 *   ({ tags: { N, S }, valLoss, valStderr: 0.001, N, Na: N, sparsity: null }) as unknown as RunRecord;
 * const t = gapTrend(gapsToDense(groupRuns([run(1e5, 0, 3), run(1e5, 0.5, 3.2), run(1e6, 0, 2.5), run(1e6, 0.5, 2.6)])));
 * assert.ok(Math.abs(t!.slope.value + 0.1) < 1e-9);
 * ```
 */
export function gapTrend(
  gaps: readonly DenseGap[],
  sparsities?: readonly number[],
): GapTrend | null {
  const use = (S: number): boolean =>
    sparsities ? sparsities.some((s) => Math.abs(s - S) < 1e-9) : S >= 0.4 - 1e-9;
  const perSize: GapTrend["perSize"] = [];
  for (const N of [...new Set(gaps.map((g) => g.N))].sort((a, b) => a - b)) {
    const rows = gaps.filter((g) => g.N === N && use(g.S));
    if (!rows.length) continue;
    const m = rows.length;
    perSize.push({
      N,
      gap: {
        value: rows.reduce((s, r) => s + r.gap, 0) / m,
        // The rows share the dense run; averaging its error with weight 1 keeps that correlation.
        se: Math.hypot(
          Math.sqrt(rows.reduce((s, r) => s + r.group.loss.se ** 2, 0)) / m,
          rows[0]!.dense.loss.se,
        ),
      },
    });
  }
  if (perSize.length < 2) return null;
  // Weighted least squares; a zero standard error (e.g. unknown) falls back to equal weights.
  const anyZero = perSize.some((p) => !(p.gap.se > 0));
  const w = perSize.map((p) => (anyZero ? 1 : 1 / p.gap.se ** 2));
  const x = perSize.map((p) => Math.log10(p.N)), y = perSize.map((p) => p.gap.value);
  const sw = w.reduce((a, b) => a + b, 0);
  const xm = w.reduce((a, wi, i) => a + wi * x[i]!, 0) / sw;
  const ym = w.reduce((a, wi, i) => a + wi * y[i]!, 0) / sw;
  const sxx = w.reduce((a, wi, i) => a + wi * (x[i]! - xm) ** 2, 0);
  const slope = w.reduce((a, wi, i) => a + wi * (x[i]! - xm) * (y[i]! - ym), 0) / sxx;
  // Var(slope) = Σ w²σ²(x − x̄)² / Sxx²; with weights 1/σ² that is 1/Sxx.
  const se = Math.sqrt(
    perSize.reduce((a, p, i) => a + (w[i]! * (x[i]! - xm)) ** 2 * p.gap.se ** 2, 0),
  ) / sxx;
  const meanGap = y.reduce((a, b) => a + b, 0) / y.length;
  return {
    perSize,
    slope: { value: slope, se },
    relativePerDecade: meanGap > 0 ? slope / meanGap : NaN,
  };
}

/** A sparse group against dense at the same activated parameters. */
export interface EqualNaRow {
  /** The sparse group. */
  group: RunGroup;
  /** Nominal sparsity. */
  S: number;
  /** Total non-embedding parameters of the sparse model. */
  N: number;
  /** Nominal activated parameters `N(1 − S)`. */
  Na: number;
  /** Dense loss at N = Na, interpolated linearly in log N between the two nearest dense sizes. */
  dense: Estimate;
  /** `dense − sparse` in nats: positive when the sparse model is better. */
  advantage: Estimate;
}

/**
 * Sparse runs against dense runs at equal activated parameters (the paper's §3.6): each sparse
 * group with nominal `N_a = N(1 − S)` inside the dense sizes' range is compared with the dense
 * loss interpolated at N = N_a (linear in log N). Nominal N_a is the paper's accounting; the
 * measured N_a of a record is lower for every run alike, since it also drops ReLU²'s zeros.
 *
 * @param groups Groups from {@link groupRuns} (dense groups have `S` = 0).
 * @param filter Which sparse groups to compare (default: every S > 0).
 * @returns One row per comparable sparse group.
 *
 * @example
 * ```ts
 * import type { RunRecord } from "@qsparse/kit/train";
 * import { equalNaComparison, groupRuns } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const run = (N: number, S: number, valLoss: number) =>
 *   ({ tags: { N, S }, valLoss, valStderr: 0.01, N, Na: N, sparsity: null }) as unknown as RunRecord;
 * const rows = equalNaComparison(groupRuns([run(1e5, 0, 3), run(4e5, 0, 2.6), run(4e5, 0.5, 2.7)]));
 * assert.equal(rows.length, 1);
 * assert.ok(rows[0]!.advantage.value > 0); // 2.7 beats dense at 2e5 (2.8)
 * ```
 */
export function equalNaComparison(
  groups: readonly RunGroup[],
  filter: (g: RunGroup) => boolean = () => true,
): EqualNaRow[] {
  const dense = groups.filter((g) => g.tags.S === 0).sort((a, b) => a.N - b.N);
  const out: EqualNaRow[] = [];
  for (const g of groups) {
    const S = g.tags.S;
    if (typeof S !== "number" || S <= 0 || !filter(g)) continue;
    const Na = g.N * (1 - S);
    const i = dense.findIndex((d) => d.N >= Na);
    if (i < 0 || (i === 0 && dense[0]!.N > Na)) continue;
    const hi = dense[i]!, lo = i === 0 ? hi : dense[i - 1]!;
    const t = hi === lo ? 0 : (Math.log(Na) - Math.log(lo.N)) / (Math.log(hi.N) - Math.log(lo.N));
    const d: Estimate = {
      value: (1 - t) * lo.loss.mean + t * hi.loss.mean,
      se: Math.hypot((1 - t) * lo.loss.se, t * hi.loss.se),
    };
    out.push({
      group: g,
      S,
      N: g.N,
      Na,
      dense: d,
      advantage: { value: d.value - g.loss.mean, se: Math.hypot(d.se, g.loss.se) },
    });
  }
  return out;
}

/**
 * The loss difference `a − b` of two groups, standard errors in quadrature (independent runs).
 *
 * @param a A group.
 * @param b Another group.
 * @returns The difference in nats.
 *
 * @example
 * ```ts
 * import { lossDifference, type RunGroup } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const g = (mean: number, se: number) => ({ loss: { mean, se, n: 1 } }) as unknown as RunGroup;
 * assert.deepEqual(lossDifference(g(2.5, 0.03), g(2, 0.04)), { value: 0.5, se: 0.05 });
 * ```
 */
export function lossDifference(a: RunGroup, b: RunGroup): Estimate {
  return { value: a.loss.mean - b.loss.mean, se: Math.hypot(a.loss.se, b.loss.se) };
}

/**
 * Pooled mean of independent estimates: the average value, errors in quadrature over the count.
 *
 * @param estimates The estimates.
 * @returns Their mean, or null for none.
 *
 * @example
 * ```ts
 * import { pooled } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.deepEqual(pooled([{ value: 1, se: 0.3 }, { value: 3, se: 0.4 }]), { value: 2, se: 0.25 });
 * ```
 */
export function pooled(estimates: readonly Estimate[]): Estimate | null {
  if (!estimates.length) return null;
  const m = estimates.length;
  return {
    value: estimates.reduce((s, e) => s + e.value, 0) / m,
    se: Math.sqrt(estimates.reduce((s, e) => s + e.se ** 2, 0)) / m,
  };
}

/** How a run's measured sparsity moved during training. */
export interface SparsityDrift {
  /** Sparsity in the first log window. */
  first: number;
  /** Sparsity in the last log window. */
  last: number;
  /** `last − first` (negative: the model became denser, as the paper's ReLU ablation does). */
  change: number;
}

/**
 * The change of a run's measured sparsity (overall or one site kind) from its first to its last
 * training log window: top-K keeps it fixed by construction, a ReLU sparsifier lets it drift.
 *
 * @param record A run.
 * @param site A site kind (`qkv`, `o`, `gateUp`, `down`), or omitted for overall.
 * @returns The drift, or null when the run logged fewer than two windows.
 *
 * @example
 * ```ts
 * import type { RunRecord } from "@qsparse/kit/train";
 * import { sparsityDrift } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const r = { sparsityCurve: [{ step: 1, overall: 0.6, perSite: {} }, { step: 9, overall: 0.5, perSite: {} }] } as unknown as RunRecord;
 * assert.ok(Math.abs(sparsityDrift(r)!.change + 0.1) < 1e-12);
 * ```
 */
export function sparsityDrift(record: RunRecord, site?: string): SparsityDrift | null {
  const c = record.sparsityCurve ?? [];
  if (c.length < 2) return null;
  const at = (i: number): number => (site ? c[i]!.perSite[site] ?? 0 : c[i]!.overall);
  const first = at(0), last = at(c.length - 1);
  return { first, last, change: last - first };
}

/** Measured sparsity interpolated at a nominal S. */
export interface SparsityAt {
  /** The nominal sparsity asked for. */
  S: number;
  /** Measured overall sparsity. */
  overall: number;
  /** Measured sparsity per site kind. */
  perSite: Record<string, number>;
  /** The nominal S values interpolated between (equal when S is on the grid). */
  from: [number, number];
}

/**
 * The measured sparsity (overall and per site) at a nominal S, interpolated linearly between the
 * nearest grid points. Used for the paper's "top-K 70% everywhere (S = 0.3) gives about 75% at
 * the ReLU² down-projection and 40% overall" when the grid has no S = 0.3.
 *
 * @param groups Groups of one size and variant, with numeric `S` tags.
 * @param S The nominal sparsity.
 * @returns The interpolated sparsity, or null when S is outside the grid or nothing is measured.
 *
 * @example
 * ```ts
 * import { type RunGroup, sparsityAt } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const g = (S: number, down: number) =>
 *   ({ tags: { S }, sparsity: { mean: S, se: 0, n: 1 }, perSite: { down } }) as unknown as RunGroup;
 * const at = sparsityAt([g(0.2, 0.7), g(0.4, 0.8)], 0.3);
 * assert.ok(Math.abs(at!.perSite.down! - 0.75) < 1e-12);
 * ```
 */
export function sparsityAt(groups: readonly RunGroup[], S: number): SparsityAt | null {
  const pts = groups.filter((g) => typeof g.tags.S === "number" && g.sparsity)
    .sort((a, b) => (a.tags.S as number) - (b.tags.S as number));
  const hiIdx = pts.findIndex((g) => (g.tags.S as number) >= S - 1e-9);
  if (hiIdx < 0) return null;
  const hi = pts[hiIdx]!;
  const sHi = hi.tags.S as number;
  const lo = Math.abs(sHi - S) < 1e-9 || hiIdx === 0 ? hi : pts[hiIdx - 1]!;
  const sLo = lo.tags.S as number;
  if (lo === hi && Math.abs(sHi - S) > 1e-9) return null;
  const t = lo === hi ? 0 : (S - sLo) / (sHi - sLo);
  const mix = (a: number, b: number): number => (1 - t) * a + t * b;
  const sites = new Set([...Object.keys(lo.perSite), ...Object.keys(hi.perSite)]);
  return {
    S,
    overall: mix(lo.sparsity!.mean, hi.sparsity!.mean),
    perSite: Object.fromEntries(
      [...sites].map((s) => [s, mix(lo.perSite[s] ?? 0, hi.perSite[s] ?? 0)]),
    ),
    from: [sLo, sHi],
  };
}
