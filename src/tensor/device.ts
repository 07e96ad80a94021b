/**
 * `Device`: where tensors live and kernels run. `openDevice()` picks WebGPU when an adapter
 * exists (on a machine without a GPU, Mesa's llvmpipe is a real adapter) and the CPU backend
 * otherwise or on request.
 *
 * @module
 */
import type {
  Backend,
  BackendKind,
  DeviceLimits,
  DeviceStats,
  Dispatch,
  KernelTime,
  Storage,
  Tunable,
} from "../backend/backend.ts";
import type { TuneResult } from "../backend/autotune.ts";
import { CpuBackend } from "../backend/cpu.ts";
import { WebGpuBackend } from "../backend/webgpu.ts";
import { NativeBackend } from "../backend/native.ts";
import {
  allocTyped,
  bytesPerElement,
  type DType,
  dtypeOfArray,
  isFloat,
  type TypedArrayFor,
} from "../core/dtype.ts";
import { DeviceError, DTypeError, ShapeError, ValueError } from "../core/errors.ts";
import { checkShape, type Shape, sizeOf } from "../core/shape.ts";
import { SharedStorage, Tensor } from "./tensor.ts";
import { type FusionOptions, FusionQueue } from "./fusion.ts";
import { keep } from "./scope.ts";
import { DeferredQueue } from "./deferred.ts";
import { linearFillDispatch } from "../../kernels/fill.ts";
import { randomDispatch } from "../../kernels/random.ts";

/** Options for {@link openDevice}. */
export interface OpenDeviceOptions {
  /**
   * Force a backend: `"webgpu"` (any adapter, software ones included; an error when none),
   * `"native"` (host kernels + BLAS) or `"cpu"` (the TypeScript reference twins). Default: WebGPU
   * on a real GPU, else native.
   */
  prefer?: BackendKind;
  /** Time every dispatch (timestamp queries on WebGPU, host clock on the host backends). */
  profile?: boolean;
  /** Native backend: a BLAS library to load instead of probing (also `QSPARSE_BLAS`). */
  blas?: string;
  /** Native backend: threads for host kernels (also `QSPARSE_THREADS`; default: every core). */
  threads?: number;
  /**
   * WebGPU: choose among interchangeable kernels (e.g. matmul tilings for discrete GPUs) by a
   * measurement per problem class, cached per adapter; see {@link Device.autotune}. Default on;
   * `false` or `QSPARSE_AUTOTUNE=0` keeps the default kernels.
   */
  autotune?: boolean;
  /**
   * WebGPU: bind kernels' parameter blocks as `uniform` or read-only `storage`. Default: storage
   * on software adapters, where lavapipe would recompile some kernels at every launch otherwise
   * (see `WebGpuOptions.paramsBinding` in src/backend/webgpu.ts); uniform elsewhere.
   */
  paramsBinding?: "uniform" | "storage";
  /**
   * Lazy fusion of elementwise ops (see {@link DeviceOptions.fuse}); default on for WebGPU, off
   * for the host backends.
   */
  fuse?: boolean | FusionOptions;
}

/** Options for the {@link Device} constructor. */
export interface DeviceOptions {
  /**
   * Elementwise ops (unary, binary, scalar forms, `where`, casts) append to a pending group that
   * runs as one generated kernel before anything else reaches the backend. `false` dispatches
   * each op on its own; an object sets the group's limits. Default: on for WebGPU, where a
   * dispatch costs tens of µs (bench/engine.ts, llvmpipe, 2026-11-30: the 1,000-op chain on
   * 4,096 floats, 152 µs/op unfused and 28 fused). Off for native: its dispatch costs ~10 µs and
   * its elementwise loops are specialised and threaded, while the fused twin interprets the DAG
   * one JS pass per node on one thread — in the same run the chain took 28.5 µs/op fused against
   * 25.8 unfused (0.91×; faster only on tiny tensors, 1.7× on 16 floats), and a training step
   * saves 5 of 195 dispatches. Off for cpu, where tests turn it on to compare fused against
   * unfused on the twins.
   */
  fuse?: boolean | FusionOptions;
}

/** Nested arrays of numbers accepted by {@link Device.tensor}. */
export type NestedNumbers = number | readonly NestedNumbers[];

/** Counter-based generator state: the next draw uses counters from `offset` under `seed`. */
export interface GeneratorState {
  /** 32-bit seed. */
  seed: number;
  /** Next unused counter. */
  offset: number;
}

/** Options for random draws. */
export interface RandomOptions {
  /** Seed; defaults to the device generator, which advances after each draw. */
  seed?: number;
  /** Counter offset within the seed's stream (default 0 with an explicit seed). */
  offset?: number;
}

function flatten(data: NestedNumbers, out: number[], shape: number[], depth: number): void {
  if (typeof data === "number") {
    out.push(data);
    return;
  }
  if (shape.length === depth) shape.push(data.length);
  else if (shape[depth] !== data.length) {
    throw new ShapeError("tensor", "ragged nested array: rows have different lengths");
  }
  for (const d of data) flatten(d, out, shape, depth + 1);
}

/**
 * A compute device holding tensors.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.equal(dev.kind, "cpu");
 * using r = dev.rand([4], { seed: 7 });
 * assert.equal((await r.data()).length, 4);
 * ```
 */
export class Device implements Disposable {
  readonly #backend: Backend;
  readonly #fusion: FusionQueue | null;
  readonly #deferred: DeferredQueue | null;
  readonly #units = new Map<DType, Tensor>();
  /** The generator used when a random draw gets no seed. */
  readonly generator: GeneratorState = { seed: 0, offset: 0 };

  /**
   * Wraps a backend as a device (most code should use {@link openDevice} instead).
   *
   * @param backend The backend to wrap.
   * @param opts Whether elementwise ops fuse (default: on WebGPU only).
   */
  constructor(backend: Backend, opts: DeviceOptions = {}) {
    this.#backend = backend;
    const fuse = opts.fuse ?? backend.kind === "webgpu";
    this.#fusion = fuse ? new FusionQueue(backend, fuse === true ? {} : fuse) : null;
    this.#deferred = fuse ? new DeferredQueue(backend, this.#fusion) : null;
  }

  /**
   * The backend that runs the kernels. Reaching it emits the pending fused group first, so
   * whatever the caller then dispatches, writes, copies or reads is ordered after it.
   */
  get backend(): Backend {
    this.#deferred?.emit();
    this.#fusion?.emit();
    return this.#backend;
  }

  /** The pending elementwise group, or null when this device does not fuse. */
  get fusion(): FusionQueue | null {
    return this.#fusion;
  }

  /**
   * Deferred group launches (src/tensor/deferred.ts), or null when this device does not fuse
   * (then ops launch at once, as they did).
   */
  get deferred(): DeferredQueue | null {
    return this.#deferred;
  }

  /**
   * Returns storage to the backend without emitting the pending group: the group holds
   * references on what it reads, and a pending output released here is simply not written.
   *
   * @param storage Storage whose last reference was dropped.
   */
  releaseStorage(storage: Storage): void {
    this.#fusion?.forget(storage);
    this.#deferred?.forget(storage);
    this.#backend.release(storage);
  }

  /** The adapter's limits (reading them launches nothing pending). */
  get limits(): DeviceLimits {
    return this.#backend.limits;
  }

  /** `"webgpu"`, `"native"` or `"cpu"`. */
  get kind(): BackendKind {
    return this.#backend.kind;
  }

  /** The adapter's description, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)`. */
  get description(): string {
    return this.#backend.description;
  }

  /**
   * An uninitialised tensor (kernels use this for outputs; every element must be written).
   *
   * @param shape Dims.
   * @param dtype Element type.
   * @param op The op allocating, named in errors.
   * @returns The tensor.
   */
  empty<D extends DType>(shape: Shape, dtype: D, op = "empty"): Tensor<D> {
    checkShape(op, shape);
    if (dtype === "f16" && !this.#backend.hasF16) {
      throw new DTypeError(
        op,
        `f16 needs the adapter feature shader-f16, which ${this.description} lacks`,
      );
    }
    const bytes = sizeOf(shape) * bytesPerElement(dtype);
    // Allocation does not emit the pending group: fused ops allocate their outputs.
    const storage = this.#backend.allocate(bytes, op);
    return new Tensor(this, shape, dtype, new SharedStorage(this, storage));
  }

  /**
   * A tensor holding `data`.
   *
   * @param data A typed array, a flat number array (with `shape`) or nested arrays.
   * @param shape Dims; inferred from nested arrays or the typed array's length when omitted.
   * @param dtype Element type; inferred from a typed array, else `f32`.
   * @returns The tensor.
   */
  tensor<D extends DType = "f32">(
    data: ArrayLike<number> | NestedNumbers,
    shape?: Shape,
    dtype?: D,
  ): Tensor<D> {
    let flat: ArrayLike<number>;
    let inferred: number[];
    const arrayDtype = dtypeOfArray(data);
    if (typeof data === "number") {
      flat = [data];
      inferred = [];
    } else if (arrayDtype || !Array.isArray(data) || data.every((d) => typeof d === "number")) {
      flat = data as ArrayLike<number>;
      inferred = [flat.length];
    } else {
      const out: number[] = [];
      inferred = [];
      flatten(data as NestedNumbers, out, inferred, 0);
      flat = out;
    }
    const s = shape ?? inferred;
    checkShape("tensor", s);
    if (sizeOf(s) !== flat.length) {
      throw ShapeError.mismatch(
        "tensor",
        [s],
        `shape holds ${sizeOf(s)} elements but data has ${flat.length}`,
      );
    }
    const dt = (dtype ?? arrayDtype ?? "f32") as D;
    const t = this.empty(s, dt, "tensor");
    const host = arrayDtype === dt ? (flat as TypedArrayFor<D>) : (() => {
      const a = allocTyped(dt, flat.length);
      (a as unknown as { set(x: ArrayLike<number>): void }).set(flat);
      return a;
    })();
    if (host.length > 0) this.backend.write(t.storage("tensor"), host);
    return t;
  }

  /**
   * A tensor of `value` everywhere.
   *
   * @param shape Dims.
   * @param value The fill value.
   * @param dtype Element type (default f32).
   * @returns The tensor.
   */
  full<D extends DType = "f32">(shape: Shape, value: number, dtype?: D): Tensor<D> {
    const dt = (dtype ?? "f32") as D;
    const t = this.empty(shape, dt, "full");
    if (!isFloat(dt) && Math.abs(value) > 2 ** 24) {
      // Fill through f32 would round; write from the host instead.
      const a = allocTyped(dt, t.size);
      a.fill(value);
      this.backend.write(t.storage("full"), a);
      return t;
    }
    this.run(linearFillDispatch("full", dt, t.storage("full"), t.size, value, 0));
    return t;
  }

  /** Zeros. @param shape Dims. @param dtype Element type. @returns The tensor. */
  zeros<D extends DType = "f32">(shape: Shape, dtype?: D): Tensor<D> {
    return this.full(shape, 0, dtype);
  }

  /** Ones. @param shape Dims. @param dtype Element type. @returns The tensor. */
  ones<D extends DType = "f32">(shape: Shape, dtype?: D): Tensor<D> {
    return this.full(shape, 1, dtype);
  }

  /**
   * A scalar 1 of `dtype`, made once per device and dtype and kept until the device is
   * destroyed: `backward`'s default seed, so a training step launches no fill for it. Read it
   * only: never write it, dispose it or hand it to an op that works in place.
   *
   * @param dtype Element type.
   * @returns The shared scalar.
   *
   * @example
   * ```ts
   * import { openDevice } from "@qsparse/kit";
   * import assert from "node:assert/strict";
   * using dev = await openDevice({ prefer: "cpu" });
   * assert.equal(dev.unit("f32"), dev.unit("f32"));
   * assert.equal(await dev.unit("f32").item(), 1);
   * ```
   */
  unit<D extends DType>(dtype: D): Tensor<D> {
    let t = this.#units.get(dtype);
    if (!t) this.#units.set(dtype, t = keep(this.ones([], dtype)));
    return t as Tensor<D>;
  }

  /**
   * `[start, start + step, …]` below `stop` (like `numpy.arange`). `arange(n)` counts 0..n-1.
   *
   * @param start First value (or the count, when `stop` is omitted).
   * @param stop Exclusive end.
   * @param step Increment (not 0).
   * @param dtype Element type (default f32).
   * @returns A 1-D tensor.
   */
  arange<D extends DType = "f32">(start: number, stop?: number, step = 1, dtype?: D): Tensor<D> {
    if (stop === undefined) [start, stop] = [0, start];
    if (step === 0) throw new ValueError("arange", "step must not be 0");
    const n = Math.max(0, Math.ceil((stop - start) / step));
    const dt = (dtype ?? "f32") as D;
    const t = this.empty([n], dt, "arange");
    this.run(linearFillDispatch("arange", dt, t.storage("arange"), n, start, step));
    return t;
  }

  #draw(n: number, opts: RandomOptions): { seed: number; offset: number } {
    if (opts.seed !== undefined) return { seed: opts.seed >>> 0, offset: (opts.offset ?? 0) >>> 0 };
    const g = this.generator;
    const r = { seed: g.seed >>> 0, offset: g.offset >>> 0 };
    g.offset = (g.offset + 2 * n) >>> 0;
    return r;
  }

  /**
   * Uniform f32 in [low, high) from the counter-based generator (same values on every backend).
   *
   * @param shape Dims.
   * @param opts Seed and offset; `low` (default 0) and `high` (default 1).
   * @returns The tensor.
   */
  rand(shape: Shape, opts: RandomOptions & { low?: number; high?: number } = {}): Tensor<"f32"> {
    const t = this.empty(shape, "f32", "rand");
    const { seed, offset } = this.#draw(t.size, opts);
    this.run(
      randomDispatch(
        "uniform",
        t.storage("rand"),
        t.size,
        seed,
        offset,
        opts.low ?? 0,
        opts.high ?? 1,
      ),
    );
    return t;
  }

  /**
   * Normal f32 (Box–Muller over the counter-based generator).
   *
   * @param shape Dims.
   * @param opts Seed and offset; `mean` (default 0) and `std` (default 1).
   * @returns The tensor.
   */
  randn(shape: Shape, opts: RandomOptions & { mean?: number; std?: number } = {}): Tensor<"f32"> {
    const t = this.empty(shape, "f32", "randn");
    const { seed, offset } = this.#draw(t.size, opts);
    this.run(
      randomDispatch(
        "normal",
        t.storage("randn"),
        t.size,
        seed,
        offset,
        opts.mean ?? 0,
        opts.std ?? 1,
      ),
    );
    return t;
  }

  /**
   * Runs or encodes a kernel launch.
   *
   * @param d The dispatch.
   */
  run(d: Dispatch): void {
    // Not through `backend`, which would launch every deferred group: a launch binds storages
    // taken from tensors (taking a pending output's storage launched its group), and one that
    // binds what a pending member reads launches them first.
    this.#fusion?.emit();
    this.#deferred?.before(d.buffers);
    this.#backend.dispatch(d);
  }

  /**
   * Measures, on this adapter, the kernel variants of every problem class met since the last
   * call that has no choice yet (cached choices apply without it), and runs the fastest correct
   * one from then on. Call it once after a warm-up step and before a loop: it waits for the
   * device. A no-op on the host backends and with autotuning off.
   *
   * @param extra Tunables (a dispatch's `tune`) to measure besides the recorded classes.
   * @returns What was measured, per class.
   *
   * @example
   * ```ts
   * import { matmul, openDevice } from "@qsparse/kit";
   * import assert from "node:assert/strict";
   * using dev = await openDevice({ prefer: "cpu" });
   * matmul(dev.zeros([64, 64]), dev.zeros([64, 64])).dispose();
   * assert.deepEqual(await dev.autotune(), []); // nothing to choose on the CPU backend
   * ```
   */
  async autotune(extra: readonly Tunable[] = []): Promise<TuneResult[]> {
    const b = this.backend;
    return b instanceof WebGpuBackend && b.autotuner ? await b.autotuner.tune(extra) : [];
  }

  /** Submits pending work and waits for the device. @returns When done. */
  flush(): Promise<void> {
    return this.backend.flush();
  }

  /** Live buffers and bytes, pool contents, dispatch and submit counts. @returns The stats. */
  stats(): DeviceStats {
    return this.backend.stats();
  }

  /** Per-op device time when opened with `profile: true`. @returns The table, or undefined. */
  profile(): Map<string, KernelTime> | undefined {
    return this.backend.profile();
  }

  /** Frees all device memory; later use throws a DeviceError. */
  destroy(): void {
    this.#fusion?.discard();
    this.#deferred?.discard();
    this.#units.clear();
    this.#backend.destroy();
  }

  /** Destroys the device at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.destroy();
  }
}

/**
 * Opens a device. By default WebGPU on a real GPU adapter; where the only adapter is a software
 * rasterizer (llvmpipe, lavapipe, SwiftShader) or none exists, the native backend (host kernels
 * with BLAS through FFI; without a loadable BLAS it says so once and runs TypeScript matmul).
 *
 * @param opts `prefer` forces a backend; `profile` times every dispatch; `blas` names a library.
 * @returns The device. `device.kind` and `device.description` say which one you got.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice();
 * assert.ok(["webgpu", "native", "cpu"].includes(dev.kind));
 * console.log(`${dev.kind}: ${dev.description}`);
 * ```
 */
export async function openDevice(opts: OpenDeviceOptions = {}): Promise<Device> {
  const profile = opts.profile ?? false;
  const dev = { fuse: opts.fuse };
  if (opts.prefer === "cpu") return new Device(new CpuBackend({ profile }), dev);
  if (opts.prefer === undefined || opts.prefer === "webgpu") {
    let gpu: WebGpuBackend | null = null;
    try {
      gpu = await WebGpuBackend.open({
        profile,
        allowSoftware: opts.prefer === "webgpu",
        autotune: opts.autotune,
        paramsBinding: opts.paramsBinding,
      });
    } catch (e) {
      if (opts.prefer === "webgpu") {
        throw new DeviceError("openDevice", `WebGPU failed to open: ${(e as Error).message}`);
      }
    }
    if (gpu) return new Device(gpu, dev);
    if (opts.prefer === "webgpu") {
      throw new DeviceError("openDevice", "no WebGPU adapter (install a GPU driver or Mesa)");
    }
  }
  if (!ffiAllowed()) {
    // The native backend reaches memory and BLAS through FFI; without the permission the
    // TypeScript twins are what can run.
    if (opts.prefer === "native") {
      throw new DeviceError("openDevice", "the native backend needs --allow-ffi (or -A)");
    }
    let soft: WebGpuBackend | null = null;
    try {
      soft = await WebGpuBackend.open({
        profile,
        allowSoftware: true,
        autotune: opts.autotune,
        paramsBinding: opts.paramsBinding,
      });
    } catch {
      soft = null;
    }
    if (!warnedNoFfi) {
      warnedNoFfi = true;
      console.warn(
        `qsparse: no FFI permission, so ${
          soft ? `WebGPU on ${soft.description}` : "the CPU reference backend"
        } runs instead of the native backend; run with --allow-ffi (or -A) for it.`,
      );
    }
    return new Device(soft ?? new CpuBackend({ profile }), dev);
  }
  const native = new NativeBackend({ profile, blas: opts.blas, threads: opts.threads });
  await native.ready();
  if (!native.blas && !warnedNoBlas) {
    warnedNoBlas = true;
    console.warn(
      `qsparse: native backend without BLAS (${native.blasError}); matmul runs in TypeScript. ` +
        "Install OpenBLAS (Debian: apt-get install libopenblas0-pthread) or set QSPARSE_BLAS.",
    );
  }
  return new Device(native, dev);
}

let warnedNoBlas = false;
let warnedNoFfi = false;

function ffiAllowed(): boolean {
  try {
    return Deno.permissions.querySync({ name: "ffi" }).state === "granted";
  } catch {
    return false;
  }
}
