/**
 * Sparse activations × dense weights: `Y = dense(A) · W` with A given as sparse rows and W
 * stored **input-major**, `[D_in, D_out]` row-major, so every input channel's weights are one
 * contiguous row (TEAL's layout). Work is proportional to the kept entries, not to D_in.
 *
 * Forward kernels (all one pass, no partial sums; an invocation owns 16 output columns as four
 * vec4 accumulators per row when D_out allows, which halves the per-entry index/value overhead
 * against 8 columns on llvmpipe):
 * - **rows** (GEMV and batched, fixed-K or CSR rows, any column order): each row of a tile walks
 *   its own entries, loading one contiguous weight-row slice per entry. The tile's rows reuse the
 *   weight stripe of the column tile from the CPU cache.
 * - **merge** (ascending columns): a tile of `r` rows walks the union of its column lists in
 *   order, so each weight-row slice is loaded once per tile and feeds every row that keeps it.
 *   Per-token top-K picks different columns per row, so the union, and with it the weight
 *   traffic, grows with the tile; past ~16 rows at moderate density dense wins (see `spmm`).
 * - **nm** (N:M rows): the tile's rows walked block by block, so a block's m weight rows stay in
 *   L1 while every row adds its n entries.
 * - **gradWeight**: `dW = A_sparseᵀ · dY`, computed only for the weight rows some batch row
 *   keeps: one workgroup per weight row finds the batch rows holding it (binary search in
 *   ascending indices, linear scan otherwise) and accumulates their `dY` rows. Deterministic
 *   (no float atomics, which WGSL lacks); rows no entry touches are zeroed, or left untouched
 *   when accumulating into an existing gradient.
 *
 * Accumulation is f32 for every storage dtype.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { type DType, typedView } from "../src/core/dtype.ts";
import { spmmGradWeightNative, spmmNative } from "./native/spmm.ts";
import { defineKernel } from "./spec.ts";
import { SPMM_SPLIT_SHAPES, spmmSplitDispatch, spmmSplitFits, spmmTunable } from "./spmm_wg.ts";

/** How the entries of each sparse row are laid out. */
export type RowLayout =
  /** Row r owns entries `[r·K, (r+1)·K)`, columns ascending. */
  | "fixed"
  /** Fixed K, but in rank order (columns not ascending). */
  | "fixedUnsorted"
  /** Row r owns `[rowPtr[r], rowPtr[r+1])`, columns ascending. */
  | "csr"
  /** CSR with columns not ascending. */
  | "csrUnsorted";

/** A sparse-times-dense problem. */
export interface SpmmProblem {
  /** Rows of A and Y. */
  rows: number;
  /** D_in: columns of A, rows of W. */
  dIn: number;
  /** D_out: columns of W and Y. */
  dOut: number;
  /** Entries per row (fixed layouts; 0 for CSR). */
  k: number;
  /** Storage dtype of values, W and Y. */
  dtype: DType;
}

/** Forward kernel family (see the module doc). */
export type SpmmKernel = "rows" | "nm" | "merge";

/** Tiling of a forward kernel. */
export interface SpmmTiling {
  /** vec4 column groups per invocation; 0 means one scalar column (any D_out). */
  nv: number;
  /** Invocations per workgroup, along the output columns. */
  wg: number;
  /** Batch rows per workgroup. */
  r: number;
}

function isCsr(l: RowLayout): boolean {
  return l === "csr" || l === "csrUnsorted";
}

/**
 * Default tiling: 16 output columns per invocation when D_out allows (measured ~2× faster than 8
 * on llvmpipe: the index and value loads of an entry are shared by four vec4 weight loads), then
 * 4, then scalar.
 */
export function spmmTiling(kernel: SpmmKernel, dOut: number, rows: number): SpmmTiling {
  const nv = dOut % 16 === 0 ? 4 : dOut % 4 === 0 ? 1 : 0;
  // merge: 8 rows share each weight load (measured faster than 4 from 8 rows up on llvmpipe).
  const r = kernel === "rows" ? 4 : Math.min(kernel === "merge" ? 8 : 4, rows);
  return { nv, wg: nv === 4 ? 16 : 32, r };
}

function range(layout: RowLayout, row: string): string {
  return isCsr(layout)
    ? `let lo = ptr[${row}];\n    let hi = ptr[${row} + 1u];`
    : `let lo = ${row} * p.k;\n    let hi = lo + p.k;`;
}

/** The three forward kernels share bindings and parameters; `W` loads as `V` (vec4 or scalar). */
const SPMM = defineKernel({
  name: "spmm",
  bindings: [
    { name: "vals", type: "T", access: "read" },
    { name: "idxs", type: "u32", access: "read" },
    { name: "W", type: "V", access: "read" },
    { name: "Y", type: "T", access: "read_write" },
    { name: "ptr", type: "u32", access: "read", optional: true },
  ],
  params: { rows: "u32", dIn: "u32", dOut: "u32", k: "u32", groupsX: "u32", perX: "u32" },
});

function header(dtype: DType, layout: RowLayout, nv: number): string {
  const T = dtype;
  const types = { T, V: nv > 0 ? `vec4<${T}>` : T };
  return `${SPMM.header({ types, omit: isCsr(layout) ? [] : ["ptr"] })}
const NONE = 0xffffffffu;`;
}

/** Per-accumulator names, loads and stores for `nv` vec4 groups (or one scalar column). */
function cols(T: DType, nv: number) {
  const n = Math.max(1, nv);
  const ids = Array.from({ length: n }, (_, c) => c);
  return {
    zero: nv > 0 ? "vec4f(0.0)" : "0f",
    val: (e: string) => (nv > 0 ? `vec4f(f32(vals[${e}]))` : `f32(vals[${e}])`),
    w: (
      u: string,
      c: number,
    ) => (nv > 0 ? `vec4f(W[${u} * n4 + j * ${nv}u + ${c}u])` : `f32(W[${u} * p.dOut + j])`),
    ids,
    store: (acc: (c: number) => string, row: string) =>
      nv > 0
        ? `    let o = ${row} * p.dOut + j * ${4 * nv}u;\n` +
          ids.map((c) =>
            `    for (var q = 0u; q < 4u; q = q + 1u) { Y[o + ${4 * c}u + q] = ${T}(${
              acc(c)
            }[q]); }`
          ).join("\n")
        : `    Y[${row} * p.dOut + j] = ${T}(${acc(0)});`,
  };
}

const PROLOGUE = (t: SpmmTiling) =>
  `  let j = (wid.x % p.groupsX) * ${t.wg}u + lid;
  let r0 = (wid.x / p.groupsX + wid.y * p.perX) * ${t.r}u;
  let n4 = p.dOut / 4u;
  if (${t.nv > 0 ? `j * ${t.nv}u >= n4` : "j >= p.dOut"} || r0 >= p.rows) { return; }`;

/** WGSL of the rows kernel: each row of the tile in turn walks its own entries. */
export function spmmRowsWgsl(dtype: DType, layout: RowLayout, t: SpmmTiling): string {
  const C = cols(dtype, t.nv);
  return `${header(dtype, layout, t.nv)}
@compute @workgroup_size(${t.wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
${PROLOGUE(t)}
  for (var row = r0; row < min(r0 + ${t.r}u, p.rows); row = row + 1u) {
    ${range(layout, "row")}
${C.ids.map((c) => `    var a${c} = ${C.zero};`).join("\n")}
    for (var t = lo; t < hi; t = t + 1u) {
      let u = idxs[t];
      let v = ${C.val("t")};
${C.ids.map((c) => `      a${c} = fma(v, ${C.w("u", c)}, a${c});`).join("\n")}
    }
${C.store((c) => `a${c}`, "row")}
  }
}`;
}

/**
 * WGSL of the N:M kernel: the tile's rows are walked block by block (n entries of each row per
 * block of m weight rows), so a block's weight rows stay in L1 while every row of the tile uses
 * them.
 */
export function spmmNmWgsl(dtype: DType, t: SpmmTiling, n: number, m: number): string {
  const C = cols(dtype, t.nv);
  let decl = "", body = "", store = "";
  for (let r = 0; r < t.r; r++) {
    decl += `  let e${r} = min(r0 + ${r}u, p.rows - 1u) * p.k;\n` + C.ids.map((c) =>
      `  var a${r}_${c} = ${C.zero};`
    ).join("\n") + "\n";
    body += `      {
        let e = e${r} + eb;
        let u = idxs[e];
        let v = ${C.val("e")};
${C.ids.map((c) => `        a${r}_${c} = fma(v, ${C.w("u", c)}, a${r}_${c});`).join("\n")}
      }\n`;
    store += `  if (r0 + ${r}u < p.rows) {\n${C.store((c) => `a${r}_${c}`, `(r0 + ${r}u)`)}\n  }\n`;
  }
  return `${header(dtype, "fixed", t.nv)}
@compute @workgroup_size(${t.wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
${PROLOGUE(t)}
${decl}  let blocks = p.dIn / ${m}u;
  for (var b = 0u; b < blocks; b = b + 1u) {
    for (var tt = 0u; tt < ${n}u; tt = tt + 1u) {
      let eb = b * ${n}u + tt;
${body}    }
  }
${store}}`;
}

/**
 * WGSL of the merge kernel: the tile's rows (ascending columns) walk the union of their column
 * lists in order, so each weight-row slice is loaded once per tile and feeds the register
 * accumulators of every row that keeps that column.
 */
export function spmmMergeWgsl(dtype: DType, layout: RowLayout, t: SpmmTiling): string {
  const C = cols(dtype, t.nv);
  const csr = isCsr(layout);
  let decl = "", minExpr = "", upd = "", store = "";
  for (let i = 0; i < t.r; i++) {
    decl += `  let row${i} = min(r0 + ${i}u, p.rows - 1u);
  ${
      csr
        ? `var q${i} = ptr[row${i}];\n  let h${i} = select(ptr[row${i} + 1u], q${i}, r0 + ${i}u >= p.rows);`
        : `var q${i} = row${i} * p.k;\n  let h${i} = select(q${i} + p.k, q${i}, r0 + ${i}u >= p.rows);`
    }
  var c${i} = select(NONE, idxs[min(q${i}, h${i} - 1u)], q${i} < h${i});
${C.ids.map((c) => `  var a${i}_${c} = ${C.zero};`).join("\n")}
`;
    minExpr = i === 0 ? "c0" : `min(${minExpr}, c${i})`;
    upd += `    if (c${i} == u) {
      let v = ${C.val(`q${i}`)};
${C.ids.map((c) => `      a${i}_${c} = fma(v, w${c}, a${i}_${c});`).join("\n")}
      q${i} = q${i} + 1u;
      c${i} = select(NONE, idxs[min(q${i}, h${i} - 1u)], q${i} < h${i});
    }
`;
    store += `  if (r0 + ${i}u < p.rows) {\n${C.store((c) => `a${i}_${c}`, `(r0 + ${i}u)`)}\n  }\n`;
  }
  return `${header(dtype, layout, t.nv)}
@compute @workgroup_size(${t.wg})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
${PROLOGUE(t)}
${decl}  loop {
    let u = ${minExpr};
    if (u == NONE) { break; }
${C.ids.map((c) => `    let w${c} = ${C.w("u", c)};`).join("\n")}
${upd}  }
${store}}`;
}

/** CPU twin of every spmm kernel: f64 accumulation of each row's entries, rounded on store. */
export function spmmCpu(p: SpmmProblem, layout: RowLayout, bufs: ArrayBuffer[]): void {
  const vals = typedView(p.dtype, bufs[0]!), idxs = new Uint32Array(bufs[1]!);
  const W = typedView(p.dtype, bufs[2]!), Y = typedView(p.dtype, bufs[3]!, p.rows * p.dOut);
  const ptr = isCsr(layout) ? new Uint32Array(bufs[4]!) : null;
  const acc = new Float64Array(p.dOut);
  for (let r = 0; r < p.rows; r++) {
    acc.fill(0);
    const lo = ptr ? ptr[r]! : r * p.k, hi = ptr ? ptr[r + 1]! : lo + p.k;
    for (let t = lo; t < hi; t++) {
      const v = vals[t]!, wo = idxs[t]! * p.dOut;
      for (let j = 0; j < p.dOut; j++) acc[j] += v * W[wo + j]!;
    }
    for (let j = 0; j < p.dOut; j++) Y[r * p.dOut + j] = acc[j]!;
  }
}

function grid(rows: number, rowsPerGroup: number, groupsX: number): [number, number, number] {
  const tiles = Math.ceil(rows / rowsPerGroup);
  // Row tiles past the per-dimension limit spill into y; x stays a multiple of groupsX.
  const perX = Math.max(1, Math.min(tiles, Math.floor(65535 / groupsX)));
  return [perX * groupsX, Math.ceil(tiles / perX), 1];
}

/**
 * Dispatch of `Y = dense(A) · W` for sparse rows A. Buffers: vals, idxs, W, Y (and rowPtr for
 * CSR layouts). `nm` (fixed layout only) and `merge` (ascending layouts only) pick the other
 * kernels; `tiling` overrides the default tiling (tests and benchmarks).
 *
 * @param p The problem.
 * @param layout Row layout of A.
 * @param buffers Storages in binding order.
 * @param kernel Kernel family.
 * @param nm N:M block structure, for the `nm` kernel.
 * @param tiling Tiling override.
 * @returns The dispatch.
 */
export function spmmDispatch(
  p: SpmmProblem,
  layout: RowLayout,
  buffers: Storage[],
  kernel: SpmmKernel = "rows",
  nm?: { n: number; m: number },
  tiling?: SpmmTiling,
): Dispatch {
  const t = tiling ?? spmmTiling(kernel, p.dOut, p.rows);
  const groupsX = Math.ceil((t.nv > 0 ? p.dOut / (4 * t.nv) : p.dOut) / t.wg);
  const g = grid(p.rows, t.r, groupsX);
  let wgsl: () => string;
  let tag: string;
  if (kernel === "nm") {
    if (!nm || layout !== "fixed") throw new Error("spmm: the nm kernel needs fixed N:M rows");
    wgsl = () => spmmNmWgsl(p.dtype, t, nm.n, nm.m);
    tag = `nm${nm.n}:${nm.m}`;
  } else if (kernel === "merge") {
    if (layout === "fixedUnsorted" || layout === "csrUnsorted") {
      throw new Error("spmm: merge needs ascending columns");
    }
    wgsl = () => spmmMergeWgsl(p.dtype, layout, t);
    tag = `merge:${isCsr(layout) ? "csr" : "fixed"}`;
  } else {
    wgsl = () => spmmRowsWgsl(p.dtype, layout, t);
    tag = `rows:${isCsr(layout) ? "csr" : "fixed"}`;
  }
  const cpu: Dispatch["cpu"] = (bufs) => spmmCpu(p, layout, bufs);
  const native: Dispatch["native"] = p.dtype === "f32"
    ? (bufs, rt) => spmmNative(p.rows, p.dIn, p.dOut, p.k, isCsr(layout), bufs, rt)
    : undefined;
  // Fixed-K rows (decoding's top-K) may run the split-K kernel for discrete GPUs
  // (kernels/spmm_wg.ts) where an autotuning device measured it faster.
  const tune = kernel === "rows" && !tiling && (layout === "fixed" || layout === "fixedUnsorted") &&
      p.k > 0 && (p.dtype === "f32" || p.dtype === "f16") && spmmSplitFits(p)
    ? spmmTunable(
      p,
      layout,
      (v, bufs) =>
        v === "rows" ? spmmDispatch(p, layout, [...bufs], "rows", undefined, t) : spmmSplitDispatch(
          v,
          SPMM_SPLIT_SHAPES[v as keyof typeof SPMM_SPLIT_SHAPES],
          p,
          false,
          [...bufs],
          cpu,
          native,
        ),
    )
    : undefined;
  return {
    op: "spmm",
    key: SPMM.key(tag, p.dtype, `nv${t.nv}`, `wg${t.wg}`, `r${t.r}`),
    wgsl,
    cpu,
    native,
    ...(tune ? { tune } : {}),
    buffers,
    uniforms: SPMM.uniforms({
      rows: p.rows,
      dIn: p.dIn,
      dOut: p.dOut,
      k: p.k,
      groupsX,
      perX: g[0] / groupsX,
    }),
    workgroups: g,
  };
}

// ---------------------------------------------------------------------------------------------
// dW = A_sparseᵀ · dY

const GW_WG = 64;

const SPMM_GRAD_WEIGHT = defineKernel({
  name: "spmmGradWeight",
  bindings: [
    { name: "vals", type: "T", access: "read" },
    { name: "idxs", type: "u32", access: "read" },
    { name: "dY", type: "T", access: "read" },
    { name: "dW", type: "T", access: "read_write" },
    { name: "ptr", type: "u32", access: "read", optional: true },
  ],
  params: { rows: "u32", dIn: "u32", dOut: "u32", k: "u32", perY: "u32" },
});

/** WGSL of the weight gradient: one workgroup per weight row, invocations across D_out. */
export function spmmGradWeightWgsl(dtype: DType, layout: RowLayout, accumulate: boolean): string {
  const T = dtype;
  const csr = isCsr(layout);
  const sorted = layout === "fixed" || layout === "csr";
  // Finds weight row u among the entries [lo, hi) of a batch row; hi when absent.
  const find = sorted
    ? `fn findEntry(u: u32, lo: u32, hi: u32) -> u32 {
  var a = lo;
  var b = hi;
  while (a < b) {
    let mid = (a + b) / 2u;
    if (idxs[mid] < u) { a = mid + 1u; } else { b = mid; }
  }
  if (a < hi && idxs[a] == u) { return a; }
  return hi;
}`
    : `fn findEntry(u: u32, lo: u32, hi: u32) -> u32 {
  for (var t = lo; t < hi; t = t + 1u) { if (idxs[t] == u) { return t; } }
  return hi;
}`;
  return `${SPMM_GRAD_WEIGHT.header({ types: { T }, omit: csr ? [] : ["ptr"] })}
${find}
@compute @workgroup_size(${GW_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let u = wid.x + wid.y * p.perY;
  if (u >= p.dIn) { return; }
  // Chunks of ${4 * GW_WG} columns: 4 strided columns per invocation, so the search for u in each
  // batch row (uniform across the workgroup) is paid once per chunk, not per column.
  for (var c0 = 0u; c0 < p.dOut; c0 = c0 + ${4 * GW_WG}u) {
    var acc = vec4f(0.0);
    var hit = false;
    for (var r = 0u; r < p.rows; r = r + 1u) {
      ${range(layout, "r").replaceAll("\n    ", "\n      ")}
      let e = findEntry(u, lo, hi);
      if (e < hi) {
        hit = true;
        let v = f32(vals[e]);
${
    [0, 1, 2, 3].map((q) =>
      `        { let c = c0 + lid + ${
        q * GW_WG
      }u; if (c < p.dOut) { acc[${q}] = fma(v, f32(dY[r * p.dOut + c]), acc[${q}]); } }`
    ).join("\n")
  }
      }
    }
${
    [0, 1, 2, 3].map((q) =>
      `    { let c = c0 + lid + ${q * GW_WG}u; if (c < p.dOut) { ${
        accumulate
          ? `if (hit) { dW[u * p.dOut + c] = ${T}(f32(dW[u * p.dOut + c]) + acc[${q}]); }`
          : `dW[u * p.dOut + c] = ${T}(acc[${q}]);`
      } } }`
    ).join("\n")
  }
  }
}`;
}

/** CPU twin of {@link spmmGradWeightWgsl}. */
export function spmmGradWeightCpu(
  p: SpmmProblem,
  layout: RowLayout,
  accumulate: boolean,
  bufs: ArrayBuffer[],
): void {
  const vals = typedView(p.dtype, bufs[0]!), idxs = new Uint32Array(bufs[1]!);
  const dY = typedView(p.dtype, bufs[2]!), dW = typedView(p.dtype, bufs[3]!, p.dIn * p.dOut);
  const ptr = isCsr(layout) ? new Uint32Array(bufs[4]!) : null;
  const acc = new Float64Array(p.dIn * p.dOut);
  const hit = new Uint8Array(p.dIn);
  for (let r = 0; r < p.rows; r++) {
    const lo = ptr ? ptr[r]! : r * p.k, hi = ptr ? ptr[r + 1]! : lo + p.k;
    for (let t = lo; t < hi; t++) {
      const u = idxs[t]!, v = vals[t]!;
      hit[u] = 1;
      for (let c = 0; c < p.dOut; c++) acc[u * p.dOut + c] += v * dY[r * p.dOut + c]!;
    }
  }
  for (let u = 0; u < p.dIn; u++) {
    if (accumulate && !hit[u]) continue;
    for (let c = 0; c < p.dOut; c++) {
      const i = u * p.dOut + c;
      dW[i] = accumulate ? Math.fround(dW[i]! + Math.fround(acc[i]!)) : acc[i]!;
    }
  }
}

/**
 * Dispatch of `dW (+)= A_sparseᵀ · dY`. Buffers: vals, idxs, dY, dW (and rowPtr for CSR).
 * Without `accumulate` every element of dW is written (zeros off the kept rows); with it only
 * kept rows are read and written.
 */
export function spmmGradWeightDispatch(
  p: SpmmProblem,
  layout: RowLayout,
  accumulate: boolean,
  buffers: Storage[],
): Dispatch {
  const perY = Math.max(1, Math.min(p.dIn, 65535));
  return {
    op: "spmmGradWeight",
    key: SPMM_GRAD_WEIGHT.key(p.dtype, layout, accumulate ? "acc" : "set"),
    wgsl: () => spmmGradWeightWgsl(p.dtype, layout, accumulate),
    cpu: (bufs) => spmmGradWeightCpu(p, layout, accumulate, bufs),
    native: p.dtype === "f32"
      ? (bufs, rt) =>
        spmmGradWeightNative(
          p.rows,
          p.dIn,
          p.dOut,
          p.k,
          isCsr(layout),
          accumulate,
          bufs,
          rt,
          (b) => spmmGradWeightCpu(p, layout, accumulate, b),
        )
      : undefined,
    buffers,
    uniforms: SPMM_GRAD_WEIGHT.uniforms({ rows: p.rows, dIn: p.dIn, dOut: p.dOut, k: p.k, perY }),
    workgroups: [perY, Math.ceil(p.dIn / perY), 1],
  };
}
