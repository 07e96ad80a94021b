/**
 * Model configuration: sizes, the Q-Sparse knobs (sparsity per projection site, block N:M,
 * STE, rescale, sparsifier), BitNet b1.58, and the named configs used by the studies.
 *
 * @module
 */
import { ValueError } from "../core/errors.ts";

/** The four places Q-Sparse sparsifies a projection input (one mask per site). */
export type Site = "qkv" | "o" | "gateUp" | "down";

/**
 * All sites, in forward order.
 *
 * @example
 * ```ts
 * import { modelConfig, SITES } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * assert.deepEqual(SITES, ["qkv", "o", "gateUp", "down"]);
 * const c = modelConfig("tiny", { sparsity: 0.5 });
 * assert.ok(SITES.every((s) => c.sparsity[s] === 0.5));
 * ```
 */
export const SITES: readonly Site[] = ["qkv", "o", "gateUp", "down"];

/** Sparsity S (fraction zeroed) per site. */
export type SiteSparsity = Record<Site, number>;

/** Mixture-of-experts FFN settings (see the MoE layer). */
export interface MoeConfig {
  /** Number of experts E. */
  experts: number;
  /** Experts per token k. */
  topK: number;
  /** Load-balancing auxiliary loss coefficient (Switch form). */
  auxLossCoef?: number;
  /** Router z-loss coefficient (0 disables). */
  zLossCoef?: number;
  /** Capacity factor (tokens per expert = factor·k·T/E); undefined = no dropping. */
  capacityFactor?: number;
  /**
   * Renormalise the gates over the chosen k (default: true when k > 1; for k = 1 the Switch
   * gate p, since a renormalised single gate is the constant 1).
   */
  normalizeGates?: boolean;
}

/**
 * MoE variants of the named sizes: `modelConfig("s-moe8x2")` is size `s` with 8 experts, top-2
 * (any `<size>-moe<E>x<k>` works; these are the ones the MoE-with-sparsity study uses).
 *
 * @example
 * ```ts
 * import { modelConfig, NAMED_MOE_VARIANTS } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * assert.deepEqual(NAMED_MOE_VARIANTS.moe8x2, { experts: 8, topK: 2 });
 * assert.deepEqual(modelConfig("xs-moe8x2").moe, NAMED_MOE_VARIANTS.moe8x2);
 * ```
 */
export const NAMED_MOE_VARIANTS: Record<string, Pick<MoeConfig, "experts" | "topK">> = {
  moe4x1: { experts: 4, topK: 1 },
  moe8x2: { experts: 8, topK: 2 },
};

/** Everything that defines a model. */
export interface ModelConfig {
  /** Config name, e.g. `"s"`. */
  name: string;
  /** Vocabulary size (256 for the byte tokenizer). */
  vocab: number;
  /** Hidden size d. */
  dModel: number;
  /** Transformer blocks. */
  nLayers: number;
  /** Attention heads (dModel must divide evenly). */
  nHeads: number;
  /** FFN (GLU) hidden size. */
  dFF: number;
  /** Context length used for training. */
  seqLen: number;
  /** `relu2glu` (Q-Sparse from scratch) or `swiglu` (LLaMA). */
  ffn: "relu2glu" | "swiglu";
  /** Sparsity S per site (0 = dense). */
  sparsity: SiteSparsity;
  /** Block size M for Block Q-Sparse (N = round((1 − S)·M) per site), or null for per-token top-K. */
  block: number | null;
  /** How the input is sparsified: Q-Sparse's top-K, or a plain ReLU (the paper's ablation). */
  sparsifier: "topk" | "relu";
  /** Straight-through estimator for the mask (false = gradient masked too; the paper's ablation). */
  ste: boolean;
  /** Norm-preserving rescale `x_s·‖x‖/‖x_s‖` after masking (off in the official code). */
  rescale: boolean;
  /** BitNet b1.58: ternary absmean weights, int8 absmax activations, STE through both. */
  bitnet: boolean;
  /** Mixture-of-experts FFN, or null for a dense FFN. */
  moe: MoeConfig | null;
  /** RMSNorm epsilon. */
  normEps: number;
  /** RoPE base. */
  ropeTheta: number;
  /** Std of the normal initialisation. */
  initStd: number;
}

/**
 * Sizes of the named configs: LLaMA-like (head dim 32, GLU width ≈ 8/3·d), with every width a
 * multiple of 32 so Block Q-Sparse 16:32 applies at every site. Non-embedding parameters span
 * 25k (`xxs`) to 21M (`xl`).
 *
 * @example
 * ```ts
 * import { modelConfig, NAMED_SIZES } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * assert.equal(NAMED_SIZES.s!.dModel, 128);
 * assert.equal(modelConfig("s").nLayers, NAMED_SIZES.s!.nLayers);
 * assert.ok(Object.values(NAMED_SIZES).every((z) => z.dModel % 32 === 0 && z.dFF % 32 === 0));
 * ```
 */
export const NAMED_SIZES: Record<
  string,
  Pick<ModelConfig, "dModel" | "nLayers" | "nHeads" | "dFF">
> = {
  xxs: { dModel: 32, nLayers: 2, nHeads: 1, dFF: 96 },
  tiny: { dModel: 64, nLayers: 2, nHeads: 2, dFF: 160 },
  xs: { dModel: 96, nLayers: 3, nHeads: 3, dFF: 256 },
  s: { dModel: 128, nLayers: 4, nHeads: 4, dFF: 352 },
  m: { dModel: 192, nLayers: 6, nHeads: 6, dFF: 512 },
  l: { dModel: 256, nLayers: 8, nHeads: 8, dFF: 672 },
  xl: { dModel: 384, nLayers: 12, nHeads: 12, dFF: 1024 },
};

/**
 * Uniform sparsity at every site.
 *
 * @param s Sparsity S (fraction zeroed) for all four sites.
 * @returns The per-site record.
 *
 * @example
 * ```ts
 * import { uniformSparsity } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * assert.deepEqual(uniformSparsity(0.4), { qkv: 0.4, o: 0.4, gateUp: 0.4, down: 0.4 });
 * ```
 */
export function uniformSparsity(s: number): SiteSparsity {
  return { qkv: s, o: s, gateUp: s, down: s };
}

/** Options accepted by {@link modelConfig} on top of a named size. */
export type ModelOverrides = Partial<Omit<ModelConfig, "sparsity">> & {
  /** One S for every site, or per-site values (missing sites default to 0). */
  sparsity?: number | Partial<SiteSparsity>;
};

/**
 * A validated config from a named size plus overrides.
 *
 * @param name One of {@link NAMED_SIZES} (`tiny`, `xs`, `s`, `m`, `l`, `xl`), or one with an MoE
 *   suffix `-moe<E>x<k>` (see {@link NAMED_MOE_VARIANTS}).
 * @param overrides Any field; `sparsity` may be one number for all sites.
 * @returns The config.
 *
 * @example
 * ```ts
 * import { modelConfig } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * const c = modelConfig("s", { sparsity: 0.4 });
 * assert.equal(c.sparsity.down, 0.4);
 * assert.throws(() => modelConfig("nope"), /unknown model/);
 * assert.deepEqual(modelConfig("s-moe8x2").moe, { experts: 8, topK: 2 });
 * ```
 */
export function modelConfig(name: string, overrides: ModelOverrides = {}): ModelConfig {
  // `<size>-moe<E>x<k>`: a named size with a mixture-of-experts FFN.
  const variant = /^(.+)-moe(\d+)x(\d+)$/.exec(name);
  const size = NAMED_SIZES[variant ? variant[1]! : name];
  if (!size && overrides.dModel === undefined) {
    throw new ValueError(
      "modelConfig",
      `unknown model "${name}"; named configs: ${Object.keys(NAMED_SIZES).join(", ")}, ` +
        `each also as <name>-moe<E>x<k> (e.g. s-moe8x2)`,
    );
  }
  const moe = variant ? { experts: Number(variant[2]), topK: Number(variant[3]) } : null;
  const { sparsity, ...rest } = overrides;
  const sp = typeof sparsity === "number"
    ? uniformSparsity(sparsity)
    : { ...uniformSparsity(0), ...(sparsity ?? {}) };
  const cfg: ModelConfig = {
    name,
    vocab: 256,
    ...(size ?? { dModel: 64, nLayers: 2, nHeads: 2, dFF: 160 }),
    seqLen: 128,
    ffn: "relu2glu",
    sparsity: sp,
    block: null,
    sparsifier: "topk",
    ste: true,
    rescale: false,
    bitnet: false,
    moe,
    normEps: 1e-6,
    ropeTheta: 10000,
    initStd: 0.02,
    ...rest,
  };
  validateConfig(cfg);
  return cfg;
}

/**
 * K kept out of `width` at sparsity S: ⌊(1 − S)·width⌋, robust to float error (e.g. (1 − 0.6)·4096).
 *
 * @param s Sparsity S in [0, 1).
 * @param width Number of inputs.
 * @returns How many are kept.
 *
 * @example
 * ```ts
 * import { keptCount } from "./config.ts";
 * import assert from "node:assert/strict";
 * assert.equal(keptCount(0.6, 4096), 1638);
 * assert.equal(keptCount(0.5, 32), 16);
 * ```
 */
export function keptCount(s: number, width: number): number {
  return Math.floor((1 - s) * width + 1e-9);
}

/**
 * Throws a ValueError naming the field when a config cannot work.
 *
 * @param c The config.
 *
 * @example
 * ```ts
 * import { ValueError } from "@qsparse/kit";
 * import { modelConfig, validateConfig } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * const c = modelConfig("tiny");
 * validateConfig(c);
 * assert.throws(() => validateConfig({ ...c, nHeads: 3 }), ValueError); // 64 % 3 ≠ 0
 * assert.throws(() => validateConfig({ ...c, block: 48, sparsity: { ...c.sparsity, o: 0.5 } }));
 * ```
 */
export function validateConfig(c: ModelConfig): void {
  const bad = (msg: string) => {
    throw new ValueError("modelConfig", `${c.name}: ${msg}`);
  };
  for (const k of ["vocab", "dModel", "nLayers", "nHeads", "dFF", "seqLen"] as const) {
    if (!Number.isInteger(c[k]) || c[k] < 1) bad(`${k} must be a positive integer, got ${c[k]}`);
  }
  if (c.dModel % c.nHeads !== 0) bad(`dModel ${c.dModel} is not divisible by nHeads ${c.nHeads}`);
  if ((c.dModel / c.nHeads) % 2 !== 0) bad(`head dim ${c.dModel / c.nHeads} must be even for RoPE`);
  const widths: Record<Site, number> = {
    qkv: c.dModel,
    o: c.dModel,
    gateUp: c.dModel,
    down: c.dFF,
  };
  for (const site of SITES) {
    const s = c.sparsity[site];
    if (!(s >= 0 && s < 1)) bad(`sparsity S for ${site} must be in [0, 1), got ${s}`);
    if (s > 0 && c.sparsifier === "topk") {
      if (c.block !== null) {
        if (!Number.isInteger(c.block) || c.block < 1) {
          bad(`block must be a positive integer, got ${c.block}`);
        }
        if (widths[site] % c.block !== 0) {
          bad(`block ${c.block} does not divide the ${site} input width ${widths[site]}`);
        }
        if (keptCount(s, c.block) < 1) bad(`S=${s} keeps 0 of every ${c.block} at ${site}`);
      } else if (keptCount(s, widths[site]) < 1) {
        bad(`S=${s} keeps K=0 of ${widths[site]} inputs at ${site}`);
      }
    }
  }
  if (c.moe) {
    const { experts, topK } = c.moe;
    if (!Number.isInteger(experts) || experts < 1) bad(`moe.experts must be ≥ 1, got ${experts}`);
    if (!Number.isInteger(topK) || topK < 1 || topK > experts) {
      bad(`moe.topK must be in 1..experts (${experts}), got ${topK}`);
    }
    if (
      c.moe.capacityFactor !== undefined &&
      !(c.moe.capacityFactor > 0 && Number.isFinite(c.moe.capacityFactor))
    ) {
      bad(`moe.capacityFactor must be > 0, got ${c.moe.capacityFactor}`);
    }
    if (c.moe.normalizeGates !== undefined && typeof c.moe.normalizeGates !== "boolean") {
      bad(`moe.normalizeGates must be a boolean, got ${c.moe.normalizeGates}`);
    }
    for (const k of ["auxLossCoef", "zLossCoef"] as const) {
      const v = c.moe[k];
      if (v !== undefined && !(v >= 0 && Number.isFinite(v))) bad(`moe.${k} must be ≥ 0, got ${v}`);
    }
  }
}

/** Parameter counts of a config. */
export interface ParamCounts {
  /** Everything, embeddings and LM head included. */
  total: number;
  /** Embedding + LM head. */
  embedding: number;
  /** Total minus embedding (the N of the scaling law). */
  nonEmbedding: number;
  /** Linear weights per site, summed over layers (MoE experts: all of them). */
  perSite: Record<Site, number>;
  /** Router weights (MoE), counted dense. */
  router: number;
  /** Norm gains. */
  norms: number;
}

/**
 * Parameter counts of a config (without building it).
 *
 * @param c The config.
 * @returns The counts.
 *
 * @example
 * ```ts
 * import { modelConfig, paramCounts } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * const p = paramCounts(modelConfig("tiny"));
 * assert.equal(p.total, p.embedding + p.nonEmbedding);
 * ```
 */
export function paramCounts(c: ModelConfig): ParamCounts {
  const d = c.dModel, f = c.dFF, L = c.nLayers;
  const e = c.moe ? c.moe.experts : 1;
  const perSite: Record<Site, number> = {
    qkv: L * 3 * d * d,
    o: L * d * d,
    gateUp: L * e * 2 * d * f,
    down: L * e * f * d,
  };
  const router = c.moe ? L * d * c.moe.experts : 0;
  const norms = (2 * L + 1) * d;
  const embedding = 2 * c.vocab * d;
  const nonEmbedding = perSite.qkv + perSite.o + perSite.gateUp + perSite.down + router + norms;
  return { total: embedding + nonEmbedding, embedding, nonEmbedding, perSite, router, norms };
}
