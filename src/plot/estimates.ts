/**
 * A figure of estimates with error bars: final losses of the arms of a comparison (ablation,
 * MoE arms, continued training), or S* of two fits with their confidence intervals.
 *
 * @module
 */
import { ValueError } from "../core/errors.ts";
import { axis, colour, layout } from "./_common.ts";
import { Figure, type PlotlyTrace } from "./figure.ts";

/** One bar: a value and its uncertainty. */
export interface EstimateBar {
  /** Category label (x axis). */
  name: string;
  /** The value. */
  value: number;
  /** Symmetric error (e.g. 2 standard errors); ignored when `interval` is given. */
  error?: number;
  /** An asymmetric interval `[lo, hi]` around the value (e.g. a bootstrap CI). */
  interval?: readonly [number, number];
  /** Series name, for grouped bars (e.g. a model size); default one series. */
  group?: string;
}

/** Options of {@link estimateBars}. */
export interface EstimateBarsOptions {
  /** Figure title. */
  title?: string;
  /** y-axis title; default "validation loss (nats)". */
  yTitle?: string;
  /** A reference value drawn as a dashed horizontal line (e.g. the paper's S*). */
  reference?: { value: number; label: string };
  /** y tick format, e.g. `".0%"`. */
  tickformat?: string;
  /**
   * Zoom the y axis to the estimates (losses that differ by hundredths of a nat) and draw them as
   * points with error bars instead of bars: a bar's length must mean something, so bars always
   * start at zero. Default false. For small differences, plotting the differences themselves
   * (e.g. `loss − loss(reference)`) as bars is often clearer.
   */
  zoom?: boolean;
}

/**
 * Bars with error bars, grouped by `group` when given; the y axis starts at zero (or, for
 * differences, spans zero). With `zoom`, points with error bars on an axis fitted to them.
 *
 * @param bars The estimates.
 * @param opts Title, axis, reference line, zoom.
 * @returns The figure.
 * @throws {ValueError} For no bars or a non-finite value.
 *
 * @example
 * ```ts
 * import { estimateBars } from "@qsparse/kit/plot";
 * import assert from "node:assert/strict";
 * const fig = estimateBars([
 *   { name: "dense", value: 2.31, error: 0.01 },
 *   { name: "Q-Sparse", value: 2.29, error: 0.01 },
 * ], { title: "Equal N_a" });
 * assert.equal(fig.data.length, 1);
 * assert.equal(fig.data[0]!.type, "bar");
 * ```
 */
export function estimateBars(
  bars: readonly EstimateBar[],
  opts: EstimateBarsOptions = {},
): Figure {
  const op = "estimateBars";
  if (!bars.length) throw new ValueError(op, "no bars");
  for (const b of bars) {
    if (!Number.isFinite(b.value)) throw new ValueError(op, `bar "${b.name}": value ${b.value}`);
  }
  const groups = [...new Set(bars.map((b) => b.group ?? ""))];
  const traces: PlotlyTrace[] = groups.map((g, i) => {
    const bs = bars.filter((b) => (b.group ?? "") === g);
    const up = bs.map((b) => (b.interval ? b.interval[1] - b.value : b.error ?? 0));
    const down = bs.map((b) => (b.interval ? b.value - b.interval[0] : b.error ?? 0));
    return {
      type: opts.zoom ? "scatter" : "bar",
      ...(opts.zoom ? { mode: "markers", marker: { color: colour(i), size: 11 } } : {}),
      name: g || "estimate",
      // A named series always gets a legend entry, so bars never lose what they stand for.
      showlegend: groups.length > 1 || g !== "",
      x: bs.map((b) => b.name),
      y: bs.map((b) => b.value),
      error_y: { type: "data", symmetric: false, array: up, arrayminus: down, visible: true },
      ...(opts.zoom ? {} : { marker: { color: colour(i) } }),
    };
  });
  const lows = bars.map((b) => (b.interval ? b.interval[0] : b.value - (b.error ?? 0)));
  const highs = bars.map((b) => (b.interval ? b.interval[1] : b.value + (b.error ?? 0)));
  if (opts.reference) {
    lows.push(opts.reference.value);
    highs.push(opts.reference.value);
  }
  const zoom = opts.zoom ?? false;
  // Bars: the axis holds zero and every whisker (autorange would too, but an explicit range keeps
  // a reference line or a whisker from being clipped in a static export).
  const lo = zoom ? Math.min(...lows) : Math.min(0, ...lows),
    hi = zoom ? Math.max(...highs) : Math.max(0, ...highs),
    pad = 0.08 * (hi - lo || Math.abs(hi) || 1);
  const yExtra: Record<string, unknown> = {
    ...(opts.tickformat ? { tickformat: opts.tickformat } : {}),
    range: [lo < 0 || zoom ? lo - pad : 0, hi > 0 || zoom ? hi + pad : 0],
    ...(zoom ? {} : { zeroline: true, zerolinecolor: "#444", zerolinewidth: 1.5 }),
  };
  const extra: Record<string, unknown> = { barmode: "group" };
  if (opts.reference) {
    extra.shapes = [{
      type: "line",
      xref: "paper",
      x0: 0,
      x1: 1,
      y0: opts.reference.value,
      y1: opts.reference.value,
      line: { color: "#444", dash: "dash", width: 1.5 },
    }];
    extra.annotations = [{
      xref: "paper",
      x: 1,
      y: opts.reference.value,
      xanchor: "right",
      yanchor: "bottom",
      text: opts.reference.label,
      showarrow: false,
    }];
  }
  return new Figure(
    traces,
    layout(opts.title, axis(""), axis(opts.yTitle ?? "validation loss (nats)", yExtra), extra),
  );
}
