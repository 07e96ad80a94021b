/**
 * # @qsparse/kit/plot
 *
 * Plotly figures: loss curves, loss against N and S with the fitted law, iso-loss contours,
 * sparsity per projection and chunk, expert load, kernel speed-ups and estimate bars; `show` for
 * Jupyter, `toHtml` / `toPng` for files.
 *
 * @example A figure written as HTML
 * ```ts
 * import { Figure, toHtml } from "@qsparse/kit/plot";
 * import assert from "node:assert/strict";
 * const fig = new Figure([{ type: "scatter", x: [1, 2], y: [3, 4] }], { title: { text: "demo" } });
 * const path = await Deno.makeTempFile({ suffix: ".html" });
 * await toHtml(fig, path);
 * assert.ok((await Deno.readTextFile(path)).includes("demo"));
 * ```
 *
 * @module
 */
export { Figure } from "./figure.ts";
export type { MediaBundle, PlotlyFigure, PlotlyLayout, PlotlyTrace } from "./figure.ts";
export { show } from "./show.ts";
export { figurePage, toHtml, toPng } from "./export.ts";
export type { HeadlessOptions, PageOptions } from "./export.ts";
export { lossCurves } from "./training.ts";
export type { LossCurve, LossCurvesOptions } from "./training.ts";
export { isoLossContours, lossVsN, lossVsSparsity } from "./scaling.ts";
export type { IsoLossOptions, LossSurface, SweepFigureOptions, SweepPoint } from "./scaling.ts";
export { chunkSparsity, expertLoad, projectionSparsity, sparsityCurves } from "./sparsity.ts";
export type {
  ChunkSparsityCurve,
  ExpertLoadOptions,
  ProjectionSparsity,
  SparsityCurve,
  SparsityFigureOptions,
} from "./sparsity.ts";
export { speedupVsBatch, speedupVsSparsity } from "./speed.ts";
export type { SpeedupOptions, SpeedupVsBatch, SpeedupVsSparsity } from "./speed.ts";
export { estimateBars } from "./estimates.ts";
export type { EstimateBar, EstimateBarsOptions } from "./estimates.ts";
