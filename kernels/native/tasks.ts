/**
 * Every parallel task of the native kernels, so worker threads can find a task by name. A new
 * task must be added here (tests/native_test.ts checks that names are unique).
 *
 * @module
 */
import type { ParallelTask } from "../../src/backend/backend.ts";
import { fillF32Task } from "./fill.ts";
// -- elementwise, reductions, layout, embedding, cross-entropy, optimizer: imports --
// -- end --
// -- softmax, rmsnorm, rope, top-K, N:M, chunk union: imports --
// -- end --
// -- sparse matmul, quantization, MoE, grouped matmul: imports --
import { spmmColsTask } from "./spmm.ts";
import { countRowsTask, scatterRowsTask } from "./sparse.ts";
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
import { moeRouteBackwardTask, moeRouteTask } from "./moe_route.ts";
import { moeSegmentCountTask } from "./moe_counters.ts";
// -- end --

/** All tasks. */
export const TASKS: readonly ParallelTask[] = [
  fillF32Task,
  // -- elementwise, reductions, layout, embedding, cross-entropy, optimizer: tasks --
  // -- end --
  // -- softmax, rmsnorm, rope, top-K, N:M, chunk union: tasks --
  // -- end --
  // -- sparse matmul, quantization, MoE, grouped matmul: tasks --
  spmmColsTask,
  scatterRowsTask,
  countRowsTask,
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
