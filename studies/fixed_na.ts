/**
 * The law-free test of the inference-optimal sparsity: at fixed activated parameters N_a, models
 * of N = N_a / (1 − S) parameters trained on equal tokens (the `fixed_na` study). The paper's law
 * puts the best of them at an interior S* (≈ 45% for full precision); if the loss instead falls
 * (or rises) all the way to an end of the S range, there is no interior optimum at this scale.
 *
 * **The test.** For every interior S, two within-seed contrasts: loss(S) − loss(lowest S) and
 * loss(S) − loss(highest S), each tested one-sided (< 0) with a t-test on its seed-level standard
 * error (paired over seeds when the arms share seeds, Welch otherwise). An interior S "beats both
 * ends" when both tests pass (an intersection–union test: no correction needed for the "and").
 * Since the interior S are several and the best one is chosen after looking, the claim "some
 * interior S beats both ends" uses Holm's adjustment across the interior candidates (the claim
 * holds when the smallest adjusted p is at most the level). The interior S with the lowest mean
 * loss is reported with its own contrasts.
 *
 * @module
 */
import { ValueError } from "../src/core/errors.ts";
import type { RunRecord } from "../src/train/runner.ts";
import { contrast, type Estimate, groupRuns, type RunGroup } from "./report.ts";
import { holm, type TTest, tTest } from "./stats.ts";

/** One interior sparsity against both ends. */
export interface InteriorCandidate {
  /** Its nominal sparsity. */
  S: number;
  /** Its mean loss over seeds. */
  loss: number;
  /** loss(S) − loss(lowest S), with its seed-level error. */
  vsLow: Estimate & { paired: boolean };
  /** loss(S) − loss(highest S). */
  vsHigh: Estimate & { paired: boolean };
  /** One-sided t-test of vsLow < 0. */
  testLow: TTest;
  /** One-sided t-test of vsHigh < 0. */
  testHigh: TTest;
  /** Intersection–union p-value: the larger of the two. */
  p: number;
  /** `p` Holm-adjusted across the interior candidates. */
  pAdjusted: number;
}

/** The answer of {@link interiorOptimum}. */
export interface InteriorOptimum {
  /** Activated parameters the arms share (the `Na` tag, else the mean measured N_a of S = 0). */
  Na: number;
  /** Per arm (sorted by S): S, N, mean loss and its seed-level error, seeds. */
  arms: { S: number; N: number; loss: number; se: number; df: number; seeds: number }[];
  /** Every interior S against both ends. */
  candidates: InteriorCandidate[];
  /** The interior S with the lowest mean loss (null with fewer than three arms). */
  best: InteriorCandidate | null;
  /** The arm with the lowest mean loss, interior or not. */
  argmin: number;
  /**
   * `interior optimum`: some interior S beats both ends (Holm-adjusted p ≤ level);
   * `no interior optimum`: an end beats every interior S (each one's contrast against that end
   * is significantly > 0 after Holm); `inconclusive` otherwise.
   */
  verdict: "interior optimum" | "no interior optimum" | "inconclusive";
  /** The significance level. */
  level: number;
  /** One sentence: the verdict with its numbers. */
  summary: string;
}

/**
 * Is there an interior optimum in the fixed-N_a study? See the module doc for the test.
 *
 * @param records Results of the `fixed_na` study (tags `S` and `seed`; other tags such as
 *   `size`, `N` and `lr` differ between arms and are ignored for grouping).
 * @param level One-sided significance level; default 0.05.
 * @returns Arms, candidates, the verdict.
 * @throws {ValueError} With fewer than three sparsities (no interior) or a run without an S tag.
 *
 * @example A U-shaped loss over three seeds
 * ```ts
 * import type { RunRecord } from "@qsparse/kit/train";
 * import { interiorOptimum } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const loss: Record<number, number> = { 0: 2.30, 0.3: 2.25, 0.45: 2.24, 0.6: 2.26, 0.75: 2.31 };
 * const records = [1, 2, 3].flatMap((seed) =>
 *   Object.entries(loss).map(([S, l]) => ({
 *     tags: { S: Number(S), seed, Na: 332448 },
 *     valLoss: l + [0.004, -0.003, 0.001][seed - 1]! + 0.001 * Number(S) * seed,
 *     valStderr: 0.006, N: 332448 / (1 - Number(S)), Na: 332448, sparsity: null,
 *   }) as unknown as RunRecord)
 * );
 * const r = interiorOptimum(records);
 * assert.equal(r.verdict, "interior optimum");
 * assert.equal(r.best!.S, 0.45);
 * ```
 */
export function interiorOptimum(records: readonly RunRecord[], level = 0.05): InteriorOptimum {
  for (const r of records) {
    if (typeof r.tags.S !== "number") {
      throw new ValueError("interiorOptimum", `run ${r.id} has no numeric S tag`);
    }
  }
  // Group by S alone: the arms differ in size, N and LR by design.
  const keep = new Set(["S", "seed"]);
  const ignore = [...new Set(records.flatMap((r) => Object.keys(r.tags)))].filter((k) =>
    !keep.has(k)
  );
  const groups = groupRuns(records, { ignore: [...ignore, "seed"] })
    .sort((a, b) => (a.tags.S as number) - (b.tags.S as number));
  if (groups.length < 3) {
    throw new ValueError(
      "interiorOptimum",
      `need at least three sparsities for an interior, got ${groups.length}`,
    );
  }
  const S = (g: RunGroup) => g.tags.S as number;
  const low = groups[0]!, high = groups[groups.length - 1]!;
  const diff = (a: RunGroup, b: RunGroup) => {
    const c = contrast([{ group: a, coef: 1 }, { group: b, coef: -1 }]);
    return { value: c.value, se: c.se, df: c.df, paired: c.paired };
  };
  const raw = groups.slice(1, -1).map((g) => {
    const vsLow = diff(g, low), vsHigh = diff(g, high);
    const testLow = tTest(vsLow, "below", 0, level), testHigh = tTest(vsHigh, "below", 0, level);
    return { S: S(g), loss: g.loss.mean, vsLow, vsHigh, testLow, testHigh };
  });
  // A contrast that could not be tested (zero or unknown error) counts as p = 1: it still takes
  // its place among the candidates Holm corrects for, instead of shrinking the family.
  const p = raw.map((c) => {
    const worst = Math.max(c.testLow.p, c.testHigh.p);
    return Number.isFinite(worst) ? worst : 1;
  });
  const adj = holm(p);
  const candidates: InteriorCandidate[] = raw.map((c, i) => ({
    ...c,
    p: p[i]!,
    pAdjusted: adj[i]!,
  }));
  const best = candidates.length ? candidates.reduce((a, b) => (b.loss < a.loss ? b : a)) : null;
  // The contrary: one end beats every interior S. For each end, every interior's contrast
  // against it must be significantly positive (Holm across the interior S, the largest
  // adjusted p decides).
  const endWins = (pick: (c: InteriorCandidate) => TTest): boolean => {
    const pc = holm(candidates.map((c) => pick(c).pContrary));
    return pc.length > 0 && pc.every((x) => Number.isFinite(x) && x <= level);
  };
  const minAdj = Math.min(...candidates.map((c) => c.pAdjusted).filter(Number.isFinite));
  const verdict: InteriorOptimum["verdict"] = minAdj <= level
    ? "interior optimum"
    : endWins((c) => c.testLow) || endWins((c) => c.testHigh)
    ? "no interior optimum"
    : "inconclusive";
  const arms = groups.map((g) => ({
    S: S(g),
    N: g.N,
    loss: g.loss.mean,
    se: g.loss.se,
    df: g.loss.df,
    seeds: g.records.length,
  }));
  const argmin = arms.reduce((a, b) => (b.loss < a.loss ? b : a)).S;
  const naTag = records.find((r) => typeof r.tags.Na === "number")?.tags.Na as number | undefined;
  const f = (e: Estimate) => `${e.value >= 0 ? "+" : ""}${e.value.toFixed(4)} ± ${e.se.toFixed(4)}`;
  const summary = best
    ? `${verdict}: best interior S = ${best.S} (loss ${best.loss.toFixed(4)}), ` +
      `vs S = ${S(low)}: ${f(best.vsLow)} (p ${best.testLow.p.toPrecision(2)}), ` +
      `vs S = ${S(high)}: ${f(best.vsHigh)} (p ${best.testHigh.p.toPrecision(2)}); ` +
      `smallest Holm-adjusted p over ${candidates.length} interior S: ${minAdj.toPrecision(2)} ` +
      `(level ${level}); lowest mean loss at S = ${argmin}`
    : `${verdict}: no interior sparsity`;
  return {
    Na: naTag ?? low.Na,
    arms,
    candidates,
    best,
    argmin,
    verdict,
    level,
    summary,
  };
}
