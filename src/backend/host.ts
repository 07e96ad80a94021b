/**
 * Host memory shared by the two host backends (`cpu`, `native`): storages are ArrayBuffers,
 * released ones are kept in exact-size free lists (a training step asks for the same sizes every
 * step, so after the first step nothing is allocated), and allocations beyond a stated limit are
 * refused before any memory is touched.
 *
 * @module
 */
import type {
  CapturedCommand,
  CaptureRecorder,
  DeviceLimits,
  DeviceStats,
  Dispatch,
  KernelTime,
  Replay,
  Storage,
} from "./backend.ts";
import { CaptureError, DeviceError } from "../core/errors.ts";

/** Storage of a host backend. */
export class HostStorage implements Storage {
  /**
   * @param id Unique per backend.
   * @param bytes Requested size.
   * @param buffer The host memory, null once released.
   */
  constructor(readonly id: number, readonly bytes: number, public buffer: ArrayBuffer | null) {}
}

/** Largest single host allocation unless `QSPARSE_MAX_ALLOC_BYTES` says otherwise: 4 GiB. */
export const DEFAULT_MAX_ALLOC_BYTES = 4 * 2 ** 30;

/** The allocation limit: `QSPARSE_MAX_ALLOC_BYTES` when set (and readable), else 4 GiB. */
export function maxAllocBytes(): number {
  let env: string | undefined;
  try {
    env = Deno.env.get("QSPARSE_MAX_ALLOC_BYTES");
  } catch {
    env = undefined; // no --allow-env: keep the default
  }
  const n = env === undefined ? NaN : Number(env);
  return Number.isFinite(n) && n > 0 ? n : DEFAULT_MAX_ALLOC_BYTES;
}

/** Pooled bytes beyond which released buffers are dropped instead of kept. */
const POOL_CAP_BYTES = 2 * 2 ** 30;

function fmtBytes(b: number): string {
  return b >= 2 ** 30 ? `${(b / 2 ** 30).toFixed(2)} GiB` : `${(b / 2 ** 20).toFixed(1)} MiB`;
}

/** Allocation, pooling, stats and profiling common to the host backends. */
export abstract class HostBackend {
  /** Limits: one allocation may not exceed the host allocation limit. */
  readonly limits: DeviceLimits;
  readonly hasF16 = true;
  #nextId = 1;
  #live = new Map<number, HostStorage>();
  #liveBytes = 0;
  #pool = new Map<number, ArrayBuffer[]>();
  #pooledBytes = 0;
  #pooledBuffers = 0;
  /** Dispatches run so far. */
  protected dispatches = 0;
  #destroyed = false;
  /** True when every dispatch is timed with the host clock. */
  protected readonly profiling: boolean;
  #profile = new Map<string, KernelTime>();
  /** Which backend, named in errors. */
  protected abstract readonly name: string;
  /** Set while a step is captured (src/backend/capture.ts). */
  recorder: CaptureRecorder | null = null;

  /** @param opts `profile`: time every dispatch with the host clock. */
  constructor(opts: { profile?: boolean } = {}) {
    this.profiling = opts.profile ?? false;
    const max = maxAllocBytes();
    this.limits = {
      maxStorageBufferBindingSize: max,
      maxBufferSize: max,
      maxComputeWorkgroupStorageSize: 1 << 20,
      maxComputeWorkgroupsPerDimension: 2 ** 31 - 1,
      // Host kernels bind nothing: multi-tensor groups are bounded by the kernels' own cap.
      maxStorageBuffersPerShaderStage: 2 ** 31 - 1,
    };
  }

  /** Throws a DeviceError once destroyed. */
  protected check(op: string): void {
    if (this.#destroyed) throw new DeviceError(op, `the ${this.name} device was destroyed`);
  }

  /** The host memory of a live storage. */
  protected buf(s: Storage, op: string): ArrayBuffer {
    const b = (s as HostStorage).buffer;
    if (!b) throw new DeviceError(op, `storage #${s.id} was released`);
    return b;
  }

  /** Called with each newly created buffer (the native backend records its address). */
  protected onNewBuffer(_buffer: ArrayBuffer): void {}

  /** Called with each buffer the backend lets go of (its memory may then be reused). */
  protected onDropBuffer(_buffer: ArrayBuffer): void {}

  allocate(bytes: number, op: string): Storage {
    this.check(op);
    if (bytes > this.limits.maxBufferSize) {
      throw new DeviceError(
        op,
        `refusing to allocate ${fmtBytes(bytes)} on the ${this.name} device: the limit is ` +
          `${fmtBytes(this.limits.maxBufferSize)} (set QSPARSE_MAX_ALLOC_BYTES to change it)`,
      );
    }
    // Round up to 4 bytes so f16 tensors of odd length still get whole 32-bit words, as on WebGPU.
    const size = Math.ceil(bytes / 4) * 4;
    let buffer = this.#pool.get(size)?.pop();
    if (buffer) {
      this.#pooledBytes -= size;
      this.#pooledBuffers--;
    } else {
      buffer = new ArrayBuffer(size);
      this.onNewBuffer(buffer);
    }
    const s = new HostStorage(this.#nextId++, bytes, buffer);
    this.#live.set(s.id, s);
    this.#liveBytes += bytes;
    this.recorder?.allocated(s);
    return s;
  }

  write(storage: Storage, data: ArrayBufferView, byteOffset = 0): void {
    this.check("write");
    const dst = new Uint8Array(this.buf(storage, "write"));
    const src = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.recorder?.command({ kind: "write", dst: storage, offset: byteOffset, data: src.slice() });
    dst.set(src, byteOffset);
  }

  read(storage: Storage, bytes: number, byteOffset = 0): Promise<ArrayBuffer> {
    this.check("read");
    if (this.recorder) throw this.recorder.readback(storage, bytes);
    return Promise.resolve(this.buf(storage, "read").slice(byteOffset, byteOffset + bytes));
  }

  copy(src: Storage, srcOffset: number, dst: Storage, dstOffset: number, bytes: number): void {
    this.check("copy");
    const to = new Uint8Array(this.buf(dst, "copy"), dstOffset, bytes);
    const from = new Uint8Array(this.buf(src, "copy"), srcOffset, bytes);
    this.recorder?.command({ kind: "copy", src, srcOffset, dst, dstOffset, bytes });
    to.set(from);
  }

  /**
   * The work of one launch on host buffers, as a function a replay can call again (the CPU twin,
   * or the native kernel where there is one).
   */
  protected abstract kernel(d: Dispatch, buffers: ArrayBuffer[]): () => void;

  /** Runs one launch, reporting it to the recorder while a step is captured. */
  dispatch(d: Dispatch): void {
    this.check(d.op);
    const bufs = d.buffers.map((s) => this.buf(s, d.op));
    this.recorder?.command({ kind: "dispatch", dispatch: d, buffers: d.buffers });
    this.timed(d.op, this.kernel(d, bufs));
  }

  /** Host storage is exact (rounded to 4 bytes), so only storages of one size share a buffer. */
  capacity(bytes: number): number {
    return Math.ceil(bytes / 4) * 4;
  }

  compileReplay(commands: readonly CapturedCommand[]): Replay {
    // Everything a command touches is resolved now: a replay is a loop over prepared closures.
    const bound = new Map<Storage, ArrayBuffer>();
    const resolve = (s: Storage, op: string): ArrayBuffer => {
      let b = bound.get(s);
      if (!b) bound.set(s, b = this.buf(s, op));
      return b;
    };
    const steps: { op: string; run: () => void; isDispatch: boolean }[] = commands.map((c) => {
      if (c.kind === "dispatch") {
        const d = c.dispatch;
        const run = this.kernel(d, c.buffers.map((s) => resolve(s, d.op)));
        return { op: d.op, run, isDispatch: true };
      }
      if (c.kind === "write") {
        const dst = new Uint8Array(resolve(c.dst, "write"), c.offset, c.data.byteLength);
        const data = c.data;
        return { op: "write", run: () => dst.set(data), isDispatch: false };
      }
      const to = new Uint8Array(resolve(c.dst, "copy"), c.dstOffset, c.bytes);
      const from = new Uint8Array(resolve(c.src, "copy"), c.srcOffset, c.bytes);
      return { op: "copy", run: () => to.set(from), isDispatch: false };
    });
    const checks = [...bound];
    const dispatches = steps.filter((s) => s.isDispatch).length;
    return {
      dispatches,
      write: (storage, data) => this.write(storage, data),
      run: () => {
        this.check("replay");
        for (const [s, b] of checks) {
          if ((s as HostStorage).buffer !== b) {
            throw new CaptureError(
              "replay",
              `storage #${s.id} (${s.bytes} bytes) bound by the captured step was released since`,
            );
          }
        }
        for (const st of steps) {
          if (st.isDispatch) this.timed(st.op, st.run);
          else st.run();
        }
      },
      dispose: () => {
        bound.clear();
        checks.length = 0;
        steps.length = 0;
      },
    };
  }

  /** Runs `fn`, timing it under `op` when profiling. */
  protected timed(op: string, fn: () => void): void {
    this.dispatches++;
    if (!this.profiling) {
      fn();
      return;
    }
    const t0 = performance.now();
    fn();
    const t = this.#profile.get(op) ?? { count: 0, ns: 0 };
    t.count++;
    t.ns += (performance.now() - t0) * 1e6;
    this.#profile.set(op, t);
  }

  flush(): Promise<void> {
    this.check("flush");
    return Promise.resolve();
  }

  release(storage: Storage): void {
    const s = storage as HostStorage;
    const b = s.buffer;
    if (!b) return;
    this.recorder?.released(s);
    s.buffer = null;
    this.#live.delete(s.id);
    this.#liveBytes -= s.bytes;
    if (this.#destroyed || this.#pooledBytes + b.byteLength > POOL_CAP_BYTES) {
      this.onDropBuffer(b);
      return;
    }
    const list = this.#pool.get(b.byteLength);
    if (list) list.push(b);
    else this.#pool.set(b.byteLength, [b]);
    this.#pooledBytes += b.byteLength;
    this.#pooledBuffers++;
  }

  stats(): DeviceStats {
    return {
      liveBuffers: this.#live.size,
      liveBytes: this.#liveBytes,
      pooledBuffers: this.#pooledBuffers,
      pooledBytes: this.#pooledBytes,
      dispatches: this.dispatches,
      submits: 0,
      pipelines: 0,
    };
  }

  profile(): Map<string, KernelTime> | undefined {
    return this.profiling ? new Map(this.#profile) : undefined;
  }

  resetProfile(): void {
    this.#profile.clear();
  }

  destroy(): void {
    this.#destroyed = true;
    for (const s of this.#live.values()) s.buffer = null;
    this.#live.clear();
    this.#liveBytes = 0;
    this.#pool.clear();
    this.#pooledBytes = 0;
    this.#pooledBuffers = 0;
  }
}
