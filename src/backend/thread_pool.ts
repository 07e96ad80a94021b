/**
 * A pool of worker threads for the native backend's data-parallel kernels.
 *
 * Why this shape: a kernel launch is synchronous (the backend contract's `dispatch` returns
 * void), so the calling thread posts a job through a SharedArrayBuffer control block, wakes the
 * workers with `Atomics.notify`, computes its own chunk and sleeps in `Atomics.wait` until they
 * are done (about 10 µs per job on the 2-core build machine). Workers see tensors through raw
 * addresses (`Deno.UnsafePointerView.getArrayBuffer`), the same addresses BLAS gets, so storages
 * stay ordinary ArrayBuffers and nothing is copied. Workers are `node:worker_threads` workers
 * that are unref'd, so an open device never keeps a script from exiting.
 *
 * @module
 */
import { Worker } from "node:worker_threads";
import type { Blas, ParallelTask, TaskContext } from "./backend.ts";
import { loadBlas } from "./blas.ts";

const SEQ = 0, DONE = 1, READY = 2, TASK = 3, N = 4, ALIGN = 5, PARTS = 6, ERROR = 7;
const ARGS_BYTE = 256, MAX_ARGS = 96, MSG_BYTE = 1024, MSG_BYTES = 1024;
const CONTROL_BYTES = MSG_BYTE + MSG_BYTES;

/** 32-bit FNV-1a of a task name: the id workers look tasks up by. */
export function taskId(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

/** Host memory through raw addresses (works on any thread of the process). */
export function rawView(address: number, bytes: number): ArrayBuffer {
  return bytes === 0 ? new ArrayBuffer(0) : Deno.UnsafePointerView.getArrayBuffer(
    Deno.UnsafePointer.create(BigInt(address))!,
    bytes,
  );
}

/** Data a worker starts with. */
export interface WorkerData {
  /** The control block. */
  control: SharedArrayBuffer;
  /** This worker's chunk index (1..threads−1; the calling thread takes 0). */
  index: number;
  /** BLAS library the backend loaded (the worker loads the same), or null. */
  blasPath: string | null;
}

/** Items `[lo, hi)` of chunk `part` when `[0, n)` is split into `parts` chunks aligned to `align`. */
export function chunkOf(n: number, parts: number, align: number, part: number): [number, number] {
  const size = Math.ceil(n / parts / align) * align;
  const lo = Math.min(n, part * size);
  return [lo, Math.min(n, lo + size)];
}

/** The calling thread's side of the pool. */
export class ThreadPool {
  /** Threads work is spread over, the calling thread included. */
  readonly threads: number;
  #ctl: Int32Array;
  #args: Float64Array;
  #workers: Worker[] = [];
  #closed = false;

  /**
   * Starts `threads − 1` workers running `workerUrl` (a module that calls {@link serveTasks}).
   *
   * @param threads Total threads, the caller included (1 starts no worker).
   * @param workerUrl The worker entry module.
   * @param blas The BLAS the backend loaded (workers load the same library).
   */
  #ctx: TaskContext;

  constructor(threads: number, workerUrl: URL, blas: Blas | null = null) {
    this.#ctx = { view: rawView, blas };
    this.threads = Math.max(1, Math.floor(threads));
    const sab = new SharedArrayBuffer(CONTROL_BYTES);
    this.#ctl = new Int32Array(sab);
    this.#args = new Float64Array(sab, ARGS_BYTE, MAX_ARGS);
    for (let i = 1; i < this.threads; i++) {
      const w = new Worker(workerUrl, {
        workerData: {
          control: sab,
          index: i,
          blasPath: blas?.path ?? null,
        } satisfies WorkerData,
      });
      w.unref();
      this.#workers.push(w);
    }
  }

  /** Resolves once every worker is waiting for jobs (or after `timeoutMs`). */
  async ready(timeoutMs = 10_000): Promise<boolean> {
    const t0 = performance.now();
    while (Atomics.load(this.#ctl, READY) < this.#workers.length) {
      if (performance.now() - t0 > timeoutMs) return false;
      await new Promise((r) => setTimeout(r, 1));
    }
    return true;
  }

  /**
   * Runs `task` over `[0, n)` on every thread. Falls back to the calling thread alone when the
   * workers are not (yet) running.
   */
  run(
    task: ParallelTask,
    n: number,
    args: ArrayLike<number>,
    opts: { align?: number; minParallel?: number } = {},
  ): void {
    const align = Math.max(1, opts.align ?? 1);
    const workers = this.#workers.length;
    const useWorkers = !this.#closed && workers > 0 && n >= (opts.minParallel ?? 1) &&
      n > align && Atomics.load(this.#ctl, READY) === workers;
    if (!useWorkers) {
      task.run(this.#ctx, Float64Array.from(args), 0, n);
      return;
    }
    if (args.length > MAX_ARGS) throw new RangeError(`${task.name}: more than ${MAX_ARGS} args`);
    const ctl = this.#ctl;
    this.#args.set(args);
    ctl[TASK] = taskId(task.name);
    ctl[N] = n;
    ctl[ALIGN] = align;
    ctl[PARTS] = workers + 1;
    ctl[ERROR] = 0;
    const done0 = Atomics.load(ctl, DONE);
    Atomics.add(ctl, SEQ, 1);
    Atomics.notify(ctl, SEQ);
    const [lo, hi] = chunkOf(n, workers + 1, align, 0);
    let err: unknown = null;
    try {
      task.run(this.#ctx, this.#args.slice(0, args.length), lo, hi);
    } catch (e) {
      err = e;
    }
    for (;;) {
      const d = Atomics.load(ctl, DONE);
      if (d - done0 >= workers) break;
      Atomics.wait(ctl, DONE, d, 1000);
    }
    if (err) throw err;
    if (ctl[ERROR]) {
      const bytes = new Uint8Array(ctl.buffer, MSG_BYTE, MSG_BYTES).slice();
      const msg = new TextDecoder().decode(
        bytes.subarray(0, bytes.indexOf(0) < 0 ? MSG_BYTES : bytes.indexOf(0)),
      );
      throw new Error(`${task.name} failed on a worker thread: ${msg}`);
    }
  }

  /** Stops the workers. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of this.#workers) void w.terminate();
    this.#workers = [];
  }
}

/**
 * The worker side: waits for jobs and runs its chunk of each. Called by the worker entry module
 * with every task it knows.
 *
 * @param data The `workerData` the pool passed.
 * @param tasks Every registered task.
 */
export function serveTasks(data: WorkerData, tasks: readonly ParallelTask[]): never {
  let blas: Blas | null = null;
  if (data.blasPath) {
    try {
      blas = loadBlas(data.blasPath);
    } catch {
      blas = null; // tasks fall back to TypeScript loops, as on a machine without BLAS
    }
  }
  const ctx: TaskContext = { view: rawView, blas };
  const ctl = new Int32Array(data.control);
  const args = new Float64Array(data.control, ARGS_BYTE, MAX_ARGS);
  const byId = new Map<number, ParallelTask>();
  for (const t of tasks) byId.set(taskId(t.name), t);
  let seen = Atomics.load(ctl, SEQ);
  Atomics.add(ctl, READY, 1);
  for (;;) {
    Atomics.wait(ctl, SEQ, seen);
    seen = Atomics.load(ctl, SEQ);
    try {
      const task = byId.get(ctl[TASK]!);
      if (!task) {
        throw new Error(`unknown task id ${ctl[TASK]} (not registered in kernels/native/tasks.ts)`);
      }
      const [lo, hi] = chunkOf(ctl[N]!, ctl[PARTS]!, ctl[ALIGN]!, data.index);
      if (hi > lo) task.run(ctx, args, lo, hi);
    } catch (e) {
      ctl[ERROR] = 1;
      const msg = new TextEncoder().encode(
        String((e as Error)?.message ?? e).slice(0, MSG_BYTES - 1),
      );
      const out = new Uint8Array(MSG_BYTES);
      out.set(msg);
      new Uint8Array(ctl.buffer, MSG_BYTE, MSG_BYTES).set(out);
    }
    Atomics.add(ctl, DONE, 1);
    Atomics.notify(ctl, DONE);
  }
}
