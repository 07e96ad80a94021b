/**
 * Student's t distribution: its CDF and quantiles (and the F(1, ν) quantile built on them), for
 * t-tests with few degrees of freedom and for the threshold of profile-likelihood intervals. Plain
 * numerics with no dependencies: log Γ by Lanczos, the regularised incomplete beta by its
 * continued fraction, erfc for the normal limit.
 *
 * @module
 */
import { ValueError } from "../core/errors.ts";

// ---------------------------------------------------------------------------------------------
// Special functions

const LANCZOS = [
  676.5203681218851,
  -1259.1392167224028,
  771.32342877765313,
  -176.61502916214059,
  12.507343278686905,
  -0.13857109526572012,
  9.9843695780195716e-6,
  1.5056327351493116e-7,
];

/** log Γ(x) for x > 0 (Lanczos, g = 7; ~15 significant digits). */
function logGamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.sin(Math.PI * x)) - logGamma(1 - x);
  x -= 1;
  let a = 0.99999999999980993;
  const t = x + 7.5;
  for (let i = 0; i < LANCZOS.length; i++) a += LANCZOS[i]! / (x + i + 1);
  return 0.5 * Math.log(2 * Math.PI) + (x + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes 6.4). */
function betaContinuedFraction(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  let c = 1, d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 10000; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-15) break;
  }
  return h;
}

/** The regularised incomplete beta function I_x(a, b). */
function incompleteBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const lnFront = logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) +
    b * Math.log1p(-x);
  // The continued fraction converges fast for x < (a+1)/(a+b+2); use the symmetry otherwise.
  if (x < (a + 1) / (a + b + 2)) return (Math.exp(lnFront) * betaContinuedFraction(a, b, x)) / a;
  return 1 - (Math.exp(lnFront) * betaContinuedFraction(b, a, 1 - x)) / b;
}

/** erfc(x) for x ≥ 0 by its continued fraction, and by the series of erf near 0. */
function erfc(x: number): number {
  if (x < 0) return 2 - erfc(-x);
  if (x < 2) {
    // erf(x) = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1)); 40 terms reach double precision for x < 2.
    let term = x, sum = x;
    for (let n = 1; n < 60; n++) {
      term *= (-x * x) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    return 1 - (2 / Math.sqrt(Math.PI)) * sum;
  }
  // Lentz on erfc(x) = exp(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + ...)))).
  let f = x, c = x, d = 0;
  for (let n = 1; n < 200; n++) {
    const an = n / 2;
    d = x + an * d;
    d = 1 / d;
    c = x + an / c;
    const del = c * d;
    f *= del;
    if (Math.abs(del - 1) < 1e-16) break;
  }
  return Math.exp(-x * x) / (Math.sqrt(Math.PI) * f);
}

// ---------------------------------------------------------------------------------------------
// The t distribution

function checkDf(op: string, df: number): void {
  if (!(df > 0)) throw new ValueError(op, `degrees of freedom must be > 0, got ${df}`);
}

/**
 * The cumulative distribution function of Student's t with `df` degrees of freedom (`Infinity`:
 * the standard normal).
 *
 * @param t The value.
 * @param df Degrees of freedom, > 0 (not necessarily an integer: Welch's df is not).
 * @returns `P(T ≤ t)`.
 * @throws {ValueError} For df ≤ 0.
 *
 * @example
 * ```ts
 * import { tCdf } from "./student_t.ts";
 * import assert from "node:assert/strict";
 * assert.ok(Math.abs(tCdf(12.706, 1) - 0.975) < 1e-5);
 * assert.ok(Math.abs(tCdf(1.96, Infinity) - 0.975) < 1e-4);
 * ```
 */
export function tCdf(t: number, df: number): number {
  checkDf("tCdf", df);
  if (Number.isNaN(t)) return NaN;
  if (!Number.isFinite(t)) return t > 0 ? 1 : 0;
  if (!Number.isFinite(df) || df > 1e7) return 0.5 * erfc(-t / Math.SQRT2);
  const tail = 0.5 * incompleteBeta(df / (df + t * t), df / 2, 0.5);
  return t > 0 ? 1 - tail : tail;
}

/**
 * The quantile of Student's t with `df` degrees of freedom (`Infinity`: the standard normal):
 * the `t` with `P(T ≤ t) = p`. Exact closed forms for df 1 and 2, bisection on {@link tCdf}
 * otherwise (to ~1e-12).
 *
 * @param p Probability in (0, 1).
 * @param df Degrees of freedom, > 0.
 * @returns The quantile.
 * @throws {ValueError} For p outside (0, 1) or df ≤ 0.
 *
 * @example The two-sided 95% multipliers of a table
 * ```ts
 * import { tQuantile } from "./student_t.ts";
 * import assert from "node:assert/strict";
 * assert.equal(tQuantile(0.975, 1).toFixed(3), "12.706");
 * assert.equal(tQuantile(0.975, 4).toFixed(3), "2.776");
 * assert.equal(tQuantile(0.975, Infinity).toFixed(3), "1.960");
 * ```
 */
export function tQuantile(p: number, df: number): number {
  checkDf("tQuantile", df);
  if (!(p > 0 && p < 1)) throw new ValueError("tQuantile", `p must be in (0, 1), got ${p}`);
  if (p === 0.5) return 0;
  if (df === 1) return Math.tan(Math.PI * (p - 0.5));
  if (df === 2) return (2 * p - 1) / Math.sqrt(2 * p * (1 - p));
  if (p < 0.5) return -tQuantile(1 - p, df);
  let lo = 0, hi = 1;
  while (tCdf(hi, df) < p) {
    lo = hi;
    hi *= 2;
    if (hi > 1e12) return Infinity;
  }
  for (let i = 0; i < 200 && hi - lo > 1e-13 * hi; i++) {
    const mid = 0.5 * (lo + hi);
    if (tCdf(mid, df) < p) lo = mid;
    else hi = mid;
  }
  return 0.5 * (lo + hi);
}

/**
 * The quantile of the F distribution with (1, `df`) degrees of freedom, `t_{(1+p)/2, df}²`: the
 * threshold of a likelihood-ratio (profile) interval for one parameter of a least-squares fit
 * whose error variance is estimated from the residuals.
 *
 * @param p Probability in (0, 1), e.g. 0.95.
 * @param df Residual degrees of freedom (points − parameters).
 * @returns The quantile.
 *
 * @example
 * ```ts
 * import { f1Quantile } from "./student_t.ts";
 * import assert from "node:assert/strict";
 * assert.equal(f1Quantile(0.95, 10).toFixed(3), "4.965");
 * assert.equal(f1Quantile(0.95, Infinity).toFixed(3), "3.841"); // χ²₁
 * ```
 */
export function f1Quantile(p: number, df: number): number {
  return tQuantile((1 + p) / 2, df) ** 2;
}
