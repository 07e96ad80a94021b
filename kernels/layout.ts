/**
 * Data movement: strided row copies (behind `slice` and `concat` on any dim), transpose of the
 * last two dims, and `sumTo` (the reduction that undoes a broadcast, used by autograd).
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { type DType, typedView } from "../src/core/dtype.ts";
import { gridStride, WG } from "./common.ts";
import { rowCopyNative, sumToNative, transposeNative } from "./native/layout.ts";
import { defineKernel } from "./spec.ts";

/**
 * A copy of `rows` rows of `cols` elements: `dst[r·dstStride + dstOff + j] = src[r·srcStride + srcOff + j]`.
 * With the tensor viewed as `[outer, inner]` around a dim, this is slicing and concatenation.
 */
export interface RowCopy {
  rows: number;
  cols: number;
  srcStride: number;
  srcOff: number;
  dstStride: number;
  dstOff: number;
}

const ROW_COPY = defineKernel({
  name: "rowcopy",
  bindings: [
    { name: "src", type: "T", access: "read" },
    { name: "dst", type: "T", access: "read_write" },
  ],
  // `do` is a WGSL keyword.
  params: { rows: "u32", cols: "u32", ss: "u32", so: "u32", ds: "u32", do_: "u32" },
});

/** WGSL of a strided row copy. */
export function rowCopyWgsl(dtype: DType): string {
  return `${ROW_COPY.header({ types: { T: dtype } })}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  let n = p.rows * p.cols;
  for (var i = gid.x; i < n; i = i + stride) {
    let r = i / p.cols;
    let j = i - r * p.cols;
    dst[r * p.ds + p.do_ + j] = src[r * p.ss + p.so + j];
  }
}`;
}

/** CPU twin of {@link rowCopyWgsl}. */
export function rowCopyCpu(dtype: DType, c: RowCopy, src: ArrayBuffer, dst: ArrayBuffer): void {
  const s = typedView(dtype, src), d = typedView(dtype, dst);
  for (let r = 0; r < c.rows; r++) {
    const so = r * c.srcStride + c.srcOff, dO = r * c.dstStride + c.dstOff;
    d.set(s.subarray(so, so + c.cols), dO);
  }
}

/** Dispatch of a strided row copy. */
export function rowCopyDispatch(
  op: string,
  dtype: DType,
  c: RowCopy,
  src: Storage,
  dst: Storage,
): Dispatch {
  const n = c.rows * c.cols;
  return {
    op,
    key: ROW_COPY.key(dtype),
    wgsl: () => rowCopyWgsl(dtype),
    cpu: ([s, d]) => rowCopyCpu(dtype, c, s!, d!),
    native: ([s, d], rt) => rowCopyNative(dtype === "f16" ? 2 : 4, c, s!, d!, rt),
    buffers: [src, dst],
    uniforms: ROW_COPY.uniforms({
      rows: c.rows,
      cols: c.cols,
      ss: c.srcStride,
      so: c.srcOff,
      ds: c.dstStride,
      do_: c.dstOff,
    }),
    workgroups: gridStride(n),
  };
}

const TT = 16;

const TRANSPOSE = defineKernel({
  name: "transpose",
  bindings: [
    { name: "src", type: "T", access: "read" },
    { name: "dst", type: "T", access: "read_write" },
  ],
  params: { rows: "u32", cols: "u32", batch: "u32" },
});

/** WGSL of a batched transpose `[b, r, c] → [b, c, r]` through a 16×16 workgroup tile. */
export function transposeWgsl(dtype: DType): string {
  return `${TRANSPOSE.header({ types: { T: dtype } })}
var<workgroup> tile: array<array<${dtype}, ${TT + 1}>, ${TT}>;
@compute @workgroup_size(${TT}, ${TT})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let base = wid.z * p.rows * p.cols;
  let r = wid.y * ${TT}u + lid.y;
  let c = wid.x * ${TT}u + lid.x;
  if (r < p.rows && c < p.cols) { tile[lid.y][lid.x] = src[base + r * p.cols + c]; }
  workgroupBarrier();
  let orow = wid.x * ${TT}u + lid.y;
  let ocol = wid.y * ${TT}u + lid.x;
  if (orow < p.cols && ocol < p.rows) { dst[base + orow * p.rows + ocol] = tile[lid.x][lid.y]; }
}`;
}

/** CPU twin of {@link transposeWgsl}. */
export function transposeCpu(
  dtype: DType,
  batch: number,
  rows: number,
  cols: number,
  src: ArrayBuffer,
  dst: ArrayBuffer,
): void {
  const s = typedView(dtype, src), d = typedView(dtype, dst);
  for (let b = 0; b < batch; b++) {
    const base = b * rows * cols;
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) d[base + c * rows + r] = s[base + r * cols + c]!;
    }
  }
}

/** Dispatch of a batched transpose of the last two dims. */
export function transposeDispatch(
  dtype: DType,
  batch: number,
  rows: number,
  cols: number,
  src: Storage,
  dst: Storage,
): Dispatch {
  return {
    op: "transpose",
    key: TRANSPOSE.key(dtype),
    wgsl: () => transposeWgsl(dtype),
    cpu: ([s, d]) => transposeCpu(dtype, batch, rows, cols, s!, d!),
    native: ([s, d], rt) => transposeNative(dtype === "f16" ? 2 : 4, batch, rows, cols, s!, d!, rt),
    buffers: [src, dst],
    uniforms: TRANSPOSE.uniforms({ rows, cols, batch }),
    workgroups: [Math.ceil(cols / TT), Math.ceil(rows / TT), batch],
  };
}

/**
 * `sumTo` layout: the input viewed as `[outer, mid, inner]`-style blocks is summed over the dims
 * where the target has size 1. Described generally: `outShape`/`outStrides` address the output,
 * `inStrides` map each output coordinate into the input, and `redShape`/`redStrides` enumerate
 * the reduced positions.
 */
export interface SumToLayout {
  outSize: number;
  outShape: number[];
  inStrides: number[];
  redShape: number[];
  redStrides: number[];
}

/** Max dims of a `sumTo` (after dropping size-1 dims). */
export const SUMTO_MAX_RANK = 8;

/**
 * Builds the `sumTo` layout reducing `from` to `to` (`to` broadcasts to `from`).
 *
 * @param from Input shape.
 * @param to Target shape (same rank or fewer dims, each 1 or equal).
 * @returns The layout.
 */
export function sumToLayout(from: readonly number[], to: readonly number[]): SumToLayout {
  const rank = from.length;
  const t = [...new Array(rank - to.length).fill(1), ...to];
  const inStr: number[] = new Array(rank);
  let acc = 1;
  for (let i = rank - 1; i >= 0; i--) {
    inStr[i] = acc;
    acc *= from[i]!;
  }
  const outShape: number[] = [],
    inStrides: number[] = [],
    redShape: number[] = [],
    redStrides: number[] = [];
  for (let i = 0; i < rank; i++) {
    if (from[i] === 1) continue;
    if (t[i] === 1) {
      redShape.push(from[i]!);
      redStrides.push(inStr[i]!);
    } else {
      outShape.push(from[i]!);
      inStrides.push(inStr[i]!);
    }
  }
  const outSize = outShape.reduce((a, b) => a * b, 1);
  return { outSize, outShape, inStrides, redShape, redStrides };
}

function coordsLoop(
  shape: string,
  strides: string,
  rank: number,
  idx: string,
  acc: string,
): string {
  if (rank === 0) return `var ${acc} = 0u;`;
  return `var ${acc} = 0u;
    { var rem = ${idx};
      for (var d = ${rank - 1}; d >= 0; d = d - 1) {
        let dim = ${shape}[d / 4][d % 4];
        let c = rem % dim; rem = rem / dim;
        ${acc} = ${acc} + c * ${strides}[d / 4][d % 4];
      } }`;
}

const SUM_TO = defineKernel({
  name: "sumTo",
  bindings: [
    { name: "src", type: "T", access: "read" },
    { name: "dst", type: "T", access: "read_write" },
  ],
  // Output shape, input strides per output dim, reduced shape and strides: 8 dims each.
  params: {
    n: "u32",
    nred: "u32",
    os: "array<vec4u, 2>",
    is: "array<vec4u, 2>",
    rs: "array<vec4u, 2>",
    rst: "array<vec4u, 2>",
  },
});

/** WGSL of `sumTo`: each invocation owns one output element and sums its reduced positions. */
export function sumToWgsl(dtype: DType, outRank: number, redRank: number): string {
  return `${SUM_TO.header({ types: { T: dtype } })}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < p.n; i = i + stride) {
    ${coordsLoop("p.os", "p.is", outRank, "i", "base")}
    var s = 0.0;
    for (var r = 0u; r < p.nred; r = r + 1u) {
      ${coordsLoop("p.rs", "p.rst", redRank, "r", "off")}
      s = s + f32(src[base + off]);
    }
    dst[i] = ${dtype}(s);
  }
}`;
}

/** CPU twin of {@link sumToWgsl}. */
export function sumToCpu(dtype: DType, l: SumToLayout, src: ArrayBuffer, dst: ArrayBuffer): void {
  const s = typedView(dtype, src), d = typedView(dtype, dst, l.outSize);
  const nred = l.redShape.reduce((a, b) => a * b, 1);
  const offs = new Int32Array(nred);
  for (let r = 0; r < nred; r++) {
    let rem = r, off = 0;
    for (let k = l.redShape.length - 1; k >= 0; k--) {
      const c = rem % l.redShape[k]!;
      rem = (rem - c) / l.redShape[k]!;
      off += c * l.redStrides[k]!;
    }
    offs[r] = off;
  }
  for (let i = 0; i < l.outSize; i++) {
    let rem = i, base = 0;
    for (let k = l.outShape.length - 1; k >= 0; k--) {
      const c = rem % l.outShape[k]!;
      rem = (rem - c) / l.outShape[k]!;
      base += c * l.inStrides[k]!;
    }
    let acc = 0;
    for (let r = 0; r < nred; r++) acc += s[base + offs[r]!]!;
    d[i] = acc;
  }
}

/** Dispatch of `sumTo`. */
export function sumToDispatch(dtype: DType, l: SumToLayout, src: Storage, dst: Storage): Dispatch {
  const pad = (xs: number[], fill: number) => [...xs, ...new Array(8 - xs.length).fill(fill)];
  const nred = l.redShape.reduce((a, b) => a * b, 1);
  return {
    op: "sumTo",
    key: SUM_TO.key(dtype, l.outShape.length, l.redShape.length),
    wgsl: () => sumToWgsl(dtype, l.outShape.length, l.redShape.length),
    cpu: ([s, d]) => sumToCpu(dtype, l, s!, d!),
    native: dtype === "f32" ? ([s, d], rt) => sumToNative(l, s!, d!, rt) : undefined,
    buffers: [src, dst],
    uniforms: SUM_TO.uniforms({
      n: l.outSize,
      nred,
      os: pad(l.outShape, 1),
      is: pad(l.inStrides, 0),
      rs: pad(l.redShape, 1),
      rst: pad(l.redStrides, 0),
    }),
    workgroups: gridStride(l.outSize),
  };
}
