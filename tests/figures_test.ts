/**
 * Figures as a paper's reader expects them (issue: "no error bars on loss-vs-S or the gap plot;
 * the MoE bar chart's axis starts at 2.18; the S* line on the iso-loss plot is unlabelled and
 * outside the axes; lossVsSparsity given raw two-seed records draws zig-zags").
 */
import assert from "node:assert/strict";
import { estimateBars, isoLossContours, lossVsN, lossVsSparsity } from "../src/plot/mod.ts";
import { isoLossGrid, PAPER_SCALING_LAW as PAPER, type RunRecord } from "../src/train/mod.ts";
import {
  differenceBarsOf,
  gapPointsOf,
  gapsToDense,
  groupRuns,
  isoLossSurfaceOf,
  sweepPointsOf,
} from "../studies/mod.ts";

type Trace = { x: number[]; y: number[]; error_y?: { array: number[] }; type?: string };

function rec(N: number, S: number, seed: number, loss: number): RunRecord {
  return {
    tags: { N, S, seed },
    valLoss: loss,
    valStderr: 0.001,
    N,
    Na: N * (1 - S),
    sparsity: null,
  } as unknown as RunRecord;
}

// Two seeds per cell whose losses cross: seed 1 high at S = 0.2, seed 2 high at S = 0.4.
const RAW = [
  { N: 1e5, S: 0, loss: 3.0 },
  { N: 1e5, S: 0, loss: 3.02 },
  { N: 1e5, S: 0.2, loss: 3.1 },
  { N: 1e5, S: 0.2, loss: 2.98 },
  { N: 1e5, S: 0.4, loss: 2.99 },
  { N: 1e5, S: 0.4, loss: 3.13 },
];

Deno.test("lossVsSparsity / lossVsN: raw seeds aggregate to one marker per cell with its s.e.", () => {
  const fig = lossVsSparsity(RAW);
  assert.equal(fig.data.length, 1);
  const t = fig.data[0] as unknown as Trace;
  // One point per S, x strictly increasing (a zig-zag repeats x values).
  assert.deepEqual(t.x, [0, 0.2, 0.4]);
  assert.deepEqual(t.y.map((v) => +v.toFixed(6)), [3.01, 3.04, 3.06]);
  // ±1 standard error over the two seeds: |a − b| / 2.
  assert.deepEqual(t.error_y!.array.map((v) => +v.toFixed(6)), [0.01, 0.06, 0.07]);
  const byN = lossVsN([...RAW, ...RAW.map((p) => ({ ...p, N: 1e6, loss: p.loss - 0.3 }))]);
  for (const tr of byN.data as unknown as Trace[]) {
    assert.deepEqual(tr.x, [1e5, 1e6]);
    assert.ok(tr.error_y && tr.error_y.array.every((e) => e > 0));
  }
});

Deno.test("loss-vs-S and the gap plot carry seed-level error bars from the groups", () => {
  const records = [1, 2].flatMap((seed) =>
    [0, 0.5, 0.8].map((S) => rec(1e5, S, seed, 3 + S * S * 0.2 + (seed === 1 ? 0.01 : -0.01)))
  );
  const groups = groupRuns(records);
  const points = sweepPointsOf(groups);
  assert.ok(points.every((p) => p.error !== undefined && p.error > 0));
  const t = lossVsSparsity(points).data[0] as unknown as Trace;
  assert.equal(t.error_y!.array.length, 3);
  const gaps = gapPointsOf(gapsToDense(groups));
  assert.equal(gaps.length, 2);
  // The seed offset is shared by both arms, so the within-seed gaps have no spread at all.
  assert.ok(gaps.every((g) => g.error !== undefined && g.error < 1e-12), JSON.stringify(gaps));
  const gapFig = lossVsSparsity(gaps, { zeroLine: true });
  const yaxis = gapFig.layout.yaxis as { zeroline: boolean };
  assert.equal(yaxis.zeroline, true);
});

Deno.test("estimateBars: the bar axis starts at zero; zoomed estimates are points, not bars", () => {
  const bars = [{ name: "dense", value: 2.21, error: 0.01 }, {
    name: "MoE",
    value: 2.18,
    error: 0.01,
  }];
  const fig = estimateBars(bars);
  assert.equal(fig.data[0]!.type, "bar");
  const range = (fig.layout.yaxis as { range: number[] }).range;
  assert.equal(range[0], 0);
  assert.ok(range[1]! > 2.22);
  const zoomed = estimateBars(bars, { zoom: true });
  assert.equal(zoomed.data[0]!.type, "scatter");
  assert.ok((zoomed.layout.yaxis as { range: number[] }).range[0]! > 2);
  // Differences straddle zero: the axis holds both signs.
  const diff = estimateBars([{ name: "a", value: -0.03, error: 0.01 }, {
    name: "b",
    value: 0.02,
    error: 0.01,
  }]);
  const r = (diff.layout.yaxis as { range: number[] }).range;
  assert.ok(r[0]! < -0.04 && r[1]! > 0.03, JSON.stringify(r));
});

Deno.test("differenceBarsOf: effects against a reference, within seed", () => {
  const records = [1, 2].flatMap((seed) => [
    { ...rec(1e5, 0, seed, 3 + 0.05 * seed), tags: { arm: "dense", seed } },
    { ...rec(1e5, 0, seed, 2.96 + 0.05 * seed), tags: { arm: "moe", seed } },
  ]) as RunRecord[];
  const groups = groupRuns(records);
  const dense = groups.find((g) => g.tags.arm === "dense");
  const bars = differenceBarsOf(groups, () => dense, (g) => String(g.tags.arm));
  assert.equal(bars.length, 1);
  assert.equal(bars[0]!.name, "moe");
  assert.ok(Math.abs(bars[0]!.value + 0.04) < 1e-12);
  assert.ok(bars[0]!.error! < 1e-12);
});

Deno.test("isoLossContours: the S* line is labelled on the plot and inside the axes", () => {
  const grid = isoLossGrid(PAPER, [3e8, 1e9, 7e9], [0.1, 0.3, 0.5, 0.7]);
  // An S* beyond the grid (a fit can put it at 0.89) widens the axis rather than falling outside.
  const fig = isoLossContours(grid, { sStar: 0.89 });
  const range = (fig.layout.yaxis as { range: number[] }).range;
  assert.ok(range[0]! <= 0.1 && range[1]! >= 0.89, JSON.stringify(range));
  const notes = fig.layout.annotations as { text: string; y: number }[];
  assert.ok(notes.some((a) => /S\* = 89\.0%/.test(a.text) && a.y === 0.89), JSON.stringify(notes));
  // The studies' surface extends its grid to hold the law's own S*.
  const surface = isoLossSurfaceOf({ ...PAPER, beta: 0.01 }, 3e8, 7e9, { points: 5 });
  assert.ok(surface.sparsity.at(-1)! > 0.85);
});
