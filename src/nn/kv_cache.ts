/**
 * `KVCache`: per-layer key and value storage for incremental decoding. Each layer holds a
 * zero-initialised `[B, H, Tmax, hd]` tensor for K and one for V; a step appends its new
 * positions in place (one kernel launch) and attention multiplies with the whole capacity,
 * masking positions not yet written. Zeros in unwritten slots keep `p·V` finite (0·0, never
 * 0·NaN).
 *
 * @module
 */
import { kvWriteDispatch } from "../../kernels/kv_write.ts";
import type { Device } from "../tensor/device.ts";
import { ShapeError, ValueError } from "../core/errors.ts";
import { keep } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";

/**
 * Keys and values of every layer for a batch of sequences.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { KVCache } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using cache = new KVCache(dev, { layers: 1, batch: 1, heads: 1, headDim: 2, capacity: 4 });
 * using k = dev.tensor([1, 2, 3, 4], [1, 2, 1, 2]); // [B, T, H, hd]: two positions
 * cache.write(0, k, k);
 * cache.advance(2);
 * assert.equal(cache.length, 2);
 * assert.deepEqual([...await cache.keys(0).data()], [1, 2, 3, 4, 0, 0, 0, 0]);
 * ```
 */
export class KVCache implements Disposable {
  /** Sequences B. */
  readonly batch: number;
  /** Heads H. */
  readonly heads: number;
  /** Head width hd. */
  readonly headDim: number;
  /** Positions the cache can hold (Tmax). */
  readonly capacity: number;
  /** Positions written so far (the next step writes at this position). */
  length = 0;
  readonly #k: Tensor<"f32">[];
  readonly #v: Tensor<"f32">[];

  /**
   * Allocates zeroed storage for every layer.
   *
   * @param device The device.
   * @param sizes Layers, batch, heads, head width, capacity.
   */
  constructor(
    device: Device,
    sizes: { layers: number; batch: number; heads: number; headDim: number; capacity: number },
  ) {
    const { layers, batch, heads, headDim, capacity } = sizes;
    for (const [k, v] of Object.entries(sizes)) {
      if (!Number.isInteger(v) || v < 1) {
        throw new ValueError("KVCache", `${k} must be a positive integer, got ${v}`);
      }
    }
    this.batch = batch;
    this.heads = heads;
    this.headDim = headDim;
    this.capacity = capacity;
    const shape = [batch, heads, capacity, headDim];
    this.#k = Array.from({ length: layers }, () => keep(device.zeros(shape)));
    this.#v = Array.from({ length: layers }, () => keep(device.zeros(shape)));
  }

  /** Number of layers. */
  get layers(): number {
    return this.#k.length;
  }

  /**
   * Writes the keys and values of T new positions at {@link KVCache.length} (call
   * {@link KVCache.advance} once every layer has written).
   *
   * @param layer Layer index.
   * @param k New keys `[B, T, H, hd]` (after RoPE).
   * @param v New values `[B, T, H, hd]`.
   * @param stepValues In a captured decode loop, u32 step values (kernels/step_values.ts) whose
   *   position entry the kernel reads as the write position, written before each replay.
   */
  write(layer: number, k: Tensor<"f32">, v: Tensor<"f32">, stepValues?: Tensor<"u32">): void {
    const op = "KVCache.write";
    const want = [this.batch, -1, this.heads, this.headDim];
    for (const x of [k, v]) {
      if (x.rank !== 4 || x.shape.some((d, i) => want[i] !== -1 && d !== want[i])) {
        throw ShapeError.mismatch(op, [x.shape], `must be [B=${this.batch}, T, H, hd]`);
      }
    }
    if (k.shape[1] !== v.shape[1]) {
      throw ShapeError.mismatch(op, [k.shape, v.shape], "keys and values differ in T");
    }
    const t = k.shape[1]!;
    if (this.length + t > this.capacity) {
      throw new ValueError(
        op,
        `${this.length} cached + ${t} new positions exceed the capacity ${this.capacity}`,
      );
    }
    if (layer < 0 || layer >= this.layers) {
      throw new ValueError(op, `layer ${layer} is outside [0, ${this.layers})`);
    }
    const p = {
      b: this.batch,
      t,
      h: this.heads,
      hd: this.headDim,
      tMax: this.capacity,
      // With step values the position comes from the device (the same value, this.length).
      pos: stepValues ? 0 : this.length,
    };
    const dev = k.device;
    const sv = stepValues?.storage(op);
    // Keys and values in one launch.
    const values = { src: v.storage(op), cache: this.#v[layer]!.storage(op) };
    dev.run(kvWriteDispatch(p, k.storage(op), this.#k[layer]!.storage(op), sv, values));
  }

  /**
   * Marks T more positions as written.
   *
   * @param t Positions appended by the last {@link KVCache.write} of every layer.
   */
  advance(t: number): void {
    this.length += t;
  }

  /** The keys of a layer, `[B, H, Tmax, hd]` (owned by the cache; do not dispose). @param layer Index. @returns The tensor. */
  keys(layer: number): Tensor<"f32"> {
    return this.#k[layer]!;
  }

  /** The values of a layer, `[B, H, Tmax, hd]` (owned by the cache). @param layer Index. @returns The tensor. */
  values(layer: number): Tensor<"f32"> {
    return this.#v[layer]!;
  }

  /** Frees the storage. */
  dispose(): void {
    for (const t of [...this.#k, ...this.#v]) t.dispose();
  }

  /** Frees the storage at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}
