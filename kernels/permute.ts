/**
 * General axis permutation (`[B, T, H, hd] → [B, H, T, hd]` and friends), one invocation per
 * output element reading the input through permuted strides.
 *
 * Before launch the layout is simplified: size-1 dims are dropped and output dims that are
 * also adjacent and in order in the input are merged (in `[B, T, H, hd] → [B, H, T, hd]` the
 * trailing `hd` stays a contiguous run), so the index arithmetic runs over as few dims as
 * possible and an identity permutation becomes a plain copy.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { type DType, typedView } from "../src/core/dtype.ts";
import { gridStride, WG } from "./common.ts";
import { permuteNative } from "./native/permute.ts";
import { defineKernel } from "./spec.ts";

/** Most dims a permuted tensor may have. */
export const PERMUTE_MAX_RANK = 6;

/** Output dims (collapsed) and, for each, the input stride it walks. */
export interface PermuteLayout {
  shape: number[];
  strides: number[];
}

/**
 * Simplified layout of `permute(x, dims)`.
 *
 * @param inShape Input shape.
 * @param dims Output dim i is input dim `dims[i]` (already validated).
 * @returns Collapsed output shape and input strides (rank ≥ 1).
 */
export function permuteLayout(inShape: readonly number[], dims: readonly number[]): PermuteLayout {
  const inStrides: number[] = new Array(inShape.length);
  let acc = 1;
  for (let i = inShape.length - 1; i >= 0; i--) {
    inStrides[i] = acc;
    acc *= inShape[i]!;
  }
  const shape: number[] = [], strides: number[] = [];
  for (const d of dims) {
    const n = inShape[d]!, s = inStrides[d]!;
    if (n === 1) continue;
    const k = shape.length - 1;
    if (k >= 0 && strides[k] === s * n) {
      shape[k] = shape[k]! * n;
      strides[k] = s;
    } else {
      shape.push(n);
      strides.push(s);
    }
  }
  if (shape.length === 0) return { shape: [1], strides: [1] };
  return { shape, strides };
}

const PERMUTE = defineKernel({
  name: "permute",
  bindings: [
    { name: "xs", type: "T", access: "read" },
    { name: "out", type: "T", access: "read_write" },
  ],
  // Collapsed output shape and the input stride of each output dim, 8 dims each.
  params: { n: "u32", shape: "array<vec4u, 2>", s: "array<vec4u, 2>" },
});

/** WGSL of a permuted copy over a collapsed layout of `rank` dims. */
export function permuteWgsl(dtype: DType, rank: number): string {
  const index = rank === 1 ? "let src = i * p.s[0][0];" : `var rem = i;
    var src = 0u;
    for (var d = ${rank - 1}; d >= 0; d = d - 1) {
      let dim = p.shape[d / 4][d % 4];
      let c = rem % dim;
      rem = rem / dim;
      src = src + c * p.s[d / 4][d % 4];
    }`;
  return `${PERMUTE.header({ types: { T: dtype } })}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < p.n; i = i + stride) {
    ${index}
    out[i] = xs[src];
  }
}`;
}

/** CPU twin of {@link permuteWgsl}: an odometer over the output. */
export function permuteCpu(dtype: DType, l: PermuteLayout, x: ArrayBuffer, out: ArrayBuffer): void {
  const n = l.shape.reduce((a, b) => a * b, 1);
  const xs = typedView(dtype, x), o = typedView(dtype, out, n);
  const rank = l.shape.length;
  const idx = new Array<number>(rank).fill(0);
  let src = 0;
  for (let i = 0; i < n; i++) {
    o[i] = xs[src]!;
    for (let d = rank - 1; d >= 0; d--) {
      src += l.strides[d]!;
      if (++idx[d]! < l.shape[d]!) break;
      src -= l.strides[d]! * l.shape[d]!;
      idx[d] = 0;
    }
  }
}

/**
 * Dispatch of a permuted copy.
 *
 * @param dtype Element type (any: this only moves data).
 * @param l Collapsed layout ({@link permuteLayout}).
 * @param x Input storage.
 * @param out Output storage.
 * @returns The dispatch.
 */
export function permuteDispatch(
  dtype: DType,
  l: PermuteLayout,
  x: Storage,
  out: Storage,
): Dispatch {
  const rank = l.shape.length;
  const n = l.shape.reduce((a, b) => a * b, 1);
  const pad = (xs: number[], fill: number) => [...xs, ...new Array(8 - xs.length).fill(fill)];
  return {
    op: "permute",
    key: PERMUTE.key(dtype, `r${rank}`),
    wgsl: () => permuteWgsl(dtype, rank),
    cpu: ([a, b]) => permuteCpu(dtype, l, a!, b!),
    native: ([a, b], rt) => permuteNative(dtype === "f16" ? 2 : 4, l, a!, b!, rt),
    buffers: [x, out],
    uniforms: PERMUTE.uniforms({ n, shape: pad(l.shape, 1), s: pad(l.strides, 0) }),
    workgroups: gridStride(n),
  };
}
