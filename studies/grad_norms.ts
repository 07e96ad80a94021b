/**
 * Gradient norms per layer and projection, the paper's Fig. 2: without the straight-through
 * estimator the gradients of the bottom layers shrink, with it they track the dense model.
 *
 * @module
 */
import { Figure, type PlotlyTrace } from "../src/plot/figure.ts";
import type { Finding } from "./findings.ts";
import { comparisonFinding } from "./findings.ts";
import type { RunGroup } from "./report.ts";

/** Mean gradient norm per layer for each projection kind of one arm. */
export interface GradNormProfile {
  /** Arm label (e.g. the `variant` tag). */
  label: string;
  /** Projection kind (`q_proj`, ..., `down_proj`) → norm per layer, bottom first. */
  byProjection: Record<string, number[]>;
}

/**
 * Collects the logged gradient norms (`RunRecord.gradNorms`) of each group, averaged over its
 * runs, as per-layer profiles.
 *
 * @param groups Run groups (e.g. the ablation's variants).
 * @param label Names a group.
 * @returns One profile per group that logged gradient norms.
 *
 * @example
 * ```ts
 * import { gradNormProfiles, type RunGroup } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const g = { tags: { variant: "ste" }, records: [{ gradNorms: { "layers.0.attn.q_proj": 2, "layers.1.attn.q_proj": 4 } }] } as unknown as RunGroup;
 * const [p] = gradNormProfiles([g], (x) => String(x.tags.variant));
 * assert.deepEqual(p!.byProjection.q_proj, [2, 4]);
 * ```
 */
export function gradNormProfiles(
  groups: readonly RunGroup[],
  label: (g: RunGroup) => string,
): GradNormProfile[] {
  const out: GradNormProfile[] = [];
  for (const g of groups) {
    const recs = g.records.filter((r) => r.gradNorms);
    if (!recs.length) continue;
    const acc: Record<string, number[][]> = {};
    for (const r of recs) {
      for (const [name, v] of Object.entries(r.gradNorms!)) {
        const m = /^layers\.(\d+)\.(?:attn|ffn)\.(\w+_proj)$/.exec(name);
        if (!m) continue;
        const layer = Number(m[1]), proj = m[2]!;
        ((acc[proj] ??= [])[layer] ??= []).push(v);
      }
    }
    const byProjection: Record<string, number[]> = {};
    for (const [proj, layers] of Object.entries(acc)) {
      byProjection[proj] = layers.map((vs) => vs.reduce((a, b) => a + b, 0) / vs.length);
    }
    out.push({ label: label(g), byProjection });
  }
  return out;
}

/**
 * Gradient norm against layer, one panel-like line group per projection kind, one colour per arm.
 *
 * @param profiles From {@link gradNormProfiles}.
 * @param title Figure title.
 * @returns The figure.
 *
 * @example
 * ```ts
 * import { gradNormFigure } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const fig = gradNormFigure([{ label: "ste", byProjection: { q_proj: [1, 2] } }]);
 * assert.equal(fig.data.length, 1);
 * ```
 */
export function gradNormFigure(
  profiles: readonly GradNormProfile[],
  title = "Gradient norm per layer and projection",
): Figure {
  const projs = [...new Set(profiles.flatMap((p) => Object.keys(p.byProjection)))];
  const dashes = ["solid", "dash", "dot", "dashdot", "longdash", "longdashdot", "5px,2px"];
  const data: PlotlyTrace[] = [];
  profiles.forEach((p, i) => {
    const color = `hsl(${(i * 360) / Math.max(1, profiles.length)}, 65%, 45%)`;
    projs.forEach((proj, j) => {
      const ys = p.byProjection[proj];
      if (!ys) return;
      data.push({
        type: "scatter",
        mode: "lines+markers",
        name: `${p.label} · ${proj}`,
        legendgroup: p.label,
        x: ys.map((_, l) => l),
        y: ys,
        line: { color, dash: dashes[j % dashes.length] },
      });
    });
  });
  return new Figure(data, {
    title: { text: title },
    xaxis: { title: { text: "layer" }, dtick: 1 },
    yaxis: { title: { text: "gradient L2 norm (mean over log windows)" }, type: "log" },
  });
}

/**
 * The paper's Fig. 2 claim as a finding: without STE the bottom layer's gradients are smaller
 * than with it. Measured as log(norm with STE / norm without) at layer 0, mean over projections.
 *
 * @param ste Profile of the STE arm.
 * @param noSte Profile of the arm without STE.
 * @returns The finding.
 *
 * @example
 * ```ts
 * import { steGradientFinding } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const f = steGradientFinding(
 *   { label: "ste", byProjection: { q_proj: [1, 1], o_proj: [2, 2] } },
 *   { label: "no", byProjection: { q_proj: [0.2, 0.9], o_proj: [0.5, 1.8] } },
 * );
 * assert.equal(f.verdict, "reproduced");
 * ```
 */
export function steGradientFinding(
  ste: GradNormProfile | undefined,
  noSte: GradNormProfile | undefined,
): Finding {
  const base = {
    id: "ste-gradients",
    claim: "Without STE the gradients of the bottom layers shrink",
    paper: "Fig. 2 (300M, top-K 50%): gradient norms in the bottom layers much smaller without STE",
  };
  if (!ste || !noSte) {
    return {
      ...base,
      measured: "gradient norms not logged for both arms",
      verdict: "inconclusive",
    };
  }
  const ratios = Object.keys(ste.byProjection)
    .filter((p) => noSte.byProjection[p]?.[0] && ste.byProjection[p]?.[0])
    .map((p) => Math.log(ste.byProjection[p]![0]! / noSte.byProjection[p]![0]!));
  if (!ratios.length) {
    return { ...base, measured: "no common projections", verdict: "inconclusive" };
  }
  const mean = ratios.reduce((a, b) => a + b, 0) / ratios.length;
  const sd = Math.sqrt(
    ratios.reduce((a, b) => a + (b - mean) ** 2, 0) / Math.max(1, ratios.length - 1),
  );
  return comparisonFinding({
    ...base,
    label: "log(‖g‖ with STE / ‖g‖ without), layer 0, mean over projections",
    estimate: {
      value: mean,
      se: sd / Math.sqrt(ratios.length),
      ...(ratios.length > 1 ? { df: ratios.length - 1 } : {}),
    },
    expect: "above",
    threshold: 0,
    unit: "",
    note: "norms averaged over the run's log windows; spread over projections as the error",
  });
}
