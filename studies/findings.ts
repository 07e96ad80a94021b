/**
 * The paper's findings (docs/paper-notes.md §9) as verdicts computed from data: each builder compares a
 * measured quantity, with its standard error, against the claim and returns `"reproduced"`,
 * `"not reproduced at this scale"` or `"inconclusive"` together with the numbers on both sides.
 * {@link findingsMarkdown} renders a list of them as the table the notebooks show and the README
 * reuses.
 *
 * A verdict is "reproduced" only when its test passes at the stated level (one-sided t-tests at
 * α = 0.05 with the degrees of freedom of the seed-level errors, Holm-corrected across a
 * notebook's findings by {@link holmFindings}), "not reproduced" only when the data contradict
 * the claim at that level, and "inconclusive" in between: small models and few seeds often
 * cannot tell, and the table says so, with the test and its p-value. A smoke run's table says
 * "smoke run — not evidence" instead of any verdict.
 *
 * @module
 */
import { ValueError } from "../src/core/errors.ts";
import {
  type Convexity,
  type DenseGap,
  type EqualNaRow,
  type Estimate,
  type GapTrend,
  lossDifference,
  pooled,
  pooledWithSpread,
  type RunGroup,
  type SparsityAt,
  sparsityDrift,
  type SweepFit,
} from "./report.ts";
import { PAPER_SCALING_LAW, scalingLaw, sparsityFactor } from "../src/train/scaling_law.ts";
import { holm, tQuantile, type TTest, tTest } from "./stats.ts";

/** The outcome of testing a claim on our data. */
export type Verdict = "reproduced" | "not reproduced at this scale" | "inconclusive";

/** One row of a findings table. */
export interface Finding {
  /** Short id, e.g. `"ste"` or `"s-star-fp"`. */
  id: string;
  /** The claim, in words. */
  claim: string;
  /** The paper's number or statement (with its figure or table). */
  paper: string;
  /** What we measured, with uncertainties. */
  measured: string;
  /** The verdict. */
  verdict: Verdict;
  /** Caveats: scale, what is not measured. */
  note?: string;
  /** The test the verdict rests on (absent: a descriptive check, named in `testName`). */
  test?: TTest;
  /** The test in words when there is no t-test (e.g. a range check of a measured quantity). */
  testName?: string;
}

/**
 * The paper's inference-optimal sparsities (P §3.6): full precision and BitNet b1.58.
 *
 * @example
 * ```ts
 * import { PAPER_S_STAR } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.equal(PAPER_S_STAR.fp, 0.4558);
 * assert.ok(PAPER_S_STAR.bitnet > PAPER_S_STAR.fp); // 1.58-bit models tolerate more sparsity
 * assert.ok(Object.isFrozen(PAPER_S_STAR));
 * ```
 */
export const PAPER_S_STAR: Readonly<{ fp: number; bitnet: number }> = Object.freeze({
  fp: 0.4558,
  bitnet: 0.6125,
});

/** The significance level of every verdict (one-sided). */
export const LEVEL = 0.05;

/**
 * The verdict of a one-sided test: reproduced when its p-value (Holm-adjusted when present) is at
 * most the level, not reproduced when the contrary one-sided p-value is, inconclusive otherwise
 * (or when the test could not be made).
 *
 * @param t The test.
 * @returns The verdict.
 *
 * @example
 * ```ts
 * import { verdictOf } from "@qsparse/kit/studies";
 * import { tTest } from "./stats.ts";
 * import assert from "node:assert/strict";
 * assert.equal(verdictOf(tTest({ value: 0.05, se: 0.01, df: 10 }, "above")), "reproduced");
 * assert.equal(verdictOf(tTest({ value: 0.05, se: 0.01, df: 1 }, "above")), "inconclusive");
 * ```
 */
export function verdictOf(t: TTest): Verdict {
  const p = t.pAdjusted ?? t.p;
  if (!Number.isFinite(p)) return "inconclusive";
  if (p <= t.level) return "reproduced";
  if (t.pContrary <= t.level) return "not reproduced at this scale";
  return "inconclusive";
}

/**
 * Verdict for the claim `value > threshold` by a one-sided t-test at `level` with the estimate's
 * degrees of freedom (absent: normal); inconclusive when se is unknown.
 *
 * @param est The estimate.
 * @param threshold The claimed bound; default 0.
 * @param level One-sided significance level; default 0.05.
 * @returns The verdict.
 *
 * @example
 * ```ts
 * import { verdictAbove } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.equal(verdictAbove({ value: 0.05, se: 0.01 }), "reproduced");
 * assert.equal(verdictAbove({ value: 0.05, se: 0.01, df: 1 }), "inconclusive"); // t = 5, df 1
 * assert.equal(verdictAbove({ value: 0.01, se: 0.01 }), "inconclusive");
 * assert.equal(verdictAbove({ value: -0.05, se: 0.01 }), "not reproduced at this scale");
 * ```
 */
export function verdictAbove(est: Estimate, threshold = 0, level = LEVEL): Verdict {
  return verdictOf(tTest(est, "above", threshold, level));
}

/**
 * Verdict for the claim `value < threshold` (see {@link verdictAbove}).
 *
 * @param est The estimate.
 * @param threshold The claimed bound; default 0.
 * @param level One-sided significance level; default 0.05.
 * @returns The verdict.
 *
 * @example
 * ```ts
 * import { verdictBelow } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.equal(verdictBelow({ value: -0.05, se: 0.01 }), "reproduced");
 * ```
 */
export function verdictBelow(est: Estimate, threshold = 0, level = LEVEL): Verdict {
  return verdictOf(tTest(est, "below", threshold, level));
}

/**
 * The equivalence test of `lo < value < hi` (two one-sided t-tests, TOST): its p-value is the
 * larger of the two; its contrary p-value the smaller of the tests that the value lies beyond an
 * end.
 *
 * @param est The estimate.
 * @param range `[lo, hi]`.
 * @param level Significance level; default 0.05.
 * @returns The test.
 *
 * @example
 * ```ts
 * import { equivalenceTest } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.ok(equivalenceTest({ value: 0.004, se: 0.003 }, [-0.02, 0.02]).p < 0.001);
 * ```
 */
export function equivalenceTest(
  est: Estimate,
  range: readonly [number, number],
  level = LEVEL,
): TTest {
  const lo = tTest(est, "above", range[0], level), hi = tTest(est, "below", range[1], level);
  const worse = lo.p >= hi.p ? lo : hi;
  return {
    ...worse,
    name: `equivalence (TOST) within [${range[0]}, ${range[1]}] (${worse.name.replace(/.*\(/, "")}`,
    p: Math.max(lo.p, hi.p),
    pContrary: Math.min(lo.pContrary, hi.pContrary),
  };
}

/**
 * Verdict for the claim `lo ≤ value ≤ hi` (equivalence, {@link equivalenceTest}): reproduced
 * when both one-sided tests pass at `level`, not reproduced when the value lies significantly
 * beyond an end, inconclusive otherwise.
 *
 * @param est The estimate.
 * @param range `[lo, hi]`.
 * @param level Significance level; default 0.05.
 * @returns The verdict.
 *
 * @example Block 16:32 within ±0.02 nats of top-K
 * ```ts
 * import { verdictWithin } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.equal(verdictWithin({ value: 0.004, se: 0.003 }, [-0.02, 0.02]), "reproduced");
 * assert.equal(verdictWithin({ value: 0.015, se: 0.01 }, [-0.02, 0.02]), "inconclusive");
 * ```
 */
export function verdictWithin(
  est: Estimate,
  range: readonly [number, number],
  level = LEVEL,
): Verdict {
  return verdictOf(equivalenceTest(est, range, level));
}

/**
 * Verdict for "the quantity lies in `range`" from a point estimate and a confidence interval
 * (e.g. a profile-likelihood interval of S*): not reproduced when the interval misses the range;
 * reproduced when the point is in the range and the interval is no wider than `maxWidth` (a
 * point estimate with an interval spanning everything has resolved nothing); else inconclusive.
 *
 * @param point The estimate.
 * @param interval Its confidence interval `[lo, hi]`.
 * @param range The claimed range.
 * @param maxWidth The widest interval that counts as resolved; default: the interval must lie
 *   inside the range.
 * @returns The verdict.
 *
 * @example
 * ```ts
 * import { verdictInterval } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.equal(verdictInterval(0.45, [0.38, 0.55], [0.35, 0.6]), "reproduced");
 * assert.equal(verdictInterval(0.45, [0.05, 0.95], [0.35, 0.6]), "inconclusive");
 * assert.equal(verdictInterval(0.8, [0.7, 0.9], [0.35, 0.6]), "not reproduced at this scale");
 * ```
 */
export function verdictInterval(
  point: number,
  interval: readonly [number, number],
  range: readonly [number, number],
  maxWidth?: number,
): Verdict {
  const [lo, hi] = interval, [a, b] = range;
  if (![point, lo, hi].every(Number.isFinite)) return "inconclusive";
  if (hi < a || lo > b) return "not reproduced at this scale";
  const inside = point >= a && point <= b;
  const resolved = maxWidth === undefined ? lo >= a && hi <= b : hi - lo <= maxWidth;
  return inside && resolved ? "reproduced" : "inconclusive";
}

/**
 * Holm's correction across a notebook's findings: the p-values of the findings that carry a
 * t-test are adjusted together ({@link holm}) and their verdicts recomputed; a finding is then
 * "reproduced" only when its adjusted p-value is at most the level. Findings without a test are
 * returned unchanged.
 *
 * @param findings The notebook's findings.
 * @returns New findings with `test.pAdjusted` set and verdicts recomputed.
 *
 * @example Two tests at p = 0.03 each: neither survives Holm at 0.05 (0.06 after adjustment)
 * ```ts
 * import { type Finding, holmFindings } from "@qsparse/kit/studies";
 * import { tTest } from "./stats.ts";
 * import assert from "node:assert/strict";
 * const test = { ...tTest({ value: 1, se: 1 }, "above"), p: 0.03 };
 * const f = (id: string): Finding => ({ id, claim: id, paper: "", measured: "", verdict: "reproduced", test });
 * const out = holmFindings([f("a"), f("b")]);
 * assert.ok(out.every((x) => x.verdict === "inconclusive" && Math.abs(x.test!.pAdjusted! - 0.06) < 1e-12));
 * ```
 */
export function holmFindings(findings: readonly Finding[]): Finding[] {
  const adj = holm(findings.map((f) => f.test?.p ?? NaN));
  return findings.map((f, i) => {
    if (!f.test || !Number.isFinite(adj[i]!)) return { ...f };
    const test = { ...f.test, pAdjusted: adj[i]! };
    return { ...f, test, verdict: verdictOf(test) };
  });
}

/**
 * All of several sub-verdicts: reproduced when all are, not reproduced when any is, else
 * inconclusive.
 *
 * @param verdicts The parts.
 * @returns The combined verdict.
 *
 * @example
 * ```ts
 * import { combineVerdicts } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.equal(combineVerdicts(["reproduced", "inconclusive"]), "inconclusive");
 * ```
 */
export function combineVerdicts(verdicts: readonly Verdict[]): Verdict {
  if (verdicts.includes("not reproduced at this scale")) return "not reproduced at this scale";
  if (verdicts.length && verdicts.every((v) => v === "reproduced")) return "reproduced";
  return "inconclusive";
}

/**
 * An estimate as `value ± se` with a fixed number of decimals (and a sign when asked); the
 * error's degrees of freedom follow when they are finite (`± 0.004 (df 1)`).
 *
 * @param est The estimate.
 * @param digits Decimals; default 3.
 * @param signed Always print the sign.
 * @returns E.g. `+0.012 ± 0.004`.
 *
 * @example
 * ```ts
 * import { formatEstimate } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.equal(formatEstimate({ value: 0.0123, se: 0.004 }, 3, true), "+0.012 ± 0.004");
 * ```
 */
export function formatEstimate(est: Estimate, digits = 3, signed = false): string {
  const v = est.value.toFixed(digits);
  const sign = signed && est.value >= 0 ? "+" : "";
  if (!Number.isFinite(est.se)) return `${sign}${v}`;
  const df = est.df !== undefined && Number.isFinite(est.df)
    ? ` (df ${Number.isInteger(est.df) ? est.df : est.df.toFixed(1)})`
    : "";
  return `${sign}${v} ± ${est.se.toFixed(digits)}${df}`;
}

/** A two-sided 95% t interval `[lo, hi]` of an estimate (its df; normal without). */
function ciText(est: Estimate, digits: number): string {
  const q = tQuantile(0.975, est.df ?? Infinity);
  const f = (x: number) => `${x >= 0 ? "+" : ""}${x.toFixed(digits)}`;
  return `[${f(est.value - q * est.se)}, ${f(est.value + q * est.se)}]`;
}

function pct(x: number, digits = 1): string {
  return `${(100 * x).toFixed(digits)}%`;
}

/** What {@link comparisonFinding} compares. */
export interface ComparisonSpec {
  /** Finding id. */
  id: string;
  /** The claim in words. */
  claim: string;
  /** The paper's number or statement. */
  paper: string;
  /** What the estimate is, e.g. `loss(Q-Sparse) − loss(dense)`. */
  label: string;
  /** The estimate (nats unless `unit` says otherwise). */
  estimate: Estimate;
  /** The claim: estimate `"below"` / `"above"` `threshold`, or `"within"` ±`threshold`. */
  expect: "below" | "above" | "within";
  /** The bound; default 0 (for `"within"`: the tolerance, required). */
  threshold?: number;
  /** Unit after the number; default `" nats"`. */
  unit?: string;
  /** Decimals; default 3. */
  digits?: number;
  /** Caveats. */
  note?: string;
}

/**
 * A finding from one comparison: the estimate against a threshold, with the verdict from
 * {@link verdictAbove}, {@link verdictBelow} or {@link verdictWithin}.
 *
 * @param spec What is compared and what the claim expects.
 * @returns The finding.
 * @throws {ValueError} For `"within"` without a positive tolerance.
 *
 * @example Fine-tuned Q-Sparse close to fine-tuned dense
 * ```ts
 * import { comparisonFinding } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const f = comparisonFinding({
 *   id: "ft", claim: "Q-Sparse fine-tuning ≈ dense", paper: "66.4 vs 66.8 avg (Table 4)",
 *   label: "loss(Q-Sparse) − loss(dense)", estimate: { value: 0.01, se: 0.002 }, expect: "within", threshold: 0.05,
 * });
 * assert.equal(f.verdict, "reproduced");
 * assert.match(f.measured, /\+0\.010 ± 0\.002 nats/);
 * ```
 */
export function comparisonFinding(spec: ComparisonSpec): Finding {
  const t = spec.threshold ?? 0, unit = spec.unit ?? " nats", digits = spec.digits ?? 3;
  let test: TTest, claimText: string;
  switch (spec.expect) {
    case "above":
      test = tTest(spec.estimate, "above", t);
      claimText = `> ${t}${unit}`;
      break;
    case "below":
      test = tTest(spec.estimate, "below", t);
      claimText = `< ${t}${unit}`;
      break;
    case "within":
      if (!(t > 0)) {
        throw new ValueError("comparisonFinding", `"within" needs a tolerance > 0, got ${t}`);
      }
      test = equivalenceTest(spec.estimate, [-t, t]);
      claimText = `within ±${t}${unit}`;
      break;
  }
  return {
    id: spec.id,
    claim: spec.claim,
    paper: spec.paper,
    measured: `${spec.label} = ${
      formatEstimate(spec.estimate, digits, true)
    }${unit} (claim: ${claimText})`,
    verdict: verdictOf(test),
    test,
    ...(spec.note ? { note: spec.note } : {}),
  };
}

/** What {@link armComparisonFinding} compares: two groups, or fewer when runs are missing. */
export interface ArmComparisonSpec {
  /** Finding id. */
  id: string;
  /** The claim in words. */
  claim: string;
  /** The paper's number or statement. */
  paper: string;
  /** The first arm (missing: the finding is inconclusive). */
  a: RunGroup | undefined;
  /** The arm it is compared with. */
  b: RunGroup | undefined;
  /** Label of the first arm in the measured text. */
  aName: string;
  /** Label of the second arm. */
  bName: string;
  /** The claim on `loss(a) − loss(b)`: `"below"` / `"above"` `threshold`, or `"within"` ±. */
  expect: "below" | "above" | "within";
  /** The bound (for `"within"`: the tolerance); in percent of `loss(b)` when `relative`. */
  threshold?: number;
  /** Compare `(loss(a) − loss(b)) / loss(b)` in percent instead of nats. */
  relative?: boolean;
  /** Caveats. */
  note?: string;
}

/**
 * A finding from comparing two arms' final validation losses, absolute (nats) or relative to
 * the second arm (percent); inconclusive with a "runs missing" note when either arm is absent.
 *
 * @param spec The arms, the claim and its bound.
 * @returns The finding.
 *
 * @example Q-Sparse continued training within 2% of dense
 * ```ts
 * import { armComparisonFinding, type RunGroup } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const g = (mean: number) => ({ tags: {}, records: [], loss: { mean, se: 0.002, n: 1 } }) as unknown as RunGroup;
 * const spec = {
 *   id: "continue", claim: "Q-Sparse continued training ≈ dense", paper: "Table 1", aName: "Q-Sparse",
 *   bName: "dense", expect: "within" as const, threshold: 2, relative: true,
 * };
 * assert.equal(armComparisonFinding({ ...spec, a: g(2.02), b: g(2.0) }).verdict, "reproduced");
 * assert.equal(armComparisonFinding({ ...spec, a: undefined, b: g(2) }).verdict, "inconclusive");
 * ```
 */
export function armComparisonFinding(spec: ArmComparisonSpec): Finding {
  const { a, b } = spec;
  if (!a || !b) {
    const absent = [a ? "" : spec.aName, b ? "" : spec.bName].filter(Boolean).join(", ");
    return missing(spec.id, spec.claim, spec.paper, `runs missing: ${absent}`);
  }
  const d = lossDifference(a, b);
  const scale = spec.relative ? 100 / b.loss.mean : 1;
  const single = [a, b].filter((g) => g.singleSeed).length;
  const singleNote = !single
    ? ""
    : a.loss.df === Infinity || b.loss.df === Infinity
    ? "single-seed arm: its error is the evaluation noise only (seed noise not measured here)"
    : "single-seed arm: its error is the seed noise pooled over the replicated arms";
  const note = [spec.note, singleNote].filter(Boolean).join("; ");
  return comparisonFinding({
    id: spec.id,
    claim: spec.claim,
    paper: spec.paper,
    label: spec.relative
      ? `(loss(${spec.aName}) − loss(${spec.bName})) / loss(${spec.bName})`
      : `loss(${spec.aName}) − loss(${spec.bName})`,
    estimate: {
      value: d.value * scale,
      se: d.se * scale,
      ...(d.df !== undefined ? { df: d.df } : {}),
    },
    expect: spec.expect,
    threshold: spec.threshold,
    unit: spec.relative ? "%" : " nats",
    digits: spec.relative ? 2 : 3,
    ...(note ? { note } : {}),
  });
}

// ---------------------------------------------------------------------------------------------
// The findings of docs/paper-notes.md §9

function paramLabelOf(n: number): string {
  return n >= 1e6 ? `${(n / 1e6).toPrecision(3)}M` : `${Math.round(n / 1e3)}K`;
}

const variant = (groups: readonly RunGroup[], v: string): RunGroup | undefined =>
  groups.find((g) => g.tags.variant === v);

function missing(id: string, claim: string, paper: string, what: string): Finding {
  return {
    id,
    claim,
    paper,
    measured: `— (${what})`,
    verdict: "inconclusive",
  };
}

/**
 * Finding 1: the straight-through estimator matters. Top-K without STE and a ReLU sparsifier
 * should both train to a clearly higher loss than top-K with STE at the same size and steps.
 *
 * @param groups The ablation study's groups (`variant` tags `topk-ste`, `topk-noste`, `relu`).
 * @returns The finding.
 *
 * @example
 * ```ts
 * import { type RunGroup, steFinding } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const g = (variant: string, mean: number) => ({ tags: { variant }, records: [], loss: { mean, se: 0.005, n: 1 } }) as unknown as RunGroup;
 * assert.equal(steFinding([g("topk-ste", 2.0), g("topk-noste", 2.3), g("relu", 2.2)]).verdict, "reproduced");
 * ```
 */
export function steFinding(groups: readonly RunGroup[]): Finding {
  const claim = "STE matters: top-K without STE, and a ReLU sparsifier, train clearly worse";
  const paper = "300M, 50B tokens: both 'significantly hurt' (Fig. 8, PPL axis 10–20)";
  const ste = variant(groups, "topk-ste"), noste = variant(groups, "topk-noste");
  const relu = variant(groups, "relu");
  if (!ste || !noste || !relu) return missing("ste", claim, paper, "ablation runs missing");
  const a = lossDifference(noste, ste), b = lossDifference(relu, ste);
  const ta = tTest(a, "above"), tb = tTest(b, "above");
  // Intersection–union test: the claim needs both, so its p-value is the larger of the two and
  // no multiplicity correction is needed between them.
  const worse = ta.p >= tb.p || Number.isNaN(ta.p) ? ta : tb;
  const test: TTest = {
    ...worse,
    name: `intersection–union of two one-sided t-tests of > 0 (the worse: ${
      worse.name.replace(/.*\(/, "")
    }`,
    p: Math.max(ta.p, tb.p),
    pContrary: Math.min(ta.pContrary, tb.pContrary),
  };
  return {
    id: "ste",
    claim,
    paper,
    measured: `loss(no STE) − loss(STE) = ${formatEstimate(a, 3, true)}; loss(ReLU) − loss(STE) = ${
      formatEstimate(b, 3, true)
    } nats`,
    verdict: verdictOf(test),
    test,
    note: "the test is on validation loss; the gradient-norm side of the claim is its own row",
  };
}

/**
 * Finding 1b: a ReLU sparsifier's sparsity falls during training while top-K's stays fixed.
 * Compares the first and last training log windows of each run (mean over seeds); top-K is
 * judged on its attention sites, whose sparsity only top-K sets (the down-projection input also
 * has ReLU²'s natural zeros, which move).
 *
 * @param groups The ablation study's groups.
 * @param minDrop The fall that counts as a decrease; default 0.02 (2 points).
 * @returns The finding.
 *
 * @example
 * ```ts
 * import { reluDriftFinding, type RunGroup } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const curve = (a: number, b: number) => [{ step: 1, overall: a, perSite: { qkv: a } }, { step: 9, overall: b, perSite: { qkv: b } }];
 * const g = (variant: string, a: number, b: number) => ({ tags: { variant }, records: [{ sparsityCurve: curve(a, b) }] }) as unknown as RunGroup;
 * assert.equal(reluDriftFinding([g("relu", 0.62, 0.5), g("topk-ste", 0.5, 0.5)]).verdict, "reproduced");
 * ```
 */
export function reluDriftFinding(groups: readonly RunGroup[], minDrop = 0.02): Finding {
  const claim = "ReLU's sparsity decays during training; top-K's stays fixed";
  const paper = "ReLU overall sparsity falls (Fig. 9, axis 45–65%), mostly in QKV, gate, up";
  const relu = variant(groups, "relu"), ste = variant(groups, "topk-ste");
  const drift = (g: RunGroup | undefined, site?: string) => {
    const d = (g?.records ?? []).map((r) => sparsityDrift(r, site)).filter((x) => x !== null);
    if (!d.length) return null;
    const m = (k: "first" | "last") => d.reduce((s, x) => s + x[k], 0) / d.length;
    return { first: m("first"), last: m("last"), change: m("last") - m("first") };
  };
  const r = drift(relu), t = drift(ste, "qkv");
  if (!r || !t) return missing("relu-drift", claim, paper, "sparsity curves missing");
  const verdict: Verdict = r.change <= -minDrop && Math.abs(t.change) < minDrop / 2
    ? "reproduced"
    : r.change >= 0
    ? "not reproduced at this scale"
    : "inconclusive";
  return {
    id: "relu-drift",
    claim,
    paper,
    measured: `ReLU overall ${pct(r.first)} → ${pct(r.last)}; top-K (qkv) ${pct(t.first)} → ${
      pct(t.last)
    }`,
    verdict,
    testName: `threshold check: ReLU falls ≥ ${pct(minDrop, 0)}, top-K moves < ${
      pct(minDrop / 2, 0)
    } (no error bars on a drift)`,
  };
}

/**
 * Finding 2: at fixed N the loss rises super-linearly in S. Tested on the excess of gap(0.8)
 * over the linear extrapolation (0.8/0.4)·gap(0.4), pooled over sizes.
 *
 * @param c From `gapConvexity` (null when the grid lacks the sparsities).
 * @returns The finding.
 *
 * @example
 * ```ts
 * import { superLinearFinding } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const c = { lo: 0.4, hi: 0.8, perSize: [], excess: { value: 0.1, se: 0.01 }, gapLo: 0.02, gapHi: 0.12, ratio: 6 };
 * assert.equal(superLinearFinding(c).verdict, "reproduced");
 * ```
 */
export function superLinearFinding(c: Convexity | null): Finding {
  const claim = "Loss rises super-linearly in S at fixed N (A(S) ∝ exp(β/(1−S)))";
  const p = PAPER_SCALING_LAW, a0 = sparsityFactor(p, 0);
  const lawRatio = (sparsityFactor(p, 0.8) - a0) / (sparsityFactor(p, 0.4) - a0);
  const paper = `fitted law: gap(0.8)/gap(0.4) = ${lawRatio.toFixed(1)} (linear would be 2)`;
  if (!c) return missing("super-linear", claim, paper, "no size has both S = 0.4 and 0.8");
  return {
    id: "super-linear",
    claim,
    paper,
    measured:
      `mean gap(${c.lo}) = ${
        formatEstimate({ value: c.gapLo, se: NaN }, 3, true)
      }, gap(${c.hi}) = ${
        formatEstimate({ value: c.gapHi, se: NaN }, 3, true)
      } nats over ${c.perSize.length} size${c.perSize.length === 1 ? "" : "s"}${
        Number.isFinite(c.ratio) ? ` (ratio ${c.ratio.toFixed(1)})` : ""
      }; ` +
      `excess over linear = ${formatEstimate(c.excess, 3, true)} nats`,
    verdict: verdictOf(tTest(c.excess, "above")),
    test: tTest(c.excess, "above"),
    note: "excess = gap(hi) − (hi/lo)·gap(lo), within seed per size, pooled over sizes",
  };
}

/**
 * Finding 3: the gap to dense shrinks as N grows (slope of the mean gap against log10 N < 0).
 *
 * @param t From `gapTrend` (null with fewer than two sizes).
 * @returns The finding.
 *
 * @example
 * ```ts
 * import { gapShrinksFinding, type GapTrend } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const perSize = [1e5, 1e6, 1e7].map((N, i) => ({ N, gap: { value: 0.1 - 0.02 * i, se: 0.005, df: 1 }, seeds: 2, weightSe: 0.005 }));
 * const t: GapTrend = {
 *   perSize, slope: { value: -0.02, se: 0.004, df: 3 }, chi2PerDof: 0.5, unweighted: { value: -0.02, se: 0.001, df: 1 },
 *   seedNoise: { sd: 0.007, df: 3 }, singleSeedSizes: 0, relativePerDecade: -0.25,
 * };
 * assert.equal(gapShrinksFinding(t).verdict, "reproduced"); // t = −5 with 3 df
 * assert.equal(gapShrinksFinding({ ...t, slope: { value: -0.02, se: 0.015, df: 3 } }).verdict, "inconclusive");
 * ```
 */
export function gapShrinksFinding(t: GapTrend | null): Finding {
  const claim = "The gap to dense shrinks as N grows";
  const paper = `fitted law: −${
    pct(1 - 10 ** -PAPER_SCALING_LAW.alpha, 0)
  } per 10× N (α = ${PAPER_SCALING_LAW.alpha})`;
  if (!t) return missing("gap-vs-N", claim, paper, "fewer than two sizes with a dense twin");
  const span = t.perSize.length ? t.perSize[t.perSize.length - 1]!.N / t.perSize[0]!.N : NaN;
  const test = tTest(t.slope, "below");
  const chi = Number.isFinite(t.chi2PerDof)
    ? `; χ²/dof ${t.chi2PerDof.toFixed(1)}${
      t.chi2PerDof > 1 ? " (error inflated by its root)" : ""
    }`
    : "";
  const single = t.singleSeedSizes
    ? `; ${t.singleSeedSizes} single-seed size${t.singleSeedSizes > 1 ? "s" : ""} (flagged)`
    : "";
  return {
    id: "gap-vs-N",
    claim,
    paper,
    measured:
      `weighted slope ${formatEstimate(t.slope, 4, true)} nats per 10× N, 95% CI ${
        ciText(t.slope, 4)
      }` +
      (Number.isFinite(t.relativePerDecade)
        ? ` (${t.relativePerDecade >= 0 ? "+" : ""}${pct(t.relativePerDecade, 0)} of the mean gap)`
        : " (mean gap ≤ 0)") +
      `${chi}; unweighted ${formatEstimate(t.unweighted, 4, true)}; ${t.perSize.length} sizes ` +
      `spanning ${span.toFixed(0)}×${single}`,
    verdict: verdictOf(test),
    test,
    note: "gap averaged over S ≥ 0.4 per size, within seed; weights from the seed noise pooled " +
      "over sizes; the paper's effect is weak (~21%/10×)",
  };
}

/**
 * Finding 4: at equal activated parameters, sparse beats dense. Pools the advantage
 * `dense(N_a) − sparse` over the given rows (e.g. S ∈ [0.4, 0.6], around S*).
 *
 * @param rows From `equalNaComparison`.
 * @param opts Id, claim and paper text for another setting (e.g. 1.58-bit).
 * @returns The finding.
 *
 * @example
 * ```ts
 * import { equalNaFinding, type EqualNaRow } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const row = { S: 0.5, advantage: { value: 0.05, se: 0.01 }, group: { singleSeed: false } } as unknown as EqualNaRow;
 * assert.equal(equalNaFinding([row]).verdict, "reproduced");
 * ```
 */
export function equalNaFinding(
  rows: readonly EqualNaRow[],
  opts: { id?: string; claim?: string; paper?: string } = {},
): Finding {
  const claim = opts.claim ?? "At equal activated parameters N_a, sparse beats dense";
  const Na = 3e8, S = PAPER_S_STAR.fp;
  const lawAdv = scalingLaw(PAPER_SCALING_LAW, Na, 0) -
    scalingLaw(PAPER_SCALING_LAW, Na / (1 - S), S);
  const paper = opts.paper ??
    `S* = 45.58% at N = 1.84·N_a; law: dense − sparse = +${lawAdv.toFixed(3)} nats at N_a = 300M`;
  const id = opts.id ?? "equal-Na";
  if (!rows.length) return missing(id, claim, paper, "no sparse run falls inside the dense sizes");
  // Rows of one size share their dense anchors and their seeds, so they are not independent: the
  // unit of the test is the size. Average each size's rows, then test the mean over sizes with
  // the larger of the propagated error and the sizes' spread (df = sizes − 1).
  const bySize = new Map<number, EqualNaRow[]>();
  for (const r of rows) bySize.set(r.N, [...(bySize.get(r.N) ?? []), r]);
  const perSize = [...bySize.values()].map((rs) => pooled(rs.map((r) => r.advantage))!);
  const p = pooledWithSpread(perSize)!;
  const ss = [...new Set(rows.map((r) => r.S))].sort((a, b) => a - b).map((s) => pct(s, 0));
  const test = tTest(p, "above");
  // A dense anchor worse than a smaller dense size inflates the advantage of the rows it anchors.
  const denseGroups = [...new Set(rows.flatMap((r) => r.anchors ?? []))].sort((a, b) => a.N - b.N);
  const inverted = denseGroups.filter((d, i) =>
    denseGroups.slice(0, i).some((e) => e.loss.mean < d.loss.mean)
  );
  const clean = rows.filter((r) => !(r.anchors ?? []).some((d) => inverted.includes(d)));
  const cleanSizes = new Map<number, EqualNaRow[]>();
  for (const r of clean) cleanSizes.set(r.N, [...(cleanSizes.get(r.N) ?? []), r]);
  const pClean = inverted.length && cleanSizes.size
    ? pooledWithSpread([...cleanSizes.values()].map((rs) => pooled(rs.map((r) => r.advantage))!))
    : null;
  const single = new Set(rows.filter((r) => r.group?.singleSeed).map((r) => r.group.key)).size;
  return {
    id,
    claim,
    paper,
    measured:
      `dense(N_a) − sparse = ${
        formatEstimate(p, 3, true)
      } nats (mean over ${bySize.size} sizes of ${rows.length} groups, S ∈ {${ss.join(", ")}}${
        single ? `, ${single} single-seed` : ""
      })` +
      (pClean
        ? `; without the rows anchored on ${inverted.map((d) => paramLabelOf(d.N)).join(", ")}: ${
          formatEstimate(pClean, 3, true)
        } over ${cleanSizes.size} sizes`
        : ""),
    verdict: verdictOf(test),
    test,
    note: "dense loss interpolated in log N at the sparse run's nominal N_a = N(1 − S); the " +
      "test's unit is the size (rows of a size share anchors and seeds)" +
      (inverted.length
        ? `; dense ${inverted.map((d) => paramLabelOf(d.N)).join(", ")} is worse than a ` +
          "smaller dense size, which inflates the advantage of the rows it anchors"
        : ""),
  };
}

/**
 * Finding 5: the inference-optimal sparsity S* from the fitted law, against the paper's.
 * Reproduced when the point estimate is in `range` and its bootstrap interval is no wider than
 * `maxWidth`; not reproduced when the interval misses the range.
 *
 * @param fit From `fitSweep`.
 * @param opts `label` ("full precision"), the paper's S*, the range a small study should
 *   show (default 35–60%, docs/paper-notes.md §9), and `maxWidth` (default 0.3).
 * @returns The finding.
 *
 * @example A failed fit is inconclusive, with the reason
 * ```ts
 * import { sStarFinding } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const f = sStarFinding({ ok: false, reason: "too few points", points: [] });
 * assert.equal(f.verdict, "inconclusive");
 * assert.match(f.measured, /too few points/);
 * ```
 */
export function sStarFinding(
  fit: SweepFit,
  opts: { label?: string; paper?: number; range?: [number, number]; maxWidth?: number } = {},
): Finding {
  const label = opts.label ?? "full precision", paperS = opts.paper ?? PAPER_S_STAR.fp;
  const range = opts.range ?? [0.35, 0.6], maxWidth = opts.maxWidth ?? 0.3;
  const id = `s-star-${label.replace(/[^a-z0-9.]+/gi, "-").toLowerCase()}`;
  const claim = `An inference-optimal sparsity S* exists (${label}), in about ${pct(range[0], 0)}–${
    pct(range[1], 0)
  } at small scale`;
  const paper = `S* = ${pct(paperS, 2)}`;
  if (!fit.ok) {
    return {
      ...missing(id, claim, paper, `no fit: ${fit.reason}`),
      testName: "none: no fit, so no interval of S*",
    };
  }
  const f = fit.fit, prof = fit.profile;
  const boot = f.ci ? f.ci.sStar : null;
  const interval = prof ? prof.intervals.sStar : null;
  const ci: [number, number] | null = interval ? [interval.lo, interval.hi] : boot;
  const point = interval ? interval.estimate : f.sStar;
  // S* is a ratio of the law's constants: when the data do not bound C, α or β, the law is not
  // identified and neither is S*, whatever its interval says.
  const unbounded = prof
    ? (["C", "alpha", "beta"] as const).filter((k) =>
      prof.intervals[k].lowerOpen || prof.intervals[k].upperOpen
    ).map((k) => (k === "alpha" ? "α" : k === "beta" ? "β" : k))
    : [];
  const verdict = ci && !unbounded.length
    ? verdictInterval(point, ci, range, maxWidth)
    : "inconclusive";
  const open = interval && (interval.lowerOpen || interval.upperOpen) ? " (open: not bounded)" : "";
  return {
    id,
    claim,
    paper,
    measured:
      `S* = ${pct(f.sStar)} (Huber fit${
        boot ? `, bootstrap ${100 * f.ci!.level}% ${pct(boot[0])}–${pct(boot[1])}` : ""
      })` +
      (interval
        ? `; least squares ${pct(interval.estimate)}, ${100 * prof!.level}% profile interval ${
          pct(interval.lo)
        }–${pct(interval.hi)}${open}`
        : "") +
      `; α = ${f.alpha.toPrecision(2)}, β = ${f.beta.toPrecision(2)}; S = ${fit.sparsity}`,
    verdict,
    testName: `${interval ? "profile-likelihood" : "bootstrap"} ${
      100 * (prof?.level ?? f.ci?.level ?? 0.95)
    }% interval of S* inside ${pct(range[0], 0)}–${pct(range[1], 0)} and ≤ ${
      pct(maxWidth, 0)
    } wide, with C, α and β bounded${
      unbounded.length ? ` (not met: ${unbounded.join(", ")} unbounded)` : ""
    }`,
    ...(fit.warnings.length ? { note: fit.warnings.join("; ") } : {}),
  };
}

/**
 * Finding 5b: S* of BitNet b1.58 exceeds S* of full precision. The difference's standard error
 * comes from the two bootstrap intervals (half-width / 1.96 each, in quadrature).
 *
 * @param fp Fit of the full-precision grid.
 * @param bitnet Fit of the 1.58-bit grid.
 * @returns The finding.
 *
 * @example
 * ```ts
 * import { sStarOrderFinding } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const f = sStarOrderFinding({ ok: false, reason: "x", points: [] }, { ok: false, reason: "y", points: [] });
 * assert.equal(f.verdict, "inconclusive");
 * ```
 */
export function sStarOrderFinding(fp: SweepFit, bitnet: SweepFit): Finding {
  const claim = "S*(1.58-bit) > S*(full precision)";
  const paper = `${pct(PAPER_S_STAR.bitnet, 2)} > ${pct(PAPER_S_STAR.fp, 2)}`;
  if (!fp.ok || !bitnet.ok) {
    return missing(
      "s-star-order",
      claim,
      paper,
      `no fit: ${
        [fp, bitnet].filter((f) => !f.ok).map((f) => (f as { reason: string }).reason).join("; ")
      }`,
    );
  }
  // The difference's error from each fit's S* interval (profile when present, else bootstrap).
  const se = (f: SweepFit): number => {
    if (!f.ok) return NaN;
    const i = f.profile?.intervals.sStar;
    if (i) return i.lowerOpen || i.upperOpen ? NaN : (i.hi - i.lo) / (2 * 1.96);
    return f.fit.ci ? (f.fit.ci.sStar[1] - f.fit.ci.sStar[0]) / (2 * 1.96) : NaN;
  };
  const d: Estimate = {
    value: bitnet.fit.sStar - fp.fit.sStar,
    se: Math.hypot(se(fp), se(bitnet)),
  };
  return {
    id: "s-star-order",
    claim,
    paper,
    measured:
      `S*(1.58) − S*(FP) = ${
        formatEstimate({ value: 100 * d.value, se: 100 * d.se }, 1, true)
      } points ` +
      `(${pct(bitnet.fit.sStar)} vs ${pct(fp.fit.sStar)})`,
    verdict: verdictOf(tTest(d, "above")),
    test: tTest(d, "above"),
    note: "the difference's error from the two S* intervals (half-width / 1.96 each; an " +
      "open interval leaves it unknown)",
  };
}

/**
 * Finding 6: Block Q-Sparse 16:32 tracks unstructured top-K at S = 0.5: their loss difference
 * lies within ±`tol` nats (pooled over sizes).
 *
 * @param groups The block study's groups (`variant` `topk` and `block16:32`, tag `size`).
 * @param tol Equivalence margin in nats; default 0.02.
 * @returns The finding.
 *
 * @example
 * ```ts
 * import { blockFinding, type RunGroup } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const g = (variant: string, mean: number) => ({ tags: { size: "xs", variant }, records: [], loss: { mean, se: 0.002, n: 2 } }) as unknown as RunGroup;
 * assert.equal(blockFinding([g("topk", 2.0), g("block16:32", 2.004)]).verdict, "reproduced");
 * ```
 */
export function blockFinding(groups: readonly RunGroup[], tol = 0.02): Finding {
  const claim = "Block Q-Sparse 16:32 tracks unstructured top-K at 50%";
  const paper = "loss curves nearly overlap at 300M and 700M (Fig. 7)";
  const diffs: Estimate[] = [];
  for (const b of groups.filter((g) => g.tags.variant === "block16:32")) {
    const t = groups.find((g) => g.tags.variant === "topk" && g.tags.size === b.tags.size);
    if (t) diffs.push(lossDifference(b, t));
  }
  const p = pooled(diffs);
  if (!p) return missing("block", claim, paper, "no size has both arms");
  return comparisonFinding({
    id: "block",
    claim,
    paper,
    label: `loss(16:32) − loss(top-K), ${diffs.length} size${diffs.length > 1 ? "s" : ""}`,
    estimate: p,
    expect: "within",
    threshold: tol,
  });
}

/**
 * Finding 7: with top-K 70% kept at every site (S = 0.3), the ReLU² down-projection input is
 * much sparser (the paper's numbers imply ~75%; BitNet a4.8 reports 80–85%) and the overall
 * sparsity is about 40%.
 *
 * @param at From `sparsityAt(groups, 0.3)` (interpolated when 0.3 is not on the grid).
 * @param ranges Accepted ranges; default down 60–90%, overall 35–45%.
 * @returns The finding.
 *
 * @example
 * ```ts
 * import { componentSparsityFinding } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const at = { S: 0.3, overall: 0.41, perSite: { down: 0.74 }, from: [0.2, 0.4] as [number, number] };
 * assert.equal(componentSparsityFinding(at).verdict, "reproduced");
 * ```
 */
export function componentSparsityFinding(
  at: SparsityAt | null,
  ranges: { down?: [number, number]; overall?: [number, number] } = {},
): Finding {
  const claim = "Top-K 70% everywhere: ReLU² down-proj input much sparser, ~40% overall";
  const paper = "down ≈ 75% (implied), overall 40% (Fig. 5–6); BitNet a4.8: down 80–85%";
  if (!at) return missing("components", claim, paper, "no runs around S = 0.3");
  const down = ranges.down ?? [0.6, 0.9], overall = ranges.overall ?? [0.35, 0.45];
  const d = at.perSite.down ?? NaN;
  const ok = (x: number, r: [number, number]) => x >= r[0] && x <= r[1];
  const interp = at.from[0] === at.from[1]
    ? ""
    : ` (interpolated between S = ${at.from[0]} and ${at.from[1]})`;
  return {
    id: "components",
    claim,
    paper,
    measured: `down ${pct(d)}, overall ${pct(at.overall)} at S = ${at.S}${interp}`,
    verdict: ok(d, down) && ok(at.overall, overall) ? "reproduced" : "not reproduced at this scale",
    testName: "range check of measured sparsities (no sampling error to test)",
    note: `accepted: down ${pct(down[0], 0)}–${pct(down[1], 0)}, overall ${pct(overall[0], 0)}–${
      pct(overall[1], 0)
    }; measured on the validation set`,
  };
}

/**
 * Finding 8: at about 40% overall sparsity the loss is close to dense at the same N and D. Takes
 * the largest size's sparse run whose measured overall sparsity is nearest 40% and tests
 * `gap / loss(dense) < tol` (default 2%; the paper's law predicts +0.04–0.06 nats, ~1.5%).
 *
 * @param gaps From `gapsToDense`.
 * @param opts Target overall sparsity (0.4) and relative tolerance (0.02).
 * @returns The finding.
 *
 * @example
 * ```ts
 * import { type DenseGap, nearDenseFinding } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const gap = { N: 1e6, S: 0.3, gap: 0.01, se: 0.004, relative: 0.005, dense: { loss: { mean: 2 } }, group: { sparsity: { mean: 0.41 } } } as unknown as DenseGap;
 * assert.equal(nearDenseFinding([gap]).verdict, "reproduced");
 * ```
 */
export function nearDenseFinding(
  gaps: readonly DenseGap[],
  opts: { target?: number; tol?: number } = {},
): Finding {
  const target = opts.target ?? 0.4, tol = opts.tol ?? 0.02;
  const claim = `At ~${pct(target, 0)} overall sparsity, loss is close to dense (same N, D)`;
  const paper = "'matches' dense at 700M and 7B (Fig. 5); law: +0.04–0.06 nats (~1.5%)";
  const measured = gaps.filter((g) => g.group.sparsity);
  if (!measured.length) return missing("near-dense", claim, paper, "no sparse runs measured");
  const nMax = Math.max(...measured.map((g) => g.N));
  const best = measured.filter((g) => g.N === nMax).reduce((a, b) =>
    Math.abs(b.group.sparsity!.mean - target) < Math.abs(a.group.sparsity!.mean - target) ? b : a
  );
  const dense = best.dense.loss.mean;
  const rel: Estimate = { value: best.gap / dense, se: best.se / dense, df: best.df };
  return {
    id: "near-dense",
    claim,
    paper,
    measured: `largest size, S = ${best.S} (overall ${pct(best.group.sparsity!.mean)}): gap ${
      formatEstimate({ value: best.gap, se: best.se, df: best.df }, 3, true)
    } nats = ${formatEstimate({ value: 100 * rel.value, se: 100 * rel.se }, 2, true)}% of dense`,
    verdict: verdictOf(tTest({ ...rel, df: best.df }, "below", tol)),
    test: tTest({ ...rel, df: best.df }, "below", tol),
    note: `close = gap below ${pct(tol, 0)} of the dense loss` +
      (best.group.singleSeed ? "; single-seed cell (pooled seed noise)" : ""),
  };
}

function escapeCell(s: string): string {
  return s.replace(/\|/g, "\\|").replace(/\n/g, " ");
}

/**
 * A markdown table from a header and rows (cells escaped for `|`).
 *
 * @param header Column titles.
 * @param rows Cells (anything; written with `String`).
 * @returns Markdown.
 *
 * @example
 * ```ts
 * import { markdownTable } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.equal(markdownTable(["a", "b"], [[1, "x|y"]]), "| a | b |\n| --- | --- |\n| 1 | x\\|y |");
 * ```
 */
export function markdownTable(
  header: readonly string[],
  rows: readonly (readonly unknown[])[],
): string {
  const line = (cells: readonly unknown[]) =>
    `| ${cells.map((c) => escapeCell(String(c))).join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

const BADGE: Record<Verdict, string> = {
  "reproduced": "✅ reproduced",
  "not reproduced at this scale": "❌ not reproduced at this scale",
  "inconclusive": "➖ inconclusive",
};

/** What a smoke run's table prints instead of a verdict. */
export const SMOKE_VERDICT = "smoke run — not evidence";

function pText(name: string, p: number): string {
  return p < 1e-4 ? `${name} < 0.0001` : `${name} = ${p.toFixed(p < 0.01 ? 4 : 3)}`;
}

/**
 * A finding's test in words: the test, its statistic and p-value (and the Holm-adjusted one), or
 * the descriptive check it rests on.
 *
 * @param f The finding.
 * @returns E.g. `one-sided t-test of < 0 (df 4): t = 1.37, p = 0.12; Holm p = 0.36`.
 *
 * @example
 * ```ts
 * import { testText } from "@qsparse/kit/studies";
 * import { tTest } from "./stats.ts";
 * import assert from "node:assert/strict";
 * const test = tTest({ value: 0.03, se: 0.01, df: 4 }, "above");
 * assert.match(testText({ id: "x", claim: "", paper: "", measured: "", verdict: "reproduced", test }), /t = 3\.00, p = 0\.02/);
 * ```
 */
export function testText(f: Finding): string {
  if (!f.test) return f.testName ?? "—";
  const t = f.test;
  if (!Number.isFinite(t.p)) return `${t.name}: no error estimate`;
  const holmText = t.pAdjusted !== undefined ? `; ${pText("Holm p", t.pAdjusted)}` : "";
  return `${t.name}: t = ${t.t.toFixed(2)}, ${pText("p", t.p)}${holmText} (α = ${t.level})`;
}

/** Options of {@link findingsMarkdown}. */
export interface FindingsMarkdownOptions {
  /** `"smoke"` replaces every verdict by {@link SMOKE_VERDICT}; default `"full"`. */
  profile?: "smoke" | "full";
}

/**
 * The findings as a markdown table (claim, paper, measured, test, verdict, note), for notebooks
 * and the README. In the smoke profile the verdict column says "smoke run — not evidence".
 *
 * @param findings The findings (apply {@link holmFindings} first for the notebook's summary).
 * @param opts The profile.
 * @returns Markdown.
 *
 * @example
 * ```ts
 * import { findingsMarkdown } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const f = { id: "x", claim: "c", paper: "p", measured: "m", verdict: "inconclusive" as const };
 * assert.match(findingsMarkdown([f]), /\| c \| p \| m \| — \| ➖ inconclusive \|/);
 * assert.match(findingsMarkdown([f], { profile: "smoke" }), /smoke run — not evidence/);
 * assert.doesNotMatch(findingsMarkdown([f], { profile: "smoke" }), /➖|✅|❌/);
 * ```
 */
export function findingsMarkdown(
  findings: readonly Finding[],
  opts: FindingsMarkdownOptions = {},
): string {
  const smoke = opts.profile === "smoke";
  return markdownTable(
    ["Finding", "Paper", "Measured here", "Test", "Verdict", "Note"],
    findings.map((f) => [
      f.claim,
      f.paper,
      f.measured,
      testText(f),
      smoke ? SMOKE_VERDICT : BADGE[f.verdict],
      f.note ?? "",
    ]),
  );
}

/**
 * A fitted law as a markdown table (constant, fit, interval, paper) with the fit's diagnostics
 * and warnings, or the reason there is no fit. B and C depend on the unit of N (the paper's is
 * 1e8 parameters, ours 1e6), so only E, α, β and S* are set beside the paper's.
 *
 * @param fit From `fitSweep`.
 * @param paperSStar The paper's S* for this precision; default full precision's 45.58%.
 * @returns Markdown.
 *
 * @example
 * ```ts
 * import { fitMarkdown } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.match(fitMarkdown({ ok: false, reason: "need ≥ 6 points", points: [] }), /No fit/);
 * ```
 */
export function fitMarkdown(fit: SweepFit, paperSStar: number = PAPER_S_STAR.fp): string {
  if (!fit.ok) return `**No fit** on ${fit.points.length} runs: ${fit.reason}.`;
  const f = fit.fit, p = PAPER_SCALING_LAW, prof = fit.profile;
  type K = "E" | "B" | "C" | "alpha" | "beta" | "sStar";
  const ci = (k: K, fmt: (x: number) => string) =>
    f.ci ? `${fmt(f.ci[k][0])} – ${fmt(f.ci[k][1])}` : "—";
  const profCi = (k: K, fmt: (x: number) => string) => {
    const i = prof?.intervals[k];
    if (!i) return "—";
    return `${i.lowerOpen ? "≤ " : ""}${fmt(i.lo)} – ${fmt(i.hi)}${i.upperOpen ? " (open)" : ""}${
      i.lowerOpen ? " (open)" : ""
    }`;
  };
  const ls = (k: K, fmt: (x: number) => string) => {
    const i = prof?.intervals[k];
    return i ? fmt(i.estimate) : "—";
  };
  const g = (x: number) => x.toPrecision(3);
  const row = (name: string, k: K, fmt: (x: number) => string, paper: string | number) => [
    name,
    fmt(k === "sStar" ? f.sStar : f[k]),
    ci(k, fmt),
    ls(k, fmt),
    profCi(k, fmt),
    paper,
  ];
  const rows: (string | number)[][] = [
    row("E", "E", g, p.E),
    row("B", "B", g, "(unit of N differs)"),
    row("C", "C", g, "(unit of N differs)"),
    row("α", "alpha", g, p.alpha),
    row("β", "beta", g, p.beta),
    row("S*", "sStar", (x) => pct(x), pct(paperSStar, 2)),
  ];
  const level = f.ci ? `${100 * f.ci.level}% bootstrap (${f.ci.samples} refits)` : "bootstrap";
  const profLevel = prof ? `${100 * prof.level}% profile interval` : "profile interval";
  const lines = [
    markdownTable(["constant", "Huber fit", level, "least squares", profLevel, "paper"], rows),
    "",
    `${fit.points.length} runs; RMSE of log-loss residuals ${f.rmse.toExponential(2)}; ` +
    `N in units of ${f.nScale.toExponential(0)} non-embedding parameters; S = ${
      fit.sparsity === "measured"
        ? "measured overall sparsity (counts ReLU²'s zeros)"
        : "nominal top-K sparsity"
    }.` +
    (prof
      ? ` Profile intervals: fix one quantity, refit the rest by least squares on log loss, keep ` +
        `ΔSSE ≤ F(1, ${prof.dfResidual}; ${prof.level})·SSE/${prof.dfResidual}; "open" = not ` +
        `bounded within the search range.`
      : ""),
  ];
  if (fit.warnings.length) lines.push("", `**Caveats:** ${fit.warnings.join("; ")}.`);
  return lines.join("\n");
}
