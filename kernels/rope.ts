/**
 * Rotary position embedding, "rotate-half" convention (GPT-NeoX, LLaMA in Hugging Face
 * transformers): for each head vector of width `hd` (h = hd/2), element i pairs with
 * element i + h and the pair rotates by `angle = pos · invFreq[i]`:
 *
 *   y[i]     = x[i]·cos(angle) − x[i + h]·sin(angle)
 *   y[i + h] = x[i + h]·cos(angle) + x[i]·sin(angle)
 *
 * `invFreq` is computed on the host exactly as HF does in float32 (see {@link ropeInvFreq}) and
 * passed in the uniform block, and the angle is the f32 product `f32(pos) · invFreq[i]` — the
 * same rounded angle HF builds. A shader's sin/cos is only specified on [−π, π], so the kernel
 * first reduces the angle by 2π with a two-constant (Cody–Waite) split, which keeps the
 * reduction error near 1e-7 for positions up to ~10⁵.
 *
 * The backward is the same kernel rotating by −angle (the transpose of a rotation).
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { type DType, typedView } from "../src/core/dtype.ts";
import { gridStride, WG } from "./common.ts";
import { ropeF32Native } from "./native/rope.ts";
import { defineKernel } from "./spec.ts";
import { STEP_VALUE, STEP_VALUES_BINDING, stepValue } from "./step_values.ts";

/** Largest head dim the uniform frequency table holds (256 frequencies). */
export const ROPE_MAX_HEAD_DIM = 512;

/**
 * Inverse frequencies `1 / base^(2i/hd)` for i in [0, hd/2), rounded like Hugging Face's
 * float32 computation: `1.0 / (base ** (torch.arange(0, hd, 2).float() / hd))` — each of the
 * division, the power and the reciprocal rounded to f32.
 *
 * @param headDim Head width hd (even).
 * @param base θ base (10000 for LLaMA).
 * @returns `hd/2` f32 frequencies.
 */
export function ropeInvFreq(headDim: number, base: number): Float32Array {
  const fr = Math.fround;
  const half = headDim / 2;
  const out = new Float32Array(half);
  for (let i = 0; i < half; i++) out[i] = fr(1 / fr(Math.pow(fr(base), fr((2 * i) / headDim))));
  return out;
}

/** Runtime sizes of one rotation. */
export interface RopeParams {
  /** Leading batch count times T times H: number of head vectors. */
  vectors: number;
  /** Sequence length (positions repeat every T rows of H heads). */
  t: number;
  /** Heads per position. */
  h: number;
  /** hd/2. */
  half: number;
  /** Position of the first token. */
  offset: number;
  /** +1 forward, −1 backward. */
  sign: 1 | -1;
  /** Inverse frequencies (`half` values). */
  invFreq: Float32Array;
}

const ROPE = defineKernel({
  name: "rope",
  bindings: [
    { name: "xs", type: "T", access: "read" },
    { name: "out", type: "T", access: "read_write" },
    // A second tensor of the same layout rotated by the same launch (q and k of attention).
    { name: "xs2", type: "T", access: "read", optional: true },
    { name: "out2", type: "T", access: "read_write", optional: true },
    // With step values (a captured decode loop), positions start at `offset + sv[0]`.
    STEP_VALUES_BINDING,
  ],
  // `inv` holds the `half` inverse frequencies, 4 per vec4 (uniform arrays need 16-byte strides).
  params: {
    n: "u32",
    t: "u32",
    h: "u32",
    half: "u32",
    offset: "u32",
    sign: "f32",
    inv: `array<vec4f, ${ROPE_MAX_HEAD_DIM / 8}>`,
  },
});

/**
 * WGSL of the rotation (one invocation per pair). With `pair`, one launch rotates two tensors of
 * the same shape: each invocation computes the angle's cos and sin once and rotates pair k of
 * `xs` into `out` and pair k of `xs2` into `out2` (no branch, which a CPU adapter would run on
 * both sides under a mask).
 */
export function ropeWgsl(dtype: DType, pair = false, stepValues = false): string {
  const T = dtype;
  const rotate = (src: string, dst: string) =>
    `let x1${src} = f32(${src}[base]);
    let x2${src} = f32(${src}[base + p.half]);
    ${dst}[base] = ${T}(x1${src} * c - x2${src} * s);
    ${dst}[base + p.half] = ${T}(x2${src} * c + x1${src} * s);`;
  const omit = [...(pair ? [] : ["xs2", "out2"]), ...(stepValues ? [] : ["sv"])];
  return `${ROPE.header({ types: { T }, omit })}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  for (var k = gid.x; k < p.n; k = k + stride) {
    let v = k / p.half;
    let i = k - v * p.half;
    let pos = (v / p.h) % p.t + p.offset${stepValues ? ` + sv[${STEP_VALUE.pos}]` : ""};
    let ang = f32(pos) * p.inv[i / 4u][i % 4u];
    // 2π = 6.28125 + 1.9353071795864769e-3; q·6.28125 is exact for |q| < 2^16.
    let q = round(ang * 0.15915494309189535);
    let r = (ang - q * 6.28125) - q * 1.9353071795864769e-3;
    let c = cos(r);
    let s = sin(r) * p.sign;
    let base = v * 2u * p.half + i;
    ${rotate("xs", "out")}${
    pair
      ? `
    ${rotate("xs2", "out2")}`
      : ""
  }
  }
}`;
}

/** CPU twin of {@link ropeWgsl}: the same f32 angle, then f64 sin/cos. */
export function ropeCpu(dtype: DType, p: RopeParams, x: ArrayBuffer, out: ArrayBuffer): void {
  const hd = 2 * p.half;
  const xs = typedView(dtype, x), o = typedView(dtype, out, p.vectors * hd);
  for (let v = 0; v < p.vectors; v++) {
    const pos = (Math.floor(v / p.h) % p.t) + p.offset;
    const base = v * hd;
    for (let i = 0; i < p.half; i++) {
      const ang = Math.fround(pos * p.invFreq[i]!);
      const c = Math.cos(ang), s = Math.sin(ang) * p.sign;
      const x1 = xs[base + i]!, x2 = xs[base + i + p.half]!;
      o[base + i] = x1 * c - x2 * s;
      o[base + i + p.half] = x2 * c + x1 * s;
    }
  }
}

/** `p` with the step values' position added to its offset (host kernels, at run time). */
function at(p: RopeParams, sv: ArrayBuffer | undefined): RopeParams {
  return sv ? { ...p, offset: p.offset + stepValue(sv, STEP_VALUE.pos) } : p;
}

/** The uniform block shared by the one- and two-tensor rotations (`n` = invocations). */
function ropeUniforms(p: RopeParams, n: number): Uint32Array {
  return ROPE.uniforms({
    n,
    t: p.t,
    h: p.h,
    half: p.half,
    offset: p.offset,
    sign: p.sign,
    inv: p.invFreq.subarray(0, p.half),
  });
}

/**
 * Dispatch of a rotation.
 *
 * @param dtype Storage dtype.
 * @param p Sizes, offset, direction, frequencies.
 * @param x Input `[..., T, H, hd]`.
 * @param out Output, same shape.
 * @returns The dispatch.
 */
export function ropeDispatch(dtype: DType, p: RopeParams, x: Storage, out: Storage): Dispatch {
  const n = p.vectors * p.half;
  const words = ropeUniforms(p, n);
  return {
    op: p.sign > 0 ? "rope" : "ropeBackward",
    key: ROPE.key(dtype, "one"),
    wgsl: () => ropeWgsl(dtype),
    cpu: ([a, b]) => ropeCpu(dtype, p, a!, b!),
    native: dtype === "f32" ? ([a, b], rt) => ropeF32Native(p, a!, b!, rt) : undefined,
    buffers: [x, out],
    uniforms: words,
    workgroups: gridStride(n),
  };
}

/**
 * Dispatch of one rotation of two tensors of the same shape (q and k of attention): the same
 * numbers as two {@link ropeDispatch} launches, in one.
 *
 * @param dtype Storage dtype of all four buffers.
 * @param p Sizes (of each tensor), offset, direction, frequencies.
 * @param x First input `[..., T, H, hd]`.
 * @param out First output.
 * @param x2 Second input, same shape as the first.
 * @param out2 Second output.
 * @param sv Step values (kernels/step_values.ts): positions then start at `offset + sv[0]`.
 * @returns The dispatch.
 */
export function ropePairDispatch(
  dtype: DType,
  p: RopeParams,
  x: Storage,
  out: Storage,
  x2: Storage,
  out2: Storage,
  sv?: Storage,
): Dispatch {
  const n = p.vectors * p.half;
  const words = ropeUniforms(p, n);
  return {
    op: p.sign > 0 ? "ropePair" : "ropePairBackward",
    key: sv ? ROPE.key(dtype, "pair", "sv") : ROPE.key(dtype, "pair"),
    wgsl: () => ropeWgsl(dtype, true, sv !== undefined),
    cpu: ([a, b, c, d, v]) => {
      const q = at(p, v);
      ropeCpu(dtype, q, a!, b!);
      ropeCpu(dtype, q, c!, d!);
    },
    native: dtype === "f32"
      ? ([a, b, c, d, v], rt) => {
        const q = at(p, v);
        ropeF32Native(q, a!, b!, rt);
        ropeF32Native(q, c!, d!, rt);
      }
      : undefined,
    buffers: sv ? [x, out, x2, out2, sv] : [x, out, x2, out2],
    uniforms: words,
    workgroups: gridStride(n),
  };
}
