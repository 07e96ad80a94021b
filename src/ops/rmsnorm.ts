/**
 * `rmsNorm`: root-mean-square normalisation over the last dim (LLaMA / BitNet), with gradients
 * for the input and the weight.
 *
 * @module
 */
import {
  rmsNormBackwardDispatch,
  rmsNormDispatch,
  rmsNormWeightGradDispatch,
} from "../../kernels/rmsnorm.ts";
import { needsGrad, record } from "../autograd/tape.ts";
import { type DType, isFloat } from "../core/dtype.ts";
import { DeviceError, DTypeError, ShapeError, ValueError } from "../core/errors.ts";
import type { Tensor } from "../tensor/tensor.ts";
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
  const p = { rows, cols, eps };
  const out = x.device.empty(x.shape, x.dtype, op);
  if (rows > 0) {
    x.device.run(
      rmsNormDispatch(x.dtype, p, x.storage(op), weight?.storage(op) ?? null, out.storage(op)),
    );
  }
  if (needsGrad(x, weight)) {
    record(out, op, weight ? [x, weight] : [x], (g) => {
      const bop = "rmsNormBackward";
      const dev = x.device;
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
          ),
        );
      }
      let gw: Tensor | null = null;
      if (weight?.requiresGrad) {
        let summed: Tensor;
        if (rows > 0) {
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
      if (!x.requiresGrad) {
        gx.dispose();
        return [null, gw];
      }
      return weight ? [gx, gw] : [gx];
    });
  }
  return out;
}
