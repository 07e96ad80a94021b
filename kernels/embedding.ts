/**
 * Embedding lookup (gather of table rows by token id) and its backward, a scatter-add of the
 * output gradient into a `[V, D]` table gradient.
 *
 * WGSL has no float atomics, and summing in whatever order threads arrive would make training
 * non-reproducible. The backward is instead exact and deterministic, without sorting:
 *
 * 1. `links`: for each token t, the next token t' > t with the same id (a linked list per id, in
 *    token order) and whether t is the first occurrence of its id (the list's head);
 * 2. `accumulate`: one invocation per (head token, column) walks its list and writes the sum,
 *    always in token order, into the id's row; rows of ids that never occur stay zero.
 *
 * Step 1 scans the ids (O(N²) comparisons in the worst case, all distinct ids; each scan stops
 * at the first match) — a few million comparisons for N = 4096 tokens. Step 2 touches each
 * gradient element once. The GPU and the CPU twin add in the same order, so they agree bit for
 * bit.
 *
 * Out-of-range ids (≥ V) cannot be reported by a kernel; they read as zero rows in the forward
 * and are skipped by the backward. The op validates ids that come from host data.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { type DType, typedView } from "../src/core/dtype.ts";
import { gridStride, WG } from "./common.ts";
import * as nat from "./native/embedding.ts";
import { LEADER_BIT, NO_NEXT } from "./native/embedding.ts";
import { defineKernel } from "./spec.ts";

export { LEADER_BIT, NO_NEXT };

const EMBEDDING = defineKernel({
  name: "embedding",
  bindings: [
    { name: "table", type: "T", access: "read" },
    { name: "ids", type: "u32", access: "read" },
    { name: "out", type: "T", access: "read_write" },
  ],
  params: { n: "u32", d: "u32", v: "u32" },
});

/** WGSL of the gather `out[t, d] = ids[t] < V ? table[ids[t], d] : 0`. */
export function embeddingWgsl(dtype: DType): string {
  return `${EMBEDDING.header({ types: { T: dtype } })}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < p.n; i = i + stride) {
    let t = i / p.d;
    let id = ids[t];
    if (id < p.v) { out[i] = table[id * p.d + (i - t * p.d)]; } else { out[i] = ${dtype}(0); }
  }
}`;
}

/** CPU twin of {@link embeddingWgsl}. */
export function embeddingCpu(
  dtype: DType,
  tokens: number,
  d: number,
  v: number,
  table: ArrayBuffer,
  ids: ArrayBuffer,
  out: ArrayBuffer,
): void {
  const tb = typedView(dtype, table),
    id = new Uint32Array(ids),
    o = typedView(dtype, out, tokens * d);
  for (let t = 0; t < tokens; t++) {
    const row = id[t]!;
    if (row < v) o.set(tb.subarray(row * d, row * d + d), t * d);
    else o.fill(0, t * d, t * d + d);
  }
}

/**
 * Dispatch of the gather.
 *
 * @param dtype Table dtype.
 * @param tokens Number of ids.
 * @param d Embedding width.
 * @param v Vocabulary size (rows of the table).
 * @param table Table storage `[v, d]`.
 * @param ids u32 ids storage `[tokens]`.
 * @param out Output `[tokens, d]`.
 * @returns The dispatch.
 */
export function embeddingDispatch(
  dtype: DType,
  tokens: number,
  d: number,
  v: number,
  table: Storage,
  ids: Storage,
  out: Storage,
): Dispatch {
  const n = tokens * d;
  return {
    op: "embedding",
    key: EMBEDDING.key(dtype),
    wgsl: () => embeddingWgsl(dtype),
    cpu: ([a, b, c]) => embeddingCpu(dtype, tokens, d, v, a!, b!, c!),
    native: (bufs, rt) => nat.embeddingNative(dtype === "f16" ? 2 : 4, tokens, d, v, bufs, rt),
    buffers: [table, ids, out],
    uniforms: EMBEDDING.uniforms({ n, d, v }),
    workgroups: gridStride(n),
  };
}

// ---------------------------------------------------------------------------------------------
// Backward step 1: per-id linked lists in token order

const EMBEDDING_LINKS = defineKernel({
  name: "embeddingLinks",
  bindings: [
    { name: "ids", type: "u32", access: "read" },
    { name: "links", type: "u32", access: "read_write" },
    // The table gradient, zeroed by the same launch (step 2 writes only the rows of seen ids).
    { name: "gtable", type: "T", access: "read_write" },
  ],
  params: { n: "u32", v: "u32", zeros: "u32" },
});

/**
 * WGSL of `links[t] = next occurrence of ids[t] (or NO_NEXT) | LEADER_BIT if first`, and of
 * `gtable[i] = 0` for the `zeros` elements of the table gradient.
 */
export function embeddingLinksWgsl(dtype: DType): string {
  return `${EMBEDDING_LINKS.header({ types: { T: dtype } })}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < p.zeros; i = i + stride) { gtable[i] = ${dtype}(0.0); }
  for (var t = gid.x; t < p.n; t = t + stride) {
    let id = ids[t];
    if (id >= p.v) { links[t] = ${NO_NEXT}u; continue; }
    var next = ${NO_NEXT}u;
    for (var u = t + 1u; u < p.n; u = u + 1u) {
      if (ids[u] == id) { next = u; break; }
    }
    var lead = ${LEADER_BIT}u;
    for (var u = t; u > 0u; u = u - 1u) {
      if (ids[u - 1u] == id) { lead = 0u; break; }
    }
    links[t] = next | lead;
  }
}`;
}

/** CPU twin of {@link embeddingLinksWgsl} (same output, by hashing in O(N)); zeroes nothing. */
export function embeddingLinksCpu(
  n: number,
  v: number,
  ids: ArrayBuffer,
  links: ArrayBuffer,
): void {
  const id = new Uint32Array(ids), l = new Uint32Array(links, 0, n);
  const later = new Map<number, number>();
  for (let t = n - 1; t >= 0; t--) {
    const k = id[t]!;
    if (k >= v) {
      l[t] = NO_NEXT;
      continue;
    }
    l[t] = later.get(k) ?? NO_NEXT;
    later.set(k, t);
  }
  const seen = new Set<number>();
  for (let t = 0; t < n; t++) {
    const k = id[t]!;
    if (k < v && !seen.has(k)) {
      seen.add(k);
      l[t] = (l[t]! | LEADER_BIT) >>> 0;
    }
  }
}

/**
 * Dispatch of the link pass over `n` ids, which also zeroes the table gradient (`zeros`
 * elements of `dtype`) that the accumulation pass then fills.
 *
 * @param n Token count.
 * @param v Vocabulary size.
 * @param ids Token ids (u32).
 * @param links Output links (u32 `[n]`).
 * @param dtype Dtype of the table gradient.
 * @param gtable Table gradient `[V, D]`, zeroed here.
 * @param zeros Its element count (V · D).
 * @returns The dispatch.
 */
export function embeddingLinksDispatch(
  n: number,
  v: number,
  ids: Storage,
  links: Storage,
  dtype: DType,
  gtable: Storage,
  zeros: number,
): Dispatch {
  const bytes = zeros * (dtype === "f16" ? 2 : 4);
  const zero = (t: ArrayBuffer) => new Uint8Array(t, 0, bytes).fill(0);
  return {
    op: "embeddingBackward",
    key: EMBEDDING_LINKS.key(dtype),
    wgsl: () => embeddingLinksWgsl(dtype),
    cpu: ([a, b, c]) => {
      embeddingLinksCpu(n, v, a!, b!);
      zero(c!);
    },
    native: ([a, b, c]) => {
      nat.embeddingLinksNative(n, v, a!, b!);
      zero(c!);
    },
    buffers: [ids, links, gtable],
    uniforms: EMBEDDING_LINKS.uniforms({ n, v, zeros }),
    // Small workgroup count keeps long scans spread; each invocation may walk all ids.
    workgroups: gridStride(Math.max(n, zeros), WG),
  };
}

// ---------------------------------------------------------------------------------------------
// Backward step 2: sum each id's gradient rows in token order

const EMBEDDING_ACCUMULATE = defineKernel({
  name: "embeddingAccumulate",
  bindings: [
    { name: "g", type: "T", access: "read" },
    { name: "ids", type: "u32", access: "read" },
    { name: "links", type: "u32", access: "read" },
    { name: "gtable", type: "T", access: "read_write" },
  ],
  params: { n: "u32", d: "u32" },
});

/** WGSL: for each head token t and column d, `gtable[ids[t], d] = Σ_{t' in list(t)} g[t', d]`. */
export function embeddingAccumulateWgsl(dtype: DType): string {
  return `${EMBEDDING_ACCUMULATE.header({ types: { T: dtype } })}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  let total = p.n * p.d;
  for (var i = gid.x; i < total; i = i + stride) {
    let t = i / p.d;
    let l = links[t];
    if ((l & ${LEADER_BIT}u) == 0u) { continue; }
    let col = i - t * p.d;
    var acc = f32(g[i]);
    var u = l & ${NO_NEXT}u;
    loop {
      if (u == ${NO_NEXT}u) { break; }
      acc = acc + f32(g[u * p.d + col]);
      u = links[u] & ${NO_NEXT}u;
    }
    gtable[ids[t] * p.d + col] = ${dtype}(acc);
  }
}`;
}

/** CPU twin of {@link embeddingAccumulateWgsl}: the same walk, rounding to f32 after each add. */
export function embeddingAccumulateCpu(
  dtype: DType,
  n: number,
  d: number,
  g: ArrayBuffer,
  ids: ArrayBuffer,
  links: ArrayBuffer,
  gtable: ArrayBuffer,
): void {
  const gv = typedView(dtype, g), id = new Uint32Array(ids), l = new Uint32Array(links);
  const out = typedView(dtype, gtable);
  const fr = Math.fround;
  for (let t = 0; t < n; t++) {
    if ((l[t]! & LEADER_BIT) === 0) continue;
    const row = id[t]! * d;
    for (let c = 0; c < d; c++) {
      let acc = gv[t * d + c]!;
      for (let u = l[t]! & NO_NEXT; u !== NO_NEXT; u = l[u]! & NO_NEXT) {
        acc = fr(acc + gv[u * d + c]!);
      }
      out[row + c] = acc;
    }
  }
}

/** Dispatch of the accumulation into a zero-filled `[V, d]` gradient. */
export function embeddingAccumulateDispatch(
  dtype: DType,
  n: number,
  d: number,
  g: Storage,
  ids: Storage,
  links: Storage,
  gtable: Storage,
): Dispatch {
  return {
    op: "embeddingBackward",
    key: EMBEDDING_ACCUMULATE.key(dtype),
    wgsl: () => embeddingAccumulateWgsl(dtype),
    cpu: ([a, b, c, e]) => embeddingAccumulateCpu(dtype, n, d, a!, b!, c!, e!),
    native: dtype === "f32"
      ? (bufs, rt) => nat.embeddingAccumulateNative(n, d, bufs, rt)
      : undefined,
    buffers: [g, ids, links, gtable],
    uniforms: EMBEDDING_ACCUMULATE.uniforms({ n, d }),
    workgroups: gridStride(n * d),
  };
}
