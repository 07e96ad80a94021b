/**
 * The MoE-with-sparsity study's arms (docs/paper-notes.md §7): at equal activated parameters N_a,
 * (a) dense, (b) Q-Sparse at S = 0.5 with N ≈ 2·N_a, (c) MoE 4 experts top-1, (d) MoE 4×1 with
 * Q-Sparse inside the experts and on attention; and at equal total parameters as MoE 4×1,
 * (e) Q-Sparse with S chosen so its N_a matches too and (f) the dense model of that size (the
 * compute-rich reference). Widths come from {@link matchActiveParams}.
 *
 * @module
 */
import type { ModelConfig, ModelOverrides } from "../src/nn/config.ts";
import { modelConfig } from "../src/nn/config.ts";
import { activeParams, matchActiveParams, nominalSparsity } from "../src/nn/sizing.ts";

/** One arm of the MoE study. */
export interface MoeArm {
  /** Arm name (run ids and plot labels). */
  name: string;
  /** The sized model. */
  config: ModelConfig;
  /** Nominal non-embedding parameters. */
  N: number;
  /** Nominal activated parameters. */
  Na: number;
  /** Which comparison it belongs to. */
  group: "equal-Na" | "equal-total";
}

/**
 * Sizes the arms around a base size.
 *
 * @param base Named size of the dense arm (its N_a is the target), e.g. `"tiny"`.
 * @param overrides Applied to every arm (sequence length...).
 * @returns The arms.
 *
 * @example
 * ```ts
 * import { moeStudyArms } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const arms = moeStudyArms("tiny");
 * const na = arms.map((a) => a.Na);
 * assert.ok(Math.max(...na) / Math.min(...na.slice(0, 5)) < 4); // eq-total dense is the exception
 * assert.ok(arms.find((a) => a.name === "moe4x1")!.N > arms.find((a) => a.name === "dense")!.N);
 * ```
 */
export function moeStudyArms(base: string, overrides: ModelOverrides = {}): MoeArm[] {
  const b = modelConfig(base, overrides);
  const moe = { experts: 4, topK: 1 };
  const eq = matchActiveParams(b, {
    dense: {},
    qsparse: { sparsity: 0.5 },
    moe4x1: { moe },
    "moe4x1-qsparse": { sparsity: 0.5, moe },
  });
  const arms: MoeArm[] = Object.entries(eq).map(([name, a]) => ({
    name,
    config: { ...a.config, name: `${base}-${name}` },
    N: a.params.N,
    Na: a.params.Na,
    group: "equal-Na" as const,
  }));
  // Equal total parameters with MoE 4×1: the Q-Sparse S whose matched width lands nearest it.
  const target = eq.moe4x1!.params.N;
  let best: { s: number; cfg: ModelConfig; N: number } | null = null;
  for (let s = 0.5; s <= 0.86; s += 0.02) {
    const q = matchActiveParams(b, { q: { sparsity: Number(s.toFixed(2)) } }).q!;
    if (!best || Math.abs(q.params.N - target) < Math.abs(best.N - target)) {
      best = { s: Number(s.toFixed(2)), cfg: q.config, N: q.params.N };
    }
  }
  const qe = best!.cfg;
  arms.push({
    name: `qsparse-eqtotal`,
    config: { ...qe, name: `${base}-qsparse-eqtotal` },
    N: best!.N,
    Na: activeParams(qe, nominalSparsity(qe)).Na,
    group: "equal-total",
  });
  const de: ModelConfig = {
    ...qe,
    name: `${base}-dense-eqtotal`,
    sparsity: { qkv: 0, o: 0, gateUp: 0, down: 0 },
  };
  const dp = activeParams(de, nominalSparsity(de));
  arms.push({ name: "dense-eqtotal", config: de, N: dp.N, Na: dp.Na, group: "equal-total" });
  return arms;
}
