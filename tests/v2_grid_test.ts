/**
 * The v2 grids (studies/v2_grid.ts): the budgets, sizes, seeds, sparsities and warmup issue 13
 * asks for; the tuned LR reaching every cell; the fixed-N_a arms' parameter counts and equal
 * tokens; the identical configs that let the runner train a shared cell once; the gap trend of
 * report.ts pointed at records shaped like the grid's, on a partial grid, and the finding and
 * figure notebook 07 shows of it.
 */
import assert from "node:assert/strict";
import { paramCounts } from "../src/nn/mod.ts";
import type { RunRecord, RunSpec } from "../src/train/mod.ts";
import {
  budgetFor,
  gridCost,
  type LrTable,
  studyRuns,
  throughputAt,
  V2_PROFILES,
  v2CellRule,
  v2GapFigure,
  v2GapFinding,
  v2GapTrend,
  v2StudyRuns,
} from "../studies/mod.ts";
import { gapShrinksFinding, gapsToDense, gapTrend, groupRuns, tQuantile } from "../studies/mod.ts";

const full = V2_PROFILES.full;
const N = (r: RunSpec) => paramCounts(r.config.model).nonEmbedding;
const tokens = (r: RunSpec) => r.config.steps * r.config.batchSize * r.config.model.seqLen;

function table(picks: Record<string, [lr: number, N: number]>): LrTable {
  return {
    study: "lr_tuning",
    rule: "test",
    updated: "",
    sizes: Object.fromEntries(
      Object.entries(picks).map(([size, [lr, n]]) => [size, {
        lr,
        N: n,
        candidates: [],
        edge: false,
        sparsities: [0, 0.8],
        tokens: 1,
      }]),
    ),
  };
}
const tuned = table({
  xxs: [8e-3, 26784],
  tiny: [4e-3, 94528],
  xs: [4e-3, 332448],
  n853k: [2e-3, 853120],
});

Deno.test("scaling_v2: sizes span ≥ 1.5 decades; 9 S × 3 seeds per size; budgets as stated", () => {
  const runs = v2StudyRuns("scaling_v2", "full", { lrTable: tuned });
  const sizes = [...new Set(runs.map((r) => r.tags.size))];
  assert.deepEqual(sizes, ["xxs", "tiny", "xs", "n853k"]);
  const Ns = sizes.map((z) => N(runs.find((r) => r.tags.size === z)!));
  assert.ok(Math.log10(Math.max(...Ns) / Math.min(...Ns)) >= 1.5, `span ${Ns}`);
  for (const z of sizes) {
    const cells = runs.filter((r) => r.tags.size === z);
    assert.equal(cells.length, 9 * 3);
    assert.deepEqual([...new Set(cells.map((r) => r.tags.S))], full.sparsities);
    assert.deepEqual([...new Set(cells.map((r) => r.tags.seed))], [1, 2, 3]);
    const tpp = tokens(cells[0]!) / N(cells[0]!);
    // Every cell enters the fit (≥ 5 tokens per parameter); the small sizes get 20.
    assert.ok(tpp >= 5, `${z}: ${tpp}`);
    if (z !== "n853k") assert.ok(Math.abs(tpp - 20) < 0.1, `${z}: ${tpp}`);
    for (const r of cells) {
      assert.equal(r.config.warmup, Math.max(1, Math.round(0.05 * r.config.steps)));
      assert.equal(r.config.lr, tuned.sizes[z]!.lr);
      assert.equal(r.tags.lrSource, "tuned");
      assert.equal(r.config.model.sparsity.down, r.tags.S);
    }
  }
  // The cap binds at n853k: the same tokens as xs (and as every fixed-N_a arm).
  const big = runs.find((r) => r.tags.size === "n853k")!;
  assert.equal(tokens(big), tokens(runs.find((r) => r.tags.size === "xs")!));
  assert.ok(tokens(big) / N(big) > 7);
  const ids = runs.map((r) => r.id);
  assert.equal(new Set(ids).size, ids.length);
  assert.ok(ids.every((id) => /^[A-Za-z0-9._-]+$/.test(id)));
});

Deno.test("scaling_v2: a size not tuned yet trains at the fallback LR and says so", () => {
  const partial = table({ xxs: [8e-3, 26784] });
  const runs = v2StudyRuns("scaling_v2", "full", { lrTable: partial });
  const xs = runs.find((r) => r.tags.size === "xs")!;
  assert.equal(xs.tags.lrSource, "nearest");
  const none = v2StudyRuns("scaling_v2", "full", { lrTable: null });
  assert.ok(none.every((r) => r.tags.lrSource === "fallback" && r.config.lr === 3e-3));
});

Deno.test("lr_tuning: {1,2,4,8}e-3 × S {0, .8} per size (xxs up to 3.2e-2); long budgets tune on a quarter", () => {
  const runs = v2StudyRuns("lr_tuning", "full", { lrTable: null });
  assert.equal(runs.length, 4 * 4 * 2 + 2 * 2);
  const main = v2StudyRuns("scaling_v2", "full", { lrTable: null });
  for (const r of runs) {
    assert.equal(r.tags.seed, 1);
    const extra = r.tags.size === "xxs" ? [1.6e-2, 3.2e-2] : [];
    assert.ok([1e-3, 2e-3, 4e-3, 8e-3, ...extra].includes(r.config.lr));
    const m = main.find((x) => x.tags.size === r.tags.size)!;
    const expect = m.config.steps > full.lrTuneMaxSteps
      ? Math.round(m.config.steps * full.lrTuneFraction)
      : m.config.steps;
    assert.equal(r.config.steps, expect);
  }
});

Deno.test("the tuning winner of a cheap size is the main grid's seed-1 cell (trained once)", () => {
  const tune = v2StudyRuns("lr_tuning", "full", { lrTable: null });
  const main = v2StudyRuns("scaling_v2", "full", { lrTable: tuned });
  for (const S of [0, 0.8]) {
    const winner = tune.find((r) =>
      r.tags.size === "xxs" && r.tags.S === S && r.config.lr === 8e-3
    )!;
    const cell = main.find((r) => r.tags.size === "xxs" && r.tags.S === S && r.tags.seed === 1)!;
    assert.deepEqual(winner.config, cell.config);
  }
  const cost = gridCost([...tune, ...main], [{ N: 1e5, tokensPerSecond: 1000 }]);
  assert.equal(cost.filter((c) => c.minutes === 0).length, 4); // xxs and tiny, S = 0 and .8
});

Deno.test("fixed_na: N = N_a/(1 − S) within 3%, equal tokens, 3 seeds; shared arms reuse main cells", () => {
  const runs = v2StudyRuns("fixed_na", "full", { lrTable: tuned });
  assert.equal(runs.length, 5 * 3);
  const Na = full.fixedNa.Na;
  for (const r of runs) {
    const S = r.tags.S as number;
    assert.ok(Math.abs(N(r) / (Na / (1 - S)) - 1) < 0.03, `${r.id}: N ${N(r)}`);
    assert.equal(tokens(r), tokens(runs[0]!));
    assert.equal(r.tags.N, N(r));
  }
  assert.deepEqual([...new Set(runs.map((r) => r.tags.seed))], [1, 2, 3]);
  // Arms between tuned sizes take an LR interpolated in log N.
  const mid = runs.find((r) => r.tags.S === 0.3)!;
  assert.equal(mid.tags.lrSource, "interpolated");
  assert.ok(mid.config.lr < 4e-3 && mid.config.lr > 2e-3);
  // S = 0 is xs and S = .6 is n853k: identical configs to the main grid's cells.
  const main = v2StudyRuns("scaling_v2", "full", { lrTable: tuned });
  for (const [S, size] of [[0, "xs"], [0.6, "n853k"]] as const) {
    for (const seed of [1, 2, 3]) {
      const arm = runs.find((r) => r.tags.S === S && r.tags.seed === seed)!;
      const cell = main.find((r) =>
        r.tags.size === size && r.tags.S === S && r.tags.seed === seed
      )!;
      assert.deepEqual(arm.config, cell.config, `${size} S=${S} seed ${seed}`);
    }
  }
});

Deno.test("studyRuns dispatches the v2 studies and honours --sizes / --seeds", () => {
  const runs = studyRuns("scaling_v2", "smoke", { settings: { sizes: ["xxs"], seeds: [4, 5] } });
  assert.equal(runs.length, 9 * 2);
  assert.deepEqual([...new Set(runs.map((r) => r.tags.seed))], [4, 5]);
  assert.ok(runs.every((r) => r.config.steps === V2_PROFILES.smoke.steps));
  assert.ok(studyRuns("fixed_na", "smoke").length === 5);
  assert.ok(studyRuns("lr_tuning", "smoke").length === 2 * 4 * 2);
});

Deno.test("budgetFor: 20 tokens per parameter, the cap, the floor of 5 over the cap", () => {
  assert.equal(budgetFor(94528, full).steps, Math.round((20 * 94528) / 4096));
  assert.equal(budgetFor(853120, full).tokens, 1623 * 4096);
  const m = budgetFor(2656704, full); // the cap would leave 2.5 per parameter
  assert.ok(m.tokensPerParam >= 5 && m.tokensPerParam < 5.01);
  assert.equal(budgetFor(1e6, V2_PROFILES.smoke).steps, V2_PROFILES.smoke.steps);
});

Deno.test("throughputAt interpolates log-log; gridCost counts a repeated config once", () => {
  const pts = [{ N: 1e4, tokensPerSecond: 1e4 }, { N: 1e6, tokensPerSecond: 1e2 }];
  assert.ok(Math.abs(throughputAt(1e5, pts) - 1e3) < 1e-6);
  assert.ok(Math.abs(throughputAt(1e3, pts) - 1e5) < 1e-3);
  assert.throws(() => throughputAt(1, []), /no throughput/);
  const run = studyRuns("scaling_v2", "smoke")[0]!;
  const c = gridCost([run, run], pts);
  assert.ok(c[0]!.minutes > 0);
  assert.equal(c[1]!.minutes, 0);
});

/** Records for the grid's cells from a law with a gap that shrinks with N, and seed noise. */
function synthetic(specs: RunSpec[], slope: number): RunRecord[] {
  let state = 7;
  const noise = () => { // deterministic uniform(−1, 1)
    state = (state * 1103515245 + 12345) % 2147483648;
    return 2 * (state / 2147483648) - 1;
  };
  const seedShift: Record<number, number> = { 1: 0.01, 2: -0.012, 3: 0.004 };
  return specs.map((s) => {
    const n = N(s), S = s.tags.S as number, seed = s.tags.seed as number;
    const gap = S * S * (0.3 + slope * Math.log10(n / 1e5));
    return {
      id: s.id,
      study: s.study,
      tags: s.tags,
      config: s.config,
      valLoss: 3 - 0.2 * Math.log10(n) + gap + seedShift[seed]! + 0.003 * noise(),
      valStderr: 0.006,
      N: n,
      Na: n * (1 - S),
      tokens: tokens(s),
      sparsity: null,
    } as unknown as RunRecord;
  });
}

Deno.test("the gap trend of report.ts runs on scaling_v2-shaped records over ≥ 1.5 decades", () => {
  const specs = v2StudyRuns("scaling_v2", "full", { lrTable: tuned });
  const shrink = v2GapTrend(synthetic(specs, -0.05));
  assert.ok(shrink.decades >= 1.5);
  assert.equal(shrink.trend!.perSize.length, 4);
  assert.ok(shrink.trend!.perSize.every((p) => p.seeds === 3)); // paired within seed
  // Mean over S ≥ .4 of S² is 0.4817; the gap's slope per decade is that times −0.05.
  const want = -0.05 * [0.4, 0.5, 0.6, 0.7, 0.8, 0.9].reduce((a, s) => a + s * s, 0) / 6;
  assert.ok(Math.abs(shrink.trend!.slope.value - want) < 0.005, `${shrink.trend!.slope.value}`);
  const flat = v2GapTrend(synthetic(specs, 0));
  assert.ok(Math.abs(flat.trend!.slope.value) < 0.005);
  // Untuned cells stay out of the fit unless asked for.
  const untuned = synthetic(v2StudyRuns("scaling_v2", "full", { lrTable: null }), -0.05);
  assert.equal(v2GapTrend(untuned).trend, null);
  assert.equal(v2GapTrend(untuned).excluded, untuned.length);
  assert.equal(v2GapTrend(untuned, undefined, { allowFallbackLr: true }).trend!.perSize.length, 4);
});

Deno.test("partial grid: the trend averages only the S every size has", () => {
  const specs = v2StudyRuns("scaling_v2", "full", { lrTable: tuned });
  const all = synthetic(specs, -0.05);
  // n853k has only S = 0, .4 and .5 so far; averaging S ≥ .4 per size would compare n853k's
  // small-S gaps with the others' large-S gaps and fake a steep shrink.
  const partial = all.filter((r) =>
    r.tags.size !== "n853k" || [0, 0.4, 0.5].includes(r.tags.S as number)
  );
  const g = v2GapTrend(partial);
  assert.deepEqual(g.sparsities, [0.4, 0.5]);
  assert.equal(g.sizes.length, 4);
  const want = -0.05 * (0.4 ** 2 + 0.5 ** 2) / 2;
  assert.ok(Math.abs(g.trend!.slope.value - want) < 0.005, `${g.trend!.slope.value}`);
  // Averaging every S ≥ .4 a size has (report.ts's gapTrend alone) fakes a steep shrink.
  const naive = gapTrend(gapsToDense(groupRuns(partial)))!;
  assert.ok(naive.slope.value < 4 * want, `${naive.slope.value}`); // ≈ −0.056 against −0.010
  // Sizes with no sparsity in common: no trend.
  const disjoint = all.filter((r) =>
    (r.tags.size === "xxs" && [0, 0.4].includes(r.tags.S as number)) ||
    (r.tags.size === "tiny" && [0, 0.9].includes(r.tags.S as number))
  );
  const none = v2GapTrend(disjoint);
  assert.equal(none.trend, null);
  assert.equal(none.sizes.length, 2);
  assert.match(v2GapFinding(none, "full").measured, /2 sizes .* but no sparsity common to all/);
});

Deno.test("gap finding: not enough runs, no seed-level error, then the t-test of the slope", () => {
  const specs = v2StudyRuns("scaling_v2", "full", { lrTable: tuned });
  const all = synthetic(specs, -0.05);
  // One size only.
  const one = v2GapFinding(v2GapTrend(all.filter((r) => r.tags.size === "xxs")), "full");
  assert.equal(one.verdict, "inconclusive");
  assert.match(one.measured, /^not enough runs: 1 size with a dense cell/);
  assert.match(one.testName!, /not enough runs/);
  // Two sizes at one seed: a slope, but no seed-level error and so no test.
  const seed1 = v2GapTrend(
    all.filter((r) => r.tags.seed === 1 && ["xxs", "tiny"].includes(r.tags.size as string)),
  );
  const f1 = v2GapFinding(seed1, "full");
  assert.equal(f1.verdict, "inconclusive");
  assert.equal(f1.test, undefined);
  assert.match(f1.measured, /no size has two seeds/);
  assert.match(f1.note!, /N spans 0\.55 decades \(planned: 1\.50\)/);
  // The full grid: gapShrinksFinding's test and verdict, the span in the note.
  const g = v2GapTrend(all);
  const f = v2GapFinding(g, "full");
  const base = gapShrinksFinding(g.trend);
  assert.equal(f.id, "v2-gap-vs-N");
  assert.equal(f.verdict, base.verdict);
  assert.equal(f.verdict, "reproduced");
  assert.deepEqual(f.test, base.test);
  assert.equal(f.test!.level, 0.05);
  assert.match(f.note!, /S averaged: 0\.4, 0\.5, 0\.6, 0\.7, 0\.8, 0\.9 .*N spans 1\.50 decades/);
  // A flat gap is not a shrinking one.
  assert.notEqual(v2GapFinding(v2GapTrend(synthetic(specs, 0)), "full").verdict, "reproduced");
});

Deno.test("gap figure: per-size 95% intervals over seeds and the weighted line", () => {
  const g = v2GapTrend(synthetic(v2StudyRuns("scaling_v2", "full", { lrTable: tuned }), -0.05));
  const fig = v2GapFigure(g);
  const [points, line] = fig.data;
  assert.deepEqual(points!.x, g.trend!.perSize.map((p) => p.N));
  const ci = (points!.error_y as { array: number[] }).array;
  g.trend!.perSize.forEach((p, i) => {
    assert.ok(Math.abs(ci[i]! - tQuantile(0.975, p.gap.df!) * p.gap.se) < 1e-12);
  });
  assert.match(String(points!.name), /95% CI over seeds/);
  // One seed: the bars are the evaluation error, and the figure says so.
  const seed1 = v2GapTrend(
    synthetic(v2StudyRuns("scaling_v2", "full", { lrTable: tuned }), -0.05)
      .filter((r) => r.tags.seed === 1),
  );
  assert.match(String(v2GapFigure(seed1).data[0]!.name), /evaluation error: one seed/);
  // The line has the trend's slope per decade of N.
  const [x0, x1] = line!.x as number[], [y0, y1] = line!.y as number[];
  assert.ok(Math.abs((y1! - y0!) / Math.log10(x1! / x0!) - g.trend!.slope.value) < 1e-12);
});

Deno.test("the smoke profile waives the token floor of fitCells, the full one keeps it", () => {
  const smoke = v2StudyRuns("scaling_v2", "smoke", { lrTable: null }).map((s) =>
    ({
      tags: { ...s.tags, lrSource: "tuned" },
      tokens: 768,
      N: 26784,
    }) as unknown as RunRecord
  );
  assert.ok(smoke.every((r) => (r.tags.tokensPerParam as number) < 1));
  assert.equal(v2GapTrend(smoke, undefined, v2CellRule("full")).excluded, smoke.length);
  assert.equal(v2GapTrend(smoke, undefined, v2CellRule("smoke")).excluded, 0);
});
