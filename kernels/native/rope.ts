/**
 * Native rotary embedding (f32), parallel over head vectors.
 *
 * The twin (kernels/rope.ts) calls `Math.cos` and `Math.sin` for every pair, but the angle only
 * depends on (position, frequency), and a batch has just T positions: each thread fills a
 * cos/sin table row the first time it meets a position in a call (marked with the call's id),
 * so the trigonometry runs T·hd/2 times per thread instead of once per pair. Values are the
 * twin's exactly (same f32 angle, same f64 sin/cos).
 *
 * @module
 */
import type { NativeRuntime, ParallelTask } from "../../src/backend/backend.ts";
import type { RopeParams } from "../rope.ts";

/** Per-thread tables: cos and sin per (position, frequency), and the call id each row is for. */
let cosTab = new Float64Array(0), sinTab = new Float64Array(0), stamp = new Float64Array(0);

/** Distinguishes calls so a table row filled by an earlier call is never reused. */
let calls = 0;

/** Task: args `[x, out, invFreq, vectors, t, h, half, offset, sign, callId]`, items = vectors. */
export const ropeF32Task: ParallelTask = {
  name: "ropeF32",
  run(ctx, args, lo0, hi0) {
    // Integer parameters arrive as f64; int32 copies keep index math in integer registers.
    const lo = lo0 | 0, hi = hi0 | 0;
    const t = args[4]! | 0, h = args[5]! | 0, half = args[6]! | 0, offset = args[7]! | 0;
    const sign = args[8]!;
    const id = args[9]!, hd = 2 * half;
    const x = new Float32Array(ctx.view(args[0]!, hi * hd * 4));
    const o = new Float32Array(ctx.view(args[1]!, hi * hd * 4));
    const inv = new Float32Array(ctx.view(args[2]!, half * 4));
    if (stamp.length < t || cosTab.length < t * half) {
      stamp = new Float64Array(Math.max(t, stamp.length));
      cosTab = new Float64Array(Math.max(t * half, cosTab.length));
      sinTab = new Float64Array(Math.max(t * half, sinTab.length));
    }
    const ct = cosTab, st = sinTab;
    for (let v = lo; v < hi; v++) {
      const p = Math.floor(v / h) % t;
      const tb = p * half;
      if (stamp[p] !== id) {
        const pos = p + offset;
        for (let i = 0; i < half; i++) {
          const ang = Math.fround(pos * inv[i]!);
          ct[tb + i] = Math.cos(ang);
          st[tb + i] = Math.sin(ang) * sign;
        }
        stamp[p] = id;
      }
      const base = v * hd;
      for (let i = 0; i < half; i++) {
        const c = ct[tb + i]!, s = st[tb + i]!;
        const x1 = x[base + i]!, x2 = x[base + i + half]!;
        o[base + i] = x1 * c - x2 * s;
        o[base + i + half] = x2 * c + x1 * s;
      }
    }
  },
};

/**
 * Native rotation of `p.vectors` head vectors (f32), forward or backward by `p.sign`.
 *
 * @param p Sizes, offset, direction, frequencies (kernels/rope.ts).
 * @param x Input.
 * @param out Output.
 * @param rt The runtime.
 */
export function ropeF32Native(
  p: RopeParams,
  x: ArrayBuffer,
  out: ArrayBuffer,
  rt: NativeRuntime,
): void {
  // The frequencies travel by address, so they must sit at the start of their own buffer.
  const inv = p.invFreq.byteOffset === 0 ? p.invFreq : p.invFreq.slice();
  calls = (calls + 1) % 2 ** 52;
  const args = [rt.address(x), rt.address(out), rt.address(inv.buffer as ArrayBuffer), p.vectors];
  args.push(p.t, p.h, p.half, p.offset ?? 0, p.sign, calls);
  rt.parallel(ropeF32Task, p.vectors, args, {
    minParallel: Math.max(2, Math.ceil((1 << 15) / Math.max(1, 2 * p.half))),
  });
}
