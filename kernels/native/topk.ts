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
import { keyScratch, kthKey, rowKeys, selTies } from "./topk_select.ts";

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

/** Per-thread scratch of packed (key, index) pairs for rank-ordered output. */
let packed = new Float64Array(0);

/** Index bits in a packed pair: rows up to 2²¹ columns (key bits + these fit in 53). */
const IDX_BITS = 2 ** 21;

/** Longest row the rank-ordered sparse output handles (packed pairs must stay exact). */
export const TOPK_NATIVE_SORTED_MAX_D = IDX_BITS;

function minParallel(d: number): number {
  return Math.max(2, Math.ceil(MIN_PARALLEL_ELEMS / Math.max(1, d)));
}

/**
 * Dense task: args `[x, out, mask (0 = none), d, k, byValue, rescale, chunk]`, items = segments
 * of length d. Writes x where kept and 0 elsewhere, and the 0/1 mask.
 */
export const topkMaskF32Task: ParallelTask = {
  name: "topkMaskF32",
  run(ctx, args, lo, hi) {
    const d = args[3]!, k = args[4]!, byValue = args[5] === 1, rescale = args[6]!;
    const chunk = args[7]!;
    const bytes = hi * d * 4;
    const xb = ctx.view(args[0]!, bytes);
    const x = new Float32Array(xb), bits = new Int32Array(xb);
    const out = new Float32Array(ctx.view(args[1]!, bytes));
    const mask = args[2] ? new Float32Array(ctx.view(args[2], bytes)) : null;
    const keys = keyScratch(d);
    const fr = Math.fround;
    for (let s = lo; s < hi; s++) {
      const base = s * d;
      if (k === 0) {
        out.fill(0, base, base + d);
        if (mask) mask.fill(0, base, base + d);
        continue;
      }
      rowKeys(bits, base, d, byValue, keys);
      const t = kthKey(keys, d, k, byValue);
      const ties = selTies;
      let taken = 0;
      if (rescale === 0) {
        for (let j = 0; j < d; j++) {
          const key = keys[j]!;
          let keep = key > t;
          if (key === t && taken < ties) {
            keep = true;
            taken++;
          }
          out[base + j] = keep ? x[base + j]! : 0;
          if (mask) mask[base + j] = keep ? 1 : 0;
        }
        continue;
      }
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
  run(ctx, args, lo, hi) {
    const d = args[3]!, k = args[4]!, byValue = args[5] === 1, sorted = args[6] === 1;
    const segs = args[7]!;
    const xb = ctx.view(args[0]!, hi * d * 4);
    const x = new Float32Array(xb), bits = new Int32Array(xb);
    const vals = new Float32Array(ctx.view(args[1]!, hi * k * 4));
    const idxs = new Uint32Array(ctx.view(args[2]!, hi * k * 4));
    const keys = keyScratch(d);
    const flip = byValue ? -2147483648 : 0;
    if (sorted && packed.length < k) packed = new Float64Array(Math.max(k, 2 * packed.length));
    for (let r = lo; r < hi; r++) {
      const base = r * d, ob = r * k, ioff = (r % segs) * d;
      rowKeys(bits, base, d, byValue, keys);
      const t = kthKey(keys, d, k, byValue);
      const ties = selTies;
      let taken = 0, pos = 0;
      if (!sorted) {
        for (let j = 0; j < d; j++) {
          const key = keys[j]!;
          if (key > t || (key === t && taken++ < ties)) {
            vals[ob + pos] = x[base + j]!;
            idxs[ob + pos] = ioff + j;
            pos++;
          }
        }
        continue;
      }
      // Rank order: pack (unsigned key, reversed index) into one exact f64 and sort ascending.
      const pk = packed;
      for (let j = 0; j < d; j++) {
        const key = keys[j]!;
        if (key > t || (key === t && taken++ < ties)) {
          pk[pos++] = ((key ^ flip) >>> 0) * IDX_BITS + (IDX_BITS - 1 - j);
        }
      }
      const view = pk.subarray(0, k).sort();
      for (let q = 0; q < k; q++) {
        const j = IDX_BITS - 1 - (view[k - 1 - q]! % IDX_BITS);
        vals[ob + q] = x[base + j]!;
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
 * @param sorted Rank order instead of column order (`d` ≤ {@link TOPK_NATIVE_SORTED_MAX_D}).
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
 * must run (non-f32 storage, rank order on rows too long for packed pairs).
 *
 * @param s The dispatch's specialisation.
 * @param p Its sizes.
 * @returns The native kernel, or undefined.
 */
export function topkRowsNativeFor(s: TopkSpec, p: TopkParams): NativeKernel | undefined {
  if (s.dtype !== "f32" || (s.sorted && p.d > TOPK_NATIVE_SORTED_MAX_D)) return undefined;
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
