/**
 * Reductions along the last dim (sum, sum of squares, mean, max with its index) and over all
 * elements, plus the row geometry every row-wise kernel in the kit shares (softmax, RMSNorm,
 * cross-entropy).
 *
 * Row geometry: a workgroup of {@link ROW_WG} invocations is split into groups of `lanes`
 * invocations (a power of two); each group owns one row, strides over it, and combines its
 * lanes with a shared-memory tree. Long rows (8192+) get 256 lanes and one row per workgroup;
 * short rows get few lanes and many rows per workgroup, down to one invocation per row, so a
 * `[100000, 4]` reduction does not leave 252 of every 256 invocations idle. The workgroup loops
 * over rows (grid stride) so any row count fits the dispatch limit.
 *
 * The all-element reduction is two passes over the same kernel: contiguous chunks into at most
 * 256 f32 partials, then one row over the partials. It is deterministic: the same input gives
 * the same bits on every run.
 *
 * NaN and ties follow PyTorch: `max`/`argmax` treat NaN as larger than every number (the first
 * NaN wins), and equal values resolve to the lowest index. NaN is detected from the bits, since
 * `x != x` may be folded away by a shader compiler.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { type DType, typedView } from "../src/core/dtype.ts";
import { gridStride, WG } from "./common.ts";
import { argScatterNative, NO_INDEX, rowReduceNative } from "./native/reduce.ts";
import { defineKernel } from "./spec.ts";

export { NO_INDEX };

/** Invocations per workgroup of every row-wise kernel. */
export const ROW_WG = 256;

/**
 * Lanes per row: about one lane per 8 elements, a power of two in [1, {@link ROW_WG}].
 *
 * @param cols Row length.
 * @returns The lane count.
 */
export function rowLanes(cols: number): number {
  const want = Math.ceil(cols / 8);
  let l = 1;
  while (l < want && l < ROW_WG) l <<= 1;
  return l;
}

/**
 * Workgroup count for `rows` rows at `lanes` lanes per row (capped: workgroups loop over rows).
 *
 * @param rows Row count.
 * @param lanes Lanes per row.
 * @param cap Most workgroups to launch.
 * @returns The dispatch size.
 */
export function rowGroups(rows: number, lanes: number, cap = 4096): [number, number, number] {
  return [Math.max(1, Math.min(Math.ceil(rows / (ROW_WG / lanes)), cap)), 1, 1];
}

/** Entry-point parameters of row-wise kernels. */
export const ROW_ARGS =
  "@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u, @builtin(local_invocation_index) lid: u32";

/**
 * Opens the row loop: defines `lane`, `sub`, and inside the loop `row` and `live` (row < p.rows).
 * The loop bounds depend only on workgroup-uniform values, so barriers inside it are legal.
 * Close it with `}`.
 *
 * @param lanes Lanes per row.
 * @returns WGSL.
 */
export function rowLoopOpen(lanes: number): string {
  const r = ROW_WG / lanes;
  return `let lane = lid % ${lanes}u;
  let sub = lid / ${lanes}u;
  for (var base = wid.x * ${r}u; base < p.rows; base = base + nwg.x * ${r}u) {
    let row = base + sub;
    let live = row < p.rows;`;
}

/**
 * Unrolled tree over the lanes of each row: `combine(s)` merges slot `lid + s` into slot `lid`
 * for `s = lanes/2 … 1`, with a barrier after every step.
 *
 * @param lanes Lanes per row.
 * @param combine WGSL of one merge step.
 * @returns WGSL.
 */
export function treeSteps(lanes: number, combine: (s: number) => string): string {
  let out = "";
  for (let s = lanes >> 1; s >= 1; s >>= 1) {
    out += `    if (lane < ${s}u) { ${combine(s)} }\n    workgroupBarrier();\n`;
  }
  return out;
}

/**
 * Sums `value` over the lanes of each row and binds the total to `result` in every lane.
 * The trailing barrier lets the shared array be reused by the next row or reduction.
 *
 * @param lanes Lanes per row.
 * @param arr A `var<workgroup>` array of {@link ROW_WG} elements of the value's type.
 * @param value WGSL expression to sum.
 * @param result Name of the `let` that receives the total.
 * @returns WGSL.
 */
export function laneSum(lanes: number, arr: string, value: string, result: string): string {
  if (lanes === 1) return `let ${result} = ${value};`;
  return `${arr}[lid] = ${value};
    workgroupBarrier();
${
    treeSteps(lanes, (s) =>
      `${arr}[lid] = ${arr}[lid] + ${arr}[lid + ${s}u];`)
  }    let ${result} = ${arr}[sub * ${lanes}u];
    workgroupBarrier();`;
}

/**
 * WGSL helpers: NaN test from the bits, −∞ and NaN (functions: naga has no const `bitcast`),
 * and the max/argmax order.
 */
export const WGSL_FLOAT_HELPERS = `
fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
fn neg_inf() -> f32 { return bitcast<f32>(0xff800000u); }
fn nan_f32() -> f32 { return bitcast<f32>(0x7fc00000u); }
// True when (bv, bi) ranks above (av, ai): NaN above numbers, then larger values, then lower index.
fn beats(av: f32, ai: u32, bv: f32, bi: u32) -> bool {
  let an = is_nan(av);
  let bn = is_nan(bv);
  if (an != bn) { return bn; }
  if (an || bv == av) { return bi < ai; }
  return bv > av;
}`;

/** JS twin of the WGSL `beats`: does (bv, bi) rank above (av, ai)? */
export function beats(av: number, ai: number, bv: number, bi: number): boolean {
  const an = Number.isNaN(av), bn = Number.isNaN(bv);
  if (an !== bn) return bn;
  if (an || bv === av) return bi < ai;
  return bv > av;
}

/**
 * Combines each row's lanes' `(bv, bi)` (value, index) into the row's maximum by
 * {@link beats}' order, left in `bv`, `bi` of every lane; needs `var<workgroup>` arrays `sv`
 * (f32) and `si` (u32) of {@link ROW_WG} elements. After the last step each lane reads only its
 * own slot, which is all it writes first for the next row, so no closing barrier is needed.
 *
 * @param lanes Lanes per row.
 * @returns WGSL.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { maxLaneTree } from "./reduce.ts";
 * assert.equal(maxLaneTree(1), ""); // one lane per row: nothing to combine
 * assert.equal(maxLaneTree(8).match(/workgroupBarrier/g)!.length, 4); // the store, then 3 steps
 * ```
 */
export function maxLaneTree(lanes: number): string {
  if (lanes === 1) return "";
  return `sv[lid] = bv;
    si[lid] = bi;
    workgroupBarrier();
${
    treeSteps(
      lanes,
      (st) =>
        `if (beats(sv[lid], si[lid], sv[lid + ${st}u], si[lid + ${st}u])) { sv[lid] = sv[lid + ${st}u]; si[lid] = si[lid + ${st}u]; }`,
    )
  }    bv = sv[lid];
    bi = si[lid];`;
}

/** What one row-reduction kernel computes. */
export interface RowReduceSpec {
  /** `sum` (optionally of squares, scaled) or `max` (value and/or index). */
  kind: "sum" | "max";
  /** Sum `x²` instead of `x`. */
  square: boolean;
  /** Storage dtype of the input. */
  inType: DType;
  /** Storage dtype of the values output. */
  outType: DType;
  /** Lanes per row ({@link rowLanes}). */
  lanes: number;
  /** `max`: write the values. Always true for `sum`. */
  values: boolean;
  /** `max`: write the (u32) indices. */
  indices: boolean;
  /**
   * `max`, second pass of an all-element argmax: element i's index is
   * `ixs[i] + i·istride` from an extra u32 input instead of its position.
   */
  indexIn: boolean;
}

/**
 * Runtime parameters. Row r covers elements `[r·cols, min(r·cols + cols, n))`, so the last
 * chunk of an all-element pass may be short. Sums are multiplied by `scale` (1/cols for a mean).
 */
export interface RowReduceParams {
  rows: number;
  cols: number;
  n: number;
  scale: number;
  istride: number;
}

const REDUCE = defineKernel({
  name: "reduce",
  bindings: [
    { name: "xs", type: "I", access: "read" },
    { name: "ixs", type: "u32", access: "read", optional: true },
    { name: "out", type: "O", access: "read_write", optional: true },
    { name: "oidx", type: "u32", access: "read_write", optional: true },
  ],
  params: { rows: "u32", cols: "u32", n: "u32", scale: "f32", istride: "u32" },
});

/** WGSL of a row reduction. */
export function rowReduceWgsl(s: RowReduceSpec): string {
  const L = s.lanes;
  const omit = [
    ...(s.indexIn ? [] : ["ixs"]),
    ...(s.values ? [] : ["out"]),
    ...(s.indices ? [] : ["oidx"]),
  ];
  const head = `${REDUCE.header({ types: { I: s.inType, O: s.outType }, omit })}
${WGSL_FLOAT_HELPERS}
`;
  const rowRange = `let start = row * p.cols;
      let end = min(start + p.cols, p.n);`;
  if (s.kind === "sum") {
    const v = s.square ? "v * v" : "v";
    return `${head}var<workgroup> sv: array<f32, ${ROW_WG}>;
@compute @workgroup_size(${ROW_WG})
fn main(${ROW_ARGS}) {
  ${rowLoopOpen(L)}
    var acc = 0.0;
    if (live) {
      ${rowRange}
      for (var i = start + lane; i < end; i = i + ${L}u) {
        let v = f32(xs[i]);
        acc = acc + ${v};
      }
    }
    ${laneSum(L, "sv", "acc", "total")}
    if (live && lane == 0u) { out[row] = ${s.outType}(total * p.scale); }
  }
}`;
  }
  const idx = s.indexIn
    ? "select(ixs[i] + (i - start) * p.istride, 0xffffffffu, ixs[i] == 0xffffffffu)"
    : "i - start";
  const tree = maxLaneTree(L);
  let store = "";
  if (s.values) store += `out[row] = ${s.outType}(bv); `;
  if (s.indices) store += "oidx[row] = bi;";
  return `${head}var<workgroup> sv: array<f32, ${ROW_WG}>;
var<workgroup> si: array<u32, ${ROW_WG}>;
@compute @workgroup_size(${ROW_WG})
fn main(${ROW_ARGS}) {
  ${rowLoopOpen(L)}
    var bv = neg_inf();
    var bi = 0xffffffffu;
    if (live) {
      ${rowRange}
      for (var i = start + lane; i < end; i = i + ${L}u) {
        let v = f32(xs[i]);
        let j = ${idx};
        if (beats(bv, bi, v, j)) { bv = v; bi = j; }
      }
    }
    ${tree}
    if (live && lane == 0u) { ${store} }
  }
}`;
}

/**
 * CPU twin of {@link rowReduceWgsl}. Buffers in binding order: x, [ixs], [values], [indices].
 * Sums accumulate in f64.
 */
export function rowReduceCpu(s: RowReduceSpec, p: RowReduceParams, bufs: ArrayBuffer[]): void {
  let k = 0;
  const x = typedView(s.inType, bufs[k++]!);
  const ixs = s.indexIn ? new Uint32Array(bufs[k++]!) : null;
  const out = s.values ? typedView(s.outType, bufs[k++]!, p.rows) : null;
  const oidx = s.indices ? new Uint32Array(bufs[k++]!, 0, p.rows) : null;
  const scale = Math.fround(p.scale);
  for (let r = 0; r < p.rows; r++) {
    const start = r * p.cols, end = Math.min(start + p.cols, p.n);
    if (s.kind === "sum") {
      let acc = 0;
      for (let i = start; i < end; i++) {
        const v = x[i]!;
        acc += s.square ? v * v : v;
      }
      out![r] = Math.fround(acc) * scale;
      continue;
    }
    let bv = -Infinity, bi = NO_INDEX;
    for (let i = start; i < end; i++) {
      let j = i - start;
      if (ixs) j = ixs[i]! === NO_INDEX ? NO_INDEX : (ixs[i]! + j * p.istride) >>> 0;
      if (beats(bv, bi, x[i]!, j)) {
        bv = x[i]!;
        bi = j;
      }
    }
    if (out) out[r] = bv;
    if (oidx) oidx[r] = bi;
  }
}

/**
 * Dispatch of a row reduction.
 *
 * @param op Op name (errors, profiling).
 * @param s What to compute.
 * @param p Sizes and scale.
 * @param buffers Storages in binding order: x, [ixs], [values], [indices].
 * @returns The dispatch.
 */
export function rowReduceDispatch(
  op: string,
  s: RowReduceSpec,
  p: RowReduceParams,
  buffers: Storage[],
): Dispatch {
  const flags = `${s.kind}${s.square ? "2" : ""}:${s.inType}:${s.outType}:L${s.lanes}:` +
    `${s.values ? "v" : ""}${s.indices ? "i" : ""}${s.indexIn ? "x" : ""}`;
  return {
    op,
    key: REDUCE.key(flags),
    wgsl: () => rowReduceWgsl(s),
    cpu: (bufs) => rowReduceCpu(s, p, bufs),
    native: s.inType === "f32" && s.outType === "f32"
      ? (bufs, rt) => rowReduceNative(s, p, bufs, rt)
      : undefined,
    buffers,
    uniforms: REDUCE.uniforms({
      rows: p.rows,
      cols: p.cols,
      n: p.n,
      scale: p.scale,
      istride: p.istride,
    }),
    workgroups: rowGroups(p.rows, s.lanes),
  };
}

/** Elements up to which an all-element reduction runs as one row (one dispatch). */
export const SINGLE_PASS_MAX = 8192;

/**
 * Chunking of a two-pass all-element reduction: `parts` chunks of `chunk` elements
 * (the last may be short), each reduced to one f32 partial.
 *
 * @param n Element count.
 * @returns The chunk length and the number of partials (≤ 256).
 */
export function allReducePlan(n: number): { chunk: number; parts: number } {
  const chunk = Math.max(2048, Math.ceil(n / ROW_WG));
  return { chunk, parts: Math.ceil(n / chunk) };
}

// ---------------------------------------------------------------------------------------------
// Gradient of max: route each row's upstream gradient to the row's argmax element

const ARG_SCATTER = defineKernel({
  name: "argScatter",
  bindings: [
    { name: "g", type: "T", access: "read" },
    { name: "idx", type: "u32", access: "read" },
    { name: "out", type: "T", access: "read_write" },
  ],
  params: { n: "u32", cols: "u32" },
});

/** WGSL of `out[r, j] = j == idx[r] ? g[r] : 0`. */
export function argScatterWgsl(dtype: DType): string {
  return `${ARG_SCATTER.header({ types: { T: dtype } })}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < p.n; i = i + stride) {
    let r = i / p.cols;
    out[i] = select(${dtype}(0), g[r], i - r * p.cols == idx[r]);
  }
}`;
}

/** CPU twin of {@link argScatterWgsl}. */
export function argScatterCpu(
  dtype: DType,
  n: number,
  cols: number,
  g: ArrayBuffer,
  idx: ArrayBuffer,
  out: ArrayBuffer,
): void {
  const gv = typedView(dtype, g), iv = new Uint32Array(idx), o = typedView(dtype, out, n);
  for (let i = 0; i < n; i++) {
    const r = Math.floor(i / cols);
    o[i] = i - r * cols === iv[r] ? gv[r]! : 0;
  }
}

/** Dispatch of the argmax scatter over `n = rows·cols` elements. */
export function argScatterDispatch(
  dtype: DType,
  n: number,
  cols: number,
  g: Storage,
  idx: Storage,
  out: Storage,
): Dispatch {
  return {
    op: "maxBackward",
    key: ARG_SCATTER.key(dtype),
    wgsl: () => argScatterWgsl(dtype),
    cpu: ([a, b, c]) => argScatterCpu(dtype, n, cols, a!, b!, c!),
    native: dtype === "f32" ? (bufs, rt) => argScatterNative(n, cols, bufs, rt) : undefined,
    buffers: [g, idx, out],
    uniforms: ARG_SCATTER.uniforms({ n, cols }),
    workgroups: gridStride(n),
  };
}
