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
import { Figure } from "../src/plot/figure.ts";
import type { RunRecord } from "../src/train/runner.ts";
import { type Finding, formatEstimate, markdownTable, verdictOf } from "./findings.ts";
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

/** The fixed-N_a answer a notebook shows: the test, and its verdict only when the runs earn one. */
export interface FixedNaAnswer {
  /** What {@link interiorOptimum} says on the runs there are (null: fewer than three arms). */
  result: InteriorOptimum | null;
  /** The finding: a verdict only when every planned arm has its seeds, else "not enough runs". */
  finding: Finding;
  /** Whether the runs earned the test (every planned arm with its seeds). */
  tested: boolean;
}

/** Options of {@link fixedNaFinding}. */
export interface FixedNaFindingOptions {
  /** Seeds every arm needs before a verdict; default 2 (a seed-level error needs two). */
  minSeeds?: number;
  /** One-sided significance level; default 0.05. */
  level?: number;
}

/**
 * The intersection–union test behind a verdict of {@link interiorOptimum} as one `TTest`, so a
 * notebook's Holm correction can take it in: `p` is the claim's Holm-adjusted p over the
 * interior candidates (the smallest), `pContrary` that of the contrary "an end beats every
 * interior S" (the larger end's adjusted p, the better end taken), `t` and `df` those of the
 * weaker of the two contrasts of the candidate that decides.
 */
function interiorTest(r: InteriorOptimum): TTest {
  const decider = r.candidates.reduce((a, b) => (b.pAdjusted < a.pAdjusted ? b : a));
  const weaker = decider.testLow.p >= decider.testHigh.p ? decider.testLow : decider.testHigh;
  const endP = (pick: (c: InteriorCandidate) => TTest) => {
    const adj = holm(r.candidates.map((c) => pick(c).pContrary));
    const worst = Math.max(...adj);
    return Number.isFinite(worst) ? worst : 1;
  };
  const low = r.arms[0]!.S, high = r.arms[r.arms.length - 1]!.S;
  return {
    name: `intersection–union of one-sided t-tests loss(S) < loss(S = ${low}) and < loss(S = ` +
      `${high}) (seed-level errors, df ${
        Number.isFinite(weaker.df) ? Number(weaker.df.toFixed(1)) : "∞"
      }), Holm over ${r.candidates.length} interior S, deciding S = ${decider.S}`,
    t: weaker.t,
    df: weaker.df,
    p: Number.isFinite(decider.pAdjusted) ? decider.pAdjusted : 1,
    pContrary: Math.min(endP((c) => c.testLow), endP((c) => c.testHigh)),
    level: r.level,
  };
}

/**
 * The fixed-N_a finding: is there an interior optimum at fixed activated parameters (the
 * law-free test of S*, see the module doc)? A verdict needs every planned arm with at least
 * `minSeeds` seeds: a missing end would make an interior S an end, and one seed leaves only the
 * evaluation error, which omits the seed-to-seed noise. Short of that the finding says "not
 * enough runs" with the seeds per arm, and, once three arms exist, which arm has the lowest
 * mean loss (descriptive, untested). With the runs, the verdict is that of
 * {@link interiorOptimum}: `interior optimum` → reproduced, `no interior optimum` → not
 * reproduced at this scale, else inconclusive; its test (intersection–union, Holm over the
 * interior S) is attached so a notebook's own Holm correction can include it.
 *
 * @param records Results of the `fixed_na` study.
 * @param planned The grid's activated parameters and sparsities (`V2_PROFILES.full.fixedNa`).
 * @param opts Seeds needed, level.
 * @returns The test's answer (when three arms exist) and the finding.
 *
 * @example Two of five arms done: not enough runs
 * ```ts
 * import type { RunRecord } from "@qsparse/kit/train";
 * import { fixedNaFinding, V2_PROFILES } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const run = (S: number, seed: number) =>
 *   ({ tags: { S, seed }, valLoss: 2.3, valStderr: 0.006, N: 332448 / (1 - S), Na: 332448, sparsity: null }) as unknown as RunRecord;
 * const a = fixedNaFinding([run(0, 1), run(0, 2), run(0.3, 1)], V2_PROFILES.full.fixedNa);
 * assert.equal(a.result, null);
 * assert.equal(a.finding.verdict, "inconclusive");
 * assert.match(a.finding.measured, /not enough runs: seeds per arm S = 0: 2, 0.3: 1, 0.45: 0/);
 * ```
 */
export function fixedNaFinding(
  records: readonly RunRecord[],
  planned: { Na: number; sparsities: readonly number[] },
  opts: FixedNaFindingOptions = {},
): FixedNaAnswer {
  const minSeeds = opts.minSeeds ?? 2, level = opts.level ?? 0.05;
  const claim = "At fixed activated parameters N_a, an interior sparsity beats both ends " +
    "(law-free test of S*)";
  const paper = "law: S* = 45.58% (full precision), interior; N = 1.84·N_a";
  const seedsAt = (S: number) =>
    new Set(
      records.filter((r) => Math.abs((r.tags.S as number) - S) < 1e-9).map((r) => r.tags.seed),
    ).size;
  const arms = new Set(records.map((r) => r.tags.S as number));
  const result = arms.size >= 3 ? interiorOptimum(records, level) : null;
  const perArm = planned.sparsities.map((S) => `${S}: ${seedsAt(S)}`).join(", ");
  const note = `N_a = ${planned.Na.toLocaleString("en-US")}; every arm on the same tokens; ` +
    `seeds per arm S = ${perArm}`;
  if (planned.sparsities.some((S) => seedsAt(S) < minSeeds)) {
    return {
      result,
      finding: {
        id: "fixed-Na-interior",
        claim,
        paper,
        measured: `not enough runs: seeds per arm S = ${perArm} (a verdict needs every arm ` +
          `with ≥ ${minSeeds})` +
          (result ? `; descriptive only: lowest mean loss at S = ${result.argmin}` : ""),
        verdict: "inconclusive",
        testName: "none: not enough runs for the interior-optimum test",
        note,
      },
      tested: false,
    };
  }
  const test = interiorTest(result!);
  return {
    result,
    finding: {
      id: "fixed-Na-interior",
      claim,
      paper,
      measured: result!.summary,
      verdict: verdictOf(test),
      test,
      note,
    },
    tested: true,
  };
}

/**
 * The fixed-N_a arms as a markdown table: S, N, mean loss with its seed-level error and seeds;
 * when the runs earned the test, also every interior S against both ends (loss(S) − loss(lowest
 * S) and loss(S) − loss(highest S) with their one-sided p, the intersection–union p and its
 * Holm adjustment) and the test's summary. Short of that, the arms alone and why there is no
 * test: contrasts of a partial grid would read as evidence they are not.
 *
 * @param a From {@link fixedNaFinding}.
 * @returns Markdown.
 *
 * @example
 * ```ts
 * import type { RunRecord } from "@qsparse/kit/train";
 * import { fixedNaFinding, fixedNaMarkdown } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const run = (S: number, seed: number, valLoss: number) =>
 *   ({ tags: { S, seed }, valLoss, valStderr: 0.006, N: 1e5 / (1 - S), Na: 1e5, sparsity: null }) as unknown as RunRecord;
 * const runs = [1, 2].flatMap((s) => [run(0, s, 2.3 + s / 100), run(0.4, s, 2.2 + s / 100), run(0.8, s, 2.4)]);
 * assert.match(fixedNaMarkdown(fixedNaFinding(runs, { Na: 1e5, sparsities: [0, 0.4, 0.8] })), /\| 0\.4 \| 167K \| 2\.215 ± 0\.005 \(df 1\) \| 2 \| −0\.100/);
 * assert.match(fixedNaMarkdown(fixedNaFinding(runs, { Na: 1e5, sparsities: [0, 0.4, 0.6, 0.8] })), /no test: not enough runs/);
 * ```
 */
export function fixedNaMarkdown(a: FixedNaAnswer): string {
  const r = a.result;
  if (!r) return `No analysis: ${a.finding.measured}.`;
  const low = r.arms[0]!.S, high = r.arms[r.arms.length - 1]!.S;
  const p = (x: number) => (Number.isFinite(x) ? x.toPrecision(2) : "—");
  const d = (e: Estimate) =>
    `${e.value >= 0 ? "+" : "−"}${Math.abs(e.value).toFixed(3)} ± ${e.se.toFixed(3)}`;
  const k = (n: number) => `${Number((n / 1000).toPrecision(3))}K`;
  const rows = r.arms.map((arm) => {
    const c = a.tested ? r.candidates.find((x) => x.S === arm.S) : undefined;
    const base = [
      arm.S,
      k(arm.N),
      formatEstimate({ value: arm.loss, se: arm.se, df: arm.df }),
      arm.seeds,
    ];
    if (!a.tested) return base;
    return [
      ...base,
      c ? `${d(c.vsLow)} (p ${p(c.testLow.p)})` : "",
      c ? `${d(c.vsHigh)} (p ${p(c.testHigh.p)})` : "",
      c ? p(c.p) : "",
      c ? p(c.pAdjusted) : "",
    ];
  });
  const header = ["S", "N", "loss (± s.e.)", "seeds"];
  if (!a.tested) {
    return markdownTable(header, rows) +
      `\n\n${ERRORS}\n\nThe arms so far, no test: ${a.finding.measured}.`;
  }
  return markdownTable(
    [...header, `− loss(S = ${low})`, `− loss(S = ${high})`, "IUT p", "Holm p"],
    rows,
  ) + `\n\n${ERRORS}\n\n${r.summary}.`;
}

/** How the arms' errors were obtained, under their table. */
const ERRORS = "Errors are over seeds (df = seeds − 1); an arm with one seed borrows the seed " +
  "noise of the arms with several, or shows its evaluation error when none has several.";

/**
 * Loss against S at fixed N_a (N = N_a / (1 − S) grows along the axis; each marker is labelled
 * with its N), with ±1 standard-error bars over seeds (see {@link fixedNaMarkdown} for one-seed
 * arms) and the lowest mean ringed.
 *
 * @param r From {@link interiorOptimum} (or {@link FixedNaAnswer.result}).
 * @returns The figure.
 *
 * @example
 * ```ts
 * import type { RunRecord } from "@qsparse/kit/train";
 * import { interiorOptimum, interiorOptimumFigure } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const run = (S: number, seed: number, valLoss: number) =>
 *   ({ tags: { S, seed }, valLoss, valStderr: 0.006, N: 1e5 / (1 - S), Na: 1e5, sparsity: null }) as unknown as RunRecord;
 * const r = interiorOptimum([1, 2].flatMap((s) => [run(0, s, 2.3 + s / 100), run(0.4, s, 2.2), run(0.8, s, 2.4)]));
 * assert.deepEqual(interiorOptimumFigure(r).data[0]!.x, [0, 0.4, 0.8]);
 * ```
 */
export function interiorOptimumFigure(r: InteriorOptimum): Figure {
  const best = r.arms.find((a) => a.S === r.argmin)!;
  return new Figure([
    {
      type: "scatter",
      mode: "lines+markers+text",
      name: "mean over seeds (±1 s.e.)",
      x: r.arms.map((a) => a.S),
      y: r.arms.map((a) => a.loss),
      error_y: {
        type: "data",
        array: r.arms.map((a) => (Number.isFinite(a.se) ? a.se : 0)),
        visible: true,
        width: 4,
      },
      text: r.arms.map((a) => `N ${Number((a.N / 1000).toPrecision(3))}K`),
      textposition: "top center",
      marker: { size: 9, color: "#1f77b4" },
      line: { color: "#1f77b4" },
    },
    {
      type: "scatter",
      mode: "markers",
      name: `lowest mean: S = ${best.S}`,
      x: [best.S],
      y: [best.loss],
      marker: { size: 18, color: "rgba(0,0,0,0)", line: { color: "#d62728", width: 2 } },
    },
  ], {
    title: {
      text: `Fixed N_a = ${Number((r.Na / 1000).toPrecision(3))}K: loss vs S ` +
        `(N = N_a/(1−S); bars ±1 s.e. ${
          r.arms.every((a) => a.seeds < 2)
            ? "from the evaluation error: one seed per arm"
            : "over seeds"
        })`,
    },
    xaxis: { title: { text: "sparsity S" }, tickformat: ".0%" },
    yaxis: { title: { text: "validation loss (nats)" } },
  });
}
