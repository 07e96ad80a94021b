/**
 * The interior-optimum test of the fixed-N_a study on synthetic records: a U-shaped loss is an
 * interior optimum, a loss falling to the highest S is not, a flat loss with seed noise is
 * inconclusive, the best interior S is picked after looking (so the claim is Holm-adjusted over
 * the interior candidates), a single seed per arm falls back to Welch errors, and too few arms
 * are a typed error.
 */
import assert from "node:assert/strict";
import { ValueError } from "../mod.ts";
import type { RunRecord } from "../src/train/mod.ts";
import {
  fixedNaFinding,
  fixedNaMarkdown,
  holmFindings,
  interiorOptimum,
  interiorOptimumFigure,
  studyRuns,
} from "../studies/mod.ts";

const SPARSITIES = [0, 0.3, 0.45, 0.6, 0.75];
const NA = 332448;

/** Deterministic noise in (−1, 1). */
function noiseSource(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return 2 * (s / 2147483648) - 1;
  };
}

/**
 * Records with mean loss `curve(S)`, a per-seed offset shared by every arm of that seed (the
 * part paired contrasts remove) and independent per-run noise of amplitude `sigma`.
 */
function records(
  curve: (S: number) => number,
  sigma: number,
  seeds = [1, 2, 3],
  sparsities = SPARSITIES,
): RunRecord[] {
  const noise = noiseSource(11);
  return seeds.flatMap((seed) => {
    const offset = 0.03 * noise();
    return sparsities.map((S) => {
      const N = NA / (1 - S);
      return {
        id: `na332k-S${S}-seed${seed}`,
        study: "fixed_na",
        tags: { size: `n${Math.round(N / 1000)}k`, S, seed, Na: NA, N, lr: 3e-3 / (1 + S) },
        valLoss: curve(S) + offset + sigma * noise(),
        valStderr: 0.006,
        N,
        Na: NA,
        sparsity: null,
      } as unknown as RunRecord;
    });
  });
}

Deno.test("a U-shaped loss is an interior optimum, at the right S", () => {
  const r = interiorOptimum(records((S) => 2.3 + 0.4 * (S - 0.45) ** 2, 0.002));
  assert.equal(r.verdict, "interior optimum");
  assert.equal(r.best!.S, 0.45);
  assert.equal(r.argmin, 0.45);
  assert.ok(r.best!.vsLow.paired && r.best!.vsHigh.paired);
  assert.ok(r.best!.vsLow.value < 0 && r.best!.vsHigh.value < 0);
  assert.equal(r.best!.vsLow.df, 2); // three seeds, paired
  assert.equal(r.arms.length, 5);
  assert.equal(r.Na, NA);
  assert.match(r.summary, /interior optimum: best interior S = 0.45/);
});

Deno.test("a loss falling all the way to the largest S has no interior optimum", () => {
  const r = interiorOptimum(records((S) => 2.4 - 0.2 * S, 0.002));
  assert.equal(r.verdict, "no interior optimum");
  assert.equal(r.argmin, 0.75);
  // Every interior arm is significantly worse than the S = .75 end.
  assert.ok(r.candidates.every((c) => c.vsHigh.value > 0 && c.testHigh.pContrary < 0.05));
});

Deno.test("a flat loss with seed noise is inconclusive, not an optimum picked from noise", () => {
  const r = interiorOptimum(records(() => 2.3, 0.01));
  assert.equal(r.verdict, "inconclusive");
  assert.ok(r.best !== null);
  // The best interior S is chosen after looking: its adjusted p is never below its raw p.
  assert.ok(r.candidates.every((c) => c.pAdjusted >= c.p));
});

Deno.test("Holm across interior candidates: a win at raw p ≈ 0.025 does not pass with three", () => {
  // Paired per-seed differences of the S = .45 arm to both ends: −0.010, −0.014, −0.006 (mean
  // −0.010, se 0.0023, t = −4.33 with df 2: one-sided p = 0.025). The other interior arms are
  // clearly worse, so Holm multiplies the smallest p by 3: 0.074 > 0.05.
  const base: Record<number, number> = { 1: 2.31, 2: 2.28, 3: 2.3 };
  const delta: Record<number, number> = { 1: -0.01, 2: -0.014, 3: -0.006 };
  const curve = (S: number, seed: number) =>
    S === 0.45
      ? base[seed]! + delta[seed]!
      : S === 0 || S === 0.75
      ? base[seed]!
      : base[seed]! + 0.05;
  const recs = [1, 2, 3].flatMap((seed) =>
    SPARSITIES.map((S) =>
      ({
        id: `S${S}-seed${seed}`,
        tags: { S, seed },
        valLoss: curve(S, seed),
        valStderr: 0.006,
        N: NA / (1 - S),
        Na: NA,
        sparsity: null,
      }) as unknown as RunRecord
    )
  );
  const r = interiorOptimum(recs);
  const c = r.candidates.find((x) => x.S === 0.45)!;
  assert.equal(r.best!.S, 0.45);
  assert.ok(c.p > 0.02 && c.p < 0.03, `raw p ${c.p}`);
  assert.ok(Math.abs(c.pAdjusted - 3 * c.p) < 1e-12);
  assert.equal(r.verdict, "inconclusive");
  // With the interior arm alone (one candidate) the same contrasts pass.
  const alone = interiorOptimum(recs.filter((x) => [0, 0.45, 0.75].includes(x.tags.S as number)));
  assert.equal(alone.verdict, "interior optimum");
});

Deno.test("one seed per arm: unpaired contrasts with the pooled or evaluation error", () => {
  const r = interiorOptimum(records((S) => 2.3 + 0.4 * (S - 0.45) ** 2, 0.002, [1]));
  assert.ok(!r.best!.vsLow.paired);
  assert.ok(r.arms.every((a) => a.seeds === 1));
});

Deno.test("fewer than three sparsities or a run without S are ValueErrors", () => {
  assert.throws(() => interiorOptimum(records(() => 2.3, 0.01, [1, 2], [0, 0.5])), ValueError);
  const bad = records(() => 2.3, 0.01);
  (bad[0]!.tags as Record<string, unknown>).S = "dense";
  assert.throws(() => interiorOptimum(bad), /no numeric S tag/);
});

Deno.test("the analysis reads records tagged as the fixed_na grid tags them", () => {
  const specs = studyRuns("fixed_na", "full");
  const recs = specs.map((s) =>
    ({
      id: s.id,
      study: s.study,
      tags: s.tags,
      valLoss: 2.3 + 0.4 * ((s.tags.S as number) - 0.3) ** 2 + 0.001 * (s.tags.seed as number),
      valStderr: 0.006,
      N: s.tags.N,
      Na: s.tags.Na,
      sparsity: null,
    }) as unknown as RunRecord
  );
  const r = interiorOptimum(recs);
  assert.deepEqual(r.arms.map((a) => a.S), SPARSITIES);
  assert.ok(r.arms.every((a) => a.seeds === 3));
  assert.equal(r.best!.S, 0.3);
});

const PLANNED = { Na: NA, sparsities: SPARSITIES };
const U = (S: number) => 2.3 + 0.4 * (S - 0.45) ** 2;

Deno.test("finding: the verdict is the test's once every arm has its seeds", () => {
  const cases: [(S: number) => number, number, string][] = [
    [U, 0.002, "reproduced"],
    [(S) => 2.4 - 0.2 * S, 0.002, "not reproduced at this scale"],
    [() => 2.3, 0.01, "inconclusive"],
  ];
  for (const [curve, sigma, verdict] of cases) {
    const recs = records(curve, sigma);
    const a = fixedNaFinding(recs, PLANNED);
    const r = interiorOptimum(recs);
    assert.ok(a.tested);
    assert.equal(a.finding.verdict, verdict);
    const mapped = r.verdict === "interior optimum"
      ? "reproduced"
      : r.verdict === "no interior optimum"
      ? "not reproduced at this scale"
      : "inconclusive";
    assert.equal(a.finding.verdict, mapped);
    // The attached test carries the claim's Holm-adjusted p over the interior candidates.
    const minAdj = Math.min(...r.candidates.map((c) => c.pAdjusted));
    assert.equal(a.finding.test!.p, minAdj);
    assert.equal(a.finding.test!.level, 0.05);
    assert.match(a.finding.test!.name, /intersection–union .* Holm over 3 interior S/);
    assert.equal(a.finding.measured, r.summary);
  }
});

Deno.test("finding: Holm across a notebook can only weaken the interior verdict", () => {
  const a = fixedNaFinding(records(U, 0.002), PLANNED);
  const other = { ...a.finding, id: "other" };
  const [adj] = holmFindings([a.finding, other]);
  assert.ok(adj!.test!.pAdjusted! >= a.finding.test!.p);
  assert.ok(Math.abs(adj!.test!.pAdjusted! - Math.min(1, 2 * a.finding.test!.p)) < 1e-12);
});

Deno.test("finding: a missing end or a single seed is 'not enough runs', never a verdict", () => {
  // Without the S = .75 arm, S = .6 would become an end: a clear U would still "win".
  const noHighEnd = records(U, 0.002).filter((r) => r.tags.S !== 0.75);
  const a = fixedNaFinding(noHighEnd, PLANNED);
  assert.ok(!a.tested);
  assert.equal(a.finding.verdict, "inconclusive");
  assert.equal(a.finding.test, undefined);
  assert.match(a.finding.measured, /not enough runs: seeds per arm S = 0: 3, .*0\.75: 0/);
  assert.match(a.finding.measured, /descriptive only: lowest mean loss at S = 0.45/);
  // One seed per arm: the clear U has no seed-level error yet.
  const oneSeed = fixedNaFinding(records(U, 0.002, [1]), PLANNED);
  assert.ok(!oneSeed.tested);
  assert.equal(oneSeed.finding.verdict, "inconclusive");
  assert.match(oneSeed.finding.measured, /0\.3: 1, .*needs every arm with ≥ 2/);
  // Two arms only: no analysis at all.
  const two = fixedNaFinding(records(U, 0.002, [1, 2], [0, 0.3]), PLANNED);
  assert.equal(two.result, null);
  assert.match(fixedNaMarkdown(two), /^No analysis: not enough runs/);
  assert.match(two.finding.note!, /N_a = 332,448/);
});

Deno.test("markdown and figure: contrasts only when tested; arms with their errors", () => {
  const full = fixedNaFinding(records(U, 0.002), PLANNED);
  const md = fixedNaMarkdown(full);
  assert.match(md, /IUT p \| Holm p/);
  assert.match(md, /interior optimum: best interior S = 0\.45/);
  const partial = fixedNaFinding(records(U, 0.002, [1]), PLANNED);
  const pmd = fixedNaMarkdown(partial);
  assert.doesNotMatch(pmd, /IUT p|Holm p|interior optimum:/);
  assert.match(pmd, /The arms so far, no test: not enough runs/);
  const fig = interiorOptimumFigure(full.result!);
  const arms = fig.data[0]!;
  assert.deepEqual(arms.x, SPARSITIES);
  const se = (arms.error_y as { array: number[] }).array;
  assert.deepEqual(se, full.result!.arms.map((x) => x.se));
  assert.ok(se.every((x) => x > 0));
  assert.deepEqual(fig.data[1]!.x, [0.45]); // the lowest mean, ringed
  assert.match(String((fig.layout.title as { text: string }).text), /s\.e\. over seeds/);
  const oneSeedFig = interiorOptimumFigure(partial.result!);
  assert.match(String((oneSeedFig.layout.title as { text: string }).text), /one seed per arm/);
});
