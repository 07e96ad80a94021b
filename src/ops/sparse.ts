/**
 * Sparse-format conversions on the device (dense → CSR, fixed-K rows → CSR) and nonzero
 * counts for sparsity accounting (per row or per tensor, as a small device tensor).
 *
 * @module
 */
import {
  countRowsDispatch,
  denseToCsrDispatch,
  fixedRowPtrDispatch,
  scanDispatch,
} from "../../kernels/sparse.ts";
import type { DType } from "../core/dtype.ts";
import { ShapeError } from "../core/errors.ts";
import { sizeOf } from "../core/shape.ts";
import { CSR, type NMSparse, type SparseRows } from "../tensor/sparse.ts";
import type { Tensor } from "../tensor/tensor.ts";

/** Options for {@link countNonzero}. */
export interface CountNonzeroOptions {
  /** Count per row (over the last dim) instead of over the whole tensor. */
  perRow?: boolean;
}

/**
 * Counts the nonzero entries (NaN counts as nonzero, −0 as zero) on the device, with no
 * readback: a u32 scalar `[]` for the whole tensor, or u32 `[...]` (the leading dims) per row.
 * Achieved sparsity is `1 − count / size`.
 *
 * @param x A tensor `[..., D]` (rank ≥ 1).
 * @param opts `perRow` for one count per row.
 * @returns The count(s), u32.
 *
 * @example
 * ```ts
 * import { countNonzero, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using x = dev.tensor([[0, 1, 2], [0, 0, -3]]);
 * assert.equal(await countNonzero(x).item(), 3);
 * assert.deepEqual([...await countNonzero(x, { perRow: true }).data()], [2, 1]);
 * ```
 */
export function countNonzero(x: Tensor, opts: CountNonzeroOptions = {}): Tensor<"u32"> {
  const op = "countNonzero";
  if (x.rank < 1) throw ShapeError.mismatch(op, [x.shape], "needs at least 1 dim");
  const d = x.shape[x.rank - 1]!;
  const lead = x.shape.slice(0, -1);
  const rows = sizeOf(lead);
  const perRow = x.device.empty(lead, "u32", op);
  if (rows > 0) {
    x.device.run(countRowsDispatch(x.dtype, rows, d, x.storage(op), perRow.storage(op)));
  }
  if (opts.perRow) return perRow;
  // The scan's last slot is the total; integer sums make it exact and order-independent.
  const offsets = x.device.empty([rows + 1], "u32", op);
  x.device.run(scanDispatch(rows, perRow.storage(op), offsets.storage(op), op));
  perRow.dispose();
  const total = x.device.empty([], "u32", op);
  x.device.backend.copy(offsets.storage(op), rows * 4, total.storage(op), 0, 4);
  offsets.dispose();
  return total;
}

/**
 * Dense `[rows, cols]` → {@link CSR} on the device. Counting, scanning and filling run on the
 * device; only the total nonzero count is read back (4 bytes) to size the arrays, hence async.
 * Column indices ascend within each row.
 *
 * @param x A 2-D tensor.
 * @returns The CSR matrix.
 *
 * @example
 * ```ts
 * import { denseToCsr, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using m = await denseToCsr(dev.tensor([[0, 5], [7, 0], [0, 0]]));
 * assert.deepEqual([...await m.rowPtr.data()], [0, 1, 2, 2]);
 * assert.deepEqual([...await m.values.data()], [5, 7]);
 * ```
 */
export async function denseToCsr<D extends DType>(x: Tensor<D>): Promise<CSR<D>> {
  const op = "denseToCsr";
  if (x.rank !== 2) throw ShapeError.mismatch(op, [x.shape], "needs a 2-D tensor");
  const [rows, d] = x.shape as [number, number];
  const dev = x.device;
  const counts = dev.empty([rows], "u32", op);
  if (rows > 0) dev.run(countRowsDispatch(x.dtype, rows, d, x.storage(op), counts.storage(op)));
  const rowPtr = dev.empty([rows + 1], "u32", op);
  dev.run(scanDispatch(rows, counts.storage(op), rowPtr.storage(op), op));
  counts.dispose();
  const nnz = new Uint32Array(await dev.backend.read(rowPtr.storage(op), 4, rows * 4))[0]!;
  const values = dev.empty([nnz], x.dtype, op);
  const colIdx = dev.empty([nnz], "u32", op);
  if (nnz > 0) {
    dev.run(
      denseToCsrDispatch(x.dtype, rows, d, [
        x.storage(op),
        rowPtr.storage(op),
        values.storage(op),
        colIdx.storage(op),
      ]),
    );
  }
  return new CSR(rowPtr, colIdx, values, [rows, d]);
}

/**
 * Fixed-K rows ({@link SparseRows} or {@link NMSparse}) → {@link CSR} over the rows flattened
 * to 2-D, with no readback (nnz = rows·K is known). Copies values and indices.
 *
 * @param s The sparse rows.
 * @returns The CSR matrix `[rows, D]`.
 *
 * @example
 * ```ts
 * import { openDevice, toCsr, topkRows } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using m = toCsr(topkRows(dev.tensor([[1, 0, 3], [0, 2, 0]]), 1));
 * assert.deepEqual([...await m.rowPtr.data()], [0, 1, 2]);
 * assert.deepEqual([...await m.colIdx.data()], [2, 1]);
 * ```
 */
export function toCsr<D extends DType>(s: SparseRows<D> | NMSparse<D>): CSR<D> {
  const op = "toCsr";
  const dev = s.device;
  const rows = s.rows, nnz = s.nnz;
  const rowPtr = dev.empty([rows + 1], "u32", op);
  dev.run(fixedRowPtrDispatch(rows, s.k, rowPtr.storage(op)));
  const values = dev.empty([nnz], s.dtype, op);
  const colIdx = dev.empty([nnz], "u32", op);
  const bytes = nnz * (s.dtype === "f16" ? 2 : 4);
  if (nnz > 0) {
    dev.backend.copy(s.values.storage(op), 0, values.storage(op), 0, bytes);
    dev.backend.copy(s.indices.storage(op), 0, colIdx.storage(op), 0, nnz * 4);
  }
  const sorted = !("sorted" in s) || !s.sorted;
  return new CSR(rowPtr, colIdx, values, [rows, s.width], sorted);
}
