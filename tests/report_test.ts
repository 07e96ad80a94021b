/**
 * Report and findings on synthetic sweep records: records drawn from a known law (plus seeded
 * noise) must give back the gaps, trends, S* and verdicts that law implies; degenerate grids are
 * reported, never thrown; tables render.
 */
import assert from "node:assert/strict";
import { openDevice } from "../mod.ts";
import {
  PAPER_SCALING_LAW,
  type RunRecord,
  scalingLaw,
  type ScalingLawParams,
} from "../src/train/mod.ts";
import {
  blockFinding,
  combineVerdicts,
  comparisonFinding,
  componentSparsityFinding,
  equalNaComparison,
  equalNaFinding,
  findingsMarkdown,
  fitSweep,
  gapConvexity,
  gapShrinksFinding,
  gapsToDense,
  gapTrend,
  groupRuns,
  kernelFindings,
  kernelSummary,
  loadStudy,
  markdown,
  markdownTable,
  meanSe,
  nearDenseFinding,
  parseProfile,
  readBenchFiles,
  reluDriftFinding,
  saveFigure,
  saveMarkdown,
  sparsityAt,
  sparsityDrift,
  sStarFinding,
  sStarOrderFinding,
  steFinding,
  superLinearFinding,
  sweepPoints,
  timeSparseKernels,
  tokenBudgetFinding,
  verdictAbove,
  verdictBelow,
  verdictInterval,
  verdictWithin,
} from "../studies/mod.ts";

/** A deterministic normal sampler (Box–Muller on a small LCG), so tests never flake. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  const u = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) + 0.5) / 2 ** 32;
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

interface Synth {
  size: string;
  N: number;
  S: number;
  seed: number;
  loss: number;
  stderr?: number;
  tags?: RunRecord["tags"];
  down?: number;
  curve?: number[];
}

/** A results line with only the fields the report reads filled in. */
function record(r: Synth): RunRecord {
  const down = r.down ?? Math.max(r.S, 0.5);
  const overall = 0.775 * r.S + 0.225 * down;
  return {
    id: `${r.size}-S${r.S}-seed${r.seed}`,
    study: "synthetic",
    tags: r.tags ?? { size: r.size, S: r.S, seed: r.seed, variant: "topk" },
    config: {} as RunRecord["config"],
    valLoss: r.loss,
    valStderr: r.stderr ?? 0.002,
    trainLoss: r.loss,
    sparsity: {
      perSite: { qkv: r.S, o: r.S, gateUp: r.S, down },
      overall,
      sites: [],
    },
    N: r.N,
    Na: r.N * (1 - overall),
    tokens: 1e6,
    wallSeconds: 1,
    tokensPerSecond: 1e6,
    adapter: "synthetic",
    backend: "cpu",
    codeVersion: "test",
    date: "2026-01-01T00:00:00Z",
    curve: [],
    evals: [],
    sparsityCurve: (r.curve ?? []).map((overall, i) => ({
      step: i + 1,
      overall,
      perSite: { qkv: r.tags?.variant === "relu" ? overall : r.S },
    })),
  };
}

const SIZES: [string, number][] = [["a", 3e5], ["b", 1e6], ["c", 3e6], ["d", 1e7]];
const GRID = [0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8];

/** A full sweep from `law` (N in units of 1e6, like fitSweep) with noise `sigma` per run. */
function sweep(law: ScalingLawParams, sigma: number, seeds = [1, 2]): RunRecord[] {
  const z = rng(7);
  const out: RunRecord[] = [];
  for (const seed of seeds) {
    for (const [size, N] of SIZES) {
      for (const S of GRID) {
        out.push(record({ size, N, S, seed, loss: scalingLaw(law, N, S) + sigma * z() }));
      }
    }
  }
  return out;
}

// The paper's law with N in units of 1e6 (as fitSweep's default), so S* ≈ 50.2%.
const LAW: ScalingLawParams = { ...PAPER_SCALING_LAW, nScale: 1e6 };

Deno.test("meanSe: spread over values, fallback for one, error for none", () => {
  const m = meanSe([2, 4, 6]);
  assert.equal(m.mean, 4);
  assert.ok(Math.abs(m.se - 2 / Math.sqrt(3)) < 1e-12);
  assert.deepEqual(meanSe([1], 0.5), { mean: 1, se: 0.5, n: 1, df: Infinity });
  assert.equal(m.df, 2);
  assert.throws(() => meanSe([]), /no values/);
});

Deno.test("groupRuns: seeds merge, other tags split, summaries are means", () => {
  const recs = sweep(LAW, 0);
  const groups = groupRuns(recs);
  assert.equal(groups.length, SIZES.length * GRID.length);
  const g = groups.find((g) => g.tags.size === "b" && g.tags.S === 0.5)!;
  assert.equal(g.records.length, 2);
  assert.equal(g.loss.n, 2);
  assert.equal(g.key, "S=0.5,size=b,variant=topk");
  assert.equal(g.N, 1e6);
  assert.equal(g.perSite.down, 0.5);
  assert.equal(g.tags.seed, undefined);
  // Single seed: the run's own evaluation error.
  const one = groupRuns(sweep(LAW, 0, [1]))[0]!;
  assert.equal(one.loss.se, 0.002);
});

Deno.test("sweepPoints: nominal S by default, measured on request, fallback without a tag", () => {
  const r = record({ size: "a", N: 1e6, S: 0.4, seed: 1, loss: 3, down: 0.8 });
  assert.equal(sweepPoints([r])[0]!.S, 0.4);
  assert.ok(Math.abs(sweepPoints([r], { sparsity: "measured" })[0]!.S - (0.31 + 0.18)) < 1e-12);
  const relu = record({
    size: "a",
    N: 1e6,
    S: 0.5,
    seed: 1,
    loss: 3,
    tags: { variant: "relu", S: null },
  });
  assert.equal(sweepPoints([relu])[0]!.S, relu.sparsity!.overall);
});

Deno.test("gapsToDense: exact gaps of the law, matched on size", () => {
  const gaps = gapsToDense(groupRuns(sweep(LAW, 0)));
  assert.equal(gaps.length, SIZES.length * (GRID.length - 1));
  for (const g of gaps) {
    const want = scalingLaw(LAW, g.N, g.S) - scalingLaw(LAW, g.N, 0);
    assert.ok(Math.abs(g.gap - want) < 1e-12);
    assert.equal(g.dense.tags.size, g.group.tags.size);
  }
});

Deno.test("gapConvexity and gapTrend: the law is super-linear in S and its gap shrinks with N", () => {
  const gaps = gapsToDense(groupRuns(sweep(LAW, 0.001)));
  const c = gapConvexity(gaps)!;
  assert.equal(c.perSize.length, 4);
  assert.ok(c.ratio > 4, `ratio ${c.ratio}`);
  assert.ok(Math.abs(c.ratio - c.gapHi / c.gapLo) < 1e-12);
  assert.equal(superLinearFinding(c).verdict, "reproduced");
  const t = gapTrend(gaps)!;
  assert.ok(t.slope.value < 0);
  // The law's relative shrink per decade is 10^−α − 1 ≈ −20.6%.
  assert.ok(Math.abs(t.relativePerDecade - (10 ** -0.1 - 1)) < 0.03, `${t.relativePerDecade}`);
  assert.equal(gapShrinksFinding(t).verdict, "reproduced");
  // A gap that grows with N is not a shrinking gap.
  const z = rng(3);
  const growing = gapsToDense(
    groupRuns(SIZES.flatMap(([size, N], i) =>
      [1, 2].flatMap((seed) =>
        GRID.map((S) =>
          record({
            size,
            N,
            S,
            seed,
            loss: 3 - 0.1 * i + (S >= 0.4 ? 0.05 + 0.02 * i : 0) + 0.001 * z(),
          })
        )
      )
    )),
  );
  assert.equal(gapShrinksFinding(gapTrend(growing)).verdict, "not reproduced at this scale");
  assert.equal(gapTrend(gaps.filter((g) => g.N === 1e6)), null);
  assert.equal(gapConvexity(gaps.filter((g) => g.S !== 0.8)), null);
});

Deno.test("equalNaComparison: the law's sparse models beat interpolated dense at equal N_a", () => {
  const rows = equalNaComparison(groupRuns(sweep(LAW, 0)), (g) => g.tags.S === 0.5);
  // S = 0.5 puts N_a = N/2 inside the dense range for sizes b, c, d only.
  assert.equal(rows.length, 3);
  for (const r of rows) {
    assert.equal(r.Na, r.N / 2);
    assert.ok(r.advantage.value > 0, `N=${r.N}: ${r.advantage.value}`);
  }
  assert.equal(equalNaFinding(rows).verdict, "reproduced");
  assert.equal(equalNaFinding([]).verdict, "inconclusive");
});

Deno.test("fitSweep: recovers S* from a noisy law; degenerate grids are reported", async () => {
  const res = await fitSweep(sweep(LAW, 0.0005), { bootstrap: 20 });
  assert.ok(res.ok);
  assert.ok(Math.abs(res.fit.sStar - 0.502) < 0.08, `S* ${res.fit.sStar}`);
  assert.ok(res.fit.ci);
  const f = sStarFinding(res, { maxWidth: 1 });
  assert.equal(f.verdict, "reproduced");
  assert.match(f.measured, /S\* = \d+\.\d%/);

  // Two sizes × one S: too few distinct values to fit 5 constants.
  const tiny = sweep(LAW, 0).filter((r) => r.tags.S === 0 || r.tags.S === 0.5);
  const bad = await fitSweep(tiny, { bootstrap: 0 });
  assert.equal(bad.ok, false);
  assert.match((bad as { reason: string }).reason, /distinct S/);
  assert.equal(sStarFinding(bad).verdict, "inconclusive");
  assert.equal(sStarOrderFinding(bad, res).verdict, "inconclusive");

  // A law with a larger β/α ratio has a lower S*; the ordering finding sees it.
  const lower = await fitSweep(sweep({ ...LAW, beta: 0.07 }, 0.0005), { bootstrap: 20 });
  assert.ok(lower.ok && lower.fit.sStar < res.fit.sStar);
  const order = sStarOrderFinding(lower, res);
  assert.notEqual(order.verdict, "not reproduced at this scale");
  assert.equal(sStarOrderFinding(res, lower).verdict === "reproduced", false);
});

Deno.test("verdicts: one-sided tests at 5% with the estimate's df, NaN is inconclusive", () => {
  assert.equal(verdictAbove({ value: 0.03, se: 0.01 }), "reproduced");
  assert.equal(verdictAbove({ value: 0.015, se: 0.01 }), "inconclusive");
  // t = 3 passes with a known error (normal) but not with one degree of freedom (t₀.₉₅ = 6.31).
  assert.equal(verdictAbove({ value: 0.03, se: 0.01, df: 1 }), "inconclusive");
  assert.equal(verdictAbove({ value: 0.07, se: 0.01, df: 1 }), "reproduced");
  assert.equal(verdictAbove({ value: -0.03, se: 0.01 }), "not reproduced at this scale");
  assert.equal(verdictAbove({ value: 1, se: NaN }), "inconclusive");
  assert.equal(verdictBelow({ value: -1, se: 0.1 }, 0), "reproduced");
  assert.equal(verdictWithin({ value: 0, se: 0.001 }, [-0.01, 0.01]), "reproduced");
  assert.equal(
    verdictWithin({ value: 0.05, se: 0.001 }, [-0.01, 0.01]),
    "not reproduced at this scale",
  );
  assert.equal(verdictInterval(0.5, [0.45, 0.7], [0.35, 0.6], 0.3), "reproduced");
  assert.equal(verdictInterval(0.5, [0.45, 0.7], [0.35, 0.6]), "inconclusive");
  assert.equal(combineVerdicts([]), "inconclusive");
  assert.equal(
    combineVerdicts(["reproduced", "not reproduced at this scale"]),
    "not reproduced at this scale",
  );
  assert.throws(
    () =>
      comparisonFinding({
        id: "x",
        claim: "c",
        paper: "p",
        label: "l",
        estimate: { value: 0, se: 0 },
        expect: "within",
      }),
    /tolerance/,
  );
});

Deno.test("ablation findings: STE, ReLU drift", () => {
  const mk = (variant: string, loss: number, curve: number[], S: number | null = 0.5) =>
    record({ size: "a", N: 1e6, S: S ?? 0.5, seed: 1, loss, tags: { variant, S, seed: 1 }, curve });
  const groups = groupRuns([
    mk("dense", 2.9, [0.1, 0.1], 0),
    mk("topk-ste", 3.0, [0.5, 0.5]),
    mk("topk-noste", 3.3, [0.5, 0.5]),
    mk("relu", 3.2, [0.65, 0.55, 0.48], null),
  ]);
  assert.equal(steFinding(groups).verdict, "reproduced");
  const drift = reluDriftFinding(groups);
  assert.equal(drift.verdict, "reproduced");
  assert.match(drift.measured, /65\.0% → 48\.0%/);
  assert.ok(Math.abs(sparsityDrift(groups[3]!.records[0]!)!.change + 0.17) < 1e-12);
  // STE that does not help.
  const flat = groupRuns([
    mk("topk-ste", 3.0, []),
    mk("topk-noste", 2.9, []),
    mk("relu", 3.2, [], null),
  ]);
  assert.equal(steFinding(flat).verdict, "not reproduced at this scale");
  assert.equal(reluDriftFinding(flat).verdict, "inconclusive");
  assert.equal(steFinding([]).verdict, "inconclusive");
});

Deno.test("block finding: equivalence within the margin", () => {
  const mk = (variant: string, loss: number, seed: number) =>
    record({ size: "b", N: 1e6, S: 0.5, seed, loss, tags: { size: "b", variant, S: 0.5, seed } });
  const close = groupRuns([
    mk("topk", 3.0, 1),
    mk("topk", 3.002, 2),
    mk("block16:32", 3.004, 1),
    mk("block16:32", 3.006, 2),
  ]);
  assert.equal(blockFinding(close).verdict, "reproduced");
  const far = groupRuns([
    mk("topk", 3.0, 1),
    mk("topk", 3.002, 2),
    mk("block16:32", 3.1, 1),
    mk("block16:32", 3.102, 2),
  ]);
  assert.equal(blockFinding(far).verdict, "not reproduced at this scale");
});

Deno.test("component sparsity at S = 0.3 by interpolation; near-dense finding", () => {
  const recs = [0, 0.2, 0.4].map((S) =>
    record({ size: "d", N: 1e7, S, seed: 1, loss: 3 + S / 100, down: 0.7 + S / 4 })
  );
  const groups = groupRuns(recs);
  const at = sparsityAt(groups, 0.3)!;
  assert.deepEqual(at.from, [0.2, 0.4]);
  assert.ok(Math.abs(at.perSite.down! - 0.775) < 1e-12);
  assert.ok(Math.abs(at.overall - (0.775 * 0.3 + 0.225 * 0.775)) < 1e-12);
  assert.equal(componentSparsityFinding(at).verdict, "reproduced");
  assert.equal(sparsityAt(groups, 0.9), null);
  assert.equal(sparsityAt(groups, 0.2)!.from[0], 0.2);
  const near = nearDenseFinding(gapsToDense(groups));
  assert.equal(near.verdict, "reproduced");
  assert.match(near.measured, /S = 0\.2 \(overall 32\.4%\)/);
});

Deno.test("markdown tables render and escape pipes", () => {
  assert.equal(markdownTable(["x"], [["a|b"]]), "| x |\n| --- |\n| a\\|b |");
  const md = findingsMarkdown([
    { id: "a", claim: "c", paper: "p", measured: "m", verdict: "reproduced", note: "n" },
  ]);
  assert.equal(md.split("\n").length, 3);
  assert.match(md, /✅ reproduced \| n \|$/);
  assert.equal(markdown`a ${1} b`.text, "a 1 b");
});

Deno.test("notebook helpers: profile check, missing full results, smoke saves nothing", async () => {
  assert.equal(parseProfile("smoke"), "smoke");
  assert.throws(() => parseProfile(undefined), /profile/);
  const dir = await Deno.makeTempDir();
  try {
    const data = await loadStudy("bitnet", "full", { resultsDir: dir });
    assert.equal(data.available, false);
    assert.match(data.message, /cli\.ts sweep --study bitnet --profile full/);
    // Records of another study in the same file are not this study's.
    await Deno.writeTextFile(
      `${dir}/bitnet.jsonl`,
      JSON.stringify(record({ size: "a", N: 1, S: 0, seed: 1, loss: 1 })) + "\n",
    );
    assert.equal((await loadStudy("bitnet", "full", { resultsDir: dir })).available, false);
    // Runs of the grid are counted against it; runs beyond it (other sizes, seeds) are named apart.
    const bit = (id: string) => ({
      ...record({ size: "xxs", N: 1, S: 0, seed: 1, loss: 1 }),
      id,
      study: "bitnet",
    });
    await Deno.writeTextFile(
      `${dir}/bitnet.jsonl`,
      [bit("xxs-bitnet-S0.0-seed1"), bit("xl-bitnet-S0.0-seed1")].map((r) =>
        JSON.stringify(r) + "\n"
      )
        .join(""),
    );
    const partial = await loadStudy("bitnet", "full", { resultsDir: dir });
    assert.match(
      partial.message,
      /1 of the grid's 21 runs and 1 beyond it \(more sizes or seeds\)/,
    );
    assert.match(partial.message, /not complete/);
    assert.deepEqual(await readBenchFiles(dir), []);
    await Deno.writeTextFile(
      `${dir}/k.json`,
      JSON.stringify({
        timings: [{ kernel: "spmm rows (top-K)", S: 0.5, batch: 1, ms: 1, denseMs: 2, speedup: 2 }],
      }),
    );
    await Deno.writeTextFile(`${dir}/other.json`, JSON.stringify({ rows: [] }));
    const bench = await readBenchFiles(dir);
    assert.deepEqual(bench.map((b) => [b.file, b.report !== null]), [["k.json", true], [
      "other.json",
      false,
    ]]);
    assert.equal(await saveMarkdown("x", "f", "smoke", dir), null);
    assert.equal(await saveMarkdown("x", "f", "full", dir), `${dir}/findings/f.md`);
    assert.equal(await Deno.readTextFile(`${dir}/findings/f.md`), "x\n");
    assert.equal(await saveFigure(null as never, "f", "smoke", { resultsDir: dir }), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kernel timings and summaries: inline report, bench format, unknown shapes", async () => {
  const dev = await openDevice({ prefer: "cpu" });
  try {
    const r = await timeSparseKernels(dev, {
      dIn: 64,
      dOut: 32,
      sparsities: [0.5, 0.75],
      batches: [1, 4],
      iters: 1,
      reps: 1,
    });
    assert.equal(r.backend, "cpu");
    const s = kernelSummary(r, "inline")!;
    assert.deepEqual(s.gemv.map((g) => g.S), [0.5, 0.75]);
    assert.deepEqual(s.batchTopk.map((b) => b.B), [1, 4]);
    assert.deepEqual(s.batchNm.map((b) => b.B), [1, 4]);
    assert.ok(s.vsSparsity.some((v) => v.name === "spmm N:M"));
    assert.equal(kernelFindings(s).length, 3);
    await assert.rejects(() => timeSparseKernels(dev, { dIn: 40 }), /multiple of 32/);
  } finally {
    dev.destroy();
  }
  const bench = {
    adapter: "a",
    topk: { shape: [2, 8], k: 4, ms: { kit: 1, peer: 5 } },
    gemv: {
      rows: [{ S: 0.5, speedup: 2, speedupSpmmOnly: 2.2, vsSameKernelDense: 0.7 }],
      nm16of32: { speedup: 1.5 },
    },
    batched: [{ B: 1, S: 0.6, kernel: "rows", union: 0.4, speedup: 2, nmSpeedup: 1.5 }],
  };
  const b = kernelSummary(bench, "sparsity.json")!;
  assert.equal(b.tables.length, 2);
  assert.deepEqual(b.vsSparsity.map((v) => v.name).at(-1), "N:M 16:32 vs dense matmul");
  // The fair (same-kernel) ratio decides: 0.7× is no speed-up even though 2× vs dense is.
  assert.equal(kernelFindings(b)[0]!.verdict, "not reproduced at this scale");
  assert.equal(kernelSummary(null, "x"), null);
  assert.equal(kernelSummary({ gemv: {} }, "x"), null);
});

Deno.test("token budget: each 4× gap is taken against the 4× dense run of the same seed", () => {
  // Both seeds keep a 0.1 nat gap at 1× and at 4×, but seed 2 sits 0.5 nats higher throughout:
  // pairing seed 2's sparse run with seed 1's dense run would invent a 0.5 nat change.
  const at = (S: number, seed: number, loss: number, budget?: number) =>
    record({
      size: "tiny",
      N: 1,
      S,
      seed,
      loss,
      tags: { size: "tiny", S, seed, variant: "topk", ...(budget ? { budget } : {}) },
    });
  const main = [at(0, 1, 2.0), at(0.5, 1, 2.1), at(0, 2, 2.5), at(0.5, 2, 2.6)];
  const budget = [at(0, 1, 1.8, 4), at(0.5, 1, 1.9, 4), at(0, 2, 2.3, 4), at(0.5, 2, 2.4, 4)];
  const { finding, rows } = tokenBudgetFinding(main, budget);
  assert.equal(rows.length, 2);
  for (const r of rows) assert.ok(Math.abs(r.gap4.value - r.gap1.value) < 1e-9);
  assert.equal(finding.verdict, "reproduced");
  assert.match(finding.note!, /1 size \(tiny\), 2 seeds; 2 sparse runs/);
  // A 4× run whose seed has no dense 4× run is left out, not paired across seeds.
  assert.equal(tokenBudgetFinding(main, budget.slice(1)).rows.length, 1);
});
