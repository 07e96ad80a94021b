/**
 * Native cross-entropy from f32 logits and its fused backward (kernels/cross_entropy.ts), rows
 * split across threads. Each row follows the twin's arithmetic (max, then Σ exp(x − max) in f64
 * skipping −∞, loss `(max − x_t) + log Σ`) with the inlinable {@link fastExp} (relative error
 * below 1e-8) in place of `Math.exp`, the cost of this kernel: results agree with the twin to
 * about an f32 ulp. The backward computes each `exp(x − max)` once, keeps it in a per-thread f64
 * row, and reuses it for the gradient instead of a second exponential.
 *
 * @module
 */
import type { NativeRuntime } from "../../src/backend/backend.ts";
import { fastExp } from "./exp.ts";
import { launch, type Launchable, launchable } from "./host_job.ts";

/** Per-thread row of `exp(x − max)`. */
let ex = new Float64Array(1024);

/** Largest logit of a row (NaN never wins, as in the twin's `x > m` scan). */
function rowMax(x: Float32Array, start: number, end: number): number {
  let m = -Infinity;
  for (let i = start; i < end; i++) if (x[i]! > m) m = x[i]!;
  return m;
}

/** Σ exp(x − m) over a row, skipping −∞ (the twin's log-sum-exp). */
function rowSumExp(x: Float32Array, start: number, end: number, m: number): number {
  let s = 0;
  for (let i = start; i < end; i++) {
    const v = x[i]!;
    if (v !== -Infinity) s += fastExp(v - m);
  }
  return s;
}

/** The gradient row `gr · (softmax − onehot)`, each exponential computed once into `e`. */
function gradRow(
  x: Float32Array,
  start: number,
  cols: number,
  t: number,
  gr: number,
  e: Float64Array,
  gx: Float32Array,
): void {
  const m = rowMax(x, start, start + cols);
  let s = 0;
  for (let j = 0; j < cols; j++) {
    const v = x[start + j]!;
    const ev = fastExp(v - m);
    e[j] = ev;
    if (v !== -Infinity) s += ev;
  }
  for (let j = 0; j < cols; j++) gx[start + j] = gr * (e[j]! / s);
  // The target's term: the twin computes gr · (p − 1) there.
  if (t < cols) gx[start + t] = gr * (e[t]! / s - 1);
}

/**
 * Job over rows: buffers `[x, targets, loss]` (forward) or `[x, targets, g, gx]` (backward);
 * params `[cols, backward, gStep, scale]` (a row's factor is `f32(g[r · gStep] · scale)`, as in
 * the twin). The per-row work is in small functions: called once per row, they
 * are optimised by V8 within the first call, where one long loop nest called once per training
 * step would run unoptimised through the first steps.
 */
const ceJob: Launchable = launchable({
  name: "crossEntropyF32",
  buffers: 4,
  run(bufs, p, lo, hi) {
    const cols = p[0]!, backward = p[1] === 1;
    const x = new Float32Array(bufs[0]!), ts = new Uint32Array(bufs[1]!);
    if (!backward) {
      const loss = new Float32Array(bufs[2]!);
      for (let r = lo; r < hi; r++) {
        const start = r * cols, end = start + cols, t = ts[r]!;
        const m = rowMax(x, start, end);
        const s = rowSumExp(x, start, end, m);
        loss[r] = t < cols ? m - x[start + t]! + Math.log(s) : NaN;
      }
      return;
    }
    const g = new Float32Array(bufs[2]!), gx = new Float32Array(bufs[3]!);
    const gStep = p[2]!, scale = p[3]!;
    if (ex.length < cols) ex = new Float64Array(cols);
    for (let r = lo; r < hi; r++) {
      const t = ts[r]!;
      const gr = t < cols ? Math.fround(g[r * gStep]! * scale) : NaN;
      gradRow(x, r * cols, cols, t, gr, ex, gx);
    }
  },
});

/** Tasks of this file, for kernels/native/tasks.ts. */
export const CROSS_ENTROPY_TASKS = [ceJob.task];

function rowsOpts(cols: number): { align: number; minParallel: number } {
  return { align: 1, minParallel: Math.max(2, Math.ceil((1 << 15) / Math.max(1, cols))) };
}

/**
 * Native per-row cross-entropy loss.
 *
 * @param rows Rows.
 * @param cols Classes.
 * @param bufs `[x, targets, loss]`.
 * @param rt The runtime.
 * @example
 * ```ts ignore
 * native: dtype === "f32" ? (bufs, rt) => crossEntropyNative(rows, cols, bufs, rt) : undefined
 * ```
 */
export function crossEntropyNative(
  rows: number,
  cols: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  launch(
    rt,
    ceJob,
    rows,
    [bufs[0]!, bufs[1]!, bufs[2]!, bufs[2]!],
    [cols, 0, 0, 1],
    rowsOpts(cols),
  );
}

/**
 * Native cross-entropy backward.
 *
 * @param rows Rows.
 * @param cols Classes.
 * @param bufs `[x, targets, g, gx]`.
 * @param rt The runtime.
 * @param gStep 1: g per row; 0: one scalar g for every row.
 * @param scale Multiplies g (1/N for a mean's gradient).
 * @example
 * ```ts ignore
 * native: dtype === "f32" ? (bufs, rt) => crossEntropyBackwardNative(rows, cols, bufs, rt) : undefined
 * ```
 */
export function crossEntropyBackwardNative(
  rows: number,
  cols: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
  gStep = 1,
  scale = 1,
): void {
  launch(rt, ceJob, rows, bufs, [cols, 1, gStep, Math.fround(scale)], rowsOpts(cols));
}
