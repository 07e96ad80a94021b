/**
 * Grid progress (studies/progress.ts) on the v2 grids' own runs: finished runs are matched by
 * study and id and counted per row and column tag, missing runs are listed, a run finished at a
 * config the grid no longer asks for (another LR) is stale, and a finished run outside the grid
 * is extra.
 */
import assert from "node:assert/strict";
import type { RunRecord, RunSpec } from "../src/train/mod.ts";
import { gridProgress, progressMarkdown, v2StudyRuns } from "../studies/mod.ts";

const finished = (s: RunSpec, config = s.config): RunRecord =>
  ({ id: s.id, study: s.study, tags: s.tags, config, valLoss: 2.5 }) as unknown as RunRecord;

const specs = v2StudyRuns("scaling_v2", "full", { lrTable: null });

Deno.test("progress: counts per size × S, missing ids, nothing stale when configs agree", () => {
  // Seed 1 of xxs done, plus seed 2 at S = 0.
  const done = specs.filter((s) =>
    s.tags.size === "xxs" && (s.tags.seed === 1 || (s.tags.seed === 2 && s.tags.S === 0))
  );
  const p = gridProgress(specs, done.map((s) => finished(s)));
  assert.deepEqual([p.done, p.expected], [10, 108]);
  assert.deepEqual(p.rows, ["xxs", "tiny", "xs", "n853k"]);
  assert.deepEqual(p.columns, ["0", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"]);
  const cell = (row: string, column: string) =>
    p.cells.find((c) => c.row === row && c.column === column)!;
  assert.deepEqual([cell("xxs", "0").done, cell("xxs", "0").expected], [2, 3]);
  assert.deepEqual(cell("xxs", "0").missing, ["xxs-S0.0-seed3"]);
  assert.deepEqual([cell("tiny", "0.9").done, cell("tiny", "0.9").expected], [0, 3]);
  assert.deepEqual(p.stale, []);
  assert.deepEqual(p.extra, []);
  const md = progressMarkdown(p);
  assert.match(md, /10 of the grid's 108 runs \(9%\) have finished/);
  assert.match(md, /\| xxs \| 2\/3 \| 1\/3 \|/);
  assert.match(md, /\| tiny \| — \| — \|.* \| 0 \/ 27 \|/);
  assert.match(md, /size = xxs: 17 of 27 missing;/); // too many ids to list
  assert.match(md, /size = tiny: all 27 missing/);
  assert.doesNotMatch(md, /Stale|Beyond the grid/);
});

Deno.test("progress: a run trained at another LR is stale; a run outside the grid is extra", () => {
  const s0 = specs[0]!;
  const stale = finished(s0, { ...s0.config, lr: s0.config.lr * 2 });
  const extra = { ...finished(s0), id: "m-S0.0-seed1" } as RunRecord;
  const p = gridProgress(specs, [stale, extra]);
  assert.equal(p.done, 1);
  assert.deepEqual(p.stale.map((x) => x.id), [s0.id]);
  assert.match(p.stale[0]!.why, new RegExp(`^lr ${s0.config.lr * 2} \\(grid: ${s0.config.lr}\\)$`));
  assert.deepEqual(p.extra, ["m-S0.0-seed1"]);
  const md = progressMarkdown(p);
  assert.match(md, /\*\*Stale\*\*.*xxs-S0\.0-seed1: lr/);
  assert.match(md, /\*\*Beyond the grid\*\* \(analysed too\): m-S0\.0-seed1/);
  // A record of another study with the same id is not this grid's run.
  assert.equal(gridProgress(specs, [{ ...finished(s0), study: "lr_tuning" } as RunRecord]).done, 0);
});

Deno.test("progress: fixed_na by S × seed, complete", () => {
  const na = v2StudyRuns("fixed_na", "full", { lrTable: null });
  const p = gridProgress(na, na.map((s) => finished(s)), { rows: "S", columns: "seed" });
  assert.deepEqual([p.done, p.expected], [15, 15]);
  assert.deepEqual(p.rows, ["0", "0.3", "0.45", "0.6", "0.75"]);
  assert.deepEqual(p.columns, ["1", "2", "3"]);
  const md = progressMarkdown(p);
  assert.match(md, /\| 0\.45 \| ✓ \| ✓ \| ✓ \| 3 \/ 3 \|/);
  assert.match(md, /\*\*Nothing is missing\.\*\*/);
});
