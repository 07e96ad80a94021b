/**
 * LR tuning: the pick is the rate with the lowest loss averaged over both sparsities; incomplete
 * tuning never decides; a diverged run never wins; edge picks are flagged; the table round-trips
 * through its file and the v2 grids read it; lrFor interpolates in log N. What notebook 07 shows:
 * the per-size summary (done runs, losses, pick, stale table), its table and figure, and the LR
 * table the grids are built from (picks merged over the committed table).
 */
import assert from "node:assert/strict";
import type { RunRecord } from "../src/train/mod.ts";
import {
  bestLearningRates,
  FALLBACK_LR,
  lrFor,
  lrTablePath,
  lrTuningFigure,
  lrTuningGrid,
  lrTuningMarkdown,
  lrTuningSummary,
  readLrTable,
  V2_PROFILES,
  v2LrTable,
  v2StudyRuns,
} from "../studies/mod.ts";

const run = (size: string, lr: number, S: number, valLoss: number, N = 1e5) =>
  ({
    id: `${size}-${lr}-${S}`,
    tags: { size, S, lr, seed: 1 },
    valLoss,
    N,
    tokens: 20 * N,
  }) as unknown as RunRecord;

const grid = (size: string, loss: (lr: number, S: number) => number, N = 1e5) =>
  [1e-3, 2e-3, 4e-3, 8e-3].flatMap((lr) => [0, 0.8].map((S) => run(size, lr, S, loss(lr, S), N)));

Deno.test("the pick minimises the loss averaged over S = 0 and S = .8", () => {
  // Dense alone prefers 8e-3; S = .8 is much worse there; the average prefers 4e-3.
  const loss = (lr: number, S: number) =>
    S === 0 ? 3 - lr * 10 : 3 + (lr === 8e-3 ? 0.2 : -lr * 10);
  const t = bestLearningRates(grid("a", loss));
  assert.equal(t.sizes.a!.lr, 4e-3);
  assert.equal(t.sizes.a!.edge, false);
  assert.equal(t.sizes.a!.candidates.length, 4);
  assert.ok(t.sizes.a!.candidates.every((c) => c.runs === 2));
});

Deno.test("incomplete tuning is left out; a diverged run never wins; edges are flagged", () => {
  const runs = grid("a", (lr) => 3 - lr).slice(0, -1); // the last cell missing
  const expect = { lrs: [1e-3, 2e-3, 4e-3, 8e-3], sparsities: [0, 0.8] };
  assert.equal(bestLearningRates(runs, { expect }).sizes.a, undefined);
  const diverged = grid("b", (lr, S) => (lr === 8e-3 && S === 0.8 ? NaN : 3 - lr * 10));
  assert.equal(bestLearningRates(diverged).sizes.b!.lr, 4e-3);
  const edge = bestLearningRates(grid("c", (lr) => 3 - lr * 10));
  assert.equal(edge.sizes.c!.lr, 8e-3);
  assert.equal(edge.sizes.c!.edge, true);
});

Deno.test("lrFor: own size, log-log interpolation, nearest outside, fallback without a table", () => {
  const t = bestLearningRates([
    ...grid("small", (lr) => Math.abs(Math.log2(lr / 8e-3)), 1e4),
    ...grid("big", (lr) => Math.abs(Math.log2(lr / 2e-3)), 1e6),
  ]);
  assert.deepEqual(lrFor(1e4, t), { lr: 8e-3, source: "tuned" });
  assert.deepEqual(lrFor(1e6, t), { lr: 2e-3, source: "tuned" });
  const mid = lrFor(1e5, t);
  assert.equal(mid.source, "interpolated");
  assert.ok(Math.abs(mid.lr - 4e-3) < 1e-12);
  assert.deepEqual(lrFor(1e3, t), { lr: 8e-3, source: "nearest" });
  assert.deepEqual(lrFor(1e5, { ...t, sizes: {} }), { lr: FALLBACK_LR, source: "fallback" });
});

Deno.test("the table round-trips through its file and the grid reads it via QSPARSE_LR_TABLE", async () => {
  const dir = await Deno.makeTempDir();
  const prev = Deno.env.get("QSPARSE_LR_TABLE");
  try {
    const path = `${dir}/lr.json`;
    const t = bestLearningRates(grid("xxs", (lr) => Math.abs(Math.log2(lr / 2e-3)), 26784));
    await Deno.writeTextFile(path, JSON.stringify(t));
    assert.deepEqual(readLrTable(path), t);
    Deno.env.set("QSPARSE_LR_TABLE", path);
    assert.equal(lrTablePath("full"), path);
    const runs = v2StudyRuns("scaling_v2", "full").filter((r) => r.tags.size === "xxs");
    assert.ok(runs.every((r) => r.config.lr === 2e-3 && r.tags.lrSource === "tuned"));
    await Deno.writeTextFile(path, JSON.stringify({ nope: 1 }));
    assert.throws(() => readLrTable(path), /not an LR table/);
  } finally {
    if (prev === undefined) Deno.env.delete("QSPARSE_LR_TABLE");
    else Deno.env.set("QSPARSE_LR_TABLE", prev);
    await Deno.remove(dir, { recursive: true });
  }
});

const run2 = (size: string, lr: number, S: number, valLoss: number, N: number) =>
  ({
    id: `${size}-S${S}-lr${lr}`,
    study: "lr_tuning",
    tags: { size, S, lr, seed: 1 },
    valLoss,
    valStderr: 0.007,
    N,
    tokens: 20 * N,
  }) as unknown as RunRecord;

/** A full-profile tuning of `size` with its optimum at `best` (the loss rises in |log2(lr/best)|). */
function tuned(size: string, best: number, N: number, skip = 0): RunRecord[] {
  const g = lrTuningGrid(V2_PROFILES.full);
  const runs = g.lrs(size).flatMap((lr) =>
    g.sparsities.map((S) =>
      run2(size, lr, S, 2.5 + S / 10 + 0.05 * Math.abs(Math.log2(lr / best)), N)
    )
  );
  return runs.slice(0, runs.length - skip);
}

Deno.test("summary: done runs, losses per rate and S, the pick only when complete", () => {
  const records = [...tuned("xxs", 1.6e-2, 26784), ...tuned("tiny", 2e-3, 94528, 1)];
  const rows = lrTuningSummary(records, lrTuningGrid(V2_PROFILES.full), null);
  assert.deepEqual(rows.map((r) => r.size), ["xxs", "tiny", "xs", "n853k"]);
  const [xxs, tiny, xs] = rows;
  assert.deepEqual([xxs!.done, xxs!.expected], [12, 12]); // xxs tries 1.6e-2 and 3.2e-2 too
  assert.equal(xxs!.pick!.lr, 1.6e-2);
  assert.equal(xxs!.pick!.edge, false);
  const at = xxs!.rates.find((r) => r.lr === 1.6e-2)!;
  assert.deepEqual(at.bySparsity.map((b) => b.loss), [2.5, 2.58]);
  assert.ok(Math.abs(at.mean - 2.54) < 1e-12);
  assert.equal(at.bySparsity[0]!.se, 0.007);
  // tiny lacks its last run: no pick, and the missing cell is NaN, not a number made up.
  assert.deepEqual([tiny!.done, tiny!.expected, tiny!.pick], [7, 8, null]);
  assert.ok(Number.isNaN(tiny!.rates.at(-1)!.bySparsity.at(-1)!.loss));
  assert.ok(Number.isNaN(tiny!.rates.at(-1)!.mean));
  assert.deepEqual([xs!.done, xs!.expected, xs!.pick], [0, 8, null]);
  assert.ok(Number.isNaN(xs!.N));
});

Deno.test("markdown: the pick in bold, edges and a stale LR table flagged, untuned sizes said so", () => {
  const records = [...tuned("xxs", 8e-3, 26784), ...tuned("tiny", 1e-3, 94528)];
  const table = bestLearningRates(records, { expect: lrTuningGrid(V2_PROFILES.full) });
  const stale = { ...table, sizes: { ...table.sizes, xxs: { ...table.sizes.xxs!, lr: 4e-3 } } };
  const md = lrTuningMarkdown(lrTuningSummary(records, lrTuningGrid(V2_PROFILES.full), stale));
  assert.match(md, /\| xxs \| 26,784 \| 20\.0 \| 12 \/ 12 \|/);
  assert.match(md, /\| \*\*2\.540\*\* \(2\.500 \/ 2\.580\) \| 2\.590/); // xxs at 8e-3, the pick
  assert.match(
    md,
    /\| 8e-3 \| no \| S = 0: 8e-3 \(\+0\.000\); S = 0\.8: 8e-3 \(\+0\.000\) \| 4e-3 ⚠ differs from the pick/,
  );
  // tiny's pick is the lowest rate tried: on the edge.
  assert.match(
    md,
    /\| 1e-3 \| ⚠ yes: the optimum may lie outside the grid \| S = 0: 1e-3 .* \| 1e-3 \|/,
  );
  assert.match(md, /\| xs \| — \| — \| 0 \/ 8 \|.*not tuned yet: 0 of 8 runs/);
});

Deno.test("figure: per size a line per tuning S with error bars, their mean, the pick starred", () => {
  const rows = lrTuningSummary(
    [...tuned("xxs", 8e-3, 26784), ...tuned("tiny", 2e-3, 94528, 3)],
    lrTuningGrid(V2_PROFILES.full),
    null,
  );
  const fig = lrTuningFigure(rows);
  const names = fig.data.map((t) => t.name);
  // xxs: S = 0, S = 0.8, mean, pick; tiny (incomplete): S = 0, S = 0.8, mean; no pick.
  assert.deepEqual(names, [
    "xxs, S = 0",
    "xxs, S = 0.8",
    "xxs, mean over S",
    "xxs pick 8e-3",
    "tiny, S = 0",
    "tiny, S = 0.8",
    "tiny, mean over S",
  ]);
  assert.equal((fig.data[0]!.error_y as { array: number[] }).array[0], 0.007);
  assert.deepEqual(fig.data[3]!.x, [8e-3]);
  // Missing runs leave gaps, not zeros: tiny's S = 0.8 line stops before its last rates.
  assert.equal((fig.data[5]!.x as number[]).length, 2);
  assert.equal(
    lrTuningFigure(lrTuningSummary([], lrTuningGrid(V2_PROFILES.full), null)).data.length,
    0,
  );
});

Deno.test("v2LrTable: picks of these results over the base table; smoke never reads a file", () => {
  const base = bestLearningRates(tuned("xs", 4e-3, 332448), {
    expect: lrTuningGrid(V2_PROFILES.full),
  });
  const t = v2LrTable("full", tuned("xxs", 1.6e-2, 26784), { base });
  assert.equal(t.sizes.xxs!.lr, 1.6e-2);
  assert.equal(t.sizes.xs!.lr, 4e-3); // kept from the base
  const over = v2LrTable("full", tuned("xs", 2e-3, 332448), { base });
  assert.equal(over.sizes.xs!.lr, 2e-3); // fresh results win
  // Incomplete tuning picks nothing; the grid built from it trains xs at the base's rate.
  const partial = v2LrTable("full", tuned("tiny", 2e-3, 94528, 1), { base });
  assert.equal(partial.sizes.tiny, undefined);
  // Smoke: its grid's rates, and no base unless given.
  const g = lrTuningGrid(V2_PROFILES.smoke);
  const smokeRuns = g.lrs("xxs").flatMap((lr) =>
    g.sparsities.map((S) => run2("xxs", lr, S, 3 + Math.abs(Math.log2(lr / 2e-3)), 26784))
  );
  assert.deepEqual(Object.keys(v2LrTable("smoke", smokeRuns).sizes), ["xxs"]);
});

Deno.test("markdown: when the sparsities' own optima differ, the shared pick's excess shows", () => {
  // Dense is best at 8e-3, S = .8 at 1.6e-2 and twice as sensitive: the average picks 1.6e-2,
  // which costs dense 0.05 nats against its own best (a bias of the gap at this size).
  const g = lrTuningGrid(V2_PROFILES.full);
  const best: Record<number, [number, number]> = { 0: [8e-3, 0.05], 0.8: [1.6e-2, 0.1] };
  const records = g.lrs("xxs").flatMap((lr) =>
    g.sparsities.map((S) => {
      const [at, k] = best[S]!;
      return run2("xxs", lr, S, 2.5 + S / 10 + k * Math.abs(Math.log2(lr / at)), 26784);
    })
  );
  const [row] = lrTuningSummary(records, g, null);
  assert.equal(row!.pick!.lr, 1.6e-2);
  const md = lrTuningMarkdown([row!]);
  assert.match(md, /\| S = 0: 8e-3 \(\+0\.050\); S = 0\.8: 1\.6e-2 \(\+0\.000\) \|/);
});
