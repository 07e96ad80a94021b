/**
 * Figures of training runs: loss against step.
 *
 * @module
 */
import { axis, checkSeries, layout, line } from "./_common.ts";
import { Figure, type PlotlyTrace } from "./figure.ts";

/** One run's loss curve. */
export interface LossCurve {
  /** Legend label (e.g. `"Q-Sparse S=0.5"`). */
  name: string;
  /** Training steps (or tokens). */
  steps: ArrayLike<number>;
  /** Loss at each step. */
  loss: ArrayLike<number>;
}

/** Options of {@link lossCurves}. */
export interface LossCurvesOptions {
  /** Figure title. */
  title?: string;
  /** Validation curves, drawn as dashed lines with markers in the colour of the training run of the same name. */
  validation?: readonly LossCurve[];
  /** Exponential moving average of the training curves, in [0, 1) (0: raw); the raw curve stays, faint. */
  smoothing?: number;
  /** Log-scale y axis. */
  logY?: boolean;
  /** x-axis title; default "step". */
  xTitle?: string;
  /** y-axis title; default "loss (nats)". */
  yTitle?: string;
}

/** Debiased EMA (as TensorBoard shows), so the start is not dragged towards 0. */
function ema(y: ArrayLike<number>, a: number): number[] {
  const out: number[] = [];
  let m = 0;
  for (let i = 0; i < y.length; i++) {
    m = a * m + (1 - a) * y[i]!;
    out.push(m / (1 - a ** (i + 1)));
  }
  return out;
}

/**
 * Loss against step for several runs, with optional validation points and smoothing.
 *
 * @param runs Training curves.
 * @param opts Title, validation curves, smoothing, axes.
 * @returns The figure.
 * @throws {ValueError} When a curve's steps and losses differ in length.
 *
 * @example
 * ```ts
 * import { lossCurves } from "@qsparse/kit/plot";
 * import assert from "node:assert/strict";
 * const fig = lossCurves(
 *   [{ name: "dense", steps: [0, 100, 200], loss: [5.5, 3.2, 2.9] }],
 *   { validation: [{ name: "dense", steps: [200], loss: [3.0] }], title: "Brown, 4M params" },
 * );
 * assert.equal(fig.data.length, 2);
 * ```
 */
export function lossCurves(runs: readonly LossCurve[], opts: LossCurvesOptions = {}): Figure {
  const op = "lossCurves";
  const smoothing = opts.smoothing ?? 0;
  const traces: PlotlyTrace[] = [];
  const colourOf = new Map<string, number>();
  runs.forEach((r, i) => {
    checkSeries(op, r.name, r.steps, r.loss);
    colourOf.set(r.name, i);
    if (smoothing > 0) {
      traces.push(
        line(r.name, r.steps, r.loss, i, {
          opacity: 0.25,
          showlegend: false,
          hoverinfo: "skip",
          legendgroup: r.name,
        }),
      );
      traces.push(line(r.name, r.steps, ema(r.loss, smoothing), i, { legendgroup: r.name }));
    } else {
      traces.push(line(r.name, r.steps, r.loss, i, { legendgroup: r.name }));
    }
  });
  for (const v of opts.validation ?? []) {
    checkSeries(op, v.name, v.steps, v.loss);
    let c = colourOf.get(v.name);
    if (c === undefined) colourOf.set(v.name, c = colourOf.size);
    traces.push(
      line(`${v.name} (validation)`, v.steps, v.loss, c, {
        mode: "lines+markers",
        line: { dash: "dash", width: 1.5 },
        marker: { size: 6 },
        legendgroup: v.name,
      }),
    );
  }
  return new Figure(
    traces,
    layout(
      opts.title,
      axis(opts.xTitle ?? "step"),
      axis(opts.yTitle ?? "loss (nats)", opts.logY ? { type: "log" } : {}),
    ),
  );
}
