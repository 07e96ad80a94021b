/**
 * Native sparse-activation × dense-weight matmul, `Y = dense(A) · W` with W input-major
 * `[D_in, D_out]`, and its weight gradient `dW (+)= A_sparseᵀ · dY`. f32 only.
 *
 * **Forward, few rows (decoding):** `y = Σ_{t kept} v_t · W[u_t, :]` reads only the kept weight
 * rows. One row: the kept entries are split into {@link SPMM_PARTS} fixed quarters, each summed
 * into its own partial y by whichever thread takes it (`cblas_saxpy` per kept row through cached
 * pointer objects, `Blas.axpyRows`), and the partials are added in one fixed order — so each
 * thread reads only its own rows' pages, and the result is the same on any thread count. (The
 * first version split the output columns instead; in an 8-layer d = 1024 decode both threads then
 * touched every kept 4 KiB row, and per-call FFI cost with numeric addresses, 0.27 µs against
 * 0.03 µs with pointer objects, made sparse decoding slower than dense.) Several rows: the
 * columns are split across threads as below. Alternatives measured on the 2-core build
 * machine (1×4096 · 4096×4096, min of interleaved runs; the machine was shared, load 4–15, so
 * single figures moved by 2–3×): saxpy per entry reached 8–18 GB/s of W; one `sgemv` per run of
 * consecutive kept rows was 2–5× slower than saxpy (random top-K gives runs of ~2 at S = .5, and
 * a short sgemv costs more than a saxpy); a TypeScript loop over four kept rows at a time was
 * 3–10× slower than saxpy and stays only as the no-BLAS fallback.
 *
 * **Forward, many rows:** per-token top-K keeps different rows per token, so the per-token path
 * reads `rows · density` copies of W while scatter-to-dense + `cblas_sgemm` reads W once at
 * GEMM speed. Measured (same machine, 4096×4096 and 1024×2688, B = 1–64, S = .25–.9): the two
 * break even near `rows · density` ≈ 0.6–0.8 (1024×2688: B = 1 S = .5 1.1×, B = 2 S = .6 0.95×,
 * B = 2 S = .5 0.8×, B = 4 S = .9 1.9× for per-token; 4096×4096 B = 1 S = .25 0.6–1.0×), hence
 * {@link SPMM_PER_TOKEN_MAX_READS}; past it the kernel equals dense (B = 16, 64: 0.9–1.05×). A weight that fits in cache (128 × 352) is faster through
 * sgemm even for one row ({@link SPMM_PER_TOKEN_MIN_WEIGHTS}).
 *
 * **Weight gradient:** scatter A to dense scratch, `G = Aᵀ · dY` by sgemm, then write (or add into)
 * only the rows some entry keeps; the other rows are zeroed (or left untouched when accumulating),
 * as the twin does. Without a BLAS the twin runs.
 *
 * Accumulation is f32 (BLAS) where the twin accumulates in f64: results agree within f32
 * rounding, not bit for bit.
 *
 * @module
 */
import type { NativeRuntime, ParallelTask } from "../../src/backend/backend.ts";

/**
 * The per-token path is taken while `rows · density ≤` this (the number of whole-W reads it
 * costs); beyond, scatter + sgemm (measured crossover, see the module doc).
 */
export const SPMM_PER_TOKEN_MAX_READS = 0.6;

/**
 * Weights smaller than this (elements; 2 MiB of f32) stay in cache, where sgemm's compute speed
 * beats per-entry saxpy calls at any batch and density (measured at 128 × 352: sgemm 16 µs vs
 * 19–46 µs per token for S = .9–.5).
 */
export const SPMM_PER_TOKEN_MIN_WEIGHTS = 1 << 19;

/** Fewest output columns for which the GEMV splits its columns over threads. */
const MIN_PARALLEL_COLS = 4096;

/** Longest saxpy the GEMV issues (columns; 16 KiB of f32). */
const SAXPY_BLOCK = 4096;

/** Below this many multiply-adds the per-token path stays on the calling thread. */
const MIN_PARALLEL_MACS = 1 << 16;

/**
 * Column-split task: items are output columns; each thread computes `Y[:, lo:hi]` for every row.
 * Args: `[vals, idxs, W, Y, rowPtr (−1 for fixed K), rows, dIn, dOut, k, nnz]`.
 */
export const spmmColsTask: ParallelTask = {
  name: "spmmCols",
  run(ctx, args, lo, hi) {
    const pv = args[0]!, pi = args[1]!, pw = args[2]!, py = args[3]!, pp = args[4]!;
    const rows = args[5]!, dIn = args[6]!, dOut = args[7]!, k = args[8]!, nnz = args[9]!;
    if (hi <= lo) return;
    const vals = new Float32Array(ctx.view(pv, nnz * 4));
    const idxs = new Uint32Array(ctx.view(pi, nnz * 4));
    const ptr = pp < 0 ? null : new Uint32Array(ctx.view(pp, (rows + 1) * 4));
    const Y = new Float32Array(ctx.view(py, rows * dOut * 4));
    const blas = ctx.blas;
    const W = blas ? null : new Float32Array(ctx.view(pw, dIn * dOut * 4));
    const w = hi - lo;
    for (let r = 0; r < rows; r++) {
      const e0 = ptr ? ptr[r]! : r * k, e1 = ptr ? ptr[r + 1]! : e0 + k;
      const yo = r * dOut + lo;
      Y.fill(0, yo, yo + w);
      if (blas) {
        // Blocks of ≤ SAXPY_BLOCK columns: the y block stays in L1 across the kept rows, and no
        // call is long enough for OpenBLAS to start its own threads inside a pool thread.
        for (let c0 = lo; c0 < hi; c0 += SAXPY_BLOCK) {
          const n = Math.min(SAXPY_BLOCK, hi - c0), ya = py + 4 * (r * dOut + c0);
          blas.axpyRows(n, vals, idxs, e0, e1, pw + 4 * c0, 4 * dOut, ya);
        }
      } else jsRows(Y, yo, w, W!, dOut, lo, vals, idxs, e0, e1);
    }
  },
};

/** Partial sums a one-row GEMV splits its kept rows into (fixed, so results do not depend on
 * the thread count: partial p always holds the same entries and they are added in one order). */
export const SPMM_PARTS = 4;

/**
 * Parallel task of the one-row GEMV: item p writes partial p = Σ over its quarter of the kept
 * entries of vals[t]·W[idxs[t], :] (whole rows: each thread touches only its own rows' pages,
 * where splitting the columns had both threads touch every kept row).
 * args: [vals, idxs, W, partials, dOut, nnz] (addresses, then sizes).
 */
export const spmmPartsTask: ParallelTask = {
  name: "spmmParts",
  run(ctx, args, lo, hi) {
    const pv = args[0]!, pi = args[1]!, pw = args[2]!, pp = args[3]!;
    const dOut = args[4]!, nnz = args[5]!;
    const blas = ctx.blas!;
    const vals = new Float32Array(ctx.view(pv, nnz * 4));
    const idxs = new Uint32Array(ctx.view(pi, nnz * 4));
    const parts = new Float32Array(ctx.view(pp, SPMM_PARTS * dOut * 4));
    for (let p = lo; p < hi; p++) {
      const e0 = Math.floor((nnz * p) / SPMM_PARTS), e1 = Math.floor((nnz * (p + 1)) / SPMM_PARTS);
      parts.fill(0, p * dOut, (p + 1) * dOut);
      for (let c0 = 0; c0 < dOut; c0 += SAXPY_BLOCK) {
        const n = Math.min(SAXPY_BLOCK, dOut - c0);
        blas.axpyRows(n, vals, idxs, e0, e1, pw + 4 * c0, 4 * dOut, pp + 4 * (p * dOut + c0));
      }
    }
  },
};

/** `Y[yo : yo+w] += Σ_t vals[t]·W[idxs[t], lo : lo+w]`, four entries per pass over the slice. */
function jsRows(
  Y: Float32Array,
  yo: number,
  w: number,
  W: Float32Array,
  dOut: number,
  lo: number,
  vals: Float32Array,
  idxs: Uint32Array,
  e0: number,
  e1: number,
): void {
  let t = e0;
  for (; t + 4 <= e1; t += 4) {
    const v0 = vals[t]!, v1 = vals[t + 1]!, v2 = vals[t + 2]!, v3 = vals[t + 3]!;
    const o0 = idxs[t]! * dOut + lo - yo, o1 = idxs[t + 1]! * dOut + lo - yo;
    const o2 = idxs[t + 2]! * dOut + lo - yo, o3 = idxs[t + 3]! * dOut + lo - yo;
    for (let j = yo; j < yo + w; j++) {
      Y[j] = Y[j]! + v0 * W[o0 + j]! + v1 * W[o1 + j]! + v2 * W[o2 + j]! + v3 * W[o3 + j]!;
    }
  }
  for (; t < e1; t++) {
    const v = vals[t]!, o = idxs[t]! * dOut + lo - yo;
    for (let j = yo; j < yo + w; j++) Y[j] = Y[j]! + v * W[o + j]!;
  }
}

/** Scratch dense matrix for the sgemm paths (grown, never shrunk; one per thread/module). */
let scratch = new ArrayBuffer(0);

function scratchF32(n: number): Float32Array {
  if (scratch.byteLength < n * 4) {
    scratch = new ArrayBuffer(Math.max(n * 4, scratch.byteLength * 2));
  }
  return new Float32Array(scratch, 0, n);
}

/** Writes dense(A) `[rows, dIn]` at the start of `X`. */
function scatterDense(
  X: Float32Array,
  vals: Float32Array,
  idxs: Uint32Array,
  ptr: Uint32Array | null,
  rows: number,
  dIn: number,
  k: number,
): Float32Array {
  X.fill(0, 0, rows * dIn);
  for (let r = 0; r < rows; r++) {
    const e0 = ptr ? ptr[r]! : r * k, e1 = ptr ? ptr[r + 1]! : e0 + k, o = r * dIn;
    for (let t = e0; t < e1; t++) X[o + idxs[t]!] = vals[t]!;
  }
  return X;
}

/** The entries of A: count, views. */
function entries(bufs: ArrayBuffer[], rows: number, k: number, csr: boolean) {
  const ptr = csr ? new Uint32Array(bufs[4]!, 0, rows + 1) : null;
  const nnz = ptr ? ptr[rows]! : rows * k;
  return {
    ptr,
    nnz,
    vals: new Float32Array(bufs[0]!, 0, nnz),
    idxs: new Uint32Array(bufs[1]!, 0, nnz),
  };
}

/**
 * `Y = dense(A) · W` on the native backend (buffers as the twin's: vals, idxs, W, Y, and rowPtr
 * for CSR layouts; any column order).
 *
 * @param rows Rows of A.
 * @param dIn Columns of A, rows of W.
 * @param dOut Columns of W.
 * @param k Entries per row (fixed layouts).
 * @param csr Whether A is CSR (rowPtr is buffer 4).
 * @param bufs The dispatch's buffers.
 * @param rt The runtime.
 *
 * @example
 * ```ts
 * import { openDevice, spmm, topkRows } from "@qsparse/kit";
 * using dev = await openDevice({ prefer: "native" });
 * using x = dev.randn([1, 64], { seed: 1 });
 * using w = dev.randn([64, 32], { seed: 2 });
 * using y = spmm(topkRows(x, 16), w); // runs spmmNative on the native backend
 * console.log(await y.data());
 * ```
 */
export function spmmNative(
  rows: number,
  dIn: number,
  dOut: number,
  k: number,
  csr: boolean,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  if (rows === 0 || dOut === 0) return;
  const { ptr, nnz, vals, idxs } = entries(bufs, rows, k, csr);
  const blas = rt.blas;
  const perToken = nnz <= SPMM_PER_TOKEN_MAX_READS * dIn &&
    dIn * dOut >= SPMM_PER_TOKEN_MIN_WEIGHTS;
  if (blas && dIn > 0 && !perToken) {
    const X = scatterDense(scratchF32(rows * dIn), vals, idxs, ptr, rows, dIn, k);
    const px = rt.address(X.buffer as ArrayBuffer);
    if (rows === 1) {
      // One row: sgemv (this OpenBLAS runs an M = 1 sgemm as a GEMM, slower than its GEMV).
      blas.sgemv(true, dIn, dOut, 1, rt.address(bufs[2]!), dOut, px, 1, 0, rt.address(bufs[3]!), 1);
      return;
    }
    blas.sgemm(
      false,
      false,
      rows,
      dOut,
      dIn,
      1,
      px,
      dIn,
      rt.address(bufs[2]!),
      dOut,
      0,
      rt.address(bufs[3]!),
      dOut,
    );
    return;
  }
  if (blas && rows === 1 && nnz * dOut >= MIN_PARALLEL_MACS) {
    const parts = scratchF32(SPMM_PARTS * dOut);
    const pp = rt.address(parts.buffer as ArrayBuffer);
    const pargs = [rt.address(bufs[0]!), rt.address(bufs[1]!), rt.address(bufs[2]!), pp, dOut, nnz];
    rt.parallel(spmmPartsTask, SPMM_PARTS, pargs, { minParallel: 0 });
    const Y = new Float32Array(bufs[3]!, 0, dOut);
    for (let j = 0; j < dOut; j++) {
      Y[j] = (parts[j]! + parts[dOut + j]!) + (parts[2 * dOut + j]! + parts[3 * dOut + j]!);
    }
    return;
  }
  const args = [
    rt.address(bufs[0]!),
    rt.address(bufs[1]!),
    rt.address(bufs[2]!),
    rt.address(bufs[3]!),
    ptr ? rt.address(bufs[4]!) : -1,
    rows,
    dIn,
    dOut,
    k,
    nnz,
  ];
  // Items are columns; go parallel only when the whole job is worth a pool round trip and each
  // thread's saxpy rows stay long: split at 2 threads, a 1024×3072 decode GEMV at S = .5 took
  // 0.72 ms against 0.52 ms on one thread (rows of 1536 floats), while 1024×5376 gained (0.67 vs
  // 0.81 ms) — measured 2026-11-30 on the 2-core build machine.
  const minParallel = nnz * dOut >= MIN_PARALLEL_MACS && dOut >= MIN_PARALLEL_COLS ? 0 : Infinity;
  rt.parallel(spmmColsTask, dOut, args, { align: 16, minParallel });
}

/**
 * `dW (+)= A_sparseᵀ · dY` on the native backend (buffers: vals, idxs, dY, dW, rowPtr for CSR).
 * Rows of dW no entry keeps are zeroed, or left untouched when `accumulate`. Without a BLAS the
 * twin runs instead (the caller passes it as `fallback`).
 *
 * @param rows Rows of A and dY.
 * @param dIn Columns of A, rows of dW.
 * @param dOut Columns of dY and dW.
 * @param k Entries per row (fixed layouts).
 * @param csr Whether A is CSR.
 * @param accumulate Add into dW instead of overwriting.
 * @param bufs The dispatch's buffers.
 * @param rt The runtime.
 * @param fallback The CPU twin, used when no BLAS is loaded.
 *
 * @example
 * ```ts
 * import { openDevice, topkRows } from "@qsparse/kit";
 * import { spmmGradWeight } from "../../src/ops/spmm.ts";
 * using dev = await openDevice({ prefer: "native" });
 * using x = dev.randn([4, 64], { seed: 1 });
 * using dy = dev.randn([4, 32], { seed: 2 });
 * using dw = spmmGradWeight(topkRows(x, 16), dy); // runs spmmGradWeightNative
 * console.log(dw.shape); // [64, 32]
 * ```
 */
export function spmmGradWeightNative(
  rows: number,
  dIn: number,
  dOut: number,
  k: number,
  csr: boolean,
  accumulate: boolean,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
  fallback: (bufs: ArrayBuffer[]) => void,
): void {
  const blas = rt.blas;
  if (!blas || dOut === 0 || dIn === 0) return fallback(bufs);
  const { ptr, vals, idxs } = entries(bufs, rows, k, csr);
  const dW = new Float32Array(bufs[3]!, 0, dIn * dOut);
  if (rows === 0) {
    if (!accumulate) dW.fill(0);
    return;
  }
  // Scratch holds dense(A) [rows, dIn] then G [dIn, dOut] after it.
  const all = scratchF32(rows * dIn + dIn * dOut);
  scatterDense(all, vals, idxs, ptr, rows, dIn, k);
  const G = all.subarray(rows * dIn);
  const base = rt.address(all.buffer as ArrayBuffer);
  blas.sgemm(
    true,
    false,
    dIn,
    dOut,
    rows,
    1,
    base,
    dIn,
    rt.address(bufs[2]!),
    dOut,
    0,
    base + 4 * rows * dIn,
    dOut,
  );
  const hit = hitRows(idxs, dIn);
  for (let u = 0; u < dIn; u++) {
    const o = u * dOut;
    if (hit[u]) {
      if (accumulate) { for (let c = o; c < o + dOut; c++) dW[c] = dW[c]! + G[c]!; }
      else dW.set(G.subarray(o, o + dOut), o);
    } else if (!accumulate) dW.fill(0, o, o + dOut);
  }
}

let hits = new Uint8Array(0);

function hitRows(idxs: Uint32Array, dIn: number): Uint8Array {
  if (hits.length < dIn) hits = new Uint8Array(dIn);
  const h = hits.subarray(0, dIn);
  h.fill(0);
  for (let t = 0; t < idxs.length; t++) h[idxs[t]!] = 1;
  return h;
}
