/**
 * Native sparse-format helpers for f32: scattering fixed-K or CSR rows to dense and counting
 * each row's nonzeros, split across threads by rows (each row's output is its own). Same loops
 * as the twins in kernels/sparse.ts, so results are identical.
 *
 * @module
 */
import type { NativeRuntime, ParallelTask } from "../../src/backend/backend.ts";
import { argBuffer, bufferArgs } from "./buffer_args.ts";

const MIN_PARALLEL_ELEMS = 1 << 16;

/** Scatter over rows: buffers vals, idxs, out, rowPtr (empty for fixed K); params `d, k`. */
export const scatterRowsTask: ParallelTask = {
  name: "scatterRows",
  run(ctx, args, lo, hi) {
    const d = args[8]!, k = args[9]!;
    const vals = new Float32Array(argBuffer(ctx, args, 0));
    const idxs = new Uint32Array(argBuffer(ctx, args, 1));
    const out = new Float32Array(argBuffer(ctx, args, 2));
    const ptrBuf = argBuffer(ctx, args, 3);
    const ptr = ptrBuf.byteLength ? new Uint32Array(ptrBuf) : null;
    out.fill(0, lo * d, hi * d);
    for (let r = lo; r < hi; r++) {
      const e0 = ptr ? ptr[r]! : r * k, e1 = ptr ? ptr[r + 1]! : e0 + k, o = r * d;
      for (let t = e0; t < e1; t++) out[o + idxs[t]!] = vals[t]!;
    }
  },
};

/** Nonzero count over rows: buffers x, counts; param `d`. */
export const countRowsTask: ParallelTask = {
  name: "countRows",
  run(ctx, args, lo, hi) {
    const d = args[4]!;
    const x = new Float32Array(argBuffer(ctx, args, 0)),
      c = new Uint32Array(argBuffer(ctx, args, 1));
    for (let r = lo; r < hi; r++) {
      let n = 0;
      for (let i = r * d; i < r * d + d; i++) if (x[i] !== 0) n++;
      c[r] = n;
    }
  },
};

/**
 * Scatters f32 sparse rows into a dense `[rows, d]` tensor (buffers: vals, idxs, out, and rowPtr
 * when `csr`).
 *
 * @param rows Rows.
 * @param d Dense width.
 * @param k Entries per row (fixed K).
 * @param csr Whether rowPtr (buffer 3) gives the rows.
 * @param bufs The dispatch's buffers.
 * @param rt The runtime.
 *
 * @example
 * ```ts
 * import { openDevice, topkRows } from "@qsparse/kit";
 * using dev = await openDevice({ prefer: "native" });
 * using s = topkRows(dev.tensor([[3, -1, 0, -5]]), 2);
 * console.log(await s.toDense().toArray()); // [[3, 0, 0, -5]]
 * ```
 */
export function scatterRowsNative(
  rows: number,
  d: number,
  k: number,
  csr: boolean,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  if (rows === 0 || d === 0) return;
  const b = [bufs[0]!, bufs[1]!, bufs[2]!, csr ? bufs[3]! : new ArrayBuffer(0)];
  rt.parallel(scatterRowsTask, rows, bufferArgs(b, rt, d, k), {
    minParallel: Math.ceil(MIN_PARALLEL_ELEMS / d),
  });
}

/**
 * Counts each row's nonzeros (NaN counts) of an f32 `[rows, d]` tensor (buffers: x, counts).
 *
 * @param rows Rows.
 * @param d Row width.
 * @param bufs The dispatch's buffers.
 * @param rt The runtime.
 *
 * @example
 * ```ts
 * import { denseToCsr, openDevice } from "@qsparse/kit";
 * using dev = await openDevice({ prefer: "native" });
 * const c = await denseToCsr(dev.tensor([[1, 0, 2], [0, 0, 3]])); // counts rows natively
 * console.log(await c.rowPtr.toArray()); // [0, 2, 3]
 * ```
 */
export function countRowsNative(
  rows: number,
  d: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  if (rows === 0) return;
  rt.parallel(countRowsTask, rows, bufferArgs(bufs.slice(0, 2), rt, d), {
    minParallel: Math.ceil(MIN_PARALLEL_ELEMS / Math.max(1, d)),
  });
}
