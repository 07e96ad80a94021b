/**
 * Native MoE gather and its backward, split across threads by grouped rows (gather) or tokens
 * (backward): row copies, and per-token sums of the kept slots' rows in slot order (the twin's
 * f32 rounding order, so results agree bit for bit).
 *
 * @module
 */
import type { NativeRuntime, ParallelTask } from "../../src/backend/backend.ts";
import { NONE } from "../moe_layout.ts";
import { argBuffer, bufferArgs } from "./buffer_args.ts";

const MIN_PARALLEL_ELEMS = 1 << 16;

/** Gather over grouped rows: buffers x, perm, xg; params `d, k`. */
export const moeGatherTask: ParallelTask = {
  name: "moeGather",
  run(ctx, args, lo, hi) {
    const d = args[6]!, k = args[7]!;
    const x = new Float32Array(argBuffer(ctx, args, 0)),
      pm = new Uint32Array(argBuffer(ctx, args, 1));
    const out = new Float32Array(argBuffer(ctx, args, 2));
    for (let r = lo; r < hi; r++) {
      const a = pm[r]!;
      if (a === NONE) out.fill(0, r * d, r * d + d);
      else {
        const t = Math.floor(a / k);
        out.set(x.subarray(t * d, t * d + d), r * d);
      }
    }
  },
};

/** Gather backward over tokens: buffers g, pos, dx; params `d, k`. */
export const moeGatherBackwardTask: ParallelTask = {
  name: "moeGatherBackward",
  run(ctx, args, lo, hi) {
    const d = args[6]!, k = args[7]!;
    const g = new Float32Array(argBuffer(ctx, args, 0)),
      ps = new Uint32Array(argBuffer(ctx, args, 1));
    const out = new Float32Array(argBuffer(ctx, args, 2));
    for (let t = lo; t < hi; t++) {
      const o = t * d;
      out.fill(0, o, o + d);
      for (let j = 0; j < k; j++) {
        const r = ps[t * k + j]!;
        if (r === NONE) continue;
        const go = r * d - o;
        for (let c = o; c < o + d; c++) out[c] = out[c]! + g[go + c]!;
      }
    }
  },
};

/**
 * `xg[r] = x[token of perm[r]]` (zero for unused rows). Buffers: x, perm, xg.
 *
 * @param m Grouped rows.
 * @param d Row width.
 * @param k Slots per token.
 * @param bufs The dispatch's buffers.
 * @param rt The runtime.
 *
 * @example
 * ```ts
 * import { moeGather, moeGroup, openDevice } from "@qsparse/kit";
 * using dev = await openDevice({ prefer: "native" });
 * const g = moeGroup(dev.tensor(new Uint32Array([1, 0]), [2, 1], "u32"), 2);
 * using xg = moeGather(dev.tensor([[1, 2], [3, 4]]), g);
 * console.log(await xg.toArray()); // [[3, 4], [1, 2]]
 * ```
 */
export function moeGatherNative(
  m: number,
  d: number,
  k: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  if (m === 0 || d === 0) return;
  rt.parallel(moeGatherTask, m, bufferArgs(bufs.slice(0, 3), rt, d, k), {
    minParallel: Math.ceil(MIN_PARALLEL_ELEMS / d),
  });
}

/**
 * `dx[t] = Σ_j g[pos[t, j]]` over kept slots. Buffers: g, pos, dx.
 *
 * @param n Tokens.
 * @param d Row width.
 * @param k Slots per token.
 * @param bufs The dispatch's buffers.
 * @param rt The runtime.
 *
 * @example
 * ```ts
 * import { backward, moeGather, moeGroup, openDevice, sumAll } from "@qsparse/kit";
 * using dev = await openDevice({ prefer: "native" });
 * const g = moeGroup(dev.tensor(new Uint32Array([1, 0]), [2, 1], "u32"), 2);
 * const x = dev.tensor([[1, 2], [3, 4]]);
 * x.requiresGrad = true;
 * backward(sumAll(moeGather(x, g)));
 * console.log(await x.grad!.toArray()); // [[1, 1], [1, 1]]
 * ```
 */
export function moeGatherBackwardNative(
  n: number,
  d: number,
  k: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  if (n === 0 || d === 0) return;
  rt.parallel(moeGatherBackwardTask, n, bufferArgs(bufs.slice(0, 3), rt, d, k), {
    minParallel: Math.ceil(MIN_PARALLEL_ELEMS / (d * Math.max(1, k))),
  });
}
