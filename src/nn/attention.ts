/**
 * Causal multi-head self-attention with RoPE, Q-Sparse on its projection inputs: one mask on the
 * input shared by q/k/v and one on the o_proj input. The attention itself (QKᵀ, softmax, ·V)
 * stays dense, as in the paper.
 *
 * @module
 */
import { matmulStrided } from "../ops/matmul_strided.ts";
import { ropePair } from "../ops/rope.ts";
import { softmax } from "../ops/softmax.ts";
import { attentionCausal } from "../ops/attention_causal.ts";
import { attentionHeadDimFits } from "../../kernels/attention_causal.ts";
import type { Device } from "../tensor/device.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { ModelConfig } from "./config.ts";
import { Linear, projectShared } from "./linear.ts";
import { Module } from "./module.ts";
import { SparseSite } from "./sparsify.ts";

/** `[B, T, H, hd]` read as `[B, H, T, hd]` (and back): the heads view of the projections. */
const HEADS = [0, 2, 1, 3];

/**
 * Whether causal attention on WebGPU runs as {@link attentionCausal}'s three launches (forward
 * one, gradient two) instead of eight (strided products, softmax and their gradients). On by
 * default; the host backends keep the products (BLAS runs them), and so does a head dim the
 * fused kernels do not take. Tests and benches switch it off to compare.
 *
 * @example
 * ```ts
 * import { fusedAttention } from "./attention.ts";
 * fusedAttention.enabled = false; // the strided products and the softmax
 * fusedAttention.enabled = true;
 * ```
 */
export const fusedAttention: { enabled: boolean } = { enabled: true };

/**
 * Attention block (without its pre-norm).
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { Attention, modelConfig } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using attn = new Attention(dev, "attn", modelConfig("tiny", { sparsity: 0.5 }), 1);
 * using y = attn.forward(dev.randn([2, 8, 64], { seed: 3 }));
 * assert.deepEqual(y.shape, [2, 8, 64]);
 * ```
 */
export class Attention extends Module {
  /** The model config (dModel, nHeads, RoPE base, init, BitNet, sparsity). */
  readonly config: ModelConfig;
  /** Sparsification of the input shared by q/k/v (one mask for all three). */
  readonly qkvSite: SparseSite;
  /** Sparsification of the o_proj input (the concatenated heads). */
  readonly oSite: SparseSite;
  /** Query projection `q_proj`, `[d, d]`. */
  readonly q: Linear;
  /** Key projection `k_proj`, `[d, d]`. */
  readonly k: Linear;
  /** Value projection `v_proj`, `[d, d]`. */
  readonly v: Linear;
  /** Output projection `o_proj`, `[d, d]`. */
  readonly o: Linear;

  /**
   * Creates the four projections (`q_proj`, `k_proj`, `v_proj`, `o_proj`) and the two sites.
   *
   * @param device The device.
   * @param path Dotted name.
   * @param config The model config.
   * @param seed Init seed.
   */
  constructor(device: Device, path: string, config: ModelConfig, seed: number) {
    super(device, path);
    this.config = config;
    const d = config.dModel;
    const opts = { seed, std: config.initStd, bitnet: config.bitnet };
    this.q = this.child("q_proj", new Linear(device, this.qualify("q_proj"), d, d, opts));
    this.k = this.child("k_proj", new Linear(device, this.qualify("k_proj"), d, d, opts));
    this.v = this.child("v_proj", new Linear(device, this.qualify("v_proj"), d, d, opts));
    this.o = this.child("o_proj", new Linear(device, this.qualify("o_proj"), d, d, opts));
    this.qkvSite = new SparseSite(device, this.qualify("qkv"), "qkv", config);
    this.oSite = new SparseSite(device, this.qualify("o"), "o", config);
  }

  /**
   * Causal self-attention: sparsify, project to heads, RoPE on q and k, scaled-dot-product
   * softmax with a causal mask, then sparsify the context and project back.
   *
   * @param x `[B, T, d]` (already normalised).
   * @returns `[B, T, d]`.
   */
  forward(x: Tensor<"f32">): Tensor<"f32"> {
    const [b, t, d] = x.shape as [number, number, number];
    const h = this.config.nHeads, hd = d / h;
    const xs = this.qkvSite.apply(x);
    const heads = (y: Tensor<"f32">) => y.reshape([b, t, h, hd]);
    const theta = this.config.ropeTheta;
    // q, k, v stay [B, T, H, hd]; the products read them as [B, H, T, hd] through strides.
    // One grouped launch for the three projections of the shared input.
    const [qp, kp, vp] = projectShared(xs, [this.q, this.k, this.v]) as [
      Tensor<"f32">,
      Tensor<"f32">,
      Tensor<"f32">,
    ];
    // RoPE on q and k in one launch (and one for their gradients).
    const [q, k] = ropePair(heads(qp), heads(kp), { base: theta });
    const v = heads(vp);
    if (fusedAttention.enabled && x.device.kind === "webgpu" && attentionHeadDimFits(hd)) {
      // One launch (two for the gradient) where a GPU pays for each: see fusedAttention.
      const ctx = attentionCausal(q, k, v, 1 / Math.sqrt(hd)).reshape([b, t, d]);
      return this.o.forward(this.oSite.apply(ctx));
    }
    // The 1/√hd scale is the product's alpha: applied to each accumulated q·k, no launch of its own.
    const scores = matmulStrided(q, k, {
      transposeB: true,
      dimsA: HEADS,
      dimsB: HEADS,
      alpha: 1 / Math.sqrt(hd),
      // Scores above the diagonal are masked by the softmax: the product skips them (and its
      // gradients skip the matching work), which is about half of each product's work.
      causal: { on: "c" },
    });
    const p = softmax(scores, { causal: true });
    // The context is written straight into [B, T, H, hd], so merging the heads is a reshape.
    // The probabilities are zero above the diagonal: the product reads only their lower part.
    const ctx = matmulStrided(p, v, { dimsB: HEADS, dimsOut: HEADS, causal: { on: "a" } })
      .reshape([b, t, d]);
    return this.o.forward(this.oSite.apply(ctx));
  }

  /** The sites of this block. */
  sites(): SparseSite[] {
    return [this.qkvSite, this.oSite];
  }
}
