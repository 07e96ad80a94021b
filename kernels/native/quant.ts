/**
 * Native BitNet b1.58 integer quantization: int8 absmax codes per row (all of a row, or only its
 * kept values), ternary packing / unpacking, int8 dequantization, and the int8 × packed-ternary
 * product. Same results as the twins in kernels/quant.ts bit for bit (same f32 rounding steps,
 * round half to even, exact integer sums), split across threads by rows, words or elements.
 *
 * The int8 × ternary product, for few rows (decoding), splits the packed words (16 output columns
 * each) across threads; a thread walks every row's kept entries four at a time over its word range, accumulating
 * `Σ q·code` with `code = t + 1 ∈ {0, 1, 2}` read straight from the packed bits (no decode
 * table, no multiply by −1/0/1 branches) and subtracting `Σ q` once per row at the end, which
 * gives the twin's exact integer `Σ q·t`. Packed W is 16× smaller than f32, so this loop is
 * compute-bound in TypeScript rather than bandwidth-bound. For many rows it unpacks W once and
 * calls sgemm on the integer-valued operands, which is exact (see `ternaryBySgemm`).
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

/** Rows per job item so a parallel job is only used above {@link MIN_PARALLEL_ELEMS}. */
function minRows(cols: number): number {
  return Math.ceil(MIN_PARALLEL_ELEMS / Math.max(1, cols));
}

/** Rows task: args `[x, codes, scale, rows, cols, eps]`. */
export const quantRowsTask: ParallelTask = {
  name: "quantRows",
  run(ctx, args, lo, hi) {
    const rows = args[3]!, cols = args[4]!, eps = f(args[5]!);
    const x = new Float32Array(ctx.view(args[0]!, rows * cols * 4));
    const q = new Int32Array(ctx.view(args[1]!, rows * cols * 4));
    const sc = new Float32Array(ctx.view(args[2]!, rows * 4));
    for (let r = lo; r < hi; r++) {
      const b = r * cols, e = b + cols;
      let m = 0;
      for (let j = b; j < e; j++) m = Math.max(m, Math.abs(x[j]!));
      const s = f(127 / f(m + eps));
      sc[r] = s;
      for (let j = b; j < e; j++) q[j] = rclamp(f(x[j]! * s), -128, 127);
    }
  },
};

/** Kept-values task: args `[x, vals, codes, scale, rows, d, k, eps]`. */
export const quantKeptTask: ParallelTask = {
  name: "quantKept",
  run(ctx, args, lo, hi) {
    const rows = args[4]!, d = args[5]!, k = args[6]!, eps = f(args[7]!);
    const x = new Float32Array(ctx.view(args[0]!, rows * d * 4));
    const v = new Float32Array(ctx.view(args[1]!, rows * k * 4));
    const q = new Int32Array(ctx.view(args[2]!, rows * k * 4));
    const sc = new Float32Array(ctx.view(args[3]!, rows * 4));
    for (let r = lo; r < hi; r++) {
      let m = 0;
      for (let j = r * d; j < r * d + d; j++) m = Math.max(m, Math.abs(x[j]!));
      const s = f(127 / f(m + eps));
      sc[r] = s;
      for (let t = r * k; t < r * k + k; t++) {
        q[t] = rclamp(f(v[t]! * s), -128, 127);
      }
    }
  },
};

/** Packing task over words: args `[w, meanAbs, packed, alpha, rows, cols, eps]`. */
export const packTernaryTask: ParallelTask = {
  name: "packTernary",
  run(ctx, args, lo, hi) {
    const rows = args[4]!, cols = args[5]!, eps = f(args[6]!);
    const words = Math.ceil(cols / 16);
    const w = new Float32Array(ctx.view(args[0]!, rows * cols * 4));
    const a = f(new Float32Array(ctx.view(args[1]!, 4))[0]! + eps);
    const packed = new Uint32Array(ctx.view(args[2]!, rows * words * 4));
    if (lo === 0) new Float32Array(ctx.view(args[3]!, 4))[0] = a;
    for (let i = lo; i < hi; i++) {
      const r = Math.floor(i / words), c0 = (i - r * words) * 16, base = r * cols;
      const n = Math.min(16, cols - c0);
      let word = 0;
      for (let c = 0; c < n; c++) {
        word |= (rclamp(f(w[base + c0 + c]! / a), -1, 1) + 1) << (2 * c);
      }
      for (let c = n; c < 16; c++) word |= 1 << (2 * c);
      packed[i] = word >>> 0;
    }
  },
};

/** Unpacking task over rows: args `[packed, alpha, w, rows, cols]`. */
export const unpackTernaryTask: ParallelTask = {
  name: "unpackTernary",
  run(ctx, args, lo, hi) {
    const rows = args[3]!, cols = args[4]!, words = Math.ceil(cols / 16);
    const packed = new Uint32Array(ctx.view(args[0]!, rows * words * 4));
    const a = new Float32Array(ctx.view(args[1]!, 4))[0]!;
    const w = new Float32Array(ctx.view(args[2]!, rows * cols * 4));
    const vals = [f(-a), f(0 * a), f(a), f(2 * a)]; // the twin's f((code − 1)·α), NaN α included
    for (let r = lo; r < hi; r++) {
      for (let c = 0; c < cols; c++) {
        w[r * cols + c] = vals[(packed[r * words + (c >> 4)]! >>> (2 * (c & 15))) & 3]!;
      }
    }
  },
};

/** Dequantization task over rows: args `[codes, scale, x, rows, cols, n]`. */
export const dequantRowsTask: ParallelTask = {
  name: "dequantRows",
  run(ctx, args, lo, hi) {
    const rows = args[3]!, cols = args[4]!, n = args[5]!;
    const q = new Int32Array(ctx.view(args[0]!, n * 4));
    const s = new Float32Array(ctx.view(args[1]!, rows * 4));
    const x = new Float32Array(ctx.view(args[2]!, n * 4));
    for (let r = lo; r < hi; r++) {
      const sr = s[r]!, e = Math.min(n, r * cols + cols);
      for (let i = r * cols; i < e; i++) x[i] = q[i]! / sr;
    }
  },
};

/** Per-thread accumulator of the ternary product (grown, never shrunk). */
let acc = new Int32Array(0);

/**
 * int8 × ternary task over packed words: args `[codes, idxs (−1 when dense), packed, scale,
 * alpha, Y, rows, dIn, dOut, k]`.
 */
export const ternaryMatmulTask: ParallelTask = {
  name: "ternaryMatmul",
  run(ctx, args, lo, hi) {
    const rows = args[6]!, dIn = args[7]!, dOut = args[8]!, k = args[9]!;
    const words = Math.ceil(dOut / 16);
    const q = new Int32Array(ctx.view(args[0]!, rows * k * 4));
    const idx = args[1]! < 0 ? null : new Uint32Array(ctx.view(args[1]!, rows * k * 4));
    const P = new Uint32Array(ctx.view(args[2]!, dIn * words * 4));
    const sc = new Float32Array(ctx.view(args[3]!, rows * 4));
    const a = new Float32Array(ctx.view(args[4]!, 4))[0]!;
    const Y = new Float32Array(ctx.view(args[5]!, rows * dOut * 4));
    const n = (hi - lo) * 16;
    if (acc.length < n) acc = new Int32Array(n);
    const A = acc;
    for (let r = 0; r < rows; r++) {
      A.fill(0, 0, n);
      let sumQ = 0;
      const e0 = r * k, e1 = e0 + k;
      let t = e0;
      for (; t + 4 <= e1; t += 4) {
        const q0 = q[t]!, q1 = q[t + 1]!, q2 = q[t + 2]!, q3 = q[t + 3]!;
        sumQ += q0 + q1 + q2 + q3;
        const o0 = (idx ? idx[t]! : t - e0) * words, o1 = (idx ? idx[t + 1]! : t + 1 - e0) * words;
        const o2 = (idx ? idx[t + 2]! : t + 2 - e0) * words;
        const o3 = (idx ? idx[t + 3]! : t + 3 - e0) * words;
        for (let wi = lo, b = 0; wi < hi; wi++, b += 16) {
          let w0 = P[o0 + wi]!, w1 = P[o1 + wi]!, w2 = P[o2 + wi]!, w3 = P[o3 + wi]!;
          for (let c = b; c < b + 16; c++) {
            A[c] = A[c]! + q0 * (w0 & 3) + q1 * (w1 & 3) + q2 * (w2 & 3) + q3 * (w3 & 3);
            w0 >>>= 2;
            w1 >>>= 2;
            w2 >>>= 2;
            w3 >>>= 2;
          }
        }
      }
      for (; t < e1; t++) {
        const q0 = q[t]!;
        sumQ += q0;
        const o0 = (idx ? idx[t]! : t - e0) * words;
        for (let wi = lo, b = 0; wi < hi; wi++, b += 16) {
          let w0 = P[o0 + wi]!;
          for (let c = b; c < b + 16; c++) {
            A[c] = A[c]! + q0 * (w0 & 3);
            w0 >>>= 2;
          }
        }
      }
      const s = sc[r]!, c1 = Math.min(dOut, hi * 16);
      for (let c = lo * 16, yo = r * dOut; c < c1; c++) {
        Y[yo + c] = f(f((A[c - lo * 16]! - sumQ) / s) * a);
      }
    }
  },
};

/** `[rows, cols]` f32 → int8 codes (i32 storage) and per-row multipliers. */
export function quantRowsNative(
  rows: number,
  cols: number,
  eps: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  const args = [...bufs.slice(0, 3).map((b) => rt.address(b)), rows, cols, eps];
  rt.parallel(quantRowsTask, rows, args, { minParallel: minRows(cols) });
}

/** Codes of the kept values of fixed-K rows, with the whole row's multiplier. */
export function quantKeptNative(
  rows: number,
  d: number,
  k: number,
  eps: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  const args = [...bufs.slice(0, 4).map((b) => rt.address(b)), rows, d, k, eps];
  rt.parallel(quantKeptTask, rows, args, { minParallel: minRows(d) });
}

/** Packs ternary codes of `[rows, cols]` weights (16 per u32) and writes α. */
export function packTernaryNative(
  rows: number,
  cols: number,
  eps: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  const n = rows * Math.ceil(cols / 16);
  if (n === 0) {
    new Float32Array(bufs[3]!)[0] = f(new Float32Array(bufs[1]!)[0]! + f(eps));
    return;
  }
  const args = [...bufs.slice(0, 4).map((b) => rt.address(b)), rows, cols, eps];
  rt.parallel(packTernaryTask, n, args, { minParallel: MIN_PARALLEL_ELEMS / 16 });
}

/** `w = t·α` from packed codes. */
export function unpackTernaryNative(
  rows: number,
  cols: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  const args = [...bufs.slice(0, 3).map((b) => rt.address(b)), rows, cols];
  rt.parallel(unpackTernaryTask, rows, args, { minParallel: minRows(cols) });
}

/** `x = q / s` per row, `n` codes in rows of `cols`. */
export function dequantRowsNative(
  n: number,
  cols: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  if (cols === 0 || n === 0) return;
  const rows = Math.ceil(n / cols);
  const args = [...bufs.slice(0, 3).map((b) => rt.address(b)), rows, cols, n];
  rt.parallel(dequantRowsTask, rows, args, { minParallel: minRows(cols) });
}

/**
 * `Y = codes · T · α / s` (int8 × packed ternary), dense codes or fixed-K sparse rows; buffers as
 * the twin's: codes, idxs (sparse only), packed, scale, alpha, Y.
 *
 * @param rows Rows of the codes and Y.
 * @param dIn Rows of the packed weights.
 * @param dOut Columns of the weights and Y.
 * @param k Entries per row (D_in when `dense`).
 * @param dense Whether the codes cover every input column.
 * @param bufs The dispatch's buffers.
 * @param rt The runtime.
 *
 * @example
 * ```ts
 * import { openDevice, quantizeWeights, spmmTernary, topkQuantized } from "@qsparse/kit";
 * using dev = await openDevice({ prefer: "native" });
 * using x = dev.randn([1, 64], { seed: 1 });
 * const w = quantizeWeights(dev.randn([64, 32], { seed: 2 }));
 * using y = spmmTernary(topkQuantized(x, 16), w); // runs ternaryMatmulNative
 * console.log(await y.data());
 * ```
 */
export function ternaryMatmulNative(
  rows: number,
  dIn: number,
  dOut: number,
  k: number,
  dense: boolean,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  const [codes, idxs, packed, scale, alpha, y] = dense ? [bufs[0], null, ...bufs.slice(1)] : bufs;
  const words = Math.ceil(dOut / 16);
  if (rows === 0 || words === 0) return;
  if (rt.blas && dIn > 0 && rows * k > dIn && 128 * k < 2 ** 24) {
    ternaryBySgemm(rows, dIn, dOut, k, [codes!, idxs ?? null, packed!, scale!, alpha!, y!], rt);
    return;
  }
  const args = [
    rt.address(codes!),
    idxs ? rt.address(idxs) : -1,
    rt.address(packed!),
    rt.address(scale!),
    rt.address(alpha!),
    rt.address(y!),
    rows,
    dIn,
    dOut,
    k,
  ];
  // Items are words (16 columns); worth the pool when the integer work is large.
  const minParallel = rows * k * words * 16 >= MIN_PARALLEL_ELEMS ? 0 : Infinity;
  rt.parallel(ternaryMatmulTask, words, args, { minParallel });
}

/** Scratch of the sgemm path (grown, never shrunk). */
let scratch = new ArrayBuffer(0);

/**
 * Batched int8 × ternary through sgemm, exact: codes and trits are small integers, so every
 * product and partial sum (|Σ| ≤ 128·k < 2²⁴) is an integer f32 holds exactly, whatever order
 * the BLAS adds in; the result is the twin's integer sum, scaled as the twin does. Used once the
 * kept entries outnumber D_in (the same crossover as the sparse matmul: unpacking W once costs
 * D_in·D_out, the TypeScript loop rows·k·D_out).
 */
function ternaryBySgemm(
  rows: number,
  dIn: number,
  dOut: number,
  k: number,
  [codes, idxs, packed, scale, alpha, y]: [
    ArrayBuffer,
    ArrayBuffer | null,
    ArrayBuffer,
    ArrayBuffer,
    ArrayBuffer,
    ArrayBuffer,
  ],
  rt: NativeRuntime,
): void {
  const nx = rows * dIn, nt = dIn * dOut, total = nx + nt + rows * dOut;
  if (scratch.byteLength < total * 4) scratch = new ArrayBuffer(total * 4);
  const X = new Float32Array(scratch, 0, nx), T = new Float32Array(scratch, nx * 4, nt);
  const acc = new Float32Array(scratch, (nx + nt) * 4, rows * dOut);
  const q = new Int32Array(codes, 0, rows * k),
    idx = idxs ? new Uint32Array(idxs, 0, rows * k) : null;
  X.fill(0);
  for (let r = 0; r < rows; r++) {
    const e0 = r * k, xo = r * dIn;
    // += so a repeated index adds, as in the twin.
    for (let t = e0; t < e0 + k; t++) X[xo + (idx ? idx[t]! : t - e0)] += q[t]!;
  }
  const words = Math.ceil(dOut / 16), P = new Uint32Array(packed, 0, dIn * words);
  for (let u = 0; u < dIn; u++) {
    for (let wi = 0, c = u * dOut; wi < words; wi++) {
      let w = P[u * words + wi]!;
      const end = Math.min(c + 16, (u + 1) * dOut);
      for (; c < end; c++, w >>>= 2) T[c] = (w & 3) - 1;
    }
  }
  const base = rt.address(scratch);
  rt.blas!.sgemm(
    false,
    false,
    rows,
    dOut,
    dIn,
    1,
    base,
    dIn,
    base + nx * 4,
    dOut,
    0,
    base + (nx + nt) * 4,
    dOut,
  );
  const sc = new Float32Array(scale, 0, rows), a = new Float32Array(alpha, 0, 1)[0]!;
  const Y = new Float32Array(y, 0, rows * dOut);
  for (let r = 0; r < rows; r++) {
    const s = sc[r]!;
    for (let c = r * dOut; c < (r + 1) * dOut; c++) Y[c] = f(f(acc[c]! / s) * a);
  }
}
