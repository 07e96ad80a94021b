/**
 * `Tensor<D>`: a dense, contiguous, row-major array of dtype `D` living on a {@link Device}.
 *
 * Tensors are immutable from the user's side: ops return new tensors. `reshape` shares the
 * underlying storage (reference counted), everything else copies. Memory is freed by
 * `dispose()`, by `using`, or by the {@link scope} that created the tensor.
 *
 * @module
 */
import type { Storage } from "../backend/backend.ts";
import type { Device } from "./device.ts";
import { type DType, type TypedArrayFor, typedView } from "../core/dtype.ts";
import { DisposedError, formatShape, ShapeError } from "../core/errors.ts";
import { type Shape, sizeOf } from "../core/shape.ts";
import { track, untrack } from "./scope.ts";
import { type GradNode, recordingEnabled } from "./grad_node.ts";

/**
 * Storage shared between a tensor and its reshaped views.
 *
 * @example The last release frees the storage
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { SharedStorage } from "./tensor.ts";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * const before = dev.stats().liveBuffers;
 * const s = new SharedStorage(dev, dev.backend.allocate(16, "example"));
 * assert.equal(s.refs, 1);
 * assert.equal(dev.stats().liveBuffers, before + 1);
 * s.release();
 * assert.equal(dev.stats().liveBuffers, before);
 * ```
 */
export class SharedStorage {
  /** Number of tensors holding this storage (the creator plus one per `reshape` view). */
  refs = 1;
  /**
   * Wraps freshly allocated storage with one reference (held by the tensor it is given to).
   *
   * @param device The device whose backend allocated the storage and will release it.
   * @param storage The backend storage.
   */
  constructor(readonly device: Device, readonly storage: Storage) {}
  /**
   * The device's deferred queue while this storage is the pending output of a deferred group
   * launch (src/tensor/deferred.ts): asking a tensor for it launches the group first.
   */
  deferred: { emit(): void } | null = null;
  /** Drops one reference; the last one returns the storage to the backend. */
  release(): void {
    // Not through `device.backend`, which would emit a pending fused group: a group holds its
    // own references, so a storage reaching 0 here is not one it uses.
    if (--this.refs === 0) this.device.releaseStorage(this.storage);
  }
}

/** Nested JS arrays of numbers, as returned by {@link Tensor.toArray}. */
export type NestedArray = number | NestedArray[];

let nextTensorId = 1;

/**
 * A dense tensor on a device.
 *
 * @typeParam D The element dtype.
 *
 * @example Create, read, dispose
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using t = dev.tensor([1, 2, 3, 4, 5, 6], [2, 3]);
 * assert.deepEqual(await t.toArray(), [[1, 2, 3], [4, 5, 6]]);
 * assert.deepEqual([...await t.reshape([3, 2]).data()], [1, 2, 3, 4, 5, 6]);
 * ```
 */
export class Tensor<D extends DType = DType> implements Disposable {
  /** The device that holds the data. */
  readonly device: Device;
  /** Dims, outermost first. */
  readonly shape: Shape;
  /** Element type. */
  readonly dtype: D;
  /** Unique id, for debugging and autograd bookkeeping. */
  readonly id: number;
  /** True when autograd should compute a gradient for this tensor (parameters, or outputs of ops on them). */
  requiresGrad = false;
  /** Accumulated gradient of a leaf tensor after `backward`. */
  grad: Tensor<D> | null = null;
  /** The op that produced this tensor, when recorded by autograd. */
  node: GradNode | null = null;
  /** Number of elements (the shape is frozen, so it is counted once: ops ask for it often). */
  readonly size: number;
  #buf: SharedStorage | null;

  /**
   * Wraps storage as a tensor. Most code should use {@link Device.tensor} or an op instead.
   *
   * @param device The owning device.
   * @param shape The dims.
   * @param dtype The element type.
   * @param buf The storage (ownership of one reference passes to the tensor).
   */
  constructor(device: Device, shape: Shape, dtype: D, buf: SharedStorage) {
    this.device = device;
    this.shape = Object.freeze([...shape]);
    this.size = sizeOf(this.shape);
    this.dtype = dtype;
    this.#buf = buf;
    this.id = nextTensorId++;
    track(this);
  }

  /** Number of dims. */
  get rank(): number {
    return this.shape.length;
  }

  /** True after `dispose()`. */
  get disposed(): boolean {
    return this.#buf === null;
  }

  /**
   * The device storage, for kernels. Throws a DisposedError after dispose.
   *
   * @param op The op asking, named in the error.
   * @returns The storage.
   */
  storage(op: string): Storage {
    const buf = this.#buf;
    if (!buf) {
      throw new DisposedError(op, `tensor #${this.id} ${formatShape(this.shape)} was disposed`);
    }
    if (buf.deferred) buf.deferred.emit();
    return buf.storage;
  }

  /**
   * Reads the elements back to the host (flushes pending work on the device).
   *
   * @returns A typed array matching the dtype.
   */
  async data(): Promise<TypedArrayFor<D>> {
    const bytes = this.size * (this.dtype === "f16" ? 2 : 4);
    const buf = await this.device.backend.read(this.storage("data"), bytes);
    return typedView(this.dtype, buf, this.size);
  }

  /**
   * Reads the elements as nested JS arrays (a number for a scalar).
   *
   * @returns The nested arrays.
   */
  async toArray(): Promise<NestedArray> {
    const flat = await this.data();
    const shape = this.shape;
    if (shape.length === 0) return flat[0]!;
    const build = (dim: number, offset: number): NestedArray[] => {
      const n = shape[dim]!;
      const inner = sizeOf(shape.slice(dim + 1));
      const out: NestedArray[] = new Array(n);
      for (let i = 0; i < n; i++) {
        out[i] = dim === shape.length - 1 ? flat[offset + i]! : build(dim + 1, offset + i * inner);
      }
      return out;
    };
    return build(0, 0);
  }

  /**
   * Reads a one-element tensor as a number.
   *
   * @returns The value.
   */
  async item(): Promise<number> {
    if (this.size !== 1) {
      throw ShapeError.mismatch("item", [this.shape], "item() needs exactly one element");
    }
    return (await this.data())[0]!;
  }

  /**
   * The same data with a new shape (no copy). One dim may be `-1`. Gradients flow through.
   *
   * @param shape The new dims; their product must equal `size`.
   * @returns A tensor sharing this tensor's storage.
   */
  reshape(shape: readonly number[]): Tensor<D> {
    const resolved = resolveReshape(this.shape, shape);
    const buf = this.#shared("reshape");
    buf.refs++;
    const out = new Tensor(this.device, resolved, this.dtype, buf);
    if (this.requiresGrad && recordingEnabled()) {
      // What autograd's `record` does, inlined: the tensor layer sits below autograd.
      const from = this.shape;
      out.requiresGrad = true;
      out.node = { op: "reshape", inputs: [this], backward: (g) => [g.reshape(from)] };
    }
    return out;
  }

  #shared(op: string): SharedStorage {
    this.storage(op);
    return this.#buf!;
  }

  /**
   * The reference-counted storage behind this tensor, for code that must keep it alive past the
   * tensor (a pending fused group takes a reference with `refs++` and gives it back with
   * `release()`). Throws a DisposedError after dispose.
   *
   * @param op The op asking, named in the error.
   * @returns The shared storage.
   *
   * @example
   * ```ts
   * import { openDevice } from "@qsparse/kit";
   * import assert from "node:assert/strict";
   * using dev = await openDevice({ prefer: "cpu" });
   * const t = dev.tensor([1, 2]);
   * const s = t.sharedStorage("example");
   * s.refs++; // keep it past the tensor
   * t.dispose();
   * assert.equal(s.refs, 1);
   * s.release();
   * ```
   */
  sharedStorage(op: string): SharedStorage {
    return this.#shared(op);
  }

  /** Frees this tensor's reference to its storage. Safe to call twice. */
  dispose(): void {
    if (!this.#buf) return;
    this.#buf.release();
    this.#buf = null;
    this.node = null;
    untrack(this);
    if (this.grad) {
      this.grad.dispose();
      this.grad = null;
    }
  }

  /** Disposes the tensor at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** A short description, e.g. `Tensor<f32>[2, 3] on webgpu`. */
  toString(): string {
    return `Tensor<${this.dtype}>${formatShape(this.shape)} on ${this.device.kind}`;
  }
}

/**
 * Resolves a `-1` in a reshape target and checks the element count.
 *
 * @param from The current shape.
 * @param to The target shape, with at most one `-1`.
 * @returns The target with the `-1` filled in.
 * @throws {ShapeError} When the element counts differ or the `-1` cannot be inferred.
 *
 * @example
 * ```ts
 * import { ShapeError } from "@qsparse/kit";
 * import { resolveReshape } from "./tensor.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(resolveReshape([2, 3, 4], [-1, 4]), [6, 4]);
 * assert.throws(() => resolveReshape([2, 3], [4, 2]), ShapeError);
 * ```
 */
export function resolveReshape(from: Shape, to: readonly number[]): number[] {
  const out = [...to];
  const neg = out.indexOf(-1);
  const known = out.reduce((a, d) => (d === -1 ? a : a * d), 1);
  const size = sizeOf(from);
  if (neg >= 0) {
    if (out.lastIndexOf(-1) !== neg || known === 0 || size % known !== 0) {
      throw ShapeError.mismatch("reshape", [from, to], "cannot infer the -1 dim");
    }
    out[neg] = size / known;
  }
  if (out.some((d) => !Number.isInteger(d) || d < 0) || sizeOf(out) !== size) {
    throw ShapeError.mismatch("reshape", [from, to], "element counts differ");
  }
  return out;
}
