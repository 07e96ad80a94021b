/**
 * Mixture-of-experts gather: token rows into the grouped layout, and its backward. Layout and
 * vocabulary: `moe_layout.ts`.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { gridStride, WG } from "./common.ts";
import { fr, GRID, NONE } from "./moe_layout.ts";
import { moeGatherBackwardNative, moeGatherNative } from "./native/moe_gather.ts";
import { defineKernel } from "./spec.ts";

const MOE_GATHER = defineKernel({
  name: "moeGather",
  bindings: [
    { name: "x", type: "f32", access: "read" },
    { name: "perm", type: "u32", access: "read" },
    { name: "xg", type: "f32", access: "read_write" },
  ],
  params: { m: "u32", d: "u32", k: "u32" },
});

/** WGSL of the gather `xg[r, :] = x[perm[r] / k, :]` (zero for NONE rows). */
export function moeGatherWgsl(): string {
  return `${MOE_GATHER.header()}
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
    key: MOE_GATHER.key(),
    wgsl: moeGatherWgsl,
    cpu: ([a, b, c]) => moeGatherCpu(m, d, k, a!, b!, c!),
    native: (bufs, rt) => moeGatherNative(m, d, k, bufs, rt),
    buffers: [x, perm, xg],
    uniforms: MOE_GATHER.uniforms({ m, d, k }),
    workgroups: gridStride(m * d),
  };
}

const MOE_GATHER_BACKWARD = defineKernel({
  name: "moeGatherBackward",
  bindings: [
    { name: "g", type: "f32", access: "read" },
    { name: "pos", type: "u32", access: "read" },
    { name: "dx", type: "f32", access: "read_write" },
  ],
  params: { n: "u32", d: "u32", k: "u32" },
});

/** WGSL of the gather backward `dx[t, :] = Σ_j g[pos[t·k + j], :]` (slot order, NONE skipped). */
export function moeGatherBackwardWgsl(): string {
  return `${MOE_GATHER_BACKWARD.header()}
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
    key: MOE_GATHER_BACKWARD.key(),
    wgsl: moeGatherBackwardWgsl,
    cpu: ([a, b, c]) => moeGatherBackwardCpu(n, d, k, a!, b!, c!),
    native: (bufs, rt) => moeGatherBackwardNative(n, d, k, bufs, rt),
    buffers: [g, pos, dx],
    uniforms: MOE_GATHER_BACKWARD.uniforms({ n, d, k }),
    workgroups: gridStride(n * d),
  };
}
