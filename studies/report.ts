/**
 * Analysis of sweep results for the notebooks and the README: group runs over seeds (mean ±
 * standard error), gaps to the dense run of the same size, the scaling-law fit on a grid with its
 * degenerate cases reported instead of thrown, comparisons at equal activated parameters, and
 * the sparsity statistics of the paper's findings (docs/paper-notes.md §9).
 *
 * **Which S the fit uses.** The law `L(N, S)` is fitted with the nominal top-K sparsity of each
 * run (its `S` tag), as the paper does and as `cli.ts fit` does by default. The measured overall
 * sparsity of a record is higher: it also counts the natural zeros of ReLU² on the down-projection
 * input (about half of it even in a dense run), which the law's S does not model.
 *
 * @module
 */
import { ValueError } from "../src/core/errors.ts";
import { combine, type TEstimate, type Trend, weightedTrend } from "./stats.ts";
import type { RunRecord } from "../src/train/runner.ts";
import {
  type FitOptions,
  fitScalingLaw,
  profileScalingLaw,
  type ScalingLawFit,
  type ScalingLawProfile,
  type ScalingPoint,
} from "../src/train/scaling_law.ts";

/** A mean with its standard error. */
export interface MeanSe {
  /** The mean. */
  mean: number;
  /** Its standard error. */
  se: number;
  /** Number of values averaged. */
  n: number;
  /**
   * Degrees of freedom of `se`: n − 1 over several values; for one value, those of the
   * fallback (Infinity for a run's evaluation error, the pooled df for a pooled seed noise).
   */
  df: number;
}

/**
 * Mean and standard error of the mean, with its degrees of freedom (n − 1). With one value there
 * is no spread to measure, so the standard error is `fallbackSe` (a run's own evaluation noise,
 * or a seed noise pooled over other cells) with `fallbackDf`.
 *
 * @param values The values (e.g. one validation loss per seed).
 * @param fallbackSe The standard error to report for a single value; default NaN.
 * @param fallbackDf Its degrees of freedom; default Infinity.
 * @returns Mean, standard error, count and df.
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
export function meanSe(
  values: readonly number[],
  fallbackSe = NaN,
  fallbackDf = Infinity,
): MeanSe {
  const n = values.length;
  if (n === 0) throw new ValueError("meanSe", "no values to average");
  const mean = values.reduce((a, b) => a + b, 0) / n;
  if (n === 1) return { mean, se: fallbackSe, n, df: fallbackDf };
  const variance = values.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1);
  return { mean, se: Math.sqrt(variance / n), n, df: n - 1 };
}

/** A standard deviation pooled over groups, with its degrees of freedom. */
export interface PooledSd {
  /** √(Σ within-group squared deviations / Σ (nᵢ − 1)). */
  sd: number;
  /** Σ (nᵢ − 1). */
  df: number;
}

/**
 * The within-group standard deviation pooled over groups of replicates (groups of one value add
 * nothing): the seed-to-seed noise of one run when each group holds one cell's seeds.
 *
 * @param groups Values per group.
 * @returns The pooled sd, or null when no group has two values.
 *
 * @example
 * ```ts
 * import { pooledSd } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const p = pooledSd([[1, 3], [5, 7], [9]]);
 * assert.equal(p!.df, 2);
 * assert.ok(Math.abs(p!.sd - Math.SQRT2) < 1e-12);
 * ```
 */
export function pooledSd(groups: readonly (readonly number[])[]): PooledSd | null {
  let ss = 0, df = 0;
  for (const g of groups) {
    if (g.length < 2) continue;
    const m = g.reduce((a, b) => a + b, 0) / g.length;
    ss += g.reduce((a, b) => a + (b - m) ** 2, 0);
    df += g.length - 1;
  }
  return df > 0 ? { sd: Math.sqrt(ss / df), df } : null;
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
   * Final validation loss over the runs. With several seeds the standard error is over seeds
   * (df = seeds − 1). With one seed it is the seed noise pooled over the multi-seed groups of the
   * same call (or that run's evaluation error when no group has two seeds, which leaves out the
   * seed-to-seed spread); {@link RunGroup.singleSeed} flags it.
   */
  loss: MeanSe;
  /** The group has one run: its standard error is borrowed, not measured. */
  singleSeed: boolean;
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
  /**
   * Standard error of single-seed groups: `"pooled"` (default) takes the seed noise pooled over
   * the groups with several seeds (at least the run's evaluation error); `"evaluation"` the
   * run's evaluation error alone.
   */
  singleSeedSe?: "pooled" | "evaluation";
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
  // One run says nothing about seed noise, and its evaluation error is about half of it here
  // (0.012 against ~0.026 nats), so single-seed cells borrow the noise the replicated cells show.
  const seedNoise = opts.singleSeedSe === "evaluation"
    ? null
    : pooledSd([...byKey.values()].map((runs) => runs.map((r) => r.valLoss)));
  return [...byKey].map(([key, runs]) => {
    const tags = Object.fromEntries(
      Object.entries(runs[0]!.tags).filter(([k]) => !ignore.has(k)),
    );
    const evalSe = runs[0]!.valStderr;
    const loss = seedNoise && seedNoise.sd > evalSe
      ? meanSe(runs.map((r) => r.valLoss), seedNoise.sd, seedNoise.df)
      : meanSe(runs.map((r) => r.valLoss), evalSe);
    const measured = runs.filter((r) => r.sparsity);
    const sites = new Set(measured.flatMap((r) => Object.keys(r.sparsity!.perSite)));
    return {
      key,
      tags,
      records: runs,
      loss,
      singleSeed: runs.length === 1,
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
  /** The fitted law (Huber, the paper's method), S* and bootstrap intervals. */
  fit: ScalingLawFit;
  /**
   * The least-squares fit with profile-likelihood intervals of every constant and S* (null when
   * there are too few points or `profile: false`).
   */
  profile: ScalingLawProfile | null;
  /** Which S the law was fitted with. */
  sparsity: "nominal" | "measured";
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
  opts: SweepPointOptions & FitOptions & { profile?: boolean } = {},
): Promise<SweepFit> {
  const { sparsity, profile: wantProfile = true, ...fitOpts } = opts;
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
  let profile: ScalingLawProfile | null = null;
  if (wantProfile && points.length >= 7) {
    try {
      profile = await profileScalingLaw(points, {
        nScale: fitOpts.nScale ?? 1e6,
        level: fitOpts.level,
      });
    } catch (e) {
      if (!(e instanceof ValueError)) throw e;
      warnings.push(`no profile intervals: ${e.message}`);
    }
  }
  if (profile) {
    const open =
      (Object.entries(profile.intervals) as [string, { lowerOpen: boolean; upperOpen: boolean }][])
        .filter(([, i]) => i.lowerOpen || i.upperOpen).map(([k]) =>
          k === "alpha" ? "α" : k === "beta" ? "β" : k === "sStar" ? "S*" : k
        );
    if (open.length) {
      warnings.push(
        `the data do not bound ${open.join(", ")} (profile interval open at a search bound)`,
      );
    }
  }
  return { ok: true, fit, profile, sparsity: sparsity ?? "nominal", points, warnings };
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
  /**
   * Standard error of the gap: over seeds of the per-seed differences when both groups share
   * two or more seeds (paired), else the two groups' errors in quadrature.
   */
  se: number;
  /** Degrees of freedom of `se` (seeds − 1 when paired; Welch otherwise). */
  df: number;
  /** Whether the gap is a mean of per-seed differences. */
  paired: boolean;
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
    const c = contrast([{ group: g, coef: 1 }, { group: d, coef: -1 }]);
    out.push({
      group: g,
      dense: d,
      S,
      N: g.N,
      gap: c.value,
      se: c.se,
      df: c.df ?? Infinity,
      paired: c.paired,
      relative: c.value / d.loss.mean,
    });
  }
  return out;
}

/** A statistic with its standard error (and the degrees of freedom of that error). */
export interface Estimate extends TEstimate {
  /** The value. */
  value: number;
  /** Its standard error. */
  se: number;
}

/** A contrast of groups: {@link Estimate} plus how its error was obtained. */
export interface Contrast extends Estimate {
  /** Whether the error is over per-seed contrasts (every group shares those seeds). */
  paired: boolean;
  /** Seeds the paired contrast used (0 when unpaired). */
  seeds: number;
  /** The per-seed contrasts, when paired. */
  perSeed: number[];
}

function seedOf(r: RunRecord): string {
  return String(r.tags.seed ?? r.config?.seed ?? "");
}

/**
 * A linear contrast `Σ cᵢ·loss(groupᵢ)` of groups' final validation losses. When every group has
 * the same two or more seeds, the contrast is computed within each seed and its error taken over
 * seeds (df = seeds − 1): runs of one seed share initialisation and data order, so their
 * difference is less noisy than two independent runs'. Otherwise the groups' errors add in
 * quadrature with Welch–Satterthwaite df.
 *
 * @param parts Groups with their coefficients.
 * @returns The contrast.
 *
 * @example A paired difference of two groups over two seeds
 * ```ts
 * import { contrast, type RunGroup } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const g = (l1: number, l2: number) => ({
 *   records: [{ tags: { seed: 1 }, valLoss: l1 }, { tags: { seed: 2 }, valLoss: l2 }],
 *   loss: { mean: (l1 + l2) / 2, se: Math.abs(l1 - l2) / 2, n: 2, df: 1 },
 * }) as unknown as RunGroup;
 * const d = contrast([{ group: g(2.3, 2.5), coef: 1 }, { group: g(2.2, 2.4), coef: -1 }]);
 * assert.ok(d.paired && Math.abs(d.value - 0.1) < 1e-12 && d.se < 1e-12 && d.df === 1);
 * ```
 */
export function contrast(parts: readonly { group: RunGroup; coef: number }[]): Contrast {
  const bySeed = parts.map((p) =>
    new Map((p.group.records ?? []).map((r) => [seedOf(r), r.valLoss]))
  );
  const common = [...bySeed[0]?.keys() ?? []].filter((s) => s && bySeed.every((m) => m.has(s)));
  if (common.length >= 2) {
    const perSeed = common.map((s) =>
      parts.reduce((a, p, i) => a + p.coef * bySeed[i]!.get(s)!, 0)
    );
    const m = meanSe(perSeed);
    return { value: m.mean, se: m.se, df: m.df, paired: true, seeds: common.length, perSeed };
  }
  const c = combine(
    parts.map((p) => ({
      est: { value: p.group.loss.mean, se: p.group.loss.se, df: p.group.loss.df },
      coef: p.coef,
    })),
  );
  return { ...c, paired: false, seeds: 0, perSeed: [] };
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
    // The two gaps share the dense run: the excess is one contrast of three groups, within seed.
    const k = hi / lo;
    const excess = contrast([
      { group: b.group, coef: 1 },
      { group: a.group, coef: -k },
      { group: a.dense, coef: k - 1 },
    ]);
    perSize.push({ N, gapLo: a.gap, gapHi: b.gap, excess });
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
    excess: pooled(perSize.map((p) => p.excess))!,
    gapLo,
    gapHi,
    ratio: gapLo > 0 ? gapHi / gapLo : NaN,
  };
}

/** How the gap to dense changes with model size. */
export interface GapTrend {
  /**
   * Per size: the gap averaged over the chosen sparsities (paired within seed where possible),
   * its seeds, and the standard error the trend weights it by.
   */
  perSize: { N: number; gap: Estimate; seeds: number; weightSe: number }[];
  /**
   * Weighted least-squares slope of the mean gap against log10 N (nats per 10× of N), its error
   * inflated by √(χ²/dof) when χ²/dof > 1.
   */
  slope: Estimate;
  /** χ²/dof of the weighted line (NaN with two sizes). */
  chi2PerDof: number;
  /** The unweighted (ordinary least squares) slope, for comparison. */
  unweighted: Estimate;
  /** The seed noise of one size's mean gap pooled over sizes (null: no size has two seeds). */
  seedNoise: PooledSd | null;
  /** Sizes with a single seed (their weight rests on the pooled noise). */
  singleSeedSizes: number;
  /**
   * Relative change per 10× of N, `slope / mean gap` (the paper's law: 10^−α − 1 ≈ −21%); NaN
   * when the mean gap is not positive, where a relative change means nothing.
   */
  relativePerDecade: number;
}

/**
 * The trend of the gap to dense with N: the gap averaged over `sparsities` at each size (within
 * each seed), then a line against log10 N. Negative slope: the gap shrinks with N.
 *
 * **Weights.** A size's own two-seed error has one degree of freedom and can be small by luck,
 * which would hand that size most of the weight. The weights use instead the seed noise of a
 * size's mean gap pooled over every size (df = Σ (seeds − 1)), divided by √seeds; single-seed
 * sizes get the pooled noise itself. χ²/dof is reported, and above 1 the slope's error is
 * inflated by its square root (df = sizes − 2). The unweighted slope is reported beside it.
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
  const rowsOf: { N: number; c: Contrast }[] = [];
  for (const N of [...new Set(gaps.map((g) => g.N))].sort((a, b) => a - b)) {
    const rows = gaps.filter((g) => g.N === N && use(g.S));
    if (!rows.length) continue;
    const m = rows.length;
    // mean over S of (sparse − dense) = Σ sparse/m − dense: one contrast, within seed.
    const c = contrast([
      ...rows.map((r) => ({ group: r.group, coef: 1 / m })),
      { group: rows[0]!.dense, coef: -1 },
    ]);
    rowsOf.push({ N, c });
  }
  if (rowsOf.length < 2) return null;
  const seedNoise = pooledSd(rowsOf.map((r) => r.c.perSeed));
  const perSize: GapTrend["perSize"] = rowsOf.map(({ N, c }) => {
    const seeds = c.paired ? c.seeds : 1;
    const weightSe = seedNoise ? seedNoise.sd / Math.sqrt(seeds) : c.se;
    return { N, gap: { value: c.value, se: c.se, df: c.df }, seeds, weightSe };
  });
  const x = perSize.map((p) => Math.log10(p.N)), y = perSize.map((p) => p.gap.value);
  const usable = perSize.every((p) => p.weightSe > 0 && Number.isFinite(p.weightSe));
  const t: Trend = weightedTrend(
    x,
    y,
    usable ? perSize.map((p) => p.weightSe) : undefined,
    seedNoise ? seedNoise.df : Infinity,
  );
  const meanGap = y.reduce((a, b) => a + b, 0) / y.length;
  return {
    perSize,
    slope: t.slope,
    chi2PerDof: t.chi2PerDof,
    unweighted: t.unweighted,
    seedNoise,
    singleSeedSizes: perSize.filter((p) => p.seeds < 2).length,
    relativePerDecade: meanGap > 0 ? t.slope.value / meanGap : NaN,
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
  /** `dense − sparse` in nats (within seed where possible): positive when sparse is better. */
  advantage: Estimate;
  /** The dense groups interpolated between. */
  anchors: RunGroup[];
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
    const anchors = hi === lo
      ? [{ group: hi, coef: 1 }]
      : [{ group: lo, coef: 1 - t }, { group: hi, coef: t }];
    const d = contrast(anchors);
    out.push({
      group: g,
      S,
      N: g.N,
      Na,
      dense: d,
      advantage: contrast([...anchors, { group: g, coef: -1 }]),
      anchors: anchors.map((a) => a.group),
    });
  }
  return out;
}

/**
 * The loss difference `a − b` of two groups: within seed when both share two or more seeds
 * (see {@link contrast}), else standard errors in quadrature (independent runs).
 *
 * @param a A group.
 * @param b Another group.
 * @returns The difference in nats.
 *
 * @example
 * ```ts
 * import { lossDifference, type RunGroup } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const g = (mean: number, se: number) => ({ records: [], loss: { mean, se, n: 1, df: Infinity } }) as unknown as RunGroup;
 * assert.deepEqual(lossDifference(g(2.5, 0.03), g(2, 0.04)), { value: 0.5, se: 0.05, df: Infinity });
 * ```
 */
export function lossDifference(a: RunGroup, b: RunGroup): Estimate {
  const c = contrast([{ group: a, coef: 1 }, { group: b, coef: -1 }]);
  return { value: c.value, se: c.se, ...(c.df !== undefined ? { df: c.df } : {}) };
}

/**
 * Pooled mean of independent estimates: the average value, errors in quadrature over the count,
 * Welch–Satterthwaite df.
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
  const c = combine(estimates.map((est) => ({ est, coef: 1 / m })));
  return Number.isFinite(c.df) ? c : { value: c.value, se: c.se };
}

/**
 * Pooled mean of estimates that may be correlated (rows sharing an anchor run) or scatter more
 * than their errors say: the standard error is the larger of the propagated one
 * ({@link pooled}) and the spread of the values, sd/√m with df m − 1.
 *
 * @param estimates The estimates (≥ 3 for the spread to be used).
 * @returns Their mean with the more cautious error, or null for none.
 *
 * @example Values that disagree more than their errors
 * ```ts
 * import { pooledWithSpread } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const p = pooledWithSpread([{ value: 0, se: 0.001 }, { value: 0.1, se: 0.001 }, { value: 0.2, se: 0.001 }]);
 * assert.ok(Math.abs(p!.se - 0.1 / Math.sqrt(3)) < 1e-12);
 * assert.equal(p!.df, 2);
 * ```
 */
export function pooledWithSpread(estimates: readonly Estimate[]): Estimate | null {
  const p = pooled(estimates);
  if (!p || estimates.length < 3) return p;
  const spread = meanSe(estimates.map((e) => e.value));
  return spread.se > p.se ? { value: p.value, se: spread.se, df: spread.df } : p;
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
