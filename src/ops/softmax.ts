/**
 * `softmax` (optionally causal) and `logSoftmax` over the last dim, with their gradients.
 *
 * @module
 */
import {
  softmaxBackwardDispatch,
  softmaxDispatch,
  type SoftmaxMode,
} from "../../kernels/softmax.ts";
import { needsGrad, record } from "../autograd/tape.ts";
import { type DType, isFloat } from "../core/dtype.ts";
import { DeviceError, DTypeError, ShapeError, ValueError } from "../core/errors.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { rowLanesOn } from "./row_lanes.ts";

/** Options for {@link softmax}. */
export interface SoftmaxOptions {
  /**
   * Treat `x` as attention scores `[..., T, T]` (query i in row i, key j in column j) and give
   * every key `j > i` probability 0. The mask is fused into the kernel: masked scores are never
   * read into the max or the sum, so they may hold anything.
   */
  causal?: boolean;
  /**
   * Added to `x` before the softmax, in the same kernel (an additive attention mask, e.g. `−∞`
   * at masked keys): the values of `softmax(add(x, bias))`. Same rank, dtype and last dim as
   * `x`; its other dims equal x's or are 1, and the dims that are 1 where x's are not form one
   * contiguous block (`[B, 1, T, C]` against `[B, H, T, C]`). It gets no gradient.
   */
  bias?: Tensor;
}

/** The bias's broadcast over x's rows as `group` and `inner` (kernels/softmax.ts). */
function biasLayout(op: string, x: Tensor, bias: Tensor): { group: number; inner: number } {
  const bad = (why: string) => ShapeError.mismatch(op, [x.shape, bias.shape], `bias ${why}`);
  if (bias.dtype !== x.dtype) throw new DTypeError(op, `bias is ${bias.dtype} but x is ${x.dtype}`);
  if (bias.device !== x.device) {
    throw DeviceError.mismatch(op, [x.shape, bias.shape], "x and bias live on different devices");
  }
  if (needsGrad(bias)) throw new ValueError(op, "bias gets no gradient: pass one that needs none");
  if (bias.rank !== x.rank || bias.shape[x.rank - 1] !== x.shape[x.rank - 1]) {
    throw bad("must have x's rank and last dim");
  }
  const lead = x.shape.slice(0, -1);
  const spread = lead.map((n, i) => bias.shape[i] !== n);
  if (spread.some((s, i) => s && bias.shape[i] !== 1)) {
    throw bad("dims must equal x's or be 1");
  }
  const first = spread.indexOf(true), last = spread.lastIndexOf(true);
  if (first < 0) return { group: 1, inner: 1 };
  if (spread.slice(first, last + 1).some((s) => !s)) {
    throw bad("may broadcast over one contiguous block of dims only");
  }
  const inner = lead.slice(last + 1).reduce((a, d) => a * d, 1);
  return { group: lead.slice(first).reduce((a, d) => a * d, 1), inner };
}

function run(
  mode: SoftmaxMode,
  x: Tensor,
  causal: boolean,
  op: string,
  bias?: Tensor,
): Tensor {
  if (!isFloat(x.dtype)) throw new DTypeError(op, `needs a float tensor, got ${x.dtype} ${x}`);
  if (x.rank === 0) throw ShapeError.mismatch(op, [x.shape], "needs at least 1 dim");
  const cols = x.shape[x.rank - 1]!;
  let t = 1;
  if (causal) {
    if (x.rank < 2 || x.shape[x.rank - 2] !== cols) {
      throw ShapeError.mismatch(op, [x.shape], "causal softmax needs square scores [..., T, T]");
    }
    t = cols;
  }
  const rows = cols === 0 ? 0 : x.size / cols;
  const broadcast = bias ? biasLayout(op, x, bias) : {};
  const out = x.device.empty(x.shape, x.dtype, op);
  if (rows > 0) {
    x.device.run(
      softmaxDispatch(
        { mode, causal, dtype: x.dtype, lanes: rowLanesOn(x.device, rows, cols), bias: !!bias },
        { rows, cols, t, ...broadcast },
        x.storage(op),
        out.storage(op),
        bias?.storage(op),
      ),
    );
  }
  return out;
}

function backwardOf(mode: SoftmaxMode, y: Tensor, g: Tensor): Tensor {
  const op = mode === "softmax" ? "softmaxBackward" : "logSoftmaxBackward";
  const cols = y.shape[y.rank - 1]!;
  const rows = cols === 0 ? 0 : y.size / cols;
  const gx = y.device.empty(y.shape, y.dtype, op);
  if (rows > 0) {
    y.device.run(
      softmaxBackwardDispatch(
        mode,
        y.dtype,
        rows,
        cols,
        y.storage(op),
        g.storage(op),
        gx.storage(op),
        rowLanesOn(y.device, rows, cols),
      ),
    );
  }
  return gx;
}

/**
 * Softmax over the last dim, `exp(x − max) / Σ exp(x − max)`, numerically stable. With
 * `causal`, scores `[..., T, T]` are masked so query i only sees keys 0..i (row i of each T×T
 * block; masked entries come out exactly 0).
 *
 * Gradient: `g_x = y·(g − Σ g·y)`, fused in one kernel.
 *
 * @param x Scores, a float tensor of rank ≥ 1 (≥ 2 and square last dims with `causal`).
 * @param opts `causal` masking; an additive `bias` (mask) fused into the kernel.
 * @returns Probabilities, same shape and dtype.
 *
 * @example Plain and causal
 * ```ts
 * import { openDevice, softmax } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using p = softmax(dev.tensor([[0, 0], [1000, 1000]]));
 * assert.deepEqual(await p.toArray(), [[0.5, 0.5], [0.5, 0.5]]);
 * using c = softmax(dev.zeros([2, 2]), { causal: true });
 * assert.deepEqual(await c.toArray(), [[1, 0], [0.5, 0.5]]);
 * ```
 */
export function softmax<D extends DType>(x: Tensor<D>, opts: SoftmaxOptions = {}): Tensor<D> {
  const y = run("softmax", x, opts.causal ?? false, "softmax", opts.bias) as Tensor<D>;
  if (needsGrad(x)) record(y, "softmax", [x], (g) => [backwardOf("softmax", y, g)]);
  return y;
}

/**
 * Log-softmax over the last dim, `x − max − log Σ exp(x − max)`, numerically stable.
 *
 * Gradient: `g_x = g − softmax(x)·Σ g`, fused in one kernel.
 *
 * @param x A float tensor of rank ≥ 1.
 * @returns Log-probabilities, same shape and dtype.
 *
 * @example
 * ```ts
 * import { logSoftmax, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using l = logSoftmax(dev.tensor([[0, 0], [-1e4, 0]]));
 * assert.deepEqual(await l.toArray(), [[-Math.LN2, -Math.LN2].map(Math.fround), [-1e4, 0]]);
 * ```
 */
export function logSoftmax<D extends DType>(x: Tensor<D>): Tensor<D> {
  const y = run("log", x, false, "logSoftmax") as Tensor<D>;
  if (needsGrad(x)) record(y, "logSoftmax", [x], (g) => [backwardOf("log", y, g)]);
  return y;
}
