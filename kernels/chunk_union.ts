/**
 * Chunk-level sparsity: which weight rows the union of a chunk's masks touches. Layout and
 * vocabulary: `moe_layout.ts`.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { typedView } from "../src/core/dtype.ts";
import { gridStride, WG } from "./common.ts";
import { GRID, metaWords } from "./moe_layout.ts";
import { chunkUnionNative } from "./native/chunk_union.ts";
import { defineKernel } from "./spec.ts";

/** Geometry of a chunk-union pass. */
export interface ChunkUnionParams {
  /** Experts E (1 for a dense site). */
  e: number;
  /** Slots per token (to map an assignment to its token; 1 for a dense site). */
  k: number;
  /** Tokens per sequence (chunks never span two sequences). */
  seqLen: number;
  /** Tokens per chunk. */
  chunk: number;
  /** Chunks per sequence ⌈seqLen / chunk⌉ (the last may be short). */
  perSeq: number;
  /** Chunks in all. */
  chunks: number;
  /** Row width (input columns of the site = rows of its weights). */
  w: number;
}

const CHUNK_UNION = defineKernel({
  name: "chunkUnion",
  bindings: [
    { name: "h", type: "f32", access: "read" },
    { name: "perm", type: "u32", access: "read" },
    { name: "segs", type: "u32", access: "read" },
    { name: "used", type: "f32", access: "read_write" },
  ],
  params: { e: "u32", k: "u32", seq: "u32", chunk: "u32", per: "u32", chunks: "u32", w: "u32" },
});

/**
 * WGSL of the chunk union: `used[(c·E + e)·w + col] = 1` when some row of expert e whose token
 * lies in chunk c has a nonzero in column col, else 0. Rows of an expert are in token order, so
 * a binary search finds the chunk's first row and the walk stops at its last.
 */
export function chunkUnionWgsl(): string {
  return `${CHUNK_UNION.header()}
@compute @workgroup_size(${WG})
fn main(${GRID}) {
  let stride = nwg.x * ${WG}u;
  let total = p.chunks * p.e * p.w;
  for (var i = gid.x; i < total; i = i + stride) {
    let ce = i / p.w;
    let col = i - ce * p.w;
    let c = ce / p.e;
    let e = ce - c * p.e;
    let s = c / p.per;
    let t0 = s * p.seq + (c - s * p.per) * p.chunk;
    let t1 = min(t0 + p.chunk, (s + 1u) * p.seq);
    var lo = segs[e];
    var hi = segs[e + 1u];
    loop {
      if (lo >= hi) { break; }
      let mid = (lo + hi) / 2u;
      if (perm[mid] / p.k < t0) { lo = mid + 1u; } else { hi = mid; }
    }
    var hit = 0.0;
    for (var r = lo; r < segs[e + 1u]; r = r + 1u) {
      if (perm[r] / p.k >= t1) { break; }
      if ((bitcast<u32>(h[r * p.w + col]) & 0x7fffffffu) != 0u) { hit = 1.0; break; }
    }
    used[i] = hit;
  }
}`;
}

/** CPU twin of {@link chunkUnionWgsl} (a direct scan of each chunk's rows). */
export function chunkUnionCpu(
  p: ChunkUnionParams,
  h: ArrayBuffer,
  perm: ArrayBuffer,
  meta: ArrayBuffer,
  used: ArrayBuffer,
): void {
  const hv = new Uint32Array(h), pm = new Uint32Array(perm), mv = new Uint32Array(meta);
  const out = new Float32Array(used, 0, p.chunks * p.e * p.w);
  out.fill(0);
  for (let e = 0; e < p.e; e++) {
    for (let r = mv[e]!; r < mv[e + 1]!; r++) {
      const t = Math.floor(pm[r]! / p.k);
      const s = Math.floor(t / p.seqLen);
      const c = s * p.perSeq + Math.floor((t - s * p.seqLen) / p.chunk);
      if (c >= p.chunks) continue;
      const o = (c * p.e + e) * p.w;
      for (let col = 0; col < p.w; col++) {
        if ((hv[r * p.w + col]! & 0x7fffffff) !== 0) out[o + col] = 1;
      }
    }
  }
}

/**
 * Dispatch of the chunk union.
 *
 * @param p Geometry.
 * @param h Rows `[M, w]` (grouped for MoE, token rows for a dense site).
 * @param perm Row → assignment `[M]` (the identity for a dense site).
 * @param meta Offsets `[E + 1, ...]` (`[0, N]` for a dense site).
 * @param used Output f32 `[chunks·E, w]` of 0/1 flags.
 * @returns The dispatch.
 */
export function chunkUnionDispatch(
  p: ChunkUnionParams,
  h: Storage,
  perm: Storage,
  meta: Storage,
  used: Storage,
): Dispatch {
  return {
    op: "chunkUnion",
    key: CHUNK_UNION.key(),
    wgsl: chunkUnionWgsl,
    cpu: ([a, b, c, d]) => chunkUnionCpu(p, a!, b!, c!, d!),
    native: (b, rt) => chunkUnionNative(p, b, rt),
    buffers: [h, perm, meta, used],
    uniforms: CHUNK_UNION.uniforms({
      e: p.e,
      k: p.k,
      seq: p.seqLen,
      chunk: p.chunk,
      per: p.perSeq,
      chunks: p.chunks,
      w: p.w,
    }),
    workgroups: gridStride(p.chunks * p.e * p.w),
  };
}

/** Reads `meta` words on the host (tests and statistics). */
export function metaView(e: number, meta: ArrayBuffer): {
  offsets: Uint32Array;
  load: Uint32Array;
  dropped: number;
} {
  const mv = typedView("u32", meta, metaWords(e));
  return {
    offsets: mv.subarray(0, e + 1),
    load: mv.subarray(e + 1, 2 * e + 1),
    dropped: mv[2 * e + 1]!,
  };
}
