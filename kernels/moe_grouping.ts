/**
 * Mixture-of-experts grouping: the stable sort of (token, slot) assignments by expert in three
 * integer passes (counts per chunk, prefix sums, positions and the permutation). Layout and
 * vocabulary: `moe_layout.ts`.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { gridStride, WG } from "./common.ts";
import { GRID, metaWords, MOE_CHUNK, NONE } from "./moe_layout.ts";
import { defineKernel } from "./spec.ts";

// ---------------------------------------------------------------------------------------------
// Grouping, pass 1: assignments per (chunk, expert)

/** Sizes of one grouping. */
export interface GroupingParams {
  /** Assignments N·k. */
  nk: number;
  /** Experts E. */
  e: number;
  /** Counting chunks ⌈N·k / MOE_CHUNK⌉. */
  chunks: number;
  /** Rows each expert may keep ({@link NONE}: unlimited). */
  cap: number;
  /** Grouped rows M (static). */
  m: number;
}

/** The uniform block all three passes declare. */
const GROUPING_PARAMS = { nk: "u32", e: "u32", chunks: "u32", cap: "u32", m: "u32" } as const;

/** The grouping sizes as uniform fields (exactly the declared ones). */
function groupingFields({ nk, e, chunks, cap, m }: GroupingParams): GroupingParams {
  return { nk, e, chunks, cap, m };
}

const MOE_COUNT = defineKernel({
  name: "moeCount",
  bindings: [
    { name: "experts", type: "u32", access: "read" },
    { name: "counts", type: "u32", access: "read_write" },
  ],
  params: GROUPING_PARAMS,
});

/** WGSL of the chunk count: `counts[c·E + e]` = assignments of chunk c routed to expert e. */
export function moeCountWgsl(): string {
  return `${MOE_COUNT.header()}
@compute @workgroup_size(${WG})
fn main(${GRID}) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < p.chunks * p.e; i = i + stride) {
    let c = i / p.e;
    let e = i - c * p.e;
    let end = min(c * ${MOE_CHUNK}u + ${MOE_CHUNK}u, p.nk);
    var n = 0u;
    for (var a = c * ${MOE_CHUNK}u; a < end; a = a + 1u) {
      if (experts[a] == e) { n = n + 1u; }
    }
    counts[i] = n;
  }
}`;
}

/** CPU twin of {@link moeCountWgsl}. */
export function moeCountCpu(p: GroupingParams, experts: ArrayBuffer, counts: ArrayBuffer): void {
  const ex = new Uint32Array(experts), out = new Uint32Array(counts, 0, p.chunks * p.e);
  out.fill(0);
  for (let a = 0; a < p.nk; a++) {
    const e = ex[a]!;
    if (e < p.e) out[Math.floor(a / MOE_CHUNK) * p.e + e]!++;
  }
}

/** Dispatch of the chunk count. */
export function moeCountDispatch(p: GroupingParams, experts: Storage, counts: Storage): Dispatch {
  return {
    op: "moeGroup",
    key: MOE_COUNT.key(),
    wgsl: moeCountWgsl,
    cpu: ([a, b]) => moeCountCpu(p, a!, b!),
    buffers: [experts, counts],
    uniforms: MOE_COUNT.uniforms(groupingFields(p)),
    workgroups: gridStride(p.chunks * p.e),
  };
}

// ---------------------------------------------------------------------------------------------
// Grouping, pass 2: prefix sums (one invocation; E·chunks steps)

const MOE_SCAN = defineKernel({
  name: "moeScan",
  bindings: [
    { name: "counts", type: "u32", access: "read_write" },
    { name: "segs", type: "u32", access: "read_write" },
  ],
  params: GROUPING_PARAMS,
});

/**
 * WGSL of the scan: turns `counts` into each chunk's starting rank inside its expert (in place)
 * and writes `meta` (offsets with the capacity applied, raw load, dropped count).
 */
export function moeScanWgsl(): string {
  return `${MOE_SCAN.header()}
@compute @workgroup_size(1)
fn main() {
  var off = 0u;
  var dropped = 0u;
  for (var e = 0u; e < p.e; e = e + 1u) {
    var run = 0u;
    for (var c = 0u; c < p.chunks; c = c + 1u) {
      let v = counts[c * p.e + e];
      counts[c * p.e + e] = run;
      run = run + v;
    }
    let kept = min(run, p.cap);
    segs[e] = off;
    segs[p.e + 1u + e] = run;
    off = off + kept;
    dropped = dropped + (run - kept);
  }
  segs[p.e] = off;
  segs[2u * p.e + 1u] = dropped;
}`;
}

/** CPU twin of {@link moeScanWgsl}. */
export function moeScanCpu(p: GroupingParams, counts: ArrayBuffer, meta: ArrayBuffer): void {
  const cv = new Uint32Array(counts), mv = new Uint32Array(meta, 0, metaWords(p.e));
  let off = 0, dropped = 0;
  for (let e = 0; e < p.e; e++) {
    let run = 0;
    for (let c = 0; c < p.chunks; c++) {
      const v = cv[c * p.e + e]!;
      cv[c * p.e + e] = run;
      run += v;
    }
    const kept = Math.min(run, p.cap);
    mv[e] = off;
    mv[p.e + 1 + e] = run;
    off += kept;
    dropped += run - kept;
  }
  mv[p.e] = off;
  mv[2 * p.e + 1] = dropped;
}

/** Dispatch of the scan. */
export function moeScanDispatch(p: GroupingParams, counts: Storage, meta: Storage): Dispatch {
  return {
    op: "moeGroup",
    key: MOE_SCAN.key(),
    wgsl: moeScanWgsl,
    cpu: ([a, b]) => moeScanCpu(p, a!, b!),
    buffers: [counts, meta],
    uniforms: MOE_SCAN.uniforms(groupingFields(p)),
    workgroups: [1, 1, 1],
  };
}

// ---------------------------------------------------------------------------------------------
// Grouping, pass 3: positions and the permutation

const MOE_PLACE = defineKernel({
  name: "moePlace",
  bindings: [
    { name: "experts", type: "u32", access: "read" },
    { name: "counts", type: "u32", access: "read" },
    { name: "segs", type: "u32", access: "read" },
    { name: "pos", type: "u32", access: "read_write" },
    { name: "perm", type: "u32", access: "read_write" },
  ],
  params: GROUPING_PARAMS,
});

/**
 * WGSL of the placement: each (chunk, expert) invocation walks its chunk in order and gives its
 * expert's assignments consecutive ranks from the chunk's starting rank; a rank below the
 * capacity becomes a row (`pos`, `perm`), the rest are dropped. Assignments to an expert ≥ E
 * are dropped too. Tail rows of `perm` (past the live rows) are set to NONE.
 */
export function moePlaceWgsl(): string {
  return `${MOE_PLACE.header()}
@compute @workgroup_size(${WG})
fn main(${GRID}) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < p.chunks * p.e; i = i + stride) {
    let c = i / p.e;
    let e = i - c * p.e;
    var rank = counts[i];
    let base = segs[e];
    let end = min(c * ${MOE_CHUNK}u + ${MOE_CHUNK}u, p.nk);
    for (var a = c * ${MOE_CHUNK}u; a < end; a = a + 1u) {
      let x = experts[a];
      if (x == e) {
        if (rank < p.cap) {
          pos[a] = base + rank;
          perm[base + rank] = a;
        } else {
          pos[a] = 0xffffffffu;
        }
        rank = rank + 1u;
      } else if (e == 0u && x >= p.e) {
        pos[a] = 0xffffffffu;
      }
    }
  }
  let live = segs[p.e];
  for (var r = live + gid.x; r < p.m; r = r + stride) { perm[r] = 0xffffffffu; }
}`;
}

/** CPU twin of {@link moePlaceWgsl}. */
export function moePlaceCpu(
  p: GroupingParams,
  experts: ArrayBuffer,
  counts: ArrayBuffer,
  meta: ArrayBuffer,
  pos: ArrayBuffer,
  perm: ArrayBuffer,
): void {
  const ex = new Uint32Array(experts), cv = new Uint32Array(counts), mv = new Uint32Array(meta);
  const ps = new Uint32Array(pos, 0, p.nk), pm = new Uint32Array(perm, 0, p.m);
  const rank = new Uint32Array(p.e);
  for (let a = 0; a < p.nk; a++) {
    if (a % MOE_CHUNK === 0) {
      // New chunk: every expert restarts from the chunk's starting rank.
      const c = a / MOE_CHUNK;
      for (let x = 0; x < p.e; x++) rank[x] = cv[c * p.e + x]!;
    }
    const e = ex[a]!;
    if (e >= p.e) {
      ps[a] = NONE;
      continue;
    }
    const r = rank[e]!++;
    if (r < p.cap) {
      ps[a] = mv[e]! + r;
      pm[mv[e]! + r] = a;
    } else ps[a] = NONE;
  }
  pm.fill(NONE, mv[p.e]!);
}

/** Dispatch of the placement. */
export function moePlaceDispatch(
  p: GroupingParams,
  experts: Storage,
  counts: Storage,
  meta: Storage,
  pos: Storage,
  perm: Storage,
): Dispatch {
  return {
    op: "moeGroup",
    key: MOE_PLACE.key(),
    wgsl: moePlaceWgsl,
    cpu: ([a, b, c, d, f]) => moePlaceCpu(p, a!, b!, c!, d!, f!),
    buffers: [experts, counts, meta, pos, perm],
    uniforms: MOE_PLACE.uniforms(groupingFields(p)),
    workgroups: gridStride(Math.max(p.chunks * p.e, p.m)),
  };
}
