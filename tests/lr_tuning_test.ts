/**
 * LR tuning: the pick is the rate with the lowest loss averaged over both sparsities; incomplete
 * tuning never decides; a diverged run never wins; edge picks are flagged; the table round-trips
 * through its file and the v2 grids read it; lrFor interpolates in log N.
 */
import assert from "node:assert/strict";
import type { RunRecord } from "../src/train/mod.ts";
import {
  bestLearningRates,
  FALLBACK_LR,
  lrFor,
  lrTablePath,
  readLrTable,
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
