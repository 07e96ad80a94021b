/**
 * Every parallel task of the native kernels, so worker threads can find a task by name. A new
 * task must be added here (tests/native_test.ts checks that names are unique).
 *
 * @module
 */
import type { ParallelTask } from "../../src/backend/backend.ts";
import { fillF32Task } from "./fill.ts";
// -- elementwise, reductions, layout, embedding, cross-entropy, optimizer: imports --
import { ELEMENTWISE_TASKS } from "./elementwise.ts";
import { REDUCE_TASKS } from "./reduce.ts";
import { LAYOUT_TASKS } from "./layout.ts";
import { PERMUTE_TASKS } from "./permute.ts";
import { EMBEDDING_TASKS } from "./embedding.ts";
import { CROSS_ENTROPY_TASKS } from "./cross_entropy.ts";
import { OPTIM_TASKS } from "./optim.ts";
import { CAST_TASKS } from "./cast.ts";
// -- end --
// -- softmax, rmsnorm, rope, top-K, N:M, chunk union: imports --
import { softmaxBackwardF32Task, softmaxF32Task } from "./softmax.ts";
import {
  addRmsNormF32Task,
  rmsNormBackwardF32Task,
  rmsNormF32Task,
  rmsNormWeightGradF32Task,
} from "./rmsnorm.ts";
import { ropeF32Task } from "./rope.ts";
import { topkMaskF32Task, topkRowsF32Task } from "./topk.ts";
import { chunkUnionTask } from "./chunk_union.ts";
// -- end --
// -- sparse matmul, quantization, MoE, grouped matmul: imports --
import { spmmColsTask, spmmPartsTask } from "./spmm.ts";
import {
  dequantRowsTask,
  packTernaryTask,
  quantKeptTask,
  quantRowsTask,
  ternaryMatmulTask,
  unpackTernaryTask,
} from "./quant.ts";
import { fakeQuantRowsTask, fakeQuantTernaryTask } from "./quant_ste.ts";
import { moeGatherBackwardTask, moeGatherTask } from "./moe_gather.ts";
import {
  moeCombineGatesBackwardTask,
  moeCombineRowsBackwardTask,
  moeCombineTask,
} from "./moe_combine.ts";
import { moeRouteBackwardTask, moeRouteTask } from "../moe_route.ts";
import { moeSegmentCountTask } from "./moe_counters.ts";
// -- end --

/** All tasks. */
export const TASKS: readonly ParallelTask[] = [
  fillF32Task,
  // -- elementwise, reductions, layout, embedding, cross-entropy, optimizer: tasks --
  ...ELEMENTWISE_TASKS,
  ...REDUCE_TASKS,
  ...LAYOUT_TASKS,
  ...PERMUTE_TASKS,
  ...EMBEDDING_TASKS,
  ...CROSS_ENTROPY_TASKS,
  ...OPTIM_TASKS,
  ...CAST_TASKS,
  // -- end --
  // -- softmax, rmsnorm, rope, top-K, N:M, chunk union: tasks --
  softmaxF32Task,
  softmaxBackwardF32Task,
  rmsNormF32Task,
  addRmsNormF32Task,
  rmsNormBackwardF32Task,
  rmsNormWeightGradF32Task,
  ropeF32Task,
  topkMaskF32Task,
  topkRowsF32Task,
  chunkUnionTask,
  // -- end --
  // -- sparse matmul, quantization, MoE, grouped matmul: tasks --
  spmmColsTask,
  spmmPartsTask,
  quantRowsTask,
  quantKeptTask,
  packTernaryTask,
  unpackTernaryTask,
  dequantRowsTask,
  ternaryMatmulTask,
  fakeQuantRowsTask,
  fakeQuantTernaryTask,
  moeGatherTask,
  moeGatherBackwardTask,
  moeCombineTask,
  moeCombineRowsBackwardTask,
  moeCombineGatesBackwardTask,
  moeRouteTask,
  moeRouteBackwardTask,
  moeSegmentCountTask,
  // -- end --
];
