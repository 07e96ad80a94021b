/**
 * Native dtype conversion between the 4-byte dtypes (f32, i32, u32) with the twin's rules
 * (kernels/fill.ts `convertScalar`): floats to integers truncate toward zero and saturate, NaN
 * gives 0; integers convert as the typed-array store does (i32 ↔ u32 wrap, to f32 rounds). f16
 * falls back to the twin.
 *
 * Saturating through `Math.min`/`Math.max` and letting the Int32Array/Uint32Array store truncate
 * covers all three rules at once: the store's ToInt32 maps NaN to 0 and truncates in-range values.
 *
 * @module
 */
import type { NativeRuntime } from "../../src/backend/backend.ts";
import { launch, type Launchable, launchable } from "./host_job.ts";

/** Dtype codes of the job's params. */
const CODES = ["f32", "i32", "u32"] as const;

/** Cast job: buffers `[x, out]`, params `[from, to]` ({@link CODES} indices). */
const castJob: Launchable = launchable({
  name: "cast32",
  buffers: 2,
  run(bufs, p, lo, hi) {
    const from = CODES[p[0]!], to = CODES[p[1]!];
    if (from === "f32") {
      const x = new Float32Array(bufs[0]!, 0, hi);
      if (to === "i32") {
        const o = new Int32Array(bufs[1]!, 0, hi);
        for (let i = lo; i < hi; i++) o[i] = Math.min(2147483647, Math.max(-2147483648, x[i]!));
      } else if (to === "u32") {
        const o = new Uint32Array(bufs[1]!, 0, hi);
        for (let i = lo; i < hi; i++) o[i] = Math.min(4294967295, Math.max(0, x[i]!));
      } else {
        new Float32Array(bufs[1]!, 0, hi).set(x.subarray(lo, hi), lo);
      }
      return;
    }
    const x = from === "i32" ? new Int32Array(bufs[0]!, 0, hi) : new Uint32Array(bufs[0]!, 0, hi);
    if (to === "f32") {
      const o = new Float32Array(bufs[1]!, 0, hi);
      for (let i = lo; i < hi; i++) o[i] = x[i]!;
    } else if (to === "i32") {
      const o = new Int32Array(bufs[1]!, 0, hi);
      for (let i = lo; i < hi; i++) o[i] = x[i]!;
    } else {
      const o = new Uint32Array(bufs[1]!, 0, hi);
      for (let i = lo; i < hi; i++) o[i] = x[i]!;
    }
  },
});

/** Tasks of this file, for kernels/native/tasks.ts. */
export const CAST_TASKS = [castJob.task];

/**
 * Code of a dtype the native cast handles, or −1 (f16: use the twin).
 *
 * @param dtype A dtype name.
 * @returns 0 f32, 1 i32, 2 u32, or −1.
 * @example
 * ```ts
 * import { castCode } from "./cast.ts";
 * console.log(castCode("u32")); // 2
 * ```
 */
export function castCode(dtype: string): number {
  return (CODES as readonly string[]).indexOf(dtype);
}

/**
 * Native cast of `n` elements between 4-byte dtypes.
 *
 * @param from Source dtype code ({@link castCode}).
 * @param to Target dtype code.
 * @param x Source buffer.
 * @param out Target buffer.
 * @param n Elements.
 * @param rt The runtime.
 * @example
 * ```ts ignore
 * native: ([a, o], rt) => castNative(castCode(from), castCode(to), a!, o!, n, rt)
 * ```
 */
export function castNative(
  from: number,
  to: number,
  x: ArrayBuffer,
  out: ArrayBuffer,
  n: number,
  rt: NativeRuntime,
): void {
  launch(rt, castJob, n, [x, out], [from, to]);
}
