/**
 * Native grouped matmul: one `cblas_sgemm` per expert segment (the segment's rows are contiguous
 * in the grouped layout and its matrix is one contiguous block of the stack, so each expert is a
 * plain GEMM on offset addresses; nothing is copied or allocated), and the per-expert weight
 * gradient `dW[e] = x[seg]ᵀ · g[seg]` the same way. Without a BLAS the twins run.
 *
 * Unlike the twins, which skip zero inputs, BLAS multiplies them: a NaN or ±∞ in a matrix meets
 * a zero input as NaN here (the twin's 0 rows come out 0). Finite data agrees within f32
 * rounding (the twins accumulate in f64).
 *
 * @module
 */
import type { NativeRuntime } from "../../src/backend/backend.ts";
import type { GroupedMatmulProblem } from "../grouped_matmul.ts";

/**
 * `out[r] = x[r] · B[e]` for every row of each expert segment; tail rows zero. Buffers: x, B,
 * meta (offsets first), out.
 *
 * @param p The problem.
 * @param bufs The dispatch's buffers.
 * @param rt The runtime.
 * @param fallback The CPU twin (used without a BLAS).
 *
 * @example
 * ```ts
 * import { groupedMatmul, moeGather, moeGroup, openDevice } from "@qsparse/kit";
 * using dev = await openDevice({ prefer: "native" });
 * const g = moeGroup(dev.tensor(new Uint32Array([0, 1, 1, 0]), [4, 1], "u32"), 2);
 * using x = moeGather(dev.randn([4, 8], { seed: 1 }), g);
 * using h = groupedMatmul(x, dev.randn([2, 8, 16], { seed: 2 }), g); // one sgemm per expert
 * console.log(h.shape); // [4, 16]
 * ```
 */
export function groupedMatmulNative(
  p: GroupedMatmulProblem,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
  fallback: (bufs: ArrayBuffer[]) => void,
): void {
  const blas = rt.blas;
  if (!blas) return fallback(bufs);
  const { m, k, n, e } = p;
  const offs = new Uint32Array(bufs[2]!, 0, e + 1);
  const out = new Float32Array(bufs[3]!, 0, m * n);
  const px = rt.address(bufs[0]!), pb = rt.address(bufs[1]!), po = rt.address(bufs[3]!);
  for (let ei = 0; ei < e; ei++) {
    const s = offs[ei]!, t = Math.min(offs[ei + 1]!, m);
    if (t <= s || n === 0) continue;
    if (k === 0) {
      out.fill(0, s * n, t * n);
      continue;
    }
    blas.sgemm(
      false,
      p.transposeB,
      t - s,
      n,
      k,
      1,
      px + 4 * s * k,
      k,
      pb + 4 * ei * k * n,
      p.transposeB ? k : n,
      0,
      po + 4 * s * n,
      n,
    );
  }
  out.fill(0, Math.min(offs[e]!, m) * n);
}

/**
 * `dW[e] = Σ_{r ∈ segment e} x[r]ᵀ · g[r]`, `[E, k, n]` (zero for empty segments). Buffers: x, g,
 * meta, dw.
 *
 * @param e Experts.
 * @param k Columns of x (rows of each matrix).
 * @param n Columns of g.
 * @param bufs The dispatch's buffers.
 * @param rt The runtime.
 * @param fallback The CPU twin (used without a BLAS).
 *
 * @example
 * ```ts
 * import { backward, groupedMatmul, moeGather, moeGroup, openDevice, sumAll } from "@qsparse/kit";
 * using dev = await openDevice({ prefer: "native" });
 * const g = moeGroup(dev.tensor(new Uint32Array([0, 1, 1, 0]), [4, 1], "u32"), 2);
 * const w = dev.randn([2, 8, 16], { seed: 2 });
 * w.requiresGrad = true;
 * backward(sumAll(groupedMatmul(moeGather(dev.randn([4, 8], { seed: 1 }), g), w, g)));
 * console.log(w.grad!.shape); // [2, 8, 16]: one sgemm per expert
 * ```
 */
export function groupedWeightGradNative(
  e: number,
  k: number,
  n: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
  fallback: (bufs: ArrayBuffer[]) => void,
): void {
  const blas = rt.blas;
  if (!blas) return fallback(bufs);
  const offs = new Uint32Array(bufs[2]!, 0, e + 1);
  const dw = new Float32Array(bufs[3]!, 0, e * k * n);
  const px = rt.address(bufs[0]!), pg = rt.address(bufs[1]!), pw = rt.address(bufs[3]!);
  for (let ei = 0; ei < e; ei++) {
    const s = offs[ei]!, t = offs[ei + 1]!;
    if (t <= s || k === 0 || n === 0) {
      dw.fill(0, ei * k * n, (ei + 1) * k * n);
      continue;
    }
    blas.sgemm(
      true,
      false,
      k,
      n,
      t - s,
      1,
      px + 4 * s * k,
      k,
      pg + 4 * s * n,
      n,
      0,
      pw + 4 * ei * k * n,
      n,
    );
  }
}
