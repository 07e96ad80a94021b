/**
 * `MoeFeedForward`: a mixture-of-experts FFN that composes with Q-Sparse, with the surface of
 * `FeedForward` (`forward`, `sites`) plus the auxiliary loss of the last forward
 * ({@link MoeFeedForward.takeAuxLoss}) and router counters read at log time.
 *
 * Forward, for token rows x (already normalised):
 *
 * 1. router: `p = softmax(x · W_router)` on the **dense** x (the router is not a Q-Sparse site
 *    and stays full precision, like the LM head), top-k of E per token, gates renormalised over
 *    the chosen k (raw p for k = 1 unless `normalizeGates` says otherwise: a renormalised single
 *    gate is the constant 1 and would leave the router without a task gradient);
 * 2. the experts see the Q-Sparse-masked input `u = topk(x)` (the gate/up site; top-K is per
 *    token, so every expert a token reaches sees the same mask — computed once per token, then
 *    gathered into the grouped layout), as arm (d) of the MoE-with-sparsity study proposes;
 * 3. each expert is a gated FFN, `down_e(topk(up_e(u) ⊙ act(gate_e(u))))` with act = ReLU²
 *    (default) or SiLU; the down site's top-K runs on each expert's own rows;
 * 4. the outputs are combined with the gates; a token dropped by an expert over capacity keeps
 *    only its residual for that slot.
 *
 * Parameters: `router.weight [d, E]`, and the experts stacked as the grouped matmul reads them,
 * `experts.gate_proj.weight [E, d, f]`, `experts.up_proj.weight [E, d, f]`,
 * `experts.down_proj.weight [E, f, d]` (each expert's matrix is `[in, out]` like `Linear`).
 * BitNet quantises each expert's matrices with their own absmean scale.
 *
 * Auxiliary loss: `auxLossCoef · E·Σ_e f_e P_e` (Switch/GShard load balancing) plus
 * `zLossCoef · mean(logsumexp(logits)²)` (ST-MoE router z-loss), computed on every forward;
 * `TransformerLM.loss` adds it to the cross-entropy.
 *
 * @module
 */
import {
  moeRouterStatsDispatch,
  moeSegmentCountDispatch,
  routerCountWords,
  routerMassWords,
} from "../../kernels/moe.ts";
import { add, mul, mulScalar, relu2, silu } from "../ops/elementwise.ts";
import { concat, slice } from "../ops/layout.ts";
import {
  expertCapacity,
  groupedMatmul,
  loadBalancingLoss,
  moeCombine,
  moeGather,
  moeGroup,
  type MoeGrouping,
  moeRoute,
  routerZLoss,
} from "../ops/moe.ts";
import { quantizeWeightsSte } from "../ops/quant_ste.ts";
import { softmax } from "../ops/softmax.ts";
import type { Device } from "../tensor/device.ts";
import { ShapeError } from "../core/errors.ts";
import { keep } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { ModelConfig, MoeConfig, Site } from "./config.ts";
import { Linear } from "./linear.ts";
import { Module } from "./module.ts";
import { SparseSite } from "./sparsify.ts";

/**
 * Defaults of the optional {@link MoeConfig} fields.
 *
 * @example
 * ```ts
 * import { MOE_DEFAULTS, resolveMoe } from "./moe.ts";
 * import assert from "node:assert/strict";
 * assert.equal(MOE_DEFAULTS.auxLossCoef, 0.01);
 * assert.equal(resolveMoe({ experts: 4, topK: 1 }).zLossCoef, MOE_DEFAULTS.zLossCoef);
 * ```
 */
export const MOE_DEFAULTS: { auxLossCoef: number; zLossCoef: number } = {
  auxLossCoef: 0.01,
  zLossCoef: 0,
};

/** A {@link MoeConfig} with every default filled in. */
export interface ResolvedMoe {
  /** Experts E. */
  experts: number;
  /** Experts per token k. */
  topK: number;
  /** Load-balancing loss coefficient. */
  auxLossCoef: number;
  /** Router z-loss coefficient. */
  zLossCoef: number;
  /** Capacity factor, or null (no dropping). */
  capacityFactor: number | null;
  /** Renormalise the gates over the chosen k. */
  normalizeGates: boolean;
}

/**
 * Fills in the defaults of an MoE config: aux 0.01, z-loss 0, no capacity, gates renormalised
 * when k > 1 (for k = 1 the Switch gate p).
 *
 * @param m The MoE config.
 * @returns The resolved settings.
 *
 * @example
 * ```ts
 * import { resolveMoe } from "./moe.ts";
 * import assert from "node:assert/strict";
 * assert.equal(resolveMoe({ experts: 8, topK: 2 }).normalizeGates, true);
 * assert.equal(resolveMoe({ experts: 4, topK: 1 }).normalizeGates, false);
 * assert.equal(resolveMoe({ experts: 4, topK: 1 }).capacityFactor, null);
 * ```
 */
export function resolveMoe(m: MoeConfig): ResolvedMoe {
  return {
    experts: m.experts,
    topK: m.topK,
    auxLossCoef: m.auxLossCoef ?? MOE_DEFAULTS.auxLossCoef,
    zLossCoef: m.zLossCoef ?? MOE_DEFAULTS.zLossCoef,
    capacityFactor: m.capacityFactor ?? null,
    normalizeGates: m.normalizeGates ?? m.topK > 1,
  };
}

/**
 * The Q-Sparse site of every expert of one MoE layer at one position (gate/up input or down
 * input). It masks like a {@link SparseSite} but counts per expert, on the grouped rows each
 * expert actually receives (`expertNonzeros` / `expertElements`, u32 `[E]` on the device, read
 * by `measureSparsity`); the base counter stays empty. Expert e reports as
 * `layers.{i}.ffn.experts.{e}.{gate_up|down}`.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { modelConfig } from "@qsparse/kit/nn";
 * import { ExpertSite } from "./moe.ts";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * const cfg = modelConfig("tiny", { sparsity: 0.5, moe: { experts: 4, topK: 2 } });
 * const site = new ExpertSite(dev, "layers.0.ffn", "down", cfg, 4);
 * assert.equal(site.expertName(3), "layers.0.ffn.experts.3.down");
 * ```
 */
export class ExpertSite extends SparseSite {
  /** Experts E. */
  readonly numExperts: number;
  /** Dotted name of the layer's FFN (`layers.{i}.ffn`). */
  readonly layerPath: string;
  /** Nonzeros per expert since the last reset (u32 `[E]`), or null. */
  expertNonzeros: Tensor<"u32"> | null = null;
  /** Elements per expert (routed rows × width) since the last reset (u32 `[E]`), or null. */
  expertElements: Tensor<"u32"> | null = null;
  /**
   * Count launches since the last reset (host-side: whether the device counters hold anything;
   * a trainer replaying a captured step adds its launches here).
   */
  expertCounts = 0;
  /**
   * Called with every grouped output and its grouping (measurement probes such as chunk-level
   * sparsity); null for none.
   */
  groupedObserver: ((h: Tensor<"f32">, grouping: MoeGrouping) => void) | null = null;

  /**
   * Creates the site of every expert of one layer at one position.
   *
   * @param device The device.
   * @param layerPath Dotted name of the MoE FFN (`layers.{i}.ffn`).
   * @param site `gateUp` or `down`.
   * @param config The model config.
   * @param numExperts E.
   */
  constructor(
    device: Device,
    layerPath: string,
    site: Site,
    config: ModelConfig,
    numExperts: number,
  ) {
    super(device, `${layerPath}.${site === "gateUp" ? "gate_up" : "down"}`, site, config);
    this.layerPath = layerPath;
    this.numExperts = numExperts;
  }

  /**
   * Report name of one expert's site.
   *
   * @param e Expert index.
   * @returns e.g. `layers.0.ffn.experts.3.gate_up`.
   */
  expertName(e: number): string {
    return `${this.layerPath}.experts.${e}.${this.site === "gateUp" ? "gate_up" : "down"}`;
  }

  /**
   * Masks like {@link SparseSite.apply}, without the base (per-tensor) count.
   *
   * @param x `[..., width]`.
   * @returns The masked tensor.
   */
  override apply(x: Tensor<"f32">): Tensor<"f32"> {
    const on = this.countEnabled;
    this.countEnabled = false;
    try {
      return super.apply(x);
    } finally {
      this.countEnabled = on;
    }
  }

  /**
   * Counts the grouped rows per expert (when counting is on) and calls the observer.
   *
   * @param h The masked grouped rows `[M, width]`.
   * @param grouping Their grouping.
   */
  observe(h: Tensor<"f32">, grouping: MoeGrouping): void {
    if (this.countEnabled) {
      const e = this.numExperts, op = "ExpertSite.count";
      this.expertNonzeros ??= keep(this.device.zeros([e], "u32"));
      this.expertElements ??= keep(this.device.zeros([e], "u32"));
      this.device.run(
        moeSegmentCountDispatch(
          e,
          h.shape[1]!,
          h.storage(op),
          grouping.meta.storage(op),
          this.expertNonzeros.storage(op),
          this.expertElements.storage(op),
        ),
      );
      this.expertCounts++;
    }
    this.groupedObserver?.(h, grouping);
  }

  /**
   * Zeroes the per-expert counters (and the base counter) in place: a captured step binds their
   * storages, so they must outlive a reset.
   */
  override resetCounter(): void {
    super.resetCounter();
    for (const c of [this.expertNonzeros, this.expertElements]) {
      if (c) this.device.backend.write(c.storage("resetCounter"), new Uint32Array(c.size));
    }
    this.expertCounts = 0;
  }

  /** Frees the counters' storages (the model does when it is disposed). */
  override freeCounter(): void {
    super.freeCounter();
    this.expertNonzeros?.dispose();
    this.expertElements?.dispose();
    this.expertNonzeros = null;
    this.expertElements = null;
    this.expertCounts = 0;
  }
}

/** Router counters of one MoE layer since the last reset, on the device. */
export interface RouterCounters {
  /** u32 `[2E + 2]`: routed per expert, kept per expert, dropped, tokens. */
  counts: Tensor<"u32">;
  /** f32 `[E + 1]`: router probability mass per expert, summed router entropy (nats). */
  mass: Tensor<"f32">;
}

/**
 * Mixture-of-experts FFN block (without its pre-norm).
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { modelConfig, MoeFeedForward } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * const cfg = modelConfig("tiny", { sparsity: 0.5, moe: { experts: 4, topK: 2 } });
 * using ffn = new MoeFeedForward(dev, "ffn", cfg, 1);
 * using y = ffn.forward(dev.randn([2, 4, 64], { seed: 3 }));
 * assert.deepEqual(y.shape, [2, 4, 64]);
 * using aux = ffn.takeAuxLoss()!;
 * assert.ok((await aux.item()) > 0);
 * assert.deepEqual([...ffn.namedParameters().keys()], [
 *   "ffn.experts.gate_proj.weight", "ffn.experts.up_proj.weight", "ffn.experts.down_proj.weight",
 *   "ffn.router.weight",
 * ]);
 * ```
 */
export class MoeFeedForward extends Module {
  /** The model config. */
  readonly config: ModelConfig;
  /** The resolved MoE settings. */
  readonly moe: ResolvedMoe;
  /** The router, `router.weight [d, E]` (dense, full precision). */
  readonly router: Linear;
  /** `[E, d, f]`. */
  readonly gateWeight: Tensor<"f32">;
  /** `[E, d, f]`. */
  readonly upWeight: Tensor<"f32">;
  /** `[E, f, d]`. */
  readonly downWeight: Tensor<"f32">;
  /** Q-Sparse site of the experts' gate/up input (the token mask, counted per expert). */
  readonly gateUpSite: ExpertSite;
  /** Q-Sparse site of the experts' down_proj input (top-K on each expert's rows). */
  readonly downSite: ExpertSite;
  /** Accumulate router counters on every forward (off: nothing is counted). */
  statsEnabled = true;
  /** Router counters since the last {@link MoeFeedForward.resetRouterCounters}, or null. */
  routerCounters: RouterCounters | null = null;
  /**
   * Router count launches since the last reset (host-side: whether the counters hold anything; a
   * trainer replaying a captured step adds its launches here).
   */
  routerCounts = 0;
  #aux: Tensor<"f32"> | null = null;

  /**
   * Creates the layer with normal(0, initStd) weights seeded by their names.
   *
   * @param device The device.
   * @param path Dotted name (`layers.{i}.ffn`).
   * @param config The model config (`config.moe` must be set).
   * @param seed Init seed.
   */
  constructor(device: Device, path: string, config: ModelConfig, seed: number) {
    super(device, path);
    if (!config.moe) {
      throw new ShapeError(
        "MoeFeedForward",
        `${config.name}: config.moe is null (use FeedForward)`,
      );
    }
    this.config = config;
    this.moe = resolveMoe(config.moe);
    const d = config.dModel, f = config.dFF, e = this.moe.experts, std = config.initStd;
    this.gateWeight = this.normalParam("experts.gate_proj.weight", [e, d, f], std, seed);
    this.upWeight = this.normalParam("experts.up_proj.weight", [e, d, f], std, seed);
    this.downWeight = this.normalParam("experts.down_proj.weight", [e, f, d], std, seed);
    this.router = this.child(
      "router",
      new Linear(device, this.qualify("router"), d, e, { seed, std }),
    );
    this.gateUpSite = new ExpertSite(device, path, "gateUp", config, e);
    this.downSite = new ExpertSite(device, path, "down", config, e);
  }

  /** Expert matrices as the forward uses them (per-expert ternary for BitNet). */
  #expertWeight(w: Tensor<"f32">): Tensor<"f32"> {
    if (!this.config.bitnet) return w;
    const e = this.moe.experts;
    if (e === 1) return quantizeWeightsSte(w);
    return concat(
      Array.from({ length: e }, (_, i) => quantizeWeightsSte(slice(w, i, i + 1, 0))),
      0,
    );
  }

  /**
   * Routes, runs the experts on their tokens and combines; records the auxiliary loss and, when
   * enabled, the router counters.
   *
   * @param x `[..., d]` (already normalised).
   * @returns `[..., d]`.
   */
  forward(x: Tensor<"f32">): Tensor<"f32"> {
    const d = this.config.dModel;
    if (x.shape[x.rank - 1] !== d) {
      throw ShapeError.mismatch(this.path || "MoeFeedForward", [x.shape], `expects ${d} features`);
    }
    const { experts: e, topK: k } = this.moe;
    const xf = x.reshape([-1, d]);
    const n = xf.shape[0]!;
    const logits = this.router.forward(xf);
    const probs = softmax(logits);
    const route = moeRoute(probs, k, { normalize: this.moe.normalizeGates });
    const cf = this.moe.capacityFactor;
    const grouping = moeGroup(
      route.experts,
      e,
      cf === null ? {} : { capacity: expertCapacity(n, k, e, cf) },
    );

    const ug = moeGather(this.gateUpSite.apply(xf), grouping);
    this.gateUpSite.observe(ug, grouping);
    const act = this.config.ffn === "relu2glu" ? relu2 : silu;
    const h = mul(
      groupedMatmul(ug, this.#expertWeight(this.upWeight), grouping),
      act(groupedMatmul(ug, this.#expertWeight(this.gateWeight), grouping)),
    );
    const hs = this.downSite.apply(h);
    this.downSite.observe(hs, grouping);
    const yg = groupedMatmul(hs, this.#expertWeight(this.downWeight), grouping);
    const y = moeCombine(yg, route.gates, grouping);

    let aux: Tensor<"f32"> | null = null;
    if (this.moe.auxLossCoef > 0) {
      aux = mulScalar(loadBalancingLoss(probs, grouping), this.moe.auxLossCoef);
    }
    if (this.moe.zLossCoef > 0) {
      const z = mulScalar(routerZLoss(logits), this.moe.zLossCoef);
      aux = aux ? add(aux, z) : z;
    }
    this.#aux = aux;
    if (this.statsEnabled) this.#countRouter(n, probs, grouping);
    return y.reshape(x.shape);
  }

  #countRouter(n: number, probs: Tensor<"f32">, grouping: MoeGrouping): void {
    const e = this.moe.experts, op = "MoeFeedForward.stats";
    this.routerCounters ??= {
      counts: keep(this.device.zeros([routerCountWords(e)], "u32")),
      mass: keep(this.device.zeros([routerMassWords(e)])),
    };
    const c = this.routerCounters;
    this.device.run(
      moeRouterStatsDispatch(
        n,
        e,
        probs.storage(op),
        grouping.meta.storage(op),
        c.counts.storage(op),
        c.mass.storage(op),
      ),
    );
    this.routerCounts++;
  }

  /**
   * The auxiliary loss (load balancing + z-loss, coefficients applied) of the last forward, for
   * `TransformerLM.loss` to add; null when both coefficients are 0 or it was already taken. The
   * tensor belongs to the forward's scope.
   *
   * @returns A scalar, or null.
   */
  takeAuxLoss(): Tensor<"f32"> | null {
    const a = this.#aux;
    this.#aux = null;
    return a && !a.disposed ? a : null;
  }

  /**
   * Zeroes the router counters in place (a captured step binds their storages, so they must
   * outlive a reset).
   */
  resetRouterCounters(): void {
    const c = this.routerCounters;
    if (!c) return;
    const op = "MoeFeedForward.resetRouterCounters";
    this.device.backend.write(c.counts.storage(op), new Uint32Array(c.counts.size));
    this.device.backend.write(c.mass.storage(op), new Float32Array(c.mass.size));
    this.routerCounts = 0;
  }

  /** Frees the router counters. */
  freeRouterCounters(): void {
    this.routerCounters?.counts.dispose();
    this.routerCounters?.mass.dispose();
    this.routerCounters = null;
    this.routerCounts = 0;
  }

  /** The sites of this block (one per position, covering every expert). */
  sites(): SparseSite[] {
    return [this.gateUpSite, this.downSite];
  }

  /** Frees parameters and counters. */
  override dispose(): void {
    super.dispose();
    this.freeRouterCounters();
    this.gateUpSite.freeCounter();
    this.downSite.freeCounter();
  }
}
