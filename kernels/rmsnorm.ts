/**
 * RMSNorm over the last dim, `y = x · r · w` with `r = 1/√(mean(x²) + eps)`, and its backward.
 *
 * - forward: one pass for Σx² (lane tree), one pass writing `x · r · w`;
 * - backward for x: one kernel recomputes Σx² and Σ g·w·x per row, then writes
 *   `g_x = r·g·w − x · r³ · (Σ g·w·x) / D`, and records r per row for the weight gradient;
 * - backward for w: `g_w[j] = Σ_rows g · x · r` as f32 column partials over chunks of rows
 *   (one invocation per (chunk, column), deterministic), summed by `sumTo` afterwards.
 *
 * Recomputing r in the backward costs one extra read of x but saves a per-row buffer that
 * would have to outlive the forward.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { type DType, typedView } from "../src/core/dtype.ts";
import {
  rmsNormBackwardF32Native,
  rmsNormF32Native,
  rmsNormWeightGradF32Native,
} from "./native/rmsnorm.ts";
import { laneSum, ROW_ARGS, ROW_WG, rowGroups, rowLanes, rowLoopOpen } from "./reduce.ts";
import { defineKernel } from "./spec.ts";

/** Runtime sizes. */
export interface RmsNormParams {
  rows: number;
  cols: number;
  eps: number;
}

const RMS_NORM = defineKernel({
  name: "rmsNorm",
  bindings: [
    { name: "xs", type: "T", access: "read" },
    { name: "w", type: "T", access: "read", optional: true },
    { name: "out", type: "T", access: "read_write" },
  ],
  params: { rows: "u32", cols: "u32", eps: "f32" },
});

/** WGSL of the forward (`hasWeight`: multiply by a `[cols]` weight). */
export function rmsNormWgsl(dtype: DType, hasWeight: boolean, lanes: number): string {
  const T = dtype, L = lanes;
  const w = hasWeight ? ` * f32(w[j])` : "";
  return `${RMS_NORM.header({ types: { T }, omit: hasWeight ? [] : ["w"] })}
var<workgroup> sv: array<f32, ${ROW_WG}>;
@compute @workgroup_size(${ROW_WG})
fn main(${ROW_ARGS}) {
  ${rowLoopOpen(L)}
    let start = row * p.cols;
    var acc = 0.0;
    if (live) {
      for (var j = lane; j < p.cols; j = j + ${L}u) { let v = f32(xs[start + j]); acc = acc + v * v; }
    }
    ${laneSum(L, "sv", "acc", "ss")}
    if (live) {
      let r = inverseSqrt(ss / f32(p.cols) + p.eps);
      for (var j = lane; j < p.cols; j = j + ${L}u) {
        out[start + j] = ${T}(f32(xs[start + j]) * r${w});
      }
    }
  }
}`;
}

/** 1/√(Σx²/D + eps) of one row, in f64. */
function rstdOf(x: ArrayLike<number>, start: number, cols: number, eps: number): number {
  let ss = 0;
  for (let j = 0; j < cols; j++) ss += x[start + j]! * x[start + j]!;
  return 1 / Math.sqrt(Math.fround(ss) / cols + Math.fround(eps));
}

/** CPU twin of {@link rmsNormWgsl}. Buffers: x, [w], out. */
export function rmsNormCpu(
  dtype: DType,
  hasWeight: boolean,
  p: RmsNormParams,
  bufs: ArrayBuffer[],
): void {
  const x = typedView(dtype, bufs[0]!);
  const w = hasWeight ? typedView(dtype, bufs[1]!) : null;
  const out = typedView(dtype, bufs[hasWeight ? 2 : 1]!, p.rows * p.cols);
  for (let r = 0; r < p.rows; r++) {
    const start = r * p.cols;
    const rs = rstdOf(x, start, p.cols, p.eps);
    for (let j = 0; j < p.cols; j++) out[start + j] = x[start + j]! * rs * (w ? w[j]! : 1);
  }
}

/**
 * Dispatch of the forward.
 *
 * @param dtype Storage dtype of x, w and the output.
 * @param p Sizes and eps.
 * @param x Input.
 * @param w Weight `[cols]`, or null.
 * @param out Output.
 * @returns The dispatch.
 */
export function rmsNormDispatch(
  dtype: DType,
  p: RmsNormParams,
  x: Storage,
  w: Storage | null,
  out: Storage,
): Dispatch {
  const lanes = rowLanes(p.cols), hasWeight = w !== null;
  return {
    op: "rmsNorm",
    key: RMS_NORM.key(dtype, hasWeight ? "w" : "nw", `L${lanes}`),
    wgsl: () => rmsNormWgsl(dtype, hasWeight, lanes),
    cpu: (bufs) => rmsNormCpu(dtype, hasWeight, p, bufs),
    native: dtype === "f32"
      ? (b, rt) => rmsNormF32Native(p.rows, p.cols, p.eps, b[0]!, w ? b[1]! : null, b.at(-1)!, rt)
      : undefined,
    buffers: w ? [x, w, out] : [x, out],
    uniforms: RMS_NORM.uniforms({ rows: p.rows, cols: p.cols, eps: p.eps }),
    workgroups: rowGroups(p.rows, lanes),
  };
}

// ---------------------------------------------------------------------------------------------
// Backward for x (and r per row)

const RMS_NORM_BACKWARD = defineKernel({
  name: "rmsNormBackward",
  bindings: [
    { name: "xs", type: "T", access: "read" },
    { name: "w", type: "T", access: "read", optional: true },
    { name: "g", type: "T", access: "read" },
    { name: "gx", type: "T", access: "read_write" },
    { name: "rstd", type: "f32", access: "read_write" },
  ],
  params: { rows: "u32", cols: "u32", eps: "f32" },
});

/** WGSL of the x-gradient kernel. Bindings: x, [w], g, gx, rstd (f32 per row). */
export function rmsNormBackwardWgsl(dtype: DType, hasWeight: boolean, lanes: number): string {
  const T = dtype, L = lanes;
  const gw = hasWeight ? "f32(g[start + j]) * f32(w[j])" : "f32(g[start + j])";
  return `${RMS_NORM_BACKWARD.header({ types: { T }, omit: hasWeight ? [] : ["w"] })}
var<workgroup> sv: array<vec2f, ${ROW_WG}>;
@compute @workgroup_size(${ROW_WG})
fn main(${ROW_ARGS}) {
  ${rowLoopOpen(L)}
    let start = row * p.cols;
    var acc = vec2f(0.0);
    if (live) {
      for (var j = lane; j < p.cols; j = j + ${L}u) {
        let v = f32(xs[start + j]);
        acc = acc + vec2f(v * v, ${gw} * v);
      }
    }
    ${laneSum(L, "sv", "acc", "tot")}
    if (live) {
      let r = inverseSqrt(tot.x / f32(p.cols) + p.eps);
      let c = r * r * r * tot.y / f32(p.cols);
      for (var j = lane; j < p.cols; j = j + ${L}u) {
        gx[start + j] = ${T}(r * ${gw} - f32(xs[start + j]) * c);
      }
      if (lane == 0u) { rstd[row] = r; }
    }
  }
}`;
}

/** CPU twin of {@link rmsNormBackwardWgsl}. Buffers: x, [w], g, gx, rstd. */
export function rmsNormBackwardCpu(
  dtype: DType,
  hasWeight: boolean,
  p: RmsNormParams,
  bufs: ArrayBuffer[],
): void {
  let k = 0;
  const x = typedView(dtype, bufs[k++]!);
  const w = hasWeight ? typedView(dtype, bufs[k++]!) : null;
  const g = typedView(dtype, bufs[k++]!);
  const gx = typedView(dtype, bufs[k++]!, p.rows * p.cols);
  const rstd = new Float32Array(bufs[k++]!, 0, p.rows);
  const D = p.cols;
  for (let row = 0; row < p.rows; row++) {
    const start = row * D;
    const r = rstdOf(x, start, D, p.eps);
    let dot = 0;
    for (let j = 0; j < D; j++) dot += g[start + j]! * (w ? w[j]! : 1) * x[start + j]!;
    const c = (r * r * r * dot) / D;
    for (let j = 0; j < D; j++) {
      gx[start + j] = r * g[start + j]! * (w ? w[j]! : 1) - x[start + j]! * c;
    }
    rstd[row] = r;
  }
}

/**
 * Dispatch of the x-gradient kernel (also writes r per row into `rstd`, f32 `[rows]`).
 *
 * @param dtype Storage dtype.
 * @param p Sizes and eps.
 * @param x Forward input.
 * @param w Weight, or null.
 * @param g Upstream gradient.
 * @param gx x-gradient (output).
 * @param rstd Per-row r (output).
 * @returns The dispatch.
 */
export function rmsNormBackwardDispatch(
  dtype: DType,
  p: RmsNormParams,
  x: Storage,
  w: Storage | null,
  g: Storage,
  gx: Storage,
  rstd: Storage,
): Dispatch {
  const lanes = rowLanes(p.cols), hasWeight = w !== null;
  return {
    op: "rmsNormBackward",
    key: RMS_NORM_BACKWARD.key(dtype, hasWeight ? "w" : "nw", `L${lanes}`),
    wgsl: () => rmsNormBackwardWgsl(dtype, hasWeight, lanes),
    cpu: (bufs) => rmsNormBackwardCpu(dtype, hasWeight, p, bufs),
    native: dtype === "f32"
      ? (b, rt) => rmsNormBackwardF32Native(p.rows, p.cols, p.eps, b, hasWeight, rt)
      : undefined,
    buffers: w ? [x, w, g, gx, rstd] : [x, g, gx, rstd],
    uniforms: RMS_NORM_BACKWARD.uniforms({ rows: p.rows, cols: p.cols, eps: p.eps }),
    workgroups: rowGroups(p.rows, lanes),
  };
}

// ---------------------------------------------------------------------------------------------
// Backward for the weight: column partials over chunks of rows

const COL_WG = 64;

/**
 * How many row chunks the weight gradient splits into: enough to keep the device busy when
 * there are few columns, few enough that summing the partials is cheap.
 *
 * @param rows Row count.
 * @returns Chunk count and rows per chunk.
 */
export function weightGradPlan(rows: number): { chunks: number; chunkRows: number } {
  const chunks = Math.max(1, Math.min(64, Math.ceil(rows / 64)));
  return { chunks, chunkRows: Math.ceil(rows / chunks) };
}

const RMS_NORM_WEIGHT_GRAD = defineKernel({
  name: "rmsNormWeightGrad",
  bindings: [
    { name: "xs", type: "T", access: "read" },
    { name: "g", type: "T", access: "read" },
    { name: "rstd", type: "f32", access: "read" },
    { name: "partial", type: "f32", access: "read_write" },
  ],
  params: { rows: "u32", cols: "u32", chunk: "u32" },
});

/** WGSL: `partial[c, j] = Σ_{rows r of chunk c} g[r, j] · x[r, j] · rstd[r]`. */
export function rmsNormWeightGradWgsl(dtype: DType): string {
  return `${RMS_NORM_WEIGHT_GRAD.header({ types: { T: dtype } })}
@compute @workgroup_size(${COL_WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let j = gid.x;
  let c = gid.y;
  if (j >= p.cols) { return; }
  let r0 = c * p.chunk;
  let r1 = min(r0 + p.chunk, p.rows);
  var acc = 0.0;
  for (var r = r0; r < r1; r = r + 1u) {
    acc = acc + f32(g[r * p.cols + j]) * f32(xs[r * p.cols + j]) * rstd[r];
  }
  partial[c * p.cols + j] = acc;
}`;
}

/** CPU twin of {@link rmsNormWeightGradWgsl}. */
export function rmsNormWeightGradCpu(
  dtype: DType,
  rows: number,
  cols: number,
  chunkRows: number,
  chunks: number,
  bufs: ArrayBuffer[],
): void {
  const x = typedView(dtype, bufs[0]!), g = typedView(dtype, bufs[1]!);
  const rstd = new Float32Array(bufs[2]!), partial = new Float32Array(bufs[3]!, 0, chunks * cols);
  for (let c = 0; c < chunks; c++) {
    const r1 = Math.min((c + 1) * chunkRows, rows);
    for (let j = 0; j < cols; j++) {
      let acc = 0;
      for (let r = c * chunkRows; r < r1; r++) {
        acc += g[r * cols + j]! * x[r * cols + j]! * rstd[r]!;
      }
      partial[c * cols + j] = acc;
    }
  }
}

/**
 * Dispatch of the weight-gradient partials (`[chunks, cols]` f32).
 *
 * @param dtype Storage dtype of x and g.
 * @param rows Row count.
 * @param cols Row length.
 * @param x Forward input.
 * @param g Upstream gradient.
 * @param rstd Per-row r from the x-gradient kernel.
 * @param partial Output partials.
 * @returns The dispatch.
 */
export function rmsNormWeightGradDispatch(
  dtype: DType,
  rows: number,
  cols: number,
  x: Storage,
  g: Storage,
  rstd: Storage,
  partial: Storage,
): Dispatch {
  const { chunks, chunkRows } = weightGradPlan(rows);
  return {
    op: "rmsNormWeightGrad",
    key: RMS_NORM_WEIGHT_GRAD.key(dtype),
    wgsl: () => rmsNormWeightGradWgsl(dtype),
    cpu: (bufs) => rmsNormWeightGradCpu(dtype, rows, cols, chunkRows, chunks, bufs),
    native: dtype === "f32"
      ? (b, rt) => rmsNormWeightGradF32Native(rows, cols, chunkRows, chunks, b, rt)
      : undefined,
    buffers: [x, g, rstd, partial],
    uniforms: RMS_NORM_WEIGHT_GRAD.uniforms({ rows, cols, chunk: chunkRows }),
    workgroups: [Math.ceil(cols / COL_WG), chunks, 1],
  };
}
