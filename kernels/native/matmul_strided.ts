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
 * offset in place. Needs a BLAS (the dispatch runs the twin without one).
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
    }
  }
}
