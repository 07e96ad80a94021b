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
import { softmaxBackwardF32Task, softmaxF32Task } from "./softmax.ts";
import { rmsNormBackwardF32Task, rmsNormF32Task, rmsNormWeightGradF32Task } from "./rmsnorm.ts";
import { ropeF32Task } from "./rope.ts";
import { topkMaskF32Task, topkRowsF32Task } from "./topk.ts";
import { chunkUnionTask } from "./chunk_union.ts";
// -- end --
// -- sparse matmul, quantization, MoE, grouped matmul: imports --
// -- end --

/** All tasks. */
export const TASKS: readonly ParallelTask[] = [
  fillF32Task,
  // -- elementwise, reductions, layout, embedding, cross-entropy, optimizer: tasks --
  // -- end --
  // -- softmax, rmsnorm, rope, top-K, N:M, chunk union: tasks --
  softmaxF32Task,
  softmaxBackwardF32Task,
  rmsNormF32Task,
  rmsNormBackwardF32Task,
  rmsNormWeightGradF32Task,
  ropeF32Task,
  topkMaskF32Task,
  topkRowsF32Task,
  chunkUnionTask,
  // -- end --
  // -- sparse matmul, quantization, MoE, grouped matmul: tasks --
  // -- end --
];
