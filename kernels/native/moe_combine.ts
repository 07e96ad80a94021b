/**
 * Native MoE combine and its two backward pieces, split across threads by tokens (combine),
 * grouped rows (row gradient) or assignments (gate gradient). Each output element is summed in
 * the twin's order with the twin's f32 (or f64) rounding, so results agree bit for bit.
 *
 * @module
 */
import type { NativeRuntime, ParallelTask } from "../../src/backend/backend.ts";
import { NONE } from "../moe_layout.ts";
import { argBuffer, bufferArgs } from "./buffer_args.ts";

const MIN_PARALLEL_ELEMS = 1 << 16;
const f = Math.fround;

/** Combine over tokens: buffers yg, gates, pos, y; params `d, k`. */
export const moeCombineTask: ParallelTask = {
  name: "moeCombine",
  run(ctx, args, lo, hi) {
    const d = args[8]!, k = args[9]!;
    const yv = new Float32Array(argBuffer(ctx, args, 0)),
      gv = new Float32Array(argBuffer(ctx, args, 1));
    const ps = new Uint32Array(argBuffer(ctx, args, 2)),
      out = new Float32Array(argBuffer(ctx, args, 3));
    for (let t = lo; t < hi; t++) {
      const o = t * d;
      out.fill(0, o, o + d);
      for (let j = 0; j < k; j++) {
        const a = t * k + j, r = ps[a]!;
        if (r === NONE) continue;
        const g = gv[a]!, yo = r * d - o;
        // out is f32 storage, so each store rounds like the twin's fr(acc + fr(g·y)).
        for (let c = o; c < o + d; c++) out[c] = out[c]! + f(g * yv[yo + c]!);
      }
    }
  },
};

/** Row gradient over grouped rows: buffers g, gates, perm, dyg; params `d, k`. */
export const moeCombineRowsBackwardTask: ParallelTask = {
  name: "moeCombineRowsBackward",
  run(ctx, args, lo, hi) {
    const d = args[8]!, k = args[9]!;
    const gv = new Float32Array(argBuffer(ctx, args, 0)),
      ga = new Float32Array(argBuffer(ctx, args, 1));
    const pm = new Uint32Array(argBuffer(ctx, args, 2)),
      out = new Float32Array(argBuffer(ctx, args, 3));
    for (let r = lo; r < hi; r++) {
      const a = pm[r]!, o = r * d;
      if (a === NONE) {
        out.fill(0, o, o + d);
        continue;
      }
      const w = ga[a]!, go = Math.floor(a / k) * d - o;
      for (let c = o; c < o + d; c++) out[c] = w * gv[go + c]!;
    }
  },
};

/** Gate gradient over assignments: buffers g, yg, pos, dgate; params `d, k`. */
export const moeCombineGatesBackwardTask: ParallelTask = {
  name: "moeCombineGatesBackward",
  run(ctx, args, lo, hi) {
    const d = args[8]!, k = args[9]!;
    const gv = new Float32Array(argBuffer(ctx, args, 0)),
      yv = new Float32Array(argBuffer(ctx, args, 1));
    const ps = new Uint32Array(argBuffer(ctx, args, 2)),
      out = new Float32Array(argBuffer(ctx, args, 3));
    for (let a = lo; a < hi; a++) {
      const r = ps[a]!;
      if (r === NONE) {
        out[a] = 0;
        continue;
      }
      const go = Math.floor(a / k) * d, yo = r * d;
      let acc = 0;
      for (let c = 0; c < d; c++) acc += gv[go + c]! * yv[yo + c]!;
      out[a] = acc;
    }
  },
};

/**
 * `y[t] = Σ_j gate[t, j] · yg[pos[t, j]]` over kept slots. Buffers: yg, gates, pos, y.
 *
 * @param n Tokens.
 * @param d Row width.
 * @param k Slots per token.
 * @param bufs The dispatch's buffers.
 * @param rt The runtime.
 *
 * @example
 * ```ts
 * import { moeCombine, moeGroup, openDevice } from "@qsparse/kit";
 * using dev = await openDevice({ prefer: "native" });
 * const g = moeGroup(dev.tensor(new Uint32Array([1, 0]), [2, 1], "u32"), 2);
 * using y = moeCombine(dev.tensor([[1, 2], [3, 4]]), dev.tensor([[0.5], [2]]), g);
 * console.log(await y.toArray()); // [[1.5, 2], [2, 4]]
 * ```
 */
export function moeCombineNative(
  n: number,
  d: number,
  k: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  if (n === 0 || d === 0) return;
  rt.parallel(moeCombineTask, n, bufferArgs(bufs.slice(0, 4), rt, d, k), {
    minParallel: Math.ceil(MIN_PARALLEL_ELEMS / (d * Math.max(1, k))),
  });
}

/**
 * `dyg[r] = gate[a] · g[token of a]` for `a = perm[r]`. Buffers: g, gates, perm, dyg.
 *
 * @param m Grouped rows.
 * @param d Row width.
 * @param k Slots per token.
 * @param bufs The dispatch's buffers.
 * @param rt The runtime.
 *
 * @example
 * ```ts
 * import { backward, moeCombine, moeGroup, openDevice, sumAll } from "@qsparse/kit";
 * using dev = await openDevice({ prefer: "native" });
 * const g = moeGroup(dev.tensor(new Uint32Array([1, 0]), [2, 1], "u32"), 2);
 * const yg = dev.tensor([[1, 2], [3, 4]]);
 * yg.requiresGrad = true;
 * backward(sumAll(moeCombine(yg, dev.tensor([[0.5], [2]]), g)));
 * console.log(await yg.grad!.toArray()); // [[2, 2], [0.5, 0.5]]
 * ```
 */
export function moeCombineRowsBackwardNative(
  m: number,
  d: number,
  k: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  if (m === 0 || d === 0) return;
  rt.parallel(moeCombineRowsBackwardTask, m, bufferArgs(bufs.slice(0, 4), rt, d, k), {
    minParallel: Math.ceil(MIN_PARALLEL_ELEMS / d),
  });
}

/**
 * `dgate[a] = g[token of a] · yg[pos[a]]` (0 when dropped). Buffers: g, yg, pos, dgate.
 *
 * @param rows Assignments.
 * @param d Row width.
 * @param k Slots per token.
 * @param bufs The dispatch's buffers.
 * @param rt The runtime.
 *
 * @example
 * ```ts
 * import { backward, moeCombine, moeGroup, openDevice, sumAll } from "@qsparse/kit";
 * using dev = await openDevice({ prefer: "native" });
 * const g = moeGroup(dev.tensor(new Uint32Array([1, 0]), [2, 1], "u32"), 2);
 * const gates = dev.tensor([[0.5], [2]]);
 * gates.requiresGrad = true;
 * backward(sumAll(moeCombine(dev.tensor([[1, 2], [3, 4]]), gates, g)));
 * console.log(await gates.grad!.toArray()); // [[7], [3]]
 * ```
 */
export function moeCombineGatesBackwardNative(
  rows: number,
  d: number,
  k: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  if (rows === 0) return;
  rt.parallel(moeCombineGatesBackwardTask, rows, bufferArgs(bufs.slice(0, 4), rt, d, k), {
    minParallel: Math.ceil(MIN_PARALLEL_ELEMS / Math.max(1, d)),
  });
}
