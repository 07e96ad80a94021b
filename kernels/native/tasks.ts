/**
 * Every parallel task of the native kernels, so worker threads can find a task by name. A new
 * task must be added here (tests/native_test.ts checks that names are unique).
 *
 * @module
 */
import type { ParallelTask } from "../../src/backend/backend.ts";
import { fillF32Task } from "./fill.ts";

/** All tasks. */
export const TASKS: readonly ParallelTask[] = [
  fillF32Task,
];
