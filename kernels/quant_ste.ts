/**
 * Fake quantisation for BitNet b1.58 training: values are quantised and immediately dequantised
 * in f32, so the forward pass sees exactly the quantised numbers while the latent full-precision
 * values keep training (the straight-through estimator lives in src/ops/quant_ste.ts).
 *
 * - int8 absmax per token (row): `q = clamp(round(x·s), −128, 127) / s`, `s = 127 / (max|x| + ε)`.
 * - ternary absmean per tensor: `q = clamp(round(w / a), −1, 1) · a`, `a = mean|w| + ε`
 *   (the mean comes in as a 1-element buffer computed on the device).
 *
 * `round` is round-half-to-even on both backends (WGSL's `round`, PyTorch's `torch.round`).
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { gridStride, WG } from "./common.ts";
import { fakeQuantRowsNative, fakeQuantTernaryNative } from "./native/quant_ste.ts";
import { defineKernel } from "./spec.ts";

/** Round half to even, as WGSL `round` and `torch.round`. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

const FAKE_QUANT_ROWS = defineKernel({
  name: "fakeQuantRows",
  bindings: [
    { name: "x", type: "f32", access: "read" },
    { name: "out", type: "f32", access: "read_write" },
  ],
  params: { rows: "u32", cols: "u32", eps: "f32" },
});

/** WGSL: int8 absmax fake quantisation, one invocation per row. */
export function fakeQuantRowsWgsl(): string {
  return `${FAKE_QUANT_ROWS.header()}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * 64u;
  for (var r = gid.x; r < p.rows; r = r + stride) {
    let base = r * p.cols;
    var m = 0.0;
    for (var j = 0u; j < p.cols; j = j + 1u) { m = max(m, abs(x[base + j])); }
    let s = 127.0 / (m + p.eps);
    for (var j = 0u; j < p.cols; j = j + 1u) {
      out[base + j] = clamp(round(x[base + j] * s), -128.0, 127.0) / s;
    }
  }
}`;
}

/** CPU twin of {@link fakeQuantRowsWgsl}. */
export function fakeQuantRowsCpu(
  x: Float32Array,
  out: Float32Array,
  rows: number,
  cols: number,
  eps: number,
): void {
  const f = Math.fround;
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let m = 0;
    for (let j = 0; j < cols; j++) m = Math.max(m, Math.abs(x[base + j]!));
    const s = f(127 / f(m + f(eps)));
    for (let j = 0; j < cols; j++) {
      out[base + j] = f(Math.min(127, Math.max(-128, roundHalfEven(f(x[base + j]! * s)))) / s);
    }
  }
}

/** Dispatch of the int8 row fake quantisation. */
export function fakeQuantRowsDispatch(
  x: Storage,
  out: Storage,
  rows: number,
  cols: number,
  eps: number,
): Dispatch {
  return {
    op: "quantizeActivations",
    key: FAKE_QUANT_ROWS.key(),
    wgsl: fakeQuantRowsWgsl,
    cpu: ([a, o]) =>
      fakeQuantRowsCpu(
        new Float32Array(a!, 0, rows * cols),
        new Float32Array(o!, 0, rows * cols),
        rows,
        cols,
        eps,
      ),
    native: (bufs, rt) => fakeQuantRowsNative(rows, cols, eps, bufs, rt),
    buffers: [x, out],
    uniforms: FAKE_QUANT_ROWS.uniforms({ rows, cols, eps }),
    workgroups: gridStride(rows, 64),
  };
}

const FAKE_QUANT_TERNARY = defineKernel({
  name: "fakeQuantTernary",
  bindings: [
    { name: "w", type: "f32", access: "read" },
    { name: "meanAbs", type: "f32", access: "read" },
    { name: "out", type: "f32", access: "read_write" },
  ],
  params: { n: "u32", eps: "f32" },
});

/** WGSL: ternary absmean fake quantisation; `meanAbs[0]` holds mean|w|. */
export function fakeQuantTernaryWgsl(): string {
  return `${FAKE_QUANT_TERNARY.header()}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  let a = meanAbs[0] + p.eps;
  for (var i = gid.x; i < p.n; i = i + stride) {
    out[i] = clamp(round(w[i] / a), -1.0, 1.0) * a;
  }
}`;
}

/** CPU twin of {@link fakeQuantTernaryWgsl}. */
export function fakeQuantTernaryCpu(
  w: Float32Array,
  meanAbs: number,
  out: Float32Array,
  eps: number,
): void {
  const f = Math.fround;
  const a = f(meanAbs + f(eps));
  for (let i = 0; i < w.length; i++) {
    out[i] = f(Math.min(1, Math.max(-1, roundHalfEven(f(w[i]! / a)))) * a);
  }
}

/** Dispatch of the ternary fake quantisation of `n` weights. */
export function fakeQuantTernaryDispatch(
  w: Storage,
  meanAbs: Storage,
  out: Storage,
  n: number,
  eps: number,
): Dispatch {
  return {
    op: "quantizeWeights",
    key: FAKE_QUANT_TERNARY.key(),
    wgsl: fakeQuantTernaryWgsl,
    cpu: ([a, m, o]) =>
      fakeQuantTernaryCpu(
        new Float32Array(a!, 0, n),
        new Float32Array(m!)[0]!,
        new Float32Array(o!, 0, n),
        eps,
      ),
    native: (bufs, rt) => fakeQuantTernaryNative(n, eps, bufs, rt),
    buffers: [w, meanAbs, out],
    uniforms: FAKE_QUANT_TERNARY.uniforms({ n, eps }),
    workgroups: gridStride(n),
  };
}
