/**
 * Native per-expert nonzero counting over the grouped rows of a hidden activation, split across
 * threads by experts (each expert's segment is contiguous and its counters are its own words).
 * Counts are integers, so results equal the twin's exactly.
 *
 * @module
 */
import type { NativeRuntime, ParallelTask } from "../../src/backend/backend.ts";
import { argBuffer, bufferArgs } from "./buffer_args.ts";

/** Segment count over experts: buffers h, meta, nz, el; param `w`. */
export const moeSegmentCountTask: ParallelTask = {
  name: "moeSegmentCount",
  run(ctx, args, lo, hi) {
    const w = args[8]!;
    const hv = new Uint32Array(argBuffer(ctx, args, 0)),
      mv = new Uint32Array(argBuffer(ctx, args, 1));
    const nzv = new Uint32Array(argBuffer(ctx, args, 2)),
      elv = new Uint32Array(argBuffer(ctx, args, 3));
    for (let x = lo; x < hi; x++) {
      const start = mv[x]! * w, end = mv[x + 1]! * w;
      let n = 0;
      // Nonzero on the bits: ±0 are zero, NaN counts (as the twin and the WGSL do).
      for (let i = start; i < end; i++) if ((hv[i]! & 0x7fffffff) !== 0) n++;
      nzv[x] = (nzv[x]! + n) >>> 0;
      elv[x] = (elv[x]! + end - start) >>> 0;
    }
  },
};

/**
 * Adds each expert's nonzero and element counts of `h` into `nz` and `el` (buffers: h, meta,
 * nz, el).
 *
 * @param e Experts.
 * @param w Row width of `h`.
 * @param bufs The dispatch's buffers.
 * @param rt The runtime.
 *
 * @example
 * ```ts
 * import { moeSegmentCountNative } from "./moe_counters.ts";
 * const rt = {
 *   address: () => 0,
 *   parallel: (t: { run: (...a: unknown[]) => void }, n: number, a: number[]) => void [t, n, a],
 * } as unknown as Parameters<typeof moeSegmentCountNative>[3];
 * moeSegmentCountNative(0, 4, [], rt); // nothing to count
 * ```
 */
export function moeSegmentCountNative(
  e: number,
  w: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  if (e === 0) return;
  const rows = new Uint32Array(bufs[1]!)[e] ?? 0;
  rt.parallel(moeSegmentCountTask, e, bufferArgs(bufs.slice(0, 4), rt, w), {
    minParallel: rows * w >= 1 << 16 ? 0 : Infinity,
  });
}
