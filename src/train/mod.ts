/**
 * # @qsparse/kit/train
 *
 * Everything between a corpus and a results file: the Brown corpus and its splits, the byte
 * tokenizer, batch sampling, AdamW with a cosine schedule, the trainer and evaluation, sparsity
 * accounting, checkpoints and safetensors, sweeps with their results lines, and the Q-Sparse
 * scaling law fitted to them.
 *
 * @example The paper's scaling law at S = 0 and S = 0.5
 * ```ts
 * import { PAPER_SCALING_LAW, scalingLaw } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const dense = scalingLaw(PAPER_SCALING_LAW, 1e9, 0);
 * const sparse = scalingLaw(PAPER_SCALING_LAW, 1e9, 0.5);
 * assert.ok(sparse > dense);
 * ```
 *
 * @module
 */
export {
  BROWN_CATEGORIES,
  BROWN_GROUPS,
  brownSplit,
  Corpus,
  detokenizeBrown,
  loadBrownCorpus,
} from "./corpus.ts";
export type {
  BrownCategory,
  BrownCorpusOptions,
  CorpusDocument,
  CorpusStats,
  Split,
  SplitStats,
} from "./corpus.ts";
export { ByteTokenizer } from "../core/tokenizer.ts";
export type { Tokenizer } from "../core/tokenizer.ts";
export { BatchSampler, ValidationSet } from "./batches.ts";
export type { BatchSamplerOptions, SamplerState, ValidationSetOptions } from "./batches.ts";
export { AdamW } from "./optimizer.ts";
export type { AdamWConfig, AdamWState } from "./optimizer.ts";
export { cosineLr } from "./schedule.ts";
export type { CosineSchedule } from "./schedule.ts";
export { brownTokens, configDiff, DEFAULT_TRAIN, evaluate, train, trainConfig } from "./trainer.ts";
export type { LogRecord, TrainConfig, TrainHooks, TrainResult } from "./trainer.ts";
export type { ProgressKind, ProgressState, ProgressView } from "./progress.ts";
export { measureSparsity } from "./accounting.ts";
export type { SiteSparsityReport, SparsityReport } from "./accounting.ts";
export { DEFAULT_CHUNK_SIZES, measureChunkSparsity } from "./chunk_sparsity.ts";
export type { ChunkSiteSparsity, ChunkSparsityReport } from "./chunk_sparsity.ts";
export { COLLAPSE_SHARE, routerLayerStats, routerReport } from "./router_stats.ts";
export type { RouterLayerStats, RouterReport } from "./router_stats.ts";
export { loadCheckpoint, loadOptimizer, loadWeights, saveCheckpoint } from "./checkpoint.ts";
export type { LoadedCheckpoint, TrainState } from "./checkpoint.ts";
export {
  decodeSafetensors,
  encodeSafetensors,
  loadSafetensors,
  saveSafetensors,
} from "./safetensors.ts";
export type { HostTensor, Safetensors } from "./safetensors.ts";
export {
  modelLabel,
  parseShard,
  readResults,
  readResultsFile,
  runSweep,
  toRecord,
} from "./runner.ts";
export type {
  DivergedRecord,
  ReadResultsOptions,
  ResultsFile,
  RunRecord,
  RunSpec,
  Shard,
  SweepOptions,
} from "./runner.ts";
export {
  denseLaw,
  fitDenseLaw,
  fitScalingLaw,
  isoLossGrid,
  optimalSparsity,
  PAPER_SCALING_LAW,
  profileScalingLaw,
  scalingLaw,
  sparsityFactor,
} from "./scaling_law.ts";
export type {
  DenseLawFit,
  DenseLawParams,
  FitDiagnostics,
  FitOptions,
  Intervals,
  IsoLossGrid,
  ProfileInterval,
  ProfileOptions,
  ScalingLawFit,
  ScalingLawParams,
  ScalingLawProfile,
  ScalingPoint,
} from "./scaling_law.ts";
export { configFromHf, exportHf, hfConfig, importHf } from "./hf.ts";
export { loadModel } from "./load_model.ts";
export type { QSparseHfFields } from "./hf.ts";
