/**
 * Top-K mask of many short rows, one invocation per row (or per N:M block): the masked-dense form
 * that training applies at every projection input. A training batch has thousands of rows of
 * width 32–1024; the workgroup-per-row radix kernel (kernels/topk.ts) spends most of its time in
 * barriers there, while here an invocation walks its row in registers and cache with no barriers.
 *
 * Per row (segment) of length d, keep k, with the order keys of kernels/topk.ts
 * (magnitude: `bits & 0x7fffffff`, NaN highest; or value order):
 * 1. the k-th largest key T, built bit by bit from the top: a bit stays set when at least k keys
 *    are ≥ the prefix with it (one counting pass over the row per two key bits: three counts, for
 *    the prefixes with 01, 10 and 11 appended, give both bits at once). The search stops at
 *    the first prefix that exactly k keys reach: those k are the top k, so T may be taken just
 *    below the prefix, with no ties (for real activations about half the bits, since the K-th
 *    and K+1-th keys part within a few mantissa bits);
 * 2. keep every key > T, and the lowest-index keys == T until k are kept (ties to the lower index);
 * 3. optionally scale the kept entries by ‖x‖₂/‖x_kept‖₂ and write a 0/1 mask.
 *
 * Work is O(32·d) per row at most; rows of up to a few thousand elements stay in L1 on a CPU
 * adapter.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { type DType, typedView } from "../src/core/dtype.ts";
import { keyFnWgsl, type TopkOrder } from "./topk.ts";
import { topkMaskF32Native } from "./native/topk.ts";
import { defineKernel } from "./spec.ts";

/** Longest segment the per-invocation kernel is used for (longer rows use kernels/topk.ts). */
export const TOPK_SMALL_MAX_D = 2048;

/** Specialisation of the per-row mask kernel. */
export interface TopkSmallSpec {
  dtype: DType;
  order: TopkOrder;
  /** Also write a 0/1 mask (x's dtype). */
  mask: boolean;
  /** Scale kept entries by ‖x‖₂/‖x_kept‖₂ per segment. */
  rescale: boolean;
}

const WG = 64;

/** Bindings of every top-K mask kernel (this one and kernels/topk_coop.ts): x, out, mask. */
export const TOPK_MASK_BINDINGS = [
  { name: "x", type: "T", access: "read" },
  { name: "out", type: "T", access: "read_write" },
  { name: "msk", type: "T", access: "read_write", optional: true },
] as const;

const TOPK_SMALL = defineKernel({
  name: "topkSmall",
  bindings: TOPK_MASK_BINDINGS,
  params: { segs: "u32", d: "u32", k: "u32" },
});

/** WGSL of the per-row mask kernel. */
export function topkSmallWgsl(s: TopkSmallSpec): string {
  const T = s.dtype;
  const topBit = s.order === "magnitude" ? 30 : 31;
  return `${TOPK_SMALL.header({ types: { T }, omit: s.mask ? [] : ["msk"] })}
${keyFnWgsl(T, s.order)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  for (var seg = gid.x; seg < p.segs; seg = seg + stride) {
    let base = seg * p.d;
    var t = 0u;
    var exact = false;
    // Two bits per pass over the row: the largest of t|1, t|2, t|3 (at bits b, b-1) that at least
    // k keys reach is what two one-bit steps would pick, for half the loads.
    for (var b = ${topBit}; b >= 1; b = b - 2) {
      let lo = u32(b - 1);
      let c1 = t | (1u << lo);
      let c2 = t | (2u << lo);
      let c3 = t | (3u << lo);
      var n1 = 0u;
      var n2 = 0u;
      var n3 = 0u;
      for (var j = 0u; j < p.d; j = j + 1u) {
        let key = keyOf(x[base + j]);
        n1 = n1 + select(0u, 1u, key >= c1);
        n2 = n2 + select(0u, 1u, key >= c2);
        n3 = n3 + select(0u, 1u, key >= c3);
      }
      var n = n1;
      if (n3 >= p.k) { t = c3; n = n3; } else if (n2 >= p.k) { t = c2; n = n2; } else if (n1 >= p.k) { t = c1; }
      // Exactly k keys reach the new prefix: they are the top k, whatever the lower bits hold.
      if (n1 >= p.k && n == p.k) { exact = true; break; }
    }${
    topBit % 2 === 0
      ? `
    if (!exact) {
      let cand = t | 1u;
      var c = 0u;
      for (var j = 0u; j < p.d; j = j + 1u) { c = c + select(0u, 1u, keyOf(x[base + j]) >= cand); }
      if (c >= p.k) {
        t = cand;
        if (c == p.k) { exact = true; }
      }
    }`
      : ""
  }
    var ties = 0u;
    if (exact) {
      t = t - 1u; // keep key > t, i.e. key >= cand, and no ties
    } else {
      var above = 0u;
      for (var j = 0u; j < p.d; j = j + 1u) { above = above + select(0u, 1u, keyOf(x[base + j]) > t); }
      ties = p.k - above;
    }
    var scale = 1.0;
    ${
    s.rescale
      ? `var all = 0.0; var kept = 0.0; var seen = 0u;
    for (var j = 0u; j < p.d; j = j + 1u) {
      let v = f32(x[base + j]); let key = keyOf(x[base + j]);
      all = all + v * v;
      var keep = key > t;
      if (key == t && seen < ties) { keep = true; seen = seen + 1u; }
      if (keep) { kept = kept + v * v; }
    }
    if (kept > 0.0) { scale = sqrt(all / kept); }`
      : ""
  }
    ${writeKeptWgsl(T, s.mask, "0u", "p.d", "0u")}
  }
}`;
}

/**
 * WGSL writing `out` (and `msk`) for entries `[from, to)` of a segment at `base`, given the
 * threshold key `t`, the `ties` to keep and `scale`: every key above `t`, then keys equal to it
 * while fewer than `ties` are taken (counting from `taken0`, the ties before `from`). Shared by
 * the mask kernels (this one and kernels/topk_coop.ts), so both keep the same entries.
 *
 * @param T Storage type.
 * @param mask Also write the 0/1 mask.
 * @param from First entry (WGSL expression).
 * @param to End of the entries (WGSL expression).
 * @param taken0 Ties kept before `from` (WGSL expression).
 * @returns The WGSL loop.
 */
export function writeKeptWgsl(
  T: string,
  mask: boolean,
  from: string,
  to: string,
  taken0: string,
): string {
  return `var taken = ${taken0};
  for (var j = ${from}; j < ${to}; j = j + 1u) {
    let key = keyOf(x[base + j]);
    var keep = key > t;
    if (key == t && taken < ties) { keep = true; taken = taken + 1u; }
    out[base + j] = select(${T}(0), ${T}(f32(x[base + j]) * scale), keep);
    ${mask ? `msk[base + j] = select(${T}(0), ${T}(1), keep);` : ""}
  }`;
}

const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);

/** The order key of one value (JS twin of `keyOf`). */
export function orderKey(v: number, order: TopkOrder): number {
  f32[0] = v;
  const b = u32[0]!;
  if (order === "magnitude") {
    const m = b & 0x7fffffff;
    return m > 0x7f800000 ? 0x7fffffff : m;
  }
  if ((b & 0x7fffffff) > 0x7f800000) return 0xffffffff;
  const bb = b === 0x80000000 ? 0 : b;
  return (bb & 0x80000000) !== 0 ? (~bb) >>> 0 : (bb | 0x80000000) >>> 0;
}

/** CPU twin of {@link topkSmallWgsl}. */
export function topkSmallCpu(
  s: TopkSmallSpec,
  segs: number,
  d: number,
  k: number,
  bufs: ArrayBuffer[],
): void {
  const x = typedView(s.dtype, bufs[0]!), out = typedView(s.dtype, bufs[1]!);
  const msk = s.mask ? typedView(s.dtype, bufs[2]!) : null;
  const keys = new Uint32Array(d);
  const topBit = s.order === "magnitude" ? 30 : 31;
  for (let seg = 0; seg < segs; seg++) {
    const base = seg * d;
    for (let j = 0; j < d; j++) keys[j] = orderKey(x[base + j]!, s.order);
    let t = 0;
    for (let b = topBit; b >= 0; b--) {
      const cand = (t | (1 << b)) >>> 0;
      let c = 0;
      for (let j = 0; j < d; j++) if (keys[j]! >= cand) c++;
      if (c >= k) t = cand;
    }
    let above = 0;
    for (let j = 0; j < d; j++) if (keys[j]! > t) above++;
    const ties = k - above;
    let scale = 1;
    if (s.rescale) {
      let all = 0, kept = 0, seen = 0;
      for (let j = 0; j < d; j++) {
        const v = x[base + j]!;
        all = Math.fround(all + Math.fround(v * v));
        let keep = keys[j]! > t;
        if (keys[j] === t && seen < ties) {
          keep = true;
          seen++;
        }
        if (keep) kept = Math.fround(kept + Math.fround(v * v));
      }
      if (kept > 0) scale = Math.fround(Math.sqrt(Math.fround(all / kept)));
    }
    let taken = 0;
    for (let j = 0; j < d; j++) {
      let keep = keys[j]! > t;
      if (keys[j] === t && taken < ties) {
        keep = true;
        taken++;
      }
      out[base + j] = keep ? Math.fround(x[base + j]! * scale) : 0;
      if (msk) msk[base + j] = keep ? 1 : 0;
    }
  }
}

/**
 * The host implementations of a top-K mask launch (the CPU twin and the native kernel), shared by
 * every GPU kernel of the mask (this one and kernels/topk_coop.ts keep the same entries).
 *
 * @param s Specialisation.
 * @param segs Segments.
 * @param d Segment length.
 * @param k Entries kept per segment.
 * @returns The dispatch's `cpu` and `native` fields.
 */
export function topkMaskHost(
  s: TopkSmallSpec,
  segs: number,
  d: number,
  k: number,
): Pick<Dispatch, "cpu" | "native"> {
  return {
    cpu: (b) => topkSmallCpu(s, segs, d, k, b),
    native: s.dtype === "f32"
      ? (b, rt) => topkMaskF32Native(segs, d, k, s.order, s.rescale ? "row" : "none", d, b, rt)
      : undefined,
  };
}

/**
 * Dispatch of the per-row mask kernel over `segs` segments of length `d`, keeping `k` each.
 * Buffers: x, out, then the mask when `spec.mask`.
 */
export function topkSmallDispatch(
  s: TopkSmallSpec,
  segs: number,
  d: number,
  k: number,
  bufs: Storage[],
  op: string,
): Dispatch {
  return {
    op,
    key: TOPK_SMALL.key(s.dtype, s.order, `${s.mask ? "m" : ""}${s.rescale ? "r" : ""}`),
    wgsl: () => topkSmallWgsl(s),
    ...topkMaskHost(s, segs, d, k),
    buffers: bufs,
    uniforms: TOPK_SMALL.uniforms({ segs, d, k }),
    workgroups: [Math.max(1, Math.min(Math.ceil(segs / WG), 4096)), 1, 1],
  };
}
