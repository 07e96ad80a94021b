/**
 * AdamW with global-norm gradient clipping, entirely on the device (PyTorch's update rule, so the
 * PyTorch reference and resumed runs match step for step).
 *
 * @module
 */
import { adamwDispatch, clipScaleDispatch, sqNormDispatch } from "../../kernels/optim.ts";
import type { Device } from "../tensor/device.ts";
import { ValueError } from "../core/errors.ts";
import { keep } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";

/** AdamW settings. */
export interface AdamWConfig {
  /** β1 (default 0.9). */
  beta1?: number;
  /** β2 (default 0.95, as the paper). */
  beta2?: number;
  /** ε (default 1e-8). */
  eps?: number;
  /** Decoupled weight decay for matrices (default 0.1); vectors (norm gains) never decay. */
  weightDecay?: number;
  /** Clip the global gradient norm to this (default 1; ≤ 0 disables). */
  clipNorm?: number;
}

/** Serializable optimizer state (for checkpoints). */
export interface AdamWState {
  /** Steps taken. */
  t: number;
  /** First moments by parameter name. */
  m: Map<string, Float32Array>;
  /** Second moments by parameter name. */
  v: Map<string, Float32Array>;
}

/**
 * AdamW over a named parameter set.
 *
 * @example
 * ```ts
 * import { backward, mul, openDevice, sumAll } from "@qsparse/kit";
 * import { AdamW } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * const w = dev.tensor([1, -2, 3]);
 * w.requiresGrad = true;
 * const opt = new AdamW(dev, new Map([["w", w]]), { weightDecay: 0 });
 * backward(sumAll(mul(w, w)));
 * opt.step(0.1);
 * const v = await w.data();
 * assert.ok(Math.abs(v[0]! - 0.9) < 1e-5); // the first Adam step moves each weight by lr
 * ```
 */
export class AdamW implements Disposable {
  /** The device holding the parameters, the moments and the clipping scratch. */
  readonly device: Device;
  /** The parameters updated in place, by name (names key the moments and the saved state). */
  readonly params: Map<string, Tensor<"f32">>;
  /** The hyper-parameters with every default filled in. */
  readonly config: Required<AdamWConfig>;
  #t = 0;
  #m = new Map<string, Tensor<"f32">>();
  #v = new Map<string, Tensor<"f32">>();
  #sq: Tensor<"f32">;
  #res: Tensor<"f32">;

  /**
   * Creates the optimizer with zeroed first and second moments for every parameter.
   *
   * @param device The device.
   * @param params Parameters by name (the model's `namedParameters()`).
   * @param config Hyper-parameters.
   */
  constructor(device: Device, params: Map<string, Tensor<"f32">>, config: AdamWConfig = {}) {
    this.device = device;
    this.params = params;
    this.config = {
      beta1: config.beta1 ?? 0.9,
      beta2: config.beta2 ?? 0.95,
      eps: config.eps ?? 1e-8,
      weightDecay: config.weightDecay ?? 0.1,
      clipNorm: config.clipNorm ?? 1,
    };
    for (const [name, p] of params) {
      this.#m.set(name, keep(device.zeros(p.shape)));
      this.#v.set(name, keep(device.zeros(p.shape)));
    }
    this.#sq = keep(device.zeros([Math.max(1, params.size)]));
    this.#res = keep(device.tensor([0, 1]));
  }

  /** Steps taken so far. */
  get steps(): number {
    return this.#t;
  }

  /**
   * `[global grad norm before clipping, clip factor]` of the last step, on the device
   * (read it only when logging: a readback costs a flush).
   */
  get gradNorm(): Tensor<"f32"> {
    return this.#res;
  }

  /**
   * Per-parameter squared gradient norms Σg² of the last step (before clipping), one slot per
   * parameter in `params` order, on the device. Free: the clipping pass computes them anyway.
   */
  get sqGradNorms(): Tensor<"f32"> {
    return this.#sq;
  }

  /**
   * One update of every parameter that has a gradient, at learning rate `lr`.
   * Parameters without a gradient are skipped (their moments are untouched).
   *
   * @param lr The learning rate for this step.
   */
  step(lr: number): void {
    if (!(lr >= 0)) throw new ValueError("AdamW.step", `learning rate must be ≥ 0, got ${lr}`);
    this.#t++;
    const c = this.config;
    let slot = 0;
    const names = [...this.params.keys()];
    // Unused slots keep 0 from creation, so they add nothing to the norm.
    for (const name of names) {
      const p = this.params.get(name)!;
      if (p.grad) {
        this.device.run(
          sqNormDispatch(p.grad.storage("AdamW"), p.size, this.#sq.storage("AdamW"), slot),
        );
      }
      slot++;
    }
    this.device.run(
      clipScaleDispatch(
        this.#sq.storage("AdamW"),
        names.length,
        c.clipNorm,
        this.#res.storage("AdamW"),
      ),
    );
    const bc1 = 1 - c.beta1 ** this.#t, bc2 = 1 - c.beta2 ** this.#t;
    for (const name of names) {
      const p = this.params.get(name)!;
      if (!p.grad) continue;
      const wd = p.rank >= 2 ? c.weightDecay : 0;
      this.device.run(adamwDispatch(
        { lr, beta1: c.beta1, beta2: c.beta2, eps: c.eps, weightDecay: wd, bc1, bc2 },
        p.size,
        p.storage("AdamW"),
        this.#m.get(name)!.storage("AdamW"),
        this.#v.get(name)!.storage("AdamW"),
        p.grad.storage("AdamW"),
        this.#res.storage("AdamW"),
      ));
    }
  }

  /**
   * Reads the state back to the host (flushes).
   *
   * @returns Moments and step count.
   */
  async state(): Promise<AdamWState> {
    const m = new Map<string, Float32Array>(), v = new Map<string, Float32Array>();
    for (const name of this.params.keys()) {
      m.set(name, await this.#m.get(name)!.data());
      v.set(name, await this.#v.get(name)!.data());
    }
    return { t: this.#t, m, v };
  }

  /**
   * Restores a state saved by {@link AdamW.state}.
   *
   * @param s The state.
   */
  load(s: AdamWState): void {
    for (const name of this.params.keys()) {
      const m = s.m.get(name), v = s.v.get(name);
      if (!m || !v) throw new ValueError("AdamW.load", `state has no moments for ${name}`);
      this.device.backend.write(this.#m.get(name)!.storage("AdamW.load"), m);
      this.device.backend.write(this.#v.get(name)!.storage("AdamW.load"), v);
    }
    this.#t = s.t;
  }

  /** Frees the moments. */
  dispose(): void {
    for (const t of [...this.#m.values(), ...this.#v.values(), this.#sq, this.#res]) t.dispose();
  }

  /** Frees the moments at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}
