/**
 * Helpers shared by the kernel families: launch geometry, uniform packing, WGSL snippets.
 *
 * @module
 */

/** Default workgroup size for elementwise kernels. */
export const WG = 256;

/**
 * Workgroup count for a grid-stride loop over `n` items with `wg` threads per group.
 * Capped so huge tensors loop instead of exceeding the per-dimension dispatch limit; on a CPU
 * adapter more groups than cores only costs scheduling.
 */
export function gridStride(n: number, wg = WG, cap = 4096): [number, number, number] {
  return [Math.max(1, Math.min(Math.ceil(n / wg), cap)), 1, 1];
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The bits of `x` as an f32, for packing float parameters into a u32 uniform block. */
export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0]!;
}

/**
 * Packs uniform parameters. Numbers go in as u32 unless wrapped by {@link asF32} / {@link asI32}.
 *
 * @param values Parameter values in struct order.
 * @returns The uniform words.
 */
export function uniforms(...values: (number | { f32: number } | { i32: number })[]): Uint32Array {
  const out = new Uint32Array(Math.max(4, Math.ceil(values.length / 4) * 4));
  values.forEach((v, i) => {
    if (typeof v === "number") out[i] = v >>> 0;
    else if ("f32" in v) out[i] = f32Bits(v.f32);
    else out[i] = v.i32 >>> 0;
  });
  return out;
}

/** Marks a uniform value as f32. */
export function asF32(x: number): { f32: number } {
  return { f32: x };
}

/** Marks a uniform value as i32. */
export function asI32(x: number): { i32: number } {
  return { i32: x };
}

/** `enable f16;` when any of the dtypes is f16. */
export function enables(...dtypes: string[]): string {
  return dtypes.includes("f16") ? "enable f16;\n" : "";
}

/** The grid-stride loop header used by 1-D kernels (`i` is the element index). */
export function gridLoop(wg: number, n: string): string {
  return `let stride = nwg.x * ${wg}u;
  for (var i = gid.x; i < ${n}; i = i + stride)`;
}

/** Builtins every grid-stride kernel declares. */
export const GRID_ARGS =
  "@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u";

/** Reinterprets host bytes as a typed array of the same dtype family. */
export function f32Of(b: ArrayBuffer): Float32Array {
  return new Float32Array(b);
}
