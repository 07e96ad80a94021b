/**
 * # @qsparse/kit/studies
 *
 * The paper's studies, kept out of the library: the study grids and profiles, the grouping of
 * results into seed-level estimates, the statistics a verdict rests on, the findings with their
 * claim texts, the tables and figure data the notebooks show, and the notebook helpers (profile,
 * display, loading and saving). The notebooks import from here; the kit itself (`mod.ts`) never
 * does.
 *
 * @example Group two seeds of a run into one seed-level estimate
 * ```ts
 * import type { RunRecord } from "@qsparse/kit/train";
 * import { groupRuns } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const run = (seed: number, valLoss: number) =>
 *   ({ tags: { size: "xs", S: 0.5, seed }, valLoss, valStderr: 0.01, N: 1e5, Na: 5e4, sparsity: null }) as unknown as RunRecord;
 * const [g] = groupRuns([run(1, 2.0), run(2, 2.2)]);
 * assert.equal(g!.loss.n, 2);
 * ```
 *
 * @module
 */
export { PROFILES, SPARSITIES, STUDIES, studyRuns } from "./studies.ts";
export type { Profile, ProfileSettings, StudyName } from "./studies.ts";
export { moeStudyArms } from "./moe_study.ts";
export type { MoeArm } from "./moe_study.ts";
export {
  contrast,
  equalNaComparison,
  fitSweep,
  gapConvexity,
  gapsToDense,
  gapTrend,
  groupRuns,
  lossDifference,
  meanSe,
  pooled,
  pooledSd,
  pooledWithSpread,
  sparsityAt,
  sparsityDrift,
  sweepPoints,
} from "./report.ts";
export type {
  Contrast,
  Convexity,
  DenseGap,
  EqualNaRow,
  Estimate,
  GapTrend,
  GroupOptions,
  MeanSe,
  PooledSd,
  RunGroup,
  SparsityAt,
  SparsityDrift,
  SweepFit,
  SweepFitFailed,
  SweepFitOk,
  SweepPointOptions,
} from "./report.ts";
export {
  armComparisonFinding,
  blockFinding,
  combineVerdicts,
  comparisonFinding,
  componentSparsityFinding,
  equalNaFinding,
  equivalenceTest,
  findingsMarkdown,
  fitMarkdown,
  formatEstimate,
  gapShrinksFinding,
  holmFindings,
  LEVEL,
  markdownTable,
  nearDenseFinding,
  PAPER_S_STAR,
  reluDriftFinding,
  SMOKE_VERDICT,
  sStarFinding,
  sStarOrderFinding,
  steFinding,
  superLinearFinding,
  testText,
  verdictAbove,
  verdictBelow,
  verdictInterval,
  verdictOf,
  verdictWithin,
} from "./findings.ts";
export type {
  ArmComparisonSpec,
  ComparisonSpec,
  Finding,
  FindingsMarkdownOptions,
  Verdict,
} from "./findings.ts";
export { equalNaMarkdown, gapsMarkdown, groupsMarkdown } from "./tables.ts";
export {
  chunkSparsityOf,
  differenceBarsOf,
  expertLoadOf,
  gapPointsOf,
  isoLossSurfaceOf,
  lossBarsOf,
  lossCurvesOf,
  paramLabel,
  projectionSparsityOf,
  routingCurvesOf,
  sparsityCurvesOf,
  sweepPointsOf,
} from "./figure_data.ts";
export type { CurveOptions, IsoLossSurfaceOptions } from "./figure_data.ts";
export {
  posthocComparison,
  posthocFigure,
  posthocFinding,
  posthocMarkdown,
  tokenBudgetFinding,
} from "./posthoc.ts";
export type { PosthocRow } from "./posthoc.ts";
export { gradNormFigure, gradNormProfiles, steGradientFinding } from "./grad_norms.ts";
export type { GradNormProfile } from "./grad_norms.ts";
export {
  chunkCollapseFinding,
  loadBalanceFinding,
  moeArmsMarkdown,
  synergyFindings,
} from "./moe_findings.ts";
export { readBenchFiles, speedupSeries, timeSparseKernels } from "./kernel_timing.ts";
export type {
  BenchFile,
  KernelTiming,
  KernelTimingOptions,
  KernelTimingReport,
  SpeedupSeries,
} from "./kernel_timing.ts";
export { kernelFindings, kernelSummary } from "./kernel_findings.ts";
export type { KernelSummary } from "./kernel_findings.ts";
export {
  display,
  loadStudy,
  Markdown,
  markdown,
  parseProfile,
  saveFigure,
  saveMarkdown,
} from "./notebook.ts";
export type { LoadStudyOptions, SaveFigureOptions, StudyData } from "./notebook.ts";
export {
  combine,
  f1Quantile,
  holm,
  tCdf,
  tQuantile,
  tTest,
  weightedTrend,
  welchDf,
} from "./stats.ts";
export type { TEstimate, Trend, TTest } from "./stats.ts";
export {
  budgetFor,
  lrGridFor,
  lrTuningGrid,
  V2_PROFILES,
  V2_STUDIES,
  v2LrTable,
  v2Model,
  v2StudyRuns,
} from "./v2_grid.ts";
export type { Budget, V2LrTableOptions, V2RunOptions, V2Settings, V2Study } from "./v2_grid.ts";
export {
  bestLearningRates,
  FALLBACK_LR,
  lrFor,
  lrTablePath,
  lrTuningFigure,
  lrTuningMarkdown,
  lrTuningSummary,
  readLrTable,
} from "./lr_tuning.ts";
export type { LrChoice, LrPick, LrTable, LrTuningGrid, LrTuningSize } from "./lr_tuning.ts";
export { modelForParams, shapeForParams } from "./sizing.ts";
export type { ShapeOptions, SizedShape } from "./sizing.ts";
export {
  fixedNaFinding,
  fixedNaMarkdown,
  interiorOptimum,
  interiorOptimumFigure,
} from "./fixed_na.ts";
export type {
  FixedNaAnswer,
  FixedNaFindingOptions,
  InteriorCandidate,
  InteriorOptimum,
} from "./fixed_na.ts";
export { fitCells, v2CellRule, v2GapFigure, v2GapFinding, v2GapTrend } from "./v2_gap.ts";
export type { FitCellOptions, V2GapTrend } from "./v2_gap.ts";
export { gridCost, throughputAt } from "./v2_cost.ts";
export type { RunCost, ThroughputPoint } from "./v2_cost.ts";
export { gridProgress, progressMarkdown } from "./progress.ts";
export type { GridProgress, GridProgressOptions, ProgressCell, StaleRun } from "./progress.ts";
