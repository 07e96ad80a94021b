/**
 * Native chunk union (kernels/chunk_union.ts), parallel over (chunk, expert) output rows: each
 * item clears its row of flags, binary-searches the expert's first row whose token lies in the
 * chunk (rows of an expert are in token order), and ORs the nonzero pattern of the chunk's rows
 * into its flags. Items write disjoint rows, so the result never depends on the split.
 *
 * @module
 */
import type { NativeRuntime, ParallelTask } from "../../src/backend/backend.ts";
import type { ChunkUnionParams } from "../chunk_union.ts";

/** Task: args `[h, perm, meta, used, e, k, seqLen, chunk, perSeq, chunks, w, m]`. */
export const chunkUnionTask: ParallelTask = {
  name: "chunkUnion",
  run(ctx, args, lo0, hi0) {
    // Integer parameters arrive as f64; int32 copies keep index math in integer registers.
    const lo = lo0 | 0, hi = hi0 | 0;
    const e = args[4]! | 0, k = args[5]! | 0, seqLen = args[6]! | 0, chunk = args[7]! | 0;
    const perSeq = args[8]! | 0;
    const w = args[10]! | 0, m = args[11]! | 0;
    const h = new Int32Array(ctx.view(args[0]!, m * w * 4));
    const perm = new Uint32Array(ctx.view(args[1]!, m * 4));
    const meta = new Uint32Array(ctx.view(args[2]!, (e + 1) * 4));
    const used = new Float32Array(ctx.view(args[3]!, hi * w * 4));
    for (let ce = lo; ce < hi; ce++) {
      const c = Math.floor(ce / e), ex = ce - c * e;
      const s = Math.floor(c / perSeq);
      const t0 = s * seqLen + (c - s * perSeq) * chunk;
      const t1 = Math.min(t0 + chunk, (s + 1) * seqLen);
      const end = meta[ex + 1]!;
      let a = meta[ex]!, b = end;
      while (a < b) {
        const mid = (a + b) >>> 1;
        if (Math.floor(perm[mid]! / k) < t0) a = mid + 1;
        else b = mid;
      }
      const o = ce * w;
      used.fill(0, o, o + w);
      for (let r = a; r < end && Math.floor(perm[r]! / k) < t1; r++) {
        const rb = r * w;
        for (let col = 0; col < w; col++) if ((h[rb + col]! & 0x7fffffff) !== 0) used[o + col] = 1;
      }
    }
  },
};

/**
 * Native chunk union.
 *
 * @param p Geometry.
 * @param bufs h, perm, meta, used.
 * @param rt The runtime.
 */
export function chunkUnionNative(
  p: ChunkUnionParams,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  const items = p.chunks * p.e;
  if (items === 0) return;
  const metaWords = new Uint32Array(bufs[2]!, 0, p.e + 1);
  const m = metaWords[p.e]!;
  const [h, perm, meta, used] = bufs.map((b) => rt.address(b));
  rt.parallel(
    chunkUnionTask,
    items,
    [h!, perm!, meta!, used!, p.e, p.k, p.seqLen, p.chunk, p.perSeq, p.chunks, p.w, m],
    { minParallel: Math.max(2, Math.ceil((1 << 15) / Math.max(1, p.w * (m / items)))) },
  );
}
