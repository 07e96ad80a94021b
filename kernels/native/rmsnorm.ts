/**
 * Native RMSNorm forward, x-gradient and weight-gradient partials (f32), parallel over rows (or
 * over row chunks for the weight gradient, whose chunks are fixed by the dispatch, so the sums and
 * their order never depend on the thread count).
 *
 * The arithmetic mirrors the CPU twin (kernels/rmsnorm.ts) operation for operation, in f64.
 *
 * @module
 */
import type { NativeRuntime, ParallelTask } from "../../src/backend/backend.ts";
import { minParallelRows } from "./softmax.ts";

/** Per-thread f64 column accumulators for the weight gradient. */
let colAcc = new Float64Array(0);

/** r = 1/√(Σx²/D + eps) exactly as the twin rounds it. */
function rstdRow(x: Float32Array, start: number, cols: number, eps32: number): number {
  let ss = 0;
  for (let j = start, end = start + cols; j < end; j++) ss += x[j]! * x[j]!;
  return 1 / Math.sqrt(Math.fround(ss) / cols + eps32);
}

/** Forward task: args `[x, w (0 = none), out, cols, eps]`, items = rows. */
export const rmsNormF32Task: ParallelTask = {
  name: "rmsNormF32",
  run(ctx, args, lo0, hi0) {
    // Integer parameters arrive as f64; int32 copies keep index math in integer registers.
    const lo = lo0 | 0, hi = hi0 | 0;
    const cols = args[3]! | 0, eps32 = Math.fround(args[4]!);
    const x = new Float32Array(ctx.view(args[0]!, hi * cols * 4));
    const o = new Float32Array(ctx.view(args[2]!, hi * cols * 4));
    const w = args[1] ? new Float32Array(ctx.view(args[1], cols * 4)) : null;
    for (let r = lo; r < hi; r++) {
      const start = r * cols;
      const rs = rstdRow(x, start, cols, eps32);
      if (w) { for (let j = 0; j < cols; j++) o[start + j] = x[start + j]! * rs * w[j]!; }
      else for (let j = 0; j < cols; j++) o[start + j] = x[start + j]! * rs;
    }
  },
};

/** x-gradient task: args `[x, w (0 = none), g, gx, rstd, cols, eps]`, items = rows. */
export const rmsNormBackwardF32Task: ParallelTask = {
  name: "rmsNormBackwardF32",
  run(ctx, args, lo0, hi0) {
    // Integer parameters arrive as f64; int32 copies keep index math in integer registers.
    const lo = lo0 | 0, hi = hi0 | 0;
    const cols = args[5]! | 0, eps32 = Math.fround(args[6]!);
    const bytes = hi * cols * 4;
    const x = new Float32Array(ctx.view(args[0]!, bytes));
    const w = args[1] ? new Float32Array(ctx.view(args[1], cols * 4)) : null;
    const g = new Float32Array(ctx.view(args[2]!, bytes));
    const gx = new Float32Array(ctx.view(args[3]!, bytes));
    const rstd = new Float32Array(ctx.view(args[4]!, hi * 4));
    for (let row = lo; row < hi; row++) {
      const start = row * cols;
      // Σx² and Σ g·w·x in one pass (each sum keeps the twin's order, so values are identical).
      let ss = 0, dot = 0;
      if (w) {
        for (let j = 0; j < cols; j++) {
          const v = x[start + j]!;
          ss += v * v;
          dot += g[start + j]! * w[j]! * v;
        }
      } else {
        for (let j = 0; j < cols; j++) {
          const v = x[start + j]!;
          ss += v * v;
          dot += g[start + j]! * v;
        }
      }
      const r = 1 / Math.sqrt(Math.fround(ss) / cols + eps32);
      const c = (r * r * r * dot) / cols;
      if (w) {
        for (let j = 0; j < cols; j++) {
          gx[start + j] = r * g[start + j]! * w[j]! - x[start + j]! * c;
        }
      } else {
        for (let j = 0; j < cols; j++) gx[start + j] = r * g[start + j]! - x[start + j]! * c;
      }
      rstd[row] = r;
    }
  },
};

/**
 * Weight-gradient task: args `[x, g, rstd, partial, rows, cols, chunkRows]`, items = row chunks.
 * Each chunk sums its rows into f64 column accumulators in row order (the twin's order per
 * column), walking rows contiguously instead of striding down columns.
 */
export const rmsNormWeightGradF32Task: ParallelTask = {
  name: "rmsNormWeightGradF32",
  run(ctx, args, lo0, hi0) {
    // Integer parameters arrive as f64; int32 copies keep index math in integer registers.
    const lo = lo0 | 0, hi = hi0 | 0;
    const rows = args[4]! | 0, cols = args[5]! | 0, chunkRows = args[6]! | 0;
    const bytes = rows * cols * 4;
    const x = new Float32Array(ctx.view(args[0]!, bytes));
    const g = new Float32Array(ctx.view(args[1]!, bytes));
    const rstd = new Float32Array(ctx.view(args[2]!, rows * 4));
    const partial = new Float32Array(ctx.view(args[3]!, hi * cols * 4));
    if (colAcc.length < cols) colAcc = new Float64Array(cols);
    const acc = colAcc;
    for (let c = lo; c < hi; c++) {
      acc.fill(0, 0, cols);
      const r1 = Math.min((c + 1) * chunkRows, rows);
      for (let r = c * chunkRows; r < r1; r++) {
        const rs = rstd[r]!, start = r * cols;
        for (let j = 0; j < cols; j++) acc[j] += g[start + j]! * x[start + j]! * rs;
      }
      for (let j = 0; j < cols; j++) partial[c * cols + j] = acc[j]!;
    }
  },
};

/**
 * Native RMSNorm forward (f32).
 *
 * @param rows Row count.
 * @param cols Row length.
 * @param eps Epsilon.
 * @param x Input.
 * @param w Weight `[cols]`, or null.
 * @param out Output.
 * @param rt The runtime.
 */
export function rmsNormF32Native(
  rows: number,
  cols: number,
  eps: number,
  x: ArrayBuffer,
  w: ArrayBuffer | null,
  out: ArrayBuffer,
  rt: NativeRuntime,
): void {
  rt.parallel(
    rmsNormF32Task,
    rows,
    [rt.address(x), w ? rt.address(w) : 0, rt.address(out), cols, eps],
    { minParallel: minParallelRows(cols) },
  );
}

/**
 * Native RMSNorm x-gradient (f32); also writes r per row.
 *
 * @param rows Row count.
 * @param cols Row length.
 * @param eps Epsilon.
 * @param bufs x, [w], g, gx, rstd (the dispatch's buffers).
 * @param hasWeight Whether `bufs` holds a weight.
 * @param rt The runtime.
 */
export function rmsNormBackwardF32Native(
  rows: number,
  cols: number,
  eps: number,
  bufs: ArrayBuffer[],
  hasWeight: boolean,
  rt: NativeRuntime,
): void {
  const a = bufs.map((b) => rt.address(b));
  const [x, w, g, gx, rstd] = hasWeight ? a : [a[0]!, 0, a[1]!, a[2]!, a[3]!];
  rt.parallel(rmsNormBackwardF32Task, rows, [x!, w!, g!, gx!, rstd!, cols, eps], {
    minParallel: minParallelRows(cols),
  });
}

/**
 * Native RMSNorm weight-gradient partials (f32 `[chunks, cols]`).
 *
 * @param rows Row count.
 * @param cols Row length.
 * @param chunkRows Rows per chunk.
 * @param chunks Chunk count.
 * @param bufs x, g, rstd, partial.
 * @param rt The runtime.
 */
export function rmsNormWeightGradF32Native(
  rows: number,
  cols: number,
  chunkRows: number,
  chunks: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  const [x, g, rstd, partial] = bufs.map((b) => rt.address(b));
  rt.parallel(rmsNormWeightGradF32Task, chunks, [x!, g!, rstd!, partial!, rows, cols, chunkRows], {
    minParallel: Math.max(2, Math.ceil(minParallelRows(cols) / chunkRows)),
  });
}
