/**
 * `SparseSite`: the sparsification step at one Q-Sparse site (the shared input of q/k/v, the
 * o_proj input, the shared input of gate/up, the down_proj input). It applies, in order:
 * BitNet's parameter-free RMSNorm (BitNet only), the sparsifier (top-K per token, N:M blocks, or
 * ReLU for the ablation) with the straight-through estimator, and int8 absmax fake-quantisation
 * (BitNet only; quantize-then-mask equals mask-then-quantize because the max survives top-K).
 * It also counts the nonzeros it passes on, on the device, for sparsity accounting.
 *
 * @module
 */
import { add, relu } from "../ops/elementwise.ts";
import { rmsNorm } from "../ops/rmsnorm.ts";
import { countNonzero } from "../ops/sparse.ts";
import { topkMask } from "../ops/topk.ts";
import { quantizeActivationsSte } from "../ops/quant_ste.ts";
import type { Device } from "../tensor/device.ts";
import { keep } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { ModelConfig, Site } from "./config.ts";

/** Running nonzero count of a site's output (on the device) and the elements seen. */
export interface SiteCounter {
  /** Σ nonzeros over the forwards since the last reset (u32 scalar on the device). */
  nonzeros: Tensor<"u32"> | null;
  /** Σ elements over the same forwards (host). */
  elements: number;
}

/**
 * One sparsification site.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { modelConfig, SparseSite } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * const site = new SparseSite(dev, "layers.0.attn.qkv", "qkv", modelConfig("tiny", { sparsity: 0.5 }));
 * using y = site.apply(dev.randn([2, 64], { seed: 1 }));
 * assert.equal([...await y.data()].filter((v) => v !== 0).length, 64);
 * ```
 */
export class SparseSite {
  /** The device that runs the masking and holds the counter. */
  readonly device: Device;
  /** Dotted name, e.g. `layers.0.attn.qkv`. */
  readonly name: string;
  /** Which of the four projection inputs this is (`qkv`, `o`, `gateUp`, `down`). */
  readonly site: Site;
  /** Sparsity S at this site: the fraction of each row zeroed (0 = dense, no sparsifier). */
  readonly sparsity: number;
  /** The model config (sparsifier, block size, STE, rescale, BitNet, norm ε). */
  readonly config: ModelConfig;
  /** Count nonzeros on every forward (turned off for speed by callers that do not log). */
  countEnabled = true;
  /** Nonzeros and elements passed on since the last {@link SparseSite.resetCounter}. */
  readonly counter: SiteCounter = { nonzeros: null, elements: 0 };
  /**
   * Called with every output of {@link SparseSite.apply} (measurement probes such as
   * chunk-level sparsity, which need the masks themselves); null for none.
   */
  observer: ((h: Tensor<"f32">) => void) | null = null;

  /**
   * Creates the site; its sparsity is `config.sparsity[site]`.
   *
   * @param device The device.
   * @param name Dotted name for logs.
   * @param site Which site.
   * @param config The model config (sparsity, block, sparsifier, STE, rescale, bitnet).
   */
  constructor(device: Device, name: string, site: Site, config: ModelConfig) {
    this.device = device;
    this.name = name;
    this.site = site;
    this.sparsity = config.sparsity[site];
    this.config = config;
  }

  /**
   * Sparsifies (and, for BitNet, normalises and quantises) a projection input.
   *
   * @param x `[..., width]`.
   * @returns The tensor the projection(s) consume.
   */
  apply(x: Tensor<"f32">): Tensor<"f32"> {
    const c = this.config;
    let h = x;
    if (c.bitnet) h = rmsNorm(h, null, c.normEps);
    if (this.sparsity > 0) {
      if (c.sparsifier === "relu") {
        h = relu(h);
      } else {
        h = c.block === null
          ? topkMask(h, { sparsity: this.sparsity }, { ste: c.ste, rescale: c.rescale })
          : topkMask(h, { sparsity: this.sparsity }, { ste: c.ste, block: { m: c.block } });
      }
    }
    if (c.bitnet) h = quantizeActivationsSte(h);
    if (this.countEnabled) this.#count(h);
    this.observer?.(h);
    return h;
  }

  #count(h: Tensor<"f32">): void {
    const n = countNonzero(h);
    const prev = this.counter.nonzeros;
    if (prev) {
      // Added in place, so the counter keeps one storage: a captured training step binds it,
      // and its replays keep counting into it.
      using sum = add(prev, n);
      n.dispose();
      this.device.backend.copy(sum.storage("count"), 0, prev.storage("count"), 0, 4);
    } else this.counter.nonzeros = keep(n);
    this.counter.elements += h.size;
  }

  /** Clears the counter (zeroed in place: a captured step may be bound to its storage). */
  resetCounter(): void {
    const c = this.counter.nonzeros;
    if (c) this.device.backend.write(c.storage("resetCounter"), new Uint32Array(1));
    this.counter.elements = 0;
  }

  /** Frees the counter's storage (the model does when it is disposed). */
  freeCounter(): void {
    this.counter.nonzeros?.dispose();
    this.counter.nonzeros = null;
    this.counter.elements = 0;
  }
}
