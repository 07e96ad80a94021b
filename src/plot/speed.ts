/**
 * Figures of measured speed-ups of sparse kernels over their dense baselines.
 *
 * @module
 */
import { axis, checkSeries, layout, line } from "./_common.ts";
import { Figure, type PlotlyTrace } from "./figure.ts";

/** Speed-up against sparsity for one kernel or device. */
export interface SpeedupVsSparsity {
  /** Legend label (kernel, shape, adapter). */
  name: string;
  /** Sparsity values. */
  sparsity: ArrayLike<number>;
  /** Dense time / sparse time at each sparsity. */
  speedup: ArrayLike<number>;
}

/** Speed-up against batch size for one kernel or sparsity. */
export interface SpeedupVsBatch {
  /** Legend label. */
  name: string;
  /** Batch sizes (tokens per matmul). */
  batchSizes: ArrayLike<number>;
  /** Dense time / sparse time at each batch size. */
  speedup: ArrayLike<number>;
}

/** Options of the speed-up figures. */
export interface SpeedupOptions {
  /** Figure title. */
  title?: string;
  /** Subtitle line, e.g. the adapter description the numbers were measured on. */
  subtitle?: string;
}

const BREAK_EVEN = {
  type: "line",
  xref: "paper",
  x0: 0,
  x1: 1,
  y0: 1,
  y1: 1,
  line: { color: "#444", dash: "dot", width: 1 },
};

function titled(title: string | undefined, subtitle: string | undefined): string | undefined {
  if (!subtitle) return title;
  return `${title ?? ""}<br><sup>${subtitle.replace(/</g, "&lt;")}</sup>`;
}

/**
 * Speed-up against sparsity, with the work-proportional ideal 1/(1 − S) dotted and the
 * break-even line at 1.
 *
 * @param series Measured curves.
 * @param opts Title, subtitle and whether to draw the ideal (default true).
 * @returns The figure.
 *
 * @example
 * ```ts
 * import { speedupVsSparsity } from "@qsparse/kit/plot";
 * import assert from "node:assert/strict";
 * const fig = speedupVsSparsity([{ name: "spmm 4096²", sparsity: [0.5, 0.7, 0.9], speedup: [1.6, 2.4, 5.1] }]);
 * assert.equal(fig.data.length, 2); // measured + ideal
 * ```
 */
export function speedupVsSparsity(
  series: readonly SpeedupVsSparsity[],
  opts: SpeedupOptions & { ideal?: boolean } = {},
): Figure {
  const traces: PlotlyTrace[] = series.map((s, i) => {
    checkSeries("speedupVsSparsity", s.name, s.sparsity, s.speedup);
    return line(s.name, s.sparsity, s.speedup, i, { mode: "lines+markers" });
  });
  if (opts.ideal ?? true) {
    const all = series.flatMap((s) => Array.from(s.sparsity));
    const hi = Math.min(0.99, Math.max(0.5, ...all));
    const s = Array.from({ length: 50 }, (_, i) => (hi * i) / 49);
    traces.push({
      type: "scatter",
      mode: "lines",
      name: "ideal 1/(1−S)",
      x: s,
      y: s.map((v) => 1 / (1 - v)),
      line: { color: "#999", dash: "dot", width: 1.5 },
    });
  }
  return new Figure(
    traces,
    layout(
      titled(opts.title, opts.subtitle),
      axis("sparsity S", { tickformat: ".0%" }),
      axis("speed-up over dense (×)"),
      {
        shapes: [BREAK_EVEN],
      },
    ),
  );
}

/**
 * Speed-up against batch size (log₂ axis): a per-token mask saves weight reads at batch 1, but
 * the union of masks over a batch fills up, so the gain shrinks as the batch grows.
 *
 * @param series Measured curves.
 * @param opts Title and subtitle.
 * @returns The figure.
 *
 * @example
 * ```ts
 * import { speedupVsBatch } from "@qsparse/kit/plot";
 * import assert from "node:assert/strict";
 * const fig = speedupVsBatch([{ name: "S = 0.7", batchSizes: [1, 8, 64], speedup: [2.8, 1.9, 1.1] }]);
 * assert.equal(fig.data.length, 1);
 * ```
 */
export function speedupVsBatch(
  series: readonly SpeedupVsBatch[],
  opts: SpeedupOptions = {},
): Figure {
  const traces = series.map((s, i) => {
    checkSeries("speedupVsBatch", s.name, s.batchSizes, s.speedup);
    return line(s.name, s.batchSizes, s.speedup, i, { mode: "lines+markers" });
  });
  return new Figure(
    traces,
    layout(
      titled(opts.title, opts.subtitle),
      axis("batch size (tokens)", { type: "log", dtick: Math.log10(2) }),
      axis("speed-up over dense (×)"),
      { shapes: [BREAK_EVEN] },
    ),
  );
}
