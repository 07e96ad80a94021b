/**
 * # @qsparse/kit/studies
 *
 * The paper's studies, kept out of the library: the study grids and profiles, the grouping of
 * results into seed-level estimates, the statistics a verdict rests on, the findings with their
 * claim texts, the tables and figure data the notebooks show, and the notebook helpers (profile,
 * display, loading and saving). The notebooks import from here; the kit itself (`mod.ts`) never
 * does.
 *
 * @example Group two seeds of a run into one seed-level estimate
 * ```ts
 * import type { RunRecord } from "@qsparse/kit";
 * import { groupRuns } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const run = (seed: number, valLoss: number) =>
 *   ({ tags: { size: "xs", S: 0.5, seed }, valLoss, valStderr: 0.01, N: 1e5, Na: 5e4, sparsity: null }) as unknown as RunRecord;
 * const [g] = groupRuns([run(1, 2.0), run(2, 2.2)]);
 * assert.equal(g!.loss.n, 2);
 * ```
 *
 * @module
 */
export * from "./studies.ts";
export * from "./moe_study.ts";
export * from "./report.ts";
export * from "./findings.ts";
export * from "./tables.ts";
export * from "./figure_data.ts";
export * from "./posthoc.ts";
export * from "./grad_norms.ts";
export * from "./moe_findings.ts";
export * from "./kernel_timing.ts";
export * from "./kernel_findings.ts";
export * from "./notebook.ts";
