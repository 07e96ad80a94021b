/**
 * Mixture-of-experts kernels: top-k routing per token, grouping of (token, slot) assignments
 * by expert (counts, prefix sums, permutation), gather into the grouped layout, a grouped matmul
 * over the experts, the gate-weighted combine, every backward pass, and the counters behind
 * router statistics, per-expert sparsity and chunk-level sparsity.
 *
 * Vocabulary. N tokens, E experts, k slots per token; assignment `a = t·k + j` is slot j of
 * token t (slots in rank order: highest router probability first). The grouped layout holds one
 * row per kept assignment, experts one after another, and inside an expert in assignment order
 * (a stable sort by expert), so rows of one expert are also in token order:
 *
 * - `experts` u32 `[N·k]`: the expert of each assignment;
 * - `pos` u32 `[N·k]`: the grouped row of each assignment, or {@link NONE} when dropped;
 * - `perm` u32 `[M]`: the assignment of each grouped row, or NONE for unused tail rows;
 * - `meta` u32 `[2E + 2]`: `offsets[0..E]` (segment starts; `offsets[E]` = live rows), then the
 *   raw load per expert (assignments routed before capacity), then the dropped count.
 *
 * M is static: N·k without a capacity, `min(N·k, E·capacity)` with one, so no readback is ever
 * needed; rows past `offsets[E]` are zero in every grouped tensor and skipped by every reader.
 *
 * Determinism: WGSL has no float atomics, so every output element is written by exactly one
 * invocation that sums in a fixed order (slot order for gathers and combines, row order inside
 * a segment for the weight gradient). Grouping counts in chunks of {@link MOE_CHUNK}
 * assignments, scans the chunk counts per expert, then places each chunk's assignments: all
 * integer work, the same on every run and backend.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { typedView } from "../src/tensor/dtype.ts";
import { gridStride, uniforms, WG } from "./common.ts";
import {
  beats,
  laneSum,
  ROW_ARGS,
  ROW_WG,
  rowGroups,
  rowLanes,
  rowLoopOpen,
  WGSL_FLOAT_HELPERS,
} from "./reduce.ts";

/** Index meaning "no row / no assignment / dropped". */
export const NONE = 0xffffffff;

/** Assignments per counting chunk of the grouping pass. */
export const MOE_CHUNK = 256;

const fr = Math.fround;
const GRID = "@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u";

/** Number of `meta` words for E experts: offsets (E + 1), load (E), dropped (1). */
export function metaWords(e: number): number {
  return 2 * e + 2;
}

// ---------------------------------------------------------------------------------------------
// Routing: top-k of E router probabilities per token, gates renormalised over the chosen k

/** WGSL of the routing kernel: `experts[t, j]`, `gates[t, j]` for the top-k of `probs[t, :]`. */
export function moeRouteWgsl(): string {
  return `${WGSL_FLOAT_HELPERS}
struct P { n: u32, e: u32, k: u32, norm: u32 };
@group(0) @binding(0) var<storage, read> probs: array<f32>;
@group(0) @binding(1) var<storage, read_write> experts: array<u32>;
@group(0) @binding(2) var<storage, read_write> gates: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(${GRID}) {
  let stride = nwg.x * ${WG}u;
  for (var t = gid.x; t < p.n; t = t + stride) {
    var sum = 0.0;
    for (var j = 0u; j < p.k; j = j + 1u) {
      var bv = neg_inf();
      var bi = 0xffffffffu;
      for (var e = 0u; e < p.e; e = e + 1u) {
        var taken = false;
        for (var i = 0u; i < j; i = i + 1u) {
          if (experts[t * p.k + i] == e) { taken = true; }
        }
        let v = probs[t * p.e + e];
        if (!taken && beats(bv, bi, v, e)) { bv = v; bi = e; }
      }
      experts[t * p.k + j] = bi;
      gates[t * p.k + j] = bv;
      sum = sum + bv;
    }
    if (p.norm == 1u) {
      for (var j = 0u; j < p.k; j = j + 1u) {
        let a = t * p.k + j;
        // A zero sum (every chosen probability underflowed) falls back to equal gates.
        gates[a] = select(1.0 / f32(p.k), gates[a] / sum, sum > 0.0);
      }
    }
  }
}`;
}

/** CPU twin of {@link moeRouteWgsl}. */
export function moeRouteCpu(
  n: number,
  e: number,
  k: number,
  norm: boolean,
  probs: ArrayBuffer,
  experts: ArrayBuffer,
  gates: ArrayBuffer,
): void {
  const pv = new Float32Array(probs), ex = new Uint32Array(experts, 0, n * k);
  const gv = new Float32Array(gates, 0, n * k);
  for (let t = 0; t < n; t++) {
    let sum = 0;
    for (let j = 0; j < k; j++) {
      let bv = -Infinity, bi = NONE;
      for (let x = 0; x < e; x++) {
        let taken = false;
        for (let i = 0; i < j; i++) if (ex[t * k + i] === x) taken = true;
        const v = pv[t * e + x]!;
        if (!taken && beats(bv, bi, v, x)) {
          bv = v;
          bi = x;
        }
      }
      ex[t * k + j] = bi;
      gv[t * k + j] = bv;
      sum = fr(sum + bv);
    }
    if (norm) {
      for (let j = 0; j < k; j++) {
        const a = t * k + j;
        gv[a] = sum > 0 ? gv[a]! / sum : 1 / k;
      }
    }
  }
}

/**
 * Dispatch of the routing kernel.
 *
 * @param n Tokens.
 * @param e Experts.
 * @param k Slots per token (≤ e).
 * @param norm Renormalise the gates over the chosen k.
 * @param probs Router probabilities `[n, e]` (f32).
 * @param experts Output u32 `[n, k]`.
 * @param gates Output f32 `[n, k]`.
 * @returns The dispatch.
 */
export function moeRouteDispatch(
  n: number,
  e: number,
  k: number,
  norm: boolean,
  probs: Storage,
  experts: Storage,
  gates: Storage,
): Dispatch {
  return {
    op: "moeRoute",
    key: "moeRoute",
    wgsl: moeRouteWgsl,
    cpu: ([a, b, c]) => moeRouteCpu(n, e, k, norm, a!, b!, c!),
    buffers: [probs, experts, gates],
    uniforms: uniforms(n, e, k, norm ? 1 : 0),
    workgroups: gridStride(n),
  };
}

/**
 * WGSL of the routing backward: the gradient of the gates with respect to the probabilities.
 * Renormalised gates `g_j = p_j / S` (S the sum of the chosen p) give
 * `∂L/∂p_i = (∂L/∂g_i − Σ_j ∂L/∂g_j · g_j) / S` for chosen i; unchosen experts get 0.
 */
export function moeRouteBackwardWgsl(): string {
  return `struct P { n: u32, e: u32, k: u32, norm: u32 };
@group(0) @binding(0) var<storage, read> probs: array<f32>;
@group(0) @binding(1) var<storage, read> experts: array<u32>;
@group(0) @binding(2) var<storage, read> gg: array<f32>;
@group(0) @binding(3) var<storage, read_write> gp: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(${GRID}) {
  let stride = nwg.x * ${WG}u;
  for (var t = gid.x; t < p.n; t = t + stride) {
    for (var e = 0u; e < p.e; e = e + 1u) { gp[t * p.e + e] = 0.0; }
    var sum = 0.0;
    for (var j = 0u; j < p.k; j = j + 1u) { sum = sum + probs[t * p.e + experts[t * p.k + j]]; }
    var dot = 0.0;
    for (var j = 0u; j < p.k; j = j + 1u) {
      let a = t * p.k + j;
      dot = dot + gg[a] * (probs[t * p.e + experts[a]] / sum);
    }
    for (var j = 0u; j < p.k; j = j + 1u) {
      let a = t * p.k + j;
      var v = gg[a];
      if (p.norm == 1u) { v = select(0.0, (gg[a] - dot) / sum, sum > 0.0); }
      gp[t * p.e + experts[a]] = v;
    }
  }
}`;
}

/** CPU twin of {@link moeRouteBackwardWgsl}. */
export function moeRouteBackwardCpu(
  n: number,
  e: number,
  k: number,
  norm: boolean,
  probs: ArrayBuffer,
  experts: ArrayBuffer,
  gg: ArrayBuffer,
  gp: ArrayBuffer,
): void {
  const pv = new Float32Array(probs), ex = new Uint32Array(experts), g = new Float32Array(gg);
  const out = new Float32Array(gp, 0, n * e);
  out.fill(0);
  for (let t = 0; t < n; t++) {
    let sum = 0;
    for (let j = 0; j < k; j++) sum = fr(sum + pv[t * e + ex[t * k + j]!]!);
    let dot = 0;
    for (let j = 0; j < k; j++) {
      const a = t * k + j;
      dot = fr(dot + fr(g[a]! * fr(pv[t * e + ex[a]!]! / sum)));
    }
    for (let j = 0; j < k; j++) {
      const a = t * k + j;
      let v = g[a]!;
      if (norm) v = sum > 0 ? fr(g[a]! - dot) / sum : 0;
      out[t * e + ex[a]!] = v;
    }
  }
}

/**
 * Dispatch of the routing backward.
 *
 * @param n Tokens.
 * @param e Experts.
 * @param k Slots.
 * @param norm Whether the forward renormalised.
 * @param probs Router probabilities `[n, e]`.
 * @param experts Chosen experts `[n, k]`.
 * @param gg Gradient of the gates `[n, k]`.
 * @param gp Output: gradient of the probabilities `[n, e]`.
 * @returns The dispatch.
 */
export function moeRouteBackwardDispatch(
  n: number,
  e: number,
  k: number,
  norm: boolean,
  probs: Storage,
  experts: Storage,
  gg: Storage,
  gp: Storage,
): Dispatch {
  return {
    op: "moeRouteBackward",
    key: "moeRouteBackward",
    wgsl: moeRouteBackwardWgsl,
    cpu: ([a, b, c, d]) => moeRouteBackwardCpu(n, e, k, norm, a!, b!, c!, d!),
    buffers: [probs, experts, gg, gp],
    uniforms: uniforms(n, e, k, norm ? 1 : 0),
    workgroups: gridStride(n),
  };
}

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

/** WGSL of the chunk count: `counts[c·E + e]` = assignments of chunk c routed to expert e. */
export function moeCountWgsl(): string {
  return `struct P { nk: u32, e: u32, chunks: u32, cap: u32, m: u32 };
@group(0) @binding(0) var<storage, read> experts: array<u32>;
@group(0) @binding(1) var<storage, read_write> counts: array<u32>;
@group(0) @binding(2) var<uniform> p: P;
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
    key: "moeCount",
    wgsl: moeCountWgsl,
    cpu: ([a, b]) => moeCountCpu(p, a!, b!),
    buffers: [experts, counts],
    uniforms: groupingUniforms(p),
    workgroups: gridStride(p.chunks * p.e),
  };
}

function groupingUniforms(p: GroupingParams): Uint32Array {
  return uniforms(p.nk, p.e, p.chunks, p.cap, p.m);
}

// ---------------------------------------------------------------------------------------------
// Grouping, pass 2: prefix sums (one invocation; E·chunks steps)

/**
 * WGSL of the scan: turns `counts` into each chunk's starting rank inside its expert (in place)
 * and writes `meta` (offsets with the capacity applied, raw load, dropped count).
 */
export function moeScanWgsl(): string {
  return `struct P { nk: u32, e: u32, chunks: u32, cap: u32, m: u32 };
@group(0) @binding(0) var<storage, read_write> counts: array<u32>;
@group(0) @binding(1) var<storage, read_write> segs: array<u32>;
@group(0) @binding(2) var<uniform> p: P;
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
    key: "moeScan",
    wgsl: moeScanWgsl,
    cpu: ([a, b]) => moeScanCpu(p, a!, b!),
    buffers: [counts, meta],
    uniforms: groupingUniforms(p),
    workgroups: [1, 1, 1],
  };
}

// ---------------------------------------------------------------------------------------------
// Grouping, pass 3: positions and the permutation

/**
 * WGSL of the placement: each (chunk, expert) invocation walks its chunk in order and gives its
 * expert's assignments consecutive ranks from the chunk's starting rank; a rank below the
 * capacity becomes a row (`pos`, `perm`), the rest are dropped. Assignments to an expert ≥ E
 * are dropped too. Tail rows of `perm` (past the live rows) are set to NONE.
 */
export function moePlaceWgsl(): string {
  return `struct P { nk: u32, e: u32, chunks: u32, cap: u32, m: u32 };
@group(0) @binding(0) var<storage, read> experts: array<u32>;
@group(0) @binding(1) var<storage, read> counts: array<u32>;
@group(0) @binding(2) var<storage, read> segs: array<u32>;
@group(0) @binding(3) var<storage, read_write> pos: array<u32>;
@group(0) @binding(4) var<storage, read_write> perm: array<u32>;
@group(0) @binding(5) var<uniform> p: P;
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
    key: "moePlace",
    wgsl: moePlaceWgsl,
    cpu: ([a, b, c, d, f]) => moePlaceCpu(p, a!, b!, c!, d!, f!),
    buffers: [experts, counts, meta, pos, perm],
    uniforms: groupingUniforms(p),
    workgroups: gridStride(Math.max(p.chunks * p.e, p.m)),
  };
}

// ---------------------------------------------------------------------------------------------
// Gather (token rows → grouped rows) and its backward

/** WGSL of the gather `xg[r, :] = x[perm[r] / k, :]` (zero for NONE rows). */
export function moeGatherWgsl(): string {
  return `struct P { m: u32, d: u32, k: u32 };
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> perm: array<u32>;
@group(0) @binding(2) var<storage, read_write> xg: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(${GRID}) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < p.m * p.d; i = i + stride) {
    let r = i / p.d;
    let a = perm[r];
    var v = 0.0;
    if (a != 0xffffffffu) { v = x[(a / p.k) * p.d + (i - r * p.d)]; }
    xg[i] = v;
  }
}`;
}

/** CPU twin of {@link moeGatherWgsl}. */
export function moeGatherCpu(
  m: number,
  d: number,
  k: number,
  x: ArrayBuffer,
  perm: ArrayBuffer,
  xg: ArrayBuffer,
): void {
  const xv = new Float32Array(x), pm = new Uint32Array(perm), out = new Float32Array(xg, 0, m * d);
  for (let r = 0; r < m; r++) {
    const a = pm[r]!;
    if (a === NONE) out.fill(0, r * d, r * d + d);
    else {
      const t = Math.floor(a / k);
      out.set(xv.subarray(t * d, t * d + d), r * d);
    }
  }
}

/** Dispatch of the gather into `m` grouped rows of width `d`. */
export function moeGatherDispatch(
  m: number,
  d: number,
  k: number,
  x: Storage,
  perm: Storage,
  xg: Storage,
): Dispatch {
  return {
    op: "moeGather",
    key: "moeGather",
    wgsl: moeGatherWgsl,
    cpu: ([a, b, c]) => moeGatherCpu(m, d, k, a!, b!, c!),
    buffers: [x, perm, xg],
    uniforms: uniforms(m, d, k),
    workgroups: gridStride(m * d),
  };
}

/** WGSL of the gather backward `dx[t, :] = Σ_j g[pos[t·k + j], :]` (slot order, NONE skipped). */
export function moeGatherBackwardWgsl(): string {
  return `struct P { n: u32, d: u32, k: u32 };
@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> pos: array<u32>;
@group(0) @binding(2) var<storage, read_write> dx: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(${GRID}) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < p.n * p.d; i = i + stride) {
    let t = i / p.d;
    let c = i - t * p.d;
    var acc = 0.0;
    for (var j = 0u; j < p.k; j = j + 1u) {
      let r = pos[t * p.k + j];
      if (r != 0xffffffffu) { acc = acc + g[r * p.d + c]; }
    }
    dx[i] = acc;
  }
}`;
}

/** CPU twin of {@link moeGatherBackwardWgsl}. */
export function moeGatherBackwardCpu(
  n: number,
  d: number,
  k: number,
  g: ArrayBuffer,
  pos: ArrayBuffer,
  dx: ArrayBuffer,
): void {
  const gv = new Float32Array(g), ps = new Uint32Array(pos), out = new Float32Array(dx, 0, n * d);
  for (let t = 0; t < n; t++) {
    for (let c = 0; c < d; c++) {
      let acc = 0;
      for (let j = 0; j < k; j++) {
        const r = ps[t * k + j]!;
        if (r !== NONE) acc = fr(acc + gv[r * d + c]!);
      }
      out[t * d + c] = acc;
    }
  }
}

/** Dispatch of the gather backward into `[n, d]`. */
export function moeGatherBackwardDispatch(
  n: number,
  d: number,
  k: number,
  g: Storage,
  pos: Storage,
  dx: Storage,
): Dispatch {
  return {
    op: "moeGatherBackward",
    key: "moeGatherBackward",
    wgsl: moeGatherBackwardWgsl,
    cpu: ([a, b, c]) => moeGatherBackwardCpu(n, d, k, a!, b!, c!),
    buffers: [g, pos, dx],
    uniforms: uniforms(n, d, k),
    workgroups: gridStride(n * d),
  };
}

// ---------------------------------------------------------------------------------------------
// Grouped matmul: each row times its expert's matrix

/** One grouped matmul: `out[r, :] = x[r, :] · B[e]` for every row r of expert e's segment. */
export interface GroupedMatmulProblem {
  /** Grouped rows M. */
  m: number;
  /** Inner dim (columns of x). */
  k: number;
  /** Output columns. */
  n: number;
  /** Experts E (matrices in B). */
  e: number;
  /** B[e] is stored `[n, k]` and read transposed (the input gradient `g · W[e]ᵀ`). */
  transposeB: boolean;
}

const GM_WG = 64;
const GT = 8;

/**
 * Row tiles a grouped matmul launches: every expert's segment is cut into tiles of 8 rows (so a
 * tile never straddles two experts and all its rows share one matrix), plus tiles for the
 * unused tail. `Σ_e ⌈rows_e / 8⌉ + ⌈tail / 8⌉ ≤ ⌈M / 8⌉ + E + 1`, whatever the routing.
 */
export function groupedRowTiles(m: number, e: number): number {
  return Math.ceil(m / GT) + e + 1;
}

/**
 * WGSL of the grouped matmul. Each invocation owns an 8×8 block of the output inside one
 * expert's segment: it finds its expert by walking the segment offsets (O(E)), then streams
 * that expert's matrix like a dense register-tiled matmul (8 row loads + 8 matrix loads per 64
 * FMAs). Tiles past the live rows write zeros.
 */
export function groupedMatmulWgsl(tb: boolean): string {
  let decl = "", idx = "", body = "", store = "", zero = "";
  for (let r = 0; r < GT; r++) {
    decl += `  var acc${r}_0 = vec4f(0.0);\n  var acc${r}_1 = vec4f(0.0);\n`;
  }
  for (let r = 0; r < GT; r++) idx += `  let m${r} = min(r0 + ${r}u, rEnd - 1u) * p.k;\n`;
  for (let c = 0; c < GT; c++) {
    idx += `  let n${c} = ${
      tb ? `base + min(c0 + ${c}u, p.n - 1u) * p.k` : `base + min(c0 + ${c}u, p.n - 1u)`
    };\n`;
  }
  const bAt = (c: number) => (tb ? `B[n${c} + kk]` : `B[n${c} + kk * p.n]`);
  body += `    let b0 = vec4f(${[0, 1, 2, 3].map(bAt).join(", ")});\n`;
  body += `    let b1 = vec4f(${[4, 5, 6, 7].map(bAt).join(", ")});\n`;
  for (let r = 0; r < GT; r++) {
    body += `    let a${r} = vec4f(x[m${r} + kk]);\n`;
    body +=
      `    acc${r}_0 = fma(a${r}, b0, acc${r}_0);\n    acc${r}_1 = fma(a${r}, b1, acc${r}_1);\n`;
  }
  for (let r = 0; r < GT; r++) {
    store += `  if (r0 + ${r}u < rEnd) {\n`;
    for (let c = 0; c < GT; c++) {
      store += `    if (c0 + ${c}u < p.n) { out[(r0 + ${r}u) * p.n + c0 + ${c}u] = acc${r}_${
        c >> 2
      }[${c & 3}]; }\n`;
    }
    store += "  }\n";
  }
  zero = `    for (var r = r0; r < min(r0 + ${GT}u, p.m); r = r + 1u) {
      for (var c = c0; c < min(c0 + ${GT}u, p.n); c = c + 1u) { out[r * p.n + c] = 0.0; }
    }`;
  return `struct P { m: u32, k: u32, n: u32, e: u32, tiles: u32 };
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> B: array<f32>;
@group(0) @binding(2) var<storage, read> segs: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
fn tile(i: u32) {
  let ct = (p.n + ${GT - 1}u) / ${GT}u;
  let rb = i / ct;
  let c0 = (i - rb * ct) * ${GT}u;
  var cum = 0u;
  var ex = p.e;
  var r0 = 0u;
  var rEnd = 0u;
  for (var e = 0u; e < p.e; e = e + 1u) {
    let s = segs[e];
    let t = segs[e + 1u];
    let nb = (t - s + ${GT - 1}u) / ${GT}u;
    if (rb < cum + nb) {
      ex = e;
      r0 = s + (rb - cum) * ${GT}u;
      rEnd = t;
      break;
    }
    cum = cum + nb;
  }
  if (ex == p.e) {
    r0 = segs[p.e] + (rb - cum) * ${GT}u;
${zero}
    return;
  }
  let base = ex * p.k * p.n;
${idx}${decl}  for (var kk = 0u; kk < p.k; kk = kk + 1u) {
${body}  }
${store}}
@compute @workgroup_size(${GM_WG})
fn main(${GRID}) {
  let stride = nwg.x * ${GM_WG}u;
  for (var i = gid.x; i < p.tiles; i = i + stride) { tile(i); }
}`;
}

/** CPU twin of {@link groupedMatmulWgsl} (f64 accumulation, rounded to f32). */
export function groupedMatmulCpu(
  p: GroupedMatmulProblem,
  x: ArrayBuffer,
  b: ArrayBuffer,
  meta: ArrayBuffer,
  out: ArrayBuffer,
): void {
  const X = new Float32Array(x), B = new Float32Array(b), mv = new Uint32Array(meta);
  const O = new Float32Array(out, 0, p.m * p.n);
  const { m, k, n } = p;
  const row = new Float64Array(n);
  for (let ei = 0; ei < p.e; ei++) {
    const base = ei * k * n;
    for (let r = mv[ei]!; r < mv[ei + 1]!; r++) {
      row.fill(0);
      for (let kk = 0; kk < k; kk++) {
        const av = X[r * k + kk]!;
        if (av === 0) continue;
        if (p.transposeB) { for (let j = 0; j < n; j++) row[j] += av * B[base + j * k + kk]!; }
        else for (let j = 0; j < n; j++) row[j] += av * B[base + kk * n + j]!;
      }
      for (let j = 0; j < n; j++) O[r * n + j] = row[j]!;
    }
  }
  O.fill(0, Math.min(mv[p.e]!, m) * n);
}

/**
 * Dispatch of a grouped matmul.
 *
 * @param p The problem.
 * @param x Grouped rows `[m, k]`.
 * @param b Stacked matrices `[e, k, n]` (or `[e, n, k]` with transposeB).
 * @param meta Grouping meta (segment offsets).
 * @param out Output `[m, n]`.
 * @returns The dispatch.
 */
export function groupedMatmulDispatch(
  p: GroupedMatmulProblem,
  x: Storage,
  b: Storage,
  meta: Storage,
  out: Storage,
): Dispatch {
  const tiles = groupedRowTiles(p.m, p.e) * Math.ceil(p.n / GT);
  return {
    op: "groupedMatmul",
    key: `groupedMatmul:${p.transposeB ? "T" : "N"}`,
    wgsl: () => groupedMatmulWgsl(p.transposeB),
    cpu: ([a, bb, c, d]) => groupedMatmulCpu(p, a!, bb!, c!, d!),
    buffers: [x, b, meta, out],
    uniforms: uniforms(p.m, p.k, p.n, p.e, tiles),
    workgroups: gridStride(tiles, GM_WG),
  };
}

/**
 * WGSL of the grouped weight gradient `dW[e] = Σ_{r ∈ segment e} x[r]ᵀ · g[r]` (`[E, k, n]`):
 * each invocation owns a 4×8 block of one expert's gradient and walks that expert's rows in
 * order (4 + 8 loads per 32 FMAs).
 */
export function groupedWeightGradWgsl(): string {
  let idx = "", decl = "", body = "", store = "";
  for (let j = 0; j < 4; j++) idx += `    let k${j} = min(kb + ${j}u, p.k - 1u);\n`;
  for (let c = 0; c < 8; c++) idx += `    let n${c} = min(c0 + ${c}u, p.n - 1u);\n`;
  for (let j = 0; j < 4; j++) {
    decl += `    var acc${j}_0 = vec4f(0.0);\n    var acc${j}_1 = vec4f(0.0);\n`;
  }
  body += `      let g0 = vec4f(g[gb + n0], g[gb + n1], g[gb + n2], g[gb + n3]);\n`;
  body += `      let g1 = vec4f(g[gb + n4], g[gb + n5], g[gb + n6], g[gb + n7]);\n`;
  for (let j = 0; j < 4; j++) {
    body += `      let a${j} = vec4f(x[xb + k${j}]);\n`;
    body +=
      `      acc${j}_0 = fma(a${j}, g0, acc${j}_0);\n      acc${j}_1 = fma(a${j}, g1, acc${j}_1);\n`;
  }
  for (let j = 0; j < 4; j++) {
    store += `    if (kb + ${j}u < p.k) {\n`;
    for (let c = 0; c < 8; c++) {
      store +=
        `      if (c0 + ${c}u < p.n) { dw[(e * p.k + kb + ${j}u) * p.n + c0 + ${c}u] = acc${j}_${
          c >> 2
        }[${c & 3}]; }\n`;
    }
    store += "    }\n";
  }
  return `struct P { e: u32, k: u32, n: u32, total: u32 };
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> segs: array<u32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(${GM_WG})
fn main(${GRID}) {
  let stride = nwg.x * ${GM_WG}u;
  let ct = (p.n + 7u) / 8u;
  let kt = (p.k + 3u) / 4u;
  for (var i = gid.x; i < p.total; i = i + stride) {
    let e = i / (kt * ct);
    let rest = i - e * kt * ct;
    let kb = (rest / ct) * 4u;
    let c0 = (rest - (rest / ct) * ct) * 8u;
${idx}${decl}    for (var r = segs[e]; r < segs[e + 1u]; r = r + 1u) {
      let gb = r * p.n;
      let xb = r * p.k;
${body}    }
${store}  }
}`;
}

/** CPU twin of {@link groupedWeightGradWgsl} (f64 accumulation, rounded to f32). */
export function groupedWeightGradCpu(
  e: number,
  k: number,
  n: number,
  x: ArrayBuffer,
  g: ArrayBuffer,
  meta: ArrayBuffer,
  dw: ArrayBuffer,
): void {
  const X = new Float32Array(x), G = new Float32Array(g), mv = new Uint32Array(meta);
  const out = new Float32Array(dw, 0, e * k * n);
  const acc = new Float64Array(k * n);
  for (let ei = 0; ei < e; ei++) {
    acc.fill(0);
    for (let r = mv[ei]!; r < mv[ei + 1]!; r++) {
      for (let kk = 0; kk < k; kk++) {
        const xv = X[r * k + kk]!;
        if (xv === 0) continue;
        for (let j = 0; j < n; j++) acc[kk * n + j] += xv * G[r * n + j]!;
      }
    }
    out.set(acc, ei * k * n);
  }
}

/**
 * Dispatch of the grouped weight gradient.
 *
 * @param e Experts.
 * @param k Rows of each expert matrix (columns of x).
 * @param n Columns of each expert matrix (columns of g).
 * @param x Grouped inputs `[M, k]`.
 * @param g Grouped output gradient `[M, n]`.
 * @param meta Grouping meta (offsets).
 * @param dw Output `[e, k, n]`.
 * @returns The dispatch.
 */
export function groupedWeightGradDispatch(
  e: number,
  k: number,
  n: number,
  x: Storage,
  g: Storage,
  meta: Storage,
  dw: Storage,
): Dispatch {
  const total = e * Math.ceil(k / 4) * Math.ceil(n / 8);
  return {
    op: "groupedMatmulBackward",
    key: "groupedWeightGrad",
    wgsl: groupedWeightGradWgsl,
    cpu: ([a, b, c, d]) => groupedWeightGradCpu(e, k, n, a!, b!, c!, d!),
    buffers: [x, g, meta, dw],
    uniforms: uniforms(e, k, n, total),
    workgroups: gridStride(total, GM_WG),
  };
}

// ---------------------------------------------------------------------------------------------
// Combine: y[t] = Σ_j gate[t, j] · yg[pos[t·k + j]], and its two backward passes

/** WGSL of the combine (slot order; dropped assignments contribute nothing). */
export function moeCombineWgsl(): string {
  return `struct P { n: u32, d: u32, k: u32 };
@group(0) @binding(0) var<storage, read> yg: array<f32>;
@group(0) @binding(1) var<storage, read> gates: array<f32>;
@group(0) @binding(2) var<storage, read> pos: array<u32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(${GRID}) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < p.n * p.d; i = i + stride) {
    let t = i / p.d;
    let c = i - t * p.d;
    var acc = 0.0;
    for (var j = 0u; j < p.k; j = j + 1u) {
      let a = t * p.k + j;
      let r = pos[a];
      if (r != 0xffffffffu) { acc = acc + gates[a] * yg[r * p.d + c]; }
    }
    y[i] = acc;
  }
}`;
}

/** CPU twin of {@link moeCombineWgsl}. */
export function moeCombineCpu(
  n: number,
  d: number,
  k: number,
  yg: ArrayBuffer,
  gates: ArrayBuffer,
  pos: ArrayBuffer,
  y: ArrayBuffer,
): void {
  const yv = new Float32Array(yg), gv = new Float32Array(gates), ps = new Uint32Array(pos);
  const out = new Float32Array(y, 0, n * d);
  for (let t = 0; t < n; t++) {
    for (let c = 0; c < d; c++) {
      let acc = 0;
      for (let j = 0; j < k; j++) {
        const a = t * k + j, r = ps[a]!;
        if (r !== NONE) acc = fr(acc + fr(gv[a]! * yv[r * d + c]!));
      }
      out[t * d + c] = acc;
    }
  }
}

/** Dispatch of the combine into `[n, d]`. */
export function moeCombineDispatch(
  n: number,
  d: number,
  k: number,
  yg: Storage,
  gates: Storage,
  pos: Storage,
  y: Storage,
): Dispatch {
  return {
    op: "moeCombine",
    key: "moeCombine",
    wgsl: moeCombineWgsl,
    cpu: ([a, b, c, e]) => moeCombineCpu(n, d, k, a!, b!, c!, e!),
    buffers: [yg, gates, pos, y],
    uniforms: uniforms(n, d, k),
    workgroups: gridStride(n * d),
  };
}

/** WGSL of the combine's row gradient `dyg[r, :] = gate[perm[r]] · g[perm[r] / k, :]`. */
export function moeCombineRowsBackwardWgsl(): string {
  return `struct P { m: u32, d: u32, k: u32 };
@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> gates: array<f32>;
@group(0) @binding(2) var<storage, read> perm: array<u32>;
@group(0) @binding(3) var<storage, read_write> dyg: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
@compute @workgroup_size(${WG})
fn main(${GRID}) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < p.m * p.d; i = i + stride) {
    let r = i / p.d;
    let a = perm[r];
    var v = 0.0;
    if (a != 0xffffffffu) { v = gates[a] * g[(a / p.k) * p.d + (i - r * p.d)]; }
    dyg[i] = v;
  }
}`;
}

/** CPU twin of {@link moeCombineRowsBackwardWgsl}. */
export function moeCombineRowsBackwardCpu(
  m: number,
  d: number,
  k: number,
  g: ArrayBuffer,
  gates: ArrayBuffer,
  perm: ArrayBuffer,
  dyg: ArrayBuffer,
): void {
  const gv = new Float32Array(g), ga = new Float32Array(gates), pm = new Uint32Array(perm);
  const out = new Float32Array(dyg, 0, m * d);
  for (let r = 0; r < m; r++) {
    const a = pm[r]!;
    if (a === NONE) {
      out.fill(0, r * d, r * d + d);
      continue;
    }
    const t = Math.floor(a / k), w = ga[a]!;
    for (let c = 0; c < d; c++) out[r * d + c] = w * gv[t * d + c]!;
  }
}

/** Dispatch of the combine's row gradient into `[m, d]`. */
export function moeCombineRowsBackwardDispatch(
  m: number,
  d: number,
  k: number,
  g: Storage,
  gates: Storage,
  perm: Storage,
  dyg: Storage,
): Dispatch {
  return {
    op: "moeCombineBackward",
    key: "moeCombineRows",
    wgsl: moeCombineRowsBackwardWgsl,
    cpu: ([a, b, c, e]) => moeCombineRowsBackwardCpu(m, d, k, a!, b!, c!, e!),
    buffers: [g, gates, perm, dyg],
    uniforms: uniforms(m, d, k),
    workgroups: gridStride(m * d),
  };
}

/**
 * WGSL of the combine's gate gradient `dgate[a] = ⟨g[a / k, :], yg[pos[a], :]⟩` (0 when
 * dropped): one row per assignment on the shared row geometry (lanes + a shared-memory tree).
 */
export function moeCombineGatesBackwardWgsl(lanes: number): string {
  return `struct P { rows: u32, d: u32, k: u32 };
@group(0) @binding(0) var<storage, read> g: array<f32>;
@group(0) @binding(1) var<storage, read> yg: array<f32>;
@group(0) @binding(2) var<storage, read> pos: array<u32>;
@group(0) @binding(3) var<storage, read_write> dgate: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
var<workgroup> sv: array<f32, ${ROW_WG}>;
@compute @workgroup_size(${ROW_WG})
fn main(${ROW_ARGS}) {
  ${rowLoopOpen(lanes)}
    var acc = 0.0;
    var r = 0xffffffffu;
    if (live) { r = pos[row]; }
    if (r != 0xffffffffu) {
      let gb = (row / p.k) * p.d;
      let yb = r * p.d;
      for (var c = lane; c < p.d; c = c + ${lanes}u) { acc = acc + g[gb + c] * yg[yb + c]; }
    }
    ${laneSum(lanes, "sv", "acc", "total")}
    if (live && lane == 0u) { dgate[row] = total; }
  }
}`;
}

/** CPU twin of {@link moeCombineGatesBackwardWgsl} (f64 dot products, rounded to f32). */
export function moeCombineGatesBackwardCpu(
  rows: number,
  d: number,
  k: number,
  g: ArrayBuffer,
  yg: ArrayBuffer,
  pos: ArrayBuffer,
  dgate: ArrayBuffer,
): void {
  const gv = new Float32Array(g), yv = new Float32Array(yg), ps = new Uint32Array(pos);
  const out = new Float32Array(dgate, 0, rows);
  for (let a = 0; a < rows; a++) {
    const r = ps[a]!;
    if (r === NONE) {
      out[a] = 0;
      continue;
    }
    const t = Math.floor(a / k);
    let acc = 0;
    for (let c = 0; c < d; c++) acc += gv[t * d + c]! * yv[r * d + c]!;
    out[a] = acc;
  }
}

/** Dispatch of the gate gradient over `rows = N·k` assignments. */
export function moeCombineGatesBackwardDispatch(
  rows: number,
  d: number,
  k: number,
  g: Storage,
  yg: Storage,
  pos: Storage,
  dgate: Storage,
): Dispatch {
  const lanes = rowLanes(d);
  return {
    op: "moeCombineBackward",
    key: `moeCombineGates:L${lanes}`,
    wgsl: () => moeCombineGatesBackwardWgsl(lanes),
    cpu: ([a, b, c, e]) => moeCombineGatesBackwardCpu(rows, d, k, a!, b!, c!, e!),
    buffers: [g, yg, pos, dgate],
    uniforms: uniforms(rows, d, k),
    workgroups: rowGroups(rows, lanes),
  };
}

// ---------------------------------------------------------------------------------------------
// Counters (accumulated in place on the device, read at log time)

const SEG_WG = 64;

/**
 * WGSL of the per-expert nonzero count: workgroup e counts the nonzeros of the rows of segment
 * e of `h` `[M, w]` and adds them to `nz[e]`, and adds the segment's element count to `el[e]`.
 * The lanes' partial counts meet in a shared-memory tree (integers: order-free and exact).
 */
export function moeSegmentCountWgsl(): string {
  return `struct P { e: u32, w: u32 };
@group(0) @binding(0) var<storage, read> h: array<f32>;
@group(0) @binding(1) var<storage, read> segs: array<u32>;
@group(0) @binding(2) var<storage, read_write> nz: array<u32>;
@group(0) @binding(3) var<storage, read_write> el: array<u32>;
@group(0) @binding(4) var<uniform> p: P;
var<workgroup> sc: array<u32, ${SEG_WG}>;
@compute @workgroup_size(${SEG_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32) {
  for (var e = wid.x; e < p.e; e = e + nwg.x) {
    let start = segs[e] * p.w;
    let end = segs[e + 1u] * p.w;
    var n = 0u;
    for (var i = start + lid; i < end; i = i + ${SEG_WG}u) {
      // Nonzero from the bits, so −0 counts as zero and NaN as nonzero.
      if ((bitcast<u32>(h[i]) & 0x7fffffffu) != 0u) { n = n + 1u; }
    }
    sc[lid] = n;
    workgroupBarrier();
    for (var s = ${SEG_WG / 2}u; s > 0u; s = s >> 1u) {
      if (lid < s) { sc[lid] = sc[lid] + sc[lid + s]; }
      workgroupBarrier();
    }
    if (lid == 0u) {
      nz[e] = nz[e] + sc[0];
      el[e] = el[e] + (end - start);
    }
    workgroupBarrier();
  }
}`;
}

/** CPU twin of {@link moeSegmentCountWgsl}. */
export function moeSegmentCountCpu(
  e: number,
  w: number,
  h: ArrayBuffer,
  meta: ArrayBuffer,
  nz: ArrayBuffer,
  el: ArrayBuffer,
): void {
  const hv = new Uint32Array(h), mv = new Uint32Array(meta);
  const nzv = new Uint32Array(nz, 0, e), elv = new Uint32Array(el, 0, e);
  for (let x = 0; x < e; x++) {
    const start = mv[x]! * w, end = mv[x + 1]! * w;
    let n = 0;
    for (let i = start; i < end; i++) if ((hv[i]! & 0x7fffffff) !== 0) n++;
    nzv[x] = (nzv[x]! + n) >>> 0;
    elv[x] = (elv[x]! + end - start) >>> 0;
  }
}

/**
 * Dispatch of the per-expert nonzero count (accumulates into `nz` and `el`).
 *
 * @param e Experts.
 * @param w Row width of `h`.
 * @param h Grouped rows `[M, w]`.
 * @param meta Grouping meta.
 * @param nz u32 `[e]` accumulator of nonzeros.
 * @param el u32 `[e]` accumulator of elements.
 * @returns The dispatch.
 */
export function moeSegmentCountDispatch(
  e: number,
  w: number,
  h: Storage,
  meta: Storage,
  nz: Storage,
  el: Storage,
): Dispatch {
  return {
    op: "moeSegmentCount",
    key: "moeSegmentCount",
    wgsl: moeSegmentCountWgsl,
    cpu: ([a, b, c, d]) => moeSegmentCountCpu(e, w, a!, b!, c!, d!),
    buffers: [h, meta, nz, el],
    uniforms: uniforms(e, w),
    workgroups: [Math.max(1, Math.min(e, 4096)), 1, 1],
  };
}

/** Number of u32 router-counter words for E experts: routed (E), kept (E), dropped, tokens. */
export function routerCountWords(e: number): number {
  return 2 * e + 2;
}

/** Number of f32 router-counter words for E experts: probability mass (E), entropy sum. */
export function routerMassWords(e: number): number {
  return e + 1;
}

/**
 * WGSL of the router counters, accumulated in place: `cnt[e] += load[e]`,
 * `cnt[E + e] += kept[e]`, `cnt[2E] += dropped`, `cnt[2E + 1] += N`, `mass[e] += Σ_t p[t, e]`,
 * `mass[E] += Σ_t H(p_t)` (router entropy in nats). One workgroup; fixed lane assignment and a
 * tree for the entropy, so the float sums are deterministic.
 */
export function moeRouterStatsWgsl(): string {
  return `struct P { n: u32, e: u32 };
@group(0) @binding(0) var<storage, read> probs: array<f32>;
@group(0) @binding(1) var<storage, read> segs: array<u32>;
@group(0) @binding(2) var<storage, read_write> cnt: array<u32>;
@group(0) @binding(3) var<storage, read_write> mass: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
var<workgroup> sh: array<f32, ${SEG_WG}>;
@compute @workgroup_size(${SEG_WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  for (var e = lid; e < p.e; e = e + ${SEG_WG}u) {
    var s = 0.0;
    for (var t = 0u; t < p.n; t = t + 1u) { s = s + probs[t * p.e + e]; }
    mass[e] = mass[e] + s;
    cnt[e] = cnt[e] + segs[p.e + 1u + e];
    cnt[p.e + e] = cnt[p.e + e] + (segs[e + 1u] - segs[e]);
  }
  var h = 0.0;
  for (var t = lid; t < p.n; t = t + ${SEG_WG}u) {
    var ht = 0.0;
    for (var e = 0u; e < p.e; e = e + 1u) {
      let q = probs[t * p.e + e];
      if (q > 0.0) { ht = ht - q * log(q); }
    }
    h = h + ht;
  }
  sh[lid] = h;
  workgroupBarrier();
  for (var s = ${SEG_WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { sh[lid] = sh[lid] + sh[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    mass[p.e] = mass[p.e] + sh[0];
    cnt[2u * p.e] = cnt[2u * p.e] + segs[2u * p.e + 1u];
    cnt[2u * p.e + 1u] = cnt[2u * p.e + 1u] + p.n;
  }
}`;
}

/** CPU twin of {@link moeRouterStatsWgsl} (same summation order, f32 rounding). */
export function moeRouterStatsCpu(
  n: number,
  e: number,
  probs: ArrayBuffer,
  meta: ArrayBuffer,
  cnt: ArrayBuffer,
  mass: ArrayBuffer,
): void {
  const pv = new Float32Array(probs), mv = new Uint32Array(meta);
  const cv = new Uint32Array(cnt, 0, routerCountWords(e));
  const ms = new Float32Array(mass, 0, routerMassWords(e));
  for (let x = 0; x < e; x++) {
    let s = 0;
    for (let t = 0; t < n; t++) s = fr(s + pv[t * e + x]!);
    ms[x] = ms[x]! + s;
    cv[x] = (cv[x]! + mv[e + 1 + x]!) >>> 0;
    cv[e + x] = (cv[e + x]! + mv[x + 1]! - mv[x]!) >>> 0;
  }
  const sh = new Float32Array(SEG_WG);
  for (let lid = 0; lid < SEG_WG; lid++) {
    let h = 0;
    for (let t = lid; t < n; t += SEG_WG) {
      let ht = 0;
      for (let x = 0; x < e; x++) {
        const q = pv[t * e + x]!;
        if (q > 0) ht = fr(ht - fr(q * fr(Math.log(q))));
      }
      h = fr(h + ht);
    }
    sh[lid] = h;
  }
  for (let s = SEG_WG / 2; s > 0; s >>= 1) {
    for (let lid = 0; lid < s; lid++) sh[lid] = sh[lid]! + sh[lid + s]!;
  }
  ms[e] = ms[e]! + sh[0]!;
  cv[2 * e] = (cv[2 * e]! + mv[2 * e + 1]!) >>> 0;
  cv[2 * e + 1] = (cv[2 * e + 1]! + n) >>> 0;
}

/**
 * Dispatch of the router counters (accumulates into `cnt` and `mass`).
 *
 * @param n Tokens.
 * @param e Experts.
 * @param probs Router probabilities `[n, e]`.
 * @param meta Grouping meta.
 * @param cnt u32 `[2e + 2]` accumulator.
 * @param mass f32 `[e + 1]` accumulator.
 * @returns The dispatch.
 */
export function moeRouterStatsDispatch(
  n: number,
  e: number,
  probs: Storage,
  meta: Storage,
  cnt: Storage,
  mass: Storage,
): Dispatch {
  return {
    op: "moeRouterStats",
    key: "moeRouterStats",
    wgsl: moeRouterStatsWgsl,
    cpu: ([a, b, c, d]) => moeRouterStatsCpu(n, e, a!, b!, c!, d!),
    buffers: [probs, meta, cnt, mass],
    uniforms: uniforms(n, e),
    workgroups: [1, 1, 1],
  };
}

// ---------------------------------------------------------------------------------------------
// Chunk-level sparsity: which weight rows the union of a chunk's masks touches

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

/**
 * WGSL of the chunk union: `used[(c·E + e)·w + col] = 1` when some row of expert e whose token
 * lies in chunk c has a nonzero in column col, else 0. Rows of an expert are in token order, so
 * a binary search finds the chunk's first row and the walk stops at its last.
 */
export function chunkUnionWgsl(): string {
  return `struct P { e: u32, k: u32, seq: u32, chunk: u32, per: u32, chunks: u32, w: u32 };
@group(0) @binding(0) var<storage, read> h: array<f32>;
@group(0) @binding(1) var<storage, read> perm: array<u32>;
@group(0) @binding(2) var<storage, read> segs: array<u32>;
@group(0) @binding(3) var<storage, read_write> used: array<f32>;
@group(0) @binding(4) var<uniform> p: P;
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
    key: "chunkUnion",
    wgsl: chunkUnionWgsl,
    cpu: ([a, b, c, d]) => chunkUnionCpu(p, a!, b!, c!, d!),
    buffers: [h, perm, meta, used],
    uniforms: uniforms(p.e, p.k, p.seqLen, p.chunk, p.perSeq, p.chunks, p.w),
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
