/**
 * The peak learning rate per model size, from the `lr_tuning` study: each size trains on a grid
 * of peak rates at S = 0 and S = 0.8 (one seed), and the rate with the lowest validation loss
 * averaged over both sparsities is kept. The picks live in a committed JSON file (the "LR
 * table", `results/lr_tuning_best.json`) that the v2 grids read when they are built, so a sweep
 * started later trains every size at its tuned rate. A size not tuned yet trains at the fallback
 * rate (3e-3, the v1 grid's) and its runs say so in their `lrSource` tag.
 *
 * Why both sparsities: the picked rate serves every S of the size, and a rate that is best for
 * dense but diverges under top-K at high S (or the reverse) would bias the gap to dense.
 *
 * @module
 */
import { ValueError } from "../src/core/errors.ts";
import { Figure, type PlotlyTrace } from "../src/plot/figure.ts";
import type { RunRecord } from "../src/train/runner.ts";
import { markdownTable } from "./findings.ts";

/** The peak learning rate a size trains at when it has no tuning result yet. */
export const FALLBACK_LR = 3e-3;

/** One size's tuning outcome. */
export interface LrPick {
  /** The picked peak learning rate. */
  lr: number;
  /** Non-embedding parameters of the size. */
  N: number;
  /** Every candidate: its rate, its loss averaged over the tuning sparsities, runs behind it. */
  candidates: { lr: number; loss: number; runs: number }[];
  /** The pick is the smallest or largest rate of the grid: the optimum may lie outside it. */
  edge: boolean;
  /** The tuning sparsities the average is over. */
  sparsities: number[];
  /** Training tokens of the tuning runs. */
  tokens: number;
}

/** The picks per size, as stored in the LR table file. */
export interface LrTable {
  /** The study the picks come from. */
  study: string;
  /** How a rate was picked, in words. */
  rule: string;
  /** When the table was written (ISO 8601). */
  updated: string;
  /** One pick per tuned size. */
  sizes: Record<string, LrPick>;
}

/** A learning rate for a run and where it came from. */
export interface LrChoice {
  /** The peak learning rate. */
  lr: number;
  /**
   * `tuned`: the size's own pick; `interpolated`: log-linear in log N between the two tuned
   * sizes around N; `nearest`: N lies outside the tuned sizes, the nearest one's pick;
   * `fallback`: nothing tuned yet, {@link FALLBACK_LR}.
   */
  source: "tuned" | "interpolated" | "nearest" | "fallback";
}

const RULE = "lowest validation loss averaged over the tuning sparsities (one seed each); " +
  "a size is picked only when every rate × sparsity run has finished";

/**
 * Picks the best peak learning rate per size from `lr_tuning` results. A size is picked only
 * when every (rate, sparsity) cell it was tuned on has a finished run, so a half-finished tuning
 * never decides. Runs carry the tags `size`, `S` and `lr`.
 *
 * @param records Results of the `lr_tuning` study.
 * @param opts `expect`: the grid's rates (one list, or per size) and sparsities (default: those
 *   found in the records).
 * @returns The table (sizes with incomplete tuning are left out).
 *
 * @example
 * ```ts
 * import type { RunRecord } from "@qsparse/kit/train";
 * import { bestLearningRates } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const run = (lr: number, S: number, valLoss: number) =>
 *   ({ tags: { size: "xs", S, lr, seed: 1 }, valLoss, N: 332448, tokens: 1e6 }) as unknown as RunRecord;
 * const t = bestLearningRates([
 *   run(1e-3, 0, 2.3), run(1e-3, 0.8, 2.5), run(2e-3, 0, 2.2), run(2e-3, 0.8, 2.45),
 *   run(4e-3, 0, 2.25), run(4e-3, 0.8, 2.44),
 * ]);
 * assert.equal(t.sizes.xs!.lr, 2e-3);
 * assert.equal(t.sizes.xs!.edge, false);
 * ```
 */
export function bestLearningRates(
  records: readonly RunRecord[],
  opts: {
    expect?: {
      lrs: readonly number[] | ((size: string) => readonly number[]);
      sparsities: readonly number[];
    };
  } = {},
): LrTable {
  const bySize = new Map<string, RunRecord[]>();
  for (const r of records) {
    const size = r.tags.size;
    if (typeof size !== "string" || typeof r.tags.lr !== "number" || typeof r.tags.S !== "number") {
      continue;
    }
    bySize.set(size, [...(bySize.get(size) ?? []), r]);
  }
  const sizes: Record<string, LrPick> = {};
  for (const [size, runs] of bySize) {
    const want = opts.expect?.lrs;
    const expected = typeof want === "function" ? want(size) : want;
    const lrs = [...new Set(expected ?? runs.map((r) => r.tags.lr as number))].sort(
      (a, b) => a - b,
    );
    const sparsities = [...new Set(opts.expect?.sparsities ?? runs.map((r) => r.tags.S as number))]
      .sort((a, b) => a - b);
    const cell = (lr: number, S: number) =>
      runs.filter((r) => close(r.tags.lr as number, lr) && close(r.tags.S as number, S));
    const complete = lrs.every((lr) => sparsities.every((S) => cell(lr, S).length > 0));
    if (!complete || lrs.length === 0) continue;
    const candidates = lrs.map((lr) => {
      // Mean over sparsities of the mean over that cell's runs (one seed in the grid).
      const perS = sparsities.map((S) => mean(cell(lr, S).map((r) => r.valLoss)));
      return {
        lr,
        loss: mean(perS),
        runs: sparsities.reduce((a, S) => a + cell(lr, S).length, 0),
      };
    });
    // A diverged run reports NaN or Infinity: it never wins.
    const finite = candidates.filter((c) => Number.isFinite(c.loss));
    if (!finite.length) continue;
    const best = finite.reduce((a, b) => (b.loss < a.loss ? b : a));
    sizes[size] = {
      lr: best.lr,
      N: runs[0]!.N,
      candidates,
      edge: lrs.length > 1 && (best.lr === lrs[0] || best.lr === lrs[lrs.length - 1]),
      sparsities,
      tokens: runs[0]!.tokens,
    };
  }
  return { study: "lr_tuning", rule: RULE, updated: new Date().toISOString(), sizes };
}

function close(a: number, b: number): boolean {
  return Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));
}

function mean(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/**
 * The peak learning rate for a model of `N` non-embedding parameters: the pick of a tuned size
 * of that N (within 0.5%), else interpolated linearly in (log N, log lr) between the tuned sizes
 * around it, else the nearest tuned size's, else {@link FALLBACK_LR}.
 *
 * @param N Non-embedding parameters of the model.
 * @param table The LR table (or null: nothing tuned).
 * @returns The rate and its source.
 *
 * @example
 * ```ts
 * import { lrFor, type LrTable } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const pick = (lr: number, N: number) =>
 *   ({ lr, N, candidates: [], edge: false, sparsities: [0, 0.8], tokens: 1 });
 * const table: LrTable = { study: "lr_tuning", rule: "", updated: "", sizes: { a: pick(4e-3, 1e5), b: pick(1e-3, 1e7) } };
 * assert.deepEqual(lrFor(1e5, table), { lr: 4e-3, source: "tuned" });
 * const mid = lrFor(1e6, table); // halfway in log N: halfway in log lr
 * assert.equal(mid.source, "interpolated");
 * assert.ok(Math.abs(mid.lr - 2e-3) < 1e-12);
 * assert.deepEqual(lrFor(1e8, table), { lr: 1e-3, source: "nearest" });
 * assert.deepEqual(lrFor(1e6, null), { lr: 3e-3, source: "fallback" });
 * ```
 */
export function lrFor(N: number, table: LrTable | null): LrChoice {
  const picks = Object.values(table?.sizes ?? {}).filter((p) => p.lr > 0 && p.N > 0)
    .sort((a, b) => a.N - b.N);
  if (!picks.length) return { lr: FALLBACK_LR, source: "fallback" };
  const own = picks.find((p) => Math.abs(p.N / N - 1) <= 0.005);
  if (own) return { lr: own.lr, source: "tuned" };
  if (N < picks[0]!.N) return { lr: picks[0]!.lr, source: "nearest" };
  if (N > picks[picks.length - 1]!.N) return { lr: picks[picks.length - 1]!.lr, source: "nearest" };
  const i = picks.findIndex((p) => p.N > N);
  const a = picks[i - 1]!, b = picks[i]!;
  const t = Math.log(N / a.N) / Math.log(b.N / a.N);
  return { lr: Math.exp(Math.log(a.lr) + t * Math.log(b.lr / a.lr)), source: "interpolated" };
}

/**
 * Where the LR table of a profile lives: `results/lr_tuning_best.json` for `full`,
 * `results/lr_tuning_best.smoke.json` for `smoke` (paths relative to the repository root), or
 * the `QSPARSE_LR_TABLE` environment variable when it is set (a smoke pipeline in a temporary
 * folder uses it).
 *
 * @param profile `smoke` or `full`.
 * @returns The path or URL of the table.
 *
 * @example
 * ```ts
 * import { lrTablePath } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.match(String(lrTablePath("full")), /lr_tuning_best\.json$/);
 * ```
 */
export function lrTablePath(profile: "smoke" | "full"): string | URL {
  let env: string | undefined;
  try {
    env = Deno.env.get("QSPARSE_LR_TABLE");
  } catch { /* no env permission: the committed table */ }
  if (env) return env;
  const name = profile === "full" ? "lr_tuning_best.json" : "lr_tuning_best.smoke.json";
  return new URL(`../results/${name}`, import.meta.url);
}

/**
 * Reads an LR table. A missing or unreadable file (no read permission, the module loaded over
 * https) is no table: every size then trains at the fallback rate, flagged in its tags.
 *
 * @param path The table file (see {@link lrTablePath}).
 * @returns The table, or null.
 * @throws {ValueError} When the file exists but is not an LR table.
 *
 * @example
 * ```ts
 * import { readLrTable } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.equal(readLrTable("/nonexistent/lr.json"), null);
 * ```
 */
export function readLrTable(path: string | URL): LrTable | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch {
    return null;
  }
  const t = JSON.parse(text) as LrTable;
  if (!t || typeof t !== "object" || typeof t.sizes !== "object" || t.sizes === null) {
    throw new ValueError("readLrTable", `${path} is not an LR table (no "sizes" object)`);
  }
  return t;
}

/** The tuning grid a size is expected to run: rates (per size) and sparsities. */
export interface LrTuningGrid {
  /** The sizes tuned, smallest first. */
  sizes: readonly string[];
  /** The peak rates a size tries. */
  lrs: (size: string) => readonly number[];
  /** The sparsities every rate trains at. */
  sparsities: readonly number[];
}

/** One size's tuning, as a notebook shows it. */
export interface LrTuningSize {
  /** The size. */
  size: string;
  /** Non-embedding parameters (NaN while the size has no finished run). */
  N: number;
  /** Training tokens per non-embedding parameter of its tuning runs (NaN: no run). */
  tokensPerParam: number;
  /** Finished tuning runs of the grid. */
  done: number;
  /** Tuning runs the grid holds for this size. */
  expected: number;
  /**
   * Every rate of the grid: the validation loss (and its evaluation error: one seed, so no
   * seed-level error exists) at each tuning sparsity, NaN where the run is missing or diverged,
   * and their mean (NaN unless every sparsity has a finite loss).
   */
  rates: { lr: number; bySparsity: { S: number; loss: number; se: number }[]; mean: number }[];
  /** The pick of {@link bestLearningRates} (null until every run of the size has finished). */
  pick: LrPick | null;
  /** The rate the given LR table holds for the size (null: none). */
  tableLr: number | null;
}

/**
 * Every size's tuning against its grid: which runs are done, the loss at each rate and sparsity,
 * the pick (only once the size is complete, as {@link bestLearningRates} rules) and what the
 * LR table the grids are built from says, so a stale table shows.
 *
 * @param records Results of the `lr_tuning` study.
 * @param grid The tuning grid (e.g. `lrTuningGrid(V2_PROFILES.full)`).
 * @param table The LR table the main grids use (null: none).
 * @returns One row per size of the grid, in grid order.
 *
 * @example One size complete, one not started
 * ```ts
 * import type { RunRecord } from "@qsparse/kit/train";
 * import { lrTuningSummary } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const run = (lr: number, S: number, valLoss: number) =>
 *   ({ tags: { size: "a", S, lr, seed: 1 }, valLoss, valStderr: 0.01, N: 1e5, tokens: 2e6 }) as unknown as RunRecord;
 * const grid = { sizes: ["a", "b"], lrs: () => [1e-3, 2e-3], sparsities: [0, 0.8] };
 * const rows = lrTuningSummary(
 *   [run(1e-3, 0, 2.3), run(1e-3, 0.8, 2.5), run(2e-3, 0, 2.2), run(2e-3, 0.8, 2.45)], grid, null,
 * );
 * assert.equal(rows[0]!.pick!.lr, 2e-3);
 * assert.equal(rows[0]!.pick!.edge, true);
 * assert.deepEqual([rows[1]!.done, rows[1]!.expected, rows[1]!.pick], [0, 4, null]);
 * ```
 */
export function lrTuningSummary(
  records: readonly RunRecord[],
  grid: LrTuningGrid,
  table: LrTable | null,
): LrTuningSize[] {
  const picks = bestLearningRates(records, {
    expect: { lrs: grid.lrs, sparsities: grid.sparsities },
  });
  return grid.sizes.map((size) => {
    const runs = records.filter((r) => r.tags.size === size);
    const cell = (lr: number, S: number) =>
      runs.filter((r) => close(r.tags.lr as number, lr) && close(r.tags.S as number, S));
    const lrs = [...grid.lrs(size)].sort((a, b) => a - b);
    const rates = lrs.map((lr) => {
      const bySparsity = grid.sparsities.map((S) => {
        const c = cell(lr, S);
        return {
          S,
          loss: c.length ? mean(c.map((r) => r.valLoss)) : NaN,
          se: c.length ? c[0]!.valStderr : NaN,
        };
      });
      return { lr, bySparsity, mean: mean(bySparsity.map((b) => b.loss)) };
    });
    const done = lrs.reduce(
      (a, lr) => a + grid.sparsities.filter((S) => cell(lr, S).length > 0).length,
      0,
    );
    return {
      size,
      N: runs.length ? runs[0]!.N : NaN,
      tokensPerParam: runs.length ? runs[0]!.tokens / runs[0]!.N : NaN,
      done,
      expected: lrs.length * grid.sparsities.length,
      rates,
      pick: picks.sizes[size] ?? null,
      tableLr: table?.sizes[size]?.lr ?? null,
    };
  });
}

/**
 * The tuning as a markdown table: per size, the mean validation loss over the tuning
 * sparsities at every rate (the pick in bold, each sparsity's loss beside it), the pick, whether
 * it sits on the edge of the grid, and whether the LR table agrees.
 *
 * @param rows From {@link lrTuningSummary}.
 * @returns Markdown.
 *
 * @example
 * ```ts
 * import { lrTuningMarkdown, type LrTuningSize } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const row: LrTuningSize = {
 *   size: "b", N: NaN, tokensPerParam: NaN, done: 0, expected: 8, pick: null, tableLr: null,
 *   rates: [{ lr: 1e-3, bySparsity: [{ S: 0, loss: NaN, se: NaN }], mean: NaN }],
 * };
 * assert.match(lrTuningMarkdown([row]), /not tuned yet: 0 of 8 runs/);
 * ```
 */
export function lrTuningMarkdown(rows: readonly LrTuningSize[]): string {
  const lrs = [...new Set(rows.flatMap((r) => r.rates.map((x) => x.lr)))].sort((a, b) => a - b);
  const sparsities = new Set(
    rows.flatMap((r) => r.rates.flatMap((x) => x.bySparsity.map((b) => b.S))),
  );
  const sLabel = [...sparsities].map((S) => `S = ${S}`).join(" / ");
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(3) : "—");
  const header = [
    "size",
    "N",
    "tokens / param",
    "runs",
    ...lrs.map((lr) => `LR ${lr.toExponential()}`),
    "pick",
    "edge of grid",
    "each S's own best (pick's excess)",
    "LR table",
  ];
  const body = rows.map((r) => {
    const cells = lrs.map((lr) => {
      const rate = r.rates.find((x) => close(x.lr, lr));
      if (!rate) return ""; // not in this size's grid
      const parts = rate.bySparsity.map((b) => f(b.loss)).join(" / ");
      const m = f(rate.mean);
      return r.pick && close(r.pick.lr, lr) ? `**${m}** (${parts})` : `${m} (${parts})`;
    });
    const tableText = r.tableLr === null
      ? "—"
      : r.pick && !close(r.pick.lr, r.tableLr)
      ? `${r.tableLr.toExponential()} ⚠ differs from the pick (re-run scripts/pick_lr.ts)`
      : r.tableLr.toExponential();
    // One rate serves every S: what that costs each S against the rate best for it alone. A
    // shared pick that is far from one S's own optimum moves that S's loss, and so its gap.
    const own = r.pick
      ? (r.rates[0]?.bySparsity ?? []).map((b, j) => {
        const best = r.rates.reduce((a, x) =>
          x.bySparsity[j]!.loss < a.bySparsity[j]!.loss ? x : a
        );
        const atPick = r.rates.find((x) => close(x.lr, r.pick!.lr))!.bySparsity[j]!.loss;
        const excess = atPick - best.bySparsity[j]!.loss;
        return `S = ${b.S}: ${best.lr.toExponential()} (+${excess.toFixed(3)})`;
      }).join("; ")
      : "—";
    return [
      r.size,
      Number.isFinite(r.N) ? r.N.toLocaleString("en-US") : "—",
      // A smoke run's few steps give well under one token per parameter: keep two digits.
      Number.isFinite(r.tokensPerParam)
        ? (r.tokensPerParam >= 1 ? r.tokensPerParam.toFixed(1) : r.tokensPerParam.toPrecision(2))
        : "—",
      `${r.done} / ${r.expected}`,
      ...cells,
      r.pick ? r.pick.lr.toExponential() : `not tuned yet: ${r.done} of ${r.expected} runs`,
      r.pick ? (r.pick.edge ? "⚠ yes: the optimum may lie outside the grid" : "no") : "—",
      own,
      tableText,
    ];
  });
  return markdownTable(header, body) +
    `\n\nCells: validation loss averaged over ${sLabel} (each in brackets), one seed; the ` +
    `pick (bold) has the lowest average and is made only once all of a size's runs have finished. ` +
    `"Own best": the rate best for that S alone, and how much higher its loss is at the pick.`;
}

/**
 * Validation loss against peak learning rate (log axis), one colour per size: a solid line per
 * tuning sparsity's runs (bars: the evaluation error of one seed; no seed-level error exists
 * for a one-seed tuning) and a dotted line of their mean, with the pick starred.
 *
 * @param rows From {@link lrTuningSummary}.
 * @returns The figure (no traces while nothing is done).
 *
 * @example
 * ```ts
 * import { lrTuningFigure, type LrTuningSize } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const b = (S: number, loss: number) => ({ S, loss, se: 0.01 });
 * const row: LrTuningSize = {
 *   size: "a", N: 1e5, tokensPerParam: 20, done: 4, expected: 4, tableLr: 2e-3,
 *   pick: { lr: 2e-3, N: 1e5, candidates: [], edge: true, sparsities: [0, 0.8], tokens: 2e6 },
 *   rates: [{ lr: 1e-3, bySparsity: [b(0, 2.3), b(0.8, 2.5)], mean: 2.4 },
 *           { lr: 2e-3, bySparsity: [b(0, 2.2), b(0.8, 2.45)], mean: 2.325 }],
 * };
 * assert.equal(lrTuningFigure([row]).data.length, 4); // 2 sparsities, the mean, the pick
 * ```
 */
export function lrTuningFigure(rows: readonly LrTuningSize[]): Figure {
  const data: PlotlyTrace[] = [];
  const dashes = ["solid", "dash", "dot", "dashdot"];
  const shown = rows.filter((r) =>
    r.rates.some((x) => x.bySparsity.some((b) => Number.isFinite(b.loss)))
  );
  shown.forEach((r, i) => {
    const color = `hsl(${(i * 360) / Math.max(1, shown.length)}, 65%, 42%)`;
    const sparsities = r.rates[0]?.bySparsity.map((b) => b.S) ?? [];
    sparsities.forEach((S, j) => {
      const pts = r.rates.map((x) => ({ lr: x.lr, b: x.bySparsity[j]! }))
        .filter((p) => Number.isFinite(p.b.loss));
      data.push({
        type: "scatter",
        mode: "lines+markers",
        name: `${r.size}, S = ${S}`,
        legendgroup: r.size,
        x: pts.map((p) => p.lr),
        y: pts.map((p) => p.b.loss),
        error_y: {
          type: "data",
          array: pts.map((p) => (Number.isFinite(p.b.se) ? p.b.se : 0)),
          visible: true,
          width: 3,
        },
        line: { color, dash: dashes[j % dashes.length] },
        marker: { color, size: 7 },
      });
    });
    const means = r.rates.filter((x) => Number.isFinite(x.mean));
    if (!means.length) return;
    data.push({
      type: "scatter",
      mode: "lines",
      name: `${r.size}, mean over S`,
      legendgroup: r.size,
      x: means.map((x) => x.lr),
      y: means.map((x) => x.mean),
      line: { color, dash: "dot", width: 1.5 },
    });
    const pick = r.pick ? means.find((x) => close(x.lr, r.pick!.lr)) : undefined;
    if (pick) {
      data.push({
        type: "scatter",
        mode: "markers",
        name: `${r.size} pick ${pick.lr.toExponential()}${r.pick!.edge ? " (edge)" : ""}`,
        legendgroup: r.size,
        x: [pick.lr],
        y: [pick.mean],
        marker: { color, size: 16, symbol: "star", line: { color: "black", width: 1 } },
      });
    }
  });
  const ticks = [...new Set(shown.flatMap((r) => r.rates.map((x) => x.lr)))].sort((a, b) => a - b);
  return new Figure(data, {
    title: { text: "LR tuning: validation loss vs peak LR (one seed; bars: evaluation error)" },
    xaxis: {
      title: { text: "peak learning rate" },
      type: "log",
      // Ticks at the rates tried: plotly's log ticks label every digit in between.
      tickvals: ticks,
      ticktext: ticks.map((lr) => lr.toExponential()),
    },
    yaxis: { title: { text: "validation loss (nats)" } },
    legend: { orientation: "v" },
  });
}
