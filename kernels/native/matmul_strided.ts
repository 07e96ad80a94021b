/**
 * Native strided matmul: one `cblas_sgemm` per matrix with each layout's leading dimension, so
 * attention's head views cost no copy on the native backend either.
 *
 * @module
 */
import type { Blas, NativeRuntime } from "../../src/backend/backend.ts";
import type { StridedMatmulProblem } from "../matmul_strided.ts";

/**
 * Native implementation (f32): one `cblas_sgemm` per matrix (alpha passed to BLAS) with the layouts' leading
 * dimensions (`cblas_sgemv` for a single row, as the contiguous native matmul does), addresses
 * offset in place; a causal mask on C zeroes its masked part after the product. Needs a BLAS
 * (the dispatch runs the twin without one, or when a masked operand is not zero where masked).
 *
 * @param p The problem (f32).
 * @param a A's buffer.
 * @param b B's buffer.
 * @param c C's buffer.
 * @param rt The runtime (addresses).
 * @param blas The loaded BLAS.
 */
export function matmulStridedNative(
  p: StridedMatmulProblem,
  a: ArrayBuffer,
  b: ArrayBuffer,
  c: ArrayBuffer,
  rt: NativeRuntime,
  blas: Blas,
): void {
  const { m, n, k } = p;
  // A mask on C: BLAS computes the whole product, then the masked part is zeroed. (A masked
  // operand reaches here only with zeros outside its causal part, which BLAS may multiply.)
  const maskC = p.causal?.on === "c" ? p.causal : null;
  const off = p.n - p.m;
  const C = maskC ? new Float32Array(c) : null;
  const alpha = Math.fround(p.alpha ?? 1);
  const pa = rt.address(a), pb = rt.address(b), pc = rt.address(c);
  for (let zo = 0; zo < p.batchOuter; zo++) {
    for (let zi = 0; zi < p.batchInner; zi++) {
      const ao = pa + 4 * (zo * p.a.outer + zi * p.a.inner);
      const bo = pb + 4 * (zo * p.b.outer + zi * p.b.inner);
      const co = pc + 4 * (zo * p.c.outer + zi * p.c.inner);
      if (m === 1 && !p.transposeA) {
        // One row: y = x·op(B), a GEMV over B's stored rows.
        if (p.transposeB) blas.sgemv(false, n, k, alpha, bo, p.b.ld, ao, 1, 0, co, 1);
        else blas.sgemv(true, k, n, alpha, bo, p.b.ld, ao, 1, 0, co, 1);
      } else {
        blas.sgemm(
          p.transposeA,
          p.transposeB,
          m,
          n,
          k,
          alpha,
          ao,
          p.a.ld,
          bo,
          p.b.ld,
          0,
          co,
          p.c.ld,
        );
      }
      if (maskC) {
        // Zero C[i, j] where j − i > off (or < off when transposed).
        const base = zo * p.c.outer + zi * p.c.inner;
        for (let i = 0; i < m; i++) {
          const r = base + i * p.c.ld;
          if (maskC.transposed) C!.fill(0, r, r + Math.max(0, Math.min(n, i + off)));
          else C!.fill(0, r + Math.max(0, Math.min(n, i + off + 1)), r + n);
        }
      }
    }
  }
}
