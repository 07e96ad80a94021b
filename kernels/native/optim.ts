/**
 * Native optimizer kernels (kernels/optim.ts): the fused AdamW update, split across threads for
 * large tensors, and the per-tensor Σ x² that gradient clipping reads. Both repeat the twins'
 * f32 arithmetic operation for operation (`Math.fround` after every step, the sum of squares in
 * the twin's 256 strided partials and its tree), so a run on the native backend takes the same
 * steps as one on the CPU twin, bit for bit.
 *
 * @module
 */
import type { NativeRuntime } from "../../src/backend/backend.ts";
import type { AdamWStep } from "../optim.ts";
import { launch, type Launchable, launchable } from "./host_job.ts";

const f = Math.fround;

/**
 * AdamW job over parameters: buffers `[param, m, v, grad, scale]`, params `[lr, beta1, beta2,
 * eps, weightDecay, bc1, bc2, momentOffset, scaleIndex]`. The moments of parameter i sit at
 * `momentOffset + i`, so a group's parameters can share one pair of moment buffers; the clip
 * factor is word `scaleIndex` of `scale`.
 */
const adamwJob: Launchable = launchable({
  name: "adamwF32",
  buffers: 5,
  run(bufs, p, lo, hi) {
    const mo = 4 * p[7]!;
    const param = new Float32Array(bufs[0]!, 0, hi), m = new Float32Array(bufs[1]!, mo, hi);
    const v = new Float32Array(bufs[2]!, mo, hi), grad = new Float32Array(bufs[3]!, 0, hi);
    const sc = new Float32Array(bufs[4]!, 4 * p[8]!, 1)[0]!;
    const lr = f(p[0]!), b1 = f(p[1]!), b2 = f(p[2]!), eps = f(p[3]!), wd = f(p[4]!);
    const step = f(lr / f(p[5]!)), sbc2 = f(Math.sqrt(f(p[6]!)));
    const ob1 = f(1 - b1), ob2 = f(1 - b2), keepW = f(1 - f(lr * wd));
    for (let i = lo; i < hi; i++) {
      const g = f(grad[i]! * sc);
      const mi = f(f(b1 * m[i]!) + f(ob1 * g));
      const vi = f(f(b2 * v[i]!) + f(f(ob2 * g) * g));
      m[i] = mi;
      v[i] = vi;
      const decayed = f(param[i]! * keepW);
      param[i] = f(decayed - f(f(step * mi) / f(f(f(Math.sqrt(vi)) / sbc2) + eps)));
    }
  },
});

/** Tasks of this file, for kernels/native/tasks.ts. */
export const OPTIM_TASKS = [adamwJob.task];

/**
 * Native AdamW update of `n` f32 parameters in place.
 *
 * @param s Hyper-parameters.
 * @param n Parameters.
 * @param bufs `[param, m, v, grad, scale]`.
 * @param rt The runtime.
 * @param momentOffset Element offset of this parameter's moments in `m` and `v`.
 * @param scaleIndex Word of `scale` holding the clip factor.
 * @example
 * ```ts ignore
 * native: (bufs, rt) => adamwNative(s, n, bufs, rt)
 * ```
 */
export function adamwNative(
  s: AdamWStep,
  n: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
  momentOffset = 0,
  scaleIndex = 1,
): void {
  const params = [
    s.lr,
    s.beta1,
    s.beta2,
    s.eps,
    s.weightDecay,
    s.bc1,
    s.bc2,
    momentOffset,
    scaleIndex,
  ];
  launch(rt, adamwJob, n, bufs, params, {
    align: 16,
    minParallel: 1 << 15,
  });
}

/** The twin's 256 partial sums. */
const part = new Float32Array(256);

/**
 * Native Σ x² into `out[slot]`, summed in the twin's order: lane t adds x[t], x[t + 256], … in
 * f32, then the lanes combine in a tree. Whole blocks of 256 run lane by lane in one sweep.
 *
 * @param x The tensor's buffer.
 * @param n Elements.
 * @param out The squared-norm buffer.
 * @param slot Index to write.
 * @example
 * ```ts ignore
 * native: ([a, o]) => sqNormNative(a!, n, o!, slot)
 * ```
 */
export function sqNormNative(x: ArrayBuffer, n: number, out: ArrayBuffer, slot: number): void {
  const xs = new Float32Array(x, 0, n);
  part.fill(0);
  const whole = n - (n % 256);
  for (let base = 0; base < whole; base += 256) {
    for (let t = 0; t < 256; t++) {
      const v = xs[base + t]!;
      part[t] = part[t]! + f(v * v);
    }
  }
  for (let i = whole; i < n; i++) {
    const v = xs[i]!;
    part[i - whole] = part[i - whole]! + f(v * v);
  }
  for (let w = 128; w > 0; w >>= 1) {
    for (let t = 0; t < w; t++) part[t] = part[t]! + part[t + w]!;
  }
  new Float32Array(out)[slot] = part[0]!;
}
