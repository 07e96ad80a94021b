/**
 * Learning-rate schedule: linear warmup, then cosine decay to a floor.
 *
 * @module
 */

/** Warmup + cosine settings. */
export interface CosineSchedule {
  /** Peak learning rate. */
  lr: number;
  /** Linear warmup steps (from lr/warmup at step 1 to lr at step `warmup`). */
  warmup: number;
  /** Total steps; the cosine reaches `minLr` here. */
  total: number;
  /** Final learning rate (default lr/10). */
  minLr?: number;
}

/**
 * The learning rate for (1-based) step `t`.
 *
 * @param s The schedule.
 * @param t The step, 1 for the first update.
 * @returns The learning rate.
 *
 * @example
 * ```ts
 * import { cosineLr } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const s = { lr: 1e-3, warmup: 10, total: 100 };
 * assert.equal(cosineLr(s, 10), 1e-3);
 * assert.ok(Math.abs(cosineLr(s, 100) - 1e-4) < 1e-12);
 * ```
 */
export function cosineLr(s: CosineSchedule, t: number): number {
  const minLr = s.minLr ?? s.lr / 10;
  if (s.warmup > 0 && t <= s.warmup) return (s.lr * t) / s.warmup;
  const span = Math.max(1, s.total - s.warmup);
  const p = Math.min(1, Math.max(0, (t - s.warmup) / span));
  return minLr + 0.5 * (s.lr - minLr) * (1 + Math.cos(Math.PI * p));
}
