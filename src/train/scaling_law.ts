/**
 * The Q-Sparse scaling law (Wang et al. 2024, §3, Eq. 15–24) and its fit.
 *
 * `L(N, S) = E + A(S) / N^α` with `A(S) = B + C·exp(β / (1 − S))`: E is the irreducible loss, C
 * the dense factor, B the factor of extremely sparse models; α does not depend on S.
 *
 * **Units of N.** The paper does not state them. With N = non-embedding parameters in units of
 * 1e8, its constants (E = 1.86, B = 0.01, C = 1.89, α = 0.10, β = 0.05) give the dense losses of
 * its figures (3.65 at 300M, 3.18 at 7B), so every function here takes N in parameters and divides
 * by `nScale` (default 1e8). E, α, β do not depend on the unit; B and C scale by `nScale^α`.
 *
 * The fit follows the paper: Huber loss (δ = 1e-3) between predicted and observed log loss, best
 * of a grid of initialisations. The optimiser is Levenberg–Marquardt on the Huber objective
 * (iteratively reweighted Gauss–Newton steps, accepted only when the Huber loss falls), with the
 * positive constants parametrised by their logs. Confidence intervals come from a seeded
 * bootstrap over points.
 *
 * @module
 */
import { randomBits } from "../core/random.ts";
import { ValueError } from "../core/errors.ts";
import { f1Quantile } from "./student_t.ts";

/** One observed run: N parameters (non-embedding), sparsity S, final loss. */
export interface ScalingPoint {
  /** Non-embedding parameter count (total, not activated). */
  N: number;
  /** Sparsity in [0, 1). */
  S: number;
  /** Observed loss (nats), > 0. */
  loss: number;
}

/** Constants of `L(N, S) = E + (B + C·exp(β/(1−S))) / (N/nScale)^α`. */
export interface ScalingLawParams {
  /** Irreducible loss. */
  E: number;
  /** Scaling factor of extremely sparse models. */
  B: number;
  /** Scaling factor of dense models. */
  C: number;
  /** Power of N. */
  alpha: number;
  /** Sparsity exponent. */
  beta: number;
  /** N is divided by this before the power; default 1e8 (the paper's apparent unit). */
  nScale?: number;
}

/**
 * The paper's full-precision fit (P §3.4), with N in units of 1e8 parameters (see the module doc).
 *
 * @example
 * ```ts
 * import { PAPER_SCALING_LAW, scalingLaw } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * assert.equal(scalingLaw(PAPER_SCALING_LAW, 3e8, 0).toFixed(2), "3.65");
 * ```
 */
export const PAPER_SCALING_LAW: Readonly<Required<ScalingLawParams>> = Object.freeze({
  E: 1.86,
  B: 0.01,
  C: 1.89,
  alpha: 0.1,
  beta: 0.05,
  nScale: 1e8,
});

const DEFAULT_NSCALE = 1e8;

/**
 * `A(S) = B + C·exp(β / (1 − S))`, the sparsity factor.
 *
 * @param p Law constants.
 * @param S Sparsity in [0, 1).
 * @returns A(S).
 *
 * @example The paper's ratios A(S)/A(0)
 * ```ts
 * import { PAPER_SCALING_LAW as p, sparsityFactor } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * assert.equal((sparsityFactor(p, 0.5) / sparsityFactor(p, 0)).toFixed(3), "1.051");
 * ```
 */
export function sparsityFactor(p: ScalingLawParams, S: number): number {
  return p.B + p.C * Math.exp(p.beta / (1 - S));
}

/**
 * The predicted loss `L(N, S)`.
 *
 * @param p Law constants.
 * @param N Total non-embedding parameters.
 * @param S Sparsity in [0, 1).
 * @returns Loss in nats.
 *
 * @example The gap to dense shrinks with N
 * ```ts
 * import { PAPER_SCALING_LAW as p, scalingLaw } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const gap = (N: number) => scalingLaw(p, N, 0.5) - scalingLaw(p, N, 0);
 * assert.ok(gap(7e9) < gap(3e8));
 * ```
 */
export function scalingLaw(p: ScalingLawParams, N: number, S: number): number {
  return p.E + sparsityFactor(p, S) / (N / (p.nScale ?? DEFAULT_NSCALE)) ** p.alpha;
}

/**
 * The inference-optimal sparsity `S* = argmin_S A(S)·(1 − S)^α` (P Eq. 24): at a fixed budget of
 * activated parameters `N_a = N(1 − S)`, the loss is `E + A(S)·((1 − S)/N_a)^α`, so S* does not
 * depend on N_a or E. Found by Brent's method on [0, 0.99]; the function is unimodal there
 * (its log-derivative in u = 1/(1−S) is increasing).
 *
 * @param p Law constants.
 * @returns S* in [0, 0.99].
 *
 * @example The paper's rounded constants give 50.2% (its text says 45.58%)
 * ```ts
 * import { optimalSparsity, PAPER_SCALING_LAW } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * assert.equal((100 * optimalSparsity(PAPER_SCALING_LAW)).toFixed(1), "50.2");
 * ```
 */
export function optimalSparsity(p: ScalingLawParams): number {
  // Minimise in log space: the values are all within a few % of each other, so a log keeps
  // Brent's parabolic steps well scaled.
  const f = (S: number): number => Math.log(sparsityFactor(p, S)) + p.alpha * Math.log1p(-S);
  return brentMinimize(f, 0, 0.99, 1e-10);
}

/**
 * Brent's method for a 1-D minimum on [a, b] (golden-section steps with parabolic
 * interpolation; Brent 1973, ch. 5). Returns an endpoint when the minimum is there.
 */
function brentMinimize(f: (x: number) => number, a: number, b: number, tol: number): number {
  const golden = 0.3819660112501051;
  let x = a + golden * (b - a), w = x, v = x;
  let fx = f(x), fw = fx, fv = fx;
  let d = 0, e = 0;
  for (let iter = 0; iter < 200; iter++) {
    const m = 0.5 * (a + b);
    const tol1 = tol * Math.abs(x) + 1e-12, tol2 = 2 * tol1;
    if (Math.abs(x - m) <= tol2 - 0.5 * (b - a)) break;
    let useGolden = true;
    if (Math.abs(e) > tol1) {
      const r = (x - w) * (fx - fv);
      let q = (x - v) * (fx - fw);
      let pp = (x - v) * q - (x - w) * r;
      q = 2 * (q - r);
      if (q > 0) pp = -pp;
      q = Math.abs(q);
      if (Math.abs(pp) < Math.abs(0.5 * q * e) && pp > q * (a - x) && pp < q * (b - x)) {
        e = d;
        d = pp / q;
        const u = x + d;
        if (u - a < tol2 || b - u < tol2) d = x < m ? tol1 : -tol1;
        useGolden = false;
      }
    }
    if (useGolden) {
      e = (x < m ? b : a) - x;
      d = golden * e;
    }
    const u = Math.abs(d) >= tol1 ? x + d : x + (d > 0 ? tol1 : -tol1);
    const fu = f(u);
    if (fu <= fx) {
      if (u < x) b = x;
      else a = x;
      v = w, fv = fw, w = x, fw = fx, x = u, fx = fu;
    } else {
      if (u < x) a = u;
      else b = u;
      if (fu <= fw || w === x) v = w, fv = fw, w = u, fw = fu;
      else if (fu <= fv || v === x || v === w) v = u, fv = fu;
    }
  }
  // Brent converges inside (a, b); check the ends so a minimum on the boundary is exact.
  const ends: [number, number][] = [[a, f(a)], [b, f(b)], [x, fx]];
  return ends.reduce((best, c) => (c[1] < best[1] ? c : best))[0];
}

/** A grid of predicted losses over activated parameters and sparsity (rows: S, columns: N_a). */
export interface IsoLossGrid {
  /** Activated parameters N_a = N(1 − S) (x axis). */
  activated: number[];
  /** Sparsity values (y axis). */
  sparsity: number[];
  /** `loss[i][j] = L(N_a[j] / (1 − S[i]), S[i])`, in plotly's `z[y][x]` order. */
  loss: number[][];
}

/**
 * Predicted loss over (N_a, S), where a model with N_a activated parameters at sparsity S has
 * N = N_a/(1 − S) parameters in total — the surface of the paper's Fig. 4, whose iso-loss
 * contours bend towards S* at every N_a.
 *
 * @param p Law constants.
 * @param activated N_a values (parameters).
 * @param sparsity S values in [0, 1).
 * @returns The grid.
 *
 * @example
 * ```ts
 * import { isoLossGrid, PAPER_SCALING_LAW } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const g = isoLossGrid(PAPER_SCALING_LAW, [3e8, 7e9], [0.1, 0.5, 0.7]);
 * assert.equal(g.loss.length, 3);
 * assert.ok(g.loss[1]![0]! < g.loss[0]![0]!); // at equal N_a, 50% sparse beats 10%
 * ```
 */
export function isoLossGrid(
  p: ScalingLawParams,
  activated: readonly number[],
  sparsity: readonly number[],
): IsoLossGrid {
  for (const S of sparsity) checkSparsity("isoLossGrid", S);
  return {
    activated: [...activated],
    sparsity: [...sparsity],
    loss: sparsity.map((S) => activated.map((Na) => scalingLaw(p, Na / (1 - S), S))),
  };
}

/** Constants of the dense law `L(N) = E + A / (N/nScale)^α` (Hoffmann et al. with D fixed). */
export interface DenseLawParams {
  /** Irreducible loss. */
  E: number;
  /** Scale factor. */
  A: number;
  /** Power of N. */
  alpha: number;
  /** N is divided by this before the power; default 1e8. */
  nScale?: number;
}

/**
 * The dense law's prediction.
 *
 * @param p Constants.
 * @param N Non-embedding parameters.
 * @returns Loss in nats.
 *
 * @example
 * ```ts
 * import { denseLaw } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * assert.equal(denseLaw({ E: 2, A: 1, alpha: 0.5 }, 4e8), 2.5);
 * ```
 */
export function denseLaw(p: DenseLawParams, N: number): number {
  return p.E + p.A / (N / (p.nScale ?? DEFAULT_NSCALE)) ** p.alpha;
}

// ---------------------------------------------------------------------------------------------
// Fitting

/** Options of {@link fitScalingLaw} and {@link fitDenseLaw}. */
export interface FitOptions {
  /** N is divided by this; default 1e8 (pass N in parameters). */
  nScale?: number;
  /** Huber threshold on log-loss residuals; default 1e-3 (the paper's). */
  delta?: number;
  /** Bootstrap resamples for the confidence intervals; 0 skips them. Default 200. */
  bootstrap?: number;
  /** Confidence level of the intervals; default 0.95. */
  level?: number;
  /** Seed of the bootstrap resampling; default 0. */
  seed?: number;
  /** Iteration cap per start; default 500. */
  maxIterations?: number;
}

/** A two-sided percentile bootstrap interval per constant. */
export type Intervals<K extends string> = { [k in K]: [lo: number, hi: number] } & {
  /** Confidence level, e.g. 0.95. */
  level: number;
  /** Bootstrap refits used (those that reached a finite objective). */
  samples: number;
};

/** How an optimisation went. */
export interface FitDiagnostics {
  /** Huber objective at the optimum (sum over points). */
  objective: number;
  /** Root mean square of the log-loss residuals. */
  rmse: number;
  /** `log(predicted) − log(observed)` per input point. */
  residuals: number[];
  /** Whether the best start met the step tolerance before the iteration cap. */
  converged: boolean;
  /** Initialisations tried. */
  starts: number;
}

/** Result of {@link fitScalingLaw}. */
export interface ScalingLawFit extends Required<ScalingLawParams>, FitDiagnostics {
  /** Inference-optimal sparsity of the fitted law ({@link optimalSparsity}). */
  sStar: number;
  /** Bootstrap intervals (null when `bootstrap` is 0). */
  ci: Intervals<"E" | "B" | "C" | "alpha" | "beta" | "sStar"> | null;
}

/** Result of {@link fitDenseLaw}. */
export interface DenseLawFit extends Required<DenseLawParams>, FitDiagnostics {
  /** Bootstrap intervals (null when `bootstrap` is 0). */
  ci: Intervals<"E" | "A" | "alpha"> | null;
}

/**
 * A model predicting log loss from log-parameters θ. `at(θ)` returns an evaluator: for point i it
 * returns log L̂ and writes ∂ log L̂ / ∂θ into `grad`. `lower`/`upper` box θ: they keep the
 * constants representable (a constant the data push to 0 stops at its bound, where it can still
 * move back), and the bound itself is the report that the data put it at 0.
 */
interface LogModel {
  readonly size: number;
  readonly lower: readonly number[];
  readonly upper: readonly number[];
  at(theta: readonly number[]): (i: number, grad: number[]) => number;
}

interface Solution {
  theta: number[];
  objective: number;
  converged: boolean;
  iterations: number;
}

type LinAlg = { lusolve: (A: number[][], b: number[]) => unknown };
let linalg: Promise<LinAlg> | undefined;
// mathjs costs ~0.7 s to import; load it only when a fit is asked for, not with the kit. A full
// npm: specifier (not the import-map name) so a script outside the repo, with no deno.json, can
// still fit; keep the version in step with deno.json.
const loadLinAlg = (): Promise<LinAlg> =>
  linalg ??= import("npm:mathjs@^15.2.0").then((m) => ({
    lusolve: m.lusolve as unknown as LinAlg["lusolve"],
  }));

function huber(r: number, delta: number): number {
  const a = Math.abs(r);
  return a <= delta ? 0.5 * r * r : delta * (a - 0.5 * delta);
}

function objectiveOf(
  model: LogModel,
  theta: readonly number[],
  idx: readonly number[],
  y: readonly number[],
  delta: number,
): number {
  const row = model.at(theta);
  const g = new Array<number>(model.size);
  let s = 0;
  for (const i of idx) s += huber(row(i, g) - y[i]!, delta);
  return Number.isFinite(s) ? s : Infinity;
}

/**
 * Levenberg–Marquardt on the Huber objective Σ ρ(r_i). Each iteration linearises the residuals
 * and weights them by w_i = ρ'(r_i)/r_i (1 inside δ, δ/|r| outside). Then JᵀWr is exactly the
 * gradient of the Huber objective and JᵀWJ a positive semi-definite model of its curvature, so
 * the damped step solves (JᵀWJ + λ·diag(JᵀWJ)) Δ = −JᵀWr and is a descent direction. A step is
 * kept only if the Huber objective falls (then λ shrinks by Nielsen's rule), otherwise λ grows
 * geometrically. The system is solved after Jacobi scaling (unit diagonal), which is Marquardt's
 * scale-invariant damping and keeps the solve accurate when the columns differ by orders of
 * magnitude (B ≪ C).
 */
function levenbergMarquardt(
  la: LinAlg,
  model: LogModel,
  theta0: readonly number[],
  idx: readonly number[],
  y: readonly number[],
  delta: number,
  maxIterations: number,
): Solution {
  const k = model.size;
  const clamp = (t: number[]): number[] =>
    t.map((v, a) => Math.min(model.upper[a]!, Math.max(model.lower[a]!, v)));
  let theta = clamp([...theta0]);
  let f = objectiveOf(model, theta, idx, y, delta);
  if (!Number.isFinite(f)) return { theta, objective: Infinity, converged: false, iterations: 0 };
  let lambda = 1e-3;
  let nu = 2;
  const grad = new Array<number>(k);
  for (let iter = 1; iter <= maxIterations; iter++) {
    const H = Array.from({ length: k }, () => new Array<number>(k).fill(0));
    const g = new Array<number>(k).fill(0);
    const row = model.at(theta);
    for (const i of idx) {
      const r = row(i, grad) - y[i]!;
      const w = Math.abs(r) <= delta ? 1 : delta / Math.abs(r);
      for (let a = 0; a < k; a++) {
        g[a]! += w * r * grad[a]!;
        for (let b = 0; b <= a; b++) H[a]![b]! += w * grad[a]! * grad[b]!;
      }
    }
    for (let a = 0; a < k; a++) for (let b = 0; b < a; b++) H[b]![a] = H[a]![b]!;
    // Jacobi scaling. A column with no influence, or a constant at its bound that the gradient
    // pushes outwards, gets a zero step: the step is then a Newton step in the free subspace
    // (projected Levenberg–Marquardt), not a full step cut off by the bound.
    const d = H.map((rowH, a) => {
      const pinned = (theta[a]! <= model.lower[a]! && g[a]! > 0) ||
        (theta[a]! >= model.upper[a]! && g[a]! < 0);
      return rowH[a]! > 0 && !pinned ? Math.sqrt(rowH[a]!) : 0;
    });
    const done = (converged: boolean): Solution => ({
      theta,
      objective: f,
      converged,
      iterations: iter,
    });
    if (d.every((v) => v === 0)) return done(true);
    for (;;) {
      const M = H.map((_, a) =>
        H.map((__, b) => {
          if (d[a] === 0 || d[b] === 0) return a === b ? 1 : 0;
          const v = H[a]![b]! / (d[a]! * d[b]!);
          return a === b ? v + lambda : v;
        })
      );
      const rhs = g.map((v, a) => (d[a] === 0 ? 0 : -v / d[a]!));
      let step: number[] = [];
      try {
        step = (la.lusolve(M, rhs) as number[][]).map((r, a) => (d[a] === 0 ? 0 : r[0]! / d[a]!));
      } catch {
        // singular even with damping: more damping below
      }
      if (step.length === k && step.every(Number.isFinite)) {
        const cand = clamp(theta.map((t, a) => t + step[a]!));
        const moved = cand.map((c, a) => c - theta[a]!);
        if (moved.every((m, a) => Math.abs(m) <= 1e-10 * (1 + Math.abs(theta[a]!)))) {
          return done(true);
        }
        const fc = objectiveOf(model, cand, idx, y, delta);
        if (fc <= f) {
          // Nielsen's update: shrink λ by how well the quadratic model predicted the decrease.
          let predicted = 0;
          for (let a = 0; a < k; a++) {
            predicted -= g[a]! * moved[a]!;
            for (let b = 0; b < k; b++) predicted -= 0.5 * moved[a]! * H[a]![b]! * moved[b]!;
          }
          const rho = predicted > 0 ? (f - fc) / predicted : 0;
          const gain = f - fc;
          theta = cand;
          f = fc;
          lambda = Math.max(lambda * Math.max(1 / 3, 1 - (2 * rho - 1) ** 3), 1e-18);
          nu = 2;
          // No relative progress left in double precision.
          if (gain <= 1e-15 * f) return done(true);
          break;
        }
      }
      lambda *= nu;
      nu *= 2;
      if (lambda > 1e12) return done(true);
    }
  }
  return { theta, objective: f, converged: false, iterations: maxIterations };
}

// Bounds of the log-parameters. Loss is O(1) nats and N/nScale is O(0.01 … 1000), so these only
// bite when the data push a constant to 0 or to infinity.
const LOG_TINY = Math.log(1e-9), LOG_HUGE = Math.log(1e9);

/** The sparse law in log space: θ = log [E, B, C, α, β]. */
function sparseModel(n: readonly number[], s: readonly number[]): LogModel {
  const lnN = n.map(Math.log);
  const inv = s.map((v) => 1 / (1 - v));
  return {
    size: 5,
    lower: [LOG_TINY, LOG_TINY, LOG_TINY, Math.log(1e-6), Math.log(1e-6)],
    upper: [LOG_HUGE, LOG_HUGE, LOG_HUGE, Math.log(10), Math.log(20)],
    at(theta) {
      const [E, B, C, alpha, beta] = theta.map(Math.exp) as [
        number,
        number,
        number,
        number,
        number,
      ];
      return (i, grad) => {
        const ex = Math.exp(beta * inv[i]!);
        const nPow = Math.exp(-alpha * lnN[i]!); // N^-α
        const A = B + C * ex;
        const L = E + A * nPow;
        grad[0] = E / L;
        grad[1] = (B * nPow) / L;
        grad[2] = (C * ex * nPow) / L;
        grad[3] = (-alpha * lnN[i]! * A * nPow) / L;
        grad[4] = (beta * C * ex * inv[i]! * nPow) / L;
        return Math.log(L);
      };
    },
  };
}

/** The dense law in log space: θ = log [E, A, α]. */
function denseModel(n: readonly number[]): LogModel {
  const lnN = n.map(Math.log);
  return {
    size: 3,
    lower: [LOG_TINY, LOG_TINY, Math.log(1e-6)],
    upper: [LOG_HUGE, LOG_HUGE, Math.log(10)],
    at(theta) {
      const [E, A, alpha] = theta.map(Math.exp) as [number, number, number];
      return (i, grad) => {
        const nPow = Math.exp(-alpha * lnN[i]!);
        const L = E + A * nPow;
        grad[0] = E / L;
        grad[1] = (A * nPow) / L;
        grad[2] = (-alpha * lnN[i]! * A * nPow) / L;
        return Math.log(L);
      };
    },
  };
}

function checkSparsity(op: string, S: number): void {
  if (!(S >= 0 && S < 1)) throw new ValueError(op, `S must be in [0, 1), got ${S}`);
}

function checkPoints(op: string, points: readonly { N: number; loss: number; S?: number }[]): void {
  for (const [i, p] of points.entries()) {
    if (!(p.N > 0 && Number.isFinite(p.N))) {
      throw new ValueError(op, `point ${i}: N must be > 0, got ${p.N}`);
    }
    if (!(p.loss > 0 && Number.isFinite(p.loss))) {
      throw new ValueError(op, `point ${i}: loss must be > 0, got ${p.loss}`);
    }
    if (p.S !== undefined) checkSparsity(`${op}: point ${i}`, p.S);
  }
}

function resolveOptions(op: string, opts: FitOptions): Required<FitOptions> {
  const o = {
    nScale: opts.nScale ?? DEFAULT_NSCALE,
    delta: opts.delta ?? 1e-3,
    bootstrap: opts.bootstrap ?? 200,
    level: opts.level ?? 0.95,
    seed: opts.seed ?? 0,
    maxIterations: opts.maxIterations ?? 500,
  };
  if (!(o.nScale > 0)) throw new ValueError(op, `nScale must be > 0, got ${o.nScale}`);
  if (!(o.delta > 0)) throw new ValueError(op, `delta must be > 0, got ${o.delta}`);
  if (!(Number.isInteger(o.bootstrap) && o.bootstrap >= 0)) {
    throw new ValueError(op, `bootstrap must be an integer ≥ 0, got ${o.bootstrap}`);
  }
  if (!(o.level > 0 && o.level < 1)) {
    throw new ValueError(op, `level must be in (0, 1), got ${o.level}`);
  }
  return o;
}

/** Percentile of sorted values, linear between order statistics. */
function percentile(sorted: readonly number[], q: number): number {
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/**
 * Best of several starts, then a bootstrap over points warm-started from the best fit. Returns the
 * best θ, its diagnostics and, per bootstrap sample, the derived quantities of `summarise`.
 */
function fitWithBootstrap<K extends string>(
  op: string,
  la: LinAlg,
  model: LogModel,
  y: readonly number[],
  starts: readonly (readonly number[])[],
  o: Required<FitOptions>,
  summarise: (theta: readonly number[]) => Record<K, number>,
): { best: Solution; diagnostics: FitDiagnostics; ci: Intervals<K> | null } {
  const all = y.map((_, i) => i);
  let best: Solution | undefined;
  for (const s of starts) {
    const sol = levenbergMarquardt(la, model, s, all, y, o.delta, o.maxIterations);
    if (!best || sol.objective < best.objective) best = sol;
  }
  if (!best || !Number.isFinite(best.objective)) {
    throw new ValueError(op, "no initialisation gave a finite objective");
  }
  const grad = new Array<number>(model.size);
  const row = model.at(best.theta);
  const residuals = all.map((i) => row(i, grad) - y[i]!);
  const diagnostics: FitDiagnostics = {
    objective: best.objective,
    rmse: Math.sqrt(residuals.reduce((a, r) => a + r * r, 0) / residuals.length),
    residuals,
    converged: best.converged,
    starts: starts.length,
  };
  if (o.bootstrap === 0) return { best, diagnostics, ci: null };
  const n = y.length;
  const draws: Record<K, number>[] = [];
  for (let b = 0; b < o.bootstrap; b++) {
    const idx = Array.from({ length: n }, (_, i) => randomBits(o.seed, b * n + i) % n);
    const sol = levenbergMarquardt(la, model, best.theta, idx, y, o.delta, o.maxIterations);
    if (Number.isFinite(sol.objective)) draws.push(summarise(sol.theta));
  }
  const keys = Object.keys(summarise(best.theta)) as K[];
  const tail = (1 - o.level) / 2;
  const ci = { level: o.level, samples: draws.length } as Intervals<K>;
  for (const key of keys) {
    const v = draws.map((d) => d[key]).sort((a, b) => a - b);
    (ci as Record<K, [number, number]>)[key] = [percentile(v, tail), percentile(v, 1 - tail)];
  }
  return { best, diagnostics, ci };
}

function sparseParams(theta: readonly number[], nScale: number): Required<ScalingLawParams> {
  const [E, B, C, alpha, beta] = theta.map(Math.exp) as [number, number, number, number, number];
  return { E, B, C, alpha, beta, nScale };
}

/**
 * Initial values: a grid over (E, α, β); for each, B and C from a linear least-squares fit of
 * `(L − E)·N^α = B + C·exp(β/(1−S))`, so every start is already close in the linear directions.
 */
function sparseStarts(
  n: readonly number[],
  s: readonly number[],
  loss: readonly number[],
): number[][] {
  const minLoss = Math.min(...loss);
  const starts: number[][] = [];
  for (const eFrac of [0.3, 0.6, 0.85]) {
    for (const alpha of [0.05, 0.1, 0.25, 0.5]) {
      for (const beta of [0.02, 0.1, 0.4]) {
        const E = eFrac * minLoss;
        let sxx = 0, sx = 0, sy = 0, sxy = 0;
        for (let i = 0; i < n.length; i++) {
          const x = Math.exp(beta / (1 - s[i]!));
          const yy = (loss[i]! - E) * n[i]! ** alpha;
          sx += x, sy += yy, sxx += x * x, sxy += x * yy;
        }
        const m = n.length, den = m * sxx - sx * sx;
        let C = den > 1e-12 * m * sxx ? (m * sxy - sx * sy) / den : sy / sx;
        let B = (sy - C * sx) / m;
        const scale = Math.max(sy / m, 1e-6);
        C = Math.max(C, 1e-3 * scale);
        B = Math.max(B, 1e-3 * scale);
        starts.push([E, B, C, alpha, beta].map(Math.log));
      }
    }
  }
  return starts;
}

/**
 * Fits `L(N, S) = E + (B + C·exp(β/(1−S))) / (N/nScale)^α` to observed runs: Huber loss
 * (δ = 1e-3) on log loss, Levenberg–Marquardt from a grid of 36 starts, positive constants in log
 * space, then percentile bootstrap intervals (resampling points, refitting; seeded).
 *
 * Needs at least 6 points with 3 distinct sparsities and 2 distinct sizes (5 constants).
 * Constants are kept in [1e-9, 1e9] (α ≤ 10, β ≤ 20). One that the data push to 0 ends at 1e-9:
 * B often does, since B ≪ C and a noisy sweep cannot tell B from a slightly larger C; its
 * interval then starts at 1e-9, which reads as "consistent with 0".
 *
 * @param points Runs `{ N, S, loss }`, N in parameters (non-embedding, total).
 * @param opts N unit, Huber δ, bootstrap size, level, seed.
 * @returns Constants, S*, diagnostics and intervals.
 * @throws {ValueError} For invalid points or too few of them.
 *
 * @example Recover the paper's constants from its own law
 * ```ts
 * import { fitScalingLaw, PAPER_SCALING_LAW, scalingLaw } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const points = [];
 * for (const N of [3e8, 7e8, 1.3e9, 7e9]) {
 *   for (const S of [0, 0.4, 0.6, 0.8]) points.push({ N, S, loss: scalingLaw(PAPER_SCALING_LAW, N, S) });
 * }
 * const fit = await fitScalingLaw(points, { bootstrap: 0 });
 * assert.ok(Math.abs(fit.alpha - 0.1) < 1e-3);
 * assert.ok(Math.abs(fit.sStar - 0.502) < 2e-3);
 * ```
 */
export async function fitScalingLaw(
  points: readonly ScalingPoint[],
  opts: FitOptions = {},
): Promise<ScalingLawFit> {
  const op = "fitScalingLaw";
  checkPoints(op, points);
  const o = resolveOptions(op, opts);
  const distinct = (xs: number[]): number => new Set(xs).size;
  if (
    points.length < 6 || distinct(points.map((p) => p.S)) < 3 ||
    distinct(points.map((p) => p.N)) < 2
  ) {
    throw new ValueError(
      op,
      `need ≥ 6 points with ≥ 3 distinct S and ≥ 2 distinct N to fit 5 constants, got ${points.length} ` +
        `points, ${distinct(points.map((p) => p.S))} S, ${distinct(points.map((p) => p.N))} N`,
    );
  }
  const n = points.map((p) => p.N / o.nScale);
  const s = points.map((p) => p.S);
  const y = points.map((p) => Math.log(p.loss));
  const la = await loadLinAlg();
  const { best, diagnostics, ci } = fitWithBootstrap(
    op,
    la,
    sparseModel(n, s),
    y,
    sparseStarts(n, s, points.map((p) => p.loss)),
    o,
    (theta) => {
      const { nScale: _, ...p } = sparseParams(theta, o.nScale);
      return { ...p, sStar: optimalSparsity(p) };
    },
  );
  const params = sparseParams(best.theta, o.nScale);
  return { ...params, sStar: optimalSparsity(params), ...diagnostics, ci };
}

/**
 * Fits the dense law `L(N) = E + A / (N/nScale)^α` (Huber on log loss, Levenberg–Marquardt from
 * a grid of starts, bootstrap intervals), e.g. to the S = 0 runs of a sweep.
 *
 * @param points Runs `{ N, loss }`, N in parameters; at least 4 with 2 distinct N.
 * @param opts N unit, Huber δ, bootstrap size, level, seed.
 * @returns Constants, diagnostics and intervals.
 * @throws {ValueError} For invalid points or too few of them.
 *
 * @example
 * ```ts
 * import { denseLaw, fitDenseLaw } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const truth = { E: 1.7, A: 2.0, alpha: 0.3 };
 * const points = [2e7, 5e7, 1e8, 3e8, 1e9].map((N) => ({ N, loss: denseLaw(truth, N) }));
 * const fit = await fitDenseLaw(points, { bootstrap: 0 });
 * assert.ok(Math.abs(fit.alpha - 0.3) < 1e-4);
 * ```
 */
export async function fitDenseLaw(
  points: readonly { N: number; loss: number }[],
  opts: FitOptions = {},
): Promise<DenseLawFit> {
  const op = "fitDenseLaw";
  checkPoints(op, points);
  const o = resolveOptions(op, opts);
  if (points.length < 4 || new Set(points.map((p) => p.N)).size < 2) {
    throw new ValueError(
      op,
      `need ≥ 4 points with ≥ 2 distinct N to fit 3 constants, got ${points.length}`,
    );
  }
  const n = points.map((p) => p.N / o.nScale);
  const y = points.map((p) => Math.log(p.loss));
  const minLoss = Math.min(...points.map((p) => p.loss));
  const starts: number[][] = [];
  for (const eFrac of [0.3, 0.6, 0.85]) {
    for (const alpha of [0.05, 0.1, 0.25, 0.5, 1]) {
      const E = eFrac * minLoss;
      // A from the mean of (L − E)·N^α, which is exact when E and α are right.
      const A = points.reduce((a, p, i) => a + (p.loss - E) * n[i]! ** alpha, 0) / points.length;
      starts.push([E, Math.max(A, 1e-6), alpha].map(Math.log));
    }
  }
  const la = await loadLinAlg();
  const { best, diagnostics, ci } = fitWithBootstrap(
    op,
    la,
    denseModel(n),
    y,
    starts,
    o,
    (theta) => {
      const [E, A, alpha] = theta.map(Math.exp) as [number, number, number];
      return { E, A, alpha };
    },
  );
  const [E, A, alpha] = best.theta.map(Math.exp) as [number, number, number];
  return { E, A, alpha, nScale: o.nScale, ...diagnostics, ci };
}

// ---------------------------------------------------------------------------------------------
// Profile likelihood

/** A profile-likelihood interval of one quantity. */
export interface ProfileInterval {
  /** The least-squares estimate. */
  estimate: number;
  /** Lower end. */
  lo: number;
  /** Upper end. */
  hi: number;
  /** The profile never crossed the threshold below the estimate: `lo` is the search bound. */
  lowerOpen: boolean;
  /** The profile never crossed the threshold above the estimate: `hi` is the search bound. */
  upperOpen: boolean;
}

/** Result of {@link profileScalingLaw}. */
export interface ScalingLawProfile {
  /** The least-squares fit (on log loss) the profiles start from. */
  fit: Required<ScalingLawParams> & { sStar: number };
  /** Residual sum of squares of log loss at the optimum. */
  sse: number;
  /** Residual degrees of freedom, points − 5. */
  dfResidual: number;
  /** Confidence level. */
  level: number;
  /** The rise of the SSE that bounds an interval: `F(1, df; level)·SSE/df`. */
  threshold: number;
  /** Profile intervals of the constants and of S*. */
  intervals: Record<"E" | "B" | "C" | "alpha" | "beta" | "sStar", ProfileInterval>;
}

/** Options of {@link profileScalingLaw}. */
export interface ProfileOptions {
  /** N is divided by this; default 1e8. */
  nScale?: number;
  /** Confidence level; default 0.95. */
  level?: number;
  /** Iteration cap per refit; default 300. */
  maxIterations?: number;
}

/**
 * A model in reduced parameters φ, mapped to the full θ by `map`; its gradient is the full
 * gradient times the map's Jacobian (by central differences, so any smooth map works).
 */
function reducedModel(
  full: LogModel,
  size: number,
  lower: readonly number[],
  upper: readonly number[],
  map: (phi: readonly number[]) => number[],
): LogModel {
  return {
    size,
    lower,
    upper,
    at(phi) {
      const theta = map(phi);
      const h = 1e-6;
      const jac = Array.from({ length: size }, (_, b) => {
        const up = [...phi], dn = [...phi];
        up[b]! += h;
        dn[b]! -= h;
        const tu = map(up), td = map(dn);
        return tu.map((v, a) => (v - td[a]!) / (2 * h));
      });
      const row = full.at(theta);
      const g = new Array<number>(full.size);
      return (i, grad) => {
        const v = row(i, g);
        for (let b = 0; b < size; b++) {
          let acc = 0;
          for (let a = 0; a < full.size; a++) acc += g[a]! * jac[b]![a]!;
          grad[b] = acc;
        }
        return v;
      };
    },
  };
}

/**
 * Profile-likelihood intervals of the law's constants and of S*, from a least-squares fit on log
 * loss (Gaussian errors of equal variance): for each quantity, fix it at a value, refit the other
 * four, and keep the values whose residual sum of squares rises by at most
 * `F(1, n − 5; level)·SSE/(n − 5)` over the optimum. S* is profiled through the law's optimality
 * condition `α = βu·C·e^{βu} / (B + C·e^{βu})` with `u = 1/(1 − S*)`, which fixes α from the other
 * constants. The search walks out from the estimate in doubling steps and bisects the crossing;
 * an end that never crosses (the data do not bound it) is reported as open, at the search bound.
 *
 * Unlike a percentile bootstrap, this shows directly when a quantity is not identified: a flat
 * profile gives an interval open at the bounds.
 *
 * @param points Runs `{ N, S, loss }`, N in parameters.
 * @param opts N unit, level, iteration cap.
 * @returns The least-squares fit and the intervals.
 * @throws {ValueError} For invalid points or fewer than 7 of them (the threshold needs a
 *   residual degree of freedom).
 *
 * @example On the paper's law with noise, the interval of α holds the truth
 * ```ts
 * import { PAPER_SCALING_LAW, profileScalingLaw, scalingLaw } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const points = [];
 * let k = 0;
 * for (const N of [3e8, 7e8, 1.3e9, 7e9]) {
 *   for (const S of [0, 0.4, 0.6, 0.8]) {
 *     points.push({ N, S, loss: scalingLaw(PAPER_SCALING_LAW, N, S) * (1 + 0.002 * Math.sin(k++ * 2.1)) });
 *   }
 * }
 * const prof = await profileScalingLaw(points);
 * const a = prof.intervals.alpha;
 * assert.ok(a.lo < 0.1 && 0.1 < a.hi);
 * ```
 */
export async function profileScalingLaw(
  points: readonly ScalingPoint[],
  opts: ProfileOptions = {},
): Promise<ScalingLawProfile> {
  const op = "profileScalingLaw";
  checkPoints(op, points);
  const nScale = opts.nScale ?? DEFAULT_NSCALE, level = opts.level ?? 0.95;
  const maxIt = opts.maxIterations ?? 300;
  if (!(level > 0 && level < 1)) throw new ValueError(op, `level must be in (0, 1), got ${level}`);
  const distinct = (xs: number[]): number => new Set(xs).size;
  if (
    points.length < 7 || distinct(points.map((p) => p.S)) < 3 ||
    distinct(points.map((p) => p.N)) < 2
  ) {
    throw new ValueError(
      op,
      `need ≥ 7 points with ≥ 3 distinct S and ≥ 2 distinct N, got ${points.length} points`,
    );
  }
  const n = points.map((p) => p.N / nScale);
  const s = points.map((p) => p.S);
  const y = points.map((p) => Math.log(p.loss));
  const all = y.map((_, i) => i);
  const la = await loadLinAlg();
  const full = sparseModel(n, s);
  // Least squares: a Huber threshold no residual reaches.
  const solve = (m: LogModel, starts: readonly (readonly number[])[]): Solution => {
    let best: Solution | undefined;
    for (const st of starts) {
      const sol = levenbergMarquardt(la, m, st, all, y, Infinity, maxIt);
      if (!best || sol.objective < best.objective) best = sol;
    }
    return best!;
  };
  const best = solve(full, sparseStarts(n, s, points.map((p) => p.loss)));
  if (!Number.isFinite(best.objective)) {
    throw new ValueError(op, "no initialisation gave a finite objective");
  }
  const sse = 2 * best.objective;
  const dfResidual = points.length - 5;
  const threshold = f1Quantile(level, dfResidual) * sse / dfResidual;
  const params = sparseParams(best.theta, nScale);
  const sStar = optimalSparsity(params);

  /**
   * Walks from z0 in direction dir until the profiled SSE rises past the threshold, then bisects.
   * `refit(z, warm)` returns the reduced solution at z; `toWarm` gives the next warm start.
   */
  const walk = (
    z0: number,
    dir: 1 | -1,
    step0: number,
    bound: number,
    refit: (z: number, warm: readonly number[] | null) => Solution,
  ): { end: number; open: boolean } => {
    const over = (sol: Solution) => 2 * sol.objective - sse > threshold;
    let inside = z0, warm: readonly number[] | null = null, step = step0;
    for (let k = 0; k < 40; k++) {
      const z = dir > 0 ? Math.min(inside + step, bound) : Math.max(inside - step, bound);
      const sol = refit(z, warm);
      if (over(sol)) {
        let a = inside, b = z;
        for (let j = 0; j < 12; j++) {
          const mid = 0.5 * (a + b);
          const sm = refit(mid, warm);
          if (over(sm)) b = mid;
          else {
            a = mid;
            warm = sm.theta;
          }
        }
        return { end: 0.5 * (a + b), open: false };
      }
      inside = z;
      warm = sol.theta;
      if (z === bound) return { end: z, open: true };
      step *= 2;
    }
    return { end: inside, open: true };
  };

  const names = ["E", "B", "C", "alpha", "beta"] as const;
  const intervals = {} as ScalingLawProfile["intervals"];
  names.forEach((name, j) => {
    const keep = [0, 1, 2, 3, 4].filter((a) => a !== j);
    const refit = (z: number, warm: readonly number[] | null): Solution => {
      const m = reducedModel(
        full,
        4,
        keep.map((a) => full.lower[a]!),
        keep.map((a) => full.upper[a]!),
        (phi) => {
          const t = new Array<number>(5);
          keep.forEach((a, b) => (t[a] = phi[b]!));
          t[j] = z;
          return t;
        },
      );
      const fromBest = keep.map((a) => best.theta[a]!);
      return solve(m, warm ? [warm, fromBest] : [fromBest]);
    };
    const z0 = best.theta[j]!;
    const lo = walk(z0, -1, 0.05, full.lower[j]!, refit);
    const hi = walk(z0, 1, 0.05, full.upper[j]!, refit);
    intervals[name] = {
      estimate: Math.exp(z0),
      lo: Math.exp(lo.end),
      hi: Math.exp(hi.end),
      lowerOpen: lo.open,
      upperOpen: hi.open,
    };
  });

  // S*: α follows from (B, C, β) through the optimality condition; φ = log [E, B, C, β].
  const alphaAt = (phi: readonly number[], S: number): number => {
    const [, B, C, beta] = phi.map(Math.exp) as [number, number, number, number];
    const u = 1 / (1 - S), ce = C * Math.exp(beta * u);
    return (beta * u * ce) / (B + ce);
  };
  const sLo = 0.001, sHi = 0.98;
  const refitS = (S: number, warm: readonly number[] | null): Solution => {
    const m = reducedModel(
      full,
      4,
      [0, 1, 2, 4].map((a) => full.lower[a]!),
      [0, 1, 2, 4].map((a) => full.upper[a]!),
      (phi) => [phi[0]!, phi[1]!, phi[2]!, Math.log(alphaAt(phi, S)), phi[3]!],
    );
    const fromBest = [0, 1, 2, 4].map((a) => best.theta[a]!);
    return solve(m, warm ? [warm, fromBest] : [fromBest]);
  };
  // At a bound of [0, 0.99] S* has no profile on that side: walk inwards from the bound only.
  const lower = sStar <= sLo
    ? { end: 0, open: true }
    : walk(Math.min(sStar, sHi), -1, 0.02, sLo, refitS);
  const upper = sStar >= sHi
    ? { end: 0.99, open: true }
    : walk(Math.max(sStar, sLo), 1, 0.02, sHi, refitS);
  intervals.sStar = {
    estimate: sStar,
    lo: lower.open ? 0 : lower.end,
    hi: upper.open ? 0.99 : upper.end,
    lowerOpen: lower.open,
    upperOpen: upper.open,
  };
  return { fit: { ...params, sStar }, sse, dfResidual, threshold, level, intervals };
}
