/**
 * Native fill: `out[i] = start + i·step` for f32, split across threads (the pattern every
 * parallel native kernel follows: a {@link ParallelTask} registered in tasks.ts, launched with
 * `rt.parallel` on the storages' addresses).
 *
 * @module
 */
import type { NativeRuntime, ParallelTask } from "../../src/backend/backend.ts";

/** Below this many elements a fill stays on the calling thread (a job costs ~10 µs). */
const MIN_PARALLEL = 1 << 16;

/** Parallel task: args `[out address, start, step]`. */
export const fillF32Task: ParallelTask = {
  name: "fillF32",
  run(ctx, args, lo, hi) {
    const out = new Float32Array(ctx.view(args[0]!, hi * 4));
    const start = Math.fround(args[1]!), step = Math.fround(args[2]!);
    if (step === 0) out.fill(start, lo, hi);
    else for (let i = lo; i < hi; i++) out[i] = start + Math.fround(i * step);
  },
};

/**
 * Fills `n` f32 values on the native backend (same values as the CPU twin).
 *
 * @param out The output buffer.
 * @param n Elements.
 * @param start First value.
 * @param step Increment.
 * @param rt The runtime.
 */
export function fillF32Native(
  out: ArrayBuffer,
  n: number,
  start: number,
  step: number,
  rt: NativeRuntime,
): void {
  rt.parallel(fillF32Task, n, [rt.address(out), start, step], {
    align: 16,
    minParallel: MIN_PARALLEL,
  });
}
