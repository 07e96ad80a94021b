/**
 * # @qsparse/kit/studies
 *
 * The paper's studies: grids and profiles, grouping results into seed-level estimates, findings,
 * tables, figure data and the notebook helpers. The notebooks import from here; the library
 * entry points never do.
 *
 * @module
 */
export { PROFILES, SPARSITIES, STUDIES, studyRuns } from "../src/experiments/studies.ts";
export type { Profile, ProfileSettings, StudyName } from "../src/experiments/studies.ts";
export {
  equalNaComparison,
  fitSweep,
  gapConvexity,
  gapsToDense,
  gapTrend,
  groupRuns,
  lossDifference,
  meanSe,
  pooled,
  sparsityAt,
  sparsityDrift,
  sweepPoints,
} from "../src/experiments/report.ts";
export type {
  Convexity,
  DenseGap,
  EqualNaRow,
  Estimate,
  GapTrend,
  GroupOptions,
  MeanSe,
  RunGroup,
  SparsityAt,
  SparsityDrift,
  SweepFit,
  SweepFitFailed,
  SweepFitOk,
  SweepPointOptions,
} from "../src/experiments/report.ts";
export {
  armComparisonFinding,
  blockFinding,
  combineVerdicts,
  comparisonFinding,
  componentSparsityFinding,
  equalNaFinding,
  findingsMarkdown,
  fitMarkdown,
  formatEstimate,
  gapShrinksFinding,
  markdownTable,
  nearDenseFinding,
  PAPER_S_STAR,
  reluDriftFinding,
  sStarFinding,
  sStarOrderFinding,
  steFinding,
  superLinearFinding,
  verdictAbove,
  verdictBelow,
  verdictInterval,
  verdictWithin,
} from "../src/experiments/findings.ts";
export type {
  ArmComparisonSpec,
  ComparisonSpec,
  Finding,
  Verdict,
} from "../src/experiments/findings.ts";
export {
  readBenchFiles,
  speedupSeries,
  timeSparseKernels,
} from "../src/experiments/kernel_timing.ts";
export type {
  BenchFile,
  KernelTiming,
  KernelTimingOptions,
  KernelTimingReport,
  SpeedupSeries,
} from "../src/experiments/kernel_timing.ts";
export {
  display,
  loadStudy,
  Markdown,
  markdown,
  parseProfile,
  saveFigure,
  saveMarkdown,
} from "../src/experiments/notebook.ts";
export type {
  LoadStudyOptions,
  SaveFigureOptions,
  StudyData,
} from "../src/experiments/notebook.ts";
export {
  chunkSparsityOf,
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
} from "../src/experiments/figure_data.ts";
export type { CurveOptions, IsoLossSurfaceOptions } from "../src/experiments/figure_data.ts";
export { equalNaMarkdown, gapsMarkdown, groupsMarkdown } from "../src/experiments/tables.ts";
export { moeStudyArms } from "../src/experiments/moe_study.ts";
export type { MoeArm } from "../src/experiments/moe_study.ts";
export { kernelFindings, kernelSummary } from "../src/experiments/kernel_findings.ts";
export type { KernelSummary } from "../src/experiments/kernel_findings.ts";
export {
  chunkCollapseFinding,
  loadBalanceFinding,
  moeArmsMarkdown,
  synergyFindings,
} from "../src/experiments/moe_findings.ts";
export {
  posthocComparison,
  posthocFigure,
  posthocFinding,
  posthocMarkdown,
  tokenBudgetFinding,
} from "../src/experiments/posthoc.ts";
export type { PosthocRow } from "../src/experiments/posthoc.ts";
export {
  gradNormFigure,
  gradNormProfiles,
  steGradientFinding,
} from "../src/experiments/grad_norms.ts";
export type { GradNormProfile } from "../src/experiments/grad_norms.ts";
