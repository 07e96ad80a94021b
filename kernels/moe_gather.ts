/**
 * Mixture-of-experts gather: token rows into the grouped layout, and its backward. Layout and
 * vocabulary: `moe_layout.ts`.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { gridStride, uniforms, WG } from "./common.ts";
import { fr, GRID, NONE } from "./moe_layout.ts";
import { moeGatherBackwardNative, moeGatherNative } from "./native/moe_gather.ts";

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
    native: (bufs, rt) => moeGatherNative(m, d, k, bufs, rt),
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
    native: (bufs, rt) => moeGatherBackwardNative(n, d, k, bufs, rt),
    buffers: [g, pos, dx],
    uniforms: uniforms(n, d, k),
    workgroups: gridStride(n * d),
  };
}
