/**
 * Markdown tables of analysis results (runs, gaps to dense, equal-N_a comparisons), for the
 * notebooks and the README.
 *
 * @module
 */
import { paramLabel } from "./figure_data.ts";
import { formatEstimate, markdownTable } from "./findings.ts";
import type { DenseGap, EqualNaRow, RunGroup } from "./report.ts";

function pct(x: number | undefined): string {
  return x === undefined || !Number.isFinite(x) ? "—" : `${(100 * x).toFixed(1)}%`;
}

/**
 * One row per group: the chosen tags, N, measured N_a, measured overall sparsity, seeds and
 * validation loss ± standard error.
 *
 * @param groups Groups from `groupRuns`.
 * @param tags Tag columns; default every tag of the first group.
 * @returns Markdown.
 *
 * @example
 * ```ts
 * import { groupsMarkdown, type RunGroup } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const g = { tags: { arm: "dense" }, N: 1e5, Na: 9e4, sparsity: null, loss: { mean: 2.5, se: 0.01, n: 2 } } as unknown as RunGroup;
 * assert.match(groupsMarkdown([g]), /\| dense \| 100K \| 90K \| — \| 2 \| 2\.5000 ± 0\.0100 \|/);
 * ```
 */
export function groupsMarkdown(groups: readonly RunGroup[], tags?: readonly string[]): string {
  const cols = tags ?? Object.keys(groups[0]?.tags ?? {});
  return markdownTable(
    [...cols, "N", "N_a (measured)", "overall sparsity", "seeds", "val loss"],
    groups.map((g) => [
      ...cols.map((c) => String(g.tags[c] ?? "")),
      paramLabel(g.N),
      paramLabel(g.Na),
      pct(g.sparsity?.mean),
      g.loss.n,
      formatEstimate({ value: g.loss.mean, se: g.loss.se }, 4),
    ]),
  );
}

/**
 * Gaps to dense, by size and then S: size, S, measured sparsity, dense and sparse loss, gap ± s.e.
 * and relative gap.
 *
 * @param gaps From `gapsToDense`.
 * @returns Markdown.
 *
 * @example
 * ```ts
 * import { type DenseGap, gapsMarkdown } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const gap = { N: 1e5, S: 0.5, gap: 0.02, se: 0.01, relative: 0.008, group: { loss: { mean: 2.52 }, sparsity: null }, dense: { loss: { mean: 2.5 } } } as unknown as DenseGap;
 * assert.match(gapsMarkdown([gap]), /\| 100K \| 50% \| — \| 2\.5000 \| 2\.5200 \| \+0\.0200 ± 0\.0100 \| \+0\.80% \|/);
 * ```
 */
export function gapsMarkdown(gaps: readonly DenseGap[]): string {
  return markdownTable(
    ["N", "S", "measured overall", "dense loss", "sparse loss", "gap (nats)", "gap / dense"],
    // By size, then sparsity (groups come in the order their runs finished).
    [...gaps].sort((a, b) => a.N - b.N || a.S - b.S).map((g) => [
      paramLabel(g.N),
      `${Math.round(100 * g.S)}%`,
      pct(g.group.sparsity?.mean),
      g.dense.loss.mean.toFixed(4),
      g.group.loss.mean.toFixed(4),
      formatEstimate({ value: g.gap, se: g.se }, 4, true),
      `${g.relative >= 0 ? "+" : ""}${(100 * g.relative).toFixed(2)}%`,
    ]),
  );
}

/**
 * Sparse runs against dense at equal nominal N_a.
 *
 * @param rows From `equalNaComparison`.
 * @returns Markdown.
 *
 * @example
 * ```ts
 * import { equalNaMarkdown, type EqualNaRow } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const row = { N: 4e5, S: 0.5, Na: 2e5, group: { loss: { mean: 2.7 } }, dense: { value: 2.8, se: 0.01 }, advantage: { value: 0.1, se: 0.014 } } as unknown as EqualNaRow;
 * assert.match(equalNaMarkdown([row]), /\| 400K \| 50% \| 200K \| 2\.7000 \| 2\.8000 \| \+0\.1000 ± 0\.0140 \|/);
 * ```
 */
export function equalNaMarkdown(rows: readonly EqualNaRow[]): string {
  return markdownTable(
    ["N", "S", "N_a = N(1−S)", "sparse loss", "dense loss at N_a", "dense − sparse (nats)"],
    rows.map((r) => [
      paramLabel(r.N),
      `${Math.round(100 * r.S)}%`,
      paramLabel(r.Na),
      r.group.loss.mean.toFixed(4),
      r.dense.value.toFixed(4),
      formatEstimate(r.advantage, 4, true),
    ]),
  );
}
