/**
 * What a grid costs: tokens per run, run minutes and grid hours from a measured training
 * throughput per model size (`bench/native_throughput.ts`). Used to size the v2 grids and to
 * print their arithmetic (`scripts/v2_arithmetic.ts`, docs/studies-v2.md).
 *
 * Throughput is interpolated in log N between measured sizes (log-log linear), since the v2
 * grids contain sizes that were not measured (`n853k`, the fixed-N_a arms), and extrapolated
 * with the nearest segment's slope.
 *
 * @module
 */
import { ValueError } from "../src/core/errors.ts";
import { paramCounts } from "../src/nn/config.ts";
import type { RunSpec } from "../src/train/runner.ts";

/** A measured rate: tokens per second of a model of N non-embedding parameters. */
export interface ThroughputPoint {
  /** Non-embedding parameters. */
  N: number;
  /** Training tokens per second. */
  tokensPerSecond: number;
}

/**
 * Tokens per second at N, log-log interpolated between measured points.
 *
 * @param N Non-embedding parameters.
 * @param points Measurements (one per N; at least one).
 * @returns The rate.
 * @throws {ValueError} Without measurements.
 *
 * @example
 * ```ts
 * import { throughputAt } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const pts = [{ N: 1e5, tokensPerSecond: 8000 }, { N: 1e6, tokensPerSecond: 1000 }];
 * assert.equal(throughputAt(1e5, pts), 8000);
 * assert.ok(Math.abs(throughputAt(Math.sqrt(1e11), pts) - Math.sqrt(8e6)) < 1e-6);
 * assert.ok(Math.abs(throughputAt(1e7, pts) - 125) < 1e-6); // the last slope, extended
 * ```
 */
export function throughputAt(N: number, points: readonly ThroughputPoint[]): number {
  const pts = [...points].filter((p) => p.N > 0 && p.tokensPerSecond > 0).sort((a, b) => a.N - b.N);
  if (!pts.length) throw new ValueError("throughputAt", "no throughput measurements");
  if (pts.length === 1) return pts[0]!.tokensPerSecond;
  let i = pts.findIndex((p) => p.N >= N);
  if (i <= 0) i = i === 0 ? 1 : pts.length - 1;
  const a = pts[i - 1]!, b = pts[i]!;
  if (a.N === N) return a.tokensPerSecond;
  if (b.N === N) return b.tokensPerSecond;
  const t = Math.log(N / a.N) / Math.log(b.N / a.N);
  return Math.exp(
    Math.log(a.tokensPerSecond) + t * Math.log(b.tokensPerSecond / a.tokensPerSecond),
  );
}

/** The cost of one run. */
export interface RunCost {
  /** The run's id. */
  id: string;
  /** Its study. */
  study: string;
  /** Its tags. */
  tags: RunSpec["tags"];
  /** Non-embedding parameters. */
  N: number;
  /** Training tokens. */
  tokens: number;
  /** Estimated wall minutes. */
  minutes: number;
}

/**
 * The estimated cost of each run of a grid. Runs whose full config equals an earlier run's (in
 * the order given) cost nothing: the runner records them from the earlier one.
 *
 * @param specs Runs, in the order they will run.
 * @param points Measured throughput.
 * @returns One cost per run (0 minutes for reused ones).
 *
 * @example
 * ```ts
 * import { gridCost, studyRuns } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const runs = studyRuns("scaling_v2", "smoke");
 * const cost = gridCost(runs, [{ N: 1e5, tokensPerSecond: 1000 }]);
 * assert.equal(cost.length, runs.length);
 * assert.ok(Math.abs(cost[0]!.minutes - cost[0]!.tokens / 1000 / 60) < 1e-9);
 * ```
 */
export function gridCost(
  specs: readonly RunSpec[],
  points: readonly ThroughputPoint[],
): RunCost[] {
  const seen = new Set<string>();
  return specs.map((s) => {
    const c = s.config;
    const N = paramCounts(c.model).nonEmbedding;
    const tokens = c.steps * c.batchSize * c.model.seqLen;
    const key = JSON.stringify(c);
    const reused = seen.has(key);
    seen.add(key);
    return {
      id: s.id,
      study: s.study,
      tags: s.tags,
      N,
      tokens,
      minutes: reused ? 0 : tokens / throughputAt(N, points) / 60,
    };
  });
}
