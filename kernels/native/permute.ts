/**
 * Native permuted copy (and, through the same walk, the batched transpose of layout.ts): the
 * output is written in order while the input is read through the collapsed layout's strides.
 * Pure data movement, so any dtype works by moving 32-bit (or, for f16, 16-bit) words.
 *
 * Two walks: when the innermost output dim is contiguous in the input (attention's head split
 * and merge keep `hd` contiguous), runs along it are plain copies; otherwise (a real transpose of
 * the last two dims) the last two output dims are copied in 32×32 tiles so the strided side of
 * each tile stays in cache.
 *
 * @module
 */
import type { NativeRuntime } from "../../src/backend/backend.ts";
import type { PermuteLayout } from "../permute.ts";
import { launch, type Launchable, launchable, SET_MIN } from "./host_job.ts";

/** Odometer coordinates (per thread). */
const coord = new Float64Array(8);

/** Tile edge of the transposing walk. */
const TILE = 32;

function words(bytesPerElement: number, buf: ArrayBuffer): Int32Array | Uint16Array {
  return bytesPerElement === 2 ? new Uint16Array(buf) : new Int32Array(buf);
}

/** Copies `n` elements `o[io + i] = x[ix + i·s]`. */
function run(
  x: Int32Array | Uint16Array,
  ix: number,
  s: number,
  o: Int32Array | Uint16Array,
  io: number,
  n: number,
): void {
  if (s === 1) {
    if (n >= SET_MIN) o.set(x.subarray(ix, ix + n), io);
    else for (let i = 0; i < n; i++) o[io + i] = x[ix + i]!;
  } else {
    for (let i = 0; i < n; i++, ix += s) o[io + i] = x[ix]!;
  }
}

/**
 * Walk over output elements `[lo, hi)` in runs along the innermost dim. Params after the element
 * size: `rank, shape×8, strides×8`.
 */
function runWalk(
  x: Int32Array | Uint16Array,
  o: Int32Array | Uint16Array,
  p: ArrayLike<number>,
  lo: number,
  hi: number,
): void {
  const rank = p[1]!, last = rank - 1;
  const d = p[2 + last]!, s = p[10 + last]!;
  let rem = lo, ix = 0;
  for (let k = last; k >= 0; k--) {
    const dim = p[2 + k]!;
    const c = rem % dim;
    rem = (rem - c) / dim;
    coord[k] = c;
    ix += c * p[10 + k]!;
  }
  let i = lo;
  while (i < hi) {
    const c = coord[last]!;
    const len = Math.min(d - c, hi - i);
    run(x, ix, s, o, i, len);
    i += len;
    if (i >= hi) break;
    ix -= c * s;
    coord[last] = 0;
    for (let k = last - 1; k >= 0; k--) {
      ix += p[10 + k]!;
      if (++coord[k]! < p[2 + k]!) break;
      coord[k] = 0;
      ix -= p[10 + k]! * p[2 + k]!;
    }
  }
}

/**
 * {@link runWalk} for rank ≤ 4 (shape padded with leading 1s): nested loops over the outer
 * coordinates instead of an odometer, so a short inner run (attention's `hd` = 32) costs little
 * beyond its copy.
 */
function runWalk4(
  x: Int32Array | Uint16Array,
  o: Int32Array | Uint16Array,
  p: ArrayLike<number>,
  lo: number,
  hi: number,
): void {
  const rank = p[1]!, pad = 4 - rank;
  const dim = (k: number) => (k < pad ? 1 : p[2 + k - pad]!);
  const str = (k: number) => (k < pad ? 0 : p[10 + k - pad]!);
  const d0 = dim(0), d1 = dim(1), d2 = dim(2), d3 = dim(3);
  const s0 = str(0), s1 = str(1), s2 = str(2), s3 = str(3);
  let t = lo;
  let c3 = t % d3;
  t = (t - c3) / d3;
  let c2 = t % d2;
  t = (t - c2) / d2;
  let c1 = t % d1;
  let c0 = (t - c1) / d1;
  let i = lo;
  for (; c0 < d0 && i < hi; c0++, c1 = 0) {
    for (; c1 < d1 && i < hi; c1++, c2 = 0) {
      for (; c2 < d2 && i < hi; c2++, c3 = 0) {
        const ix = c0 * s0 + c1 * s1 + c2 * s2 + c3 * s3;
        const len = Math.min(d3 - c3, hi - i);
        if (s3 !== 1) {
          for (let j = 0, k = ix; j < len; j++, k += s3) o[i + j] = x[k]!;
        } else if (len >= SET_MIN) o.set(x.subarray(ix, ix + len), i);
        else for (let j = 0; j < len; j++) o[i + j] = x[ix + j]!;
        i += len;
      }
    }
  }
}

/**
 * Tiled walk over output rows `[lo, hi)` of the last two dims (`R × C` matrices, rows counted
 * across all leading indices).
 */
function tileWalk(
  x: Int32Array | Uint16Array,
  o: Int32Array | Uint16Array,
  p: ArrayLike<number>,
  lo: number,
  hi: number,
): void {
  const rank = p[1]!;
  const R = p[2 + rank - 2]!, C = p[2 + rank - 1]!;
  const sR = p[10 + rank - 2]!, sC = p[10 + rank - 1]!;
  let row = lo;
  while (row < hi) {
    // Matrix index m and the input base of its leading coordinates.
    const m = Math.floor(row / R);
    let rem = m, base = 0;
    for (let k = rank - 3; k >= 0; k--) {
      const dim = p[2 + k]!;
      const c = rem % dim;
      rem = (rem - c) / dim;
      base += c * p[10 + k]!;
    }
    const r0 = row - m * R, r1 = Math.min(R, hi - m * R);
    const obase = m * R * C;
    for (let rb = r0; rb < r1; rb += TILE) {
      const re = Math.min(r1, rb + TILE);
      for (let cb = 0; cb < C; cb += TILE) {
        const ce = Math.min(C, cb + TILE);
        for (let r = rb; r < re; r++) {
          const orow = obase + r * C;
          let ix = base + r * sR + cb * sC;
          for (let c = cb; c < ce; c++, ix += sC) o[orow + c] = x[ix]!;
        }
      }
    }
    row = m * R + r1;
  }
}

/**
 * Permute job: buffers `[x, out]`, params `[bytesPerElement, rank, shape×8, strides×8, tiled]`.
 * Items are output elements (run walk) or output rows of the last two dims (tiled walk).
 */
const permuteJob: Launchable = launchable({
  name: "permuteWords",
  buffers: 2,
  run(bufs, p, lo, hi) {
    const x = words(p[0]!, bufs[0]!), o = words(p[0]!, bufs[1]!);
    if (p[18] === 1) tileWalk(x, o, p, lo, hi);
    else if (p[1]! <= 4) runWalk4(x, o, p, lo, hi);
    else runWalk(x, o, p, lo, hi);
  },
});

/** Tasks of this file, for kernels/native/tasks.ts. */
export const PERMUTE_TASKS = [permuteJob.task];

/**
 * Native permuted copy over a collapsed layout (rank ≤ 8).
 *
 * @param bytesPerElement 2 or 4.
 * @param l Collapsed layout.
 * @param x Input buffer.
 * @param out Output buffer.
 * @param rt The runtime.
 * @example
 * ```ts ignore
 * native: (bufs, rt) => permuteNative(bytesPerElement(dtype), l, bufs[0]!, bufs[1]!, rt)
 * ```
 */
export function permuteNative(
  bytesPerElement: number,
  l: PermuteLayout,
  x: ArrayBuffer,
  out: ArrayBuffer,
  rt: NativeRuntime,
): void {
  const rank = l.shape.length;
  let n = 1;
  for (const d of l.shape) n *= d;
  const params = new Array<number>(19).fill(0);
  params[0] = bytesPerElement;
  params[1] = rank;
  for (let k = 0; k < rank; k++) {
    params[2 + k] = l.shape[k]!;
    params[10 + k] = l.strides[k]!;
  }
  // Tile when the innermost dim is strided and short runs would touch a new line per element.
  const tiled = rank >= 2 && l.strides[rank - 1] !== 1 && l.shape[rank - 2]! >= 8;
  params[18] = tiled ? 1 : 0;
  if (tiled) {
    const C = l.shape[rank - 1]!;
    launch(rt, permuteJob, n / C, [x, out], params, {
      align: TILE,
      minParallel: Math.max(2, Math.ceil((1 << 16) / C)),
    });
  } else {
    launch(rt, permuteJob, n, [x, out], params);
  }
}
