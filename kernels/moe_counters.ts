/**
 * Mixture-of-experts counters, accumulated in place on the device and read at log time: per-segment
 * nonzeros (per-expert sparsity) and router statistics. Layout and vocabulary: `moe_layout.ts`.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { fr } from "./moe_layout.ts";
import { moeSegmentCountNative } from "./native/moe_counters.ts";
import { defineKernel } from "./spec.ts";

const SEG_WG = 64;

const MOE_SEGMENT_COUNT = defineKernel({
  name: "moeSegmentCount",
  bindings: [
    { name: "h", type: "f32", access: "read" },
    { name: "segs", type: "u32", access: "read" },
    { name: "nz", type: "u32", access: "read_write" },
    { name: "el", type: "u32", access: "read_write" },
  ],
  params: { e: "u32", w: "u32" },
});

/**
 * WGSL of the per-expert nonzero count: workgroup e counts the nonzeros of the rows of segment
 * e of `h` `[M, w]` and adds them to `nz[e]`, and adds the segment's element count to `el[e]`.
 * The lanes' partial counts meet in a shared-memory tree (integers: order-free and exact).
 */
export function moeSegmentCountWgsl(): string {
  return `${MOE_SEGMENT_COUNT.header()}
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
    key: MOE_SEGMENT_COUNT.key(),
    wgsl: moeSegmentCountWgsl,
    cpu: ([a, b, c, d]) => moeSegmentCountCpu(e, w, a!, b!, c!, d!),
    native: (bufs, rt) => moeSegmentCountNative(e, w, bufs, rt),
    buffers: [h, meta, nz, el],
    uniforms: MOE_SEGMENT_COUNT.uniforms({ e, w }),
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

const MOE_ROUTER_STATS = defineKernel({
  name: "moeRouterStats",
  bindings: [
    { name: "probs", type: "f32", access: "read" },
    { name: "segs", type: "u32", access: "read" },
    { name: "cnt", type: "u32", access: "read_write" },
    { name: "mass", type: "f32", access: "read_write" },
  ],
  params: { n: "u32", e: "u32" },
});

/**
 * WGSL of the router counters, accumulated in place: `cnt[e] += load[e]`,
 * `cnt[E + e] += kept[e]`, `cnt[2E] += dropped`, `cnt[2E + 1] += N`, `mass[e] += Σ_t p[t, e]`,
 * `mass[E] += Σ_t H(p_t)` (router entropy in nats). One workgroup; fixed lane assignment and a
 * tree for the entropy, so the float sums are deterministic.
 */
export function moeRouterStatsWgsl(): string {
  return `${MOE_ROUTER_STATS.header()}
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
    key: MOE_ROUTER_STATS.key(),
    wgsl: moeRouterStatsWgsl,
    cpu: ([a, b, c, d]) => moeRouterStatsCpu(n, e, a!, b!, c!, d!),
    buffers: [probs, meta, cnt, mass],
    uniforms: MOE_ROUTER_STATS.uniforms({ n, e }),
    workgroups: [1, 1, 1],
  };
}
