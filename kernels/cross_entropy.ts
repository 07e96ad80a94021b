/**
 * Cross-entropy from logits, fused: per row, `loss = log Σ exp(x) − x[target]` via the same
 * online log-sum-exp as softmax (max-subtracted, one read of the row), and the fused backward
 * `g_x = g_row · (softmax(x) − onehot(target))`, which recomputes the row's log-sum-exp instead
 * of keeping the probabilities around.
 *
 * A target ≥ the class count cannot be reported from a kernel: its loss is NaN and its
 * gradient row is NaN, so the bad value surfaces at the next loss readback instead of training
 * silently on garbage. The op checks targets that come from host data.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { type DType, typedView } from "../src/core/dtype.ts";
import {
  ROW_ARGS,
  ROW_WG,
  rowGroups,
  rowLanes,
  rowLoopOpen,
  WGSL_FLOAT_HELPERS,
} from "./reduce.ts";
import { rowLseCpu, rowLseWgsl, WGSL_LSE } from "./softmax.ts";
import { crossEntropyBackwardNative, crossEntropyNative } from "./native/cross_entropy.ts";
import { defineKernel } from "./spec.ts";

const CROSS_ENTROPY = defineKernel({
  name: "crossEntropy",
  bindings: [
    { name: "xs", type: "T", access: "read" },
    { name: "targets", type: "u32", access: "read" },
    { name: "loss", type: "T", access: "read_write" },
  ],
  params: { rows: "u32", cols: "u32" },
});

/** WGSL of the per-row loss. Bindings: logits, targets (u32), loss. */
export function crossEntropyWgsl(dtype: DType, lanes: number): string {
  const T = dtype;
  return `${CROSS_ENTROPY.header({ types: { T } })}
${WGSL_FLOAT_HELPERS}${WGSL_LSE}
var<workgroup> sms: array<vec2f, ${ROW_WG}>;
@compute @workgroup_size(${ROW_WG})
fn main(${ROW_ARGS}) {
  ${rowLoopOpen(lanes)}
    let start = row * p.cols;
    ${rowLseWgsl(lanes, "p.cols", "f32(xs[start + j])")}
    if (live && lane == 0u) {
      let t = targets[row];
      var l = nan_f32();
      // (max − x_t) first: adding log Σ to a large max would round away the small loss.
      if (t < p.cols) { l = (ms.x - f32(xs[start + t])) + log(ms.y); }
      loss[row] = ${T}(l);
    }
  }
}`;
}

/** CPU twin of {@link crossEntropyWgsl}. */
export function crossEntropyCpu(
  dtype: DType,
  rows: number,
  cols: number,
  x: ArrayBuffer,
  targets: ArrayBuffer,
  loss: ArrayBuffer,
): void {
  const xs = typedView(dtype, x), ts = new Uint32Array(targets), l = typedView(dtype, loss, rows);
  for (let r = 0; r < rows; r++) {
    const start = r * cols, t = ts[r]!;
    const [m, s] = rowLseCpu(xs, start, cols);
    l[r] = t < cols ? m - xs[start + t]! + Math.log(s) : NaN;
  }
}

/**
 * Dispatch of the per-row loss.
 *
 * @param dtype Logits dtype (the loss is stored in it too).
 * @param rows Row count N.
 * @param cols Class count V.
 * @param x Logits `[N, V]`.
 * @param targets u32 `[N]`.
 * @param loss Output `[N]`.
 * @param lanes Lanes per row of the WebGPU kernel (host kernels ignore it).
 * @returns The dispatch.
 */
export function crossEntropyDispatch(
  dtype: DType,
  rows: number,
  cols: number,
  x: Storage,
  targets: Storage,
  loss: Storage,
  lanes = rowLanes(cols),
): Dispatch {
  return {
    op: "crossEntropy",
    key: CROSS_ENTROPY.key(dtype, `L${lanes}`),
    wgsl: () => crossEntropyWgsl(dtype, lanes),
    cpu: ([a, b, c]) => crossEntropyCpu(dtype, rows, cols, a!, b!, c!),
    native: dtype === "f32" ? (bufs, rt) => crossEntropyNative(rows, cols, bufs, rt) : undefined,
    buffers: [x, targets, loss],
    uniforms: CROSS_ENTROPY.uniforms({ rows, cols }),
    workgroups: rowGroups(rows, lanes),
  };
}

const CROSS_ENTROPY_BACKWARD = defineKernel({
  name: "crossEntropyBackward",
  bindings: [
    { name: "xs", type: "T", access: "read" },
    { name: "targets", type: "u32", access: "read" },
    { name: "g", type: "T", access: "read" },
    { name: "gx", type: "T", access: "read_write" },
  ],
  // gStep 1: g holds one gradient per row; 0: g is one scalar shared by every row (a mean or
  // sum's gradient), multiplied by `scale` (1/N for a mean) in the kernel.
  params: { rows: "u32", cols: "u32", gStep: "u32", scale: "f32" },
});

/**
 * WGSL of the backward. Bindings: logits, targets, g (per row, or one scalar), gx. A row's factor
 * is `T(g · scale)`, rounded as a stored gradient would be, so a scalar g with scale 1/N gives
 * what a broadcast of g times 1/N would.
 */
export function crossEntropyBackwardWgsl(dtype: DType, lanes: number): string {
  const T = dtype, L = lanes;
  return `${CROSS_ENTROPY_BACKWARD.header({ types: { T } })}
${WGSL_FLOAT_HELPERS}${WGSL_LSE}
var<workgroup> sms: array<vec2f, ${ROW_WG}>;
@compute @workgroup_size(${ROW_WG})
fn main(${ROW_ARGS}) {
  ${rowLoopOpen(L)}
    let start = row * p.cols;
    ${rowLseWgsl(L, "p.cols", "f32(xs[start + j])")}
    if (live) {
      let t = targets[row];
      let inv = 1.0 / ms.y;
      var gr = f32(${T}(f32(g[row * p.gStep]) * p.scale));
      if (t >= p.cols) { gr = nan_f32(); }
      for (var j = lane; j < p.cols; j = j + ${L}u) {
        let prob = exp(f32(xs[start + j]) - ms.x) * inv;
        gx[start + j] = ${T}(gr * (prob - select(0.0, 1.0, j == t)));
      }
    }
  }
}`;
}

/**
 * A row's factor `T(g · scale)` as the kernels compute it: the product in f32, rounded to the
 * dtype (f16 through a one-element array).
 */
export function rowFactor(dtype: DType, g: number, scale: number): number {
  const v = Math.fround(g * Math.fround(scale));
  if (dtype !== "f16") return v;
  const h = typedView("f16", new ArrayBuffer(2), 1);
  h[0] = v;
  return h[0]!;
}

/** CPU twin of {@link crossEntropyBackwardWgsl}. */
export function crossEntropyBackwardCpu(
  dtype: DType,
  rows: number,
  cols: number,
  x: ArrayBuffer,
  targets: ArrayBuffer,
  g: ArrayBuffer,
  gx: ArrayBuffer,
  gStep = 1,
  scale = 1,
): void {
  const xs = typedView(dtype, x), ts = new Uint32Array(targets), gs = typedView(dtype, g);
  const o = typedView(dtype, gx, rows * cols);
  for (let r = 0; r < rows; r++) {
    const start = r * cols, t = ts[r]!;
    const [m, s] = rowLseCpu(xs, start, cols);
    const gr = t < cols ? rowFactor(dtype, gs[r * gStep]!, scale) : NaN;
    for (let j = 0; j < cols; j++) {
      o[start + j] = gr * (Math.exp(xs[start + j]! - m) / s - (j === t ? 1 : 0));
    }
  }
}

/**
 * Dispatch of the backward.
 *
 * @param dtype Logits dtype.
 * @param rows Row count N.
 * @param cols Class count V.
 * @param x Logits.
 * @param targets u32 targets.
 * @param g Upstream gradient of the per-row losses `[N]`, or (with `scalarScale`) of their
 *   mean or sum: one element.
 * @param gx Logits gradient (output).
 * @param lanes Lanes per row of the WebGPU kernel (host kernels ignore it).
 * @param scalarScale When given, g is one scalar and each row's factor is `g · scalarScale`
 *   (1/N for a mean, 1 for a sum): the reduction's backward in this launch.
 * @returns The dispatch.
 */
export function crossEntropyBackwardDispatch(
  dtype: DType,
  rows: number,
  cols: number,
  x: Storage,
  targets: Storage,
  g: Storage,
  gx: Storage,
  lanes = rowLanes(cols),
  scalarScale?: number,
): Dispatch {
  const gStep = scalarScale === undefined ? 1 : 0, scale = scalarScale ?? 1;
  return {
    op: "crossEntropyBackward",
    key: CROSS_ENTROPY_BACKWARD.key(dtype, `L${lanes}`),
    wgsl: () => crossEntropyBackwardWgsl(dtype, lanes),
    cpu: ([a, b, c, d]) => crossEntropyBackwardCpu(dtype, rows, cols, a!, b!, c!, d!, gStep, scale),
    native: dtype === "f32"
      ? (bufs, rt) => crossEntropyBackwardNative(rows, cols, bufs, rt, gStep, scale)
      : undefined,
    buffers: [x, targets, g, gx],
    uniforms: CROSS_ENTROPY_BACKWARD.uniforms({ rows, cols, gStep, scale }),
    workgroups: rowGroups(rows, lanes),
  };
}
