/**
 * Parameter accounting from a config alone, and sizing of study arms to equal activated
 * parameters (docs/paper-notes.md §7): a dense model, a Q-Sparse model and an MoE (+ Q-Sparse)
 * model compared at the same N_a.
 *
 * `N_a = Σ_sites (1 − s_site)·|W_site| + router + norms` over non-embedding weights, with MoE
 * experts counted k/E before any intra-expert sparsity (docs/paper-notes.md §3.5, §7).
 *
 * @module
 */
import { ValueError } from "../core/errors.ts";
import {
  keptCount,
  type ModelConfig,
  modelConfig,
  type ModelOverrides,
  paramCounts,
  type Site,
  SITES,
  type SiteSparsity,
} from "./config.ts";

/** Parameter and FLOP accounting of a config at given per-site sparsities. */
export interface ActiveParams {
  /** Non-embedding parameters N (all experts). */
  N: number;
  /** All parameters, embedding and LM head included. */
  Ntotal: number;
  /** Activated non-embedding parameters per token. */
  Na: number;
  /** Activated attention projection weights (q, k, v, o). */
  NaAttention: number;
  /** Activated FFN weights (experts at k/E, router dense). */
  NaFfn: number;
  /** Parameter-weighted mean sparsity of the linear weights a token reaches. */
  overall: number;
  /**
   * Forward FLOPs per token at the config's context length: `2·(NaAttention + NaFfn)`, `2·d·V`
   * for the LM head and `2·L·d·(T + 1)` for causal attention scores and mixing.
   */
  flopsPerToken: number;
}

/**
 * N, N_a, FLOPs per token of a config at the given per-site input sparsities (measured or
 * nominal).
 *
 * @param c The config.
 * @param s Sparsity per site.
 * @returns The accounting.
 *
 * @example
 * ```ts
 * import { activeParams, modelConfig, uniformSparsity } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * const c = modelConfig("s");
 * const dense = activeParams(c, uniformSparsity(0)), half = activeParams(c, uniformSparsity(0.5));
 * assert.equal(dense.Na, dense.N);
 * assert.ok(Math.abs(half.NaAttention - dense.NaAttention / 2) < 1e-6);
 * ```
 */
export function activeParams(c: ModelConfig, s: SiteSparsity): ActiveParams {
  const counts = paramCounts(c);
  const share = c.moe ? c.moe.topK / c.moe.experts : 1;
  const w: Record<Site, number> = {
    qkv: counts.perSite.qkv,
    o: counts.perSite.o,
    gateUp: counts.perSite.gateUp * share,
    down: counts.perSite.down * share,
  };
  let total = 0, active = 0;
  for (const site of SITES) {
    total += w[site];
    active += (1 - s[site]) * w[site];
  }
  const attn = (1 - s.qkv) * w.qkv + (1 - s.o) * w.o;
  const ffn = active - attn + counts.router;
  const d = c.dModel;
  return {
    N: counts.nonEmbedding,
    Ntotal: counts.total,
    Na: active + counts.router + counts.norms,
    NaAttention: attn,
    NaFfn: ffn,
    overall: total > 0 ? 1 - active / total : 0,
    flopsPerToken: 2 * (attn + ffn) + 2 * d * c.vocab + 2 * c.nLayers * d * (c.seqLen + 1),
  };
}

/**
 * The sparsity each site has by construction: `1 − K/width` for top-K (K = ⌊(1 − S)·width⌋),
 * `1 − n/m` for N:M blocks, and 0 for the ReLU sparsifier (its sparsity depends on the data;
 * measure it). ReLU²'s extra natural sparsity at the down site is not counted either.
 *
 * @param c The config.
 * @returns Sparsity per site.
 *
 * @example
 * ```ts
 * import { modelConfig, nominalSparsity } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * const c = modelConfig("tiny", { sparsity: 0.6 });
 * assert.equal(nominalSparsity(c).qkv, 1 - Math.floor(0.4 * 64) / 64);
 * ```
 */
export function nominalSparsity(c: ModelConfig): SiteSparsity {
  const width: Record<Site, number> = { qkv: c.dModel, o: c.dModel, gateUp: c.dModel, down: c.dFF };
  const out = {} as SiteSparsity;
  for (const site of SITES) {
    const s = c.sparsity[site];
    if (!(s > 0) || c.sparsifier === "relu") out[site] = 0;
    else if (c.block !== null) out[site] = 1 - keptCount(s, c.block) / c.block;
    else out[site] = 1 - keptCount(s, width[site]) / width[site];
  }
  return out;
}

/**
 * Accounting of a config at its nominal sparsity (see {@link nominalSparsity}).
 *
 * @param c The config.
 * @returns The accounting.
 *
 * @example
 * ```ts
 * import { modelConfig, nominalActiveParams } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * const moe = nominalActiveParams(modelConfig("s-moe8x2"));
 * const dense = nominalActiveParams(modelConfig("s"));
 * assert.ok(moe.N > 3 * dense.N && Math.abs(moe.NaFfn / dense.NaFfn - 2) < 0.01);
 * ```
 */
export function nominalActiveParams(c: ModelConfig): ActiveParams {
  return activeParams(c, nominalSparsity(c));
}

/** One arm sized by {@link matchActiveParams}. */
export interface MatchedArm {
  /** The sized config. */
  config: ModelConfig;
  /** Its nominal accounting. */
  params: ActiveParams;
  /** `(N_a − target) / target`. */
  relError: number;
}

/** Options of {@link matchActiveParams}. */
export interface MatchOptions {
  /** Widest `dModel` searched, as a multiple of the base's (default 4). */
  maxScale?: number;
  /**
   * How far the FFN width may move from the base's ratio `dFF/dModel` to tighten the match
   * (default 0.25: ±25%).
   */
  ffnSlack?: number;
}

/**
 * Sizes study arms to the nominal N_a of a base config. Each arm is the base with overrides
 * (sparsity, MoE, FFN kind, ...); its width is searched with the base's depth, head dim and
 * FFN ratio (for MoE the ratio holds per expert), then the FFN width (a multiple of 8 and of the
 * arm's N:M block) is adjusted within `ffnSlack` to hit the target as closely as possible
 * (typically within 1%; N:M arms move in steps of the block and land within about 2%).
 *
 * @param base The reference (usually the dense arm) whose nominal N_a is the target.
 * @param arms Arm name → overrides on top of the base.
 * @param opts Search range.
 * @returns Arm name → sized config, its accounting and the relative N_a error.
 *
 * @example
 * ```ts
 * import { matchActiveParams, modelConfig } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * const arms = matchActiveParams(modelConfig("s"), {
 *   dense: {},
 *   qsparse: { sparsity: 0.5 },
 *   moe: { sparsity: 0.5, moe: { experts: 8, topK: 2 } },
 * });
 * for (const a of Object.values(arms)) assert.ok(Math.abs(a.relError) < 0.02);
 * assert.ok(arms.qsparse!.params.N > arms.dense!.params.N);
 * assert.ok(arms.moe!.params.N > arms.qsparse!.params.N);
 * ```
 */
export function matchActiveParams(
  base: ModelConfig,
  arms: Record<string, ModelOverrides>,
  opts: MatchOptions = {},
): Record<string, MatchedArm> {
  const op = "matchActiveParams";
  const target = nominalActiveParams(base).Na;
  const headDim = base.dModel / base.nHeads;
  const ratio = base.dFF / base.dModel;
  const maxScale = opts.maxScale ?? 4, slack = opts.ffnSlack ?? 0.25;
  const out: Record<string, MatchedArm> = {};
  for (const [name, o] of Object.entries(arms)) {
    const block = o.block ?? base.block ?? 1;
    // FFN widths are multiples of 8 and of the N:M block, model widths of the head dim and block.
    const step = lcm(8, block);
    const dStep = lcm(headDim, block);
    const build = (d: number, f: number): ModelConfig | null => {
      try {
        const { sparsity, ...rest } = o;
        return modelConfig(base.name, {
          ...base,
          ...rest,
          sparsity: sparsity ?? base.sparsity,
          name: `${base.name}:${name}`,
          dModel: d,
          nHeads: d / headDim,
          dFF: f,
        });
      } catch {
        return null; // e.g. S keeps K = 0 at this width
      }
    };
    let best: MatchedArm | null = null;
    const consider = (c: ModelConfig | null): number => {
      if (!c) return Infinity;
      const params = nominalActiveParams(c);
      const relError = (params.Na - target) / target;
      if (!best || Math.abs(relError) < Math.abs(best.relError)) {
        best = { config: c, params, relError };
      }
      return Math.abs(relError);
    };
    const widths: { d: number; err: number }[] = [];
    for (let d = dStep; d <= maxScale * base.dModel; d += dStep) {
      widths.push({
        d,
        err: consider(build(d, Math.max(step, Math.round((ratio * d) / step) * step))),
      });
    }
    if (!best) throw new ValueError(op, `no width of arm "${name}" gives a valid config`);
    // Refine the FFN width around the three closest model widths (coarse steps interleave).
    widths.sort((a, b) => a.err - b.err);
    for (const { d } of widths.slice(0, 3)) {
      const lo = Math.max(step, Math.floor(((1 - slack) * ratio * d) / step) * step);
      for (let f = lo; f <= (1 + slack) * ratio * d; f += step) consider(build(d, f));
    }
    out[name] = best;
  }
  return out;
}

function lcm(a: number, b: number): number {
  const gcd = (x: number, y: number): number => (y === 0 ? x : gcd(y, x % y));
  return (a / gcd(a, b)) * b;
}
