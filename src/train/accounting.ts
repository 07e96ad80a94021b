/**
 * Sparsity accounting: achieved input sparsity per projection site (measured from the masked
 * tensors the projections consume, so the ReLU² down-projection shows its extra natural
 * sparsity), overall sparsity as the parameter-weighted mean over linear weights, and activated
 * parameters N_a = Σ (1 − s)·|W| (qsparse.md §3.5).
 *
 * @module
 */
import { concat } from "../ops/layout.ts";
import type { Site } from "../nn/config.ts";
import { paramCounts } from "../nn/config.ts";
import type { SparseSite } from "../nn/sparsify.ts";
import type { TransformerLM } from "../nn/transformer.ts";

/** Achieved sparsity of one site, measured over the forwards since the last reset. */
export interface SiteSparsityReport {
  /** Dotted site name, e.g. `layers.0.attn.qkv`. */
  name: string;
  /** Which site. */
  site: Site;
  /** Fraction of zeros in the projection input. */
  sparsity: number;
  /** Elements counted. */
  elements: number;
}

/** The accounting of one model over one measurement window. */
export interface SparsityReport {
  /** Every site. */
  sites: SiteSparsityReport[];
  /** Element-weighted mean per site kind (qkv, o, gateUp, down) across layers. */
  perSite: Record<Site, number>;
  /** Parameter-weighted mean over linear weights (the paper's overall sparsity). */
  overall: number;
  /** Non-embedding parameters N. */
  N: number;
  /** Activated non-embedding parameters per token N_a. */
  Na: number;
}

/**
 * Reads the sites' counters (one readback for all of them) and resets them.
 *
 * @param model The model.
 * @returns The report, or null when nothing was counted.
 *
 * @example
 * ```ts
 * import { measureSparsity, modelConfig, openDevice, TransformerLM } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using m = new TransformerLM(dev, modelConfig("tiny", { sparsity: 0.5, seqLen: 8 }), 1);
 * m.forward(dev.tensor(new Uint32Array(16).fill(65), [2, 8]));
 * const r = (await measureSparsity(m))!;
 * assert.ok(Math.abs(r.perSite.qkv - 0.5) < 1e-9);
 * assert.ok(r.perSite.down >= 0.5);
 * ```
 */
export async function measureSparsity(model: TransformerLM): Promise<SparsityReport | null> {
  const sites = model.sites().filter((s) => s.counter.nonzeros !== null);
  if (sites.length === 0) return null;
  const all = concat(sites.map((s) => s.counter.nonzeros!.reshape([1])));
  const nz = await all.data();
  all.dispose();
  const reports: SiteSparsityReport[] = sites.map((s, i) => ({
    name: s.name,
    site: s.site,
    sparsity: s.counter.elements > 0 ? 1 - nz[i]! / s.counter.elements : 0,
    elements: s.counter.elements,
  }));
  for (const s of sites) s.resetCounter();
  return summarize(model, reports);
}

/** Turns per-site measurements into per-kind means, overall sparsity and N_a. */
export function summarize(model: TransformerLM, sites: SiteSparsityReport[]): SparsityReport {
  const c = model.config;
  const counts = paramCounts(c);
  const perSite = { qkv: 0, o: 0, gateUp: 0, down: 0 } as Record<Site, number>;
  for (const kind of Object.keys(perSite) as Site[]) {
    const xs = sites.filter((s) => s.site === kind);
    const el = xs.reduce((a, s) => a + s.elements, 0);
    perSite[kind] = el > 0 ? xs.reduce((a, s) => a + s.sparsity * s.elements, 0) / el : 0;
  }
  // Weights each site feeds; MoE experts count k/E of their weights before intra-expert sparsity.
  const expertShare = c.moe ? c.moe.topK / c.moe.experts : 1;
  const weights: Record<Site, number> = {
    qkv: counts.perSite.qkv,
    o: counts.perSite.o,
    gateUp: counts.perSite.gateUp * expertShare,
    down: counts.perSite.down * expertShare,
  };
  let total = 0, active = 0;
  for (const kind of Object.keys(weights) as Site[]) {
    total += weights[kind];
    active += (1 - perSite[kind]) * weights[kind];
  }
  const overall = total > 0 ? 1 - active / total : 0;
  return {
    sites,
    perSite,
    overall,
    N: counts.nonEmbedding,
    Na: active + counts.router + counts.norms,
  };
}

/**
 * Switches counting on or off at every site (off saves a reduction per site per step).
 *
 * @param sites The sites.
 * @param on Whether to count.
 */
export function setCounting(sites: SparseSite[], on: boolean): void {
  for (const s of sites) s.countEnabled = on;
}
