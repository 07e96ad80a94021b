/**
 * The gated FFN: `down(topk(up(u) ⊙ act(gate(u))))` with `u = topk(x)`, where `act` is ReLU²
 * (Q-Sparse from scratch, Eq. 11) or SiLU (SwiGLU, LLaMA). One mask is shared by gate and up;
 * the down_proj input gets its own (ReLU² already makes it sparser than K by itself).
 *
 * @module
 */
import { mul, relu2, silu } from "../ops/elementwise.ts";
import type { Device } from "../tensor/device.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { ModelConfig } from "./config.ts";
import { Linear, projectShared } from "./linear.ts";
import { Module } from "./module.ts";
import { SparseSite } from "./sparsify.ts";

/**
 * Gated FFN block (without its pre-norm).
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { FeedForward, modelConfig } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using ffn = new FeedForward(dev, "ffn", modelConfig("tiny"), 1);
 * using y = ffn.forward(dev.randn([2, 4, 64], { seed: 3 }));
 * assert.deepEqual(y.shape, [2, 4, 64]);
 * ```
 */
export class FeedForward extends Module {
  /** The model config (dModel, dFF, activation, init, BitNet, sparsity). */
  readonly config: ModelConfig;
  /** Sparsification of the input shared by gate and up (one mask for both). */
  readonly gateUpSite: SparseSite;
  /** Sparsification of the down_proj input (the gated hidden activations). */
  readonly downSite: SparseSite;
  /** Gate projection `gate_proj`, `[d, dFF]`; its output goes through the activation. */
  readonly gate: Linear;
  /** Up projection `up_proj`, `[d, dFF]`. */
  readonly up: Linear;
  /** Down projection `down_proj`, `[dFF, d]`. */
  readonly down: Linear;

  /**
   * Creates the three projections (`gate_proj`, `up_proj`, `down_proj`) and the two sites.
   *
   * @param device The device.
   * @param path Dotted name.
   * @param config The model config.
   * @param seed Init seed.
   */
  constructor(device: Device, path: string, config: ModelConfig, seed: number) {
    super(device, path);
    this.config = config;
    const d = config.dModel, f = config.dFF;
    const opts = { seed, std: config.initStd, bitnet: config.bitnet };
    this.gate = this.child("gate_proj", new Linear(device, this.qualify("gate_proj"), d, f, opts));
    this.up = this.child("up_proj", new Linear(device, this.qualify("up_proj"), d, f, opts));
    this.down = this.child("down_proj", new Linear(device, this.qualify("down_proj"), f, d, opts));
    this.gateUpSite = new SparseSite(device, this.qualify("gate_up"), "gateUp", config);
    this.downSite = new SparseSite(device, this.qualify("down"), "down", config);
  }

  /**
   * The FFN on an already-sparsified input (MoE experts share the router's view of `u`).
   *
   * @param u `[..., d]`, the output of the gate/up site.
   * @returns `[..., d]`.
   */
  forwardSparse(u: Tensor<"f32">): Tensor<"f32"> {
    const act = this.config.ffn === "relu2glu" ? relu2 : silu;
    // One grouped launch for gate and up.
    const [g, up] = projectShared(u, [this.gate, this.up]) as [Tensor<"f32">, Tensor<"f32">];
    const h = mul(up, act(g));
    return this.down.forward(this.downSite.apply(h));
  }

  /**
   * The full FFN: sparsify the input at the gate/up site, then {@link FeedForward.forwardSparse}.
   *
   * @param x `[..., d]` (already normalised).
   * @returns `[..., d]`.
   */
  forward(x: Tensor<"f32">): Tensor<"f32"> {
    return this.forwardSparse(this.gateUpSite.apply(x));
  }

  /** The sites of this block. */
  sites(): SparseSite[] {
    return [this.gateUpSite, this.downSite];
  }
}
