/**
 * Per-row top-K selection: one workgroup per row, a radix select on 32-bit order keys, then a
 * deterministic compaction. One dispatch, O(D) work per row, any K in 1..D.
 *
 * Order keys (`u32`, larger ranks first):
 * - by magnitude: `bits(x) & 0x7fffffff` is monotone in |x| for finite floats and ±Inf; every NaN
 *   maps to `0x7fffffff`, above +Inf, so NaN ranks above every number (PyTorch's rule);
 * - by value: the usual sign-flip (`~bits` for negatives, `bits | 0x80000000` otherwise), −0 folded
 *   into +0 so they tie, NaN mapped to `0xffffffff`.
 *
 * Selection: MSB-first radix select in three digits (11/10/10 bits for magnitude keys, 11/11/10
 * for value keys). Each pass builds a workgroup histogram of the digit for the keys that still
 * match the selected prefix (atomics on workgroup memory), then invocation 0 walks the histogram
 * from the top to find the digit holding the K-th key. A pass stops early when the whole bucket
 * is taken. What is kept: every key whose selected-prefix bits are above the prefix, plus the
 * `remaining` lowest-index keys equal to it (ties go to the lower index).
 *
 * Compaction: each invocation owns a contiguous chunk of the row, counts "above" and "tie" keys
 * in it, invocation 0 scans the counts, and each invocation writes its kept entries at their
 * final positions. The unsorted output is therefore in ascending index order, which the sparse
 * matmul kernels rely on for locality. `sorted` adds an in-place bitonic sort of the K kept
 * entries by (key desc, index asc) in the same dispatch (a same-direction network, so the virtual
 * padding past K never moves and needs no scratch).
 *
 * Why this shape on llvmpipe: a workgroup runs on one CPU core and barriers are coroutine
 * switches, so the kernel keeps barriers to a handful per pass and lets global memory (cached)
 * hold the row instead of workgroup memory, which also lifts any cap on D.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { type DType, typedView } from "../src/core/dtype.ts";
import { topkRowsNativeFor } from "./native/topk.ts";
import { defineKernel } from "./spec.ts";

/** How entries are ranked. */
export type TopkOrder = "magnitude" | "value";

/** What the selection kernel writes. */
export type TopkOutput = "sparse" | "dense";

/** Specialisation of the row-select kernel. */
export interface TopkSpec {
  /** Storage dtype of x and of the values written. */
  dtype: DType;
  /** Rank by |x| (default) or by x. */
  order: TopkOrder;
  /** `sparse`: values + u32 indices `[rows, K]`; `dense`: masked x `[rows, D]`. */
  output: TopkOutput;
  /** Sparse output sorted by rank (key desc, index asc) instead of by index. */
  sorted: boolean;
  /** Dense output: also write a 0/1 mask (x's dtype). */
  mask: boolean;
  /** Dense output: scale kept entries by ‖x‖₂/‖x_kept‖₂ per row. */
  rescale: boolean;
  /** Invocations per workgroup (one workgroup per row). */
  wg: number;
}

/** Runtime parameters of the row-select kernel. */
export interface TopkParams {
  /** Rows (segments) to select in. */
  rows: number;
  /** Length of each row (segment). */
  d: number;
  /** Entries kept per row, 1..d. */
  k: number;
  /**
   * Segments per logical row (N:M blocks use segments of length m): the index written is
   * `local + (row mod segs)·d`, so indices stay column indices of the full row.
   */
  segs: number;
}

const DIGITS: Record<TopkOrder, readonly number[]> = {
  magnitude: [11, 10, 10],
  value: [11, 11, 10],
};

/** Invocations per workgroup for a row of length `d`: enough to give each one ≥ 16 elements. */
export function topkWorkgroupSize(d: number): number {
  let wg = 32;
  while (wg < 256 && wg * 16 < d) wg *= 2;
  return wg;
}

/** WGSL `keyOf(v) -> u32`: the order key of one element (see the module doc). */
export function keyFnWgsl(dtype: DType, order: TopkOrder): string {
  const load = dtype === "f32" ? "v" : "f32(v)";
  if (order === "magnitude") {
    return `fn keyOf(v: ${dtype}) -> u32 {
  let m = bitcast<u32>(${load}) & 0x7fffffffu;
  return select(m, 0x7fffffffu, m > 0x7f800000u);
}`;
  }
  return `fn keyOf(v: ${dtype}) -> u32 {
  var b = bitcast<u32>(${load});
  if ((b & 0x7fffffffu) > 0x7f800000u) { return 0xffffffffu; }
  if (b == 0x80000000u) { b = 0u; }
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}`;
}

const TOPK_ROWS = defineKernel({
  name: "topk",
  bindings: [
    { name: "x", type: "T", access: "read" },
    // Sparse output: kept values and their column indices.
    { name: "vals", type: "T", access: "read_write", optional: true },
    { name: "idxs", type: "u32", access: "read_write", optional: true },
    // Dense output: x with the dropped entries zeroed, and optionally the 0/1 mask.
    { name: "out", type: "T", access: "read_write", optional: true },
    { name: "maskOut", type: "T", access: "read_write", optional: true },
  ],
  params: { rows: "u32", d: "u32", k: "u32", chunk: "u32", segs: "u32", rowsPerY: "u32" },
});

/** WGSL of the row-select kernel. */
export function topkRowsWgsl(s: TopkSpec): string {
  const T = s.dtype, WGS = s.wg;
  const digits = DIGITS[s.order];
  const maxBins = 1 << Math.max(...digits);
  const omit = s.output === "sparse"
    ? ["out", "maskOut"]
    : ["vals", "idxs", ...(s.mask ? [] : ["maskOut"])];
  let passes = "";
  let shift = digits.reduce((a, b) => a + b, 0);
  digits.forEach((bits, pi) => {
    shift -= bits;
    const nb = 1 << bits;
    const bpt = Math.max(1, nb / WGS);
    const body = `
    for (var b = lid; b < ${nb}u; b = b + ${WGS}u) { atomicStore(&hist[b], 0u); }
    workgroupBarrier();
    for (var i = lid; i < p.d; i = i + ${WGS}u) {
      let key = keyOf(x[base + i]);
      if ((key & st.y) == st.x) { atomicAdd(&hist[(key >> ${shift}u) & ${nb - 1}u], 1u); }
    }
    workgroupBarrier();
    var s = 0u;
    for (var b = lid * ${bpt}u; b < min((lid + 1u) * ${bpt}u, ${nb}u); b = b + 1u) { s = s + atomicLoad(&hist[b]); }
    part[lid] = s;
    workgroupBarrier();
    if (lid == 0u) {
      let rem = st.z;
      var cum = 0u;
      var c = ${Math.min(WGS, nb / bpt) - 1}u;
      loop {
        if (c == 0u || cum + part[c] >= rem) { break; }
        cum = cum + part[c];
        c = c - 1u;
      }
      var b = min((c + 1u) * ${bpt}u, ${nb}u) - 1u;
      var h = 0u;
      loop {
        h = atomicLoad(&hist[b]);
        if (b == c * ${bpt}u || cum + h >= rem) { break; }
        cum = cum + h;
        b = b - 1u;
      }
      sel = vec4u(st.x | (b << ${shift}u), st.y | (${
      nb - 1
    }u << ${shift}u), rem - cum, select(0u, 1u, h == rem - cum));
    }
    st = workgroupUniformLoad(&sel);`;
    // Later passes run only while the prefix bucket is not taken whole.
    passes += `\n  ${pi === 0 ? "" : "if (st.w == 0u) "}{${body}\n  }`;
  });

  // Compaction: contiguous chunks so kept entries come out in index order.
  const isSel = "(m > st.x || (m == st.x && tie < rem))";
  let write: string;
  if (s.output === "sparse") {
    write = `if ${isSel} {
        vals[obase + pos] = v;
        idxs[obase + pos] = ioff + i;
        pos = pos + 1u;
      }`;
  } else {
    write = `let keep = ${isSel};
      out[base + i] = select(${T}(0), v, keep);${
      s.mask ? `\n      maskOut[base + i] = select(${T}(0), ${T}(1), keep);` : ""
    }${s.rescale ? "\n      if (keep) { ssel = ssel + f32(v) * f32(v); }" : ""}`;
  }
  const rescale = s.rescale
    ? `
  var sall = 0f;
  for (var i = c0; i < c1; i = i + 1u) { let v = f32(x[base + i]); sall = sall + v * v; }
  fpart[lid] = vec2f(sall, ssel);
  workgroupBarrier();
  if (lid == 0u) {
    var a = 0f;
    var k = 0f;
    for (var t = 0u; t < ${WGS}u; t = t + 1u) { a = a + fpart[t].x; k = k + fpart[t].y; }
    fpart[0] = vec2f(select(1f, sqrt(a / k), k > 0f), 0f);
  }
  let f = workgroupUniformLoad(&fpart[0]).x;
  for (var i = c0; i < c1; i = i + 1u) { out[base + i] = ${T}(f32(out[base + i]) * f); }`
    : "";

  const sort = s.sorted
    ? `
  storageBarrier();
  // Same-direction bitonic network (flip, then half-cleaners): padding past K never moves.
  var pw = 1u;
  while (pw < p.k) { pw = pw << 1u; }
  for (var size = 2u; size <= pw; size = size << 1u) {
    let half = size >> 1u;
    for (var t = lid; t < pw / 2u; t = t + ${WGS}u) {
      let blk = t / half;
      let off = t - blk * half;
      cswap(obase, blk * size + off, blk * size + size - 1u - off);
    }
    storageBarrier();
    for (var stride = half >> 1u; stride > 0u; stride = stride >> 1u) {
      for (var t = lid; t < pw / 2u; t = t + ${WGS}u) {
        let a = (t / stride) * 2u * stride + (t % stride);
        cswap(obase, a, a + stride);
      }
      storageBarrier();
    }
  }`
    : "";
  const cswap = s.sorted
    ? `
fn cswap(obase: u32, a: u32, b: u32) {
  if (b >= p.k) { return; }
  let va = vals[obase + a];
  let vb = vals[obase + b];
  let ka = keyOf(va);
  let kb = keyOf(vb);
  let ia = idxs[obase + a];
  let ib = idxs[obase + b];
  if (kb > ka || (kb == ka && ib < ia)) {
    vals[obase + a] = vb;
    vals[obase + b] = va;
    idxs[obase + a] = ib;
    idxs[obase + b] = ia;
  }
}`
    : "";

  return `${TOPK_ROWS.header({ types: { T }, omit })}
var<workgroup> hist: array<atomic<u32>, ${maxBins}>;
var<workgroup> part: array<u32, ${WGS}>;
var<workgroup> part2: array<u32, ${WGS}>;
var<workgroup> sel: vec4u;${s.rescale ? `\nvar<workgroup> fpart: array<vec2f, ${WGS}>;` : ""}
${keyFnWgsl(T, s.order)}
${cswap}
@compute @workgroup_size(${WGS})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * p.rowsPerY;
  if (row >= p.rows) { return; }
  let base = row * p.d;
  let obase = row * p.k;
  let ioff = (row % p.segs) * p.d;
  // st = (prefix, prefix mask, entries still to take from the prefix bucket, bucket fully taken)
  var st = vec4u(0u, 0u, p.k, 0u);
${passes}

  let rem = st.z;
  let c0 = min(lid * p.chunk, p.d);
  let c1 = min(c0 + p.chunk, p.d);
  var g = 0u;
  var e = 0u;
  for (var i = c0; i < c1; i = i + 1u) {
    let m = keyOf(x[base + i]) & st.y;
    g = g + select(0u, 1u, m > st.x);
    e = e + select(0u, 1u, m == st.x);
  }
  part[lid] = g;
  part2[lid] = e;
  workgroupBarrier();
  if (lid == 0u) {
    var ag = 0u;
    var ae = 0u;
    for (var t = 0u; t < ${WGS}u; t = t + 1u) {
      let a = part[t];
      let b = part2[t];
      part[t] = ag;
      part2[t] = ae;
      ag = ag + a;
      ae = ae + b;
    }
  }
  workgroupBarrier();
  var tie = part2[lid];
  var pos = part[lid] + min(tie, rem);${s.rescale ? "\n  var ssel = 0f;" : ""}
  for (var i = c0; i < c1; i = i + 1u) {
    let v = x[base + i];
    let m = keyOf(v) & st.y;
    ${write}
    tie = tie + select(0u, 1u, m == st.x);
  }${rescale}${sort}
}`;
}

/** Host version of the WGSL order key. */
export function orderKeys(
  dtype: DType,
  order: TopkOrder,
  src: ArrayBuffer,
  offset: number,
  n: number,
): Uint32Array {
  const vals = typedView(dtype, src);
  const f = new Float32Array(n);
  for (let i = 0; i < n; i++) f[i] = vals[offset + i]!;
  const b = new Uint32Array(f.buffer);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const bits = b[i]!;
    const mag = bits & 0x7fffffff;
    if (order === "magnitude") out[i] = mag > 0x7f800000 ? 0x7fffffff : mag;
    else if (mag > 0x7f800000) out[i] = 0xffffffff;
    else {
      const v = bits === 0x80000000 ? 0 : bits;
      out[i] = (v & 0x80000000) !== 0 ? ~v >>> 0 : (v | 0x80000000) >>> 0;
    }
  }
  return out;
}

/** Indices of the `k` top entries of one row by (key desc, index asc), in rank order. */
export function rankTopk(keys: Uint32Array, k: number): number[] {
  const order = Array.from(keys.keys());
  order.sort((a, b) => (keys[b]! - keys[a]!) || (a - b));
  return order.slice(0, k);
}

/** CPU twin of {@link topkRowsWgsl}: the same selection, order and (mirrored) rescale sums. */
export function topkRowsCpu(s: TopkSpec, p: TopkParams, bufs: ArrayBuffer[]): void {
  const x = typedView(s.dtype, bufs[0]!);
  const fr = Math.fround;
  const chunk = Math.ceil(p.d / s.wg);
  for (let r = 0; r < p.rows; r++) {
    const base = r * p.d;
    const keys = orderKeys(s.dtype, s.order, bufs[0]!, base, p.d);
    const top = rankTopk(keys, p.k);
    if (s.output === "sparse") {
      const vals = typedView(s.dtype, bufs[1]!), idxs = new Uint32Array(bufs[2]!);
      const ordered = s.sorted ? top : [...top].sort((a, b) => a - b);
      const ioff = (r % p.segs) * p.d;
      ordered.forEach((i, t) => {
        vals[r * p.k + t] = x[base + i]!;
        idxs[r * p.k + t] = ioff + i;
      });
      continue;
    }
    const out = typedView(s.dtype, bufs[1]!);
    const keep = new Uint8Array(p.d);
    for (const i of top) keep[i] = 1;
    for (let i = 0; i < p.d; i++) out[base + i] = keep[i] ? x[base + i]! : 0;
    if (s.mask) {
      const m = typedView(s.dtype, bufs[2]!);
      for (let i = 0; i < p.d; i++) m[base + i] = keep[i]!;
    }
    if (s.rescale) {
      let a = 0, k = 0;
      for (let t = 0; t < s.wg; t++) {
        let sa = 0, sk = 0;
        for (let i = t * chunk; i < Math.min((t + 1) * chunk, p.d); i++) {
          const v = fr(x[base + i]!);
          sa = fr(sa + fr(v * v));
          if (keep[i]) sk = fr(sk + fr(v * v));
        }
        a = fr(a + sa);
        k = fr(k + sk);
      }
      const f = k > 0 ? fr(Math.sqrt(fr(a / k))) : 1;
      for (let i = 0; i < p.d; i++) out[base + i] = fr(out[base + i]! * f);
    }
  }
}

/**
 * The dispatch of a row select. Buffers: x, then `vals, idxs` (sparse) or `out[, mask]` (dense).
 *
 * @param s Kernel specialisation.
 * @param p Sizes (`k` ≥ 1 for sparse output).
 * @param buffers Storages in binding order.
 * @param op Op name for errors and profiles.
 * @returns The dispatch.
 */
export function topkRowsDispatch(
  s: TopkSpec,
  p: TopkParams,
  buffers: Storage[],
  op = "topkRows",
): Dispatch {
  const perY = Math.min(p.rows, 65535);
  const flags = `${s.sorted ? "S" : "U"}${s.mask ? "M" : ""}${s.rescale ? "R" : ""}`;
  const key = TOPK_ROWS.key(s.dtype, s.order, s.output, flags, `wg${s.wg}`);
  return {
    op,
    key,
    wgsl: () => topkRowsWgsl(s),
    cpu: (bufs) => topkRowsCpu(s, p, bufs),
    native: topkRowsNativeFor(s, p),
    buffers,
    uniforms: TOPK_ROWS.uniforms({
      rows: p.rows,
      d: p.d,
      k: p.k,
      chunk: Math.ceil(p.d / s.wg),
      segs: p.segs,
      rowsPerY: perY,
    }),
    workgroups: [perY, Math.ceil(p.rows / perY), 1],
  };
}
