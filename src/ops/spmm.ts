/**
 * Sparse activations × dense weights, with the backward pieces training needs.
 *
 * **Weight layout:** `w` is stored input-major, `[D_in, D_out]` row-major: each input channel's
 * weights are one contiguous row (TEAL's layout), so a kept activation reads one row and a
 * dropped one reads nothing. `Y = dense(A) · w`, i.e. the kit's `matmul(x, w)` convention
 * (a PyTorch `nn.Linear` weight `[D_out, D_in]` is its transpose).
 *
 * @module
 */
import {
  type RowLayout,
  spmmDispatch,
  spmmGradWeightDispatch,
  type SpmmProblem,
} from "../../kernels/spmm.ts";
import { needsGrad, noGrad, record } from "../autograd/tape.ts";
import { type FloatDType, isFloat } from "../core/dtype.ts";
import { DeviceError, DTypeError, ShapeError, ValueError } from "../core/errors.ts";
import { type AnySparse, CSR, NMSparse } from "../tensor/sparse.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { matmul } from "./matmul.ts";

/** Which kernel {@link spmm} runs. */
export type SpmmKernelChoice = "auto" | "rows" | "merge" | "nm" | "dense";

/** Options for {@link spmm}. */
export interface SpmmOptions {
  /**
   * `"auto"` (default) picks by batch size and density: `"rows"` (each row walks its own
   * entries; the GEMV path), `"merge"` (a tile of rows walks the union of its columns, sharing
   * each weight load), `"nm"` (N:M rows, block by block) or `"dense"` (scatter to dense, then the
   * tiled dense matmul: at large batches per-token top-K picks nearly every column somewhere in
   * the batch, and the dense kernel's register tiling wins).
   */
  kernel?: SpmmKernelChoice;
}

function layoutOf(a: AnySparse): RowLayout {
  if (a instanceof CSR) return a.sortedIndices ? "csr" : "csrUnsorted";
  if (a instanceof NMSparse) return "fixed";
  return a.sorted ? "fixedUnsorted" : "fixed";
}

function leadShape(a: AnySparse): number[] {
  return a instanceof CSR ? [a.rows] : [...a.shape.slice(0, -1)];
}

/**
 * The kernel `"auto"` picks. Measured on llvmpipe (bench/sparsity_table.ts): the per-row kernel
 * costs ≈ 4.5× the dense tiled kernel per multiply-add, so it wins below ~20% density at any
 * batch and at any density for 1–2 rows, where the dense path is a GEMV; the merge kernel is
 * within ~20% of the best in between; past ~16 rows at moderate density the union of a batch's
 * columns is nearly all of D_in and dense wins.
 *
 * @param rows Rows of the sparse operand.
 * @param density Kept fraction, nnz / (rows · D_in).
 * @param ascending Column indices ascend within rows (the merge kernel needs it).
 * @returns The kernel.
 *
 * @example
 * ```ts
 * import { spmmAutoKernel } from "./spmm.ts";
 * import assert from "node:assert/strict";
 * assert.equal(spmmAutoKernel(1, 0.4, true), "rows"); // decoding: the GEMV path
 * assert.equal(spmmAutoKernel(64, 0.4, true), "dense"); // a big batch's union covers D_in
 * ```
 */
export function spmmAutoKernel(
  rows: number,
  density: number,
  ascending: boolean,
): Exclude<SpmmKernelChoice, "auto"> {
  if (rows <= 2 || density <= 0.2) return "rows";
  if (rows <= 16 && ascending) return "merge";
  return density <= 0.3 ? "rows" : "dense";
}

function check(op: string, a: AnySparse, w: Tensor): void {
  if (w.rank !== 2 || w.shape[0] !== a.width) {
    throw ShapeError.mismatch(
      op,
      [a.shape, w.shape],
      `w must be [D_in, D_out] (input-major) with D_in = ${a.width}, the sparse operand's width`,
    );
  }
  if (w.dtype !== a.dtype) {
    throw new DTypeError(
      op,
      `dtypes differ: sparse values are ${a.dtype}, w is ${w.dtype} (shapes [${a.shape}] and [${w.shape}])`,
    );
  }
  if (!isFloat(w.dtype)) throw new DTypeError(op, `needs float tensors, got ${w.dtype}`);
  if (w.device !== a.device) {
    throw DeviceError.mismatch(op, [a.shape, w.shape], "tensors live on different devices");
  }
}

function buffersOf(a: AnySparse): Tensor[] {
  return a instanceof CSR ? [a.values, a.colIdx] : [a.values, a.indices];
}

/**
 * `dense(a) · w` for sparse rows `a` and input-major weights `w` `[D_in, D_out]`, doing work
 * proportional to the kept entries: a GEMV path for one row (decoding) and batched paths (see
 * {@link SpmmOptions.kernel}). Accepts {@link SparseRows}, {@link NMSparse} and {@link CSR}.
 * f32 accumulation. Gradients flow to `w` (via {@link spmmGradWeight}, touching only kept
 * rows); for the input use `topkMask` + `matmul`, or {@link spmmGradInput} (straight-through).
 *
 * @param a Sparse activations `[..., D_in]`.
 * @param w Weights `[D_in, D_out]`, input-major.
 * @param opts Kernel choice.
 * @returns `[..., D_out]`.
 *
 * @example
 * ```ts
 * import { matmul, openDevice, spmm, topkMask, topkRows } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using x = dev.randn([2, 64], { seed: 1 });
 * using w = dev.randn([64, 32], { seed: 2 });
 * using y = spmm(topkRows(x, 16), w);
 * using ref = matmul(topkMask(x, 16), w);
 * const [a, b] = [await y.data(), await ref.data()];
 * assert.ok(a.every((v, i) => Math.abs(v - b[i]!) < 1e-4));
 * ```
 */
export function spmm<D extends FloatDType>(
  a: AnySparse<D>,
  w: Tensor<D>,
  opts: SpmmOptions = {},
): Tensor<D> {
  const op = "spmm";
  check(op, a, w);
  const dIn = a.width, dOut = w.shape[1]!, rows = a.rows;
  const layout = layoutOf(a);
  const nnz = a.nnz;
  const density = rows * dIn === 0 ? 0 : nnz / (rows * dIn);
  let kernel = opts.kernel ?? "auto";
  if (kernel === "auto") {
    kernel = spmmAutoKernel(rows, density, layout === "fixed" || layout === "csr");
  }
  if (kernel === "nm" && !(a instanceof NMSparse)) {
    throw new ValueError(op, `the nm kernel needs an NMSparse operand, got ${a}`);
  }
  if (kernel === "merge" && (layout === "fixedUnsorted" || layout === "csrUnsorted")) {
    throw new ValueError(
      op,
      `the merge kernel needs ascending column indices; ${a} is in rank order`,
    );
  }
  const outShape = [...leadShape(a), dOut];
  const out = noGrad(() => {
    if (kernel === "dense") {
      const dense = a.toDense();
      const flat = dense.reshape([rows, dIn]);
      const y = matmul(flat, w);
      dense.dispose();
      flat.dispose();
      const shaped = y.reshape(outShape);
      y.dispose();
      return shaped;
    }
    const y = a.device.empty(outShape, w.dtype, op);
    if (y.size === 0) return y;
    const p: SpmmProblem = { rows, dIn, dOut, k: a instanceof CSR ? 0 : a.k, dtype: w.dtype };
    const bufs = [...buffersOf(a).map((t) => t.storage(op)), w.storage(op), y.storage(op)];
    if (a instanceof CSR) bufs.push(a.rowPtr.storage(op));
    const nm = a instanceof NMSparse ? { n: a.n, m: a.m } : undefined;
    a.device.run(spmmDispatch(p, layout, bufs, kernel, nm));
    return y;
  });
  if (needsGrad(w)) record(out, op, [w], (g) => [spmmGradWeight(a, g as Tensor<D>)]);
  return out;
}

/**
 * The input gradient of `Y = X · w` as the straight-through estimator wants it: dense,
 * `dX = dY · wᵀ`, over all D_in entries (kept or not). `w` is input-major `[D_in, D_out]`.
 *
 * @param dy Upstream gradient `[..., D_out]`.
 * @param w Weights `[D_in, D_out]`.
 * @returns `dX`, `[..., D_in]`.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { spmmGradInput } from "./spmm.ts";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using dx = spmmGradInput(dev.tensor([[1, 2]]), dev.tensor([[1, 0], [0, 1], [1, 1]]));
 * assert.deepEqual(await dx.toArray(), [[1, 2, 3]]);
 * ```
 */
export function spmmGradInput<D extends FloatDType>(dy: Tensor<D>, w: Tensor<D>): Tensor<D> {
  const op = "spmmGradInput";
  if (w.rank !== 2 || dy.rank < 1 || dy.shape[dy.rank - 1] !== w.shape[1]) {
    throw ShapeError.mismatch(
      op,
      [dy.shape, w.shape],
      "dy must be [..., D_out] for w [D_in, D_out]",
    );
  }
  const lead = dy.shape.slice(0, -1);
  const flat = dy.reshape([-1, w.shape[1]!]);
  const dx = matmul(flat, w, { transposeB: true });
  flat.dispose();
  const out = dx.reshape([...lead, w.shape[0]!]);
  dx.dispose();
  return out;
}

/** Options for {@link spmmGradWeight}. */
export interface SpmmGradWeightOptions {
  /**
   * Add into this `[D_in, D_out]` gradient in place and return it, reading and writing only the
   * weight rows some entry keeps (the rest are not touched). Without it a new tensor is returned
   * with zeros in the other rows.
   */
  into?: Tensor;
}

/**
 * The weight gradient of `Y = dense(A) · w`: `dw = A_sparseᵀ · dY`, computed only for the weight
 * rows that some row of `a` keeps. Deterministic (no float atomics). `w` layout is input-major,
 * so `dw` is `[D_in, D_out]`.
 *
 * @param a Sparse activations `[..., D_in]` (the forward's operand).
 * @param dy Upstream gradient `[..., D_out]`, same leading dims as `a`.
 * @param opts `into`: accumulate in place into an existing gradient.
 * @returns `dw`, `[D_in, D_out]`.
 *
 * @example
 * ```ts
 * import { openDevice, topkRows } from "@qsparse/kit";
 * import { spmmGradWeight } from "./spmm.ts";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using a = topkRows(dev.tensor([[0, 2, 0, -1]]), 2); // keeps columns 1 and 3
 * using dw = spmmGradWeight(a, dev.tensor([[1, 10]]));
 * assert.deepEqual(await dw.toArray(), [[0, 0], [2, 20], [0, 0], [-1, -10]]);
 * ```
 */
export function spmmGradWeight<D extends FloatDType>(
  a: AnySparse<D>,
  dy: Tensor<D>,
  opts: SpmmGradWeightOptions = {},
): Tensor<D> {
  const op = "spmmGradWeight";
  const lead = leadShape(a);
  const dOut = dy.shape[dy.rank - 1] ?? 0;
  if (dy.rank !== lead.length + 1 || lead.some((d, i) => d !== dy.shape[i])) {
    throw ShapeError.mismatch(
      op,
      [a.shape, dy.shape],
      "dy must be [..., D_out] with the sparse operand's leading dims",
    );
  }
  if (dy.dtype !== a.dtype) {
    throw new DTypeError(op, `dtypes differ: sparse values are ${a.dtype}, dy is ${dy.dtype}`);
  }
  const into = opts.into as Tensor<D> | undefined;
  if (
    into &&
    (into.rank !== 2 || into.shape[0] !== a.width || into.shape[1] !== dOut ||
      into.dtype !== a.dtype)
  ) {
    throw ShapeError.mismatch(
      op,
      [a.shape, dy.shape, into.shape],
      `into must be a ${a.dtype} [D_in, D_out] = [${a.width}, ${dOut}]`,
    );
  }
  const dw = into ?? a.device.empty([a.width, dOut], a.dtype, op);
  if (dw.size === 0) return dw;
  const p: SpmmProblem = {
    rows: a.rows,
    dIn: a.width,
    dOut,
    k: a instanceof CSR ? 0 : a.k,
    dtype: a.dtype,
  };
  const bufs = [...buffersOf(a).map((t) => t.storage(op)), dy.storage(op), dw.storage(op)];
  if (a instanceof CSR) bufs.push(a.rowPtr.storage(op));
  a.device.run(spmmGradWeightDispatch(p, layoutOf(a), into !== undefined, bufs));
  return dw;
}
