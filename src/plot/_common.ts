/**
 * Shared pieces of the figure builders (not exported from the kit): colours, axis and layout
 * defaults, input checks, number formats.
 *
 * @module
 */
import { ValueError } from "../core/errors.ts";
import type { PlotlyLayout, PlotlyTrace } from "./figure.ts";

/** plotly's default qualitative colours, so a series keeps its colour across related traces. */
export const PALETTE: readonly string[] = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
  "#17becf",
];

/** The colour of series `i`. */
export function colour(i: number): string {
  return PALETTE[i % PALETTE.length]!;
}

/** An axis with a title (plotly ≥ 3 wants `title: { text }`). */
export function axis(title: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { title: { text: title }, zeroline: false, ...extra };
}

/** The layout every builder starts from. */
export function layout(
  title: string | undefined,
  xaxis: Record<string, unknown>,
  yaxis: Record<string, unknown>,
  extra: PlotlyLayout = {},
): PlotlyLayout {
  return {
    ...(title ? { title: { text: title } } : {}),
    xaxis,
    yaxis,
    hovermode: "closest",
    margin: { t: title ? 60 : 30, r: 30, b: 60, l: 70 },
    legend: { orientation: "v" },
    ...extra,
  };
}

/** Throws unless `x` and `y` have the same length (naming the builder and the series). */
export function checkSeries(
  op: string,
  name: string,
  x: ArrayLike<number>,
  y: ArrayLike<number>,
): void {
  if (x.length !== y.length) {
    throw new ValueError(op, `series "${name}": ${x.length} x values but ${y.length} y values`);
  }
}

/** A line trace in series colour `colourIndex`; `extra.line` and `extra.marker` are merged in. */
export function line(
  name: string,
  x: ArrayLike<number> | readonly (string | number)[],
  y: ArrayLike<number>,
  colourIndex: number,
  extra: PlotlyTrace = {},
): PlotlyTrace {
  const { line: style, marker, ...rest } = extra as { line?: object; marker?: object };
  const color = colour(colourIndex);
  return {
    type: "scatter",
    mode: "lines",
    name,
    x: Array.from(x),
    y: Array.from(y),
    ...rest,
    line: { color, width: 2, ...style },
    marker: { color, ...marker },
  };
}

/**
 * A parameter count for labels: 3e8 → "300M", 1.3e9 → "1.3B", 15e6 → "15M", 512 → "512".
 */
export function formatCount(n: number): string {
  const units: [number, string][] = [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "K"]];
  for (const [v, u] of units) {
    if (Math.abs(n) >= v) return `${Number((n / v).toPrecision(3))}${u}`;
  }
  return String(Number(n.toPrecision(3)));
}

/** `n` numbers from `lo` to `hi`, evenly spaced in log space. */
export function logspace(lo: number, hi: number, n: number): number[] {
  const a = Math.log(lo), b = Math.log(hi);
  return Array.from({ length: n }, (_, i) => Math.exp(a + ((b - a) * i) / (n - 1)));
}

/** `n` numbers from `lo` to `hi`, evenly spaced. */
export function linspace(lo: number, hi: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => lo + ((hi - lo) * i) / (n - 1));
}

/** Groups items by a numeric key, keys ascending. */
export function groupBy<T>(items: readonly T[], key: (t: T) => number): [number, T[]][] {
  const m = new Map<number, T[]>();
  for (const it of items) {
    const k = key(it);
    let g = m.get(k);
    if (!g) m.set(k, g = []);
    g.push(it);
  }
  return [...m.entries()].sort((a, b) => a[0] - b[0]);
}
