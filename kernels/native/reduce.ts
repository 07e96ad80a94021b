/**
 * Native row reductions on f32 (sum, sum of squares, max with its index, and the second pass of
 * an all-element argmax) and the argmax gradient scatter. Rows are split across threads, each row
 * reduced on one thread in index order with an f64 accumulator, exactly as the CPU twin in
 * kernels/reduce.ts does, so results are the twin's bits whatever the thread count. Max/argmax
 * follow the twin's order: NaN above every number (the first NaN wins), ties to the lower index.
 *
 * @module
 */
import type { NativeRuntime } from "../../src/backend/backend.ts";
import type { RowReduceParams, RowReduceSpec } from "../reduce.ts";
import { launch, type Launchable, launchable } from "./host_job.ts";

/** Index meaning "none" (the identity of the argmax combine). */
export const NO_INDEX = 0xffffffff;

/**
 * Row-reduction job over rows: buffers `x, [ixs], [values], [indices]`; params `[kind (0 sum,
 * 1 max), square, hasIxs, hasValues, hasIndices, cols, n, scale, istride]`.
 */
const rowReduceF32: Launchable = launchable({
  name: "rowReduceF32",
  buffers: 4,
  run(bufs, p, lo, hi) {
    const isMax = p[0] === 1, square = p[1] === 1;
    const hasIxs = p[2] === 1, hasValues = p[3] === 1, hasIndices = p[4] === 1;
    const cols = p[5]!, n = p[6]!, istride = p[8]!;
    const scale = Math.fround(p[7]!);
    let k = 0;
    const x = new Float32Array(bufs[k++]!);
    const ixs = hasIxs ? new Uint32Array(bufs[k++]!) : null;
    const out = hasValues ? new Float32Array(bufs[k++]!) : null;
    const oidx = hasIndices ? new Uint32Array(bufs[k++]!) : null;
    for (let r = lo; r < hi; r++) {
      const start = r * cols, end = Math.min(start + cols, n);
      if (!isMax) {
        let acc = 0;
        if (square) {
          for (let i = start; i < end; i++) {
            const v = x[i]!;
            acc += v * v;
          }
        } else {
          for (let i = start; i < end; i++) acc += x[i]!;
        }
        out![r] = Math.fround(acc) * scale;
        continue;
      }
      // Max: a plain scan while no NaN is seen (strictly greater keeps the lowest index), then the
      // first NaN wins outright.
      let bv = -Infinity, bi = NO_INDEX;
      if (ixs) {
        for (let i = start; i < end; i++) {
          const v = x[i]!;
          const j = ixs[i]! === NO_INDEX ? NO_INDEX : (ixs[i]! + (i - start) * istride) >>> 0;
          if (v !== v) {
            if (bv === bv || j < bi) {
              bv = v;
              bi = j;
            }
          } else if (bv === bv && (v > bv || (v === bv && j < bi))) {
            bv = v;
            bi = j;
          }
        }
      } else {
        for (let i = start; i < end; i++) {
          const v = x[i]!;
          if (v > bv || (bi === NO_INDEX && v === bv)) {
            bv = v;
            bi = i - start;
          } else if (v !== v) {
            bv = v;
            bi = i - start;
            break;
          }
        }
      }
      if (out) out[r] = bv;
      if (oidx) oidx[r] = bi;
    }
  },
});

/**
 * Argmax-gradient job over rows: buffers `[g, idx, out]`, params `[cols]`:
 * `out[r, j] = j == idx[r] ? g[r] : 0`.
 */
const argScatterF32: Launchable = launchable({
  name: "argScatterF32",
  buffers: 3,
  run(bufs, p, lo, hi) {
    const cols = p[0]!;
    const g = new Float32Array(bufs[0]!), idx = new Uint32Array(bufs[1]!);
    const o = new Float32Array(bufs[2]!, 0, hi * cols);
    o.fill(0, lo * cols, hi * cols);
    for (let r = lo; r < hi; r++) {
      const j = idx[r]!;
      if (j < cols) o[r * cols + j] = g[r]!;
    }
  },
});

/** Tasks of this file, for kernels/native/tasks.ts. */
export const REDUCE_TASKS = [rowReduceF32.task, argScatterF32.task];

/**
 * Native row reduction with f32 input and output (buffers in the dispatch's binding order).
 *
 * @param s What to compute.
 * @param p Sizes and scale.
 * @param bufs x, [ixs], [values], [indices].
 * @param rt The runtime.
 * @example
 * ```ts ignore
 * native: (bufs, rt) => rowReduceNative(s, p, bufs, rt)
 * ```
 */
export function rowReduceNative(
  s: RowReduceSpec,
  p: RowReduceParams,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  const padded = [...bufs];
  while (padded.length < 4) padded.push(bufs[0]!);
  const sum = s.kind === "sum";
  launch(rt, rowReduceF32, p.rows, padded, [
    sum ? 0 : 1,
    s.square ? 1 : 0,
    s.indexIn ? 1 : 0,
    sum || s.values ? 1 : 0,
    !sum && s.indices ? 1 : 0,
    p.cols,
    p.n,
    p.scale,
    p.istride,
  ], { align: 1, minParallel: Math.max(2, Math.ceil((1 << 16) / Math.max(1, p.cols))) });
}

/**
 * Native argmax scatter over `rows = n / cols` rows.
 *
 * @param n Elements.
 * @param cols Row length.
 * @param bufs `[g, idx, out]`.
 * @param rt The runtime.
 * @example
 * ```ts ignore
 * native: dtype === "f32" ? (bufs, rt) => argScatterNative(n, cols, bufs, rt) : undefined
 * ```
 */
export function argScatterNative(
  n: number,
  cols: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  if (cols <= 0) return;
  launch(rt, argScatterF32, Math.ceil(n / cols), bufs, [cols], {
    align: 1,
    minParallel: Math.max(2, Math.ceil((1 << 16) / cols)),
  });
}
