/**
 * N:M top-K: keep the `n` top entries (by |x|, or by x) inside every block of `m` consecutive
 * values along the last dim (Block Q-Sparse; 16:32 by default).
 *
 * Two kernels:
 * - **rank** (m ≤ {@link NM_RANK_MAX_M}): one invocation per block holds the block's m order
 *   keys in registers and ranks each entry by counting the entries that beat it (key desc, index
 *   asc). O(m²) per block, but branch-free and with no barriers, which is what a SIMD CPU
 *   adapter runs best; 32 compares per element at 16:32.
 * - **segmented row select** (larger m): the row-select kernel of `topk.ts` run on the blocks as
 *   rows of length m, writing column indices of the full row.
 *
 * Sparse output is `[rows, (D/m)·n]`: block b's kept entries at `[b·n, (b+1)·n)`, in ascending
 * column order, with absolute column indices.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { type DType, typedView } from "../src/core/dtype.ts";
import { gridStride } from "./common.ts";
import {
  keyFnWgsl,
  orderKeys,
  rankTopk,
  type TopkOrder,
  type TopkOutput,
  topkRowsDispatch,
  topkWorkgroupSize,
} from "./topk.ts";
import { nmNativeFor } from "./native/topk.ts";
import { defineKernel } from "./spec.ts";

/** Largest block length the register-ranking kernel handles. */
export const NM_RANK_MAX_M = 64;

/** Specialisation of an N:M select. */
export interface NmSpec {
  /** Storage dtype. */
  dtype: DType;
  /** Rank by |x| or by x. */
  order: TopkOrder;
  /** Sparse `[rows, (D/m)·n]` values + indices, or masked dense. */
  output: TopkOutput;
  /** Dense output: also write a 0/1 mask. */
  mask: boolean;
  /** Kept per block. */
  n: number;
  /** Block length. */
  m: number;
}

const WG = 64;

const NM = defineKernel({
  name: "nm",
  bindings: [
    { name: "x", type: "T", access: "read" },
    // Sparse output: kept values and their column indices.
    { name: "vals", type: "T", access: "read_write", optional: true },
    { name: "idxs", type: "u32", access: "read_write", optional: true },
    // Dense output: x with the dropped entries zeroed, and optionally the 0/1 mask.
    { name: "out", type: "T", access: "read_write", optional: true },
    { name: "maskOut", type: "T", access: "read_write", optional: true },
  ],
  params: { blocks: "u32", bpr: "u32" },
});

/** WGSL of the register-ranking N:M kernel. */
export function nmRankWgsl(s: NmSpec): string {
  const T = s.dtype;
  const omit = s.output === "sparse"
    ? ["out", "maskOut"]
    : ["vals", "idxs", ...(s.mask ? [] : ["maskOut"])];
  const write = s.output === "sparse"
    ? `if (keep) {
        vals[ob + pos] = x[base + i];
        idxs[ob + pos] = ioff + i;
        pos = pos + 1u;
      }`
    : `out[base + i] = select(${T}(0), x[base + i], keep);${
      s.mask ? `\n      maskOut[base + i] = select(${T}(0), ${T}(1), keep);` : ""
    }`;
  return `${NM.header({ types: { T }, omit })}
${keyFnWgsl(T, s.order)}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  for (var blk = gid.x; blk < p.blocks; blk = blk + stride) {
    let base = blk * ${s.m}u;
    let ob = blk * ${s.n}u;
    let ioff = (blk % p.bpr) * ${s.m}u;
    var keys: array<u32, ${s.m}>;
    for (var j = 0u; j < ${s.m}u; j = j + 1u) { keys[j] = keyOf(x[base + j]); }
    var pos = 0u;
    for (var i = 0u; i < ${s.m}u; i = i + 1u) {
      let ki = keys[i];
      var rank = 0u;
      for (var j = 0u; j < ${s.m}u; j = j + 1u) {
        let kj = keys[j];
        rank = rank + select(0u, 1u, kj > ki || (kj == ki && j < i));
      }
      let keep = rank < ${s.n}u;
      ${write}
    }
  }
}`;
}

/** CPU twin of every N:M kernel: per block, top n by (key desc, index asc), in column order. */
export function nmCpu(s: NmSpec, rows: number, d: number, bufs: ArrayBuffer[]): void {
  const x = typedView(s.dtype, bufs[0]!);
  const bpr = d / s.m, blocks = rows * bpr;
  for (let blk = 0; blk < blocks; blk++) {
    const base = blk * s.m;
    const top = rankTopk(orderKeys(s.dtype, s.order, bufs[0]!, base, s.m), s.n).sort((a, b) =>
      a - b
    );
    if (s.output === "sparse") {
      const vals = typedView(s.dtype, bufs[1]!), idxs = new Uint32Array(bufs[2]!);
      const ioff = (blk % bpr) * s.m;
      top.forEach((i, t) => {
        vals[blk * s.n + t] = x[base + i]!;
        idxs[blk * s.n + t] = ioff + i;
      });
    } else {
      const out = typedView(s.dtype, bufs[1]!);
      const keep = new Uint8Array(s.m);
      for (const i of top) keep[i] = 1;
      for (let i = 0; i < s.m; i++) out[base + i] = keep[i] ? x[base + i]! : 0;
      if (s.mask) {
        const mk = typedView(s.dtype, bufs[2]!);
        for (let i = 0; i < s.m; i++) mk[base + i] = keep[i]!;
      }
    }
  }
}

/**
 * The dispatch of an N:M select over `rows` rows of length `d` (m divides d, 1 ≤ n ≤ m).
 * Buffers: x, then `vals, idxs` (sparse) or `out[, mask]` (dense).
 *
 * @param s Specialisation.
 * @param rows Rows.
 * @param d Row length.
 * @param buffers Storages in binding order.
 * @returns The dispatch.
 */
export function nmDispatch(s: NmSpec, rows: number, d: number, buffers: Storage[]): Dispatch {
  const bpr = d / s.m, blocks = rows * bpr;
  if (s.m > NM_RANK_MAX_M) {
    const d2 = topkRowsDispatch(
      {
        dtype: s.dtype,
        order: s.order,
        output: s.output,
        sorted: false,
        mask: s.mask,
        rescale: false,
        wg: topkWorkgroupSize(s.m),
      },
      { rows: blocks, d: s.m, k: s.n, segs: bpr },
      buffers,
      "topkBlocks",
    );
    return { ...d2, cpu: (bufs) => nmCpu(s, rows, d, bufs) };
  }
  return {
    op: "topkBlocks",
    key: NM.key(s.dtype, s.order, `${s.output}${s.mask ? "M" : ""}`, s.n, s.m),
    wgsl: () => nmRankWgsl(s),
    cpu: (bufs) => nmCpu(s, rows, d, bufs),
    native: nmNativeFor(s, rows, d),
    buffers,
    uniforms: NM.uniforms({ blocks, bpr }),
    workgroups: gridStride(blocks, WG),
  };
}
