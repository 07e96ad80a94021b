/**
 * `RMSNorm` layer with a learnable gain (initialised to 1).
 *
 * @module
 */
import { addRmsNorm, rmsNorm, rmsNormStream } from "../ops/rmsnorm.ts";
import type { Device } from "../tensor/device.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { Module } from "./module.ts";

/**
 * y = x / √(mean(x²) + ε) · g.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { RMSNorm } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using n = new RMSNorm(dev, "norm", 4);
 * using y = n.forward(dev.tensor([[2, 2, 2, 2]]));
 * assert.ok(Math.abs((await y.data())[0]! - 1) < 1e-3);
 * ```
 */
export class RMSNorm extends Module {
  /** Learnable gain g, `[dim]`, initialised to ones (registered as `${path}.weight`). */
  readonly weight: Tensor<"f32">;
  /** ε added to the mean square before the square root (numerical floor). */
  readonly eps: number;

  /**
   * Creates the norm with a unit gain.
   *
   * @param device The device.
   * @param path Dotted name.
   * @param dim Normalised width.
   * @param eps ε (default 1e-6).
   */
  constructor(device: Device, path: string, dim: number, eps = 1e-6) {
    super(device, path);
    this.eps = eps;
    this.weight = this.param("weight", device.ones([dim]));
  }

  /**
   * Normalises each row over the last dim and scales by the gain.
   *
   * @param x `[..., dim]`.
   * @returns The normalised tensor, same shape as `x`.
   */
  forward(x: Tensor<"f32">): Tensor<"f32"> {
    return rmsNorm(x, this.weight, this.eps);
  }

  /**
   * A residual add then this norm, in one launch (`addRmsNorm`): the values of
   * `add(x, res)` and `forward` of it.
   *
   * @param x The residual stream, `[..., dim]`.
   * @param res The branch output added to it (same shape).
   * @returns `[x + res, forward(x + res)]`.
   */
  forwardAdd(x: Tensor<"f32">, res: Tensor<"f32">): [Tensor<"f32">, Tensor<"f32">] {
    return addRmsNorm(x, res, this.weight, this.eps);
  }

  /**
   * This norm of a tensor that goes on as a residual stream (`rmsNormStream`): the stream's
   * gradient joins the norm's inside the norm's backward kernel.
   *
   * @param x The residual stream, `[..., dim]`.
   * @returns `[x, forward(x)]`.
   */
  forwardStream(x: Tensor<"f32">): [Tensor<"f32">, Tensor<"f32">] {
    return rmsNormStream(x, this.weight, this.eps);
  }
}
