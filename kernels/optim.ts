/**
 * Optimizer kernels: a fused AdamW update (PyTorch's formulation, so the PyTorch reference
 * matches step for step) and the global gradient-norm clipping it reads its scale from.
 * Everything stays on the device: the clip factor is a 1-element buffer, never read back.
 *
 * These are the per-tensor kernels. AdamW runs the multi-tensor ones of `optim_group.ts`, whose
 * CPU twins and native code call the per-tensor twins and native code here per tensor; the
 * per-tensor kernels stay as the reference those are tested against (and `clipScale` is shared).
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { gridStride, WG } from "./common.ts";
import { adamwNative, sqNormNative } from "./native/optim.ts";
import { defineKernel } from "./spec.ts";

/** AdamW hyper-parameters of one update (bias corrections precomputed on the host). */
export interface AdamWStep {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1 − β1^t */
  bc1: number;
  /** 1 − β2^t */
  bc2: number;
}

const ADAMW = defineKernel({
  name: "adamw",
  bindings: [
    { name: "param", type: "f32", access: "read_write" },
    { name: "m", type: "f32", access: "read_write" },
    { name: "v", type: "f32", access: "read_write" },
    { name: "grad", type: "f32", access: "read" },
    { name: "scale", type: "f32", access: "read" },
  ],
  params: {
    n: "u32",
    lr: "f32",
    b1: "f32",
    b2: "f32",
    eps: "f32",
    wd: "f32",
    bc1: "f32",
    bc2: "f32",
  },
});

/**
 * WGSL of the fused AdamW update. The gradient is first multiplied by the clip factor, read from
 * index 1 of the `[norm, scale]` buffer that {@link clipScaleWgsl} writes.
 */
export function adamwWgsl(): string {
  return `${ADAMW.header()}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  let s = scale[1];
  let step = p.lr / p.bc1;
  let sbc2 = sqrt(p.bc2);
  for (var i = gid.x; i < p.n; i = i + stride) {
    let g = grad[i] * s;
    let mi = p.b1 * m[i] + (1.0 - p.b1) * g;
    let vi = p.b2 * v[i] + (1.0 - p.b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    let decayed = param[i] * (1.0 - p.lr * p.wd);
    param[i] = decayed - step * mi / (sqrt(vi) / sbc2 + p.eps);
  }
}`;
}

/** CPU twin of {@link adamwWgsl} (f32 arithmetic, op for op). */
export function adamwCpu(
  s: AdamWStep,
  n: number,
  param: Float32Array,
  m: Float32Array,
  v: Float32Array,
  grad: Float32Array,
  scale: Float32Array,
): void {
  const f = Math.fround;
  const sc = scale[1]!;
  const b1 = f(s.beta1), b2 = f(s.beta2), lr = f(s.lr), wd = f(s.weightDecay), eps = f(s.eps);
  const step = f(lr / f(s.bc1)), sbc2 = f(Math.sqrt(f(s.bc2)));
  const ob1 = f(1 - b1), ob2 = f(1 - b2), keepW = f(1 - f(lr * wd));
  for (let i = 0; i < n; i++) {
    const g = f(grad[i]! * sc);
    const mi = f(f(b1 * m[i]!) + f(ob1 * g));
    const vi = f(f(b2 * v[i]!) + f(f(ob2 * g) * g));
    m[i] = mi;
    v[i] = vi;
    const decayed = f(param[i]! * keepW);
    param[i] = f(decayed - f(f(step * mi) / f(f(f(Math.sqrt(vi)) / sbc2) + eps)));
  }
}

/** Dispatch of one AdamW update of `n` parameters in place. */
export function adamwDispatch(
  s: AdamWStep,
  n: number,
  param: Storage,
  m: Storage,
  v: Storage,
  grad: Storage,
  scale: Storage,
): Dispatch {
  return {
    op: "adamw",
    key: ADAMW.key(),
    wgsl: adamwWgsl,
    cpu: ([p, mm, vv, g, sc]) =>
      adamwCpu(
        s,
        n,
        new Float32Array(p!, 0, n),
        new Float32Array(mm!, 0, n),
        new Float32Array(vv!, 0, n),
        new Float32Array(g!, 0, n),
        new Float32Array(sc!, 0, 2),
      ),
    native: (bufs, rt) => adamwNative(s, n, bufs, rt),
    buffers: [param, m, v, grad, scale],
    uniforms: ADAMW.uniforms({
      n,
      lr: s.lr,
      b1: s.beta1,
      b2: s.beta2,
      eps: s.eps,
      wd: s.weightDecay,
      bc1: s.bc1,
      bc2: s.bc2,
    }),
    workgroups: gridStride(n),
  };
}

const NORM_WG = 256;

const SQ_NORM = defineKernel({
  name: "sqNorm",
  bindings: [
    { name: "x", type: "f32", access: "read" },
    { name: "out", type: "f32", access: "read_write" },
  ],
  params: { n: "u32", slot: "u32" },
});

/**
 * WGSL writing Σ x² of one tensor into `out[slot]`: one workgroup, a strided sum per invocation,
 * then a tree in workgroup memory. Deterministic (fixed order), which keeps resumed runs exact.
 */
export function sqNormWgsl(): string {
  return `${SQ_NORM.header()}
var<workgroup> part: array<f32, ${NORM_WG}>;
@compute @workgroup_size(${NORM_WG})
fn main(@builtin(local_invocation_id) lid: vec3u) {
  var s = 0.0;
  for (var i = lid.x; i < p.n; i = i + ${NORM_WG}u) { s = s + x[i] * x[i]; }
  part[lid.x] = s;
  workgroupBarrier();
  for (var w = ${NORM_WG / 2}u; w > 0u; w = w / 2u) {
    if (lid.x < w) { part[lid.x] = part[lid.x] + part[lid.x + w]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) { out[p.slot] = part[0]; }
}`;
}

/** CPU twin of {@link sqNormWgsl}, summing in the kernel's order. */
export function sqNormCpu(x: Float32Array, n: number, out: Float32Array, slot: number): void {
  const f = Math.fround;
  const part = new Float32Array(NORM_WG);
  for (let t = 0; t < NORM_WG; t++) {
    let s = 0;
    for (let i = t; i < n; i += NORM_WG) s = f(s + f(x[i]! * x[i]!));
    part[t] = s;
  }
  for (let w = NORM_WG / 2; w > 0; w >>= 1) {
    for (let t = 0; t < w; t++) part[t] = f(part[t]! + part[t + w]!);
  }
  out[slot] = part[0]!;
}

/** Dispatch of Σ x² into `out[slot]`. */
export function sqNormDispatch(x: Storage, n: number, out: Storage, slot: number): Dispatch {
  return {
    op: "sqNorm",
    key: SQ_NORM.key(),
    wgsl: sqNormWgsl,
    cpu: ([a, o]) => sqNormCpu(new Float32Array(a!, 0, n), n, new Float32Array(o!), slot),
    native: ([a, o]) => sqNormNative(a!, n, o!, slot),
    buffers: [x, out],
    uniforms: SQ_NORM.uniforms({ n, slot }),
    workgroups: [1, 1, 1],
  };
}

const CLIP_SCALE = defineKernel({
  name: "clipScale",
  bindings: [
    { name: "sq", type: "f32", access: "read" },
    { name: "res", type: "f32", access: "read_write" },
  ],
  params: { count: "u32", maxNorm: "f32" },
});

/**
 * WGSL turning per-tensor squared norms `sq[0..count)` into `res = [norm, scale]` with
 * `scale = min(1, maxNorm / (norm + 1e-6))` (`maxNorm ≤ 0` disables clipping: scale 1).
 */
export function clipScaleWgsl(): string {
  return `${CLIP_SCALE.header()}
@compute @workgroup_size(1)
fn main() {
  var s = 0.0;
  for (var i = 0u; i < p.count; i = i + 1u) { s = s + sq[i]; }
  let norm = sqrt(s);
  res[0] = norm;
  res[1] = select(1.0, min(1.0, p.maxNorm / (norm + 1e-6)), p.maxNorm > 0.0);
}`;
}

/** CPU twin of {@link clipScaleWgsl}. */
export function clipScaleCpu(
  sq: Float32Array,
  count: number,
  maxNorm: number,
  res: Float32Array,
): void {
  const f = Math.fround;
  let s = 0;
  for (let i = 0; i < count; i++) s = f(s + sq[i]!);
  const norm = f(Math.sqrt(s));
  res[0] = norm;
  const mn = f(maxNorm);
  res[1] = mn > 0 ? Math.min(1, f(mn / f(norm + f(1e-6)))) : 1;
}

/** Dispatch of the clip-scale computation. */
export function clipScaleDispatch(
  sq: Storage,
  count: number,
  maxNorm: number,
  res: Storage,
): Dispatch {
  return {
    op: "clipScale",
    key: CLIP_SCALE.key(),
    wgsl: clipScaleWgsl,
    cpu: ([a, r]) => clipScaleCpu(new Float32Array(a!), count, maxNorm, new Float32Array(r!)),
    buffers: [sq, res],
    uniforms: CLIP_SCALE.uniforms({ count, maxNorm }),
    workgroups: [1, 1, 1],
  };
}
