/**
 * Layout ops: transpose of the last two dims, slice and concat along any dim, and `sumTo`.
 *
 * @module
 */
import {
  rowCopyDispatch,
  SUMTO_MAX_RANK,
  sumToDispatch,
  sumToLayout,
  transposeDispatch,
} from "../../kernels/layout.ts";
import { binaryDispatch, broadcastLayout, MAX_RANK } from "../../kernels/elementwise.ts";
import { needsGrad, record } from "../autograd/tape.ts";
import type { DType } from "../core/dtype.ts";
import { DeviceError, DTypeError, ShapeError, ValueError } from "../core/errors.ts";
import { broadcastShapes, sameShape, sizeOf } from "../core/shape.ts";
import type { Tensor } from "../tensor/tensor.ts";

function normDim(op: string, shape: readonly number[], dim: number): number {
  const d = dim < 0 ? dim + shape.length : dim;
  if (!Number.isInteger(d) || d < 0 || d >= shape.length) {
    throw ShapeError.mismatch(op, [shape], `dim ${dim} is out of range`);
  }
  return d;
}

/**
 * Swaps the last two dims (`[..., r, c] → [..., c, r]`), copying.
 *
 * @param x A tensor of rank ≥ 2.
 * @returns The transposed tensor.
 *
 * @example
 * ```ts
 * import { openDevice, transpose } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using t = transpose(dev.tensor([[1, 2, 3], [4, 5, 6]]));
 * assert.deepEqual(await t.toArray(), [[1, 4], [2, 5], [3, 6]]);
 * ```
 */
export function transpose<D extends DType>(x: Tensor<D>): Tensor<D> {
  if (x.rank < 2) throw ShapeError.mismatch("transpose", [x.shape], "needs at least 2 dims");
  const r = x.shape[x.rank - 2]!, c = x.shape[x.rank - 1]!;
  const batch = sizeOf(x.shape.slice(0, -2));
  const out = x.device.empty([...x.shape.slice(0, -2), c, r], x.dtype, "transpose");
  if (out.size > 0) {
    x.device.run(
      transposeDispatch(x.dtype, batch, r, c, x.storage("transpose"), out.storage("transpose")),
    );
  }
  if (needsGrad(x)) record(out, "transpose", [x], (g) => [transpose(g)]);
  return out;
}

/**
 * Elements `start..end-1` along `dim` (default dim 0), copying.
 *
 * @param x The tensor.
 * @param start First index (negative counts from the end).
 * @param end Exclusive end (default: the dim's size).
 * @param dim The dim to slice (default 0).
 * @returns The slice.
 *
 * @example
 * ```ts
 * import { openDevice, slice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using x = dev.tensor([[1, 2, 3], [4, 5, 6]]);
 * assert.deepEqual(await slice(x, 1).toArray(), [[4, 5, 6]]);
 * assert.deepEqual(await slice(x, 0, 2, 1).toArray(), [[1, 2], [4, 5]]);
 * ```
 */
export function slice<D extends DType>(
  x: Tensor<D>,
  start: number,
  end?: number,
  dim = 0,
): Tensor<D> {
  const d = normDim("slice", x.shape, dim);
  const len = x.shape[d]!;
  const s = start < 0 ? start + len : start;
  const e = end === undefined ? len : end < 0 ? end + len : end;
  if (!Number.isInteger(s) || !Number.isInteger(e) || s < 0 || e > len || s > e) {
    throw new ValueError(
      "slice",
      `range ${start}..${end ?? len} is out of bounds for dim ${dim} of [${x.shape.join(", ")}]`,
    );
  }
  const shape = [...x.shape];
  shape[d] = e - s;
  const out = x.device.empty(shape, x.dtype, "slice");
  const inner = sizeOf(x.shape.slice(d + 1));
  const outer = sizeOf(x.shape.slice(0, d));
  if (out.size > 0) {
    if (outer === 1) {
      const bpe = x.dtype === "f16" ? 2 : 4;
      if ((s * inner * bpe) % 4 === 0 && (out.size * bpe) % 4 === 0) {
        x.device.backend.copy(
          x.storage("slice"),
          s * inner * bpe,
          out.storage("slice"),
          0,
          out.size * bpe,
        );
      } else {
        x.device.run(rowCopyDispatch(
          "slice",
          x.dtype,
          {
            rows: 1,
            cols: out.size,
            srcStride: 0,
            srcOff: s * inner,
            dstStride: 0,
            dstOff: 0,
          },
          x.storage("slice"),
          out.storage("slice"),
        ));
      }
    } else {
      x.device.run(rowCopyDispatch(
        "slice",
        x.dtype,
        {
          rows: outer,
          cols: (e - s) * inner,
          srcStride: len * inner,
          srcOff: s * inner,
          dstStride: (e - s) * inner,
          dstOff: 0,
        },
        x.storage("slice"),
        out.storage("slice"),
      ));
    }
  }
  if (needsGrad(x)) {
    record(out, "slice", [x], (g) => {
      // Scatter the gradient back: concat zeros around it along the same dim.
      const parts: Tensor[] = [];
      const zshape = (n: number) => {
        const zs = [...x.shape];
        zs[d] = n;
        return zs;
      };
      if (s > 0) parts.push(g.device.zeros(zshape(s), g.dtype));
      parts.push(g);
      if (e < len) parts.push(g.device.zeros(zshape(len - e), g.dtype));
      return [parts.length === 1 ? g : concat(parts, d)];
    });
  }
  return out;
}

/**
 * Joins tensors along `dim` (default 0). All other dims must match.
 *
 * @param xs The tensors (same dtype and device).
 * @param dim The dim to join along.
 * @returns The joined tensor.
 *
 * @example
 * ```ts
 * import { concat, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using y = concat([dev.tensor([[1], [2]]), dev.tensor([[3], [4]])], 1);
 * assert.deepEqual(await y.toArray(), [[1, 3], [2, 4]]);
 * ```
 */
export function concat<D extends DType>(xs: readonly Tensor<D>[], dim = 0): Tensor<D> {
  if (xs.length === 0) throw new ValueError("concat", "needs at least one tensor");
  const first = xs[0]!;
  const d = normDim("concat", first.shape, dim);
  for (const x of xs) {
    if (x.dtype !== first.dtype) {
      throw new DTypeError("concat", `dtypes differ: ${first.dtype} and ${x.dtype}`);
    }
    if (x.device !== first.device) {
      throw DeviceError.mismatch(
        "concat",
        xs.map((t) => t.shape),
        "tensors live on different devices",
      );
    }
    if (x.rank !== first.rank || x.shape.some((n, i) => i !== d && n !== first.shape[i])) {
      throw ShapeError.mismatch(
        "concat",
        xs.map((t) => t.shape),
        `shapes differ outside dim ${dim}`,
      );
    }
  }
  const total = xs.reduce((a, x) => a + x.shape[d]!, 0);
  const shape = [...first.shape];
  shape[d] = total;
  const out = first.device.empty(shape, first.dtype, "concat");
  const outer = sizeOf(first.shape.slice(0, d));
  const inner = sizeOf(first.shape.slice(d + 1));
  let off = 0;
  for (const x of xs) {
    const cols = x.shape[d]! * inner;
    if (cols > 0 && outer > 0) {
      first.device.run(rowCopyDispatch(
        "concat",
        x.dtype,
        {
          rows: outer,
          cols,
          srcStride: cols,
          srcOff: 0,
          dstStride: total * inner,
          dstOff: off,
        },
        x.storage("concat"),
        out.storage("concat"),
      ));
    }
    off += cols;
  }
  if (needsGrad(...xs)) {
    record(out, "concat", xs, (g) => {
      let at = 0;
      return xs.map((x) => {
        const n = x.shape[d]!;
        const piece = x.requiresGrad ? slice(g, at, at + n, d) : null;
        at += n;
        return piece;
      });
    });
  }
  return out;
}

/**
 * Sums `x` down to `shape`, the inverse of broadcasting `shape` to `x.shape`.
 *
 * @param x The tensor.
 * @param shape A shape that broadcasts to `x.shape`.
 * @returns The reduced tensor, of `shape`.
 *
 * @example
 * ```ts
 * import { openDevice, sumTo } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using y = sumTo(dev.tensor([[1, 2], [3, 4]]), [2]);
 * assert.deepEqual([...await y.data()], [4, 6]);
 * ```
 */
export function sumTo<D extends DType>(x: Tensor<D>, shape: readonly number[]): Tensor<D> {
  const rank = x.rank;
  if (shape.length > rank) {
    throw ShapeError.mismatch("sumTo", [x.shape, shape], "target has more dims");
  }
  const padded = [...new Array(rank - shape.length).fill(1), ...shape];
  for (let i = 0; i < rank; i++) {
    if (padded[i] !== 1 && padded[i] !== x.shape[i]) {
      throw ShapeError.mismatch(
        "sumTo",
        [x.shape, shape],
        "target does not broadcast to the input",
      );
    }
  }
  const layout = sumToLayout(x.shape, shape);
  if (layout.outShape.length > SUMTO_MAX_RANK || layout.redShape.length > SUMTO_MAX_RANK) {
    throw ShapeError.mismatch("sumTo", [x.shape, shape], `more than ${SUMTO_MAX_RANK} dims`);
  }
  const out = x.device.empty(shape, x.dtype, "sumTo");
  if (out.size > 0) {
    x.device.run(sumToDispatch(x.dtype, layout, x.storage("sumTo"), out.storage("sumTo")));
  }
  if (needsGrad(x)) {
    const from = x.shape;
    record(out, "sumTo", [x], (g) => [broadcastTo(g, from)]);
  }
  return out;
}

/**
 * Materialises a broadcast of `x` to `shape`.
 *
 * @param x The tensor.
 * @param shape A shape `x` broadcasts to.
 * @returns A new tensor of `shape`.
 *
 * @example
 * ```ts
 * import { broadcastTo, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual(await broadcastTo(dev.tensor([1, 2]), [2, 2]).toArray(), [[1, 2], [1, 2]]);
 * ```
 */
export function broadcastTo<D extends DType>(x: Tensor<D>, shape: readonly number[]): Tensor<D> {
  // x + 0 through the binary kernel, dispatched here rather than through ops/elementwise's `add`
  // (whose gradient calls sumTo in this file) so the two files do not import each other.
  const out = broadcastShapes("broadcastTo", x.shape, shape);
  if (!sameShape(out, shape)) {
    throw ShapeError.mismatch("broadcastTo", [x.shape, shape], "input does not broadcast to it");
  }
  const layout = broadcastLayout(x.shape, shape, shape);
  if (layout.shape.length > MAX_RANK) {
    throw ShapeError.mismatch("broadcastTo", [x.shape, shape], `more than ${MAX_RANK} dims`);
  }
  const y = x.device.empty(shape, x.dtype, "broadcastTo");
  const fusion = x.device.fusion;
  // Fusing, the broadcast is a node of the pending group that reads x through its strides.
  if (y.size > 0 && fusion) fusion.broadcast(x, y);
  else if (y.size > 0) {
    const zero = x.device.zeros(shape, x.dtype);
    x.device.run(
      binaryDispatch(
        "add",
        x.dtype,
        layout,
        x.storage("broadcastTo"),
        zero.storage("broadcastTo"),
        y.storage("broadcastTo"),
      ),
    );
    zero.dispose();
  }
  if (needsGrad(x)) {
    const from = x.shape;
    record(y, "broadcastTo", [x], (g) => [sameShape(g.shape, from) ? g : sumTo(g, from)]);
  }
  return y;
}
