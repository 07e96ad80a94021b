/**
 * `rmsNorm`: root-mean-square normalisation over the last dim (LLaMA / BitNet), with gradients
 * for the input and the weight; `addRmsNorm`: a residual add and the norm after it, fused.
 *
 * @module
 */
import {
  rmsNormBackwardDispatch,
  rmsNormDispatch,
  type RmsNormParams,
  rmsNormWeightGradDispatch,
} from "../../kernels/rmsnorm.ts";
import { rowLanesOn } from "./row_lanes.ts";
import { needsGrad, noGrad, record, recordGroup } from "../autograd/tape.ts";
import { type DType, isFloat } from "../core/dtype.ts";
import { DeviceError, DTypeError, ShapeError, ValueError } from "../core/errors.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { Device } from "../tensor/device.ts";
import type { DeferredKind } from "../tensor/deferred.ts";
import {
  rmsNormWeightGradGroupDispatch,
  weightGradGroupCapacity,
  type WeightGradMember,
} from "../../kernels/rmsnorm_weight_group.ts";
import { cast } from "./elementwise.ts";

/**
 * RMSNorm over the last dim: `y = x / √(mean(x²) + eps) · weight`, fused in one kernel
 * (f32 arithmetic, f16 storage allowed).
 *
 * Gradients: for x, `r·g·w − x·r³·mean(g·w·x)` (fused kernel, r recomputed from x); for the
 * weight, `Σ_rows g·x·r` (one launch after the x-gradient's, deterministic: fixed row splits
 * added by a fixed tree).
 *
 * @param x Input `[..., D]`, float.
 * @param weight Gain `[D]` of the same dtype, or null for none.
 * @param eps Added to the mean square (default 1e-6).
 * @returns Normalised tensor, same shape and dtype as x.
 *
 * @example
 * ```ts
 * import { openDevice, rmsNorm } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using y = rmsNorm(dev.tensor([[3, 4]]), dev.tensor([1, 2]), 0);
 * // rms([3, 4]) = √12.5
 * const r = Math.sqrt(12.5);
 * assert.deepEqual(await y.toArray(), [[Math.fround(3 / r), Math.fround(8 / r)]]);
 * ```
 */
export function rmsNorm<D extends DType>(
  x: Tensor<D>,
  weight: Tensor<D> | null,
  eps = 1e-6,
): Tensor<D> {
  const op = "rmsNorm";
  const p = checkNorm(op, x, weight, eps);
  const out = x.device.empty(x.shape, x.dtype, op);
  if (p.rows > 0) {
    x.device.run(
      rmsNormDispatch(x.dtype, p, x.storage(op), weight?.storage(op) ?? null, out.storage(op)),
    );
  }
  if (needsGrad(x, weight)) {
    record(out, op, weight ? [x, weight] : [x], (g) => {
      const { gx, gw } = normBackward(x, weight, g, null, p);
      if (!x.requiresGrad) {
        gx.dispose();
        return [null, gw];
      }
      return weight ? [gx, gw] : [gx];
    });
  }
  return out;
}

/**
 * A residual add and the RMSNorm after it in one launch: `sum = x + res`, then
 * `rmsNorm(sum, weight, eps)` — how a pre-norm transformer block hands its residual stream to
 * the next norm. Both results are the separate ops' bit for bit on the host backends (the sum is
 * rounded to the dtype before it is normalised, as a stored sum would be).
 *
 * Gradients: the gradient of `sum` and the norm's x-gradient are added in the norm's backward
 * kernel (no separate add), and both x and res receive that total. The backward reads `sum`: keep
 * it (a scope does) until `backward` has run, even when only the normalised output is used.
 *
 * @param x Residual stream `[..., D]`, float.
 * @param res What is added to it (same shape, dtype and device).
 * @param weight Gain `[D]` of the same dtype, or null for none.
 * @param eps Added to the mean square (default 1e-6).
 * @returns `[sum, normalised sum]`, both shaped like x.
 *
 * @example
 * ```ts
 * import { add, addRmsNorm, openDevice, rmsNorm } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using x = dev.tensor([[1, 2]]), r = dev.tensor([[2, 2]]), w = dev.tensor([1, 2]);
 * const [sum, y] = addRmsNorm(x, r, w, 0);
 * assert.deepEqual(await sum.toArray(), [[3, 4]]);
 * assert.deepEqual(await y.toArray(), await rmsNorm(add(x, r), w, 0).toArray());
 * ```
 */
export function addRmsNorm<D extends DType>(
  x: Tensor<D>,
  res: Tensor<D>,
  weight: Tensor<D> | null,
  eps = 1e-6,
): [Tensor<D>, Tensor<D>] {
  const op = "addRmsNorm";
  const p = checkNorm(op, x, weight, eps);
  if (res.shape.join() !== x.shape.join()) {
    throw ShapeError.mismatch(op, [x.shape, res.shape], "res must have the shape of x");
  }
  if (res.dtype !== x.dtype) throw new DTypeError(op, `res is ${res.dtype} but x is ${x.dtype}`);
  if (res.device !== x.device) {
    throw DeviceError.mismatch(op, [x.shape, res.shape], "x and res live on different devices");
  }
  const dev = x.device;
  const sum = dev.empty(x.shape, x.dtype, op), out = dev.empty(x.shape, x.dtype, op);
  if (p.rows > 0) {
    const residual = { res: res.storage(op), sum: sum.storage(op) };
    const w = weight?.storage(op) ?? null;
    dev.run(rmsNormDispatch(x.dtype, p, x.storage(op), w, out.storage(op), residual));
  }
  if (needsGrad(x, res, weight)) {
    recordGroup([sum, out], op, weight ? [x, res, weight] : [x, res], ([gSum, gOut]) => {
      let g: Tensor | null = gSum ?? null, gw: Tensor | null = null;
      if (gOut) ({ gx: g, gw } = normBackward(sum, weight, gOut, gSum ?? null, p));
      // x and res get the same total; res a view of its own, so the tape may free each alone.
      const forX = x.requiresGrad ? g : null;
      const forRes = res.requiresGrad ? (forX ? forX.reshape(res.shape) : g) : null;
      if (g && gOut && !forX && !forRes) g.dispose();
      return weight ? [forX, forRes, gw] : [forX, forRes];
    });
  }
  return [sum, out];
}

/**
 * `rmsNorm(x, weight, eps)` for a tensor that also goes on as a residual stream: returns
 * `[stream, normalised]`, where `stream` is x itself (a view: no launch, no copy) whose gradient
 * the norm's backward adds to its x-gradient inside its kernel, as `addRmsNorm` does. A pre-norm
 * transformer's first norm reads its embeddings this way, so the two gradients that meet there
 * (the stream's and the norm's) cost no separate add. Values and gradients are those of
 * `rmsNorm` and an add of the two gradients, bit for bit on the host backends.
 *
 * @param x `[..., D]`, float.
 * @param weight Gain `[D]` of the same dtype, or null for none.
 * @param eps Added to the mean square (default 1e-6).
 * @returns `[x as a stream, normalised x]`.
 *
 * @example
 * ```ts
 * import { openDevice, rmsNorm, rmsNormStream } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using x = dev.tensor([[3, 4]]), w = dev.tensor([1, 2]);
 * const [stream, y] = rmsNormStream(x, w, 0);
 * assert.deepEqual(await stream.toArray(), [[3, 4]]);
 * assert.deepEqual(await y.toArray(), await rmsNorm(x, w, 0).toArray());
 * ```
 */
export function rmsNormStream<D extends DType>(
  x: Tensor<D>,
  weight: Tensor<D> | null,
  eps = 1e-6,
): [Tensor<D>, Tensor<D>] {
  const op = "rmsNormStream";
  const p = checkNorm(op, x, weight, eps);
  const dev = x.device;
  const out = dev.empty(x.shape, x.dtype, op);
  if (p.rows > 0) {
    dev.run(
      rmsNormDispatch(x.dtype, p, x.storage(op), weight?.storage(op) ?? null, out.storage(op)),
    );
  }
  // The stream shares x's storage; recorded with the norm, not as a reshape of its own.
  const stream = noGrad(() => x.reshape(x.shape));
  if (needsGrad(x, weight)) {
    recordGroup([stream, out], op, weight ? [x, weight] : [x], ([gStream, gOut]) => {
      let g: Tensor | null = gStream ?? null, gw: Tensor | null = null;
      if (gOut) ({ gx: g, gw } = normBackward(x, weight, gOut, gStream ?? null, p));
      if (g && gOut && !x.requiresGrad) {
        g.dispose();
        g = null;
      }
      const forX = x.requiresGrad ? g : null;
      return weight ? [forX, gw] : [forX];
    });
  }
  return [stream, out];
}

/** Validates a norm's input, weight and eps; returns the kernels' sizes. */
function checkNorm(op: string, x: Tensor, weight: Tensor | null, eps: number): RmsNormParams {
  if (!isFloat(x.dtype)) throw new DTypeError(op, `needs a float tensor, got ${x.dtype} ${x}`);
  if (x.rank === 0) throw ShapeError.mismatch(op, [x.shape], "needs at least 1 dim");
  if (!(eps >= 0) || !Number.isFinite(eps)) {
    throw new ValueError(op, `eps must be finite and ≥ 0, got ${eps}`);
  }
  const cols = x.shape[x.rank - 1]!;
  if (weight) {
    if (weight.rank !== 1 || weight.shape[0] !== cols) {
      throw ShapeError.mismatch(
        op,
        [x.shape, weight.shape],
        `weight must be [${cols}] (the last dim of x)`,
      );
    }
    if (weight.dtype !== x.dtype) {
      throw new DTypeError(op, `weight is ${weight.dtype} but x is ${x.dtype}`);
    }
    if (weight.device !== x.device) {
      throw DeviceError.mismatch(
        op,
        [x.shape, weight.shape],
        "x and weight live on different devices",
      );
    }
  }
  const rows = cols === 0 ? 0 : x.size / cols;
  return { rows, cols, eps, lanes: rowLanesOn(x.device, rows, cols) };
}

/** The deferred group launch of norm weight gradients of storage dtype `dtype` on `dev`. */
function weightGradKind(dev: Device, dtype: DType): DeferredKind<WeightGradMember> {
  const capacity = weightGradGroupCapacity(dev.limits.maxStorageBuffersPerShaderStage);
  return {
    key: `rmsNormWeightGradGroup:${dtype}`,
    capacity,
    dispatch: (members) => rmsNormWeightGradGroupDispatch(dtype, members, capacity),
  };
}

/**
 * The norm's gradients for input `x` (the normalised tensor's input) given `g`: the x-gradient
 * (plus `gres` when given, in the same kernel) and, when the weight needs one, its gradient.
 */
function normBackward(
  x: Tensor,
  weight: Tensor | null,
  g: Tensor,
  gres: Tensor | null,
  p: RmsNormParams,
): { gx: Tensor; gw: Tensor | null } {
  const bop = gres ? "addRmsNormBackward" : "rmsNormBackward";
  const dev = x.device;
  const { rows, cols } = p;
  const gx = dev.empty(x.shape, x.dtype, bop);
  const rstd = dev.empty([rows], "f32", bop);
  if (rows > 0) {
    dev.run(
      rmsNormBackwardDispatch(
        x.dtype,
        p,
        x.storage(bop),
        weight?.storage(bop) ?? null,
        g.storage(bop),
        gx.storage(bop),
        rstd.storage(bop),
        gres?.storage(bop) ?? null,
      ),
    );
  }
  let gw: Tensor | null = null;
  if (weight?.requiresGrad) {
    let summed: Tensor;
    if (rows > 0 && dev.deferred) {
      // Nothing reads a norm weight's gradient before the optimizer: the device launches the
      // weight gradients of every norm of a backward together (kernels/rmsnorm_weight_group.ts).
      summed = dev.empty([cols], "f32", bop);
      const member = { rows, cols, x: x.storage(bop), g: g.storage(bop), rstd: rstd.storage(bop) };
      dev.deferred.add(
        weightGradKind(dev, x.dtype),
        { ...member, gw: summed.storage(bop) },
        [x, g, rstd],
        summed,
        bop,
      );
    } else if (rows > 0) {
      summed = dev.empty([cols], "f32", bop);
      dev.run(
        rmsNormWeightGradDispatch(
          x.dtype,
          rows,
          cols,
          x.storage(bop),
          g.storage(bop),
          rstd.storage(bop),
          summed.storage(bop),
        ),
      );
    } else {
      summed = dev.zeros([cols], "f32");
    }
    gw = summed;
    if (weight.dtype !== "f32") {
      gw = cast(summed, weight.dtype);
      summed.dispose();
    }
  }
  rstd.dispose();
  return { gx, gw };
}
