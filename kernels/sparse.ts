/**
 * Sparse-format conversions and nonzero counts: scatter of fixed-K rows or CSR rows to dense,
 * dense to CSR (count, scan, fill), and per-row / total nonzero counts for sparsity accounting.
 *
 * Rows are either fixed-K (row r owns entries `[r·K, (r+1)·K)`) or CSR (row r owns
 * `[rowPtr[r], rowPtr[r+1])`); the builders take a `csr` flag and share one body.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { type DType, typedView } from "../src/core/dtype.ts";
import { defineKernel } from "./spec.ts";

const WG = 64;

/** Workgroups for one workgroup per row, folding rows past 65535 into the y dimension. */
export function rowGrid(rows: number): [number, number, number] {
  const x = Math.max(1, Math.min(rows, 65535));
  return [x, Math.ceil(rows / x), 1];
}

/**
 * WGSL test for "x is not ±0" on the bits, so NaN counts as nonzero: shader compilers may treat
 * float comparisons as NaN-free.
 */
function nonzero(dtype: DType, v: string): string {
  if (dtype === "i32" || dtype === "u32") return `(${v} != ${dtype}(0))`;
  return `((bitcast<u32>(${dtype === "f32" ? v : `f32(${v})`}) & 0x7fffffffu) != 0u)`;
}

const ROW_OF = "let row = wid.x + wid.y * p.perY;\n  if (row >= p.rows) { return; }";

const SCATTER_ROWS = defineKernel({
  name: "scatterRows",
  bindings: [
    { name: "vals", type: "T", access: "read" },
    { name: "idxs", type: "u32", access: "read" },
    { name: "out", type: "T", access: "read_write" },
    { name: "ptr", type: "u32", access: "read", optional: true },
  ],
  params: { rows: "u32", d: "u32", k: "u32", perY: "u32" },
});

/** WGSL: zero row r of the dense output, then scatter its entries. One workgroup per row. */
export function scatterRowsWgsl(dtype: DType, csr: boolean): string {
  const T = dtype;
  const range = csr
    ? "let lo = ptr[row];\n  let hi = ptr[row + 1u];"
    : "let lo = row * p.k;\n  let hi = lo + p.k;";
  return `${SCATTER_ROWS.header({ types: { T }, omit: csr ? [] : ["ptr"] })}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  ${ROW_OF}
  let base = row * p.d;
  for (var i = lid; i < p.d; i = i + ${WG}u) { out[base + i] = ${T}(0); }
  storageBarrier();
  ${range}
  for (var t = lo + lid; t < hi; t = t + ${WG}u) { out[base + idxs[t]] = vals[t]; }
}`;
}

/** CPU twin of {@link scatterRowsWgsl}. */
export function scatterRowsCpu(
  dtype: DType,
  rows: number,
  d: number,
  k: number,
  bufs: ArrayBuffer[],
  csr: boolean,
): void {
  const vals = typedView(dtype, bufs[0]!), idxs = new Uint32Array(bufs[1]!);
  const out = typedView(dtype, bufs[2]!, rows * d);
  const ptr = csr ? new Uint32Array(bufs[3]!) : null;
  out.fill(0);
  for (let r = 0; r < rows; r++) {
    const lo = ptr ? ptr[r]! : r * k, hi = ptr ? ptr[r + 1]! : lo + k;
    for (let t = lo; t < hi; t++) out[r * d + idxs[t]!] = vals[t]!;
  }
}

/**
 * Dispatch scattering sparse rows into a dense `[rows, d]` tensor.
 * Buffers: vals, idxs, out, and rowPtr when `csr`.
 */
export function scatterRowsDispatch(
  dtype: DType,
  rows: number,
  d: number,
  k: number,
  buffers: Storage[],
  csr: boolean,
): Dispatch {
  const [gx, gy] = rowGrid(rows);
  return {
    op: "toDense",
    key: SCATTER_ROWS.key(dtype, csr ? "csr" : "fixed"),
    wgsl: () => scatterRowsWgsl(dtype, csr),
    cpu: (bufs) => scatterRowsCpu(dtype, rows, d, k, bufs, csr),
    buffers,
    uniforms: SCATTER_ROWS.uniforms({ rows, d, k, perY: gx }),
    workgroups: [gx, gy, 1],
  };
}

const COUNT_ROWS = defineKernel({
  name: "countRows",
  bindings: [
    { name: "x", type: "T", access: "read" },
    { name: "counts", type: "u32", access: "read_write" },
  ],
  params: { rows: "u32", d: "u32", k: "u32", perY: "u32" },
});

/** WGSL counting the nonzeros (NaN counts) of each row into `counts[row]`. */
export function countRowsWgsl(dtype: DType): string {
  return `${COUNT_ROWS.header({ types: { T: dtype } })}
var<workgroup> total: atomic<u32>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  ${ROW_OF}
  if (lid == 0u) { atomicStore(&total, 0u); }
  workgroupBarrier();
  let base = row * p.d;
  var c = 0u;
  for (var i = lid; i < p.d; i = i + ${WG}u) { c = c + select(0u, 1u, ${
    nonzero(dtype, "x[base + i]")
  }); }
  atomicAdd(&total, c);
  workgroupBarrier();
  if (lid == 0u) { counts[row] = atomicLoad(&total); }
}`;
}

/** CPU twin of {@link countRowsWgsl}. */
export function countRowsCpu(
  dtype: DType,
  rows: number,
  d: number,
  x: ArrayBuffer,
  counts: ArrayBuffer,
): void {
  const a = typedView(dtype, x), c = new Uint32Array(counts);
  for (let r = 0; r < rows; r++) {
    let n = 0;
    for (let i = 0; i < d; i++) if (a[r * d + i] !== 0) n++;
    c[r] = n;
  }
}

/**
 * Native kernel of {@link countRowsCpu} for f32: the same counts, branch-free on the bits (an entry
 * is nonzero when its bits other than the sign are), since the trainer counts every projection
 * input of every step and the twin's branch mispredicts on half-sparse rows.
 */
function countRowsF32Native(rows: number, d: number, x: ArrayBuffer, counts: ArrayBuffer): void {
  const bits = new Int32Array(x, 0, rows * d), c = new Uint32Array(counts);
  for (let r = 0; r < rows; r++) {
    let n = 0;
    const end = (r + 1) * d;
    // (m + 2³¹ − 1) ≥ 2³¹ exactly when m ≥ 1, for m = |bits| in [0, 2³¹).
    for (let i = r * d; i < end; i++) n += ((bits[i]! & 0x7fffffff) + 0x7fffffff) >>> 31;
    c[r] = n;
  }
}

/** Dispatch counting nonzeros per row. Buffers: x, counts (u32 `[rows]`). */
export function countRowsDispatch(
  dtype: DType,
  rows: number,
  d: number,
  x: Storage,
  counts: Storage,
): Dispatch {
  const [gx, gy] = rowGrid(rows);
  return {
    op: "countNonzero",
    key: COUNT_ROWS.key(dtype),
    wgsl: () => countRowsWgsl(dtype),
    cpu: ([a, c]) => countRowsCpu(dtype, rows, d, a!, c!),
    native: dtype === "f32" ? ([a, c]) => countRowsF32Native(rows, d, a!, c!) : undefined,
    buffers: [x, counts],
    uniforms: COUNT_ROWS.uniforms({ rows, d, k: 0, perY: gx }),
    workgroups: [gx, gy, 1],
  };
}

const SCAN_WG = 256;

const SCAN_U32 = defineKernel({
  name: "scanU32",
  bindings: [
    { name: "src", type: "u32", access: "read" },
    { name: "out", type: "u32", access: "read_write" },
  ],
  params: { n: "u32", chunk: "u32" },
});

/**
 * WGSL of an exclusive scan of `n` u32 counts into `n + 1` offsets (one workgroup: contiguous
 * chunks per invocation, a serial scan of the chunk sums). `out[n]` is the total.
 */
export function scanWgsl(): string {
  return `${SCAN_U32.header()}
var<workgroup> part: array<u32, ${SCAN_WG}>;
@compute @workgroup_size(${SCAN_WG})
fn main(@builtin(local_invocation_index) lid: u32) {
  let c0 = min(lid * p.chunk, p.n);
  let c1 = min(c0 + p.chunk, p.n);
  var s = 0u;
  for (var i = c0; i < c1; i = i + 1u) { s = s + src[i]; }
  part[lid] = s;
  workgroupBarrier();
  if (lid == 0u) {
    var acc = 0u;
    for (var t = 0u; t < ${SCAN_WG}u; t = t + 1u) { let v = part[t]; part[t] = acc; acc = acc + v; }
    out[p.n] = acc;
  }
  workgroupBarrier();
  var acc = part[lid];
  for (var i = c0; i < c1; i = i + 1u) { out[i] = acc; acc = acc + src[i]; }
}`;
}

/** CPU twin of {@link scanWgsl}. */
export function scanCpu(n: number, src: ArrayBuffer, out: ArrayBuffer): void {
  const s = new Uint32Array(src), o = new Uint32Array(out);
  let acc = 0;
  for (let i = 0; i < n; i++) {
    o[i] = acc;
    acc = (acc + s[i]!) >>> 0;
  }
  o[n] = acc;
}

/** Dispatch of an exclusive scan (`out` holds `n + 1` u32). */
export function scanDispatch(n: number, src: Storage, out: Storage, op = "scan"): Dispatch {
  return {
    op,
    key: SCAN_U32.key(),
    wgsl: scanWgsl,
    cpu: ([s, o]) => scanCpu(n, s!, o!),
    buffers: [src, out],
    uniforms: SCAN_U32.uniforms({ n, chunk: Math.ceil(n / SCAN_WG) }),
    workgroups: [1, 1, 1],
  };
}

const DENSE_TO_CSR = defineKernel({
  name: "denseToCsr",
  bindings: [
    { name: "x", type: "T", access: "read" },
    { name: "ptr", type: "u32", access: "read" },
    { name: "vals", type: "T", access: "read_write" },
    { name: "cols", type: "u32", access: "read_write" },
  ],
  params: { rows: "u32", d: "u32", chunk: "u32", perY: "u32" },
});

/**
 * WGSL writing each row's nonzeros (in column order) at `rowPtr[row]`: each invocation owns a
 * contiguous chunk, counts, invocation 0 scans, then each writes its entries.
 */
export function denseToCsrWgsl(dtype: DType): string {
  const T = dtype;
  return `${DENSE_TO_CSR.header({ types: { T } })}
var<workgroup> part: array<u32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  ${ROW_OF}
  let base = row * p.d;
  let c0 = min(lid * p.chunk, p.d);
  let c1 = min(c0 + p.chunk, p.d);
  var c = 0u;
  for (var i = c0; i < c1; i = i + 1u) { c = c + select(0u, 1u, ${nonzero(T, "x[base + i]")}); }
  part[lid] = c;
  workgroupBarrier();
  if (lid == 0u) {
    var acc = 0u;
    for (var t = 0u; t < ${WG}u; t = t + 1u) { let v = part[t]; part[t] = acc; acc = acc + v; }
  }
  workgroupBarrier();
  var pos = ptr[row] + part[lid];
  for (var i = c0; i < c1; i = i + 1u) {
    let v = x[base + i];
    if (${nonzero(T, "v")}) {
      vals[pos] = v;
      cols[pos] = i;
      pos = pos + 1u;
    }
  }
}`;
}

/** CPU twin of {@link denseToCsrWgsl}. */
export function denseToCsrCpu(dtype: DType, rows: number, d: number, bufs: ArrayBuffer[]): void {
  const x = typedView(dtype, bufs[0]!), ptr = new Uint32Array(bufs[1]!);
  const vals = typedView(dtype, bufs[2]!), cols = new Uint32Array(bufs[3]!);
  for (let r = 0; r < rows; r++) {
    let pos = ptr[r]!;
    for (let i = 0; i < d; i++) {
      const v = x[r * d + i]!;
      if (v !== 0) {
        vals[pos] = v;
        cols[pos++] = i;
      }
    }
  }
}

/** Dispatch filling CSR values and column indices. Buffers: x, rowPtr, vals, cols. */
export function denseToCsrDispatch(
  dtype: DType,
  rows: number,
  d: number,
  buffers: Storage[],
): Dispatch {
  const [gx, gy] = rowGrid(rows);
  return {
    op: "denseToCsr",
    key: DENSE_TO_CSR.key(dtype),
    wgsl: () => denseToCsrWgsl(dtype),
    cpu: (bufs) => denseToCsrCpu(dtype, rows, d, bufs),
    buffers,
    uniforms: DENSE_TO_CSR.uniforms({ rows, d, chunk: Math.ceil(d / WG), perY: gx }),
    workgroups: [gx, gy, 1],
  };
}

const FIXED_ROW_PTR = defineKernel({
  name: "fixedRowPtr",
  bindings: [{ name: "out", type: "u32", access: "read_write" }],
  params: { n: "u32", k: "u32" },
});

/** Dispatch writing `rowPtr[r] = r·k` for `r = 0..rows` (CSR view of fixed-K rows). */
export function fixedRowPtrDispatch(rows: number, k: number, out: Storage): Dispatch {
  return {
    op: "toCsr",
    key: FIXED_ROW_PTR.key(),
    wgsl: () =>
      `${FIXED_ROW_PTR.header()}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  for (var i = gid.x; i <= p.n; i = i + nwg.x * ${WG}u) { out[i] = i * p.k; }
}`,
    cpu: ([o]) => {
      const a = new Uint32Array(o!);
      for (let i = 0; i <= rows; i++) a[i] = i * k;
    },
    buffers: [out],
    uniforms: FIXED_ROW_PTR.uniforms({ n: rows, k }),
    workgroups: [Math.max(1, Math.min(Math.ceil((rows + 1) / WG), 4096)), 1, 1],
  };
}
