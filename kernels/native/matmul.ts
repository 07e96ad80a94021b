/**
 * Native matmul: batched `C[b] = op(A[b]) · op(B[b])` through `cblas_sgemm` (one call per batch,
 * addresses offset in place, nothing allocated), `cblas_sgemv` for a single row, and a blocked
 * TypeScript loop when no BLAS loaded. f32 only; other dtypes use the CPU twin.
 *
 * @module
 */
import type { NativeRuntime } from "../../src/backend/backend.ts";
import type { MatmulProblem } from "../matmul.ts";

/**
 * Runs one matmul problem on the native backend.
 *
 * @param p The problem (f32).
 * @param a A's buffer.
 * @param b B's buffer.
 * @param c C's buffer.
 * @param rt The runtime (BLAS and addresses).
 */
export function matmulNative(
  p: MatmulProblem,
  a: ArrayBuffer,
  b: ArrayBuffer,
  c: ArrayBuffer,
  rt: NativeRuntime,
): void {
  const { m, n, k } = p;
  const blas = rt.blas;
  if (m === 0 || n === 0) return;
  if (k === 0) {
    new Float32Array(c, 0, p.batch * m * n).fill(0);
    return;
  }
  if (!blas) {
    matmulTs(p, new Float32Array(a), new Float32Array(b), new Float32Array(c));
    return;
  }
  const pa = rt.address(a), pb = rt.address(b), pc = rt.address(c);
  const lda = p.transposeA ? m : k, ldb = p.transposeB ? k : n;
  for (let bi = 0; bi < p.batch; bi++) {
    const ao = pa + 4 * bi * p.strideA, bo = pb + 4 * bi * p.strideB, co = pc + 4 * bi * m * n;
    if (m === 1 && !p.transposeA) {
      // y[n] = op(B)ᵀ-free form: y = xᵀ·B, i.e. Bᵀ·x for row-major B [k, n], or B·x for [n, k].
      if (p.transposeB) blas.sgemv(false, n, k, 1, bo, k, ao, 1, 0, co, 1);
      else blas.sgemv(true, k, n, 1, bo, n, ao, 1, 0, co, 1);
    } else {
      blas.sgemm(p.transposeA, p.transposeB, m, n, k, 1, ao, lda, bo, ldb, 0, co, n);
    }
  }
}

/** The no-BLAS path: i-k-j loops over contiguous rows of B (f32 accumulation). */
function matmulTs(p: MatmulProblem, A: Float32Array, B: Float32Array, C: Float32Array): void {
  const { m, n, k } = p;
  const row = new Float32Array(n);
  const bt = p.transposeB ? new Float32Array(k * n) : null;
  for (let bi = 0; bi < p.batch; bi++) {
    const ao = bi * p.strideA, co = bi * m * n;
    let bo = bi * p.strideB;
    let Bm = B;
    if (bt) {
      // Transpose B [n, k] to [k, n] once per batch so the inner loop is contiguous.
      for (let j = 0; j < n; j++) {
        for (let kk = 0; kk < k; kk++) bt[kk * n + j] = B[bo + j * k + kk]!;
      }
      Bm = bt;
      bo = 0;
    }
    for (let i = 0; i < m; i++) {
      row.fill(0);
      for (let kk = 0; kk < k; kk++) {
        const av = p.transposeA ? A[ao + kk * m + i]! : A[ao + i * k + kk]!;
        if (av === 0) continue;
        const rb = bo + kk * n;
        for (let j = 0; j < n; j++) row[j]! += av * Bm[rb + j]!;
      }
      C.set(row, co + i * n);
    }
  }
}
