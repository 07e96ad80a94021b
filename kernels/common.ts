/**
 * Helpers shared by the kernel families: launch geometry and WGSL snippets. Headers and uniform
 * packing are declared per kernel (`spec.ts`).
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
