/**
 * Sparsity accounting: achieved input sparsity per projection site (measured from the masked
 * tensors the projections consume, so the ReLU² down-projection shows its extra natural
 * sparsity), overall sparsity as the parameter-weighted mean over linear weights, and activated
 * parameters N_a = Σ (1 − s)·|W| (docs/paper-notes.md §3.5).
 *
 * @module
 */
import { concat } from "../ops/layout.ts";
import type { Site } from "../nn/config.ts";
import { ExpertSite, MoeFeedForward } from "../nn/moe.ts";
import { activeParams } from "../nn/sizing.ts";
import type { SparseSite } from "../nn/sparsify.ts";
import type { TransformerLM } from "../nn/transformer.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { routerLayerStats, type RouterReport, routerReport } from "./router_stats.ts";

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
  /** All parameters, embedding and LM head included. */
  Ntotal: number;
  /** Activated attention projection weights (q, k, v, o). */
  NaAttention: number;
  /** Activated FFN weights (experts at k/E, router counted dense). */
  NaFfn: number;
  /**
   * Forward FLOPs per token at the config's context length: `2·N_a` over the linear weights
   * (sparse inputs skip their zero columns; norms excluded), `2·d·V` for the LM head and
   * `2·L·d·(T + 1)` for causal attention scores and mixing (averaged over positions).
   */
  flopsPerToken: number;
  /** Router statistics of the MoE layers (absent for a dense FFN). */
  routing?: RouterReport;
}

/**
 * Reads the sites' counters (one readback for all of them) and resets them. The readback is
 * issued and the counters reset before this returns; only the report waits for the device.
 *
 * @param model The model.
 * @returns The report, or null when nothing was counted.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { modelConfig, TransformerLM } from "@qsparse/kit/nn";
 * import { measureSparsity } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using m = new TransformerLM(dev, modelConfig("tiny", { sparsity: 0.5, seqLen: 8 }), 1);
 * m.forward(dev.tensor(new Uint32Array(16).fill(65), [2, 8]));
 * const r = (await measureSparsity(m))!;
 * assert.ok(Math.abs(r.perSite.qkv - 0.5) < 1e-9);
 * assert.ok(r.perSite.down >= 0.5);
 * ```
 */
export function measureSparsity(model: TransformerLM): Promise<SparsityReport | null> {
  // Everything on the device happens before the first await: the readbacks are issued and the
  // counters reset now, so a caller may run more steps before awaiting the report (the trainer
  // does, to keep its loop from waiting on the device) and those steps count in the next window.
  const all = model.sites();
  // A counter stays allocated after a reset; it counts in a window once a forward adds to it.
  const sites = all.filter((s) =>
    !(s instanceof ExpertSite) && s.counter.nonzeros !== null && s.counter.elements > 0
  );
  // MoE: per-expert site counters and router counters join the same readback.
  const expertSites = all.filter((s): s is ExpertSite =>
    s instanceof ExpertSite && s.expertNonzeros !== null && s.expertCounts > 0
  );
  const moes = model.layers.map((l) => l.ffn).filter((f): f is MoeFeedForward =>
    f instanceof MoeFeedForward && f.routerCounters !== null && f.routerCounts > 0
  );
  if (sites.length + expertSites.length + moes.length === 0) return Promise.resolve(null);
  const views = sites.map((s) => s.counter.nonzeros!.reshape([1]));
  const parts: Tensor<"u32">[] = [
    ...views,
    ...expertSites.flatMap((s) => [s.expertNonzeros!, s.expertElements!]),
    ...moes.map((m) => m.routerCounters!.counts),
  ];
  const joined = concat(parts);
  const wordsRead = joined.data();
  joined.dispose();
  views.forEach((v) => v.dispose());
  let massRead: Promise<Float32Array> = Promise.resolve(new Float32Array(0));
  if (moes.length) {
    const m = concat(moes.map((f) => f.routerCounters!.mass));
    massRead = m.data();
    m.dispose();
  }
  const elements = sites.map((s) => s.counter.elements);
  const experts = expertSites.map((s) => ({
    site: s.site,
    names: Array.from({ length: s.numExperts }, (_, x) => s.expertName(x)),
  }));
  const moeShapes = moes.map((m) => ({ path: m.path, experts: m.moe.experts, topK: m.moe.topK }));
  for (const s of all) s.resetCounter();
  for (const m of moes) m.resetRouterCounters();
  return Promise.all([wordsRead, massRead]).then(([words, mass]) => {
    const reports: SiteSparsityReport[] = sites.map((s, i) => ({
      name: s.name,
      site: s.site,
      sparsity: elements[i]! > 0 ? 1 - words[i]! / elements[i]! : 0,
      elements: elements[i]!,
    }));
    let at = sites.length;
    for (const s of experts) {
      const e = s.names.length;
      for (let x = 0; x < e; x++) {
        const nz = words[at + x]!, el = words[at + e + x]!;
        reports.push({
          name: s.names[x]!,
          site: s.site,
          sparsity: el > 0 ? 1 - nz / el : 0,
          elements: el,
        });
      }
      at += 2 * e;
    }
    let massAt = 0;
    const layers = moeShapes.map((m) => {
      const e = m.experts;
      const st = routerLayerStats(
        m.path,
        m.topK,
        words.subarray(at, at + 2 * e + 2),
        mass.subarray(massAt, massAt + e + 1),
      );
      at += 2 * e + 2;
      massAt += e + 1;
      return st;
    });
    const report = summarize(model, reports);
    if (layers.length) report.routing = routerReport(layers);
    return report;
  });
}

/**
 * Turns per-site measurements into per-kind means, overall sparsity and N_a.
 *
 * @param model The model (its config sizes the parameter counts).
 * @param sites Per-site measurements, e.g. from a previous report or another run.
 * @returns The report (without router statistics).
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { modelConfig, paramCounts, TransformerLM } from "@qsparse/kit/nn";
 * import { summarize } from "./accounting.ts";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using m = new TransformerLM(dev, modelConfig("xxs"), 1);
 * const r = summarize(m, [
 *   { name: "layers.0.attn.qkv", site: "qkv", sparsity: 0.5, elements: 100 },
 *   { name: "layers.1.attn.qkv", site: "qkv", sparsity: 0.25, elements: 300 },
 * ]);
 * assert.equal(r.perSite.qkv, 0.3125); // element-weighted
 * assert.equal(r.perSite.down, 0); // not measured
 * assert.equal(r.N, paramCounts(m.config).nonEmbedding);
 * assert.ok(r.Na < r.N);
 * ```
 */
export function summarize(model: TransformerLM, sites: SiteSparsityReport[]): SparsityReport {
  const c = model.config;
  const perSite = { qkv: 0, o: 0, gateUp: 0, down: 0 } as Record<Site, number>;
  for (const kind of Object.keys(perSite) as Site[]) {
    const xs = sites.filter((s) => s.site === kind);
    const el = xs.reduce((a, s) => a + s.elements, 0);
    perSite[kind] = el > 0 ? xs.reduce((a, s) => a + s.sparsity * s.elements, 0) / el : 0;
  }
  // Experts count k/E of their weights before intra-expert sparsity (src/nn/sizing.ts).
  const a = activeParams(c, perSite);
  return {
    sites,
    perSite,
    overall: a.overall,
    N: a.N,
    Na: a.Na,
    Ntotal: a.Ntotal,
    NaAttention: a.NaAttention,
    NaFfn: a.NaFfn,
    flopsPerToken: a.flopsPerToken,
  };
}

/**
 * Switches counting on or off at every site (off saves a reduction per site per step).
 *
 * @param sites The sites.
 * @param on Whether to count.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { modelConfig, TransformerLM } from "@qsparse/kit/nn";
 * import { setCounting } from "./accounting.ts";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using m = new TransformerLM(dev, modelConfig("xxs", { sparsity: 0.5 }), 1);
 * setCounting(m.sites(), false);
 * assert.ok(m.sites().every((s) => !s.countEnabled));
 * ```
 */
export function setCounting(sites: SparseSite[], on: boolean): void {
  for (const s of sites) s.countEnabled = on;
}
