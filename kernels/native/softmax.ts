/**
 * Native softmax / log-softmax (optionally causal) and their backward, f32, parallel over rows.
 *
 * The arithmetic mirrors the CPU twin (kernels/softmax.ts) operation for operation — max, then
 * Σ exp(x − max) in f64, then `exp(x − max) / Σ` — but each exponential is computed once (with the inlinable {@link fastExp}) (kept in
 * an f64 row scratch between the two passes), masked columns are never read, and there is no
 * per-element dispatch on the mode.
 *
 * @module
 */
import type { NativeRuntime, ParallelTask } from "../../src/backend/backend.ts";
import { fastExp } from "./exp.ts";

/** Rows are split across threads once a job has this many elements (a job costs ~10 µs). */
const MIN_PARALLEL_ELEMS = 1 << 15;

/** Per-thread f64 row scratch (module state is per thread: each worker has its own copy). */
let rowScratch = new Float64Array(0);

function scratch(n: number): Float64Array {
  if (rowScratch.length < n) rowScratch = new Float64Array(Math.max(n, 2 * rowScratch.length));
  return rowScratch;
}

/** Minimum rows per job so a split is worth a thread wake-up. */
export function minParallelRows(cols: number): number {
  return Math.max(2, Math.ceil(MIN_PARALLEL_ELEMS / Math.max(1, cols)));
}

/** Forward task: args `[x, out, cols, t (0 = not causal), log (0/1)]`, items = rows. */
export const softmaxF32Task: ParallelTask = {
  name: "softmaxF32",
  run(ctx, args, lo0, hi0) {
    // Integer parameters arrive as f64; int32 copies keep index math in integer registers.
    const lo = lo0 | 0, hi = hi0 | 0;
    const cols = args[2]! | 0, t = args[3]! | 0, log = args[4] === 1;
    const x = new Float32Array(ctx.view(args[0]!, hi * cols * 4));
    const o = new Float32Array(ctx.view(args[1]!, hi * cols * 4));
    const e = scratch(cols);
    for (let r = lo; r < hi; r++) {
      const start = r * cols;
      const lim = t > 0 ? Math.min(cols, (r % t) + 1) : cols;
      let m = -Infinity;
      for (let j = 0; j < lim; j++) {
        const v = x[start + j]!;
        if (v > m) m = v;
      }
      let s = 0;
      if (log) {
        for (let j = 0; j < lim; j++) {
          const v = x[start + j]!;
          if (v !== -Infinity) s += fastExp(v - m);
        }
        const ls = Math.log(s);
        for (let j = 0; j < lim; j++) o[start + j] = x[start + j]! - m - ls;
        if (lim < cols) o.fill(-Infinity, start + lim, start + cols);
      } else {
        for (let j = 0; j < lim; j++) {
          const v = x[start + j]!;
          const ev = fastExp(v - m);
          e[j] = ev;
          // Like the twin, −∞ adds nothing (so a row max of −∞ gives 0/0 = NaN, not a NaN sum).
          if (v !== -Infinity) s += ev;
        }
        // × 1/Σ instead of ÷ Σ: at most an f64 ulp apart, invisible after rounding to f32.
        const inv = 1 / s;
        for (let j = 0; j < lim; j++) o[start + j] = e[j]! * inv;
        if (lim < cols) o.fill(0, start + lim, start + cols);
      }
    }
  },
};

/** Backward task: args `[y, g, gx, cols, log (0/1)]`, items = rows. */
export const softmaxBackwardF32Task: ParallelTask = {
  name: "softmaxBackwardF32",
  run(ctx, args, lo0, hi0) {
    // Integer parameters arrive as f64; int32 copies keep index math in integer registers.
    const lo = lo0 | 0, hi = hi0 | 0;
    const cols = args[3]! | 0, log = args[4] === 1;
    const bytes = hi * cols * 4;
    const y = new Float32Array(ctx.view(args[0]!, bytes));
    const g = new Float32Array(ctx.view(args[1]!, bytes));
    const o = new Float32Array(ctx.view(args[2]!, bytes));
    for (let r = lo; r < hi; r++) {
      const start = r * cols, end = start + cols;
      let total = 0;
      if (log) {
        for (let i = start; i < end; i++) total += g[i]!;
        total = Math.fround(total);
        for (let i = start; i < end; i++) o[i] = g[i]! - fastExp(y[i]!) * total;
      } else {
        for (let i = start; i < end; i++) total += g[i]! * y[i]!;
        total = Math.fround(total);
        for (let i = start; i < end; i++) o[i] = y[i]! * (g[i]! - total);
      }
    }
  },
};

/**
 * Native forward softmax / log-softmax (f32) over `rows` rows of `cols`.
 *
 * @param log Log-softmax instead of softmax.
 * @param rows Row count.
 * @param cols Row length.
 * @param t Causal period T (query i = row mod T sees keys 0..i), or 0 for no mask.
 * @param x Input buffer.
 * @param out Output buffer.
 * @param rt The runtime.
 */
export function softmaxF32Native(
  log: boolean,
  rows: number,
  cols: number,
  t: number,
  x: ArrayBuffer,
  out: ArrayBuffer,
  rt: NativeRuntime,
): void {
  rt.parallel(softmaxF32Task, rows, [rt.address(x), rt.address(out), cols, t, log ? 1 : 0], {
    minParallel: minParallelRows(cols),
  });
}

/**
 * Native softmax / log-softmax backward (f32).
 *
 * @param log Differentiates log-softmax instead of softmax.
 * @param rows Row count.
 * @param cols Row length.
 * @param y Forward output.
 * @param g Upstream gradient.
 * @param gx Input gradient (output).
 * @param rt The runtime.
 */
export function softmaxBackwardF32Native(
  log: boolean,
  rows: number,
  cols: number,
  y: ArrayBuffer,
  g: ArrayBuffer,
  gx: ArrayBuffer,
  rt: NativeRuntime,
): void {
  rt.parallel(
    softmaxBackwardF32Task,
    rows,
    [rt.address(y), rt.address(g), rt.address(gx), cols, log ? 1 : 0],
    { minParallel: minParallelRows(cols) },
  );
}
