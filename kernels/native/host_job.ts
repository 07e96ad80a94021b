/**
 * The launch pattern shared by the elementwise, reduction, layout, embedding, cross-entropy and
 * optimizer native kernels: a {@link HostJob} computes items `[lo, hi)` from plain ArrayBuffers,
 * and {@link runJob} runs it either on the calling thread over the storages themselves (small
 * jobs) or split over the thread pool through raw addresses (large ones).
 *
 * Why two paths: a worker sees a storage through `ctx.view(address, bytes)`, which costs about
 * 5 µs per buffer on this runtime, more than a whole small kernel (a 128-element AdamW update of
 * five buffers would pay 25 µs for views). Below the parallel threshold the job therefore runs
 * directly on the ArrayBuffers the backend hands to the kernel, without addresses or views.
 *
 * @module
 */
import type { NativeRuntime, ParallelTask } from "../../src/backend/backend.ts";

/** Below this many items a job stays on the calling thread (a pool job costs ~10 µs). */
export const MIN_PARALLEL = 1 << 16;

/**
 * Shortest contiguous run copied with `TypedArray.set` (a memcpy) rather than an element loop:
 * measured on 32-bit words, the loop wins below 64 elements (making the subarray costs more than
 * the copy), `set` above.
 */
export const SET_MIN = 64;

/**
 * A data-parallel piece of a native kernel over whole buffers: computes items `[lo, hi)`.
 * `params` holds the numeric parameters after the buffers (op codes, sizes, scalars).
 */
export interface HostJob {
  /** Unique task name (registered in tasks.ts through {@link jobTask}). */
  readonly name: string;
  /** Buffers the job takes, in order. */
  readonly buffers: number;
  /** Computes items `[lo, hi)`. Must write outputs of those items only. */
  run(bufs: ArrayBuffer[], params: ArrayLike<number>, lo: number, hi: number): void;
}

/**
 * The pool task of a job: args are `[address, bytes]` per buffer, then the job's params.
 *
 * @param job The job.
 * @returns A task to register in kernels/native/tasks.ts.
 * @example
 * ```ts
 * import { jobTask } from "./host_job.ts";
 * const t = jobTask({ name: "demo", buffers: 0, run() {} });
 * console.log(t.name); // "demo"
 * ```
 */
export function jobTask(job: HostJob): ParallelTask {
  const nb = job.buffers;
  return {
    name: job.name,
    run(ctx, args, lo, hi): void {
      const bufs: ArrayBuffer[] = new Array(nb);
      for (let k = 0; k < nb; k++) {
        // The launching thread already holds the buffers: skip making views of them.
        bufs[k] = launching[k] !== undefined && args[2 * k] === launchingAt[k]
          ? launching[k]!
          : ctx.view(args[2 * k]!, args[2 * k + 1]!);
      }
      job.run(bufs, args.subarray(2 * nb), lo, hi);
    },
  };
}

/**
 * The buffers of the job being launched on this thread and their addresses, so the launching
 * thread's own chunk uses them directly. Empty on worker threads (their module instance never
 * launches), and cleared once the job returns.
 */
const launching: (ArrayBuffer | undefined)[] = [];
const launchingAt: number[] = [];

/**
 * Runs `job` over items `[0, n)`: on the calling thread when `n < minParallel` or the runtime has
 * one thread, else split across the pool (chunks aligned to `align` items).
 *
 * @param rt The runtime.
 * @param task The job's registered task ({@link jobTask}).
 * @param job The job.
 * @param n Items.
 * @param bufs The buffers (the dispatch's storages).
 * @param params Numeric parameters.
 * @param opts Chunk alignment and the parallel threshold (default {@link MIN_PARALLEL}).
 * @example
 * ```ts ignore
 * runJob(rt, addTask, addJob, n, [a, b, out], [0], { align: 16 });
 * ```
 */
export function runJob(
  rt: NativeRuntime,
  task: ParallelTask,
  job: HostJob,
  n: number,
  bufs: ArrayBuffer[],
  params: ArrayLike<number>,
  opts: { align?: number; minParallel?: number } = {},
): void {
  if (n <= 0) return;
  const minParallel = opts.minParallel ?? MIN_PARALLEL;
  if (rt.threads <= 1 || n < minParallel) {
    job.run(bufs, params, 0, n);
    return;
  }
  const args: number[] = [];
  for (let k = 0; k < bufs.length; k++) {
    const at = rt.address(bufs[k]!);
    args.push(at, bufs[k]!.byteLength);
    launching[k] = bufs[k];
    launchingAt[k] = at;
  }
  for (let i = 0; i < params.length; i++) args.push(params[i]!);
  try {
    rt.parallel(task, n, args, { align: opts.align ?? 16, minParallel });
  } finally {
    launching.length = 0;
    launchingAt.length = 0;
  }
}

/** A job and its task, built together so callers cannot pair a job with another's task. */
export interface Launchable {
  /** The job. */
  readonly job: HostJob;
  /** Its pool task (register it in tasks.ts). */
  readonly task: ParallelTask;
}

/**
 * Makes a job and its task.
 *
 * @param job The job.
 * @returns Both.
 * @example
 * ```ts
 * import { launchable } from "./host_job.ts";
 * const l = launchable({ name: "demo2", buffers: 0, run() {} });
 * console.log(l.task.name); // "demo2"
 * ```
 */
export function launchable(job: HostJob): Launchable {
  return { job, task: jobTask(job) };
}

/**
 * {@link runJob} for a {@link Launchable}.
 *
 * @param rt The runtime.
 * @param l The job and its task.
 * @param n Items.
 * @param bufs Buffers.
 * @param params Parameters.
 * @param opts Alignment and threshold.
 * @example
 * ```ts ignore
 * launch(rt, binaryF32, n, [a, b, out], [op, 1, 1]);
 * ```
 */
export function launch(
  rt: NativeRuntime,
  l: Launchable,
  n: number,
  bufs: ArrayBuffer[],
  params: ArrayLike<number>,
  opts?: { align?: number; minParallel?: number },
): void {
  runJob(rt, l.task, l.job, n, bufs, params, opts);
}
