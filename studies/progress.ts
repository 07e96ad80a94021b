/**
 * How far a study's grid has come: which of its runs have finished, which are missing, which
 * finished at a config the grid no longer asks for (a stale run: the runner skips a run by its
 * id, so a learning-rate table changed after a run finished would otherwise go unnoticed), and
 * which finished runs lie beyond the grid (extra sizes or seeds). A notebook shows this before
 * any analysis of a partial grid, so a reader sees what a verdict rests on and what is missing.
 *
 * @module
 */
import type { RunRecord, RunSpec } from "../src/train/runner.ts";
import { markdownTable } from "./findings.ts";

/** One cell of the progress table: the runs sharing a row and a column tag value. */
export interface ProgressCell {
  /** The row's tag value. */
  row: string;
  /** The column's tag value. */
  column: string;
  /** Runs of the grid in this cell. */
  expected: number;
  /** Of those, how many have finished. */
  done: number;
  /** Ids of the missing ones. */
  missing: string[];
}

/** A finished run whose config differs from the one the grid asks for today. */
export interface StaleRun {
  /** The run's id. */
  id: string;
  /** What differs, e.g. `lr 0.008 (grid: 0.016)`. */
  why: string;
}

/** The answer of {@link gridProgress}. */
export interface GridProgress {
  /** The study. */
  study: string;
  /** The tag the rows are keyed by. */
  rowTag: string;
  /** The tag the columns are keyed by. */
  columnTag: string;
  /** Row values in grid order. */
  rows: string[];
  /** Column values in grid order. */
  columns: string[];
  /** One cell per (row, column) holding runs of the grid. */
  cells: ProgressCell[];
  /** Runs of the grid. */
  expected: number;
  /** Runs of the grid that have finished (stale ones included). */
  done: number;
  /** Finished runs of the grid trained at another config. */
  stale: StaleRun[];
  /** Ids of finished runs that are not in the grid. */
  extra: string[];
}

/** Options of {@link gridProgress}. */
export interface GridProgressOptions {
  /** The tag of the rows; default `size`. */
  rows?: string;
  /** The tag of the columns; default `S`. */
  columns?: string;
}

/** Config fields whose change makes a finished run another experiment. */
const TRAIN_KEYS = ["lr", "steps", "batchSize", "warmup", "seed"] as const;
const MODEL_KEYS = ["dModel", "nLayers", "dFF", "seqLen"] as const;

function differences(r: RunRecord, s: RunSpec): string[] {
  const out: string[] = [];
  for (const k of TRAIN_KEYS) {
    const have = r.config?.[k], want = s.config[k];
    if (have !== want) out.push(`${k} ${have} (grid: ${want})`);
  }
  for (const k of MODEL_KEYS) {
    const have = r.config?.model?.[k], want = s.config.model[k];
    if (have !== want) out.push(`${k} ${have} (grid: ${want})`);
  }
  return out;
}

/**
 * The progress of a grid: its runs matched to the finished records by study and id, counted per
 * (row tag, column tag) cell.
 *
 * @param specs The grid (e.g. `v2StudyRuns("scaling_v2", "full")`).
 * @param records The study's finished runs.
 * @param opts The row and column tags.
 * @returns Counts, missing ids, stale and extra runs.
 *
 * @example Two seeds planned, one done
 * ```ts
 * import type { RunRecord, RunSpec } from "@qsparse/kit/train";
 * import { gridProgress } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const config = { lr: 1e-3, steps: 10, batchSize: 4, warmup: 1, seed: 1, model: { dModel: 32, nLayers: 2, dFF: 96, seqLen: 32 } };
 * const spec = (seed: number) => ({ id: `a-S0-seed${seed}`, study: "g", tags: { size: "a", S: 0, seed }, config: { ...config, seed } }) as unknown as RunSpec;
 * const p = gridProgress([spec(1), spec(2)], [{ ...spec(1), valLoss: 2 } as unknown as RunRecord]);
 * assert.deepEqual([p.done, p.expected], [1, 2]);
 * assert.deepEqual(p.cells[0]!.missing, ["a-S0-seed2"]);
 * ```
 */
export function gridProgress(
  specs: readonly RunSpec[],
  records: readonly RunRecord[],
  opts: GridProgressOptions = {},
): GridProgress {
  const rowTag = opts.rows ?? "size", columnTag = opts.columns ?? "S";
  const key = (r: { study: string; id: string }) => `${r.study}/${r.id}`;
  const finished = new Map(records.map((r) => [key(r), r]));
  const planned = new Set(specs.map(key));
  const rows: string[] = [], columns: string[] = [];
  const cells = new Map<string, ProgressCell>();
  const stale: StaleRun[] = [];
  let done = 0;
  for (const s of specs) {
    const row = String(s.tags[rowTag]), column = String(s.tags[columnTag]);
    if (!rows.includes(row)) rows.push(row);
    if (!columns.includes(column)) columns.push(column);
    const k = `${row}\u0000${column}`;
    const cell = cells.get(k) ?? { row, column, expected: 0, done: 0, missing: [] };
    cells.set(k, cell);
    cell.expected++;
    const r = finished.get(key(s));
    if (!r) {
      cell.missing.push(s.id);
      continue;
    }
    cell.done++;
    done++;
    const diff = differences(r, s);
    if (diff.length) stale.push({ id: s.id, why: diff.join(", ") });
  }
  return {
    study: specs[0]?.study ?? records[0]?.study ?? "",
    rowTag,
    columnTag,
    rows,
    columns,
    cells: [...cells.values()],
    expected: specs.length,
    done,
    stale,
    extra: records.filter((r) => !planned.has(key(r))).map((r) => r.id),
  };
}

/**
 * The progress as markdown: one sentence with the counts, a table of finished / planned runs per
 * (row, column) cell (✓ when complete, — when none has finished), and what is missing, row by
 * row, in words; stale and extra runs are listed after it.
 *
 * @param p From {@link gridProgress}.
 * @returns Markdown.
 *
 * @example
 * ```ts
 * import { type GridProgress, progressMarkdown } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const p: GridProgress = {
 *   study: "g", rowTag: "size", columnTag: "S", rows: ["a"], columns: ["0", "0.5"],
 *   cells: [
 *     { row: "a", column: "0", expected: 2, done: 2, missing: [] },
 *     { row: "a", column: "0.5", expected: 2, done: 0, missing: ["a-S0.5-seed1", "a-S0.5-seed2"] },
 *   ],
 *   expected: 4, done: 2, stale: [], extra: [],
 * };
 * const md = progressMarkdown(p);
 * assert.match(md, /2 of the grid's 4 runs \(50%\)/);
 * assert.match(md, /\| a \| ✓ \| — \|/);
 * assert.match(md, /size = a: 2 of 4 missing \(a-S0\.5-seed1, a-S0\.5-seed2\)/);
 * ```
 */
export function progressMarkdown(p: GridProgress): string {
  const cell = (row: string, column: string) =>
    p.cells.find((c) => c.row === row && c.column === column);
  const table = markdownTable(
    [`${p.rowTag} \\ ${p.columnTag}`, ...p.columns, "done"],
    p.rows.map((row) => {
      const cs = p.cells.filter((c) => c.row === row);
      const d = cs.reduce((a, c) => a + c.done, 0), e = cs.reduce((a, c) => a + c.expected, 0);
      return [
        row,
        ...p.columns.map((column) => {
          const c = cell(row, column);
          if (!c) return "";
          return c.done === c.expected ? "✓" : c.done === 0 ? "—" : `${c.done}/${c.expected}`;
        }),
        `${d} / ${e}`,
      ];
    }),
  );
  const pctDone = p.expected ? Math.round((100 * p.done) / p.expected) : 0;
  const lines = [
    `**\`${p.study}\`: ${p.done} of the grid's ${p.expected} runs (${pctDone}%) have finished.** ` +
    `Cells: finished / planned runs per ${p.rowTag} and ${p.columnTag} (✓ all, — none).`,
    "",
    table,
  ];
  const missing = p.rows.map((row) => {
    const cs = p.cells.filter((c) => c.row === row);
    const ids = cs.flatMap((c) => c.missing);
    const e = cs.reduce((a, c) => a + c.expected, 0);
    if (!ids.length) return null;
    const label = `${p.rowTag} = ${row}`;
    if (ids.length === e) return `${label}: all ${e} missing`;
    // A handful of ids reads better than counts; many would flood the page.
    const list = ids.length <= 6 ? ` (${ids.join(", ")})` : "";
    return `${label}: ${ids.length} of ${e} missing${list}`;
  }).filter((x): x is string => x !== null);
  lines.push(
    "",
    missing.length ? `**Missing** — ${missing.join("; ")}.` : "**Nothing is missing.**",
  );
  if (p.stale.length) {
    lines.push(
      "",
      `**Stale** (finished at a config the grid no longer asks for; the runner skips them by ` +
        `id, so they stay unless removed from the results file): ` +
        p.stale.map((s) => `${s.id}: ${s.why}`).join("; ") + ".",
    );
  }
  if (p.extra.length) {
    lines.push("", `**Beyond the grid** (analysed too): ${p.extra.join(", ")}.`);
  }
  return lines.join("\n");
}
