/**
 * Fill, arange and dtype casts: the kernels behind `zeros`, `ones`, `full`, `arange` and `cast`.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { type DType, typedView } from "../src/core/dtype.ts";
import { gridStride, WG } from "./common.ts";
import { fillF32Native } from "./native/fill.ts";
import { castCode, castNative } from "./native/cast.ts";
import { defineKernel } from "./spec.ts";

const FILL = defineKernel({
  name: "fill",
  bindings: [
    { name: "out", type: "T", access: "read_write" },
  ],
  params: { n: "u32", start: "f32", step: "f32" },
});

/** WGSL that writes `start + i·step` (converted to `dtype`) into every element. */
export function linearFillWgsl(dtype: DType): string {
  return `${FILL.header({ types: { T: dtype } })}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < p.n; i = i + stride) {
    out[i] = ${dtype}(p.start + f32(i) * p.step);
  }
}`;
}

/** CPU twin of {@link linearFillWgsl}. */
export function linearFillCpu(
  dtype: DType,
  out: ArrayBuffer,
  n: number,
  start: number,
  step: number,
): void {
  const o = typedView(dtype, out, n);
  const s = Math.fround(start), d = Math.fround(step);
  for (let i = 0; i < n; i++) o[i] = Math.fround(s + Math.fround(i * d));
}

/**
 * Dispatch writing `start + i·step` into `n` elements (step 0 is a fill). Integer dtypes
 * convert through f32, so fills and aranges are exact up to 2^24.
 */
export function linearFillDispatch(
  op: string,
  dtype: DType,
  out: Storage,
  n: number,
  start: number,
  step: number,
): Dispatch {
  return {
    op,
    key: FILL.key(dtype),
    wgsl: () => linearFillWgsl(dtype),
    cpu: ([o]) => linearFillCpu(dtype, o!, n, start, step),
    native: dtype === "f32" ? ([o], rt) => fillF32Native(o!, n, start, step, rt) : undefined,
    buffers: [out],
    uniforms: FILL.uniforms({ n, start, step }),
    workgroups: gridStride(n),
  };
}

const CAST = defineKernel({
  name: "cast",
  bindings: [
    { name: "x", type: "F", access: "read" },
    { name: "out", type: "T", access: "read_write" },
  ],
  params: { n: "u32" },
});

/** WGSL converting each element from one dtype to another (WGSL conversion rules). */
export function castWgsl(from: DType, to: DType): string {
  return `${CAST.header({ types: { F: from, T: to } })}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < p.n; i = i + stride) {
    out[i] = ${to}(x[i]);
  }
}`;
}

/** Converts one number like WGSL's value conversion to `to` (truncates floats to integers, saturating). */
export function convertScalar(v: number, to: DType): number {
  if (to === "f32" || to === "f16") return v;
  if (Number.isNaN(v)) return 0;
  const t = Math.trunc(v);
  if (to === "i32") return Math.min(2147483647, Math.max(-2147483648, t));
  return Math.min(4294967295, Math.max(0, t));
}

/** CPU twin of {@link castWgsl}. */
export function castCpu(from: DType, to: DType, x: ArrayBuffer, out: ArrayBuffer, n: number): void {
  const a = typedView(from, x, n), o = typedView(to, out, n);
  const floatSrc = from === "f32" || from === "f16";
  for (let i = 0; i < n; i++) o[i] = floatSrc ? convertScalar(a[i]!, to) : a[i]!;
}

/** Dispatch casting `n` elements. */
export function castDispatch(
  from: DType,
  to: DType,
  x: Storage,
  out: Storage,
  n: number,
): Dispatch {
  return {
    op: "cast",
    key: CAST.key(from, to),
    wgsl: () => castWgsl(from, to),
    cpu: ([a, o]) => castCpu(from, to, a!, o!, n),
    native: castCode(from) >= 0 && castCode(to) >= 0
      ? ([a, o], rt) => castNative(castCode(from), castCode(to), a!, o!, n, rt)
      : undefined,
    buffers: [x, out],
    uniforms: CAST.uniforms({ n }),
    workgroups: gridStride(n),
  };
}
