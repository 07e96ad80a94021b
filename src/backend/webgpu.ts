/**
 * The WebGPU backend. Dispatches are encoded lazily into one command encoder and submitted once
 * per flush (or when the encoder grows past a threshold, so the GPU keeps busy while JS encodes).
 * Pipelines are cached by key, storage buffers come from a size-class pool, and parameters go
 * through a uniform ring written once per submit.
 *
 * Ordering rules this file relies on (WebGPU guarantees them):
 * - dispatches in one encoder run in encoding order, so a buffer released by one op may be
 *   reused as the output of a later op in the same encoder;
 * - `queue.writeBuffer` runs before the *next* submit, i.e. before work that is still pending in
 *   our encoder, so host writes into a buffer while an encoder is open go through a staging copy
 *   encoded in order instead.
 *
 * @module
 */
import type {
  Backend,
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
import { autotuneEnabled, Autotuner, type DispatchTimer, wallClockTimer } from "./autotune.ts";

const STORAGE_USAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST
const UNIFORM_USAGE = 0x40 | 0x80 | 0x08; // UNIFORM | STORAGE | COPY_DST
const MAP_READ_USAGE = 0x01 | 0x08; // MAP_READ | COPY_DST
const STAGING_USAGE = 0x02 | 0x04; // MAP_WRITE | COPY_SRC
const QUERY_RESOLVE_USAGE = 0x200 | 0x04; // QUERY_RESOLVE | COPY_SRC
const UNIFORM_SEGMENT_BYTES = 1 << 16;
/** Submit automatically after this many dispatches so the device works while JS encodes. */
const AUTO_SUBMIT_DISPATCHES = 256;
const MAX_TIMED_DISPATCHES = 2048;

class GpuStorage implements Storage {
  constructor(
    readonly id: number,
    readonly bytes: number,
    readonly sizeClass: number,
    public buffer: GPUBuffer | null,
  ) {}
}

/**
 * Pool size class: the smallest of {1, 1.25, 1.5, 1.75}·2^k (a multiple of 16, at least 64)
 * that holds `bytes`. Wastes at most 25% while keeping the number of classes small.
 */
export function sizeClassOf(bytes: number): number {
  const b = Math.max(64, bytes);
  const k = Math.floor(Math.log2(b));
  const base = 2 ** k;
  for (const f of [1, 1.25, 1.5, 1.75, 2]) {
    const c = Math.ceil((base * f) / 16) * 16;
    if (c >= b) return c;
  }
  return Math.ceil((base * 2) / 16) * 16;
}

interface UniformSegment {
  gpu: GPUBuffer;
  host: Uint8Array<ArrayBuffer>;
  used: number;
}

/** Options for {@link WebGpuBackend.open}. */
export interface WebGpuOptions {
  /** Time every dispatch with timestamp queries (one compute pass per dispatch). */
  profile?: boolean;
  /** Power preference passed to `requestAdapter`. */
  powerPreference?: GPUPowerPreference;
  /**
   * Open software adapters (llvmpipe, lavapipe, SwiftShader) too. When false, `open` returns
   * null for them so the caller can pick the native backend instead. Default true.
   */
  allowSoftware?: boolean;
  /** Choose among interchangeable kernels by measurement (src/backend/autotune.ts). Default on. */
  autotune?: boolean;
  /**
   * Where kernels read their parameter block `p`: a `uniform` binding, or a read-only `storage`
   * binding. Default: storage on software adapters, uniform elsewhere. Why: lavapipe (Mesa 22.3,
   * Debian 12) inlines uniform values that bound a loop or an `if` into the shader and compiles
   * it again with LLVM at every dispatch, unless the first try shrank the shader by less than
   * half (then it stops trying). The transposed-A matmul (every weight gradient) is such a shader:
   * ~4 ms of compiling per launch whatever its size. Storage reads are never inlined.
   */
  paramsBinding?: "uniform" | "storage";
}

/**
 * A kernel's WGSL with its parameter block `p` declared read-only storage instead of uniform (the
 * same bytes: WGSL lays a struct out alike in both; uniform only adds constraints). Unchanged
 * when one more storage binding would pass the adapter's limit.
 *
 * @param wgsl The kernel source, declaring `var<uniform> p: P;`.
 * @param limits The device's limits.
 * @returns The source to compile.
 * @example
 * ```ts
 * import { paramsAsStorage } from "./webgpu.ts";
 * import assert from "node:assert/strict";
 * const wgsl = `@group(0) @binding(0) var<storage, read_write> y: array<f32>;
 * @group(0) @binding(1) var<uniform> p: P;`;
 * const out = paramsAsStorage(wgsl, { maxStorageBuffersPerShaderStage: 8 });
 * assert.match(out, /@binding\(1\) var<storage, read> p: P;/);
 * assert.equal(paramsAsStorage(`${wgsl}\nfn main(@builtin(global_invocation_id) g: vec3u) {}`, {
 *   maxStorageBuffersPerShaderStage: 8,
 * }).endsWith("{\n  let p = p;}"), true);
 * assert.equal(paramsAsStorage(wgsl, { maxStorageBuffersPerShaderStage: 1 }), wgsl);
 * ```
 */
export function paramsAsStorage(
  wgsl: string,
  limits: Pick<DeviceLimits, "maxStorageBuffersPerShaderStage">,
): string {
  const storage = wgsl.match(/var<\s*storage/g)?.length ?? 0;
  if (storage + 1 > limits.maxStorageBuffersPerShaderStage) return wgsl;
  const declared = wgsl.replace(/var<uniform> p: P;/, "var<storage, read> p: P;");
  if (declared === wgsl) return wgsl;
  // Copy a block of scalars into registers once: a storage load on llvmpipe is a loop over the
  // SIMD lanes, and loop bounds and strides read from `p` would load again at every iteration.
  // `let p = p;` shadows the binding; its initializer still names the binding (a declaration's
  // scope begins after it). Blocks with arrays (frequencies, shapes, tensor tables) stay in
  // storage: copying them would load every element in every invocation.
  if (/struct P \{[^}]*array</.test(declared)) return declared;
  const body = mainBodyStart(declared);
  return body < 0 ? declared : `${declared.slice(0, body)}\n  let p = p;${declared.slice(body)}`;
}

/** Index just after the `{` opening the body of `fn main(...)`, or −1. */
function mainBodyStart(wgsl: string): number {
  const at = wgsl.indexOf("fn main(");
  if (at < 0) return -1;
  let depth = 0;
  for (let i = at + "fn main".length; i < wgsl.length; i++) {
    const ch = wgsl[i];
    if (ch === "(") depth++;
    else if (ch === ")") depth--;
    else if (ch === "{" && depth === 0) return i + 1;
  }
  return -1;
}

/**
 * True when an adapter is a CPU rasterizer rather than a GPU: the spec's `isFallbackAdapter`,
 * or a description/device/vendor naming llvmpipe, lavapipe, softpipe or SwiftShader.
 *
 * @param info The adapter's `info`.
 * @returns Whether it is a software adapter.
 */
export function isSoftwareAdapter(
  info: { description?: string; vendor?: string; device?: string; architecture?: string },
): boolean {
  if ((info as { isFallbackAdapter?: boolean }).isFallbackAdapter) return true;
  const text = [info.description, info.vendor, info.device, info.architecture].join(" ");
  return /llvmpipe|lavapipe|softpipe|swiftshader|software rasterizer/i.test(text);
}

/** A compiled kernel: its pipeline, bind group layout, and whether uniforms bind dynamically. */
interface CompiledKernel {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  dynamicUniform: boolean;
}

/** Bind groups kept before the cache starts over (a step of the largest model uses ~1,500). */
const MAX_CACHED_BIND_GROUPS = 8192;

/**
 * The buffer binding types a kernel's WGSL declares in group 0, by binding index, or null when
 * they are not numbered 0..n−1 without gaps (then the layout is left to WebGPU).
 *
 * @param wgsl The kernel source.
 * @returns The binding types.
 * @example
 * ```ts
 * import { declaredBindings } from "./webgpu.ts";
 * import assert from "node:assert/strict";
 * const wgsl = `@group(0) @binding(0) var<storage, read> x: array<f32>;
 * @group(0) @binding(1) var<storage, read_write> y: array<f32>;
 * @group(0) @binding(2) var<uniform> p: P;`;
 * assert.deepEqual(declaredBindings(wgsl), ["read-only-storage", "storage", "uniform"]);
 * ```
 */
export function declaredBindings(wgsl: string): GPUBufferBindingType[] | null {
  const types: GPUBufferBindingType[] = [];
  const re =
    /@group\(0\)\s*@binding\((\d+)\)\s*var<\s*(uniform|storage)\s*(?:,\s*(read_write|read)\s*)?>/g;
  for (const m of wgsl.matchAll(re)) {
    const i = Number(m[1]);
    if (types[i] !== undefined) return null;
    types[i] = m[2] === "uniform"
      ? "uniform"
      : m[3] === "read_write"
      ? "storage"
      : "read-only-storage";
  }
  for (let i = 0; i < types.length; i++) if (types[i] === undefined) return null;
  return types.length ? types : null;
}

function bindEntries(
  buffers: GPUBuffer[],
  uniform: { buffer: GPUBuffer; offset: number; size: number } | null,
): GPUBindGroupEntry[] {
  // Bind the whole pooled buffer: kernels never use arrayLength, and vec4 arrays need ≥ 16 bytes.
  const entries: GPUBindGroupEntry[] = buffers.map((buffer, binding) => ({
    binding,
    resource: { buffer },
  }));
  if (uniform) entries.push({ binding: buffers.length, resource: uniform });
  return entries;
}

/** Backend that encodes WGSL kernels on a WebGPU device. */
export class WebGpuBackend implements Backend {
  readonly kind = "webgpu" as const;
  readonly description: string;
  readonly limits: DeviceLimits;
  readonly hasF16: boolean;
  readonly device: GPUDevice;
  /** Picks tuned kernel variants (set by {@link WebGpuBackend.open}; null: defaults only). */
  autotuner: Autotuner | null = null;
  #passTimestamps: GPUComputePassTimestampWrites | undefined;
  #tuneQueries: GPUQuerySet | null = null;
  #alignment: number;
  /** Where kernels read their parameter block ({@link WebGpuOptions.paramsBinding}). */
  readonly paramsBinding: "uniform" | "storage";
  #nextId = 1;
  #live = new Map<number, GpuStorage>();
  #liveBytes = 0;
  #pool = new Map<number, GPUBuffer[]>();
  #pooledBytes = 0;
  #pooledCount = 0;
  #pipelines = new Map<string, CompiledKernel>();
  /** Bind groups by pipeline, buffers and uniform segment (see {@link WebGpuBackend.dispatch}). */
  #bindGroups = new Map<string, GPUBindGroup>();
  #bufferIds = new WeakMap<GPUBuffer, number>();
  #nextBufferId = 1;
  #encoder: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  #pendingDispatches = 0;
  #segments: UniformSegment[] = [];
  #freeSegments: UniformSegment[] = [];
  #stagingToDestroy: GPUBuffer[] = [];
  #dispatches = 0;
  #submits = 0;
  #lost: string | null = null;
  #error: string | null = null;
  #profiling: boolean;
  #querySet: GPUQuerySet | null = null;
  #timedOps: string[] = [];
  #profile = new Map<string, KernelTime>();
  #pendingProfiles: Promise<void>[] = [];
  /** Set while a step is captured (src/backend/capture.ts). */
  recorder: CaptureRecorder | null = null;

  private constructor(device: GPUDevice, description: string, opts: WebGpuOptions) {
    this.device = device;
    this.description = description;
    this.hasF16 = device.features.has("shader-f16");
    this.limits = {
      maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
      maxBufferSize: device.limits.maxBufferSize,
      maxComputeWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
      maxComputeWorkgroupsPerDimension: device.limits.maxComputeWorkgroupsPerDimension,
      maxStorageBuffersPerShaderStage: device.limits.maxStorageBuffersPerShaderStage,
    };
    this.paramsBinding = opts.paramsBinding ?? "uniform";
    // Parameter blocks sit at offsets valid for either binding type.
    this.#alignment = Math.max(
      device.limits.minUniformBufferOffsetAlignment,
      device.limits.minStorageBufferOffsetAlignment,
    );
    this.#profiling = (opts.profile ?? false) && device.features.has("timestamp-query");
    if (this.#profiling) {
      this.#querySet = device.createQuerySet({
        type: "timestamp",
        count: 2 * MAX_TIMED_DISPATCHES,
      });
    }
    device.lost.then((info) => {
      this.#lost = info.message || info.reason || "device lost";
    });
    device.addEventListener("uncapturederror", (ev) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      this.#error ??= e.message.trim();
    });
  }

  /**
   * Requests an adapter and a device with the adapter's full limits and the features the kit
   * uses (`shader-f16`, `timestamp-query`) when present.
   *
   * @returns The backend, or null when no adapter exists.
   */
  static async open(opts: WebGpuOptions = {}): Promise<WebGpuBackend | null> {
    if (typeof navigator === "undefined" || !("gpu" in navigator)) return null;
    const adapter = await navigator.gpu.requestAdapter(
      opts.powerPreference ? { powerPreference: opts.powerPreference } : undefined,
    );
    if (!adapter) return null;
    if (opts.allowSoftware === false && isSoftwareAdapter(adapter.info)) return null;
    const features: GPUFeatureName[] = [];
    for (const f of ["shader-f16", "timestamp-query"] as GPUFeatureName[]) {
      if (adapter.features.has(f)) features.push(f);
    }
    const l = adapter.limits;
    const device = await adapter.requestDevice({
      requiredFeatures: features,
      requiredLimits: {
        maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
        maxBufferSize: l.maxBufferSize,
        maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
        maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
        maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
        maxComputeWorkgroupSizeY: l.maxComputeWorkgroupSizeY,
        maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
      },
    });
    const info = adapter.info;
    const description = info.description || [info.vendor, info.architecture, info.device]
      .filter(Boolean).join(" ") ||
      "unknown WebGPU adapter";
    const paramsBinding = opts.paramsBinding ?? (isSoftwareAdapter(info) ? "storage" : "uniform");
    const backend = new WebGpuBackend(device, description, { ...opts, paramsBinding });
    if (autotuneEnabled(opts.autotune)) {
      const adapterKey = [info.vendor, info.architecture, info.device, info.description]
        .join("|") + `|deno ${Deno.version.deno}|params ${paramsBinding}`;
      backend.autotuner = new Autotuner(backend, { adapterKey, timer: backend.tuningTimer() });
    }
    return backend;
  }

  /**
   * The autotuner's clock: device time from timestamp queries when the device has them (and is
   * not profiling, which uses them per dispatch), else wall time around `flush`.
   *
   * @returns The timer.
   */
  tuningTimer(): DispatchTimer {
    const wall = wallClockTimer(this);
    if (this.#profiling || !this.device.features.has("timestamp-query")) return wall;
    return {
      precise: true,
      time: async (d, reps) => {
        this.#submit();
        this.#tuneQueries ??= this.device.createQuerySet({ type: "timestamp", count: 2 });
        // The launches share one compute pass (reps < 256 keeps them in one submit); its two
        // timestamps bracket them.
        this.#passTimestamps = {
          querySet: this.#tuneQueries,
          beginningOfPassWriteIndex: 0,
          endOfPassWriteIndex: 1,
        };
        try {
          for (let i = 0; i < reps; i++) this.dispatch(d);
        } finally {
          this.#passTimestamps = undefined;
        }
        const resolve = this.device.createBuffer({ size: 16, usage: QUERY_RESOLVE_USAGE });
        const readback = this.device.createBuffer({ size: 16, usage: MAP_READ_USAGE });
        const enc = this.#ensureEncoder();
        this.#endPass();
        enc.resolveQuerySet(this.#tuneQueries, 0, 2, resolve, 0);
        enc.copyBufferToBuffer(resolve, 0, readback, 0, 16);
        this.#submit();
        try {
          await this.#settle("autotune", readback.mapAsync(1));
          const t = new BigUint64Array(readback.getMappedRange().slice(0));
          readback.unmap();
          return Number(t[1]! - t[0]!);
        } finally {
          readback.destroy();
          resolve.destroy();
        }
      },
    };
  }

  #check(op: string): void {
    if (this.#lost !== null) throw new DeviceError(op, `WebGPU device lost: ${this.#lost}`);
    if (this.#error !== null) {
      const e = this.#error;
      this.#error = null;
      throw new DeviceError(op, `WebGPU error from an earlier command: ${e}`);
    }
  }

  #buf(s: Storage, op: string): GPUBuffer {
    const b = (s as GpuStorage).buffer;
    if (!b) throw new DeviceError(op, `storage #${s.id} was released`);
    return b;
  }

  allocate(bytes: number, op: string): Storage {
    this.#check(op);
    if (bytes > this.limits.maxStorageBufferBindingSize) {
      throw new DeviceError(
        op,
        `needs a ${bytes}-byte buffer but the adapter binds at most ` +
          `${this.limits.maxStorageBufferBindingSize} bytes (maxStorageBufferBindingSize)`,
      );
    }
    const cls = this.capacity(bytes);
    const free = this.#pool.get(cls);
    let buffer = free?.pop();
    if (buffer) {
      this.#pooledBytes -= cls;
      this.#pooledCount--;
    } else {
      buffer = this.device.createBuffer({ size: cls, usage: STORAGE_USAGE });
    }
    const s = new GpuStorage(this.#nextId++, bytes, cls, buffer);
    this.#live.set(s.id, s);
    this.#liveBytes += bytes;
    this.recorder?.allocated(s);
    return s;
  }

  /** The pool's size class of `bytes` (exact, in 16-byte units, beyond the binding limit). */
  capacity(bytes: number): number {
    const cls = sizeClassOf(bytes);
    return cls > this.limits.maxStorageBufferBindingSize ? Math.ceil(bytes / 16) * 16 : cls;
  }

  release(storage: Storage): void {
    const s = storage as GpuStorage;
    if (!s.buffer) return;
    this.recorder?.released(s);
    const list = this.#pool.get(s.sizeClass) ?? [];
    list.push(s.buffer);
    this.#pool.set(s.sizeClass, list);
    this.#pooledBytes += s.sizeClass;
    this.#pooledCount++;
    s.buffer = null;
    this.#live.delete(s.id);
    this.#liveBytes -= s.bytes;
  }

  /** Drops every pooled buffer (frees device memory held for reuse). */
  trimPool(): void {
    for (const list of this.#pool.values()) for (const b of list) b.destroy();
    this.#pool.clear();
    this.#pooledBytes = 0;
    this.#pooledCount = 0;
  }

  write(storage: Storage, data: ArrayBufferView, byteOffset = 0): void {
    this.#check("write");
    const dst = this.#buf(storage, "write");
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    // writeBuffer needs a multiple of 4 bytes (odd f16 tails) and an ArrayBuffer-backed view.
    const padded = new Uint8Array(Math.ceil(bytes.byteLength / 4) * 4);
    padded.set(bytes);
    this.recorder?.command({
      kind: "write",
      dst: storage,
      offset: byteOffset,
      data: bytes.slice(),
    });
    if (this.#encoder === null) {
      this.device.queue.writeBuffer(dst, byteOffset, padded);
      return;
    }
    const staging = this.device.createBuffer({
      size: padded.byteLength,
      usage: STAGING_USAGE,
      mappedAtCreation: true,
    });
    new Uint8Array(staging.getMappedRange()).set(padded);
    staging.unmap();
    this.#endPass();
    this.#encoder.copyBufferToBuffer(staging, 0, dst, byteOffset, padded.byteLength);
    this.#stagingToDestroy.push(staging);
  }

  copy(src: Storage, srcOffset: number, dst: Storage, dstOffset: number, bytes: number): void {
    this.#check("copy");
    this.recorder?.command({ kind: "copy", src, srcOffset, dst, dstOffset, bytes });
    const enc = this.#ensureEncoder();
    this.#endPass();
    enc.copyBufferToBuffer(
      this.#buf(src, "copy"),
      srcOffset,
      this.#buf(dst, "copy"),
      dstOffset,
      Math.ceil(bytes / 4) * 4,
    );
  }

  #ensureEncoder(): GPUCommandEncoder {
    this.#encoder ??= this.device.createCommandEncoder();
    return this.#encoder;
  }

  #endPass(): void {
    if (this.#pass) {
      this.#pass.end();
      this.#pass = null;
    }
  }

  #pipeline(d: Dispatch): CompiledKernel {
    let p = this.#pipelines.get(d.key);
    if (p) return p;
    const code = this.paramsBinding === "storage"
      ? paramsAsStorage(d.wgsl(), this.limits)
      : d.wgsl();
    this.device.pushErrorScope("validation");
    const module = this.device.createShaderModule({ code, label: d.key });
    const bindings = declaredBindings(code);
    // An explicit layout (read from the WGSL's declarations) lets the uniform binding take a
    // dynamic offset, so one bind group serves every dispatch of a kernel on the same buffers.
    // Kernels whose declarations do not match their dispatch's buffers keep the derived layout.
    const explicit = bindings !== null &&
      bindings.length === d.buffers.length + (d.uniforms ? 1 : 0);
    const layout = explicit
      ? this.device.createBindGroupLayout({
        label: d.key,
        entries: bindings.map((type, binding) => ({
          binding,
          visibility: GPUShaderStage.COMPUTE,
          // The parameter block (the binding after the buffers) takes a dynamic offset whether
          // it is declared uniform or, on software adapters, read-only storage.
          buffer: d.uniforms && binding === d.buffers.length
            ? { type, hasDynamicOffset: true }
            : { type },
        })),
      })
      : null;
    const pipeline = this.device.createComputePipeline({
      layout: layout ? this.device.createPipelineLayout({ bindGroupLayouts: [layout] }) : "auto",
      compute: { module, entryPoint: "main" },
      label: d.key,
    });
    // Compilation errors surface asynchronously; remember them so the next sync point reports
    // which kernel failed instead of a generic "invalid pipeline".
    this.device.popErrorScope().then((e) => {
      if (e) this.#error ??= `kernel ${d.key} failed to compile: ${e.message.trim()}`;
    });
    p = { pipeline, layout: layout ?? pipeline.getBindGroupLayout(0), dynamicUniform: explicit };
    this.#pipelines.set(d.key, p);
    return p;
  }

  #bufferId(b: GPUBuffer): number {
    let id = this.#bufferIds.get(b);
    if (id === undefined) this.#bufferIds.set(b, id = this.#nextBufferId++);
    return id;
  }

  #uniformSlot(words: Uint32Array): { buffer: GPUBuffer; offset: number; size: number } {
    const size = Math.max(16, Math.ceil(words.byteLength / 16) * 16);
    let seg = this.#segments[this.#segments.length - 1];
    if (!seg || seg.used + size > UNIFORM_SEGMENT_BYTES) {
      seg = this.#freeSegments.pop() ?? {
        gpu: this.device.createBuffer({ size: UNIFORM_SEGMENT_BYTES, usage: UNIFORM_USAGE }),
        host: new Uint8Array(UNIFORM_SEGMENT_BYTES),
        used: 0,
      };
      seg.used = 0;
      this.#segments.push(seg);
    }
    const offset = seg.used;
    seg.host.set(new Uint8Array(words.buffer, words.byteOffset, words.byteLength), offset);
    seg.used = Math.ceil((offset + size) / this.#alignment) * this.#alignment;
    return { buffer: seg.gpu, offset, size };
  }

  dispatch(d: Dispatch): void {
    this.#check(d.op);
    if (d.tune && this.autotuner) d = this.autotuner.resolve(d);
    const [x, y, z] = d.workgroups;
    const maxDim = this.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxDim || y > maxDim || z > maxDim) {
      throw new DeviceError(d.op, `dispatch [${x}, ${y}, ${z}] exceeds ${maxDim} per dimension`);
    }
    if (x === 0 || y === 0 || z === 0) return;
    this.recorder?.command({ kind: "dispatch", dispatch: d, buffers: d.buffers });
    const kernel = this.#pipeline(d);
    const pipeline = kernel.pipeline;
    const buffers = d.buffers.map((s) => this.#buf(s, d.op));
    const slot = d.uniforms ? this.#uniformSlot(d.uniforms) : null;
    let bindGroup: GPUBindGroup | undefined;
    let offsets: number[] = [];
    if (kernel.dynamicUniform) {
      // Buffers come from size-class pools and uniform segments from a free list, so a training
      // step meets the same combinations every step: creating a bind group (~15 µs on llvmpipe)
      // is then a map lookup. Buffer ids are never reused, so an entry of a destroyed buffer
      // is simply never hit again.
      let key = d.key;
      for (const b of buffers) key += "," + this.#bufferId(b);
      if (slot) key += "|" + this.#bufferId(slot.buffer) + ":" + slot.size;
      bindGroup = this.#bindGroups.get(key);
      if (!bindGroup) {
        if (this.#bindGroups.size >= MAX_CACHED_BIND_GROUPS) this.#bindGroups.clear();
        bindGroup = this.device.createBindGroup({
          layout: kernel.layout,
          entries: bindEntries(
            buffers,
            slot && { buffer: slot.buffer, offset: 0, size: slot.size },
          ),
        });
        this.#bindGroups.set(key, bindGroup);
      }
      if (slot) offsets = [slot.offset];
    } else {
      bindGroup = this.device.createBindGroup({
        layout: kernel.layout,
        entries: bindEntries(buffers, slot),
      });
    }
    const enc = this.#ensureEncoder();
    const timed = this.#profiling && this.#timedOps.length < MAX_TIMED_DISPATCHES;
    if (timed) {
      this.#endPass();
      const i = this.#timedOps.length;
      this.#timedOps.push(d.op);
      const pass = enc.beginComputePass({
        timestampWrites: {
          querySet: this.#querySet!,
          beginningOfPassWriteIndex: 2 * i,
          endOfPassWriteIndex: 2 * i + 1,
        },
      });
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup, offsets);
      pass.dispatchWorkgroups(x, y, z);
      pass.end();
    } else {
      this.#pass ??= enc.beginComputePass(
        this.#passTimestamps && { timestampWrites: this.#passTimestamps },
      );
      this.#pass.setPipeline(pipeline);
      this.#pass.setBindGroup(0, bindGroup, offsets);
      this.#pass.dispatchWorkgroups(x, y, z);
    }
    this.#dispatches++;
    this.#pendingDispatches += d.launches ?? 1;
    if (this.#pendingDispatches >= AUTO_SUBMIT_DISPATCHES) this.#submit();
  }

  /**
   * Prepares a captured step: pipelines looked up, one bind group per distinct launch built on
   * the bound buffers, every uniform block packed into one buffer and every written byte into
   * another, both written once here. A replay then only encodes (in one pass, untimed: a device
   * opened with `profile` times ordinary launches only).
   */
  compileReplay(commands: readonly CapturedCommand[]): Replay {
    this.#check("capture");
    const checks = new Map<GpuStorage, GPUBuffer>();
    const bufferOf = (s: Storage, op: string): GPUBuffer => {
      const b = this.#buf(s, op);
      checks.set(s as GpuStorage, b);
      return b;
    };
    // Offsets of the uniform blocks (dynamic-offset aligned) and of the written bytes.
    const uniformAt: number[] = [];
    let uniformBytes = 0;
    const constantAt = new Map<Uint8Array, number>();
    let constantBytes = 0;
    for (const c of commands) {
      if (c.kind === "dispatch" && c.dispatch.uniforms) {
        uniformAt.push(uniformBytes);
        const size = Math.max(16, Math.ceil(c.dispatch.uniforms.byteLength / 16) * 16);
        uniformBytes = Math.ceil((uniformBytes + size) / this.#alignment) * this.#alignment;
      } else if (c.kind === "write" && !constantAt.has(c.data)) {
        constantAt.set(c.data, constantBytes);
        constantBytes += Math.ceil(c.data.byteLength / 4) * 4;
      }
    }
    const uniformHost = new Uint8Array(Math.max(16, uniformBytes));
    const uniformGpu = this.device.createBuffer({
      size: uniformHost.byteLength,
      usage: UNIFORM_USAGE,
    });
    const constantHost = new Uint8Array(Math.max(4, constantBytes));
    for (const [data, at] of constantAt) constantHost.set(data, at);
    const constantGpu = this.device.createBuffer({
      size: constantHost.byteLength,
      usage: 0x04 | 0x08, // COPY_SRC | COPY_DST
    });
    interface Launch {
      pipeline: GPUComputePipeline;
      group: GPUBindGroup;
      offsets: number[];
      x: number;
      y: number;
      z: number;
    }
    interface Transfer {
      src: GPUBuffer;
      srcOffset: number;
      dst: GPUBuffer;
      dstOffset: number;
      bytes: number;
    }
    const ops: (Launch | Transfer)[] = [];
    const groups = new Map<string, GPUBindGroup>();
    let u = 0;
    for (const c of commands) {
      if (c.kind === "write") {
        ops.push({
          src: constantGpu,
          srcOffset: constantAt.get(c.data)!,
          dst: bufferOf(c.dst, "write"),
          dstOffset: c.offset,
          bytes: Math.ceil(c.data.byteLength / 4) * 4,
        });
        continue;
      }
      if (c.kind === "copy") {
        ops.push({
          src: bufferOf(c.src, "copy"),
          srcOffset: c.srcOffset,
          dst: bufferOf(c.dst, "copy"),
          dstOffset: c.dstOffset,
          bytes: Math.ceil(c.bytes / 4) * 4,
        });
        continue;
      }
      const d = c.dispatch;
      const kernel = this.#pipeline(d);
      const buffers = c.buffers.map((s) => bufferOf(s, d.op));
      let slot: { buffer: GPUBuffer; offset: number; size: number } | null = null;
      if (d.uniforms) {
        const at = uniformAt[u++]!;
        uniformHost.set(
          new Uint8Array(d.uniforms.buffer, d.uniforms.byteOffset, d.uniforms.byteLength),
          at,
        );
        slot = {
          buffer: uniformGpu,
          offset: at,
          size: Math.max(16, Math.ceil(d.uniforms.byteLength / 16) * 16),
        };
      }
      // With a dynamic uniform offset, launches of one kernel on the same buffers share a group.
      const dynamic = kernel.dynamicUniform;
      let key = d.key;
      for (const b of buffers) key += "," + this.#bufferId(b);
      key += slot ? (dynamic ? `|${slot.size}` : `|${slot.offset}:${slot.size}`) : "";
      let group = groups.get(key);
      if (!group) {
        group = this.device.createBindGroup({
          layout: kernel.layout,
          entries: bindEntries(buffers, slot && (dynamic ? { ...slot, offset: 0 } : slot)),
        });
        groups.set(key, group);
      }
      const [x, y, z] = d.workgroups;
      ops.push({
        pipeline: kernel.pipeline,
        group,
        offsets: slot && dynamic ? [slot.offset] : [],
        x,
        y,
        z,
      });
    }
    this.device.queue.writeBuffer(uniformGpu, 0, uniformHost);
    this.device.queue.writeBuffer(constantGpu, 0, constantHost);
    const dispatches = ops.filter((op) => "pipeline" in op).length;
    const fixed = [...checks];
    return {
      dispatches,
      write: (storage, data) => {
        // A write goes straight to the queue when no encoder is open (no staging buffer); the
        // queue orders it after everything submitted before.
        this.#submit();
        this.write(storage, data);
      },
      run: () => {
        this.#check("replay");
        for (const [s, b] of fixed) {
          if (s.buffer !== b) {
            throw new CaptureError(
              "replay",
              `storage #${s.id} (${s.bytes} bytes) bound by the captured step was released since`,
            );
          }
        }
        let enc = this.#ensureEncoder();
        // A pass keeps its pipeline between launches: runs of one kernel (the optimizer's
        // per-parameter launches) set it once.
        let current: GPUComputePipeline | null = null;
        for (const op of ops) {
          if ("pipeline" in op) {
            if (this.#pass === null) {
              this.#pass = enc.beginComputePass();
              current = null;
            }
            const pass = this.#pass;
            if (op.pipeline !== current) {
              pass.setPipeline(op.pipeline);
              current = op.pipeline;
            }
            pass.setBindGroup(0, op.group, op.offsets);
            pass.dispatchWorkgroups(op.x, op.y, op.z);
            this.#dispatches++;
            if (++this.#pendingDispatches >= AUTO_SUBMIT_DISPATCHES) {
              this.#submit();
              enc = this.#ensureEncoder();
            }
          } else {
            this.#endPass();
            enc.copyBufferToBuffer(op.src, op.srcOffset, op.dst, op.dstOffset, op.bytes);
          }
        }
        // Submitted at once: the device starts on the step, and the next inputs are written
        // straight to the queue.
        this.#submit();
      },
      dispose: () => {
        // Work still in the encoder may use these buffers: submit it before destroying them.
        if (this.#lost === null) this.#submit();
        uniformGpu.destroy();
        constantGpu.destroy();
        ops.length = 0;
        fixed.length = 0;
        groups.clear();
      },
    };
  }

  /** Finishes and submits the open encoder (if any). Does not wait. */
  #submit(): void {
    if (this.#encoder === null) return;
    this.#endPass();
    let profileRead: (() => Promise<void>) | null = null;
    if (this.#timedOps.length > 0) {
      const n = this.#timedOps.length;
      const ops = this.#timedOps;
      this.#timedOps = [];
      const resolve = this.device.createBuffer({ size: 16 * n, usage: QUERY_RESOLVE_USAGE });
      const readback = this.device.createBuffer({ size: 16 * n, usage: MAP_READ_USAGE });
      this.#encoder.resolveQuerySet(this.#querySet!, 0, 2 * n, resolve, 0);
      this.#encoder.copyBufferToBuffer(resolve, 0, readback, 0, 16 * n);
      profileRead = async () => {
        await readback.mapAsync(1);
        const t = new BigUint64Array(readback.getMappedRange().slice(0));
        readback.unmap();
        readback.destroy();
        resolve.destroy();
        for (let i = 0; i < n; i++) {
          const ns = Number(t[2 * i + 1]! - t[2 * i]!);
          const k = this.#profile.get(ops[i]!) ?? { count: 0, ns: 0 };
          k.count++;
          k.ns += ns;
          this.#profile.set(ops[i]!, k);
        }
      };
    }
    for (const seg of this.#segments) {
      this.device.queue.writeBuffer(seg.gpu, 0, seg.host, 0, seg.used);
    }
    this.device.queue.submit([this.#encoder.finish()]);
    this.#submits++;
    this.#encoder = null;
    this.#pendingDispatches = 0;
    // writeBuffer for the next submit is ordered after this one, so segments can be reused now.
    this.#freeSegments.push(...this.#segments);
    this.#segments = [];
    if (this.#stagingToDestroy.length) {
      const staged = this.#stagingToDestroy;
      this.#stagingToDestroy = [];
      this.device.queue.onSubmittedWorkDone().then(() => staged.forEach((b) => b.destroy()));
    }
    if (profileRead) this.#pendingProfiles.push(profileRead());
  }

  async #settle<T>(op: string, p: Promise<T>): Promise<T> {
    // A lost device may never resolve pending work; race against `lost` so callers never hang.
    const lost = this.device.lost.then((info) => {
      throw new DeviceError(op, `WebGPU device lost: ${info.message || info.reason}`);
    });
    try {
      return await Promise.race([p, lost]);
    } catch (e) {
      if (e instanceof DeviceError) throw e;
      // A destroyed device rejects mapAsync before `lost` resolves; give `lost` a moment so the
      // error says so and later ops fail fast instead of encoding into a dead device.
      await Promise.race([this.device.lost, new Promise((r) => setTimeout(r, 50))]);
      if (this.#lost !== null) throw new DeviceError(op, `WebGPU device lost: ${this.#lost}`);
      throw new DeviceError(op, e instanceof Error ? e.message : String(e));
    }
  }

  read(storage: Storage, bytes: number, byteOffset = 0): Promise<ArrayBuffer> {
    // Not async, so a readback inside a captured step throws where it is asked for.
    if (this.recorder) throw this.recorder.readback(storage, bytes);
    return this.#read(storage, bytes, byteOffset);
  }

  async #read(storage: Storage, bytes: number, byteOffset: number): Promise<ArrayBuffer> {
    this.#check("read");
    const src = this.#buf(storage, "read");
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    const readback = this.device.createBuffer({ size, usage: MAP_READ_USAGE });
    const enc = this.#ensureEncoder();
    this.#endPass();
    enc.copyBufferToBuffer(src, byteOffset, readback, 0, size);
    this.#submit();
    try {
      await this.#settle("read", readback.mapAsync(1));
      const out = readback.getMappedRange().slice(0, bytes);
      readback.unmap();
      this.#check("read");
      return out;
    } finally {
      readback.destroy();
    }
  }

  async flush(): Promise<void> {
    this.#check("flush");
    this.#submit();
    await this.#settle("flush", this.device.queue.onSubmittedWorkDone());
    if (this.#pendingProfiles.length) {
      const p = this.#pendingProfiles;
      this.#pendingProfiles = [];
      await Promise.all(p);
    }
    this.#check("flush");
  }

  stats(): DeviceStats {
    return {
      liveBuffers: this.#live.size,
      liveBytes: this.#liveBytes,
      pooledBuffers: this.#pooledCount,
      pooledBytes: this.#pooledBytes,
      dispatches: this.#dispatches,
      submits: this.#submits,
      pipelines: this.#pipelines.size,
    };
  }

  profile(): Map<string, KernelTime> | undefined {
    return this.#profiling ? new Map(this.#profile) : undefined;
  }

  resetProfile(): void {
    this.#profile.clear();
  }

  destroy(): void {
    if (this.#lost !== null) return;
    this.#encoder = null;
    this.#pass = null;
    this.trimPool();
    for (const s of this.#live.values()) {
      s.buffer?.destroy();
      s.buffer = null;
    }
    this.#live.clear();
    this.#liveBytes = 0;
    this.device.destroy();
    this.#lost = "destroyed";
  }
}
