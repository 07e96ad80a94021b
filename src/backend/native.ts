/**
 * The native backend: host memory like the CPU backend, but each dispatch runs the kernel's fast
 * host implementation (`Dispatch.native`: BLAS through FFI for matmul, tuned TypeScript loops for
 * the rest) and falls back to the CPU twin where a kernel has none. It is the default where the
 * only WebGPU adapter is a software rasterizer, or none exists.
 *
 * @module
 */
import type { Backend, Blas, Dispatch, NativeRuntime, ParallelTask } from "./backend.ts";
import { HostBackend } from "./host.ts";
import { BlasLoadError, loadBlas } from "./blas.ts";
import { chunkOf, rawView, ThreadPool } from "./thread_pool.ts";
import { checkedBlas, checkNativeFromEnv, ExtentRegistry } from "./checked.ts";

/** The worker entry module (referenced by URL, not imported: it imports the kernels). */
const WORKER_URL = new URL("../../kernels/native/worker.ts", import.meta.url);

/** Threads for host kernels: `QSPARSE_THREADS` when set, else the core count. */
export function defaultThreads(): number {
  let env: string | undefined;
  try {
    env = Deno.env.get("QSPARSE_THREADS");
  } catch {
    env = undefined;
  }
  const n = env === undefined ? NaN : Number(env);
  if (Number.isInteger(n) && n >= 1) return n;
  return Math.max(1, navigator.hardwareConcurrency ?? 1);
}

/** Options of {@link NativeBackend}. */
export interface NativeBackendOptions {
  /** Time every dispatch with the host clock. */
  profile?: boolean;
  /** A BLAS library to load instead of probing the usual ones (also `QSPARSE_BLAS`). */
  blas?: string;
  /** Skip the BLAS (tests use this to cover the TypeScript fallback). */
  noBlas?: boolean;
  /** Threads for the host kernels, the calling one included (default {@link defaultThreads}). */
  threads?: number;
  /**
   * Check every BLAS operand and worker view against the extents of the device's buffers, and
   * run the thread pool's chunks one after another on the calling thread (slow; for finding
   * out-of-bounds writes). Default: `QSPARSE_CHECK_NATIVE=1`.
   */
  checked?: boolean;
}

/** Backend running fast host kernels and BLAS on host memory. */
export class NativeBackend extends HostBackend implements Backend, NativeRuntime {
  readonly kind = "native" as const;
  readonly description: string;
  protected readonly name = "native";
  /** The BLAS, or null when none loaded (matmul then runs in TypeScript). */
  readonly blas: Blas | null;
  /** Why no BLAS is in use, when none is. */
  readonly blasError: string | null;
  #addresses = new WeakMap<ArrayBuffer, number>();
  #pool: ThreadPool;
  /** Set in checked mode: the extents BLAS operands and views must lie in. */
  #extents: ExtentRegistry | null;

  /** @param opts Profiling and BLAS choice. */
  constructor(opts: NativeBackendOptions = {}) {
    super(opts);
    let blas: Blas | null = null, err: string | null = null;
    if (opts.noBlas) err = "BLAS disabled by the caller";
    else {
      try {
        blas = loadBlas(opts.blas);
      } catch (e) {
        err = e instanceof BlasLoadError ? e.message : `BLAS failed: ${(e as Error).message}`;
      }
    }
    this.#extents = (opts.checked ?? checkNativeFromEnv()) ? new ExtentRegistry() : null;
    this.blas = blas && this.#extents ? checkedBlas(blas, this.#extents) : blas;
    this.blasError = err;
    this.#pool = new ThreadPool(opts.threads ?? defaultThreads(), WORKER_URL, blas);
    const t = this.#pool.threads;
    const kernels = `host kernels on ${t} thread${t === 1 ? "" : "s"}`;
    this.description = blas
      ? `native (${kernels}; BLAS ${blas.library}, ${blas.threads} thread${
        blas.threads === 1 ? "" : "s"
      })`
      : `native (${kernels}; no BLAS, TypeScript matmul: ${err})`;
    if (this.#extents) this.description += " [checked]";
  }

  /** Threads the host kernels use, the calling one included. */
  get threads(): number {
    return this.#pool.threads;
  }

  /** Resolves when the worker threads are serving (kernels run single-threaded until then). */
  ready(): Promise<boolean> {
    return this.#pool.ready();
  }

  parallel(
    task: ParallelTask,
    n: number,
    args: ArrayLike<number>,
    opts?: { align?: number; minParallel?: number },
  ): void {
    const reg = this.#extents;
    if (!reg) {
      this.#pool.run(task, n, args, opts);
      return;
    }
    // Checked: the same chunks the pool would make, one after another, with checked views.
    const ctx = {
      blas: this.blas,
      view: (address: number, bytes: number) => {
        reg.check(`${task.name} view`, address, bytes);
        return rawView(address, bytes);
      },
    };
    const align = Math.max(1, opts?.align ?? 1), parts = this.threads;
    for (let p = 0; p < parts; p++) {
      const [lo, hi] = chunkOf(n, parts, align, p);
      if (hi > lo || p === 0) task.run(ctx, Float64Array.from(args), lo, hi);
    }
  }

  override destroy(): void {
    this.#pool.close();
    this.#extents?.clear();
    super.destroy();
  }

  protected override onNewBuffer(buffer: ArrayBuffer): void {
    if (this.blas || this.#extents) this.address(buffer);
  }

  protected override onDropBuffer(buffer: ArrayBuffer): void {
    const a = this.#addresses.get(buffer);
    if (a !== undefined) this.#extents?.remove(a);
  }

  address(buffer: ArrayBuffer): number {
    const a = this.#addresses.get(buffer);
    if (a !== undefined) return a;
    // Host buffers made outside allocate() (none today) get their address on first use.
    const v = Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
    this.#addresses.set(buffer, v);
    this.#extents?.add(v, buffer);
    return v;
  }

  protected override kernel(d: Dispatch, buffers: ArrayBuffer[]): () => void {
    const fast = d.native;
    const extents = this.#extents;
    if (extents) {
      return () => {
        extents.op = d.op;
        if (fast) fast(buffers, this);
        else d.cpu(buffers);
      };
    }
    return fast ? () => fast(buffers, this) : () => d.cpu(buffers);
  }
}
