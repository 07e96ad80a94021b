/**
 * AdamW with global-norm gradient clipping, entirely on the device (PyTorch's update rule, so the
 * PyTorch reference and resumed runs match step for step).
 *
 * A step runs multi-tensor kernels (kernels/optim_group.ts): one dispatch per group of gradients
 * for their squared norms, one for the clip factor, one per group of parameters for the update
 * (tiny: 4 dispatches where one per parameter took 43). The learning rate and the bias
 * corrections travel in a small device buffer written each step, so a step's dispatches and
 * uniforms are the same from one step to the next.
 *
 * @module
 */
import {
  ADAMW_HYPER_WORDS,
  adamwGroupCapacity,
  adamwGroupDispatch,
  type AdamWMember,
  adamwStepValues,
  sqNormGroupCapacity,
  sqNormGroupDispatch,
  type SqNormMember,
} from "../../kernels/optim_group.ts";
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
  /** Parameters in `params` order, each with its squared-norm slot and its moments' place. */
  #entries: ParamEntry[] = [];
  /**
   * Moment buffers, one `m` and one `v` per block of parameters that one AdamW dispatch can
   * bind (so a group binds two moment buffers, not two per parameter).
   */
  #blocks: MomentBlock[] = [];
  #sq: Tensor<"f32">;
  #res: Tensor<"f32">;
  /** `[lr, 1 − β1^t, 1 − β2^t, 0]` of the current step, read by the update kernel. */
  #hyper: Tensor<"f32">;
  #sqCapacity: number;
  #adamCapacity: number;

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
    const limits = device.backend.limits;
    this.#sqCapacity = sqNormGroupCapacity(limits.maxStorageBuffersPerShaderStage);
    this.#adamCapacity = adamwGroupCapacity(limits.maxStorageBuffersPerShaderStage);
    // A block's moments are one binding each, so they must fit a binding (and a buffer).
    const maxElements = Math.floor(
      Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize) / 4,
    );
    let members: string[] = [], elements = 0;
    const close = () => {
      if (members.length === 0) return;
      this.#blocks.push({
        m: keep(device.zeros([elements])),
        v: keep(device.zeros([elements])),
      });
      members = [];
      elements = 0;
    };
    for (const [name, p] of params) {
      if (members.length === this.#adamCapacity || elements + p.size > maxElements) close();
      this.#entries.push({
        name,
        param: p,
        slot: this.#entries.length,
        block: this.#blocks.length,
        offset: elements,
      });
      members.push(name);
      elements += p.size;
    }
    close();
    // Σg² slots, then the global norm and the clip factor the AdamW launches store.
    this.#sq = keep(device.tensor([...new Array<number>(params.size).fill(0), 0, 1]));
    this.#res = keep(device.tensor([0, 1]));
    this.#hyper = keep(device.zeros([ADAMW_HYPER_WORDS]));
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
    // The AdamW launches store both after the Σg² slots; copied out when asked (a log point).
    const n = this.#entries.length;
    this.device.backend.copy(this.#sq.storage("AdamW"), 4 * n, this.#res.storage("AdamW"), 0, 8);
    return this.#res;
  }

  /**
   * Per-parameter squared gradient norms Σg² of the last step (before clipping), one slot per
   * parameter in `params` order, then the global norm and the clip factor, on the device. Free:
   * the clipping pass computes them anyway.
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
    this.prepareStep(lr);
    this.applyStep();
  }

  /**
   * The host half of {@link AdamW.step}: advances the step count and writes this step's learning
   * rate and bias corrections into the device buffer the update kernels read. A captured training
   * step (see `captureStep`) calls this outside the recorded function and {@link AdamW.applyStep}
   * inside it, so a replay picks up each step's values with its uniforms unchanged.
   *
   * @param lr The learning rate for this step.
   *
   * @example
   * ```ts
   * import { openDevice } from "@qsparse/kit";
   * import { AdamW } from "@qsparse/kit/train";
   * import assert from "node:assert/strict";
   * using dev = await openDevice({ prefer: "cpu" });
   * const w = dev.tensor([1, 2]);
   * w.requiresGrad = true;
   * const opt = new AdamW(dev, new Map([["w", w]]));
   * opt.prepareStep(0.1);
   * assert.equal(opt.steps, 1);
   * ```
   */
  prepareStep(lr: number): void {
    if (!(lr >= 0)) throw new ValueError("AdamW.step", `learning rate must be ≥ 0, got ${lr}`);
    this.#t++;
    const c = this.config;
    this.device.backend.write(
      this.#hyper.storage("AdamW"),
      adamwStepValues(lr, c.beta1, c.beta2, this.#t),
    );
  }

  /**
   * The device half of {@link AdamW.step}: clips and updates every parameter that has a gradient
   * with the values of the last {@link AdamW.prepareStep}. Its dispatches and their uniforms are
   * the same at every step.
   *
   * @example
   * ```ts
   * import { backward, mul, openDevice, sumAll } from "@qsparse/kit";
   * import { AdamW } from "@qsparse/kit/train";
   * import assert from "node:assert/strict";
   * using dev = await openDevice({ prefer: "cpu" });
   * const w = dev.tensor([1, -2]);
   * w.requiresGrad = true;
   * const opt = new AdamW(dev, new Map([["w", w]]), { weightDecay: 0 });
   * backward(sumAll(mul(w, w)));
   * opt.prepareStep(0.1);
   * opt.applyStep();
   * const [a, b] = await w.data();
   * assert.ok(Math.abs(a! - 0.9) < 1e-5 && Math.abs(b! + 1.9) < 1e-5);
   * ```
   */
  applyStep(): void {
    if (this.#t === 0) {
      throw new ValueError("AdamW.applyStep", "call prepareStep(lr) first: no step values yet");
    }
    const c = this.config;
    const live = this.#entries.filter((e) => e.param.grad);
    // Unused slots keep 0 from creation, so they add nothing to the norm.
    const sq = this.#sq.storage("AdamW");
    for (let i = 0; i < live.length; i += this.#sqCapacity) {
      const members: SqNormMember[] = live.slice(i, i + this.#sqCapacity).map((e) => ({
        x: e.param.grad!.storage("AdamW"),
        n: e.param.size,
        slot: e.slot,
      }));
      this.device.run(sqNormGroupDispatch(members, sq, this.#sqCapacity));
    }
    const clip = { count: this.#entries.length, maxNorm: c.clipNorm };
    const hyper = this.#hyper.storage("AdamW");
    this.#blocks.forEach((block, b) => {
      const members: AdamWMember[] = live.filter((e) => e.block === b).map((e) => ({
        param: e.param.storage("AdamW"),
        grad: e.param.grad!.storage("AdamW"),
        n: e.param.size,
        momentOffset: e.offset,
        weightDecay: e.param.rank >= 2 ? c.weightDecay : 0,
      }));
      if (members.length === 0) return;
      this.device.run(adamwGroupDispatch(
        c,
        members,
        block.m.storage("AdamW"),
        block.v.storage("AdamW"),
        hyper,
        sq,
        clip,
        this.#adamCapacity,
      ));
    });
  }

  /**
   * Reads the state back to the host (flushes).
   *
   * @returns Moments and step count.
   */
  async state(): Promise<AdamWState> {
    const blocks = await Promise.all(
      this.#blocks.map(async (b) => ({ m: await b.m.data(), v: await b.v.data() })),
    );
    const m = new Map<string, Float32Array>(), v = new Map<string, Float32Array>();
    for (const e of this.#entries) {
      const b = blocks[e.block]!, end = e.offset + e.param.size;
      m.set(e.name, b.m.slice(e.offset, end));
      v.set(e.name, b.v.slice(e.offset, end));
    }
    return { t: this.#t, m, v };
  }

  /**
   * Restores a state saved by {@link AdamW.state}.
   *
   * @param s The state.
   */
  load(s: AdamWState): void {
    for (const e of this.#entries) {
      const m = s.m.get(e.name), v = s.v.get(e.name);
      if (!m || !v) throw new ValueError("AdamW.load", `state has no moments for ${e.name}`);
      if (m.length !== e.param.size || v.length !== e.param.size) {
        throw new ValueError(
          "AdamW.load",
          `moments of ${e.name} have ${m.length} and ${v.length} elements, the parameter ` +
            `[${e.param.shape.join(", ")}] has ${e.param.size}`,
        );
      }
      const b = this.#blocks[e.block]!;
      this.device.backend.write(b.m.storage("AdamW.load"), m, 4 * e.offset);
      this.device.backend.write(b.v.storage("AdamW.load"), v, 4 * e.offset);
    }
    this.#t = s.t;
  }

  /** Frees the moments. */
  dispose(): void {
    for (const b of this.#blocks) {
      b.m.dispose();
      b.v.dispose();
    }
    for (const t of [this.#sq, this.#res, this.#hyper]) t.dispose();
  }

  /** Frees the moments at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** One parameter as the optimizer sees it. */
interface ParamEntry {
  readonly name: string;
  readonly param: Tensor<"f32">;
  /** Its slot in the squared-norm buffer (its index in `params`). */
  readonly slot: number;
  /** The moment block holding its moments, and where they start there (elements). */
  readonly block: number;
  readonly offset: number;
}

/** First and second moments of consecutive parameters, back to back. */
interface MomentBlock {
  readonly m: Tensor<"f32">;
  readonly v: Tensor<"f32">;
}
