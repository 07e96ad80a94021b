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
