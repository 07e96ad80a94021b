/**
 * Softmax and log-softmax over the last dim, fused with an optional causal mask, and their
 * backward kernels.
 *
 * Forward reads each row twice: one pass keeps an online (max, Σ exp(x − max)) pair per lane
 * (rescaling the sum when the max grows), the lanes merge their pairs in a shared-memory tree,
 * and a second pass writes `exp(x − max) / Σ` (or `(x − max) − log Σ`, in that order so a large max does not
 * round away small log-probabilities). Max-subtraction keeps
 * every exponent ≤ 0, so large logits cannot overflow.
 *
 * Causal masking is fused: with `t = T`, row r of the flattened `[..., T, T]` scores is query
 * `i = r mod T`, columns `j > i` are excluded from the max and the sum and get probability 0.
 * A `-∞` score counts as exp(−∞) = 0 (a fully `-∞` row gives NaN, like PyTorch); a NaN makes its
 * whole row NaN.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { bytesPerElement, type DType, typedView } from "../src/core/dtype.ts";
import { softmaxBackwardF32Native, softmaxF32Native } from "./native/softmax.ts";
import {
  laneSum,
  ROW_ARGS,
  ROW_WG,
  rowGroups,
  rowLanes,
  rowLoopOpen,
  treeSteps,
  WGSL_FLOAT_HELPERS,
} from "./reduce.ts";
import { defineKernel } from "./spec.ts";

/** Which normalisation a kernel computes. */
export type SoftmaxMode = "softmax" | "log";

/**
 * WGSL of the online log-sum-exp: `lse_push` folds one value into a (max, sum) pair and
 * `lse_merge` merges two pairs. A pair with sum 0 holds nothing yet (max −∞). Needs
 * {@link WGSL_FLOAT_HELPERS}.
 */
export const WGSL_LSE = `
fn lse_push(ms: vec2f, v: f32) -> vec2f {
  if (v > ms.x) { return vec2f(v, ms.y * exp(ms.x - v) + 1.0); }
  return vec2f(ms.x, ms.y + select(exp(v - ms.x), 0.0, v == neg_inf()));
}
fn lse_merge(a: vec2f, b: vec2f) -> vec2f {
  let m = max(a.x, b.x);
  let sa = select(a.y * exp(a.x - m), 0.0, a.y == 0.0);
  let sb = select(b.y * exp(b.x - m), 0.0, b.y == 0.0);
  return vec2f(m, sa + sb);
}`;

/**
 * WGSL that folds `count` values `value(j)` (j = lane, lane + lanes, …) into the pair `ms` and
 * merges it across the row's lanes, leaving the row's (max, sum) in `ms` in every lane.
 * Needs `var<workgroup> sms: array<vec2f, ROW_WG>`.
 *
 * @param lanes Lanes per row.
 * @param count WGSL expression: how many leading columns take part.
 * @param value WGSL expression of column `j` as f32.
 * @returns WGSL.
 */
export function rowLseWgsl(lanes: number, count: string, value: string): string {
  const merge = lanes === 1 ? "" : `sms[lid] = ms;
    workgroupBarrier();
${
    treeSteps(lanes, (s) =>
      `sms[lid] = lse_merge(sms[lid], sms[lid + ${s}u]);`)
  }    ms = sms[sub * ${lanes}u];
    workgroupBarrier();`;
  return `var ms = vec2f(neg_inf(), 0.0);
    if (live) {
      for (var j = lane; j < ${count}; j = j + ${lanes}u) { ms = lse_push(ms, ${value}); }
    }
    ${merge}`;
}

/**
 * CPU twin of the row log-sum-exp: (max, Σ exp(x − max)) over `x[start .. start + count)`, in
 * f64, with the kernel's conventions (−∞ contributes 0, NaN poisons the sum).
 */
export function rowLseCpu(x: ArrayLike<number>, start: number, count: number): [number, number] {
  let m = -Infinity;
  for (let j = 0; j < count; j++) if (x[start + j]! > m) m = x[start + j]!;
  let s = 0;
  for (let j = 0; j < count; j++) {
    const v = x[start + j]!;
    if (v !== -Infinity) s += Math.exp(v - m);
  }
  return [m, s];
}

/** Compile-time choices of a softmax kernel. */
export interface SoftmaxSpec {
  mode: SoftmaxMode;
  causal: boolean;
  dtype: DType;
  lanes: number;
  /** Add a bias row to each row first (an attention mask; see {@link SoftmaxParams}). */
  bias?: boolean;
}

/**
 * Runtime sizes: `rows` rows of `cols`; `t` is the causal period (T). With a bias, row `r`
 * adds bias row `⌊r / group⌋ · inner + r mod inner` — a bias broadcast over one block of
 * leading dims (e.g. `[B, 1, T, C]` against scores `[B, H, T, C]`: group = H·T, inner = T).
 */
export interface SoftmaxParams {
  rows: number;
  cols: number;
  t: number;
  /** Rows per period of the bias broadcast (default 1: bias row = row). */
  group?: number;
  /** Rows inside the broadcast block (default 1). */
  inner?: number;
}

const SOFTMAX = defineKernel({
  name: "softmax",
  bindings: [
    { name: "xs", type: "T", access: "read" },
    { name: "bias", type: "T", access: "read", optional: true },
    { name: "out", type: "T", access: "read_write" },
  ],
  params: { rows: "u32", cols: "u32", t: "u32", group: "u32", inner: "u32" },
});

/**
 * The bias row added to row `r` (JS twin of the kernel's index).
 *
 * @param r Row of x.
 * @param p Sizes with the broadcast's `group` and `inner`.
 * @returns The bias row.
 * @example Scores [B = 2, H = 3, T = 4, C] against a mask [2, 1, 4, C]
 * ```ts
 * import assert from "node:assert/strict";
 * import { biasRow } from "./softmax.ts";
 * const p = { rows: 24, cols: 9, t: 1, group: 12, inner: 4 };
 * assert.deepEqual([0, 5, 11, 12, 23].map((r) => biasRow(r, p)), [0, 1, 3, 4, 7]);
 * ```
 */
export function biasRow(r: number, p: SoftmaxParams): number {
  const group = p.group ?? 1, inner = p.inner ?? 1;
  return Math.floor(r / group) * inner + (r % inner);
}

/** WGSL of the forward softmax / log-softmax. */
export function softmaxWgsl(s: SoftmaxSpec): string {
  const L = s.lanes, T = s.dtype;
  const lim = s.causal ? "min(p.cols, row % p.t + 1u)" : "p.cols";
  // The biased score rounded to the dtype, as a stored `add(x, bias)` would be.
  const x = (j: string) =>
    s.bias
      ? `f32(${T}(f32(xs[start + ${j}]) + f32(bias[bstart + ${j}])))`
      : `f32(xs[start + ${j}])`;
  const write = s.mode === "softmax"
    ? `let inv = 1.0 / ms.y;
      for (var j = lane; j < p.cols; j = j + ${L}u) {
        out[start + j] = ${T}(select(0.0, exp(${x("j")} - ms.x) * inv, j < lim));
      }`
    : `let ls = log(ms.y);
      for (var j = lane; j < p.cols; j = j + ${L}u) {
        out[start + j] = ${T}(select(neg_inf(), (${x("j")} - ms.x) - ls, j < lim));
      }`;
  const bstart = s.bias
    ? "\n    let bstart = ((row / p.group) * p.inner + row % p.inner) * p.cols;"
    : "";
  return `${SOFTMAX.header({ types: { T }, omit: s.bias ? [] : ["bias"] })}
${WGSL_FLOAT_HELPERS}${WGSL_LSE}
var<workgroup> sms: array<vec2f, ${ROW_WG}>;
@compute @workgroup_size(${ROW_WG})
fn main(${ROW_ARGS}) {
  ${rowLoopOpen(L)}
    let start = row * p.cols;${bstart}
    let lim = ${lim};
    ${rowLseWgsl(L, "lim", x("j"))}
    if (live) {
      ${write}
    }
  }
}`;
}

/** `x + bias` (bias rows by {@link biasRow}), rounded to the dtype as a stored add would be. */
function biased(s: SoftmaxSpec, p: SoftmaxParams, x: ArrayBuffer, bias: ArrayBuffer): ArrayBuffer {
  const xs = typedView(s.dtype, x), b = typedView(s.dtype, bias);
  const n = p.rows * p.cols;
  const out = typedView(s.dtype, new ArrayBuffer(n * bytesPerElement(s.dtype)), n);
  for (let r = 0; r < p.rows; r++) {
    const at = r * p.cols, bat = biasRow(r, p) * p.cols;
    for (let j = 0; j < p.cols; j++) out[at + j] = xs[at + j]! + b[bat + j]!;
  }
  return out.buffer as ArrayBuffer;
}

/** CPU twin of {@link softmaxWgsl}. Buffers: x, out (or x, bias, out with `bias`). */
export function softmaxCpu(
  s: SoftmaxSpec,
  p: SoftmaxParams,
  x: ArrayBuffer,
  out: ArrayBuffer,
  bias?: ArrayBuffer,
): void {
  if (s.bias) x = biased(s, p, x, bias!);
  const xs = typedView(s.dtype, x), o = typedView(s.dtype, out, p.rows * p.cols);
  for (let r = 0; r < p.rows; r++) {
    const start = r * p.cols;
    const lim = s.causal ? Math.min(p.cols, (r % p.t) + 1) : p.cols;
    const [m, sum] = rowLseCpu(xs, start, lim);
    const ls = Math.log(sum);
    for (let j = 0; j < p.cols; j++) {
      const v = xs[start + j]!;
      if (s.mode === "softmax") o[start + j] = j < lim ? Math.exp(v - m) / sum : 0;
      else o[start + j] = j < lim ? v - m - ls : -Infinity;
    }
  }
}

/**
 * Dispatch of a forward softmax / log-softmax over `rows` rows.
 *
 * @param s Mode, mask, dtype and lanes.
 * @param p Sizes.
 * @param x Input storage.
 * @param out Output storage.
 * @param bias Bias rows (with `s.bias`), broadcast as {@link SoftmaxParams} says.
 * @returns The dispatch.
 */
export function softmaxDispatch(
  s: SoftmaxSpec,
  p: SoftmaxParams,
  x: Storage,
  out: Storage,
  bias?: Storage,
): Dispatch {
  const withBias = (bufs: ArrayBuffer[]) =>
    s.bias ? { x: bufs[0]!, bias: bufs[1]!, out: bufs[2]! } : { x: bufs[0]!, out: bufs[1]! };
  return {
    op: s.mode === "softmax" ? "softmax" : "logSoftmax",
    key: SOFTMAX.key(
      s.mode,
      s.causal ? "causal" : "full",
      s.dtype,
      `L${s.lanes}`,
      s.bias ? "bias" : "",
    ),
    wgsl: () => softmaxWgsl(s),
    cpu: (bufs) => {
      const b = withBias(bufs);
      softmaxCpu(s, p, b.x, b.out, b.bias);
    },
    native: s.dtype === "f32"
      ? (bufs, rt) => {
        const b = withBias(bufs);
        // The bias is a decoding mask: added on the host first, then the native kernel.
        const x = b.bias ? biased(s, p, b.x, b.bias) : b.x;
        softmaxF32Native(s.mode === "log", p.rows, p.cols, s.causal ? p.t : 0, x, b.out, rt);
      }
      : undefined,
    buffers: bias ? [x, bias, out] : [x, out],
    uniforms: SOFTMAX.uniforms({
      rows: p.rows,
      cols: p.cols,
      t: Math.max(1, p.t),
      group: Math.max(1, p.group ?? 1),
      inner: Math.max(1, p.inner ?? 1),
    }),
    workgroups: rowGroups(p.rows, s.lanes),
  };
}

// ---------------------------------------------------------------------------------------------
// Backward

const SOFTMAX_BACKWARD = defineKernel({
  name: "softmaxBackward",
  bindings: [
    { name: "ys", type: "T", access: "read" },
    { name: "g", type: "T", access: "read" },
    { name: "gx", type: "T", access: "read_write" },
  ],
  params: { rows: "u32", cols: "u32" },
});

/**
 * WGSL of the backward: softmax `gx = y·(g − Σ g·y)`, log-softmax `gx = g − exp(y)·Σ g`
 * (y is the forward output; masked entries have y = 0, so their gradient is 0).
 */
export function softmaxBackwardWgsl(mode: SoftmaxMode, dtype: DType, lanes: number): string {
  const L = lanes, T = dtype;
  const term = mode === "softmax" ? "f32(g[start + j]) * f32(ys[start + j])" : "f32(g[start + j])";
  const write = mode === "softmax"
    ? `${T}(f32(ys[start + j]) * (f32(g[start + j]) - total))`
    : `${T}(f32(g[start + j]) - exp(f32(ys[start + j])) * total)`;
  return `${SOFTMAX_BACKWARD.header({ types: { T } })}
var<workgroup> sv: array<f32, ${ROW_WG}>;
@compute @workgroup_size(${ROW_WG})
fn main(${ROW_ARGS}) {
  ${rowLoopOpen(L)}
    let start = row * p.cols;
    var acc = 0.0;
    if (live) {
      for (var j = lane; j < p.cols; j = j + ${L}u) { acc = acc + ${term}; }
    }
    ${laneSum(L, "sv", "acc", "total")}
    if (live) {
      for (var j = lane; j < p.cols; j = j + ${L}u) { gx[start + j] = ${write}; }
    }
  }
}`;
}

/** CPU twin of {@link softmaxBackwardWgsl}. */
export function softmaxBackwardCpu(
  mode: SoftmaxMode,
  dtype: DType,
  rows: number,
  cols: number,
  y: ArrayBuffer,
  g: ArrayBuffer,
  gx: ArrayBuffer,
): void {
  const ys = typedView(dtype, y), gs = typedView(dtype, g), o = typedView(dtype, gx, rows * cols);
  for (let r = 0; r < rows; r++) {
    const start = r * cols;
    let total = 0;
    for (let j = 0; j < cols; j++) {
      total += mode === "softmax" ? gs[start + j]! * ys[start + j]! : gs[start + j]!;
    }
    total = Math.fround(total);
    for (let j = 0; j < cols; j++) {
      const i = start + j;
      o[i] = mode === "softmax" ? ys[i]! * (gs[i]! - total) : gs[i]! - Math.exp(ys[i]!) * total;
    }
  }
}

/**
 * Dispatch of the softmax / log-softmax backward.
 *
 * @param mode Which forward it differentiates.
 * @param dtype Storage dtype.
 * @param rows Row count.
 * @param cols Row length.
 * @param y Forward output.
 * @param g Upstream gradient.
 * @param gx Input gradient (output).
 * @param lanes Lanes per row of the WebGPU kernel (host kernels ignore it).
 * @returns The dispatch.
 */
export function softmaxBackwardDispatch(
  mode: SoftmaxMode,
  dtype: DType,
  rows: number,
  cols: number,
  y: Storage,
  g: Storage,
  gx: Storage,
  lanes = rowLanes(cols),
): Dispatch {
  return {
    op: mode === "softmax" ? "softmaxBackward" : "logSoftmaxBackward",
    key: SOFTMAX_BACKWARD.key(mode, dtype, `L${lanes}`),
    wgsl: () => softmaxBackwardWgsl(mode, dtype, lanes),
    cpu: ([a, b, c]) => softmaxBackwardCpu(mode, dtype, rows, cols, a!, b!, c!),
    native: dtype === "f32"
      ? ([a, b, c], rt) => softmaxBackwardF32Native(mode === "log", rows, cols, a!, b!, c!, rt)
      : undefined,
    buffers: [y, g, gx],
    uniforms: SOFTMAX_BACKWARD.uniforms({ rows, cols }),
    workgroups: rowGroups(rows, lanes),
  };
}
