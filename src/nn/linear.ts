/**
 * `Linear`: y = x · W with W stored input-major `[in, out]` (each input channel's weights are a
 * contiguous row — the layout the sparse kernels skip rows of). With `bitnet`, W is replaced in
 * the forward pass by its ternary absmean quantisation (latent full-precision weights, STE).
 *
 * Q-Sparse's masking lives in {@link SparseSite}, not here: q/k/v share one masked input and
 * gate/up share another, so the mask is applied once per site and fed to several Linears.
 *
 * @module
 */
import { matmulShared } from "../ops/linear_group.ts";
import { matmul } from "../ops/matmul.ts";
import { quantizeWeightsSte } from "../ops/quant_ste.ts";
import type { Device } from "../tensor/device.ts";
import { ShapeError } from "../core/errors.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { Module } from "./module.ts";

/** Options of {@link Linear}. */
export interface LinearOptions {
  /** Seed of the initialisation (each parameter hashes its name into it). */
  seed?: number;
  /** Std of the normal initialisation (default 0.02). */
  std?: number;
  /** Ternary absmean weights in the forward pass (BitNet b1.58). */
  bitnet?: boolean;
}

/**
 * A bias-free linear projection (LLaMA style).
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { Linear } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using lin = new Linear(dev, "proj", 8, 3, { seed: 1 });
 * using y = lin.forward(dev.ones([2, 5, 8]));
 * assert.deepEqual(y.shape, [2, 5, 3]);
 * ```
 */
export class Linear extends Module {
  /** Input width: size of the last dim of `x`. */
  readonly inFeatures: number;
  /** Output width: size of the last dim of the result. */
  readonly outFeatures: number;
  /** True when the forward pass uses ternary absmean weights (BitNet b1.58, STE gradient). */
  readonly bitnet: boolean;
  /** `[in, out]`. */
  readonly weight: Tensor<"f32">;

  /**
   * Creates the projection with a normal(0, `std`) weight registered as `${path}.weight`.
   *
   * @param device The device.
   * @param path Dotted name (the weight is `${path}.weight`).
   * @param inFeatures Input width.
   * @param outFeatures Output width.
   * @param opts Seed, init std, BitNet.
   */
  constructor(
    device: Device,
    path: string,
    inFeatures: number,
    outFeatures: number,
    opts: LinearOptions = {},
  ) {
    super(device, path);
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    this.bitnet = opts.bitnet ?? false;
    this.weight = this.normalParam(
      "weight",
      [inFeatures, outFeatures],
      opts.std ?? 0.02,
      opts.seed ?? 0,
    );
  }

  /** The weight the forward pass multiplies by (ternary-quantised for BitNet). */
  effectiveWeight(): Tensor<"f32"> {
    return this.bitnet ? quantizeWeightsSte(this.weight) : this.weight;
  }

  /**
   * y = x · W.
   *
   * @param x `[..., in]`.
   * @param weight The weight to use (pass a precomputed {@link Linear.effectiveWeight} to share it).
   * @returns `[..., out]`.
   */
  forward(x: Tensor<"f32">, weight: Tensor<"f32"> = this.effectiveWeight()): Tensor<"f32"> {
    const lead = x.shape.slice(0, -1);
    if (x.shape[x.rank - 1] !== this.inFeatures) {
      throw ShapeError.mismatch(
        this.path || "Linear",
        [x.shape, weight.shape],
        `expects ${this.inFeatures} input features`,
      );
    }
    // A 2-D product keeps the weight gradient a single matmul (no batched partials to sum).
    const y = matmul(x.reshape([-1, this.inFeatures]), weight);
    return y.reshape([...lead, this.outFeatures]);
  }
}

/**
 * Whether projections that share an input run as one grouped product ({@link projectShared}):
 * on by default on every backend; tests and benches switch it off to compare against separate
 * products.
 *
 * @example
 * ```ts
 * import { sharedProjections } from "./linear.ts";
 * sharedProjections.enabled = false; // q/k/v and gate/up as separate products
 * sharedProjections.enabled = true;
 * ```
 */
export const sharedProjections: { enabled: boolean } = {
  // Once off on WebGPU software adapters, where the grouped weight gradients were compiled again
  // at every launch (lavapipe's uniform inlining, see docs/kernels.md); with parameters in storage
  // there, grouped steps are as fast or faster (bench/projections.ts, 2026-12-01: tiny 1.01–1.11×,
  // s 1.06×) with 26–64 fewer launches.
  enabled: true,
};

/**
 * The outputs of several projections of one input: one grouped launch ({@link matmulShared})
 * on their effective weights (BitNet's ternary ones included) when they have one shape,
 * separate {@link Linear.forward}s otherwise or when {@link sharedProjections} is off. Each
 * output equals its Linear's forward.
 *
 * @param x `[..., in]`, the input every projection reads.
 * @param linears The projections (1 to 3, one shape for the grouped path).
 * @returns One output per projection, `[..., out]`.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { Linear, projectShared } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using a = new Linear(dev, "a", 8, 3, { seed: 1 });
 * using b = new Linear(dev, "b", 8, 3, { seed: 2 });
 * using x = dev.randn([2, 5, 8], { seed: 3 });
 * const [ya, yb] = projectShared(x, [a, b]);
 * using ref = b.forward(x);
 * assert.deepEqual(await yb!.data(), await ref.data());
 * ya!.dispose();
 * yb!.dispose();
 * ```
 */
export function projectShared(x: Tensor<"f32">, linears: readonly Linear[]): Tensor<"f32">[] {
  const first = linears[0];
  const grouped = sharedProjections.enabled && first !== undefined && linears.length <= 3 &&
    linears.every((l) => l.inFeatures === first.inFeatures && l.outFeatures === first.outFeatures);
  if (!grouped) return linears.map((l) => l.forward(x));
  if (x.shape[x.rank - 1] !== first.inFeatures) {
    throw ShapeError.mismatch(
      first.path || "Linear",
      [x.shape, first.weight.shape],
      `expects ${first.inFeatures} input features`,
    );
  }
  // BitNet's ternary weights are ordinary differentiable tensors (STE back to the latent ones).
  return matmulShared(x, linears.map((l) => l.effectiveWeight()));
}
