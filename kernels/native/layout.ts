/**
 * Native data movement of kernels/layout.ts: strided row copies (slice, concat), the batched
 * transpose of the last two dims (the permute walk), and `sumTo`, the reduction that undoes a
 * broadcast in autograd.
 *
 * `sumTo` adds, for each output element, its reduced positions in the twin's order into an f64
 * accumulator, so it returns the twin's bits. When the innermost output dim is contiguous in the
 * input (a bias gradient `[N, D] → [D]`, or summing `[k, …]` partials), a run of outputs is
 * accumulated together, one contiguous input row at a time, instead of one output at a time down
 * a column.
 *
 * @module
 */
import type { NativeRuntime } from "../../src/backend/backend.ts";
import type { RowCopy, SumToLayout } from "../layout.ts";
import { permuteLayout } from "../permute.ts";
import { launch, type Launchable, launchable, SET_MIN } from "./host_job.ts";
import { permuteNative } from "./permute.ts";

/**
 * Row-copy job over rows: buffers `[src, dst]`, params `[bytesPerElement, cols, srcStride,
 * srcOff, dstStride, dstOff]`.
 */
const rowCopyJob: Launchable = launchable({
  name: "rowCopyWords",
  buffers: 2,
  run(bufs, p, lo, hi) {
    const two = p[0] === 2;
    const s = two ? new Uint16Array(bufs[0]!) : new Int32Array(bufs[0]!);
    const d = two ? new Uint16Array(bufs[1]!) : new Int32Array(bufs[1]!);
    const cols = p[1]!, ss = p[2]!, so = p[3]!, ds = p[4]!, dO = p[5]!;
    for (let r = lo; r < hi; r++) {
      const a = r * ss + so, b = r * ds + dO;
      if (cols >= SET_MIN) d.set(s.subarray(a, a + cols), b);
      else for (let j = 0; j < cols; j++) d[b + j] = s[a + j]!;
    }
  },
});

/** Per-thread scratch: f64 accumulators of a run and the reduced offsets. */
let acc = new Float64Array(256);
let offs = new Float64Array(256);

/** Reduced-position offsets into `offs` (params from index 2 + 16). */
function reducedOffsets(p: ArrayLike<number>, nred: number): Float64Array {
  const redRank = p[1]!;
  if (offs.length < nred) offs = new Float64Array(Math.max(nred, offs.length * 2));
  for (let r = 0; r < nred; r++) {
    let rem = r, off = 0;
    for (let k = redRank - 1; k >= 0; k--) {
      const dim = p[18 + k]!;
      const c = rem % dim;
      rem = (rem - c) / dim;
      off += c * p[26 + k]!;
    }
    offs[r] = off;
  }
  return offs;
}

/** Input offset of output element `i` (out coordinates through `inStrides`). */
function outBase(p: ArrayLike<number>, i: number): number {
  const outRank = p[0]!;
  let rem = i, base = 0;
  for (let k = outRank - 1; k >= 0; k--) {
    const dim = p[2 + k]!;
    const c = rem % dim;
    rem = (rem - c) / dim;
    base += c * p[10 + k]!;
  }
  return base;
}

/**
 * `sumTo` job over output elements: buffers `[src, dst]`, params `[outRank, redRank, outShape×8,
 * inStrides×8, redShape×8, redStrides×8, nred]`.
 */
const sumToJob: Launchable = launchable({
  name: "sumToF32",
  buffers: 2,
  run(bufs, p, lo, hi) {
    const s = new Float32Array(bufs[0]!), d = new Float32Array(bufs[1]!, 0, hi);
    const outRank = p[0]!, nred = p[34]!;
    const o = reducedOffsets(p, nred);
    const inner = outRank > 0 ? p[2 + outRank - 1]! : 1;
    if (outRank === 0 || p[10 + outRank - 1] !== 1 || inner < 4) {
      // One output at a time (the reduced dims are innermost, or the output is tiny).
      if (p[1] === 1 && p[26] === 1) {
        // A single contiguous reduced dim (`[N, D] → [N, 1]`): no offset table.
        for (let i = lo; i < hi; i++) {
          const base = outBase(p, i);
          let a = 0;
          for (let r = base; r < base + nred; r++) a += s[r]!;
          d[i] = a;
        }
        return;
      }
      for (let i = lo; i < hi; i++) {
        const base = outBase(p, i);
        let a = 0;
        for (let r = 0; r < nred; r++) a += s[base + o[r]!]!;
        d[i] = a;
      }
      return;
    }
    // Runs of outputs along the contiguous innermost output dim.
    if (acc.length < inner) acc = new Float64Array(inner);
    let i = lo;
    while (i < hi) {
      const j0 = i % inner;
      const len = Math.min(inner - j0, hi - i);
      const base = outBase(p, i);
      acc.fill(0, 0, len);
      for (let r = 0; r < nred; r++) {
        const off = base + o[r]!;
        for (let j = 0; j < len; j++) acc[j] = acc[j]! + s[off + j]!;
      }
      for (let j = 0; j < len; j++) d[i + j] = acc[j]!;
      i += len;
    }
  },
});

/** Tasks of this file, for kernels/native/tasks.ts. */
export const LAYOUT_TASKS = [rowCopyJob.task, sumToJob.task];

/**
 * Native strided row copy.
 *
 * @param bytesPerElement 2 or 4.
 * @param c The copy.
 * @param src Source buffer.
 * @param dst Destination buffer.
 * @param rt The runtime.
 * @example
 * ```ts ignore
 * native: ([s, d], rt) => rowCopyNative(4, c, s!, d!, rt)
 * ```
 */
export function rowCopyNative(
  bytesPerElement: number,
  c: RowCopy,
  src: ArrayBuffer,
  dst: ArrayBuffer,
  rt: NativeRuntime,
): void {
  if (c.cols <= 0) return;
  launch(rt, rowCopyJob, c.rows, [src, dst], [
    bytesPerElement,
    c.cols,
    c.srcStride,
    c.srcOff,
    c.dstStride,
    c.dstOff,
  ], { align: 1, minParallel: Math.max(2, Math.ceil((1 << 16) / c.cols)) });
}

/**
 * Native batched transpose `[batch, rows, cols] → [batch, cols, rows]`.
 *
 * @param bytesPerElement 2 or 4.
 * @param batch Batch count.
 * @param rows Rows.
 * @param cols Columns.
 * @param src Source buffer.
 * @param dst Destination buffer.
 * @param rt The runtime.
 * @example
 * ```ts ignore
 * native: ([s, d], rt) => transposeNative(4, batch, rows, cols, s!, d!, rt)
 * ```
 */
export function transposeNative(
  bytesPerElement: number,
  batch: number,
  rows: number,
  cols: number,
  src: ArrayBuffer,
  dst: ArrayBuffer,
  rt: NativeRuntime,
): void {
  if (batch * rows * cols === 0) return;
  permuteNative(bytesPerElement, permuteLayout([batch, rows, cols], [0, 2, 1]), src, dst, rt);
}

/**
 * Native `sumTo` on f32.
 *
 * @param l The layout.
 * @param src Input buffer.
 * @param dst Output buffer.
 * @param rt The runtime.
 * @example
 * ```ts ignore
 * native: dtype === "f32" ? ([s, d], rt) => sumToNative(l, s!, d!, rt) : undefined
 * ```
 */
export function sumToNative(
  l: SumToLayout,
  src: ArrayBuffer,
  dst: ArrayBuffer,
  rt: NativeRuntime,
): void {
  const outRank = l.outShape.length, redRank = l.redShape.length;
  let nred = 1;
  for (const d of l.redShape) nred *= d;
  const params = new Array<number>(35).fill(0);
  params[0] = outRank;
  params[1] = redRank;
  for (let k = 0; k < outRank; k++) {
    params[2 + k] = l.outShape[k]!;
    params[10 + k] = l.inStrides[k]!;
  }
  for (let k = 0; k < redRank; k++) {
    params[18 + k] = l.redShape[k]!;
    params[26 + k] = l.redStrides[k]!;
  }
  params[34] = nred;
  launch(rt, sumToJob, l.outSize, [src, dst], params, {
    align: 16,
    minParallel: Math.max(2, Math.ceil((1 << 16) / Math.max(1, nred))),
  });
}
