/**
 * Elementwise kernels: unary maps, binary maps with NumPy broadcasting, scalar forms, and
 * `where`. Each op is one table row holding its WGSL expression and its CPU twin, so the two
 * cannot drift apart. Floats compute in f32 (f16 storage is widened on load).
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { type DType, typedView } from "../src/core/dtype.ts";
import { broadcastStrides, type Shape, sizeOf } from "../src/core/shape.ts";
import { gridStride, WG } from "./common.ts";
import * as nat from "./native/elementwise.ts";
import { defineKernel } from "./spec.ts";

const fr = Math.fround;

/** A unary op: WGSL expression of `x` (an f32 or i32 value) and its CPU twin. */
export interface UnarySpec {
  /** WGSL expression of `x`. */
  wgsl: string;
  /** CPU twin. */
  cpu: (x: number) => number;
  /** Also defined on i32 (neg, abs); the rest need floats. */
  int?: boolean;
}

/** Name of a unary op. */
export type UnaryOp =
  | "neg"
  | "abs"
  | "exp"
  | "log"
  | "sqrt"
  | "rsqrt"
  | "square"
  | "relu"
  | "relu2"
  | "step"
  | "sigmoid"
  | "silu"
  | "tanh"
  | "sign";

/** Unary ops. `relu2` is the squared ReLU of Primer / Q-Sparse's FFN. */
export const UNARY: Record<UnaryOp, UnarySpec> = {
  neg: { wgsl: "-x", cpu: (x) => -x, int: true },
  abs: { wgsl: "abs(x)", cpu: Math.abs, int: true },
  exp: { wgsl: "exp(x)", cpu: (x) => Math.exp(x) },
  log: { wgsl: "log(x)", cpu: (x) => Math.log(x) },
  sqrt: { wgsl: "sqrt(x)", cpu: (x) => Math.sqrt(x) },
  rsqrt: { wgsl: "inverseSqrt(x)", cpu: (x) => 1 / Math.sqrt(x) },
  square: { wgsl: "x * x", cpu: (x) => x * x, int: true },
  relu: { wgsl: "select(0.0, x, x > 0.0)", cpu: (x) => (x > 0 ? x : 0) },
  relu2: { wgsl: "select(0.0, x * x, x > 0.0)", cpu: (x) => (x > 0 ? x * x : 0) },
  // Heaviside step (x > 0): the derivative of relu, used by autograd.
  step: { wgsl: "select(0.0, 1.0, x > 0.0)", cpu: (x) => (x > 0 ? 1 : 0) },
  sigmoid: { wgsl: "1.0 / (1.0 + exp(-x))", cpu: (x) => 1 / (1 + Math.exp(-x)) },
  silu: { wgsl: "x / (1.0 + exp(-x))", cpu: (x) => x / (1 + Math.exp(-x)) },
  // Clamped because some drivers compute tanh as (e^2x − 1)/(e^2x + 1), which is NaN at ±inf.
  tanh: {
    wgsl: "tanh(clamp(x, -15.0, 15.0))",
    cpu: (x) => Math.tanh(Math.max(-15, Math.min(15, x))),
  },
  sign: { wgsl: "sign(x)", cpu: (x) => (x > 0 ? 1 : x < 0 ? -1 : 0), int: true },
};

/** A binary op: WGSL expression of `a`, `b` and its CPU twin. */
export interface BinarySpec {
  /** WGSL expression of `a` and `b` (`Z`/`O` stand for typed 0 and 1). */
  wgsl: string;
  /** CPU twin. */
  cpu: (a: number, b: number) => number;
}

/** Name of a binary op. */
export type BinaryOp =
  | "add"
  | "sub"
  | "mul"
  | "div"
  | "maximum"
  | "minimum"
  | "pow"
  | "gt"
  | "ge"
  | "lt"
  | "eq"
  | "reluGrad"
  | "relu2Grad";

/** Binary ops. Comparisons return 1 or 0 in the operands' dtype. */
export const BINARY: Record<BinaryOp, BinarySpec> = {
  add: { wgsl: "a + b", cpu: (a, b) => a + b },
  sub: { wgsl: "a - b", cpu: (a, b) => a - b },
  mul: { wgsl: "a * b", cpu: (a, b) => a * b },
  div: { wgsl: "a / b", cpu: (a, b) => a / b },
  maximum: { wgsl: "max(a, b)", cpu: (a, b) => Math.max(a, b) },
  minimum: { wgsl: "min(a, b)", cpu: (a, b) => Math.min(a, b) },
  // WGSL pow(a, b) is exp2(b·log2(a)), undefined for a < 0: take |a| and restore the sign for
  // integer exponents (x³ of a negative x), as Math.pow does; non-integer b on a < 0 stays NaN.
  pow: {
    wgsl:
      "select(pow(a, b), pow(-a, b) * select(1.0, -1.0, fract(b * 0.5) == 0.5), a < 0.0 && fract(b) == 0.0)",
    cpu: (a, b) => Math.pow(a, b),
  },
  gt: { wgsl: "select(Z, O, a > b)", cpu: (a, b) => (a > b ? 1 : 0) },
  ge: { wgsl: "select(Z, O, a >= b)", cpu: (a, b) => (a >= b ? 1 : 0) },
  lt: { wgsl: "select(Z, O, a < b)", cpu: (a, b) => (a < b ? 1 : 0) },
  eq: { wgsl: "select(Z, O, a == b)", cpu: (a, b) => (a === b ? 1 : 0) },
  // Backward of relu / relu2 in one pass, `g = a` upstream and `x = b` the input: the same values
  // as the chains they replace (g·step(x), and g·(2·relu(x)); 2·x is exact), NaN inputs included.
  reluGrad: { wgsl: "a * select(0.0, 1.0, b > 0.0)", cpu: (a, b) => a * (b > 0 ? 1 : 0) },
  relu2Grad: { wgsl: "a * select(0.0, 2.0 * b, b > 0.0)", cpu: (a, b) => a * (b > 0 ? 2 * b : 0) },
};

/** Ops defined on integer dtypes (the rest need floats). */
export const INT_BINARY: ReadonlySet<BinaryOp> = new Set<BinaryOp>([
  "add",
  "sub",
  "mul",
  "div",
  "maximum",
  "minimum",
  "gt",
  "ge",
  "lt",
  "eq",
]);

/**
 * The WGSL type values of a storage dtype are computed in (f16 widens to f32).
 *
 * @param dtype The storage dtype.
 * @returns `"f32"`, `"i32"` or `"u32"`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { computeType } from "./elementwise.ts";
 * assert.equal(computeType("f16"), "f32");
 * assert.equal(computeType("u32"), "u32");
 * ```
 */
export function computeType(dtype: DType): "f32" | "i32" | "u32" {
  return dtype === "f16" ? "f32" : dtype;
}

/** Rounds a JS result to what storing into `dtype` would give. */
function storeFn(dtype: DType): (x: number) => number {
  if (dtype === "f32") return fr;
  if (dtype === "i32") return (x) => x | 0;
  if (dtype === "u32") return (x) => x >>> 0;
  return (x) => x; // Float16Array rounds on store.
}

/**
 * Rounds a JS number to the value storing it into `dtype` and loading it back gives (f16 as
 * well, where {@link storeFn} leaves the rounding to the Float16Array): what a fused kernel
 * keeps in a register so it computes on the same values as the unfused chain.
 *
 * @param dtype The storage dtype.
 * @returns The rounding function.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { roundTo } from "./elementwise.ts";
 * assert.equal(roundTo("f32")(0.1), Math.fround(0.1));
 * assert.equal(roundTo("f16")(1 / 3), Math.f16round(1 / 3));
 * assert.equal(roundTo("i32")(2 ** 31), -(2 ** 31));
 * ```
 */
export function roundTo(dtype: DType): (x: number) => number {
  return dtype === "f16" ? Math.f16round : storeFn(dtype);
}

/**
 * The WGSL expression of a unary op on `x` of `dtype`'s compute type (the kernels' one source).
 *
 * @param op The op.
 * @param dtype The storage dtype.
 * @returns The expression.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { unaryExpr } from "./elementwise.ts";
 * assert.equal(unaryExpr("relu", "f32"), "select(0.0, x, x > 0.0)");
 * assert.equal(unaryExpr("sign", "i32"), "sign(x)");
 * ```
 */
export function unaryExpr(op: UnaryOp, dtype: DType): string {
  return computeType(dtype) === "f32"
    ? UNARY[op].wgsl
    : UNARY[op].wgsl.replaceAll("0.0", "0").replaceAll("1.0", "1");
}

/**
 * The WGSL expression of a binary op on `a`, `b` of `dtype`'s compute type.
 *
 * @param op The op.
 * @param dtype The storage dtype.
 * @returns The expression.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { binaryExpr } from "./elementwise.ts";
 * assert.equal(binaryExpr("gt", "f32"), "select(0.0, 1.0, a > b)");
 * assert.equal(binaryExpr("gt", "i32"), "select(i32(0), i32(1), a > b)");
 * ```
 */
export function binaryExpr(op: BinaryOp, dtype: DType): string {
  const ct = computeType(dtype);
  const one = ct === "f32" ? "1.0" : `${ct}(1)`, zero = ct === "f32" ? "0.0" : `${ct}(0)`;
  return BINARY[op].wgsl.replace("Z", zero).replace("O", one);
}

/**
 * The CPU twin of a binary op on `dtype` (integer division and products as WGSL defines them).
 *
 * @param op The op.
 * @param dtype The storage dtype.
 * @returns `(a, b) => result`, before rounding to the dtype.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { binaryFn } from "./elementwise.ts";
 * assert.equal(binaryFn("div", "i32")(7, 0), 7);
 * assert.equal(binaryFn("div", "f32")(7, 2), 3.5);
 * ```
 */
export function binaryFn(op: BinaryOp, dtype: DType): (a: number, b: number) => number {
  return intCpu(op, dtype) ?? BINARY[op].cpu;
}

/** Integer division and ops on i32/u32 as WGSL defines them (truncating, b = 0 gives a). */
function intCpu(op: BinaryOp, dtype: DType): ((a: number, b: number) => number) | null {
  if (dtype === "f32" || dtype === "f16") return null;
  const wrap = dtype === "i32" ? (x: number) => x | 0 : (x: number) => x >>> 0;
  if (op === "div") return (a, b) => (b === 0 ? a : wrap(Math.trunc(a / b)));
  if (op === "mul") {
    return (a, b) => wrap(dtype === "i32" ? Math.imul(a, b) : Math.imul(a, b) >>> 0);
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Unary

const UNARY_MAP = defineKernel({
  name: "unary",
  bindings: [
    { name: "xs", type: "T", access: "read" },
    { name: "out", type: "T", access: "read_write" },
  ],
  params: { n: "u32" },
});

/** WGSL for a unary map over `dtype`. */
export function unaryWgsl(op: UnaryOp, dtype: DType): string {
  const ct = computeType(dtype);
  const expr = unaryExpr(op, dtype);
  return `${UNARY_MAP.header({ types: { T: dtype } })}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < p.n; i = i + stride) {
    let x = ${ct}(xs[i]);
    out[i] = ${dtype}(${expr});
  }
}`;
}

/** CPU twin of {@link unaryWgsl}. */
export function unaryCpu(
  op: UnaryOp,
  dtype: DType,
  x: ArrayBuffer,
  out: ArrayBuffer,
  n: number,
): void {
  const a = typedView(dtype, x, n), o = typedView(dtype, out, n);
  const f = UNARY[op].cpu, st = storeFn(dtype);
  for (let i = 0; i < n; i++) o[i] = st(f(a[i]!));
}

/** Dispatch of a unary map over `n` elements. */
export function unaryDispatch(
  op: UnaryOp,
  dtype: DType,
  x: Storage,
  out: Storage,
  n: number,
): Dispatch {
  return {
    op,
    key: UNARY_MAP.key(op, dtype),
    wgsl: () => unaryWgsl(op, dtype),
    cpu: ([a, o]) => unaryCpu(op, dtype, a!, o!, n),
    native: dtype === "f32" ? ([a, o], rt) => nat.unaryNative(op, a!, o!, n, rt) : undefined,
    buffers: [x, out],
    uniforms: UNARY_MAP.uniforms({ n }),
    workgroups: gridStride(n),
  };
}

// ---------------------------------------------------------------------------------------------
// Binary with broadcasting

/** Max rank of a broadcasting binary op (shapes are collapsed first, so this rarely binds). */
export const MAX_RANK = 8;

/** Broadcast layout: output shape and each input's strides (0 on broadcast dims), collapsed. */
export interface BroadcastLayout {
  shape: number[];
  stridesA: number[];
  stridesB: number[];
}

/**
 * Collapses adjacent dims that are contiguous in the output and in both inputs, so
 * `[8, 16, 32] + [32]` becomes a rank-2 loop and equal shapes become rank 1.
 */
export function broadcastLayout(a: Shape, b: Shape, out: Shape): BroadcastLayout {
  const sa = broadcastStrides(a, out), sb = broadcastStrides(b, out);
  const shape: number[] = [], stA: number[] = [], stB: number[] = [];
  for (let i = 0; i < out.length; i++) {
    const d = out[i]!;
    if (d === 1) continue;
    const k = shape.length - 1;
    if (
      k >= 0 && stA[k] === sa[i]! * d && stB[k] === sb[i]! * d
    ) {
      shape[k] = shape[k]! * d;
      stA[k] = sa[i]!;
      stB[k] = sb[i]!;
    } else {
      shape.push(d);
      stA.push(sa[i]!);
      stB.push(sb[i]!);
    }
  }
  if (shape.length === 0) return { shape: [1], stridesA: [0], stridesB: [0] };
  return { shape, stridesA: stA, stridesB: stB };
}

const BINARY_MAP = defineKernel({
  name: "binary",
  bindings: [
    { name: "xa", type: "T", access: "read" },
    { name: "xb", type: "T", access: "read" },
    { name: "out", type: "T", access: "read_write" },
  ],
  // Dims and strides past the rank are never read; `shape`, `sa` and `sb` hold MAX_RANK each.
  params: {
    n: "u32",
    sa0: "u32",
    sb0: "u32",
    shape: "array<vec4u, 2>",
    sa: "array<vec4u, 2>",
    sb: "array<vec4u, 2>",
  },
});

/** WGSL for a broadcasting binary op of `rank` (after collapsing). */
export function binaryWgsl(op: BinaryOp, dtype: DType, rank: number): string {
  const ct = computeType(dtype);
  const expr = binaryExpr(op, dtype);
  const contiguous = rank === 1;
  const index = contiguous
    ? "let ia = i * p.sa0; let ib = i * p.sb0;"
    : `var rem = i; var ia = 0u; var ib = 0u;
    for (var d = ${rank - 1}; d >= 0; d = d - 1) {
      let dim = p.shape[d / 4][d % 4];
      let c = rem % dim; rem = rem / dim;
      ia = ia + c * p.sa[d / 4][d % 4];
      ib = ib + c * p.sb[d / 4][d % 4];
    }`;
  return `${BINARY_MAP.header({ types: { T: dtype } })}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < p.n; i = i + stride) {
    ${index}
    let a = ${ct}(xa[ia]);
    let b = ${ct}(xb[ib]);
    out[i] = ${dtype}(${expr});
  }
}`;
}

/** CPU twin of {@link binaryWgsl}. */
export function binaryCpu(
  op: BinaryOp,
  dtype: DType,
  layout: BroadcastLayout,
  xa: ArrayBuffer,
  xb: ArrayBuffer,
  out: ArrayBuffer,
): void {
  const n = sizeOf(layout.shape);
  const a = typedView(dtype, xa), b = typedView(dtype, xb), o = typedView(dtype, out, n);
  const f = binaryFn(op, dtype), st = storeFn(dtype);
  const { shape, stridesA, stridesB } = layout;
  const rank = shape.length;
  if (rank === 1) {
    const s0 = stridesA[0]!, s1 = stridesB[0]!;
    for (let i = 0; i < n; i++) o[i] = st(f(a[i * s0]!, b[i * s1]!));
    return;
  }
  for (let i = 0; i < n; i++) {
    let rem = i, ia = 0, ib = 0;
    for (let d = rank - 1; d >= 0; d--) {
      const dim = shape[d]!;
      const c = rem % dim;
      rem = (rem - c) / dim;
      ia += c * stridesA[d]!;
      ib += c * stridesB[d]!;
    }
    o[i] = st(f(a[ia]!, b[ib]!));
  }
}

/** Dispatch of a broadcasting binary op. */
export function binaryDispatch(
  op: BinaryOp,
  dtype: DType,
  layout: BroadcastLayout,
  a: Storage,
  b: Storage,
  out: Storage,
): Dispatch {
  const rank = layout.shape.length;
  const n = sizeOf(layout.shape);
  const padTo8 = (xs: number[], fill: number) => [...xs, ...new Array(8 - xs.length).fill(fill)];
  const words = BINARY_MAP.uniforms({
    n,
    sa0: layout.stridesA[0]!,
    sb0: layout.stridesB[0]!,
    shape: padTo8(layout.shape, 1),
    sa: padTo8(layout.stridesA, 0),
    sb: padTo8(layout.stridesB, 0),
  });
  return {
    op,
    key: BINARY_MAP.key(op, dtype, rank === 1 ? "flat" : `r${rank}`),
    wgsl: () => binaryWgsl(op, dtype, rank),
    cpu: ([x, y, o]) => binaryCpu(op, dtype, layout, x!, y!, o!),
    native: dtype === "f32" && rank <= MAX_RANK
      ? ([x, y, o], rt) => nat.binaryNative(op, layout, x!, y!, o!, rt)
      : undefined,
    buffers: [a, b, out],
    uniforms: words,
    workgroups: gridStride(n),
  };
}

// ---------------------------------------------------------------------------------------------
// Scalar forms: op(x, s) or op(s, x) with s in the uniform block (no broadcast buffer needed)

const SCALAR_MAP = defineKernel({
  name: "scalar",
  bindings: [
    { name: "xs", type: "T", access: "read" },
    { name: "out", type: "T", access: "read_write" },
  ],
  params: { n: "u32", s: "f32" },
});

/** WGSL for `op(x, s)` (or `op(s, x)` when `reversed`) on floats. */
export function scalarWgsl(op: BinaryOp, dtype: DType, reversed: boolean): string {
  const expr = BINARY[op].wgsl.replace("Z", "0.0").replace("O", "1.0");
  return `${SCALAR_MAP.header({ types: { T: dtype } })}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < p.n; i = i + stride) {
    let ${reversed ? "b" : "a"} = f32(xs[i]);
    let ${reversed ? "a" : "b"} = p.s;
    out[i] = ${dtype}(${expr});
  }
}`;
}

/** CPU twin of {@link scalarWgsl}. */
export function scalarCpu(
  op: BinaryOp,
  dtype: DType,
  reversed: boolean,
  s: number,
  x: ArrayBuffer,
  out: ArrayBuffer,
  n: number,
): void {
  const a = typedView(dtype, x, n), o = typedView(dtype, out, n);
  const f = BINARY[op].cpu, st = storeFn(dtype), sf = fr(s);
  for (let i = 0; i < n; i++) o[i] = st(reversed ? f(sf, a[i]!) : f(a[i]!, sf));
}

/** Dispatch of a scalar-form binary op on a float tensor. */
export function scalarDispatch(
  op: BinaryOp,
  dtype: DType,
  reversed: boolean,
  s: number,
  x: Storage,
  out: Storage,
  n: number,
): Dispatch {
  return {
    op: `${op}Scalar`,
    key: SCALAR_MAP.key(op, dtype, reversed ? "r" : "f"),
    wgsl: () => scalarWgsl(op, dtype, reversed),
    cpu: ([a, o]) => scalarCpu(op, dtype, reversed, s, a!, o!, n),
    native: dtype === "f32"
      ? ([a, o], rt) => nat.scalarNative(op, reversed, s, a!, o!, n, rt)
      : undefined,
    buffers: [x, out],
    uniforms: SCALAR_MAP.uniforms({ n, s }),
    workgroups: gridStride(n),
  };
}

// ---------------------------------------------------------------------------------------------
// where(cond, a, b) with broadcasting of cond against a same-shaped (a, b) pair

const WHERE = defineKernel({
  name: "where",
  bindings: [
    { name: "cond", type: "C", access: "read" },
    { name: "xa", type: "T", access: "read" },
    { name: "xb", type: "T", access: "read" },
    { name: "out", type: "T", access: "read_write" },
  ],
  params: { n: "u32", cstride: "u32", cmod: "u32" },
});

/** WGSL for `cond != 0 ? a : b`; `cond` is broadcast by the row length `m` (cond index i % m / k). */
export function whereWgsl(condType: DType, dtype: DType): string {
  return `${WHERE.header({ types: { C: condType, T: dtype } })}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < p.n; i = i + stride) {
    let c = cond[(i / p.cstride) % p.cmod];
    out[i] = select(xb[i], xa[i], c != ${condType}(0));
  }
}`;
}

/** CPU twin of {@link whereWgsl}. */
export function whereCpu(
  condType: DType,
  dtype: DType,
  n: number,
  cstride: number,
  cmod: number,
  cond: ArrayBuffer,
  xa: ArrayBuffer,
  xb: ArrayBuffer,
  out: ArrayBuffer,
): void {
  const c = typedView(condType, cond), a = typedView(dtype, xa, n), b = typedView(dtype, xb, n);
  const o = typedView(dtype, out, n);
  for (let i = 0; i < n; i++) o[i] = c[Math.floor(i / cstride) % cmod] !== 0 ? a[i]! : b[i]!;
}

/**
 * Dispatch of `where`. The condition is indexed as `cond[(i / cstride) % cmod]`, which covers
 * a full-shape condition (1, n), a per-row one (D, rows) and a per-column one (1, D).
 */
export function whereDispatch(
  condType: DType,
  dtype: DType,
  n: number,
  cstride: number,
  cmod: number,
  cond: Storage,
  a: Storage,
  b: Storage,
  out: Storage,
): Dispatch {
  return {
    op: "where",
    key: WHERE.key(condType, dtype),
    wgsl: () => whereWgsl(condType, dtype),
    cpu: ([c, x, y, o]) => whereCpu(condType, dtype, n, cstride, cmod, c!, x!, y!, o!),
    native: dtype !== "f16" && nat.whereCondCode(condType) >= 0
      ? (bufs, rt) => nat.whereNative(nat.whereCondCode(condType), n, cstride, cmod, bufs, rt)
      : undefined,
    buffers: [cond, a, b, out],
    uniforms: WHERE.uniforms({ n, cstride, cmod: Math.max(1, cmod) }),
    workgroups: gridStride(n),
  };
}
