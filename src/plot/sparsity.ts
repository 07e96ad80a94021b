/**
 * Figures of achieved sparsity: per projection (bars), over training (lines), MoE expert load
 * (heatmap) and chunk-level sparsity (the union of masks over consecutive tokens).
 *
 * @module
 */
import { ValueError } from "../core/errors.ts";
import { axis, checkSeries, colour, layout, line } from "./_common.ts";
import { Figure, type PlotlyTrace } from "./figure.ts";

/** Sparsity per projection for one model or run. */
export interface ProjectionSparsity {
  /** Legend label (a run, a layer, ...). */
  name: string;
  /** Projection names, e.g. `["qkv", "o", "gate/up", "down"]`. */
  projections: readonly string[];
  /** Achieved input sparsity of each projection, in [0, 1]. */
  sparsity: ArrayLike<number>;
}

/** Options shared by the sparsity figures. */
export interface SparsityFigureOptions {
  /** Figure title. */
  title?: string;
  /** A target sparsity to draw as a dashed horizontal line (e.g. the top-K S). */
  target?: number;
}

function targetLine(target: number | undefined): Record<string, unknown> {
  return target === undefined ? {} : {
    shapes: [{
      type: "line",
      xref: "paper",
      x0: 0,
      x1: 1,
      y0: target,
      y1: target,
      line: { color: "#444", dash: "dash", width: 1.5 },
    }],
  };
}

/**
 * Grouped bars of achieved input sparsity per projection, one colour per run (or layer). Shows,
 * e.g., that the ReLU² down-projection input is far sparser than the top-K target elsewhere.
 *
 * @param series One entry per run or layer.
 * @param opts Title and target line.
 * @returns The figure.
 * @throws {ValueError} When projections and values differ in length.
 *
 * @example
 * ```ts
 * import { projectionSparsity } from "@qsparse/kit/plot";
 * import assert from "node:assert/strict";
 * const fig = projectionSparsity(
 *   [{ name: "Q-Sparse 70%", projections: ["qkv", "o", "gate/up", "down"], sparsity: [0.3, 0.3, 0.3, 0.78] }],
 *   { target: 0.3 },
 * );
 * assert.equal(fig.data[0]!.type, "bar");
 * ```
 */
export function projectionSparsity(
  series: readonly ProjectionSparsity[],
  opts: SparsityFigureOptions = {},
): Figure {
  const traces: PlotlyTrace[] = series.map((s, i) => {
    if (s.projections.length !== s.sparsity.length) {
      throw new ValueError(
        "projectionSparsity",
        `series "${s.name}": ${s.projections.length} projections but ${s.sparsity.length} values`,
      );
    }
    return {
      type: "bar",
      name: s.name,
      x: [...s.projections],
      y: Array.from(s.sparsity),
      marker: { color: colour(i) },
      hovertemplate: "%{x}: %{y:.1%}<extra>%{fullData.name}</extra>",
    };
  });
  return new Figure(
    traces,
    layout(
      opts.title,
      axis("projection"),
      axis("input sparsity", { tickformat: ".0%", range: [0, 1] }),
      {
        barmode: "group",
        ...targetLine(opts.target),
      },
    ),
  );
}

/** Sparsity of one projection (or overall) over training. */
export interface SparsityCurve {
  /** Legend label. */
  name: string;
  /** Training steps. */
  steps: ArrayLike<number>;
  /** Achieved sparsity at each step. */
  sparsity: ArrayLike<number>;
}

/**
 * Achieved sparsity against training step, one line per projection or run: top-K stays at its
 * target, a ReLU-only sparsifier drifts (the paper's Fig. 2).
 *
 * @param series Curves.
 * @param opts Title and target line.
 * @returns The figure.
 *
 * @example
 * ```ts
 * import { sparsityCurves } from "@qsparse/kit/plot";
 * import assert from "node:assert/strict";
 * const fig = sparsityCurves([{ name: "down (ReLU²)", steps: [0, 500, 1000], sparsity: [0.5, 0.7, 0.8] }]);
 * assert.equal(fig.data.length, 1);
 * ```
 */
export function sparsityCurves(
  series: readonly SparsityCurve[],
  opts: SparsityFigureOptions = {},
): Figure {
  const traces = series.map((s, i) => {
    checkSeries("sparsityCurves", s.name, s.steps, s.sparsity);
    return line(s.name, s.steps, s.sparsity, i);
  });
  return new Figure(
    traces,
    layout(
      opts.title,
      axis("step"),
      axis("sparsity", { tickformat: ".0%" }),
      targetLine(opts.target),
    ),
  );
}

/** Options of {@link expertLoad}. */
export interface ExpertLoadOptions {
  /** Figure title; default "MoE expert load". */
  title?: string;
  /** Row labels; default "layer 0", "layer 1", .... */
  layers?: readonly string[];
}

/**
 * MoE router load as a heatmap (layers × experts): the fraction of routed tokens each expert
 * received. The colour scale is centred on the uniform load 1/E, so over- and under-used experts
 * stand out in opposite colours.
 *
 * @param load `load[layer][expert]`: token fractions (each row sums to 1) or counts (normalised
 *   per row here).
 * @param opts Title and layer labels.
 * @returns The figure.
 * @throws {ValueError} For an empty or ragged matrix, or negative loads.
 *
 * @example
 * ```ts
 * import { expertLoad } from "@qsparse/kit/plot";
 * import assert from "node:assert/strict";
 * const fig = expertLoad([[120, 80, 100, 100], [90, 110, 95, 105]]);
 * assert.equal(fig.data[0]!.type, "heatmap");
 * ```
 */
export function expertLoad(
  load: readonly (readonly number[])[],
  opts: ExpertLoadOptions = {},
): Figure {
  const op = "expertLoad";
  const experts = load[0]?.length ?? 0;
  if (experts === 0 || load.some((r) => r.length !== experts)) {
    throw new ValueError(op, "load must be a non-empty [layers][experts] matrix with equal rows");
  }
  if (load.some((r) => r.some((v) => !(v >= 0)))) throw new ValueError(op, "loads must be ≥ 0");
  const z = load.map((row) => {
    const sum = row.reduce((a, b) => a + b, 0);
    return row.map((v) => (sum > 0 ? v / sum : 0));
  });
  const layers = opts.layers ?? load.map((_, i) => `layer ${i}`);
  if (layers.length !== load.length) {
    throw new ValueError(op, `${layers.length} layer labels for ${load.length} rows`);
  }
  const uniform = 1 / experts;
  const maxDev = Math.max(1e-9, ...z.flat().map((v) => Math.abs(v - uniform)));
  return new Figure(
    [{
      type: "heatmap",
      x: Array.from({ length: experts }, (_, e) => `E${e}`),
      y: [...layers],
      z,
      colorscale: "RdBu", // plotly's RdBu runs blue (low) to red (high): overloaded experts are red
      zmid: uniform,
      zmin: Math.max(0, uniform - maxDev),
      zmax: uniform + maxDev,
      colorbar: { title: { text: "token share" }, tickformat: ".1%" },
      hovertemplate: "%{y}, %{x}: %{z:.2%}<extra></extra>",
    }],
    layout(
      opts.title ?? `MoE expert load (uniform = ${(100 * uniform).toFixed(1)}%)`,
      axis("expert"),
      axis("layer", { autorange: "reversed" }),
    ),
  );
}

/** Chunk-level sparsity of one model: the share of weight columns no token of a chunk uses. */
export interface ChunkSparsityCurve {
  /** Legend label. */
  name: string;
  /** Chunk sizes in tokens (e.g. 1, 2, 4, ..., 64). */
  chunkSizes: ArrayLike<number>;
  /** Fraction of columns untouched by the union of the chunk's masks. */
  sparsity: ArrayLike<number>;
}

/**
 * Chunk-level sparsity against chunk size (log₂ axis), BlockFFN's metric: per-token top-K
 * and MoE differ most here, which matters for batched and speculative decoding.
 *
 * @param series One curve per model.
 * @param opts Title and target line.
 * @returns The figure.
 *
 * @example
 * ```ts
 * import { chunkSparsity } from "@qsparse/kit/plot";
 * import assert from "node:assert/strict";
 * const fig = chunkSparsity([{ name: "top-K 50%", chunkSizes: [1, 8, 64], sparsity: [0.5, 0.1, 0.01] }]);
 * assert.equal(fig.data.length, 1);
 * ```
 */
export function chunkSparsity(
  series: readonly ChunkSparsityCurve[],
  opts: SparsityFigureOptions = {},
): Figure {
  const traces = series.map((s, i) => {
    checkSeries("chunkSparsity", s.name, s.chunkSizes, s.sparsity);
    return line(s.name, s.chunkSizes, s.sparsity, i, { mode: "lines+markers" });
  });
  return new Figure(
    traces,
    layout(
      opts.title,
      axis("chunk size (tokens)", { type: "log", dtick: Math.log10(2) }),
      axis("chunk-level sparsity", { tickformat: ".0%" }),
      targetLine(opts.target),
    ),
  );
}
