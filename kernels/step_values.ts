/**
 * Per-step values of a captured loop, read by kernels from a device buffer instead of uniforms.
 *
 * Why: a captured step (src/tensor/capture.ts) replays its launches with the uniforms they were
 * recorded with, so a value that changes every step — a decode step's KV-cache position, the
 * sampler's step and history slot — cannot be a uniform there. A kernel that takes the optional
 * `sv` binding adds `sv[i]` to the uniform's base value; the loop writes the buffer (u32 `[pos,
 * step, slot, 0]`) before each run, outside the recording, as AdamW writes its step values.
 * Without the binding a kernel is unchanged (same WGSL, same key).
 *
 * @module
 */
import type { BindingSpec } from "./spec.ts";

/** Index of each value in the buffer. */
export const STEP_VALUE = { pos: 0, step: 1, slot: 2 } as const;

/** Elements of the buffer (u32). */
export const STEP_VALUES_LENGTH = 4;

/** The optional binding a kernel declares last to read the values. */
export const STEP_VALUES_BINDING: BindingSpec = {
  name: "sv",
  type: "u32",
  access: "read",
  optional: true,
};

/**
 * The value `i` of a bound buffer on the host (CPU twins and native kernels), 0 without one.
 *
 * @param buf The buffer's bytes, or undefined when the launch has none.
 * @param i Index ({@link STEP_VALUE}).
 * @returns The value.
 * @example
 * ```ts
 * import { STEP_VALUE, stepValue } from "./step_values.ts";
 * import assert from "node:assert/strict";
 * assert.equal(stepValue(Uint32Array.of(7, 3, 1, 0).buffer, STEP_VALUE.step), 3);
 * assert.equal(stepValue(undefined, STEP_VALUE.pos), 0);
 * ```
 */
export function stepValue(buf: ArrayBuffer | undefined, i: number): number {
  return buf ? new Uint32Array(buf, 0, STEP_VALUES_LENGTH)[i]! : 0;
}
