/**
 * Native fake quantization for BitNet b1.58 training (int8 absmax rows, ternary absmean
 * elements): the twins of kernels/quant_ste.ts bit for bit (signed zeros included), split across
 * threads by rows or elements, with a magic-number round half to even.
 *
 * @module
 */
import type { NativeRuntime, ParallelTask } from "../../src/backend/backend.ts";

const f = Math.fround;

/** A job is worth the thread pool (~10 µs) from about this many elements. */
const MIN_PARALLEL_ELEMS = 1 << 16;

/** 1.5·2⁵²: `(v + RND) − RND` rounds to an integer, half to even (the FPU's default mode). */
const RND = 6755399441055744;

/**
 * `clamp(roundHalfEven(v), lo, hi)` for integer bounds, as the twins compute it: clamping first
 * gives the same result (rounding is monotone and the bounds are integers) and keeps |v| small
 * enough for the magic-number rounding, ~3× faster here than `Math.round` plus the tie fix.
 * NaN stays NaN. The result's zero is always +0 (see {@link signedZero}).
 */
function rclamp(v: number, lo: number, hi: number): number {
  return (Math.min(hi, Math.max(lo, v)) + RND) - RND;
}

/** The twins' zero carries the sign of the rounded value (`Math.round(−0.3)` is −0). */
function signedZero(r: number, v: number): number {
  return r === 0 ? v * 0 : r;
}

/** Rows task: args `[x, out, rows, cols, eps]`. */
export const fakeQuantRowsTask: ParallelTask = {
  name: "fakeQuantRows",
  run(ctx, args, lo, hi) {
    const rows = args[2]!, cols = args[3]!, eps = f(args[4]!);
    const x = new Float32Array(ctx.view(args[0]!, rows * cols * 4));
    const out = new Float32Array(ctx.view(args[1]!, rows * cols * 4));
    for (let r = lo; r < hi; r++) {
      const b = r * cols, e = b + cols;
      let m = 0;
      for (let j = b; j < e; j++) m = Math.max(m, Math.abs(x[j]!));
      const s = f(127 / f(m + eps));
      for (let j = b; j < e; j++) {
        const v = f(x[j]! * s);
        out[j] = signedZero(rclamp(v, -128, 127), v) / s;
      }
    }
  },
};

/** Elements task: args `[w, meanAbs, out, n, eps]`. */
export const fakeQuantTernaryTask: ParallelTask = {
  name: "fakeQuantTernary",
  run(ctx, args, lo, hi) {
    const n = args[3]!;
    const w = new Float32Array(ctx.view(args[0]!, n * 4));
    const a = f(new Float32Array(ctx.view(args[1]!, 4))[0]! + f(args[4]!));
    const out = new Float32Array(ctx.view(args[2]!, n * 4));
    for (let i = lo; i < hi; i++) {
      const v = f(w[i]! / a);
      out[i] = signedZero(rclamp(v, -1, 1), v) * a;
    }
  },
};

/**
 * int8 absmax fake quantization of `[rows, cols]` (buffers: x, out).
 *
 * @param rows Rows.
 * @param cols Columns.
 * @param eps The ε of `s = 127 / (max|x| + ε)`.
 * @param bufs The dispatch's buffers.
 * @param rt The runtime.
 *
 * @example
 * ```ts
 * import { openDevice, quantizeActivationsSte } from "@qsparse/kit";
 * using dev = await openDevice({ prefer: "native" });
 * using y = quantizeActivationsSte(dev.randn([4, 64], { seed: 1 })); // runs fakeQuantRowsNative
 * console.log(await y.data());
 * ```
 */
export function fakeQuantRowsNative(
  rows: number,
  cols: number,
  eps: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  const args = [rt.address(bufs[0]!), rt.address(bufs[1]!), rows, cols, eps];
  rt.parallel(fakeQuantRowsTask, rows, args, {
    minParallel: Math.ceil(MIN_PARALLEL_ELEMS / Math.max(1, cols)),
  });
}

/**
 * Ternary absmean fake quantization of `n` weights (buffers: w, meanAbs `[1]`, out).
 *
 * @param n Weights.
 * @param eps The ε of `α = mean|w| + ε`.
 * @param bufs The dispatch's buffers.
 * @param rt The runtime.
 *
 * @example
 * ```ts
 * import { openDevice, quantizeWeightsSte } from "@qsparse/kit";
 * using dev = await openDevice({ prefer: "native" });
 * using w = quantizeWeightsSte(dev.randn([64, 32], { seed: 1 })); // runs fakeQuantTernaryNative
 * console.log(await w.data());
 * ```
 */
export function fakeQuantTernaryNative(
  n: number,
  eps: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  const args = [rt.address(bufs[0]!), rt.address(bufs[1]!), rt.address(bufs[2]!), n, eps];
  rt.parallel(fakeQuantTernaryTask, n, args, { align: 16, minParallel: MIN_PARALLEL_ELEMS });
}
