/**
 * Native RMSNorm forward, x-gradient and weight gradient (f32), parallel over rows (or over
 * columns for the weight gradient, whose row splits are fixed by the dispatch, so the sums and
 * their order never depend on the thread count).
 *
 * The arithmetic mirrors the CPU twin (kernels/rmsnorm.ts) in f64; the forward sums Σx² in two
 * interleaved partials (equal to the twin's sum up to f64 rounding).
 *
 * @module
 */
import type { NativeRuntime, ParallelTask } from "../../src/backend/backend.ts";
import { minParallelRows } from "./softmax.ts";

/** Row splits per workgroup: each sums a contiguous chunk of rows, then a tree adds the splits. */
export const RMS_NORM_WEIGHT_GRAD_SPLITS = 32;

/**
 * The weight gradient's tree over split partials, in place (`part[s · cols + j]`, f32 rounding
 * at every add, as the WGSL's workgroup memory rounds).
 *
 * @param part Split partials, `[SPLITS, cols]`; split 0 ends up holding the sums.
 * @param cols Column count.
 * @param j0 First column to reduce.
 * @param j1 One past the last column.
 */
export function weightGradTree(part: Float32Array, cols: number, j0: number, j1: number): void {
  for (let h = RMS_NORM_WEIGHT_GRAD_SPLITS / 2; h > 0; h >>= 1) {
    for (let s = 0; s < h; s++) {
      for (let j = j0; j < j1; j++) part[s * cols + j] += part[(s + h) * cols + j]!;
    }
  }
}

/** Per-thread f64 column accumulators for the weight gradient. */
let colAcc = new Float64Array(0);
/** Per-thread f32 split partials `[SPLITS, cols]` for the weight gradient. */
let splitPart = new Float32Array(0);

/** r = 1/√(Σx²/D + eps) exactly as the twin rounds it. */
function rstdRow(x: Float32Array, start: number, cols: number, eps32: number): number {
  // Two interleaved partial sums halve the add-latency chain (f64, so the change from the
  // twin's single sum is far below f32 resolution).
  let s0 = 0, s1 = 0, j = start;
  const end = start + cols;
  for (; j + 1 < end; j += 2) {
    s0 += x[j]! * x[j]!;
    s1 += x[j + 1]! * x[j + 1]!;
  }
  if (j < end) s0 += x[j]! * x[j]!;
  return 1 / Math.sqrt(Math.fround(s0 + s1) / cols + eps32);
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
    for (let r = lo; r < hi; r++) normaliseRow(x, w, o, r * cols, cols, eps32);
  },
};

/** `o = x · r · w` over one row (`w` null: no gain). */
function normaliseRow(
  x: Float32Array,
  w: Float32Array | null,
  o: Float32Array,
  start: number,
  cols: number,
  eps32: number,
): void {
  const rs = rstdRow(x, start, cols, eps32);
  if (w) { for (let j = 0; j < cols; j++) o[start + j] = x[start + j]! * rs * w[j]!; }
  else for (let j = 0; j < cols; j++) o[start + j] = x[start + j]! * rs;
}

/**
 * Residual forward task: args `[x, res, w (0 = none), out, sum, cols, eps]`, items = rows. Each
 * row's `x + res` is stored to `sum` (f32 rounding, as the add kernel stores it), then
 * normalised exactly as {@link rmsNormF32Task} normalises an input.
 */
export const addRmsNormF32Task: ParallelTask = {
  name: "addRmsNormF32",
  run(ctx, args, lo0, hi0) {
    const lo = lo0 | 0, hi = hi0 | 0;
    const cols = args[5]! | 0, eps32 = Math.fround(args[6]!);
    const bytes = hi * cols * 4;
    const x = new Float32Array(ctx.view(args[0]!, bytes));
    const res = new Float32Array(ctx.view(args[1]!, bytes));
    const w = args[2] ? new Float32Array(ctx.view(args[2], cols * 4)) : null;
    const o = new Float32Array(ctx.view(args[3]!, bytes));
    const sum = new Float32Array(ctx.view(args[4]!, bytes));
    for (let r = lo; r < hi; r++) {
      const start = r * cols;
      for (let j = start; j < start + cols; j++) sum[j] = x[j]! + res[j]!;
      normaliseRow(sum, w, o, start, cols, eps32);
    }
  },
};

/**
 * x-gradient task: args `[x, w (0 = none), g, gx, rstd, cols, eps, gres (0 = none)]`, items =
 * rows. `gres` is added to each stored (f32-rounded) x-gradient, as the add kernel would.
 */
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
    const gres = args[7] ? new Float32Array(ctx.view(args[7], bytes)) : null;
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
      if (gres) { for (let j = start; j < start + cols; j++) gx[j] = gx[j]! + gres[j]!; }
      rstd[row] = r;
    }
  },
};

/**
 * Weight-gradient task: args `[x, g, rstd, gw, rows, cols, chunkRows]`, items = columns. A
 * thread takes a block of columns; for each of the twin's row splits it sums the split's rows into
 * f64 column accumulators in row order (the twin's order per column), walking rows contiguously,
 * rounds them to f32 partials, and adds the splits by the twin's tree.
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
    const gw = new Float32Array(ctx.view(args[3]!, cols * 4));
    const S = RMS_NORM_WEIGHT_GRAD_SPLITS;
    if (colAcc.length < cols) colAcc = new Float64Array(cols);
    if (splitPart.length < S * cols) splitPart = new Float32Array(S * cols);
    const acc = colAcc, part = splitPart;
    for (let s = 0; s < S; s++) {
      acc.fill(0, lo, hi);
      const r0 = Math.min(s * chunkRows, rows), r1 = Math.min(r0 + chunkRows, rows);
      for (let r = r0; r < r1; r++) {
        const rs = rstd[r]!, start = r * cols;
        for (let j = lo; j < hi; j++) acc[j] += g[start + j]! * x[start + j]! * rs;
      }
      for (let j = lo; j < hi; j++) part[s * cols + j] = acc[j]!;
    }
    weightGradTree(part, cols, lo, hi);
    for (let j = lo; j < hi; j++) gw[j] = part[j]!;
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
 * @param residual With `res` added to x first (the sum stored to `sum`), or null.
 */
export function rmsNormF32Native(
  rows: number,
  cols: number,
  eps: number,
  x: ArrayBuffer,
  w: ArrayBuffer | null,
  out: ArrayBuffer,
  rt: NativeRuntime,
  residual: { res: ArrayBuffer; sum: ArrayBuffer } | null = null,
): void {
  const wa = w ? rt.address(w) : 0, opts = { minParallel: minParallelRows(cols) };
  if (residual) {
    const { res, sum } = residual;
    const args = [rt.address(x), rt.address(res), wa, rt.address(out), rt.address(sum), cols, eps];
    rt.parallel(addRmsNormF32Task, rows, args, opts);
    return;
  }
  rt.parallel(rmsNormF32Task, rows, [rt.address(x), wa, rt.address(out), cols, eps], opts);
}

/**
 * Native RMSNorm x-gradient (f32); also writes r per row.
 *
 * @param rows Row count.
 * @param cols Row length.
 * @param eps Epsilon.
 * @param bufs x, [w], g, [gres], gx, rstd (the dispatch's buffers).
 * @param hasWeight Whether `bufs` holds a weight.
 * @param rt The runtime.
 * @param hasResidual Whether `bufs` holds `gres` (added to the x-gradient).
 */
export function rmsNormBackwardF32Native(
  rows: number,
  cols: number,
  eps: number,
  bufs: ArrayBuffer[],
  hasWeight: boolean,
  rt: NativeRuntime,
  hasResidual = false,
): void {
  const a = bufs.map((b) => rt.address(b));
  let k = 0;
  const x = a[k++]!, w = hasWeight ? a[k++]! : 0, g = a[k++]!;
  const gres = hasResidual ? a[k++]! : 0;
  const gx = a[k++]!, rstd = a[k++]!;
  rt.parallel(rmsNormBackwardF32Task, rows, [x, w, g, gx, rstd, cols, eps, gres], {
    minParallel: minParallelRows(cols),
  });
}

/**
 * Native RMSNorm weight gradient (f32 `[cols]`), parallel over columns.
 *
 * @param rows Row count.
 * @param cols Row length.
 * @param chunkRows Rows per split (kernels/rmsnorm.ts `weightGradChunk`).
 * @param bufs x, g, rstd, gw.
 * @param rt The runtime.
 */
export function rmsNormWeightGradF32Native(
  rows: number,
  cols: number,
  chunkRows: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  const [x, g, rstd, gw] = bufs.map((b) => rt.address(b));
  rt.parallel(rmsNormWeightGradF32Task, cols, [x!, g!, rstd!, gw!, rows, cols, chunkRows], {
    minParallel: Math.max(2, Math.ceil((1 << 15) / Math.max(1, rows))),
  });
}
