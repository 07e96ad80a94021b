/**
 * The CPU backend: storage is host memory, and every dispatch runs the kernel's CPU twin
 * immediately. It is the reference every WebGPU kernel is tested against.
 *
 * @module
 */
import type {
  Backend,
  DeviceLimits,
  DeviceStats,
  Dispatch,
  KernelTime,
  Storage,
} from "./backend.ts";
import { DeviceError } from "../tensor/errors.ts";

class CpuStorage implements Storage {
  constructor(readonly id: number, readonly bytes: number, public buffer: ArrayBuffer | null) {}
}

/** Backend that runs CPU twins on host memory. */
export class CpuBackend implements Backend {
  readonly kind = "cpu" as const;
  readonly description: string = "cpu (TypeScript reference kernels)";
  readonly hasF16 = true;
  readonly limits: DeviceLimits = {
    maxStorageBufferBindingSize: 2 ** 31 - 1,
    maxBufferSize: 2 ** 31 - 1,
    maxComputeWorkgroupStorageSize: 1 << 20,
    maxComputeWorkgroupsPerDimension: 2 ** 31 - 1,
  };
  #nextId = 1;
  #live = new Map<number, CpuStorage>();
  #liveBytes = 0;
  #dispatches = 0;
  #destroyed = false;
  #profiling: boolean;
  #profile = new Map<string, KernelTime>();

  /** @param opts `profile`: time every dispatch with the host clock. */
  constructor(opts: { profile?: boolean } = {}) {
    this.#profiling = opts.profile ?? false;
  }

  #check(op: string): void {
    if (this.#destroyed) throw new DeviceError(op, "the CPU device was destroyed");
  }

  #buf(s: Storage, op: string): ArrayBuffer {
    const b = (s as CpuStorage).buffer;
    if (!b) throw new DeviceError(op, `storage #${s.id} was released`);
    return b;
  }

  allocate(bytes: number, op: string): Storage {
    this.#check(op);
    // Round up to 4 bytes so f16 tensors of odd length still get whole 32-bit words, as on WebGPU.
    const s = new CpuStorage(this.#nextId++, bytes, new ArrayBuffer(Math.ceil(bytes / 4) * 4));
    this.#live.set(s.id, s);
    this.#liveBytes += bytes;
    return s;
  }

  write(storage: Storage, data: ArrayBufferView, byteOffset = 0): void {
    this.#check("write");
    const dst = new Uint8Array(this.#buf(storage, "write"));
    dst.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), byteOffset);
  }

  read(storage: Storage, bytes: number, byteOffset = 0): Promise<ArrayBuffer> {
    this.#check("read");
    return Promise.resolve(this.#buf(storage, "read").slice(byteOffset, byteOffset + bytes));
  }

  copy(src: Storage, srcOffset: number, dst: Storage, dstOffset: number, bytes: number): void {
    this.#check("copy");
    new Uint8Array(this.#buf(dst, "copy"), dstOffset, bytes).set(
      new Uint8Array(this.#buf(src, "copy"), srcOffset, bytes),
    );
  }

  dispatch(d: Dispatch): void {
    this.#check(d.op);
    this.#dispatches++;
    const bufs = d.buffers.map((s) => this.#buf(s, d.op));
    if (!this.#profiling) {
      d.cpu(bufs);
      return;
    }
    const t0 = performance.now();
    d.cpu(bufs);
    const t = this.#profile.get(d.op) ?? { count: 0, ns: 0 };
    t.count++;
    t.ns += (performance.now() - t0) * 1e6;
    this.#profile.set(d.op, t);
  }

  flush(): Promise<void> {
    this.#check("flush");
    return Promise.resolve();
  }

  release(storage: Storage): void {
    const s = storage as CpuStorage;
    if (!s.buffer) return;
    s.buffer = null;
    this.#live.delete(s.id);
    this.#liveBytes -= s.bytes;
  }

  stats(): DeviceStats {
    return {
      liveBuffers: this.#live.size,
      liveBytes: this.#liveBytes,
      pooledBuffers: 0,
      pooledBytes: 0,
      dispatches: this.#dispatches,
      submits: 0,
      pipelines: 0,
    };
  }

  profile(): Map<string, KernelTime> | undefined {
    return this.#profiling ? new Map(this.#profile) : undefined;
  }

  resetProfile(): void {
    this.#profile.clear();
  }

  destroy(): void {
    this.#destroyed = true;
    for (const s of this.#live.values()) s.buffer = null;
    this.#live.clear();
    this.#liveBytes = 0;
  }
}
