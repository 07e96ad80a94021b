/**
 * The statistics the studies' verdicts rest on: Student-t quantiles and tail probabilities (a
 * two-seed standard error has one degree of freedom, whose 97.5% quantile is 12.7, not 1.96),
 * Welch–Satterthwaite degrees of freedom for sums of independent estimates, a weighted trend that
 * reports χ²/dof and inflates its error when the points scatter more than their errors allow,
 * and Holm's step-down correction across the tests of one notebook.
 *
 * Everything here is plain numerics with no dependencies, so a reviewer can check each function
 * against a table (the tests do).
 *
 * @module
 */
import { ValueError } from "../src/core/errors.ts";
import { tCdf } from "../src/train/student_t.ts";

export { f1Quantile, tCdf, tQuantile } from "../src/train/student_t.ts";

// ---------------------------------------------------------------------------------------------
// Estimates and tests

/**
 * An estimate with its standard error and the degrees of freedom of that error (absent or
 * `Infinity`: treated as known, i.e. normal).
 */
export interface TEstimate {
  /** The value. */
  value: number;
  /** Its standard error. */
  se: number;
  /** Degrees of freedom of the standard error; absent: Infinity. */
  df?: number;
}

/**
 * Welch–Satterthwaite degrees of freedom of a sum of independent estimates with coefficients:
 * `(Σ c²se²)² / Σ (c²se²)²/df`. A part with unknown df counts as Infinity.
 *
 * @param parts The estimates' standard errors and df, each with its coefficient (default 1).
 * @returns The effective df (Infinity when every part has infinite df; NaN when all se are 0).
 *
 * @example Two two-seed means: between 1 and 2 df
 * ```ts
 * import { welchDf } from "./stats.ts";
 * import assert from "node:assert/strict";
 * assert.equal(welchDf([{ se: 0.01, df: 1 }, { se: 0.01, df: 1 }]), 2);
 * assert.equal(welchDf([{ se: 0.01, df: 1 }, { se: 0, df: 1 }]), 1);
 * ```
 */
export function welchDf(parts: readonly { se: number; df?: number; coef?: number }[]): number {
  let num = 0, den = 0;
  for (const p of parts) {
    const v = ((p.coef ?? 1) * p.se) ** 2;
    num += v;
    const df = p.df ?? Infinity;
    if (Number.isFinite(df)) den += (v * v) / df;
  }
  if (!(num > 0)) return NaN;
  return den > 0 ? (num * num) / den : Infinity;
}

/**
 * A linear combination `Σ cᵢ·xᵢ` of independent estimates: errors in quadrature, df by
 * Welch–Satterthwaite.
 *
 * @param parts The estimates with their coefficients.
 * @returns The combination.
 *
 * @example A difference of two means
 * ```ts
 * import { combine } from "./stats.ts";
 * import assert from "node:assert/strict";
 * const d = combine([{ est: { value: 2.1, se: 0.03, df: 1 }, coef: 1 }, { est: { value: 2.0, se: 0.04, df: 1 }, coef: -1 }]);
 * assert.ok(Math.abs(d.value - 0.1) < 1e-12 && Math.abs(d.se - 0.05) < 1e-12);
 * assert.ok(d.df! > 1 && d.df! < 2);
 * ```
 */
export function combine(parts: readonly { est: TEstimate; coef: number }[]): TEstimate {
  const value = parts.reduce((s, p) => s + p.coef * p.est.value, 0);
  const se = Math.sqrt(parts.reduce((s, p) => s + (p.coef * p.est.se) ** 2, 0));
  const df = welchDf(parts.map((p) => ({ se: p.est.se, df: p.est.df, coef: p.coef })));
  return { value, se, df: Number.isNaN(df) ? Infinity : df };
}

/** A one-sided t-test of a claim about an estimate. */
export interface TTest {
  /** What was tested, in words, e.g. `one-sided t-test of slope < 0`. */
  name: string;
  /** The t statistic of the claim (positive: the data lean towards the claim). */
  t: number;
  /** Degrees of freedom (Infinity: normal). */
  df: number;
  /** One-sided p-value of the claim's null hypothesis. */
  p: number;
  /** One-sided p-value of the contrary (small: the data contradict the claim). */
  pContrary: number;
  /** Significance level the verdict uses. */
  level: number;
  /** Holm-adjusted p-value across the notebook's tests, once {@link holm} has been applied. */
  pAdjusted?: number;
}

/**
 * One-sided t-test of the claim `value > threshold` (direction `"above"`) or `value < threshold`
 * (`"below"`).
 *
 * @param est The estimate (df absent: normal).
 * @param direction Which side the claim is on.
 * @param threshold The claimed bound; default 0.
 * @param level Significance level; default 0.05.
 * @returns The test (p NaN when se is not a positive finite number).
 *
 * @example A two-seed difference 3 standard errors from 0 is not significant with df = 1
 * ```ts
 * import { tTest } from "./stats.ts";
 * import assert from "node:assert/strict";
 * const t = tTest({ value: 0.03, se: 0.01, df: 1 }, "above");
 * assert.ok(t.p > 0.05 && t.p < 0.11);
 * assert.ok(tTest({ value: 0.03, se: 0.01 }, "above").p < 0.01); // as if the error were known
 * ```
 */
export function tTest(
  est: TEstimate,
  direction: "above" | "below",
  threshold = 0,
  level = 0.05,
): TTest {
  const df = est.df ?? Infinity;
  const sign = direction === "above" ? 1 : -1;
  const t = (sign * (est.value - threshold)) / est.se;
  // A zero error (identical paired seeds) makes t infinite: the side decides, p is 0 or 1.
  const ok = est.se >= 0 && Number.isFinite(est.se) && Number.isFinite(est.value) && df > 0 &&
    !Number.isNaN(t);
  const p = ok ? 1 - tCdf(t, df) : NaN;
  const pContrary = ok ? tCdf(t, df) : NaN;
  const dfText = Number.isFinite(df) ? `df ${df < 10 ? df.toFixed(1) : df.toFixed(0)}` : "normal";
  return {
    name: `one-sided t-test of ${direction === "above" ? ">" : "<"} ${threshold} (${dfText})`,
    t,
    df,
    p,
    pContrary,
    level,
  };
}

/**
 * Holm's step-down adjustment of p-values (controls the family-wise error rate): sort
 * ascending, multiply the i-th smallest (from 0) by `m − i`, make the sequence monotone, cap at 1.
 * NaN p-values (tests that could not be made) are left out of m and stay NaN.
 *
 * @param p The p-values.
 * @returns Adjusted p-values in the input order; reject where adjusted ≤ level.
 *
 * @example
 * ```ts
 * import { holm } from "./stats.ts";
 * import assert from "node:assert/strict";
 * const adj = holm([0.01, 0.04, 0.03, 0.005]);
 * assert.deepEqual(adj.map((x) => +x.toFixed(6)), [0.03, 0.06, 0.06, 0.02]);
 * ```
 */
export function holm(p: readonly number[]): number[] {
  const idx = p.map((_, i) => i).filter((i) => Number.isFinite(p[i]!)).sort((a, b) =>
    p[a]! - p[b]!
  );
  const m = idx.length;
  const out = p.map(() => NaN);
  let running = 0;
  idx.forEach((i, rank) => {
    running = Math.max(running, Math.min(1, (m - rank) * p[i]!));
    out[i] = running;
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Trends

/** A straight-line trend `y = a + b·x`, weighted and unweighted. */
export interface Trend {
  /** Points used. */
  n: number;
  /**
   * Weighted least-squares slope (weights 1/se²). Its `se` is inflated by √(χ²/dof) when
   * χ²/dof > 1 (the points scatter more than their errors say), and its df is then n − 2.
   */
  slope: TEstimate;
  /** The slope's standard error from the weights alone, before inflation. */
  seFromWeights: number;
  /** χ² of the weighted fit over its n − 2 degrees of freedom (NaN with 2 points). */
  chi2PerDof: number;
  /** Ordinary least-squares slope with its residual standard error (df n − 2). */
  unweighted: TEstimate;
}

/**
 * Fits a line by weighted least squares and reports χ²/dof with it; when χ²/dof exceeds 1 the
 * slope's error is multiplied by √(χ²/dof), since weights from a few seeds understate the
 * scatter. Also fits the unweighted line, which a reader should compare: a weighted slope that
 * rests on one point with a lucky small error disagrees with it.
 *
 * @param x Abscissae (e.g. log10 N).
 * @param y Values.
 * @param se Standard errors of y (all > 0), or omitted for equal weights.
 * @param df Degrees of freedom of the slope when χ²/dof ≤ 1 (default: Infinity, i.e. the errors
 *   are known); n − 2 is used whenever the error is inflated.
 * @returns The trend.
 * @throws {ValueError} For fewer than 2 points, mismatched lengths, or a non-positive se.
 *
 * @example Points scattered more than their errors: the error is inflated
 * ```ts
 * import { weightedTrend } from "./stats.ts";
 * import assert from "node:assert/strict";
 * const t = weightedTrend([0, 1, 2, 3], [0, 0.3, 0.1, 0.4], [0.01, 0.01, 0.01, 0.01]);
 * assert.ok(t.chi2PerDof > 1);
 * assert.ok(Math.abs(t.slope.se - t.seFromWeights * Math.sqrt(t.chi2PerDof)) < 1e-12);
 * assert.equal(t.slope.df, 2);
 * ```
 */
export function weightedTrend(
  x: readonly number[],
  y: readonly number[],
  se?: readonly number[],
  df = Infinity,
): Trend {
  const n = x.length;
  if (n < 2 || y.length !== n || (se && se.length !== n)) {
    throw new ValueError("weightedTrend", `need ≥ 2 points with matching lengths, got ${n}`);
  }
  if (se && !se.every((s) => s > 0 && Number.isFinite(s))) {
    throw new ValueError("weightedTrend", "every standard error must be > 0 and finite");
  }
  const line = (w: readonly number[]) => {
    const sw = w.reduce((a, b) => a + b, 0);
    const xm = w.reduce((a, wi, i) => a + wi * x[i]!, 0) / sw;
    const ym = w.reduce((a, wi, i) => a + wi * y[i]!, 0) / sw;
    const sxx = w.reduce((a, wi, i) => a + wi * (x[i]! - xm) ** 2, 0);
    const b = w.reduce((a, wi, i) => a + wi * (x[i]! - xm) * (y[i]! - ym), 0) / sxx;
    const rss = w.reduce((a, wi, i) => a + wi * (y[i]! - ym - b * (x[i]! - xm)) ** 2, 0);
    return { b, sxx, rss };
  };
  const ols = line(x.map(() => 1));
  const unweighted: TEstimate = {
    value: ols.b,
    se: n > 2 ? Math.sqrt(ols.rss / (n - 2) / ols.sxx) : NaN,
    df: n - 2,
  };
  if (!se) {
    return { n, slope: unweighted, seFromWeights: NaN, chi2PerDof: NaN, unweighted };
  }
  const wls = line(se.map((s) => 1 / (s * s)));
  const seW = Math.sqrt(1 / wls.sxx);
  const chi2PerDof = n > 2 ? wls.rss / (n - 2) : NaN;
  const inflate = chi2PerDof > 1;
  return {
    n,
    slope: {
      value: wls.b,
      se: inflate ? seW * Math.sqrt(chi2PerDof) : seW,
      df: inflate ? n - 2 : df,
    },
    seFromWeights: seW,
    chi2PerDof,
    unweighted,
  };
}
