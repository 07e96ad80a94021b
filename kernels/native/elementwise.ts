/**
 * Native elementwise kernels on f32: unary maps, broadcasting binary ops, scalar forms and
 * `where`, as specialised loops (the op is chosen once per chunk, never per element) split over
 * the thread pool when large. Same values as the CPU twins in kernels/elementwise.ts: a JS
 * double result stored into a Float32Array rounds exactly as the twins' `Math.fround` does.
 *
 * `relu`, `relu2` and `step` test the sign from the f32 bits instead of branching on `x > 0`:
 * on activations (half positive, in random order) the branch mispredicts about every other
 * element, which made the branchy loop 5× slower. NaN gives 0, as in the twin.
 *
 * @module
 */
import type { NativeRuntime } from "../../src/backend/backend.ts";
import type { BinaryOp, BroadcastLayout, UnaryOp } from "../elementwise.ts";
import { launch, type Launchable, launchable } from "./host_job.ts";

/** Unary op codes (index = code). */
const UNARY_OPS: readonly UnaryOp[] = [
  "neg",
  "abs",
  "exp",
  "log",
  "sqrt",
  "rsqrt",
  "square",
  "relu",
  "relu2",
  "step",
  "sigmoid",
  "silu",
  "tanh",
  "sign",
];
/** Binary op codes (index = code). */
const BINARY_OPS: readonly BinaryOp[] = [
  "add",
  "sub",
  "mul",
  "div",
  "maximum",
  "minimum",
  "pow",
  "gt",
  "ge",
  "lt",
  "eq",
  "reluGrad",
  "relu2Grad",
];

/**
 * All-ones when the f32 with bits `u` is > 0 (and not NaN), else zero: `u − 1 ≥ 0` rejects +0 and
 * negative numbers (sign bit set), `0x7f800000 − u ≥ 0` rejects NaN. For −0 (`0x80000000`) the
 * first term wraps positive but the second is negative, so −0 gives +0 like the twin.
 */
function positiveMask(u: number): number {
  return ~(((u - 1) | (0x7f800000 - u)) >> 31);
}

/** `o[i] = op(x[i])` for i in `[lo, hi)`. */
function unaryLoop(
  op: number,
  x: Float32Array,
  xb: Int32Array,
  o: Float32Array,
  ob: Int32Array,
  lo: number,
  hi: number,
): void {
  switch (UNARY_OPS[op]) {
    case "neg":
      for (let i = lo; i < hi; i++) o[i] = -x[i]!;
      return;
    case "abs":
      for (let i = lo; i < hi; i++) o[i] = Math.abs(x[i]!);
      return;
    case "exp":
      for (let i = lo; i < hi; i++) o[i] = Math.exp(x[i]!);
      return;
    case "log":
      for (let i = lo; i < hi; i++) o[i] = Math.log(x[i]!);
      return;
    case "sqrt":
      for (let i = lo; i < hi; i++) o[i] = Math.sqrt(x[i]!);
      return;
    case "rsqrt":
      for (let i = lo; i < hi; i++) o[i] = 1 / Math.sqrt(x[i]!);
      return;
    case "square":
      for (let i = lo; i < hi; i++) o[i] = x[i]! * x[i]!;
      return;
    case "relu":
      for (let i = lo; i < hi; i++) {
        const u = xb[i]!;
        ob[i] = u & positiveMask(u);
      }
      return;
    case "relu2":
      for (let i = lo; i < hi; i++) {
        // Mask first: the output may alias the input.
        const v = x[i]!, m = positiveMask(xb[i]!);
        o[i] = v * v;
        ob[i] = ob[i]! & m;
      }
      return;
    case "step":
      for (let i = lo; i < hi; i++) ob[i] = 0x3f800000 & positiveMask(xb[i]!);
      return;
    case "sigmoid":
      for (let i = lo; i < hi; i++) o[i] = 1 / (1 + Math.exp(-x[i]!));
      return;
    case "silu":
      for (let i = lo; i < hi; i++) o[i] = x[i]! / (1 + Math.exp(-x[i]!));
      return;
    case "tanh":
      for (let i = lo; i < hi; i++) o[i] = Math.tanh(Math.max(-15, Math.min(15, x[i]!)));
      return;
    case "sign":
      for (let i = lo; i < hi; i++) {
        const v = x[i]!;
        o[i] = v > 0 ? 1 : v < 0 ? -1 : 0;
      }
      return;
  }
}

/** Unary job: buffers `[x, out]`, params `[op]`. */
const unaryF32: Launchable = launchable({
  name: "unaryF32",
  buffers: 2,
  run(bufs, p, lo, hi) {
    const x = bufs[0]!, out = bufs[1]!;
    unaryLoop(
      p[0]!,
      new Float32Array(x, 0, hi),
      new Int32Array(x, 0, hi),
      new Float32Array(out, 0, hi),
      new Int32Array(out, 0, hi),
      lo,
      hi,
    );
  },
});

/**
 * `o[io + i] = op(a[ia + i·sa], b[ib + i·sb])` for i in `[0, n)`. The hot arithmetic ops also get
 * a contiguous loop (both strides 1), which runs about twice as fast as the strided one.
 */
function binaryLoop(
  op: number,
  a: Float32Array,
  ia: number,
  sa: number,
  b: Float32Array,
  ib: number,
  sb: number,
  o: Float32Array,
  io: number,
  n: number,
): void {
  const end = io + n;
  const flat = sa === 1 && sb === 1;
  // Same-shape operands (the common case): one index for all three arrays runs about 1.5× faster
  // than three offset indices.
  if (flat && ia === io && ib === io) {
    switch (BINARY_OPS[op]) {
      case "add":
        for (let i = io; i < end; i++) o[i] = a[i]! + b[i]!;
        return;
      case "sub":
        for (let i = io; i < end; i++) o[i] = a[i]! - b[i]!;
        return;
      case "mul":
        for (let i = io; i < end; i++) o[i] = a[i]! * b[i]!;
        return;
      case "div":
        for (let i = io; i < end; i++) o[i] = a[i]! / b[i]!;
        return;
      case "reluGrad":
      case "relu2Grad": {
        // Branch-free: relu(x) from the bits into the output, then the product (g read first,
        // as the output may alias it).
        const ob = new Int32Array(o.buffer, o.byteOffset, o.length);
        const xb = new Int32Array(b.buffer, b.byteOffset, b.length);
        if (BINARY_OPS[op] === "reluGrad") {
          for (let i = io; i < end; i++) {
            const g = a[i]!;
            ob[i] = 0x3f800000 & positiveMask(xb[i]!);
            o[i] = g * o[i]!;
          }
        } else {
          for (let i = io; i < end; i++) {
            const g = a[i]!, u = xb[i]!;
            ob[i] = u & positiveMask(u);
            o[i] = g * (2 * o[i]!);
          }
        }
        return;
      }
    }
  }
  switch (BINARY_OPS[op]) {
    case "add":
      if (flat) { for (let i = 0; i < n; i++) o[io + i] = a[ia + i]! + b[ib + i]!; }
      else for (; io < end; io++, ia += sa, ib += sb) o[io] = a[ia]! + b[ib]!;
      return;
    case "sub":
      if (flat) { for (let i = 0; i < n; i++) o[io + i] = a[ia + i]! - b[ib + i]!; }
      else for (; io < end; io++, ia += sa, ib += sb) o[io] = a[ia]! - b[ib]!;
      return;
    case "mul":
      if (flat) { for (let i = 0; i < n; i++) o[io + i] = a[ia + i]! * b[ib + i]!; }
      else for (; io < end; io++, ia += sa, ib += sb) o[io] = a[ia]! * b[ib]!;
      return;
    case "div":
      if (flat) { for (let i = 0; i < n; i++) o[io + i] = a[ia + i]! / b[ib + i]!; }
      else for (; io < end; io++, ia += sa, ib += sb) o[io] = a[ia]! / b[ib]!;
      return;
    case "maximum":
      for (; io < end; io++, ia += sa, ib += sb) o[io] = Math.max(a[ia]!, b[ib]!);
      return;
    case "minimum":
      for (; io < end; io++, ia += sa, ib += sb) o[io] = Math.min(a[ia]!, b[ib]!);
      return;
    case "pow":
      for (; io < end; io++, ia += sa, ib += sb) o[io] = Math.pow(a[ia]!, b[ib]!);
      return;
    case "gt":
      for (; io < end; io++, ia += sa, ib += sb) o[io] = a[ia]! > b[ib]! ? 1 : 0;
      return;
    case "ge":
      for (; io < end; io++, ia += sa, ib += sb) o[io] = a[ia]! >= b[ib]! ? 1 : 0;
      return;
    case "lt":
      for (; io < end; io++, ia += sa, ib += sb) o[io] = a[ia]! < b[ib]! ? 1 : 0;
      return;
    case "eq":
      for (; io < end; io++, ia += sa, ib += sb) o[io] = a[ia]! === b[ib]! ? 1 : 0;
      return;
    case "reluGrad":
      for (; io < end; io++, ia += sa, ib += sb) o[io] = a[ia]! * (b[ib]! > 0 ? 1 : 0);
      return;
    case "relu2Grad":
      for (; io < end; io++, ia += sa, ib += sb) {
        const x = b[ib]!;
        o[io] = a[ia]! * (x > 0 ? 2 * x : 0);
      }
      return;
  }
}

/** Odometer coordinates of the broadcast walk (per thread: module state is per worker). */
const coord = new Float64Array(8);

/**
 * Binary job over the output's flat index: buffers `[a, b, out]`, params
 * `[op, rank, shape×8, stridesA×8, stridesB×8]`. Each chunk walks its range as runs along the
 * innermost (collapsed) dim.
 */
const binaryF32: Launchable = launchable({
  name: "binaryF32",
  buffers: 3,
  run(bufs, p, lo, hi) {
    const op = p[0]!, rank = p[1]!;
    const a = new Float32Array(bufs[0]!), b = new Float32Array(bufs[1]!);
    const o = new Float32Array(bufs[2]!, 0, hi);
    if (rank === 1) {
      const sa = p[10]!, sb = p[18]!;
      binaryLoop(op, a, lo * sa, sa, b, lo * sb, sb, o, lo, hi - lo);
      return;
    }
    const last = rank - 1;
    const d = p[2 + last]!, sa = p[10 + last]!, sb = p[18 + last]!;
    // Coordinates and input offsets of `lo`.
    let rem = lo, ia = 0, ib = 0;
    for (let k = last; k >= 0; k--) {
      const dim = p[2 + k]!;
      const c = rem % dim;
      rem = (rem - c) / dim;
      coord[k] = c;
      ia += c * p[10 + k]!;
      ib += c * p[18 + k]!;
    }
    let i = lo;
    while (i < hi) {
      const c = coord[last]!;
      const len = Math.min(d - c, hi - i);
      binaryLoop(op, a, ia, sa, b, ib, sb, o, i, len);
      i += len;
      if (i >= hi) break;
      // The run reached the end of the inner dim: back to its start, carry into the outer dims.
      ia -= c * sa;
      ib -= c * sb;
      coord[last] = 0;
      for (let k = last - 1; k >= 0; k--) {
        ia += p[10 + k]!;
        ib += p[18 + k]!;
        if (++coord[k]! < p[2 + k]!) break;
        coord[k] = 0;
        ia -= p[10 + k]! * p[2 + k]!;
        ib -= p[18 + k]! * p[2 + k]!;
      }
    }
  },
});

/** The scalar operand of the generic scalar path (one per thread). */
const scalarBox = new Float32Array(1);

/**
 * Scalar-form job: buffers `[x, out]`, params `[op, reversed, s]`: `op(x, s)` or `op(s, x)`.
 * The hot ops get their own loops; the rest run the strided binary loop against a 1-element
 * array holding `s` (stride 0).
 */
const scalarF32: Launchable = launchable({
  name: "scalarF32",
  buffers: 2,
  run(bufs, p, lo, hi) {
    const op = p[0]!, reversed = p[1]! !== 0;
    const x = new Float32Array(bufs[0]!, 0, hi), o = new Float32Array(bufs[1]!, 0, hi);
    scalarBox[0] = p[2]!;
    const s = scalarBox[0]!;
    switch (BINARY_OPS[op]) {
      case "mul":
        for (let i = lo; i < hi; i++) o[i] = x[i]! * s;
        return;
      case "add":
        for (let i = lo; i < hi; i++) o[i] = x[i]! + s;
        return;
      case "sub":
        if (reversed) { for (let i = lo; i < hi; i++) o[i] = s - x[i]!; }
        else for (let i = lo; i < hi; i++) o[i] = x[i]! - s;
        return;
      case "div":
        if (reversed) { for (let i = lo; i < hi; i++) o[i] = s / x[i]!; }
        else for (let i = lo; i < hi; i++) o[i] = x[i]! / s;
        return;
    }
    if (reversed) binaryLoop(op, scalarBox, 0, 0, x, lo, 1, o, lo, hi - lo);
    else binaryLoop(op, x, lo, 1, scalarBox, 0, 0, o, lo, hi - lo);
  },
});

/** Typed view of a 4-byte dtype (the condition of `where` may be f32, i32 or u32). */
function view32(dtype: number, buf: ArrayBuffer): Float32Array | Int32Array | Uint32Array {
  return dtype === 0
    ? new Float32Array(buf)
    : dtype === 1
    ? new Int32Array(buf)
    : new Uint32Array(buf);
}

/**
 * `where` job: buffers `[cond, a, b, out]`, params `[condType (0 f32, 1 i32, 2 u32), cstride,
 * cmod]`: `out[i] = cond[⌊i / cstride⌋ mod cmod] ≠ 0 ? a[i] : b[i]`. Values move as raw 32-bit
 * words, so any 4-byte data dtype works.
 */
const whereF32: Launchable = launchable({
  name: "where32",
  buffers: 4,
  run(bufs, p, lo, hi) {
    const c = view32(p[0]!, bufs[0]!);
    const a = new Int32Array(bufs[1]!, 0, hi), b = new Int32Array(bufs[2]!, 0, hi);
    const o = new Int32Array(bufs[3]!, 0, hi);
    const cstride = p[1]!, cmod = p[2]!;
    if (cstride === 1) {
      let j = lo % cmod;
      for (let i = lo; i < hi; i++) {
        o[i] = c[j]! !== 0 ? a[i]! : b[i]!;
        if (++j === cmod) j = 0;
      }
      return;
    }
    // A constant condition over each block of `cstride` elements: copy whole runs.
    let i = lo;
    while (i < hi) {
      const blk = Math.floor(i / cstride);
      const end = Math.min(hi, (blk + 1) * cstride);
      const src = c[blk % cmod]! !== 0 ? a : b;
      for (; i < end; i++) o[i] = src[i]!;
    }
  },
});

/** Tasks of this file, for kernels/native/tasks.ts. */
export const ELEMENTWISE_TASKS = [unaryF32.task, binaryF32.task, scalarF32.task, whereF32.task];

/**
 * Native unary map over `n` f32 elements.
 *
 * @param op The op.
 * @param x Input buffer.
 * @param out Output buffer.
 * @param n Elements.
 * @param rt The runtime.
 * @example
 * ```ts ignore
 * native: dtype === "f32" ? ([a, o], rt) => unaryNative(op, a!, o!, n, rt) : undefined
 * ```
 */
export function unaryNative(
  op: UnaryOp,
  x: ArrayBuffer,
  out: ArrayBuffer,
  n: number,
  rt: NativeRuntime,
): void {
  launch(rt, unaryF32, n, [x, out], [UNARY_OPS.indexOf(op)]);
}

/**
 * Native broadcasting binary op on f32.
 *
 * @param op The op.
 * @param l Collapsed layout (rank ≤ 8).
 * @param a First operand's buffer.
 * @param b Second operand's buffer.
 * @param out Output buffer.
 * @param rt The runtime.
 * @example
 * ```ts ignore
 * native: dtype === "f32" ? ([x, y, o], rt) => binaryNative(op, layout, x!, y!, o!, rt) : undefined
 * ```
 */
export function binaryNative(
  op: BinaryOp,
  l: BroadcastLayout,
  a: ArrayBuffer,
  b: ArrayBuffer,
  out: ArrayBuffer,
  rt: NativeRuntime,
): void {
  const rank = l.shape.length;
  let n = 1;
  for (const d of l.shape) n *= d;
  const params = new Array<number>(26).fill(0);
  params[0] = BINARY_OPS.indexOf(op);
  params[1] = rank;
  for (let k = 0; k < rank; k++) {
    params[2 + k] = l.shape[k]!;
    params[10 + k] = l.stridesA[k]!;
    params[18 + k] = l.stridesB[k]!;
  }
  launch(rt, binaryF32, n, [a, b, out], params);
}

/**
 * Native scalar-form binary op on f32: `op(x, s)`, or `op(s, x)` when `reversed`.
 *
 * @param op The op.
 * @param reversed Scalar on the left.
 * @param s The scalar.
 * @param x Input buffer.
 * @param out Output buffer.
 * @param n Elements.
 * @param rt The runtime.
 * @example
 * ```ts ignore
 * native: dtype === "f32" ? ([a, o], rt) => scalarNative(op, reversed, s, a!, o!, n, rt) : undefined
 * ```
 */
export function scalarNative(
  op: BinaryOp,
  reversed: boolean,
  s: number,
  x: ArrayBuffer,
  out: ArrayBuffer,
  n: number,
  rt: NativeRuntime,
): void {
  launch(rt, scalarF32, n, [x, out], [BINARY_OPS.indexOf(op), reversed ? 1 : 0, s]);
}

/** Code of a 4-byte condition dtype, or −1 when the native `where` does not handle it. */
export function whereCondCode(dtype: string): number {
  return dtype === "f32" ? 0 : dtype === "i32" ? 1 : dtype === "u32" ? 2 : -1;
}

/**
 * Native `where` over 4-byte data.
 *
 * @param condCode {@link whereCondCode} of the condition's dtype.
 * @param n Elements.
 * @param cstride Condition index divisor.
 * @param cmod Condition index modulus.
 * @param bufs `[cond, a, b, out]`.
 * @param rt The runtime.
 * @example
 * ```ts ignore
 * native: (bufs, rt) => whereNative(whereCondCode(condType), n, cstride, cmod, bufs, rt)
 * ```
 */
export function whereNative(
  condCode: number,
  n: number,
  cstride: number,
  cmod: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  launch(rt, whereF32, n, bufs, [condCode, cstride, Math.max(1, cmod)]);
}
