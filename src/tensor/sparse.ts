/**
 * Typed sparse tensors living on the device:
 *
 * - {@link SparseRows}: a fixed K entries per row (what per-token top-K produces);
 * - {@link NMSparse}: n entries in every block of m consecutive columns (Block Q-Sparse);
 * - {@link CSR}: general rows (row pointers, column indices, values).
 *
 * Each is generic over the value dtype, owns its tensors (`dispose()`, `using`, and a
 * {@link scope} that returns one keeps it whole), and converts back with `toDense()`.
 * Dense → sparse conversions are ops: `topkRows`, `topkBlocks`, `denseToCsr`, `toCsr`.
 *
 * @module
 */
import { scatterRowsDispatch } from "../../kernels/sparse.ts";
import type { Device } from "./device.ts";
import type { DType } from "../core/dtype.ts";
import { ShapeError } from "../core/errors.ts";
import { keep, OWNED_TENSORS } from "./scope.ts";
import { type Shape, sizeOf } from "../core/shape.ts";
import type { Tensor } from "./tensor.ts";

function scatter<D extends DType>(
  op: string,
  device: Device,
  dtype: D,
  shape: Shape,
  k: number,
  values: Tensor<D>,
  indices: Tensor<"u32">,
  rowPtr: Tensor<"u32"> | null,
): Tensor<D> {
  const d = shape[shape.length - 1]!;
  const rows = sizeOf(shape.slice(0, -1));
  const out = device.empty(shape, dtype, op);
  if (out.size === 0) return out;
  const bufs = [values.storage(op), indices.storage(op), out.storage(op)];
  if (rowPtr) bufs.push(rowPtr.storage(op));
  device.run(scatterRowsDispatch(dtype, rows, d, k, bufs, rowPtr !== null));
  return out;
}

/**
 * A fixed number K of entries per row of a dense `[..., D]` tensor: `values` and `indices`
 * (u32 column indices) are both `[..., K]`. Produced by `topkRows` / `sparsify`.
 * Indices are ascending within each row unless `sorted` (then in rank order: largest first).
 *
 * @typeParam D The value dtype.
 *
 * @example
 * ```ts
 * import { openDevice, topkRows } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using s = topkRows(dev.tensor([[3, -1, 0, -5]]), 2);
 * assert.deepEqual(await s.indices.toArray(), [[0, 3]]);
 * assert.deepEqual(await s.values.toArray(), [[3, -5]]);
 * assert.equal(s.sparsity, 0.5);
 * assert.deepEqual(await s.toDense().toArray(), [[3, 0, 0, -5]]);
 * ```
 */
export class SparseRows<D extends DType = DType> implements Disposable {
  /** Kept values, `[..., K]`. */
  readonly values: Tensor<D>;
  /** Column index of each kept value, `[..., K]`. */
  readonly indices: Tensor<"u32">;
  /** Shape of the dense tensor, `[..., D]`. */
  readonly shape: Shape;
  /** True when each row is in rank order (largest first) instead of ascending column order. */
  readonly sorted: boolean;

  /**
   * Wraps existing tensors (ownership passes to the new object). Ops build these; use
   * `topkRows` to make one from a dense tensor.
   *
   * @param values `[..., K]` values.
   * @param indices `[..., K]` u32 column indices, each below the dense width.
   * @param shape Dense shape `[..., D]`.
   * @param sorted Rows are in rank order rather than column order.
   */
  constructor(values: Tensor<D>, indices: Tensor<"u32">, shape: Shape, sorted = false) {
    const lead = shape.slice(0, -1);
    const ok = shape.length >= 1 && values.rank === shape.length &&
      values.shape.every((d, i) => i === values.rank - 1 || d === lead[i]) &&
      indices.shape.length === values.rank &&
      indices.shape.every((d, i) => d === values.shape[i]) &&
      values.shape[values.rank - 1]! <= shape[shape.length - 1]!;
    if (!ok || indices.dtype !== "u32") {
      throw ShapeError.mismatch(
        "SparseRows",
        [values.shape, indices.shape, shape],
        "values and u32 indices must be [..., K] for a dense [..., D] with K ≤ D",
      );
    }
    this.values = values;
    this.indices = indices;
    this.shape = Object.freeze([...shape]);
    this.sorted = sorted;
  }

  /** Kept entries per row. */
  get k(): number {
    return this.values.shape[this.values.rank - 1]!;
  }
  /** Dense width D (last dim). */
  get width(): number {
    return this.shape[this.shape.length - 1]!;
  }
  /** Number of rows (product of the leading dims). */
  get rows(): number {
    return sizeOf(this.shape.slice(0, -1));
  }
  /** Stored entries, rows·K. */
  get nnz(): number {
    return this.rows * this.k;
  }
  /** Fraction of entries kept, K/D (structural: kept zeros count as kept). */
  get density(): number {
    return this.width === 0 ? 0 : this.k / this.width;
  }
  /** Fraction dropped, 1 − K/D. */
  get sparsity(): number {
    return 1 - this.density;
  }
  /** Value dtype. */
  get dtype(): D {
    return this.values.dtype;
  }
  /** The device holding the tensors. */
  get device(): Device {
    return this.values.device;
  }

  /**
   * The dense tensor with zeros where nothing is kept.
   *
   * @returns A new `[..., D]` tensor.
   */
  toDense(): Tensor<D> {
    return scatter(
      "SparseRows.toDense",
      this.device,
      this.dtype,
      this.shape,
      this.k,
      this.values,
      this.indices,
      null,
    );
  }

  /** Exempts the tensors from every open {@link scope}. @returns this. */
  keep(): this {
    keep(this.values);
    keep(this.indices);
    return this;
  }

  /** Frees the tensors. */
  dispose(): void {
    this.values.dispose();
    this.indices.dispose();
  }

  /** Frees the tensors at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** The owned tensors (lets a {@link scope} keep them when this is returned). @returns values, indices. */
  [OWNED_TENSORS](): Tensor[] {
    return [this.values, this.indices];
  }

  /** A short description. @returns e.g. `SparseRows<f32>[4, 4096] K=1638`. */
  toString(): string {
    return `SparseRows<${this.dtype}>[${this.shape.join(", ")}] K=${this.k}`;
  }
}

/**
 * N:M structured sparsity along the last dim: `n` entries kept in every block of `m`
 * consecutive columns. `values` and `indices` are `[..., (D/m)·n]`; block b's entries sit at
 * `[b·n, (b+1)·n)` in ascending column order, and indices are columns of the full row.
 * Produced by `topkBlocks`.
 *
 * @typeParam D The value dtype.
 *
 * @example
 * ```ts
 * import { openDevice, topkBlocks } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using s = topkBlocks(dev.tensor([[1, -4, 2, 3]]), 1, 2);
 * assert.deepEqual(await s.indices.toArray(), [[1, 3]]);
 * assert.equal(s.density, 0.5);
 * assert.deepEqual(await s.toDense().toArray(), [[0, -4, 0, 3]]);
 * ```
 */
export class NMSparse<D extends DType = DType> implements Disposable {
  /** Kept values, `[..., (D/m)·n]`. */
  readonly values: Tensor<D>;
  /** Column indices, `[..., (D/m)·n]`. */
  readonly indices: Tensor<"u32">;
  /** Shape of the dense tensor, `[..., D]`. */
  readonly shape: Shape;
  /** Kept per block. */
  readonly n: number;
  /** Block length. */
  readonly m: number;

  /**
   * Wraps existing tensors (ownership passes to the new object); use `topkBlocks` to make one.
   *
   * @param values `[..., (D/m)·n]` values.
   * @param indices `[..., (D/m)·n]` u32 column indices.
   * @param shape Dense shape `[..., D]` (m divides D).
   * @param n Kept per block.
   * @param m Block length.
   */
  constructor(values: Tensor<D>, indices: Tensor<"u32">, shape: Shape, n: number, m: number) {
    const d = shape[shape.length - 1] ?? 0;
    const lead = shape.slice(0, -1);
    const ok = shape.length >= 1 && m > 0 && d % m === 0 && n >= 0 && n <= m &&
      values.rank === shape.length && values.shape[values.rank - 1] === (d / m) * n &&
      values.shape.every((s, i) => i === values.rank - 1 || s === lead[i]) &&
      indices.dtype === "u32" && indices.shape.every((s, i) => s === values.shape[i]) &&
      indices.rank === values.rank;
    if (!ok) {
      throw ShapeError.mismatch(
        "NMSparse",
        [values.shape, indices.shape, shape],
        `values and u32 indices must be [..., (D/m)·n] with ${n}:${m} dividing D`,
      );
    }
    this.values = values;
    this.indices = indices;
    this.shape = Object.freeze([...shape]);
    this.n = n;
    this.m = m;
  }

  /** Kept entries per row, (D/m)·n. */
  get k(): number {
    return this.values.shape[this.values.rank - 1]!;
  }
  /** Dense width D. */
  get width(): number {
    return this.shape[this.shape.length - 1]!;
  }
  /** Number of rows. */
  get rows(): number {
    return sizeOf(this.shape.slice(0, -1));
  }
  /** Stored entries. */
  get nnz(): number {
    return this.rows * this.k;
  }
  /** Fraction kept, n/m. */
  get density(): number {
    return this.n / this.m;
  }
  /** Fraction dropped, 1 − n/m. */
  get sparsity(): number {
    return 1 - this.density;
  }
  /** Value dtype. */
  get dtype(): D {
    return this.values.dtype;
  }
  /** The device holding the tensors. */
  get device(): Device {
    return this.values.device;
  }

  /** The dense tensor with zeros where nothing is kept. @returns A new `[..., D]` tensor. */
  toDense(): Tensor<D> {
    return scatter(
      "NMSparse.toDense",
      this.device,
      this.dtype,
      this.shape,
      this.k,
      this.values,
      this.indices,
      null,
    );
  }

  /** Exempts the tensors from every open {@link scope}. @returns this. */
  keep(): this {
    keep(this.values);
    keep(this.indices);
    return this;
  }

  /** Frees the tensors. */
  dispose(): void {
    this.values.dispose();
    this.indices.dispose();
  }

  /** Frees the tensors at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** The owned tensors. @returns values, indices. */
  [OWNED_TENSORS](): Tensor[] {
    return [this.values, this.indices];
  }

  /** A short description. @returns e.g. `NMSparse<f32>[4, 4096] 16:32`. */
  toString(): string {
    return `NMSparse<${this.dtype}>[${this.shape.join(", ")}] ${this.n}:${this.m}`;
  }
}

/**
 * Compressed sparse rows of a dense `[rows, cols]` matrix: `rowPtr` (u32 `[rows + 1]`), and
 * `colIdx` (u32) and `values` (both `[nnz]`). Rows may hold any number of entries, e.g. the rows
 * of a batch sparsified with different K, or a batch's union. Column indices are ascending
 * within each row unless `sortedIndices` is false.
 *
 * @typeParam D The value dtype.
 *
 * @example
 * ```ts
 * import { denseToCsr, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using m = await denseToCsr(dev.tensor([[0, 2, 0], [1, 0, 3]]));
 * assert.equal(m.nnz, 3);
 * assert.deepEqual([...await m.rowPtr.data()], [0, 1, 3]);
 * assert.deepEqual([...await m.colIdx.data()], [1, 0, 2]);
 * assert.deepEqual(await m.toDense().toArray(), [[0, 2, 0], [1, 0, 3]]);
 * ```
 */
export class CSR<D extends DType = DType> implements Disposable {
  /** Row offsets, u32 `[rows + 1]`; row r owns `[rowPtr[r], rowPtr[r+1])`. */
  readonly rowPtr: Tensor<"u32">;
  /** Column index of each entry, u32 `[nnz]`. */
  readonly colIdx: Tensor<"u32">;
  /** Entry values, `[nnz]`. */
  readonly values: Tensor<D>;
  /** Dense shape `[rows, cols]`. */
  readonly shape: readonly [number, number];
  /** Column indices ascend within each row. */
  readonly sortedIndices: boolean;

  /**
   * Wraps existing tensors (ownership passes to the new object); use `denseToCsr` or `toCsr`.
   *
   * @param rowPtr u32 `[rows + 1]`.
   * @param colIdx u32 `[nnz]`.
   * @param values `[nnz]`.
   * @param shape Dense `[rows, cols]`.
   * @param sortedIndices Column indices ascend within each row.
   */
  constructor(
    rowPtr: Tensor<"u32">,
    colIdx: Tensor<"u32">,
    values: Tensor<D>,
    shape: readonly [number, number],
    sortedIndices = true,
  ) {
    if (
      rowPtr.dtype !== "u32" || colIdx.dtype !== "u32" || rowPtr.rank !== 1 || colIdx.rank !== 1 ||
      values.rank !== 1 || rowPtr.size !== shape[0] + 1 || colIdx.size !== values.size
    ) {
      throw ShapeError.mismatch(
        "CSR",
        [rowPtr.shape, colIdx.shape, values.shape, shape],
        "need u32 rowPtr [rows + 1], u32 colIdx [nnz] and values [nnz]",
      );
    }
    this.rowPtr = rowPtr;
    this.colIdx = colIdx;
    this.values = values;
    this.shape = Object.freeze([shape[0], shape[1]]) as readonly [number, number];
    this.sortedIndices = sortedIndices;
  }

  /** Stored entries. */
  get nnz(): number {
    return this.values.size;
  }
  /** Rows. */
  get rows(): number {
    return this.shape[0];
  }
  /** Dense width. */
  get width(): number {
    return this.shape[1];
  }
  /** Fraction of entries stored, nnz/(rows·cols). */
  get density(): number {
    const n = this.shape[0] * this.shape[1];
    return n === 0 ? 0 : this.nnz / n;
  }
  /** Fraction not stored. */
  get sparsity(): number {
    return 1 - this.density;
  }
  /** Value dtype. */
  get dtype(): D {
    return this.values.dtype;
  }
  /** The device holding the tensors. */
  get device(): Device {
    return this.values.device;
  }

  /** The dense matrix. @returns A new `[rows, cols]` tensor. */
  toDense(): Tensor<D> {
    return scatter(
      "CSR.toDense",
      this.device,
      this.dtype,
      this.shape,
      0,
      this.values,
      this.colIdx,
      this.rowPtr,
    );
  }

  /** Exempts the tensors from every open {@link scope}. @returns this. */
  keep(): this {
    keep(this.rowPtr);
    keep(this.colIdx);
    keep(this.values);
    return this;
  }

  /** Frees the tensors. */
  dispose(): void {
    this.rowPtr.dispose();
    this.colIdx.dispose();
    this.values.dispose();
  }

  /** Frees the tensors at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** The owned tensors. @returns rowPtr, colIdx, values. */
  [OWNED_TENSORS](): Tensor[] {
    return [this.rowPtr, this.colIdx, this.values];
  }

  /** A short description. @returns e.g. `CSR<f32>[64, 4096] nnz=1000`. */
  toString(): string {
    return `CSR<${this.dtype}>[${this.shape.join(", ")}] nnz=${this.nnz}`;
  }
}

/** Any of the kit's row-structured sparse formats. */
export type AnySparse<D extends DType = DType> = SparseRows<D> | NMSparse<D> | CSR<D>;
