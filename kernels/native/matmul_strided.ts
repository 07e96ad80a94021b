/**
 * Native strided matmul: one `cblas_sgemm` per matrix with each layout's leading dimension, so
 * attention's head views cost no copy on the native backend either.
 *
 * @module
 */
import type { Blas, NativeRuntime } from "../../src/backend/backend.ts";
import type { StridedMatmulProblem } from "../matmul_strided.ts";
import { typedView } from "../../src/core/dtype.ts";

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
 * @returns False, with nothing written, when a masked operand holds a nonzero in its masked part
 * where BLAS would read it (BLAS cannot skip it; the caller runs the twin). Attention's masked
 * operands, probabilities and their gradients, are exact zeros there.
 */
export function matmulStridedNative(
  p: StridedMatmulProblem,
  a: ArrayBuffer,
  b: ArrayBuffer,
  c: ArrayBuffer,
  rt: NativeRuntime,
  blas: Blas,
): boolean {
  const { m, n, k } = p;
  // A mask on C: after the product (whole, or by row blocks below) its masked part is zeroed.
  const maskC = p.causal?.on === "c" ? p.causal : null;
  const off = p.n - p.m;
  const alpha = Math.fround(p.alpha ?? 1);
  // A mask on C or on op(A) bounds each block of rows' columns or k range: attention's products
  // skip the masked triangle's work here too. Terms dropped are exact zeros at either end of a
  // sum, so each kept entry is the full product's while BLAS sums k in one pass
  // (tests/matmul_causal_test.ts checks the bits). A masked operand must hold zeros wherever BLAS
  // reads its masked part; otherwise the caller runs the twin.
  const split = m >= 2 * CAUSAL_ROWS && (p.causal?.on === "c" || p.causal?.on === "a");
  if (readsMaskedNonzero(p, a, b, split)) return false;
  const C = maskC || split ? new Float32Array(c) : null;
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
      } else if (split) {
        causalBlocks(p, blas, alpha, ao, bo, co, C!, zo, zi);
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
  return true;
}

/** Rows per BLAS call when a causal mask splits a product (each call costs ~1–2 µs). */
const CAUSAL_ROWS = 32;

/**
 * One matrix of a product masked on C or op(A), as one `cblas_sgemm` per block of
 * {@link CAUSAL_ROWS} rows: a masked C computes only the block's columns that some row keeps, a
 * masked op(A) only the k range some row keeps (its masked terms are zeros, checked before). Rows
 * with an empty k range are zero. C's masked part is zeroed by the caller.
 */
function causalBlocks(
  p: StridedMatmulProblem,
  blas: Blas,
  alpha: number,
  ao: number,
  bo: number,
  co: number,
  C: Float32Array,
  zo: number,
  zi: number,
): void {
  const { m, n, k } = p;
  const mask = p.causal!;
  const ta = p.transposeA, tb = p.transposeB, lda = p.a.ld, ldb = p.b.ld, ldc = p.c.ld;
  // Byte addresses of op(A)[r, kk], op(B)[kk, j] and C[r, j].
  const aAt = (r: number, kk: number) => ao + 4 * (ta ? kk * lda + r : r * lda + kk);
  const bAt = (kk: number, j: number) => bo + 4 * (tb ? j * ldb + kk : kk * ldb + j);
  const cAt = (r: number, j: number) => co + 4 * (r * ldc + j);
  const clamp = (v: number, hi: number) => Math.max(0, Math.min(hi, v));
  for (let r0 = 0; r0 < m; r0 += CAUSAL_ROWS) {
    const rows = Math.min(CAUSAL_ROWS, m - r0), r1 = r0 + rows;
    let j0 = 0, j1 = n, k0 = 0, k1 = k;
    if (mask.on === "c") {
      // Kept: j − i ≤ n − m (or ≥ when transposed).
      const off = n - m;
      if (mask.transposed) j0 = clamp(r0 + off, n);
      else j1 = clamp(r1 + off, n);
    } else {
      const off = k - m;
      if (mask.transposed) k0 = clamp(r0 + off, k);
      else k1 = clamp(r1 + off, k);
    }
    if (j1 <= j0) continue; // wholly masked: the caller zeroes it
    if (k1 <= k0) {
      const base = zo * p.c.outer + zi * p.c.inner + r0 * ldc;
      for (let i = 0; i < rows; i++) C.fill(0, base + i * ldc + j0, base + i * ldc + j1);
      continue;
    }
    blas.sgemm(
      ta,
      tb,
      rows,
      j1 - j0,
      k1 - k0,
      alpha,
      aAt(r0, k0),
      lda,
      bAt(k0, j0),
      ldb,
      0,
      cAt(r0, j0),
      ldc,
    );
  }
}

/**
 * Whether BLAS would read a nonzero in a masked operand's masked part: with `split`, op(A)'s
 * entries inside each row block's k range (see {@link causalBlocks}), else the whole masked part.
 * Checking only what the blocks read keeps the scan to about `m · 32 / 2` entries per matrix.
 */
function readsMaskedNonzero(
  p: StridedMatmulProblem,
  a: ArrayBuffer,
  b: ArrayBuffer,
  split: boolean,
): boolean {
  const mask = p.causal;
  if (!mask || mask.on === "c") return false;
  const onA = mask.on === "a";
  const v = typedView(p.dtype, onA ? a : b), l = onA ? p.a : p.b;
  const t = onA ? p.transposeA : p.transposeB;
  // The masked matrix [X, Y]; entry (x, y) is kept when y − x ≤ off (≥ off when transposed).
  const [X, Y] = onA ? [p.m, p.k] : [p.k, p.n];
  const off = Y - X;
  for (let zo = 0; zo < p.batchOuter; zo++) {
    for (let zi = 0; zi < p.batchInner; zi++) {
      const base = zo * l.outer + zi * l.inner;
      for (let x = 0; x < X; x++) {
        // The masked y, cut to the k range of x's row block when the product is split.
        let y0 = mask.transposed ? 0 : Math.max(0, x + off + 1);
        let y1 = mask.transposed ? Math.min(Y, x + off) : Y;
        if (split) {
          const r0 = x - (x % CAUSAL_ROWS), r1 = Math.min(X, r0 + CAUSAL_ROWS);
          if (mask.transposed) y0 = Math.max(y0, r0 + off);
          else y1 = Math.min(y1, r1 + off);
        }
        for (let y = y0; y < y1; y++) {
          // op(M)[x, y] is stored at [x, y], or at [y, x] when M is read transposed.
          if (v[base + (t ? y * l.ld + x : x * l.ld + y)] !== 0) return true;
        }
      }
    }
  }
  return false;
}
