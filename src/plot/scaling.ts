/**
 * Figures of a sparsity × size sweep: loss against S per model size, loss against N per sparsity
 * (each with an optional fitted-law overlay), and the iso-loss contours over (N_a, S) of the
 * paper's Fig. 4.
 *
 * The builders take plain records and, for overlays, any function `(N, S) → loss`, e.g.
 * `(N, S) => scalingLaw(fit, N, S)`. Several points at one (N, S) — the seeds of a cell — are
 * averaged into one marker with a ±1 standard-error bar over them, so raw per-seed records draw
 * the same figure as their means, not a zig-zag between seeds.
 *
 * @module
 */
import { ValueError } from "../core/errors.ts";
import { axis, formatCount, groupBy, layout, line, linspace, logspace } from "./_common.ts";
import { Figure, type PlotlyTrace } from "./figure.ts";

/** One run of a sweep. */
export interface SweepPoint {
  /** Total non-embedding parameters. */
  N: number;
  /** Sparsity in [0, 1). */
  S: number;
  /** Final (validation) loss. */
  loss: number;
  /** Half-length of the error bar (e.g. one seed-level standard error); omitted: none. */
  error?: number;
}

/** One marker per (N, S): the mean over its points and the error bar. */
function aggregate(points: readonly SweepPoint[]): SweepPoint[] {
  const cells = new Map<string, SweepPoint[]>();
  for (const p of points) {
    const k = `${p.N}|${p.S}`;
    cells.set(k, [...(cells.get(k) ?? []), p]);
  }
  return [...cells.values()].map((ps) => {
    const n = ps.length, mean = ps.reduce((a, p) => a + p.loss, 0) / n;
    if (n === 1) return { ...ps[0]! };
    // Seeds of a cell: the standard error over them; given errors of the parts, whichever is
    // larger (the parts' own errors in quadrature, averaged).
    const sd = Math.sqrt(ps.reduce((a, p) => a + (p.loss - mean) ** 2, 0) / (n - 1));
    const own = ps.every((p) => p.error !== undefined)
      ? Math.sqrt(ps.reduce((a, p) => a + p.error! ** 2, 0)) / n
      : 0;
    return { N: ps[0]!.N, S: ps[0]!.S, loss: mean, error: Math.max(sd / Math.sqrt(n), own) };
  });
}

function errorBars(points: readonly SweepPoint[]): PlotlyTrace {
  return points.some((p) => p.error !== undefined && p.error > 0)
    ? { error_y: { type: "data", array: points.map((p) => p.error ?? 0), visible: true, width: 3 } }
    : {};
}

/** Options of the sweep figures. */
export interface SweepFigureOptions {
  /** Figure title. */
  title?: string;
  /** A law to draw as dashed curves, e.g. `(N, S) => scalingLaw(fit, N, S)`. */
  law?: (N: number, S: number) => number;
  /** y-axis title; default "validation loss (nats)". */
  yTitle?: string;
  /** Draw a dotted zero line (for gaps and differences). */
  zeroLine?: boolean;
}

function checkPoints(op: string, points: readonly SweepPoint[]): void {
  if (points.length === 0) throw new ValueError(op, "no points");
  for (const p of points) {
    if (!(p.N > 0) || !(p.S >= 0 && p.S < 1) || !Number.isFinite(p.loss)) {
      throw new ValueError(
        op,
        `bad point ${JSON.stringify(p)}: need N > 0, S in [0, 1), finite loss`,
      );
    }
  }
}

/**
 * Loss against sparsity, one line per model size (the paper's Fig. 3, right): at fixed N the
 * loss grows like exp(β/(1−S)).
 *
 * @param points Sweep results.
 * @param opts Title, fitted-law overlay, y title.
 * @returns The figure.
 *
 * @example
 * ```ts
 * import { PAPER_SCALING_LAW, scalingLaw } from "@qsparse/kit/train";
 * import { lossVsSparsity } from "@qsparse/kit/plot";
 * import assert from "node:assert/strict";
 * const points = [3e8, 7e8].flatMap((N) => [0, 0.4, 0.7].map((S) => ({ N, S, loss: scalingLaw(PAPER_SCALING_LAW, N, S) })));
 * const fig = lossVsSparsity(points, { law: (N, S) => scalingLaw(PAPER_SCALING_LAW, N, S) });
 * assert.equal(fig.data.length, 4); // 2 sizes × (points + law)
 * ```
 */
export function lossVsSparsity(
  points: readonly SweepPoint[],
  opts: SweepFigureOptions = {},
): Figure {
  checkPoints("lossVsSparsity", points);
  const traces: PlotlyTrace[] = [];
  const sMax = Math.max(...points.map((p) => p.S));
  groupBy(aggregate(points), (p) => p.N).forEach(([N, group], i) => {
    const sorted = [...group].sort((a, b) => a.S - b.S);
    const name = `N = ${formatCount(N)}`;
    traces.push(line(name, sorted.map((p) => p.S), sorted.map((p) => p.loss), i, {
      mode: opts.law ? "markers" : "lines+markers",
      marker: { size: 8 },
      legendgroup: name,
      ...errorBars(sorted),
    }));
    if (opts.law) {
      const s = linspace(0, Math.min(0.95, sMax + 0.05), 60);
      traces.push(line(`${name} (fit)`, s, s.map((S) => opts.law!(N, S)), i, {
        line: { dash: "dash", width: 1.5 },
        legendgroup: name,
        showlegend: false,
      }));
    }
  });
  return new Figure(
    traces,
    layout(
      opts.title,
      axis("sparsity S", { tickformat: ".0%" }),
      axis(opts.yTitle ?? "validation loss (nats)", zeroLineOf(opts)),
    ),
  );
}

function zeroLineOf(opts: SweepFigureOptions): Record<string, unknown> {
  return opts.zeroLine ? { zeroline: true, zerolinecolor: "#888", zerolinewidth: 1.5 } : {};
}

/**
 * Loss against model size (log axis), one line per sparsity (the paper's Fig. 3, left): a power
 * law in N at every S, the sparse lines closing in on dense as N grows.
 *
 * @param points Sweep results.
 * @param opts Title, fitted-law overlay, y title.
 * @returns The figure.
 *
 * @example
 * ```ts
 * import { PAPER_SCALING_LAW, scalingLaw } from "@qsparse/kit/train";
 * import { lossVsN } from "@qsparse/kit/plot";
 * import assert from "node:assert/strict";
 * const points = [3e8, 7e8, 7e9].flatMap((N) => [0, 0.5].map((S) => ({ N, S, loss: scalingLaw(PAPER_SCALING_LAW, N, S) })));
 * assert.equal(lossVsN(points).data.length, 2);
 * ```
 */
export function lossVsN(points: readonly SweepPoint[], opts: SweepFigureOptions = {}): Figure {
  checkPoints("lossVsN", points);
  const traces: PlotlyTrace[] = [];
  const nMin = Math.min(...points.map((p) => p.N)), nMax = Math.max(...points.map((p) => p.N));
  groupBy(aggregate(points), (p) => p.S).forEach(([S, group], i) => {
    const sorted = [...group].sort((a, b) => a.N - b.N);
    const name = S === 0 ? "dense" : `S = ${Number((100 * S).toFixed(1))}%`;
    traces.push(line(name, sorted.map((p) => p.N), sorted.map((p) => p.loss), i, {
      mode: opts.law ? "markers" : "lines+markers",
      marker: { size: 8 },
      legendgroup: name,
      ...errorBars(sorted),
    }));
    if (opts.law) {
      const n = logspace(nMin / 1.5, nMax * 1.5, 60);
      traces.push(line(`${name} (fit)`, n, n.map((N) => opts.law!(N, S)), i, {
        line: { dash: "dash", width: 1.5 },
        legendgroup: name,
        showlegend: false,
      }));
    }
  });
  return new Figure(
    traces,
    layout(
      opts.title,
      axis("non-embedding parameters N", { type: "log" }),
      axis(opts.yTitle ?? "validation loss (nats)", zeroLineOf(opts)),
    ),
  );
}

/** A loss surface over activated parameters and sparsity (e.g. from `isoLossGrid`). */
export interface LossSurface {
  /** Activated parameters N_a (x). */
  activated: readonly number[];
  /** Sparsity values (y). */
  sparsity: readonly number[];
  /** `loss[i][j]` at `sparsity[i]`, `activated[j]`. */
  loss: readonly (readonly number[])[];
}

/** Options of {@link isoLossContours}. */
export interface IsoLossOptions {
  /** Figure title; default "Iso-loss contours at fixed activated parameters". */
  title?: string;
  /** Draw the inference-optimal sparsity as a horizontal line. */
  sStar?: number;
  /** Approximate number of contour levels; default 12. */
  levels?: number;
}

/**
 * Iso-loss contours over activated parameters N_a (log axis) and sparsity S, as in the paper's
 * Fig. 4: at every N_a the lowest loss sits at the same S*, drawn as a dashed line.
 *
 * @param surface The grid (rows: S, columns: N_a).
 * @param opts Title, S* line, number of levels.
 * @returns The figure.
 * @throws {ValueError} When the grid's shape does not match its axes.
 *
 * @example
 * ```ts
 * import { isoLossGrid, optimalSparsity, PAPER_SCALING_LAW as p } from "@qsparse/kit/train";
 * import { isoLossContours } from "@qsparse/kit/plot";
 * import assert from "node:assert/strict";
 * const grid = isoLossGrid(p, [3e8, 1e9, 3e9, 7e9], [0.1, 0.3, 0.5, 0.7]);
 * const fig = isoLossContours(grid, { sStar: optimalSparsity(p) });
 * assert.equal(fig.data[0]!.type, "contour");
 * ```
 */
export function isoLossContours(surface: LossSurface, opts: IsoLossOptions = {}): Figure {
  const { activated, sparsity, loss } = surface;
  if (loss.length !== sparsity.length || loss.some((row) => row.length !== activated.length)) {
    throw new ValueError(
      "isoLossContours",
      `loss must be [${sparsity.length} sparsities][${activated.length} sizes], got [${loss.length}][${
        loss[0]?.length
      }]`,
    );
  }
  const traces: PlotlyTrace[] = [{
    type: "contour",
    x: [...activated],
    y: [...sparsity],
    z: loss.map((row) => [...row]),
    ncontours: opts.levels ?? 12,
    colorscale: "Viridis",
    reversescale: true,
    contours: { coloring: "heatmap", showlabels: true, labelfont: { size: 11, color: "white" } },
    colorbar: { title: { text: "loss" } },
    hovertemplate: "N_a = %{x:.3s}<br>S = %{y:.1%}<br>loss = %{z:.4f}<extra></extra>",
    name: "loss",
  }];
  const sLo = Math.min(...sparsity), sHi = Math.max(...sparsity);
  const extra: Record<string, unknown> = {
    legend: { x: 0.01, y: 0.99, bgcolor: "rgba(255,255,255,0.7)" },
  };
  // The y axis always holds the S* line: a fitted S* beyond the grid widens the axis (the contours
  // end where the grid does) rather than leaving the line outside the plot.
  const yLo = Math.min(sLo, opts.sStar ?? sLo), yHi = Math.max(sHi, opts.sStar ?? sHi);
  const pad = 0.02 * (yHi - yLo || 1);
  if (opts.sStar !== undefined) {
    const label = `S* = ${(100 * opts.sStar).toFixed(1)}%`;
    traces.push({
      type: "scatter",
      mode: "lines",
      x: [Math.min(...activated), Math.max(...activated)],
      y: [opts.sStar, opts.sStar],
      line: { color: "#d62728", dash: "dash", width: 2.5 },
      name: label,
      hovertemplate: `${label}<extra></extra>`,
    });
    // Labelled on the plot itself (a legend entry alone is lost in a static PNG).
    const nearTop = opts.sStar > yHi - 0.08 * (yHi - yLo);
    extra.annotations = [{
      xref: "paper",
      x: 0.98,
      y: opts.sStar,
      xanchor: "right",
      yanchor: nearTop ? "top" : "bottom",
      text: `<b>${label}</b>`,
      showarrow: false,
      font: { color: "#d62728", size: 13 },
      bgcolor: "rgba(255,255,255,0.75)",
    }];
  }
  return new Figure(
    traces,
    layout(
      opts.title ?? "Iso-loss contours at fixed activated parameters",
      axis("activated parameters N_a", { type: "log" }),
      axis("sparsity S", { tickformat: ".0%", range: [yLo - pad, yHi + pad] }),
      extra,
    ),
  );
}
