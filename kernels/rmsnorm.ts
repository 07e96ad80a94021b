/**
 * RMSNorm over the last dim, `y = x · r · w` with `r = 1/√(mean(x²) + eps)`, and its backward.
 *
 * - forward: one pass for Σx² (lane tree), one pass writing `x · r · w`;
 * - backward for x: one kernel recomputes Σx² and Σ g·w·x per row, then writes
 *   `g_x = r·g·w − x · r³ · (Σ g·w·x) / D`, and records r per row for the weight gradient;
 * - backward for w: `g_w[j] = Σ_rows g · x · r` in one launch: a workgroup per 8 columns, 32
 *   splits of contiguous rows each, added by a fixed tree in workgroup memory (deterministic).
 *   It needs r of every row, which the x-gradient kernel writes: WebGPU has no grid-wide
 *   barrier, and a "last workgroup adds the partials" scheme would need memory ordering between
 *   workgroups that WGSL's relaxed atomics do not give, so the x and weight gradients stay two
 *   launches (the separate `sumTo` of the column partials is gone).
 *
 * Recomputing r in the backward costs one extra read of x but saves a per-row buffer that
 * would have to outlive the forward.
 *
 * Residual form (`addRmsNorm`): the forward takes a second input `res`, normalises `x + res`
 * (rounded to the dtype, as a stored sum) and writes that sum too; the x-gradient kernel takes
 * the sum's gradient from elsewhere (`gres`) and adds it to the rounded x-gradient. A pre-norm
 * transformer's residual adds and gradient sums then cost no launch of their own.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { type DType, typedView } from "../src/core/dtype.ts";
import {
  RMS_NORM_WEIGHT_GRAD_SPLITS,
  rmsNormBackwardF32Native,
  rmsNormF32Native,
  rmsNormWeightGradF32Native,
  weightGradTree,
} from "./native/rmsnorm.ts";
import { laneSum, ROW_ARGS, ROW_WG, rowGroups, rowLanes, rowLoopOpen } from "./reduce.ts";
import { defineKernel } from "./spec.ts";

/** Runtime sizes. */
export interface RmsNormParams {
  rows: number;
  cols: number;
  eps: number;
  /** Lanes per row of the WebGPU kernels (default `rowLanes(cols)`); host kernels ignore it. */
  lanes?: number;
}

const RMS_NORM = defineKernel({
  name: "rmsNorm",
  bindings: [
    { name: "xs", type: "T", access: "read" },
    { name: "res", type: "T", access: "read", optional: true },
    { name: "w", type: "T", access: "read", optional: true },
    { name: "out", type: "T", access: "read_write" },
    { name: "sum", type: "T", access: "read_write", optional: true },
  ],
  params: { rows: "u32", cols: "u32", eps: "f32" },
});

/**
 * WGSL of the forward (`hasWeight`: multiply by a `[cols]` weight). With `residual` the input
 * is `xs + res`, rounded to the storage dtype as the add would store it, and also written to
 * `sum`: a transformer's residual add and the next norm in one launch.
 */
export function rmsNormWgsl(
  dtype: DType,
  hasWeight: boolean,
  lanes: number,
  residual = false,
): string {
  const T = dtype, L = lanes;
  const w = hasWeight ? ` * f32(w[j])` : "";
  const omit = [...(hasWeight ? [] : ["w"]), ...(residual ? [] : ["res", "sum"])];
  // Each lane computes the sum of its own elements in both loops (the same expression, so the
  // same value), and writes it in the first.
  const load = residual
    ? `f32(${T}(f32(xs[start + j]) + f32(res[start + j])))`
    : "f32(xs[start + j])";
  const store = residual ? ` sum[start + j] = ${T}(v);` : "";
  return `${RMS_NORM.header({ types: { T }, omit })}
var<workgroup> sv: array<f32, ${ROW_WG}>;
@compute @workgroup_size(${ROW_WG})
fn main(${ROW_ARGS}) {
  ${rowLoopOpen(L)}
    let start = row * p.cols;
    var acc = 0.0;
    if (live) {
      for (var j = lane; j < p.cols; j = j + ${L}u) { let v = ${load}; acc = acc + v * v;${store} }
    }
    ${laneSum(L, "sv", "acc", "ss")}
    if (live) {
      let r = inverseSqrt(ss / f32(p.cols) + p.eps);
      for (var j = lane; j < p.cols; j = j + ${L}u) {
        out[start + j] = ${T}(${load} * r${w});
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

/** CPU twin of {@link rmsNormWgsl}. Buffers: x, [res], [w], out, [sum]. */
export function rmsNormCpu(
  dtype: DType,
  hasWeight: boolean,
  p: RmsNormParams,
  bufs: ArrayBuffer[],
  residual = false,
): void {
  let k = 0;
  let x = typedView(dtype, bufs[k++]!);
  const res = residual ? typedView(dtype, bufs[k++]!) : null;
  const w = hasWeight ? typedView(dtype, bufs[k++]!) : null;
  const out = typedView(dtype, bufs[k++]!, p.rows * p.cols);
  if (res) {
    // The sum as the add stores it (rounded to the dtype), then normalised as a plain input.
    const sum = typedView(dtype, bufs[k++]!, p.rows * p.cols);
    for (let i = 0; i < p.rows * p.cols; i++) sum[i] = x[i]! + res[i]!;
    x = sum;
  }
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
 * @param residual With `res` added to x first (the sum written to `sum`), or null.
 * @returns The dispatch.
 */
export function rmsNormDispatch(
  dtype: DType,
  p: RmsNormParams,
  x: Storage,
  w: Storage | null,
  out: Storage,
  residual: { res: Storage; sum: Storage } | null = null,
): Dispatch {
  const lanes = p.lanes ?? rowLanes(p.cols), hasWeight = w !== null, hasRes = residual !== null;
  return {
    op: hasRes ? "addRmsNorm" : "rmsNorm",
    key: RMS_NORM.key(dtype, hasWeight ? "w" : "nw", `L${lanes}`, hasRes ? "res" : ""),
    wgsl: () => rmsNormWgsl(dtype, hasWeight, lanes, hasRes),
    cpu: (bufs) => rmsNormCpu(dtype, hasWeight, p, bufs, hasRes),
    native: dtype === "f32"
      ? (b, rt) => {
        const [xb, rb] = hasRes ? [b[0]!, b[1]!] : [b[0]!, null];
        const wb = w ? b[hasRes ? 2 : 1]! : null;
        const [ob, sb] = hasRes ? [b.at(-2)!, b.at(-1)!] : [b.at(-1)!, null];
        rmsNormF32Native(
          p.rows,
          p.cols,
          p.eps,
          xb,
          wb,
          ob,
          rt,
          rb && sb ? { res: rb, sum: sb } : null,
        );
      }
      : undefined,
    buffers: [
      x,
      ...(residual ? [residual.res] : []),
      ...(w ? [w] : []),
      out,
      ...(residual ? [residual.sum] : []),
    ],
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
    { name: "gres", type: "T", access: "read", optional: true },
    { name: "gx", type: "T", access: "read_write" },
    { name: "rstd", type: "f32", access: "read_write" },
  ],
  params: { rows: "u32", cols: "u32", eps: "f32" },
});

/**
 * WGSL of the x-gradient kernel. Bindings: x, [w], g, [gres], gx, rstd (f32 per row). With
 * `residual`, `gres` (the gradient reaching the residual sum from elsewhere) is added to the
 * norm's x-gradient after that is rounded to the dtype, as a separate add of the two would.
 */
export function rmsNormBackwardWgsl(
  dtype: DType,
  hasWeight: boolean,
  lanes: number,
  residual = false,
): string {
  const T = dtype, L = lanes;
  const gw = hasWeight ? "f32(g[start + j]) * f32(w[j])" : "f32(g[start + j])";
  const omit = [...(hasWeight ? [] : ["w"]), ...(residual ? [] : ["gres"])];
  const value = `${T}(r * ${gw} - f32(xs[start + j]) * c)`;
  const gx = residual ? `${T}(f32(${value}) + f32(gres[start + j]))` : value;
  return `${RMS_NORM_BACKWARD.header({ types: { T }, omit })}
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
        gx[start + j] = ${gx};
      }
      if (lane == 0u) { rstd[row] = r; }
    }
  }
}`;
}

/** CPU twin of {@link rmsNormBackwardWgsl}. Buffers: x, [w], g, [gres], gx, rstd. */
export function rmsNormBackwardCpu(
  dtype: DType,
  hasWeight: boolean,
  p: RmsNormParams,
  bufs: ArrayBuffer[],
  residual = false,
): void {
  let k = 0;
  const x = typedView(dtype, bufs[k++]!);
  const w = hasWeight ? typedView(dtype, bufs[k++]!) : null;
  const g = typedView(dtype, bufs[k++]!);
  const gres = residual ? typedView(dtype, bufs[k++]!) : null;
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
    // Rounded to the dtype first (the store above), then added as the add kernel adds.
    if (gres) { for (let j = start; j < start + D; j++) gx[j] = gx[j]! + gres[j]!; }
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
 * @param gres Gradient of the residual sum from elsewhere, added to gx (or null).
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
  gres: Storage | null = null,
): Dispatch {
  const lanes = p.lanes ?? rowLanes(p.cols), hasWeight = w !== null, hasRes = gres !== null;
  return {
    op: hasRes ? "addRmsNormBackward" : "rmsNormBackward",
    key: RMS_NORM_BACKWARD.key(dtype, hasWeight ? "w" : "nw", `L${lanes}`, hasRes ? "res" : ""),
    wgsl: () => rmsNormBackwardWgsl(dtype, hasWeight, lanes, hasRes),
    cpu: (bufs) => rmsNormBackwardCpu(dtype, hasWeight, p, bufs, hasRes),
    native: dtype === "f32"
      ? (b, rt) => rmsNormBackwardF32Native(p.rows, p.cols, p.eps, b, hasWeight, rt, hasRes)
      : undefined,
    buffers: [x, ...(w ? [w] : []), g, ...(gres ? [gres] : []), gx, rstd],
    uniforms: RMS_NORM_BACKWARD.uniforms({ rows: p.rows, cols: p.cols, eps: p.eps }),
    workgroups: rowGroups(p.rows, lanes),
  };
}

// ---------------------------------------------------------------------------------------------
// Backward for the weight: one launch for the whole cross-row sum

/** Columns per weight-gradient workgroup (consecutive, so a row's reads are contiguous). */
export const WG_COLS = 8;
/**
 * Rows per split of the weight gradient: the rows are cut into
 * {@link RMS_NORM_WEIGHT_GRAD_SPLITS} contiguous chunks (the last ones may be empty).
 *
 * @param rows Row count.
 * @returns Rows per split.
 */
export function weightGradChunk(rows: number): number {
  return Math.max(1, Math.ceil(rows / RMS_NORM_WEIGHT_GRAD_SPLITS));
}

const RMS_NORM_WEIGHT_GRAD = defineKernel({
  name: "rmsNormWeightGrad",
  bindings: [
    { name: "xs", type: "T", access: "read" },
    { name: "g", type: "T", access: "read" },
    { name: "rstd", type: "f32", access: "read" },
    { name: "gw", type: "f32", access: "read_write" },
  ],
  params: { rows: "u32", cols: "u32", chunk: "u32" },
});

/**
 * WGSL: `gw[j] = Σ_rows g[r, j] · x[r, j] · rstd[r]` in one launch. A workgroup owns
 * 8 columns (`WG_COLS`); each of its splits sums a contiguous chunk of rows in row order, and a
 * fixed tree in workgroup memory adds the splits (split s += split s + h for h = 16, 8, …, 1), so
 * the sum's order is fixed and the result deterministic.
 */
export function rmsNormWeightGradWgsl(dtype: DType): string {
  const S = RMS_NORM_WEIGHT_GRAD_SPLITS, C = WG_COLS;
  return `${RMS_NORM_WEIGHT_GRAD.header({ types: { T: dtype } })}
var<workgroup> part: array<f32, ${S * C}>;
@compute @workgroup_size(${S * C})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3u) {
  let jl = li % ${C}u;
  let s = li / ${C}u;
  let j = wg.x * ${C}u + jl;
  var acc = 0.0;
  if (j < p.cols) {
    let r0 = min(s * p.chunk, p.rows);
    let r1 = min(r0 + p.chunk, p.rows);
    for (var r = r0; r < r1; r = r + 1u) {
      acc = acc + f32(g[r * p.cols + j]) * f32(xs[r * p.cols + j]) * rstd[r];
    }
  }
  part[li] = acc;
  for (var h = ${S / 2}u; h > 0u; h = h >> 1u) {
    workgroupBarrier();
    if (s < h) { part[li] = part[li] + part[li + h * ${C}u]; }
  }
  if (s == 0u && j < p.cols) { gw[j] = part[li]; }
}`;
}

/** CPU twin of {@link rmsNormWeightGradWgsl}. Buffers: x, g, rstd, gw. */
export function rmsNormWeightGradCpu(
  dtype: DType,
  rows: number,
  cols: number,
  bufs: ArrayBuffer[],
): void {
  const x = typedView(dtype, bufs[0]!), g = typedView(dtype, bufs[1]!);
  const rstd = new Float32Array(bufs[2]!), gw = new Float32Array(bufs[3]!, 0, cols);
  const chunk = weightGradChunk(rows);
  const part = new Float32Array(RMS_NORM_WEIGHT_GRAD_SPLITS * cols);
  for (let s = 0; s < RMS_NORM_WEIGHT_GRAD_SPLITS; s++) {
    const r0 = Math.min(s * chunk, rows), r1 = Math.min(r0 + chunk, rows);
    for (let j = 0; j < cols; j++) {
      let acc = 0;
      for (let r = r0; r < r1; r++) acc += g[r * cols + j]! * x[r * cols + j]! * rstd[r]!;
      part[s * cols + j] = acc;
    }
  }
  weightGradTree(part, cols, 0, cols);
  gw.set(part.subarray(0, cols));
}

/**
 * Dispatch of the weight gradient (`[cols]` f32, summed over every row in this one launch).
 *
 * @param dtype Storage dtype of x and g.
 * @param rows Row count.
 * @param cols Row length.
 * @param x Forward input.
 * @param g Upstream gradient.
 * @param rstd Per-row r from the x-gradient kernel.
 * @param gw Output `[cols]` f32.
 * @returns The dispatch.
 */
export function rmsNormWeightGradDispatch(
  dtype: DType,
  rows: number,
  cols: number,
  x: Storage,
  g: Storage,
  rstd: Storage,
  gw: Storage,
): Dispatch {
  const chunk = weightGradChunk(rows);
  return {
    op: "rmsNormWeightGrad",
    key: RMS_NORM_WEIGHT_GRAD.key(dtype),
    wgsl: () => rmsNormWeightGradWgsl(dtype),
    cpu: (bufs) => rmsNormWeightGradCpu(dtype, rows, cols, bufs),
    native: dtype === "f32"
      ? (b, rt) => rmsNormWeightGradF32Native(rows, cols, chunk, b, rt)
      : undefined,
    buffers: [x, g, rstd, gw],
    uniforms: RMS_NORM_WEIGHT_GRAD.uniforms({ rows, cols, chunk }),
    workgroups: [Math.ceil(cols / WG_COLS), 1, 1],
  };
}
