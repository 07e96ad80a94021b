/**
 * Reductions: over the last dim (`sum`, `mean`, `max`, `argmax`, `sumSquares`) and over all
 * elements (`sumAll`, `meanAll`, `maxAll`), with their vector-Jacobian products.
 *
 * Floats only; f16 storage is widened to f32 for the arithmetic and the result is stored back
 * as f16. `max`/`argmax` follow PyTorch: NaN beats every number, ties go to the lowest index.
 *
 * @module
 */
import {
  allReducePlan,
  argScatterDispatch,
  rowLanes,
  rowReduceDispatch,
  type RowReduceParams,
  type RowReduceSpec,
  SINGLE_PASS_MAX,
} from "../../kernels/reduce.ts";
import { needsGrad, record } from "../autograd/tape.ts";
import { type DType, isFloat } from "../core/dtype.ts";
import { DTypeError, ShapeError } from "../core/errors.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { broadcastTo } from "./layout.ts";
import { mul, mulScalar } from "./elementwise.ts";

/** Options of the last-dim reductions. */
export interface ReduceOptions {
  /** Keep the reduced dim as size 1 (`[..., n] → [..., 1]`) instead of dropping it. */
  keepdim?: boolean;
}

type RowKind = "sum" | "sumSquares" | "mean" | "max" | "argmax";

function checkFloat(op: string, x: Tensor): void {
  if (!isFloat(x.dtype)) throw new DTypeError(op, `needs a float tensor, got ${x.dtype} ${x}`);
}

/** `[rows, cols]` view of `x` around its last dim, and the output shape. */
function rowView(
  op: string,
  x: Tensor,
  keepdim: boolean,
): { rows: number; cols: number; shape: number[] } {
  if (x.rank === 0) {
    throw ShapeError.mismatch(op, [x.shape], "needs at least 1 dim to reduce the last");
  }
  const cols = x.shape[x.rank - 1]!;
  const lead = x.shape.slice(0, -1);
  const rows = lead.reduce((a, d) => a * d, 1);
  return { rows, cols, shape: keepdim ? [...lead, 1] : lead };
}

/** Runs one last-dim reduction into a fresh tensor (no autograd). */
function rowReduce(kind: RowKind, x: Tensor, keepdim: boolean): Tensor {
  checkFloat(kind, x);
  const { rows, cols, shape } = rowView(kind, x, keepdim);
  if ((kind === "max" || kind === "argmax") && cols === 0 && rows > 0) {
    throw ShapeError.mismatch(kind, [x.shape], "cannot take the max of an empty dim");
  }
  const isArg = kind === "argmax";
  const out = x.device.empty(shape, isArg ? "u32" : x.dtype, kind);
  if (rows === 0) return out;
  const spec: RowReduceSpec = {
    kind: kind === "max" || isArg ? "max" : "sum",
    square: kind === "sumSquares",
    inType: x.dtype,
    outType: x.dtype,
    lanes: rowLanes(cols),
    values: !isArg,
    indices: isArg,
    indexIn: false,
  };
  const p: RowReduceParams = {
    rows,
    cols,
    n: rows * cols,
    scale: kind === "mean" ? 1 / cols : 1,
    istride: 0,
  };
  runReduce(kind, x, spec, p, [out]);
  return out;
}

/**
 * Dispatches a reduction of `x` (no index input): ending `x`'s pending elementwise group when
 * the device fuses and `x` is in it (one kernel computes the chain and reduces it), else as its
 * own kernel.
 */
function runReduce(
  kind: string,
  x: Tensor,
  spec: RowReduceSpec,
  p: RowReduceParams,
  outputs: Tensor[],
): void {
  const { kind: k, square, outType, values, indices, lanes } = spec;
  const end = { kind: k, square, outType, values, indices, lanes, ...p };
  if (x.device.fusion?.reduce(x, end, outputs, kind)) return;
  const storages = outputs.map((t) => t.storage(kind));
  x.device.run(rowReduceDispatch(kind, spec, p, [x.storage(kind), ...storages]));
}

/** Reshapes a last-dim reduction's gradient to `[..., 1]` so it broadcasts against `x`. */
function asColumn(g: Tensor, x: Tensor): Tensor {
  return g.reshape([...x.shape.slice(0, -1), 1]);
}

/**
 * Sum over the last dim.
 *
 * @param x A float tensor of rank ≥ 1.
 * @param opts `keepdim` keeps the reduced dim as size 1.
 * @returns `[...lead]` (or `[...lead, 1]`).
 *
 * @example
 * ```ts
 * import { openDevice, sum } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using x = dev.tensor([[1, 2, 3], [4, 5, 6]]);
 * assert.deepEqual(await sum(x).toArray(), [6, 15]);
 * assert.deepEqual(sum(x, { keepdim: true }).shape, [2, 1]);
 * ```
 */
export function sum<D extends DType>(x: Tensor<D>, opts: ReduceOptions = {}): Tensor<D> {
  const y = rowReduce("sum", x, opts.keepdim ?? false) as Tensor<D>;
  if (needsGrad(x)) record(y, "sum", [x], (g) => [broadcastTo(asColumn(g, x), x.shape)]);
  return y;
}

/**
 * Mean over the last dim (NaN for an empty dim, like PyTorch).
 *
 * @param x A float tensor of rank ≥ 1.
 * @param opts `keepdim` keeps the reduced dim as size 1.
 * @returns `[...lead]` (or `[...lead, 1]`).
 *
 * @example
 * ```ts
 * import { mean, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual(await mean(dev.tensor([[1, 2, 3], [4, 5, 6]])).toArray(), [2, 5]);
 * ```
 */
export function mean<D extends DType>(x: Tensor<D>, opts: ReduceOptions = {}): Tensor<D> {
  const y = rowReduce("mean", x, opts.keepdim ?? false) as Tensor<D>;
  if (needsGrad(x)) {
    const cols = x.shape[x.rank - 1]!;
    record(y, "mean", [x], (g) => [broadcastTo(mulScalar(asColumn(g, x), 1 / cols), x.shape)]);
  }
  return y;
}

/**
 * Sum of squares over the last dim, Σ x² (fused; RMSNorm and L2 norms use it).
 *
 * @param x A float tensor of rank ≥ 1.
 * @param opts `keepdim` keeps the reduced dim as size 1.
 * @returns `[...lead]` (or `[...lead, 1]`).
 *
 * @example
 * ```ts
 * import { openDevice, sumSquares } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual(await sumSquares(dev.tensor([[1, 2], [3, 4]])).toArray(), [5, 25]);
 * ```
 */
export function sumSquares<D extends DType>(x: Tensor<D>, opts: ReduceOptions = {}): Tensor<D> {
  const y = rowReduce("sumSquares", x, opts.keepdim ?? false) as Tensor<D>;
  if (needsGrad(x)) {
    record(y, "sumSquares", [x], (g) => [mulScalar(mul(x, asColumn(g, x)), 2)]);
  }
  return y;
}

/** Gradient of a max: the upstream value goes to the argmax element of each row, zeros elsewhere. */
function maxGrad(x: Tensor, g: Tensor, rows: number, cols: number): Tensor {
  const idx = rowReduce("argmax", x.reshape([rows, cols]), false);
  const out = x.device.empty(x.shape, g.dtype, "maxBackward");
  if (x.size > 0) {
    x.device.run(
      argScatterDispatch(
        g.dtype,
        x.size,
        cols,
        g.storage("maxBackward"),
        idx.storage("maxBackward"),
        out.storage("maxBackward"),
      ),
    );
  }
  idx.dispose();
  return out;
}

/**
 * Largest value over the last dim (NaN if the row has one). The gradient goes to the element
 * {@link argmax} picks (the first maximum).
 *
 * @param x A float tensor of rank ≥ 1 with a non-empty last dim.
 * @param opts `keepdim` keeps the reduced dim as size 1.
 * @returns `[...lead]` (or `[...lead, 1]`).
 *
 * @example
 * ```ts
 * import { max, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual(await max(dev.tensor([[1, 7, 3], [-4, -5, -6]])).toArray(), [7, -4]);
 * ```
 */
export function max<D extends DType>(x: Tensor<D>, opts: ReduceOptions = {}): Tensor<D> {
  const y = rowReduce("max", x, opts.keepdim ?? false) as Tensor<D>;
  if (needsGrad(x)) {
    const cols = x.shape[x.rank - 1]!;
    record(y, "max", [x], (g) => [maxGrad(x, g, x.size / Math.max(1, cols), cols)]);
  }
  return y;
}

/**
 * Index of the largest value over the last dim, as u32. Ties go to the lowest index; NaN
 * beats every number (PyTorch's rule). Not differentiable.
 *
 * @param x A float tensor of rank ≥ 1 with a non-empty last dim.
 * @param opts `keepdim` keeps the reduced dim as size 1.
 * @returns A u32 tensor `[...lead]` (or `[...lead, 1]`).
 *
 * @example
 * ```ts
 * import { argmax, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using i = argmax(dev.tensor([[1, 7, 7], [NaN, 9, NaN]]));
 * assert.deepEqual([...await i.data()], [1, 0]);
 * ```
 */
export function argmax(x: Tensor, opts: ReduceOptions = {}): Tensor<"u32"> {
  return rowReduce("argmax", x, opts.keepdim ?? false) as Tensor<"u32">;
}

// ---------------------------------------------------------------------------------------------
// All-element reductions

type AllKind = "sumAll" | "meanAll" | "maxAll" | "argmaxAll";

/** Reduces every element to one (two passes above {@link SINGLE_PASS_MAX} elements). */
function reduceAll(kind: AllKind, x: Tensor): Tensor {
  checkFloat(kind, x);
  const n = x.size;
  const isMax = kind === "maxAll" || kind === "argmaxAll";
  if (isMax && n === 0) {
    throw ShapeError.mismatch(kind, [x.shape], "cannot take the max of no elements");
  }
  const isArg = kind === "argmaxAll";
  const dev = x.device;
  const out = dev.empty([], isArg ? "u32" : x.dtype, kind);
  const combine = { kind: isMax ? "max" : "sum", square: false } as const;
  const scale = kind === "meanAll" ? 1 / n : 1;
  const os = out.storage(kind);
  if (n <= SINGLE_PASS_MAX) {
    const s: RowReduceSpec = {
      ...combine,
      inType: x.dtype,
      outType: x.dtype,
      lanes: rowLanes(n),
      values: !isArg,
      indices: isArg,
      indexIn: false,
    };
    runReduce(kind, x, s, { rows: 1, cols: n, n, scale, istride: 0 }, [out]);
    return out;
  }
  // Pass 1: contiguous chunks to f32 partials (with each chunk's local argmax when needed).
  const { chunk, parts } = allReducePlan(n);
  const partial = dev.empty([parts], "f32", kind);
  const pidx = isArg ? dev.empty([parts], "u32", kind) : null;
  const ps = partial.storage(kind), pis = pidx ? [pidx.storage(kind)] : [];
  const pass1: RowReduceSpec = {
    ...combine,
    inType: x.dtype,
    outType: "f32",
    lanes: rowLanes(chunk),
    values: true,
    indices: isArg,
    indexIn: false,
  };
  const partials = pidx ? [partial, pidx] : [partial];
  runReduce(kind, x, pass1, { rows: parts, cols: chunk, n, scale: 1, istride: 0 }, partials);
  // Pass 2: one row over the partials; a local index i of chunk c is global c·chunk + i.
  const pass2: RowReduceSpec = {
    ...combine,
    inType: "f32",
    outType: x.dtype,
    lanes: rowLanes(parts),
    values: !isArg,
    indices: isArg,
    indexIn: isArg,
  };
  const p2: RowReduceParams = { rows: 1, cols: parts, n: parts, scale, istride: chunk };
  dev.run(rowReduceDispatch(kind, pass2, p2, [ps, ...pis, os]));
  partial.dispose();
  pidx?.dispose();
  return out;
}

/**
 * Sum of every element, as a scalar tensor (shape `[]`). Two passes for large tensors, so the
 * result is deterministic and accurate for millions of elements.
 *
 * @param x A float tensor.
 * @returns A scalar tensor.
 *
 * @example
 * ```ts
 * import { openDevice, sumAll } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using s = sumAll(dev.tensor([[1, 2], [3, 4]]));
 * assert.deepEqual(s.shape, []);
 * assert.equal(await s.item(), 10);
 * ```
 */
export function sumAll<D extends DType>(x: Tensor<D>): Tensor<D> {
  const y = reduceAll("sumAll", x) as Tensor<D>;
  if (needsGrad(x)) record(y, "sumAll", [x], (g) => [broadcastTo(g, x.shape)]);
  return y;
}

/**
 * Mean of every element, as a scalar tensor (NaN for an empty tensor).
 *
 * @param x A float tensor.
 * @returns A scalar tensor.
 *
 * @example
 * ```ts
 * import { meanAll, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.equal(await meanAll(dev.tensor([[1, 2], [3, 6]])).item(), 3);
 * ```
 */
export function meanAll<D extends DType>(x: Tensor<D>): Tensor<D> {
  const y = reduceAll("meanAll", x) as Tensor<D>;
  if (needsGrad(x)) {
    const n = x.size;
    // Broadcast first: both ops then have x's size and fuse into one launch (the same product
    // per element as scaling the scalar first).
    record(y, "meanAll", [x], (g) => {
      const b = broadcastTo(g, x.shape);
      const r = mulScalar(b, 1 / n);
      b.dispose();
      return [r];
    });
  }
  return y;
}

/**
 * Largest element, as a scalar tensor (NaN if any element is NaN). The gradient goes to the
 * first maximum in row-major order.
 *
 * @param x A non-empty float tensor.
 * @returns A scalar tensor.
 *
 * @example
 * ```ts
 * import { maxAll, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.equal(await maxAll(dev.tensor([[1, 9], [3, -4]])).item(), 9);
 * ```
 */
export function maxAll<D extends DType>(x: Tensor<D>): Tensor<D> {
  const y = reduceAll("maxAll", x) as Tensor<D>;
  if (needsGrad(x)) {
    record(y, "maxAll", [x], (g) => {
      const idx = reduceAll("argmaxAll", x);
      const out = x.device.empty(x.shape, g.dtype, "maxAllBackward");
      x.device.run(
        argScatterDispatch(
          g.dtype,
          x.size,
          x.size,
          g.storage("maxAllBackward"),
          idx.storage("maxAllBackward"),
          out.storage("maxAllBackward"),
        ),
      );
      idx.dispose();
      return [out];
    });
  }
  return y;
}

/**
 * Row-major index of the largest element (first maximum; NaN beats numbers), as a u32 scalar.
 * Not differentiable.
 *
 * @param x A non-empty float tensor.
 * @returns A u32 scalar tensor.
 *
 * @example
 * ```ts
 * import { argmaxAll, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.equal(await argmaxAll(dev.tensor([[1, 9], [9, -4]])).item(), 1);
 * ```
 */
export function argmaxAll(x: Tensor): Tensor<"u32"> {
  return reduceAll("argmaxAll", x) as Tensor<"u32">;
}
