/**
 * Plot inputs from grouped runs: the series the figure builders of src/plot take (loss curves,
 * sweep points, gaps, sparsity per projection and over training, bars with error bars), averaged
 * over seeds, so notebook cells stay one line per figure.
 *
 * @module
 */
import type { EstimateBar } from "../src/plot/estimates.ts";
import type { SweepPoint } from "../src/plot/scaling.ts";
import type {
  ChunkSparsityCurve,
  ProjectionSparsity,
  SparsityCurve,
} from "../src/plot/sparsity.ts";
import type { LossCurve } from "../src/plot/training.ts";
import { contrast, type DenseGap, type RunGroup } from "./report.ts";
import {
  type IsoLossGrid,
  isoLossGrid,
  optimalSparsity,
  type ScalingLawParams,
} from "../src/train/scaling_law.ts";

/** Options of {@link lossCurvesOf}. */
export interface CurveOptions {
  /** x axis: optimizer `"step"` (default) or `"tokens"` trained. */
  x?: "step" | "tokens";
  /** Added to x per group, e.g. the tokens of the pretraining a run continues from. */
  offset?: (g: RunGroup) => number;
}

/** Mean of `ys[i]` over the runs that have index i (runs of one group share their schedule). */
function meanByIndex<T>(runs: readonly T[][], y: (t: T) => number): number[] {
  const n = Math.min(...runs.map((r) => r.length));
  return Array.from({ length: n }, (_, i) => runs.reduce((s, r) => s + y(r[i]!), 0) / runs.length);
}

/**
 * Training and validation loss curves of groups, averaged over seeds.
 *
 * @param groups Groups from `groupRuns`.
 * @param name Legend label of a group.
 * @param opts x axis and offset.
 * @returns `{ train, validation }` for `lossCurves(train, { validation })`.
 *
 * @example
 * ```ts
 * import { lossCurvesOf, type RunGroup } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const rec = (l: number) => ({ curve: [{ step: 1, tokens: 8, loss: l }], evals: [{ step: 1, tokens: 8, valLoss: l, valStderr: 0 }] });
 * const g = { tags: { S: 0.5 }, records: [rec(3), rec(5)] } as unknown as RunGroup;
 * const { train } = lossCurvesOf([g], (g) => `S = ${g.tags.S}`);
 * assert.deepEqual(train[0], { name: "S = 0.5", steps: [1], loss: [4] });
 * ```
 */
export function lossCurvesOf(
  groups: readonly RunGroup[],
  name: (g: RunGroup) => string,
  opts: CurveOptions = {},
): { train: LossCurve[]; validation: LossCurve[] } {
  const key = opts.x ?? "step";
  const train: LossCurve[] = [], validation: LossCurve[] = [];
  for (const g of groups) {
    const off = opts.offset?.(g) ?? 0;
    const curves = g.records.map((r) => r.curve ?? []);
    const evals = g.records.map((r) => r.evals ?? []);
    const first = curves[0] ?? [], firstEval = evals[0] ?? [];
    if (first.length) {
      train.push({
        name: name(g),
        steps: meanByIndex(curves, (c) => c[key]).map((x) => x + off),
        loss: meanByIndex(curves, (c) => c.loss),
      });
    }
    if (firstEval.length) {
      validation.push({
        name: name(g),
        steps: meanByIndex(evals, (e) => e[key]).map((x) => x + off),
        loss: meanByIndex(evals, (e) => e.valLoss),
      });
    }
  }
  return { train, validation };
}

/**
 * Sweep points `{ N, S, loss, error }` of groups (mean over seeds, error = one seed-level standard
 * error; S is the nominal `S` tag), for `lossVsSparsity` and `lossVsN`. Groups without a numeric
 * `S` tag are left out.
 *
 * @param groups Groups from `groupRuns`.
 * @returns The points.
 *
 * @example
 * ```ts
 * import { type RunGroup, sweepPointsOf } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const g = { tags: { S: 0.5 }, N: 1e5, loss: { mean: 3, se: 0.01, n: 2 } } as unknown as RunGroup;
 * assert.deepEqual(sweepPointsOf([g]), [{ N: 1e5, S: 0.5, loss: 3, error: 0.01 }]);
 * ```
 */
export function sweepPointsOf(groups: readonly RunGroup[]): SweepPoint[] {
  return groups.filter((g) => typeof g.tags.S === "number")
    .map((g) => ({
      N: g.N,
      S: g.tags.S as number,
      loss: g.loss.mean,
      ...(Number.isFinite(g.loss.se) ? { error: g.loss.se } : {}),
    }));
}

/**
 * Gaps to dense as sweep points (`loss` = the gap, `error` = its standard error, within seed
 * where the seeds pair), for `lossVsSparsity(..., { yTitle })`.
 *
 * @param gaps From `gapsToDense`.
 * @returns The points.
 *
 * @example
 * ```ts
 * import { type DenseGap, gapPointsOf } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const gap = { N: 1e5, S: 0.5, gap: 0.02, se: 0.005 } as unknown as DenseGap;
 * assert.deepEqual(gapPointsOf([gap]), [{ N: 1e5, S: 0.5, loss: 0.02, error: 0.005 }]);
 * ```
 */
export function gapPointsOf(gaps: readonly DenseGap[]): SweepPoint[] {
  return gaps.map((g) => ({
    N: g.N,
    S: g.S,
    loss: g.gap,
    ...(Number.isFinite(g.se) ? { error: g.se } : {}),
  }));
}

/** Site kinds in forward order, with the labels figures use. */
const SITE_LABELS: [string, string][] = [
  ["qkv", "qkv"],
  ["o", "o"],
  ["gateUp", "gate/up"],
  ["down", "down"],
];

/**
 * Measured input sparsity per projection site of each group, for `projectionSparsity`. MoE
 * groups report extra site kinds (e.g. per expert); those present are appended after the four
 * standard ones.
 *
 * @param groups Groups from `groupRuns`.
 * @param name Legend label of a group.
 * @returns One series per group that measured sparsity.
 *
 * @example
 * ```ts
 * import { projectionSparsityOf, type RunGroup } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const g = { tags: {}, perSite: { qkv: 0.3, o: 0.3, gateUp: 0.3, down: 0.75 } } as unknown as RunGroup;
 * assert.deepEqual(projectionSparsityOf([g], () => "S = 0.3")[0]!.sparsity, [0.3, 0.3, 0.3, 0.75]);
 * ```
 */
export function projectionSparsityOf(
  groups: readonly RunGroup[],
  name: (g: RunGroup) => string,
): ProjectionSparsity[] {
  return groups.filter((g) => Object.keys(g.perSite).length).map((g) => {
    const known = SITE_LABELS.filter(([k]) => k in g.perSite);
    const extra = Object.keys(g.perSite).filter((k) => !SITE_LABELS.some(([s]) => s === k));
    return {
      name: name(g),
      projections: [...known.map(([, label]) => label), ...extra],
      sparsity: [...known.map(([k]) => g.perSite[k]!), ...extra.map((k) => g.perSite[k]!)],
    };
  });
}

/**
 * Measured sparsity over training (overall, or one site kind) of each group's first run.
 *
 * @param groups Groups from `groupRuns`.
 * @param name Legend label of a group.
 * @param site A site kind, or omitted for overall.
 * @returns One curve per group that logged sparsity.
 *
 * @example
 * ```ts
 * import { type RunGroup, sparsityCurvesOf } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const g = { tags: {}, records: [{ sparsityCurve: [{ step: 1, overall: 0.6, perSite: {} }] }] } as unknown as RunGroup;
 * assert.deepEqual(sparsityCurvesOf([g], () => "relu")[0]!.sparsity, [0.6]);
 * ```
 */
export function sparsityCurvesOf(
  groups: readonly RunGroup[],
  name: (g: RunGroup) => string,
  site?: string,
): SparsityCurve[] {
  return groups.flatMap((g) => {
    const curves = g.records.map((r) => r.sparsityCurve ?? []).filter((c) => c.length);
    if (!curves.length) return [];
    return [{
      name: name(g),
      steps: meanByIndex(curves, (c) => c.step),
      sparsity: meanByIndex(curves, (c) => (site ? c.perSite[site] ?? 0 : c.overall)),
    }];
  });
}

/**
 * Final validation losses of groups as bars with ±1 seed-level standard-error whiskers, for
 * `estimateBars` (with `zoom: true`: losses of one study differ by hundredths of a nat, so bars
 * from zero would hide them; or use {@link differenceBarsOf}).
 *
 * @param groups Groups from `groupRuns`.
 * @param name Bar label of a group.
 * @param group Optional series of a group (e.g. its size), for grouped bars.
 * @returns The bars.
 *
 * @example
 * ```ts
 * import { lossBarsOf, type RunGroup } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const g = { tags: { arm: "dense" }, loss: { mean: 2.5, se: 0.01, n: 2 } } as unknown as RunGroup;
 * assert.deepEqual(lossBarsOf([g], (g) => String(g.tags.arm)), [{ name: "dense", value: 2.5, error: 0.01 }]);
 * ```
 */
export function lossBarsOf(
  groups: readonly RunGroup[],
  name: (g: RunGroup) => string,
  group?: (g: RunGroup) => string,
): EstimateBar[] {
  return groups.map((g) => ({
    name: name(g),
    value: g.loss.mean,
    error: Number.isFinite(g.loss.se) ? g.loss.se : 0,
    ...(group ? { group: group(g) } : {}),
  }));
}

/**
 * Loss differences to a reference group as bars with ±1 standard-error whiskers (within seed
 * when the seeds pair, see `contrast`), for `estimateBars`: bars from zero whose lengths are the
 * effects, where bars of the losses themselves would need a cut axis.
 *
 * @param groups Groups from `groupRuns` (the reference itself is left out).
 * @param reference The group to subtract, per group (e.g. the dense arm of the same comparison);
 *   groups it returns undefined for are left out.
 * @param name Bar label of a group.
 * @param group Optional series of a group, for grouped bars.
 * @returns The bars.
 *
 * @example
 * ```ts
 * import { differenceBarsOf, type RunGroup } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const g = (arm: string, mean: number) => ({ tags: { arm }, records: [], loss: { mean, se: 0.01, n: 1, df: Infinity } }) as unknown as RunGroup;
 * const dense = g("dense", 2.5);
 * const bars = differenceBarsOf([dense, g("moe", 2.4)], () => dense, (x) => String(x.tags.arm));
 * assert.equal(bars.length, 1);
 * assert.ok(Math.abs(bars[0]!.value + 0.1) < 1e-12);
 * ```
 */
export function differenceBarsOf(
  groups: readonly RunGroup[],
  reference: (g: RunGroup) => RunGroup | undefined,
  name: (g: RunGroup) => string,
  group?: (g: RunGroup) => string,
): EstimateBar[] {
  return groups.flatMap((g) => {
    const ref = reference(g);
    if (!ref || ref === g) return [];
    const d = contrast([{ group: g, coef: 1 }, { group: ref, coef: -1 }]);
    return [{
      name: name(g),
      value: d.value,
      error: Number.isFinite(d.se) ? d.se : 0,
      ...(group ? { group: group(g) } : {}),
    }];
  });
}

/**
 * A parameter count as a short label: 26784 → "26.8K", 8.02e5 → "802K", 1.3e9 → "1.3B".
 *
 * @param n A count.
 * @returns The label.
 *
 * @example
 * ```ts
 * import { paramLabel } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.equal(paramLabel(26784), "26.8K");
 * assert.equal(paramLabel(1.3e9), "1.3B");
 * ```
 */
export function paramLabel(n: number): string {
  for (const [v, u] of [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "K"]] as const) {
    if (Math.abs(n) >= v) return `${Number((n / v).toPrecision(3))}${u}`;
  }
  return String(Number(n.toPrecision(3)));
}

/** Options of {@link isoLossSurfaceOf}. */
export interface IsoLossSurfaceOptions {
  /** Lowest sparsity; default 0.05. */
  sMin?: number;
  /** Highest sparsity; default 0.85, or up to 0.97 to hold the law's S* with a margin. */
  sMax?: number;
  /** Grid points per axis; default 40. */
  points?: number;
}

/**
 * The iso-loss surface of a law over activated parameters `[naMin, naMax]` (log-spaced) and
 * sparsity, for `isoLossContours` (the paper's Fig. 4).
 *
 * @param law Fitted (or the paper's) constants.
 * @param naMin Smallest N_a.
 * @param naMax Largest N_a.
 * @param opts Sparsity range and resolution.
 * @returns The grid.
 *
 * @example
 * ```ts
 * import { PAPER_SCALING_LAW } from "@qsparse/kit/train";
 * import { isoLossSurfaceOf } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const g = isoLossSurfaceOf(PAPER_SCALING_LAW, 3e8, 7e9, { points: 5 });
 * assert.equal(g.loss.length, 5);
 * assert.equal(g.activated.length, 5);
 * ```
 */
export function isoLossSurfaceOf(
  law: ScalingLawParams,
  naMin: number,
  naMax: number,
  opts: IsoLossSurfaceOptions = {},
): IsoLossGrid {
  const sStar = optimalSparsity(law);
  const n = opts.points ?? 40, s0 = opts.sMin ?? 0.05;
  const s1 = opts.sMax ?? Math.max(0.85, Math.min(0.97, sStar + 0.05));
  const activated = Array.from({ length: n }, (_, i) => naMin * (naMax / naMin) ** (i / (n - 1)));
  const sparsity = Array.from({ length: n }, (_, i) => s0 + ((s1 - s0) * i) / (n - 1));
  return isoLossGrid(law, activated, sparsity);
}

/**
 * Chunk-level sparsity of each group's first run against chunk size, for `chunkSparsity`. The
 * per-token point (chunk 1) is `1 − N_a/N` from the run's measured activated parameters; the
 * larger chunks are the trainer's end-of-run probe (the union of the masks of consecutive tokens;
 * for MoE, experts no token of the chunk chose count as untouched).
 *
 * @param groups Groups from `groupRuns`.
 * @param name Legend label of a group.
 * @returns One curve per group whose run measured chunk-level sparsity.
 *
 * @example
 * ```ts
 * import { chunkSparsityOf, type RunGroup } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const rec = { N: 100, Na: 50, chunkSparsity: { chunkSizes: [8, 64], overall: [0.2, 0.05], perSite: {} } };
 * const g = { tags: { arm: "qsparse" }, records: [rec] } as unknown as RunGroup;
 * assert.deepEqual(chunkSparsityOf([g], (g) => String(g.tags.arm))[0], {
 *   name: "qsparse", chunkSizes: [1, 8, 64], sparsity: [0.5, 0.2, 0.05],
 * });
 * ```
 */
export function chunkSparsityOf(
  groups: readonly RunGroup[],
  name: (g: RunGroup) => string,
): ChunkSparsityCurve[] {
  return groups.flatMap((g) => {
    const r = g.records.find((r) => r.chunkSparsity);
    if (!r) return [];
    return [{
      name: name(g),
      chunkSizes: [1, ...r.chunkSparsity!.chunkSizes],
      sparsity: [1 - r.Na / r.N, ...r.chunkSparsity!.overall],
    }];
  });
}

/**
 * Router balance over training: the mean normalised load entropy of the MoE layers per log
 * window (1 = uniform load, 0 = one expert takes everything), as curves for `lossCurves`.
 *
 * @param groups Groups from `groupRuns`.
 * @param name Legend label of a group.
 * @returns One curve per MoE group (mean over seeds).
 *
 * @example
 * ```ts
 * import { routingCurvesOf, type RunGroup } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const rec = { routingCurve: [{ step: 1, loadEntropy: 0.9, dropped: 0, collapsed: [] }] };
 * const g = { tags: { arm: "moe" }, records: [rec] } as unknown as RunGroup;
 * assert.deepEqual(routingCurvesOf([g], () => "moe"), [{ name: "moe", steps: [1], loss: [0.9] }]);
 * ```
 */
export function routingCurvesOf(
  groups: readonly RunGroup[],
  name: (g: RunGroup) => string,
): LossCurve[] {
  return groups.flatMap((g) => {
    const curves = g.records.map((r) => r.routingCurve ?? []).filter((c) => c.length);
    if (!curves.length) return [];
    return [{
      name: name(g),
      steps: meanByIndex(curves, (c) => c.step),
      loss: meanByIndex(curves, (c) => c.loadEntropy),
    }];
  });
}

/**
 * The final expert load of a group's first MoE run: `load[layer][expert]` (token shares) and
 * layer names, for `expertLoad`; null for a dense run.
 *
 * @param group A group.
 * @returns The load matrix and labels, or null.
 *
 * @example
 * ```ts
 * import { expertLoadOf, type RunGroup } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const routing = { layers: [{ layer: "layers.0.ffn", load: [0.5, 0.5] }] };
 * const g = { records: [{ routing }] } as unknown as RunGroup;
 * assert.deepEqual(expertLoadOf(g), { load: [[0.5, 0.5]], layers: ["layers.0.ffn"] });
 * ```
 */
export function expertLoadOf(group: RunGroup): { load: number[][]; layers: string[] } | null {
  const r = group.records.find((r) => r.routing?.layers.length);
  if (!r) return null;
  return {
    load: r.routing!.layers.map((l) => [...l.load]),
    layers: r.routing!.layers.map((l) => l.layer),
  };
}
