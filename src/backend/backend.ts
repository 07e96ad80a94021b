/**
 * The backend contract: the few things a device must do so every kernel can run on it.
 * A kernel is described once (WGSL source + CPU twin) and handed to {@link Backend.dispatch};
 * the WebGPU backend compiles and encodes the WGSL, the CPU backend runs the twin.
 *
 * @module
 */

/**
 * Which implementation runs the kernels: `webgpu` (WGSL on a GPU adapter), `native` (host memory,
 * BLAS through FFI, fast host kernels) or `cpu` (the TypeScript twins, the reference).
 */
export type BackendKind = "webgpu" | "native" | "cpu";

/**
 * The BLAS routines the native backend loads with `Deno.dlopen` (row-major CBLAS). Pointers are
 * raw addresses so a kernel can pass an offset into a storage without allocating a view.
 */
export interface Blas {
  /** Library that was loaded (path or soname) and its build, for `device.description`. */
  readonly library: string;
  /** The path or soname it was loaded from (worker threads load the same). */
  readonly path: string;
  /** Threads the library uses, when it can say (OpenBLAS); else the core count. */
  readonly threads: number;
  /**
   * `C = alpha·op(A)·op(B) + beta·C`, row-major; `a`, `b`, `c` are byte addresses from
   * {@link NativeRuntime.address}.
   */
  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: number,
    lda: number,
    b: number,
    ldb: number,
    beta: number,
    c: number,
    ldc: number,
  ): void;
  /** `y = alpha·op(A)·x + beta·y`, row-major `A` of `m × n`. */
  sgemv(
    transA: boolean,
    m: number,
    n: number,
    alpha: number,
    a: number,
    lda: number,
    x: number,
    incx: number,
    beta: number,
    y: number,
    incy: number,
  ): void;
  /**
   * `y = alpha·x + y` over `n` elements (level 1: one thread, no allocation; the sparse GEMV
   * calls it once per kept weight row on each thread's column range).
   */
  saxpy(n: number, alpha: number, x: number, incx: number, y: number, incy: number): void;
  /**
   * `y[0:n] += Σ_{t ∈ [e0, e1)} vals[t] · W[idxs[t]]` where row `i` of W starts at byte address
   * `w + i·rowStrideBytes`: one `saxpy` per entry, through cached row pointers (an FFI call with
   * pointer objects costs ~0.03 µs where numeric addresses cost ~0.3 µs, which dominated the
   * short rows of decoding).
   */
  axpyRows(
    n: number,
    vals: Float32Array,
    idxs: Uint32Array,
    e0: number,
    e1: number,
    w: number,
    rowStrideBytes: number,
    y: number,
  ): void;
}

/** What a parallel task gets on whichever thread runs it. */
export interface TaskContext {
  /**
   * An ArrayBuffer aliasing `bytes` of host memory at `address` (made from the raw address, so
   * no copy is involved; valid during the task).
   */
  view(address: number, bytes: number): ArrayBuffer;
  /** The BLAS loaded on this thread (same library as the backend's), or null. */
  readonly blas: Blas | null;
}

/**
 * A data-parallel piece of a native kernel: computes items `[lo, hi)` of a job. Every task has a
 * unique `name` and is registered in kernels/native/tasks.ts so worker threads can find it; `args`
 * carries addresses (from {@link NativeRuntime.address}) and numeric parameters.
 * Chunks must write disjoint outputs, so a result never depends on the thread count.
 */
export interface ParallelTask {
  /** Unique name (worker threads look the task up by it). */
  readonly name: string;
  /** Runs items `[lo, hi)`. */
  run(ctx: TaskContext, args: Float64Array, lo: number, hi: number): void;
}

/**
 * What a native kernel gets besides its buffers: the BLAS (null when none loaded; the kernel must
 * then compute in TypeScript), the address of a storage for FFI calls, and a thread pool.
 */
export interface NativeRuntime {
  /** The loaded BLAS, or null. */
  readonly blas: Blas | null;
  /** Threads {@link NativeRuntime.parallel} spreads work over (1 = the calling thread only). */
  readonly threads: number;
  /** Byte address of the start of `buffer` (one of the dispatch's buffers). */
  address(buffer: ArrayBuffer): number;
  /**
   * Runs `task` over items `[0, n)` split into one contiguous chunk per thread (chunk bounds
   * rounded to `align` items), the calling thread taking the first; returns when all are done.
   * Runs on the calling thread alone when `n < minParallel` (default 1).
   */
  parallel(
    task: ParallelTask,
    n: number,
    args: ArrayLike<number>,
    opts?: { align?: number; minParallel?: number },
  ): void;
}

/**
 * A native (fast host) implementation of a kernel: same buffers and semantics as the CPU twin,
 * which stays the reference it is tested against. Parameters reach it by closure.
 */
export type NativeKernel = (buffers: ArrayBuffer[], rt: NativeRuntime) => void;

/**
 * A block of device memory. Opaque outside the backend that made it.
 * `bytes` is what was asked for; the backend may hold more (size classes).
 */
export interface Storage {
  /** Unique per backend, for debugging and pool bookkeeping. */
  readonly id: number;
  /** Requested size in bytes. */
  readonly bytes: number;
}

/** Live memory reported by {@link Backend.stats}. */
export interface DeviceStats {
  /** Storages handed out and not yet released. */
  liveBuffers: number;
  /** Bytes of those storages (requested sizes). */
  liveBytes: number;
  /** Buffers held by the pool for reuse (WebGPU only). */
  pooledBuffers: number;
  /** Bytes held by the pool (size-class sizes). */
  pooledBytes: number;
  /** Dispatches encoded since the device opened. */
  dispatches: number;
  /** Queue submissions since the device opened. */
  submits: number;
  /** Distinct compute pipelines compiled. */
  pipelines: number;
}

/** Adapter limits the kit checks before dispatching. */
export interface DeviceLimits {
  /** Largest storage buffer binding, in bytes. */
  maxStorageBufferBindingSize: number;
  /** Largest buffer, in bytes. */
  maxBufferSize: number;
  /** Workgroup (shared) memory per workgroup, in bytes. */
  maxComputeWorkgroupStorageSize: number;
  /** Largest dispatch along one dimension. */
  maxComputeWorkgroupsPerDimension: number;
  /**
   * Storage buffers one kernel may bind (WebGPU's default is 8; llvmpipe allows 32). Multi-tensor
   * kernels size their groups by it; fused elementwise kernels split to stay under it.
   */
  maxStorageBuffersPerShaderStage: number;
}

/**
 * One kernel launch. `wgsl` is compiled once per `key`; bindings 0..n-1 are `buffers` in order,
 * and the uniform block, when present, is binding n. `cpu` runs the CPU twin on the same
 * buffers (as host ArrayBuffers, in the same order); parameters reach it by closure.
 */
export interface Dispatch {
  /** Op name, for errors and profiling. */
  op: string;
  /** Pipeline cache key: kernel family + specialisation (dtype, workgroup size, flags). */
  key: string;
  /** WGSL source; only called on a pipeline-cache miss. */
  wgsl: () => string;
  /** CPU twin. Gets the bound buffers' bytes in binding order. */
  cpu: (buffers: ArrayBuffer[]) => void;
  /**
   * Fast host implementation run by the native backend (falls back to `cpu` when absent). Must
   * agree with `cpu` within f32 tolerance; tests check it.
   */
  native?: NativeKernel;
  /** Storage buffers in binding order. */
  buffers: Storage[];
  /** Uniform block (u32 words; floats are bit-cast in). Omit for kernels without parameters. */
  uniforms?: Uint32Array;
  /** Workgroup counts. */
  workgroups: readonly [number, number, number];
  /**
   * How many ordinary launches this one does the work of (default 1): a fused kernel counts its
   * ops, so a backend that submits every so many launches to keep the device working while the
   * host encodes (WebGPU) submits a long fused chain at once rather than at the next flush.
   */
  launches?: number;
  /**
   * Other kernels that compute the same result (see src/backend/autotune.ts): a backend that
   * autotunes may run the variant measured fastest on its adapter for this problem class
   * instead. Host backends ignore it (every variant shares `cpu` and `native`).
   */
  tune?: Tunable;
}

/**
 * Interchangeable kernels for one launch, offered to an autotuning backend. The dispatch that
 * carries it is the default variant, `variants[0]`.
 */
export interface Tunable {
  /**
   * Problem class: one choice serves every problem of the class (e.g. a bucket of shapes, dtype,
   * transposes), so it must include what decides which variants are valid, and the version of
   * the kernels it names.
   */
  readonly key: string;
  /** Variant names valid for this problem, the default first (fewer than 2: nothing to choose). */
  readonly variants: readonly string[];
  /** The same launch on variant `variant` with these buffers (binding order). */
  build(variant: string, buffers: readonly Storage[]): Dispatch;
  /**
   * Host contents of the input buffers for a tuning run, in binding order (deterministic; the
   * outputs follow them in the binding list).
   */
  sampleInputs(): ArrayBufferView[];
  /** Byte sizes of the output buffers, bound after the inputs. */
  readonly outputBytes: readonly number[];
  /** Element type of the outputs, to compare variants: f32 or f16. */
  readonly outputDType: "f32" | "f16";
  /**
   * A variant is accepted when every output element is within `tolerance · max|reference|` of
   * the default's (accumulation order may differ between variants, never the math).
   */
  readonly tolerance: number;
}

/**
 * One device command of a captured step, on the storages it binds: a kernel launch, a host write
 * (its bytes copied when recorded) or a device-side copy.
 */
export type CapturedCommand =
  | { readonly kind: "dispatch"; readonly dispatch: Dispatch; readonly buffers: readonly Storage[] }
  | {
    readonly kind: "write";
    readonly dst: Storage;
    readonly offset: number;
    readonly data: Uint8Array;
  }
  | {
    readonly kind: "copy";
    readonly src: Storage;
    readonly srcOffset: number;
    readonly dst: Storage;
    readonly dstOffset: number;
    readonly bytes: number;
  };

/**
 * Receives everything a backend is asked to do while a step is captured (see
 * src/backend/capture.ts). The backend still executes each command; the recorder only watches.
 */
export interface CaptureRecorder {
  /** A storage was allocated. */
  allocated(storage: Storage): void;
  /** A storage was released (before the backend lets go of its memory). */
  released(storage: Storage): void;
  /** A command is about to be executed or encoded. */
  command(c: CapturedCommand): void;
  /**
   * A host readback was asked for: returns the error the backend throws at once (a captured
   * step is replayed without the host, so it cannot depend on device values).
   */
  readback(storage: Storage, bytes: number): Error;
}

/**
 * A captured step compiled for one backend: its commands on fixed storages, with pipelines, bind
 * groups, uniform blocks and written bytes prepared once.
 */
export interface Replay {
  /** Kernel launches per replay. */
  readonly dispatches: number;
  /**
   * Host data for the next replay (a step's inputs), written without staging: on WebGPU pending
   * work is submitted first, so the write cannot overtake it.
   */
  write(storage: Storage, data: ArrayBufferView): void;
  /**
   * Encodes (WebGPU) or runs (host backends) every command once. Throws a CaptureError when a
   * storage the commands bind was released since they were compiled.
   */
  run(): void;
  /** Frees what the replay owns (uniform and constant buffers); not the storages it binds. */
  dispose(): void;
}

/** A device implementation. */
export interface Backend {
  /** Which implementation this is. */
  readonly kind: BackendKind;
  /** Human-readable adapter description (e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`). */
  readonly description: string;
  /** Limits checked before allocation and dispatch. */
  readonly limits: DeviceLimits;
  /** Whether f16 storage is available (`shader-f16`). */
  readonly hasF16: boolean;
  /** Allocates `bytes` of storage. Contents are undefined: kernels write every output element. */
  allocate(bytes: number, op: string): Storage;
  /** Copies host data into storage at `byteOffset`. Ordered after every earlier dispatch. */
  write(storage: Storage, data: ArrayBufferView, byteOffset?: number): void;
  /** Reads `bytes` from storage; flushes pending work first. */
  read(storage: Storage, bytes: number, byteOffset?: number): Promise<ArrayBuffer>;
  /** Copies `bytes` between storages, ordered with dispatches. */
  copy(src: Storage, srcOffset: number, dst: Storage, dstOffset: number, bytes: number): void;
  /** Runs (or encodes) one kernel launch. */
  dispatch(d: Dispatch): void;
  /** Submits pending work; resolves when the device has finished it. */
  flush(): Promise<void>;
  /** Returns storage to the backend (pool or free). */
  release(storage: Storage): void;
  /** Live memory and counters. */
  stats(): DeviceStats;
  /** Frees everything; later calls fail with a DeviceError. */
  destroy(): void;
  /** Per-op kernel time (ns) when the device was opened with profiling, else undefined. */
  profile(): Map<string, KernelTime> | undefined;
  /** Clears the profile counters. */
  resetProfile(): void;
  /**
   * Set while a step is being captured: every allocate, release, write, copy and dispatch is
   * reported to it, and `read` throws the error it returns.
   */
  recorder: CaptureRecorder | null;
  /**
   * Bytes a storage of `bytes` really occupies (its pool size class): storages of one capacity
   * can take turns in one buffer.
   */
  capacity(bytes: number): number;
  /**
   * Prepares recorded commands for replay. Every storage they bind must be live, and must stay
   * live (the replay checks) until the replay is disposed.
   */
  compileReplay(commands: readonly CapturedCommand[]): Replay;
}

/** Accumulated device time of one op name. */
export interface KernelTime {
  /** Number of timed dispatches. */
  count: number;
  /** Total device time, in nanoseconds. */
  ns: number;
}
