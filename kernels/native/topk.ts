/**
 * Native top-K (f32), parallel over rows (segments): the masked-dense form used in training
 * (`topkMask`, the per-row mask kernel of kernels/topk_small.ts and the dense row select of
 * kernels/topk.ts) and the sparse form (`topkRows` / `sparsify`, and N:M blocks through the
 * `segs` column offset). Each row is one O(D) radix select (./topk_select.ts) and one write pass.
 *
 * @module
 */
import type { NativeKernel, NativeRuntime, ParallelTask } from "../../src/backend/backend.ts";
import type { NmSpec } from "../nm.ts";
import type { TopkOrder, TopkParams, TopkSpec } from "../topk.ts";
import {
  candIdx,
  candKeys,
  kthKey,
  LOW_BITS,
  magnitudeHist,
  rowKeysHist,
  rowScratch,
  rowThreshold,
  sel,
  sortDescending,
  sortScratch,
} from "./topk_select.ts";

/** Rows are split across threads once a job has this many elements. */
const MIN_PARALLEL_ELEMS = 1 << 15;

/**
 * How the dense form rescales kept entries by ‖x‖₂/‖x_kept‖₂, mirroring one twin's f32 sums:
 * `row` (kernels/topk_small.ts: one sequential sum per row, dropped entries stay exactly 0) or
 * `chunked` (kernels/topk.ts: partial sums per chunk of columns, the factor multiplies every
 * entry).
 */
export type Rescale = "none" | "row" | "chunked";

const RESCALE_CODE: Record<Rescale, number> = { none: 0, row: 1, chunked: 2 };

/** Bits of f32 1.0. */
const ONE_BITS = 0x3f800000;

function minParallel(d: number): number {
  return Math.max(2, Math.ceil(MIN_PARALLEL_ELEMS / Math.max(1, d)));
}

/**
 * The masked-dense row by magnitude, the training hot path: one histogram pass, one
 * branch-free write pass that decides every entry outside the K-th key's bucket and collects the
 * bucket's indices, then the bucket's few entries ranked and turned on.
 */
function maskRowMagnitude(
  bits: Int32Array,
  outBits: Int32Array,
  maskBits: Int32Array | null,
  base: number,
  d: number,
  k: number,
): void {
  magnitudeHist(bits, base, d, k);
  const bkt = sel.bucket, rem = sel.rem, cnt = sel.count;
  // Keys above the bucket are > hiKey; hiKey − key cannot overflow (keys are in [0, 2³¹)).
  const hiKey = (bkt << LOW_BITS) | ((1 << LOW_BITS) - 1);
  const ci = candIdx();
  let np = 0;
  for (let j = 0; j < d; j++) {
    const b = bits[base + j]!, m = b & 0x7fffffff;
    const key = m > 0x7f800000 ? 0x7fffffff : m;
    const neg = (hiKey - key) >> 31; // −1 when key > hiKey, else 0
    outBits[base + j] = b & neg;
    if (maskBits) maskBits[base + j] = ONE_BITS & neg;
    ci[np] = j;
    np += (((key >>> LOW_BITS) ^ bkt) - 1) >>> 31; // 1 when in the bucket
  }
  if (rem === cnt) {
    for (let q = 0; q < np; q++) {
      const j = ci[q]!;
      outBits[base + j] = bits[base + j]!;
      if (maskBits) maskBits[base + j] = ONE_BITS;
    }
    return;
  }
  const ck = candKeys();
  for (let q = 0; q < np; q++) {
    const m = bits[base + ci[q]!]! & 0x7fffffff;
    ck[q] = m > 0x7f800000 ? 0x7fffffff : m;
  }
  const t = kthKey(ck, np, rem), ties = sel.ties;
  let taken = 0;
  for (let q = 0; q < np; q++) {
    const j = ci[q]!, m = bits[base + j]! & 0x7fffffff;
    const key = m > 0x7f800000 ? 0x7fffffff : m;
    if (key > t || (key === t && taken++ < ties)) {
      outBits[base + j] = bits[base + j]!;
      if (maskBits) maskBits[base + j] = ONE_BITS;
    }
  }
}

/**
 * Dense task: args `[x, out, mask (0 = none), d, k, byValue, rescale, chunk]`, items = segments
 * of length d. Writes x where kept and 0 elsewhere, and the 0/1 mask.
 */
export const topkMaskF32Task: ParallelTask = {
  name: "topkMaskF32",
  run(ctx, args, lo0, hi0) {
    // Integer parameters arrive as f64; int32 copies keep index math in integer registers.
    const lo = lo0 | 0, hi = hi0 | 0;
    const d = args[3]! | 0, k = args[4]! | 0, byValue = args[5] === 1, rescale = args[6]! | 0;
    const chunk = args[7]! | 0;
    const bytes = hi * d * 4;
    const xb = ctx.view(args[0]!, bytes);
    const x = new Float32Array(xb), bits = new Int32Array(xb);
    const ob = ctx.view(args[1]!, bytes), out = new Float32Array(ob), outBits = new Int32Array(ob);
    const mb = args[2] ? ctx.view(args[2], bytes) : null;
    const mask = mb ? new Float32Array(mb) : null, maskBits = mb ? new Int32Array(mb) : null;
    const keys = rowScratch(d);
    const fr = Math.fround;
    const flip = byValue ? -2147483648 : 0;
    for (let s = lo; s < hi; s++) {
      const base = s * d;
      if (k === 0) {
        out.fill(0, base, base + d);
        if (mask) mask.fill(0, base, base + d);
        continue;
      }
      if (rescale === 0 && !byValue) {
        maskRowMagnitude(bits, outBits, maskBits, base, d, k);
        continue;
      }
      rowKeysHist(bits, base, d, k, byValue, keys);
      if (rescale === 0) {
        // One pass decides every key outside the K-th key's bucket and collects the bucket's
        // (index order); ranking those few then turns the kept ones on.
        const bkt = sel.bucket, rem = sel.rem, cnt = sel.count;
        const ci = candIdx(), ck = candKeys();
        let np = 0;
        // Branch-free (a kept/dropped branch mispredicts on half the entries): bit masks copy x
        // or write +0, and every entry is stored as a candidate but only the bucket's advance.
        for (let j = 0; j < d; j++) {
          const key = keys[j]!;
          const dg = (key ^ flip) >>> LOW_BITS;
          const neg = -((bkt - dg) >>> 31); // −1 when dg > bkt, else 0
          outBits[base + j] = bits[base + j]! & neg;
          if (maskBits) maskBits[base + j] = ONE_BITS & neg;
          ci[np] = j;
          ck[np] = key;
          np += ((dg ^ bkt) - 1) >>> 31; // 1 when dg === bkt
        }
        const t = rem === cnt ? -2147483648 : kthKey(ck, np, rem);
        const ties = rem === cnt ? np : sel.ties;
        let taken = 0;
        for (let q = 0; q < np; q++) {
          const j = ci[q]!, key = keys[j]!;
          if (key > t || (key === t && taken++ < ties)) {
            outBits[base + j] = bits[base + j]!;
            if (maskBits) maskBits[base + j] = ONE_BITS;
          }
        }
        continue;
      }
      const t = rowThreshold(keys, d, byValue);
      const ties = sel.ties;
      let taken = 0;
      // Rescale: the kept set first (in the mask, or in `out` as a 0/1 flag), then the sums in
      // the twin's order, then the scaled values.
      let all = 0, kept = 0, sa = 0, sk = 0;
      for (let j = 0; j < d; j++) {
        const key = keys[j]!;
        let keep = key > t;
        if (key === t && taken < ties) {
          keep = true;
          taken++;
        }
        const v = x[base + j]!, vv = fr(v * v);
        sa = fr(sa + vv);
        if (keep) sk = fr(sk + vv);
        if ((j + 1) % chunk === 0 || j === d - 1) {
          all = fr(all + sa);
          kept = fr(kept + sk);
          sa = 0;
          sk = 0;
        }
        keys[j] = keep ? 1 : 0;
      }
      const f = kept > 0 ? fr(Math.sqrt(fr(all / kept))) : 1;
      const zero = rescale === 2 ? fr(0 * f) : 0;
      for (let j = 0; j < d; j++) {
        const keep = keys[j] === 1;
        out[base + j] = keep ? fr(x[base + j]! * f) : zero;
        if (mask) mask[base + j] = keep ? 1 : 0;
      }
    }
  },
};

/**
 * Sparse task: args `[x, vals, idxs, d, k, byValue, sorted, segs]`, items = rows of length d.
 * Writes the K kept values and their column indices `local + (row mod segs)·d`, in ascending
 * column order, or by (key desc, index asc) when sorted.
 */
export const topkRowsF32Task: ParallelTask = {
  name: "topkRowsF32",
  run(ctx, args, lo0, hi0) {
    // Integer parameters arrive as f64; int32 copies keep index math in integer registers.
    const lo = lo0 | 0, hi = hi0 | 0;
    const d = args[3]! | 0, k = args[4]! | 0, byValue = args[5] === 1, sorted = args[6] === 1;
    const segs = args[7]! | 0;
    const xb = ctx.view(args[0]!, hi * d * 4);
    const bits = new Int32Array(xb);
    // Values are copied as bit patterns (exact, NaN payloads included).
    const vbits = new Int32Array(ctx.view(args[1]!, hi * k * 4));
    const idxs = new Uint32Array(ctx.view(args[2]!, hi * k * 4));
    const keys = rowScratch(d);
    const flip = byValue ? -2147483648 : 0;
    for (let r = lo; r < hi; r++) {
      const base = r * d, ob = r * k, ioff = (r % segs) * d;
      rowKeysHist(bits, base, d, k, byValue, keys);
      const t = rowThreshold(keys, d, byValue);
      const ties = sel.ties;
      let taken = 0, pos = 0;
      if (!sorted) {
        // Branch-free compaction: every entry is written at `pos`, which only kept ones advance
        // (the loop stops at K, so nothing lands past the row's slots). Only keys equal to T take
        // a branch, and they are rare.
        if (!byValue) {
          // Magnitude keys lie in [0, 2³¹), so T − key cannot overflow: its sign says key > T.
          for (let j = 0; j < d; j++) {
            const key = keys[j]!;
            vbits[ob + pos] = bits[base + j]!;
            idxs[ob + pos] = ioff + j;
            let keep = (t - key) >>> 31;
            if (key === t) keep = taken++ < ties ? 1 : 0;
            pos += keep;
            if (pos === k) break;
          }
          continue;
        }
        // Value keys span all of int32: compare top digits, and the keys themselves only inside
        // T's bucket, where they share the top bits.
        const bkt = sel.bucket;
        for (let j = 0; j < d; j++) {
          const key = keys[j]!;
          const dg = (key ^ flip) >>> LOW_BITS;
          vbits[ob + pos] = bits[base + j]!;
          idxs[ob + pos] = ioff + j;
          let keep = ((bkt - dg) >>> 31) | ((((dg ^ bkt) - 1) >>> 31) & ((t - key) >>> 31));
          if (key === t) keep = taken++ < ties ? 1 : 0;
          pos += keep;
          if (pos === k) break;
        }
        continue;
      }
      // Rank order: the kept (key, index) pairs in index order, then a stable radix sort by key.
      const [sk, si] = sortScratch(k);
      const bkt = sel.bucket;
      for (let j = 0; j < d; j++) {
        // Branch-free as above (digit compare, then the key itself inside T's bucket).
        const key = keys[j]!;
        const dg = (key ^ flip) >>> LOW_BITS;
        sk[pos] = key;
        si[pos] = j;
        let keep = ((bkt - dg) >>> 31) | ((((dg ^ bkt) - 1) >>> 31) & ((t - key) >>> 31));
        if (key === t) keep = taken++ < ties ? 1 : 0;
        pos += keep;
        if (pos === k) break;
      }
      const [, order] = sortDescending(k, byValue);
      for (let q = 0; q < k; q++) {
        const j = order[q]!;
        vbits[ob + q] = bits[base + j]!;
        idxs[ob + q] = ioff + j;
      }
    }
  },
};

/**
 * Native masked-dense top-K over `segs` segments of length `d` (f32).
 *
 * @param segs Segments (rows, or N:M blocks).
 * @param d Segment length.
 * @param k Kept per segment.
 * @param order Magnitude or value.
 * @param rescale Rescale flavour (which twin's sums to mirror).
 * @param chunk Columns per rescale partial sum (`chunked`).
 * @param bufs x, out, [mask].
 * @param rt The runtime.
 */
export function topkMaskF32Native(
  segs: number,
  d: number,
  k: number,
  order: TopkOrder,
  rescale: Rescale,
  chunk: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  const mask = bufs[2] ? rt.address(bufs[2]) : 0;
  rt.parallel(
    topkMaskF32Task,
    segs,
    [
      rt.address(bufs[0]!),
      rt.address(bufs[1]!),
      mask,
      d,
      k,
      order === "value" ? 1 : 0,
      RESCALE_CODE[rescale],
      rescale === "chunked" ? chunk : d,
    ],
    { minParallel: minParallel(d) },
  );
}

/**
 * Native sparse top-K over `rows` rows of length `d` (f32), `1 ≤ k ≤ d`.
 *
 * @param rows Rows (or N:M blocks).
 * @param d Row length.
 * @param k Kept per row.
 * @param order Magnitude or value.
 * @param sorted Rank order (key desc, index asc) instead of column order.
 * @param segs Segments per logical row (column offset `(row mod segs)·d`).
 * @param bufs x, vals, idxs.
 * @param rt The runtime.
 */
export function topkRowsF32Native(
  rows: number,
  d: number,
  k: number,
  order: TopkOrder,
  sorted: boolean,
  segs: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  if (k === 0) return;
  rt.parallel(
    topkRowsF32Task,
    rows,
    [
      rt.address(bufs[0]!),
      rt.address(bufs[1]!),
      rt.address(bufs[2]!),
      d,
      k,
      order === "value" ? 1 : 0,
      sorted ? 1 : 0,
      segs,
    ],
    { minParallel: minParallel(d) },
  );
}

/**
 * The native kernel of a row-select dispatch (kernels/topk.ts), or undefined where the CPU twin
 * must run (non-f32 storage).
 *
 * @param s The dispatch's specialisation.
 * @param p Its sizes.
 * @returns The native kernel, or undefined.
 */
export function topkRowsNativeFor(s: TopkSpec, p: TopkParams): NativeKernel | undefined {
  if (s.dtype !== "f32") return undefined;
  if (s.output === "sparse") {
    return (bufs, rt) => topkRowsF32Native(p.rows, p.d, p.k, s.order, s.sorted, p.segs, bufs, rt);
  }
  const rescale: Rescale = s.rescale ? "chunked" : "none";
  const chunk = Math.ceil(p.d / s.wg);
  return (bufs, rt) => topkMaskF32Native(p.rows, p.d, p.k, s.order, rescale, chunk, bufs, rt);
}

/**
 * The native kernel of an N:M dispatch (kernels/nm.ts): the row kernels run on the blocks as
 * segments of length m, or undefined for non-f32 storage.
 *
 * @param s The N:M specialisation.
 * @param rows Rows.
 * @param d Row length (m divides it).
 * @returns The native kernel, or undefined.
 */
export function nmNativeFor(s: NmSpec, rows: number, d: number): NativeKernel | undefined {
  if (s.dtype !== "f32") return undefined;
  const bpr = d / s.m, blocks = rows * bpr;
  if (s.output === "sparse") {
    return (bufs, rt) => topkRowsF32Native(blocks, s.m, s.n, s.order, false, bpr, bufs, rt);
  }
  return (bufs, rt) => topkMaskF32Native(blocks, s.m, s.n, s.order, "none", s.m, bufs, rt);
}
