/**
 * Chunk-level sparsity (BlockFFN's CLS): for each projection site, the fraction of its weight
 * rows that no token of a chunk of consecutive tokens needs — the input columns (W is stored
 * `[in, out]`, so a column of the input is a row of the weights) that are zero in every token of
 * the chunk. This is what decides the weight I/O of batched or speculative decoding: per-token
 * top-K keeps few columns per token, but the union over 8 or 64 tokens may touch most of them.
 *
 * For an MoE site the weights are counted per expert: a row of expert e is untouched when no
 * token of the chunk is routed to e, or when no routed token keeps that column. The router is
 * dense and counted as always loaded.
 *
 * Measured on one probe forward (no gradient, counters untouched), from the masks the sites
 * actually produce.
 *
 * @module
 */
import { noGrad } from "../autograd/tape.ts";
import { meanAll } from "../ops/reduce.ts";
import { concat } from "../ops/layout.ts";
import { chunkUnion, type MoeGrouping } from "../ops/moe.ts";
import type { Site } from "../nn/config.ts";
import { ExpertSite, MoeFeedForward } from "../nn/moe.ts";
import type { SparseSite } from "../nn/sparsify.ts";
import type { TransformerLM } from "../nn/transformer.ts";
import { ShapeError, ValueError } from "../core/errors.ts";
import { keep, scope } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";

/**
 * Chunk sizes reported by default (tokens).
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { modelConfig, TransformerLM } from "@qsparse/kit/nn";
 * import { DEFAULT_CHUNK_SIZES, measureChunkSparsity } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * assert.deepEqual(DEFAULT_CHUNK_SIZES, [8, 64]);
 * using dev = await openDevice({ prefer: "cpu" });
 * using m = new TransformerLM(dev, modelConfig("xxs", { sparsity: 0.5, seqLen: 64 }), 1);
 * using ids = dev.tensor(new Uint32Array(64).map((_, i) => (i * 37) % 256), [1, 64], "u32");
 * const r = await measureChunkSparsity(m, ids); // chunk sizes default to DEFAULT_CHUNK_SIZES
 * assert.deepEqual(r.chunkSizes, [...DEFAULT_CHUNK_SIZES]);
 * ```
 */
export const DEFAULT_CHUNK_SIZES: readonly number[] = [8, 64];

/** Chunk-level sparsity of one site. */
export interface ChunkSiteSparsity {
  /** Dotted site name, e.g. `layers.0.attn.qkv` or `layers.0.ffn.gate_up` (all experts). */
  name: string;
  /** Which site. */
  site: Site;
  /** Experts behind the site (1 for a dense one). */
  experts: number;
  /** Weights the site's input feeds (all experts). */
  weights: number;
  /** Untouched fraction of those weights, one per chunk size. */
  sparsity: number[];
}

/** Chunk-level sparsity of a model on one probe batch. */
export interface ChunkSparsityReport {
  /** Chunk sizes in tokens. */
  chunkSizes: number[];
  /** Every site. */
  sites: ChunkSiteSparsity[];
  /** Weight-weighted mean per site kind, one per chunk size. */
  perSite: Record<Site, number[]>;
  /** Untouched fraction of all non-embedding linear weights (router included, always loaded). */
  overall: number[];
  /** Weights a chunk loads: Σ (1 − s)·|W| + router, one per chunk size. */
  loadedWeights: number[];
  /** Tokens in the probe. */
  tokens: number;
}

/** Weights of one site of one layer. */
function siteWeights(model: TransformerLM, s: SparseSite): number {
  const c = model.config, d = c.dModel, f = c.dFF;
  const e = s instanceof ExpertSite ? s.numExperts : 1;
  switch (s.site) {
    case "qkv":
      return 3 * d * d;
    case "o":
      return d * d;
    case "gateUp":
      return 2 * d * f * e;
    case "down":
      return f * d * e;
  }
}

/**
 * Measures chunk-level sparsity on one batch: one forward without gradient, every site's mask
 * reduced to the union over each chunk of consecutive tokens (chunks never span sequences).
 *
 * @param model The model.
 * @param ids Probe tokens `[B, T]` (u32).
 * @param chunkSizes Chunk sizes in tokens (default 8 and 64).
 * @returns The report.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { modelConfig, TransformerLM } from "@qsparse/kit/nn";
 * import { measureChunkSparsity } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using m = new TransformerLM(dev, modelConfig("tiny", { sparsity: 0.75, seqLen: 16 }), 1);
 * using ids = dev.tensor(new Uint32Array(32).map((_, i) => (i * 37) % 256), [2, 16], "u32");
 * const r = await measureChunkSparsity(m, ids, [1, 8]);
 * assert.ok(Math.abs(r.perSite.qkv[0]! - 0.75) < 1e-9); // one token: exactly S
 * assert.ok(r.perSite.qkv[1]! < r.perSite.qkv[0]!); // the union over 8 tokens touches more
 * ```
 */
export async function measureChunkSparsity(
  model: TransformerLM,
  ids: Tensor<"u32">,
  chunkSizes: readonly number[] = DEFAULT_CHUNK_SIZES,
): Promise<ChunkSparsityReport> {
  const op = "measureChunkSparsity";
  if (ids.rank !== 2) throw ShapeError.mismatch(op, [ids.shape], "ids must be [B, T]");
  if (chunkSizes.length === 0 || chunkSizes.some((c) => !Number.isInteger(c) || c < 1)) {
    throw new ValueError(op, `chunk sizes must be integers ≥ 1, got [${chunkSizes.join(", ")}]`);
  }
  const seqLen = ids.shape[1]!;
  const sites = model.sites();
  const moes = model.layers.map((l) => l.ffn).filter((f): f is MoeFeedForward =>
    f instanceof MoeFeedForward
  );
  const counting = sites.map((s) => s.countEnabled);
  const stats = moes.map((m) => m.statsEnabled);
  // used[i][j]: mean column usage of site i at chunk size j (a device scalar).
  const used: Tensor<"f32">[][] = sites.map(() => []);
  const union = (h: Tensor<"f32">, i: number, g: MoeGrouping | null) => {
    for (const c of chunkSizes) {
      used[i]!.push(keep(meanAll(chunkUnion(h, g, { chunk: c, seqLen }))));
    }
  };
  sites.forEach((s, i) => {
    s.countEnabled = false;
    if (s instanceof ExpertSite) s.groupedObserver = (h, g) => union(h, i, g);
    else s.observer = (h) => union(h.reshape([-1, h.shape[h.rank - 1]!]), i, null);
  });
  moes.forEach((m) => (m.statsEnabled = false));
  try {
    noGrad(() => scope(() => void model.forward(ids)));
  } finally {
    sites.forEach((s, i) => {
      s.countEnabled = counting[i]!;
      s.observer = null;
      if (s instanceof ExpertSite) s.groupedObserver = null;
    });
    moes.forEach((m, i) => (m.statsEnabled = stats[i]!));
  }
  const flat = used.flat();
  let values: Float32Array = new Float32Array(0);
  if (flat.length) {
    const views = flat.map((t) => t.reshape([1]));
    const all = concat(views);
    values = await all.data();
    all.dispose();
    views.forEach((t) => t.dispose());
    flat.forEach((t) => t.dispose());
  }
  const report: ChunkSiteSparsity[] = [];
  sites.forEach((s, i) => {
    if (used[i]!.length === 0) return;
    const at = flat.indexOf(used[i]![0]!);
    report.push({
      name: s.name,
      site: s.site,
      experts: s instanceof ExpertSite ? s.numExperts : 1,
      weights: siteWeights(model, s),
      sparsity: chunkSizes.map((_, j) => 1 - values[at + j]!),
    });
  });
  const kinds: Site[] = ["qkv", "o", "gateUp", "down"];
  const perSite = {} as Record<Site, number[]>;
  for (const kind of kinds) {
    const xs = report.filter((r) => r.site === kind);
    const w = xs.reduce((a, r) => a + r.weights, 0);
    perSite[kind] = chunkSizes.map((_, j) =>
      w > 0 ? xs.reduce((a, r) => a + r.sparsity[j]! * r.weights, 0) / w : 0
    );
  }
  const router = moes.reduce((a, m) => a + model.config.dModel * m.moe.experts, 0);
  const total = report.reduce((a, r) => a + r.weights, 0) + router;
  const loadedWeights = chunkSizes.map((_, j) =>
    report.reduce((a, r) => a + (1 - r.sparsity[j]!) * r.weights, 0) + router
  );
  return {
    chunkSizes: [...chunkSizes],
    sites: report,
    perSite,
    overall: loadedWeights.map((l) => (total > 0 ? 1 - l / total : 0)),
    loadedWeights,
    tokens: ids.size,
  };
}
