/**
 * Mixture-of-experts combine: `y[t] = Σ_j gate[t, j] · yg[pos[t·k + j]]`, and its two backward
 * passes. Layout and vocabulary: `moe_layout.ts`.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { gridStride, WG } from "./common.ts";
import { fr, GRID, NONE } from "./moe_layout.ts";
import { laneSum, ROW_ARGS, ROW_WG, rowGroups, rowLanes, rowLoopOpen } from "./reduce.ts";
import {
  moeCombineGatesBackwardNative,
  moeCombineNative,
  moeCombineRowsBackwardNative,
} from "./native/moe_combine.ts";
import { defineKernel } from "./spec.ts";

const MOE_COMBINE = defineKernel({
  name: "moeCombine",
  bindings: [
    { name: "yg", type: "f32", access: "read" },
    { name: "gates", type: "f32", access: "read" },
    { name: "pos", type: "u32", access: "read" },
    { name: "y", type: "f32", access: "read_write" },
  ],
  params: { n: "u32", d: "u32", k: "u32" },
});

/** WGSL of the combine (slot order; dropped assignments contribute nothing). */
export function moeCombineWgsl(): string {
  return `${MOE_COMBINE.header()}
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
    key: MOE_COMBINE.key(),
    wgsl: moeCombineWgsl,
    cpu: ([a, b, c, e]) => moeCombineCpu(n, d, k, a!, b!, c!, e!),
    native: (bufs, rt) => moeCombineNative(n, d, k, bufs, rt),
    buffers: [yg, gates, pos, y],
    uniforms: MOE_COMBINE.uniforms({ n, d, k }),
    workgroups: gridStride(n * d),
  };
}

const MOE_COMBINE_ROWS = defineKernel({
  name: "moeCombineRows",
  bindings: [
    { name: "g", type: "f32", access: "read" },
    { name: "gates", type: "f32", access: "read" },
    { name: "perm", type: "u32", access: "read" },
    { name: "dyg", type: "f32", access: "read_write" },
  ],
  params: { m: "u32", d: "u32", k: "u32" },
});

/** WGSL of the combine's row gradient `dyg[r, :] = gate[perm[r]] · g[perm[r] / k, :]`. */
export function moeCombineRowsBackwardWgsl(): string {
  return `${MOE_COMBINE_ROWS.header()}
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
    key: MOE_COMBINE_ROWS.key(),
    wgsl: moeCombineRowsBackwardWgsl,
    cpu: ([a, b, c, e]) => moeCombineRowsBackwardCpu(m, d, k, a!, b!, c!, e!),
    native: (bufs, rt) => moeCombineRowsBackwardNative(m, d, k, bufs, rt),
    buffers: [g, gates, perm, dyg],
    uniforms: MOE_COMBINE_ROWS.uniforms({ m, d, k }),
    workgroups: gridStride(m * d),
  };
}

const MOE_COMBINE_GATES = defineKernel({
  name: "moeCombineGates",
  bindings: [
    { name: "g", type: "f32", access: "read" },
    { name: "yg", type: "f32", access: "read" },
    { name: "pos", type: "u32", access: "read" },
    { name: "dgate", type: "f32", access: "read_write" },
  ],
  params: { rows: "u32", d: "u32", k: "u32" },
});

/**
 * WGSL of the combine's gate gradient `dgate[a] = ⟨g[a / k, :], yg[pos[a], :]⟩` (0 when
 * dropped): one row per assignment on the shared row geometry (lanes + a shared-memory tree).
 */
export function moeCombineGatesBackwardWgsl(lanes: number): string {
  return `${MOE_COMBINE_GATES.header()}
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
    key: MOE_COMBINE_GATES.key(`L${lanes}`),
    wgsl: () => moeCombineGatesBackwardWgsl(lanes),
    cpu: ([a, b, c, e]) => moeCombineGatesBackwardCpu(rows, d, k, a!, b!, c!, e!),
    native: (bufs, rt) => moeCombineGatesBackwardNative(rows, d, k, bufs, rt),
    buffers: [g, yg, pos, dgate],
    uniforms: MOE_COMBINE_GATES.uniforms({ rows, d, k }),
    workgroups: rowGroups(rows, lanes),
  };
}
