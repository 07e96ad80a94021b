/**
 * Grouped matmul: each grouped row times its expert's matrix, and the per-expert weight gradient.
 * Layout and vocabulary: `moe_layout.ts`.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { gridStride } from "./common.ts";
import { GRID } from "./moe_layout.ts";
import { groupedMatmulNative, groupedWeightGradNative } from "./native/grouped_matmul.ts";
import { defineKernel } from "./spec.ts";

/** One grouped matmul: `out[r, :] = x[r, :] · B[e]` for every row r of expert e's segment. */
export interface GroupedMatmulProblem {
  /** Grouped rows M. */
  m: number;
  /** Inner dim (columns of x). */
  k: number;
  /** Output columns. */
  n: number;
  /** Experts E (matrices in B). */
  e: number;
  /** B[e] is stored `[n, k]` and read transposed (the input gradient `g · W[e]ᵀ`). */
  transposeB: boolean;
}

const GM_WG = 64;
const GT = 8;

/**
 * Row tiles a grouped matmul launches: every expert's segment is cut into tiles of 8 rows (so a
 * tile never straddles two experts and all its rows share one matrix), plus tiles for the
 * unused tail. `Σ_e ⌈rows_e / 8⌉ + ⌈tail / 8⌉ ≤ ⌈M / 8⌉ + E + 1`, whatever the routing.
 */
export function groupedRowTiles(m: number, e: number): number {
  return Math.ceil(m / GT) + e + 1;
}

const GROUPED_MATMUL = defineKernel({
  name: "groupedMatmul",
  bindings: [
    { name: "x", type: "f32", access: "read" },
    { name: "B", type: "f32", access: "read" },
    { name: "segs", type: "u32", access: "read" },
    { name: "out", type: "f32", access: "read_write" },
  ],
  params: { m: "u32", k: "u32", n: "u32", e: "u32", tiles: "u32" },
});

/**
 * WGSL of the grouped matmul. Each invocation owns an 8×8 block of the output inside one
 * expert's segment: it finds its expert by walking the segment offsets (O(E)), then streams
 * that expert's matrix like a dense register-tiled matmul (8 row loads + 8 matrix loads per 64
 * FMAs). Tiles past the live rows write zeros.
 */
export function groupedMatmulWgsl(tb: boolean): string {
  let decl = "", idx = "", body = "", store = "", zero = "";
  for (let r = 0; r < GT; r++) {
    decl += `  var acc${r}_0 = vec4f(0.0);\n  var acc${r}_1 = vec4f(0.0);\n`;
  }
  for (let r = 0; r < GT; r++) idx += `  let m${r} = min(r0 + ${r}u, rEnd - 1u) * p.k;\n`;
  for (let c = 0; c < GT; c++) {
    idx += `  let n${c} = ${
      tb ? `base + min(c0 + ${c}u, p.n - 1u) * p.k` : `base + min(c0 + ${c}u, p.n - 1u)`
    };\n`;
  }
  const bAt = (c: number) => (tb ? `B[n${c} + kk]` : `B[n${c} + kk * p.n]`);
  body += `    let b0 = vec4f(${[0, 1, 2, 3].map(bAt).join(", ")});\n`;
  body += `    let b1 = vec4f(${[4, 5, 6, 7].map(bAt).join(", ")});\n`;
  for (let r = 0; r < GT; r++) {
    body += `    let a${r} = vec4f(x[m${r} + kk]);\n`;
    body +=
      `    acc${r}_0 = fma(a${r}, b0, acc${r}_0);\n    acc${r}_1 = fma(a${r}, b1, acc${r}_1);\n`;
  }
  for (let r = 0; r < GT; r++) {
    store += `  if (r0 + ${r}u < rEnd) {\n`;
    for (let c = 0; c < GT; c++) {
      store += `    if (c0 + ${c}u < p.n) { out[(r0 + ${r}u) * p.n + c0 + ${c}u] = acc${r}_${
        c >> 2
      }[${c & 3}]; }\n`;
    }
    store += "  }\n";
  }
  zero = `    for (var r = r0; r < min(r0 + ${GT}u, p.m); r = r + 1u) {
      for (var c = c0; c < min(c0 + ${GT}u, p.n); c = c + 1u) { out[r * p.n + c] = 0.0; }
    }`;
  return `${GROUPED_MATMUL.header()}
fn tile(i: u32) {
  let ct = (p.n + ${GT - 1}u) / ${GT}u;
  let rb = i / ct;
  let c0 = (i - rb * ct) * ${GT}u;
  var cum = 0u;
  var ex = p.e;
  var r0 = 0u;
  var rEnd = 0u;
  for (var e = 0u; e < p.e; e = e + 1u) {
    let s = segs[e];
    let t = segs[e + 1u];
    let nb = (t - s + ${GT - 1}u) / ${GT}u;
    if (rb < cum + nb) {
      ex = e;
      r0 = s + (rb - cum) * ${GT}u;
      rEnd = t;
      break;
    }
    cum = cum + nb;
  }
  if (ex == p.e) {
    r0 = segs[p.e] + (rb - cum) * ${GT}u;
${zero}
    return;
  }
  let base = ex * p.k * p.n;
${idx}${decl}  for (var kk = 0u; kk < p.k; kk = kk + 1u) {
${body}  }
${store}}
@compute @workgroup_size(${GM_WG})
fn main(${GRID}) {
  let stride = nwg.x * ${GM_WG}u;
  for (var i = gid.x; i < p.tiles; i = i + stride) { tile(i); }
}`;
}

/** CPU twin of {@link groupedMatmulWgsl} (f64 accumulation, rounded to f32). */
export function groupedMatmulCpu(
  p: GroupedMatmulProblem,
  x: ArrayBuffer,
  b: ArrayBuffer,
  meta: ArrayBuffer,
  out: ArrayBuffer,
): void {
  const X = new Float32Array(x), B = new Float32Array(b), mv = new Uint32Array(meta);
  const O = new Float32Array(out, 0, p.m * p.n);
  const { m, k, n } = p;
  const row = new Float64Array(n);
  for (let ei = 0; ei < p.e; ei++) {
    const base = ei * k * n;
    for (let r = mv[ei]!; r < mv[ei + 1]!; r++) {
      row.fill(0);
      for (let kk = 0; kk < k; kk++) {
        const av = X[r * k + kk]!;
        if (av === 0) continue;
        if (p.transposeB) { for (let j = 0; j < n; j++) row[j] += av * B[base + j * k + kk]!; }
        else for (let j = 0; j < n; j++) row[j] += av * B[base + kk * n + j]!;
      }
      for (let j = 0; j < n; j++) O[r * n + j] = row[j]!;
    }
  }
  O.fill(0, Math.min(mv[p.e]!, m) * n);
}

/**
 * Dispatch of a grouped matmul.
 *
 * @param p The problem.
 * @param x Grouped rows `[m, k]`.
 * @param b Stacked matrices `[e, k, n]` (or `[e, n, k]` with transposeB).
 * @param meta Grouping meta (segment offsets).
 * @param out Output `[m, n]`.
 * @returns The dispatch.
 */
export function groupedMatmulDispatch(
  p: GroupedMatmulProblem,
  x: Storage,
  b: Storage,
  meta: Storage,
  out: Storage,
): Dispatch {
  const tiles = groupedRowTiles(p.m, p.e) * Math.ceil(p.n / GT);
  return {
    op: "groupedMatmul",
    key: GROUPED_MATMUL.key(p.transposeB ? "T" : "N"),
    wgsl: () => groupedMatmulWgsl(p.transposeB),
    cpu: ([a, bb, c, d]) => groupedMatmulCpu(p, a!, bb!, c!, d!),
    native: (bufs, rt) =>
      groupedMatmulNative(p, bufs, rt, ([a, bb, c, d]) => groupedMatmulCpu(p, a!, bb!, c!, d!)),
    buffers: [x, b, meta, out],
    uniforms: GROUPED_MATMUL.uniforms({ m: p.m, k: p.k, n: p.n, e: p.e, tiles }),
    workgroups: gridStride(tiles, GM_WG),
  };
}

const GROUPED_WEIGHT_GRAD = defineKernel({
  name: "groupedWeightGrad",
  bindings: [
    { name: "x", type: "f32", access: "read" },
    { name: "g", type: "f32", access: "read" },
    { name: "segs", type: "u32", access: "read" },
    { name: "dw", type: "f32", access: "read_write" },
  ],
  params: { e: "u32", k: "u32", n: "u32", total: "u32" },
});

/**
 * WGSL of the grouped weight gradient `dW[e] = Σ_{r ∈ segment e} x[r]ᵀ · g[r]` (`[E, k, n]`):
 * each invocation owns a 4×8 block of one expert's gradient and walks that expert's rows in
 * order (4 + 8 loads per 32 FMAs).
 */
export function groupedWeightGradWgsl(): string {
  let idx = "", decl = "", body = "", store = "";
  for (let j = 0; j < 4; j++) idx += `    let k${j} = min(kb + ${j}u, p.k - 1u);\n`;
  for (let c = 0; c < 8; c++) idx += `    let n${c} = min(c0 + ${c}u, p.n - 1u);\n`;
  for (let j = 0; j < 4; j++) {
    decl += `    var acc${j}_0 = vec4f(0.0);\n    var acc${j}_1 = vec4f(0.0);\n`;
  }
  body += `      let g0 = vec4f(g[gb + n0], g[gb + n1], g[gb + n2], g[gb + n3]);\n`;
  body += `      let g1 = vec4f(g[gb + n4], g[gb + n5], g[gb + n6], g[gb + n7]);\n`;
  for (let j = 0; j < 4; j++) {
    body += `      let a${j} = vec4f(x[xb + k${j}]);\n`;
    body +=
      `      acc${j}_0 = fma(a${j}, g0, acc${j}_0);\n      acc${j}_1 = fma(a${j}, g1, acc${j}_1);\n`;
  }
  for (let j = 0; j < 4; j++) {
    store += `    if (kb + ${j}u < p.k) {\n`;
    for (let c = 0; c < 8; c++) {
      store +=
        `      if (c0 + ${c}u < p.n) { dw[(e * p.k + kb + ${j}u) * p.n + c0 + ${c}u] = acc${j}_${
          c >> 2
        }[${c & 3}]; }\n`;
    }
    store += "    }\n";
  }
  return `${GROUPED_WEIGHT_GRAD.header()}
@compute @workgroup_size(${GM_WG})
fn main(${GRID}) {
  let stride = nwg.x * ${GM_WG}u;
  let ct = (p.n + 7u) / 8u;
  let kt = (p.k + 3u) / 4u;
  for (var i = gid.x; i < p.total; i = i + stride) {
    let e = i / (kt * ct);
    let rest = i - e * kt * ct;
    let kb = (rest / ct) * 4u;
    let c0 = (rest - (rest / ct) * ct) * 8u;
${idx}${decl}    for (var r = segs[e]; r < segs[e + 1u]; r = r + 1u) {
      let gb = r * p.n;
      let xb = r * p.k;
${body}    }
${store}  }
}`;
}

/** CPU twin of {@link groupedWeightGradWgsl} (f64 accumulation, rounded to f32). */
export function groupedWeightGradCpu(
  e: number,
  k: number,
  n: number,
  x: ArrayBuffer,
  g: ArrayBuffer,
  meta: ArrayBuffer,
  dw: ArrayBuffer,
): void {
  const X = new Float32Array(x), G = new Float32Array(g), mv = new Uint32Array(meta);
  const out = new Float32Array(dw, 0, e * k * n);
  const acc = new Float64Array(k * n);
  for (let ei = 0; ei < e; ei++) {
    acc.fill(0);
    for (let r = mv[ei]!; r < mv[ei + 1]!; r++) {
      for (let kk = 0; kk < k; kk++) {
        const xv = X[r * k + kk]!;
        if (xv === 0) continue;
        for (let j = 0; j < n; j++) acc[kk * n + j] += xv * G[r * n + j]!;
      }
    }
    out.set(acc, ei * k * n);
  }
}

/**
 * Dispatch of the grouped weight gradient.
 *
 * @param e Experts.
 * @param k Rows of each expert matrix (columns of x).
 * @param n Columns of each expert matrix (columns of g).
 * @param x Grouped inputs `[M, k]`.
 * @param g Grouped output gradient `[M, n]`.
 * @param meta Grouping meta (offsets).
 * @param dw Output `[e, k, n]`.
 * @returns The dispatch.
 */
export function groupedWeightGradDispatch(
  e: number,
  k: number,
  n: number,
  x: Storage,
  g: Storage,
  meta: Storage,
  dw: Storage,
): Dispatch {
  const total = e * Math.ceil(k / 4) * Math.ceil(n / 8);
  return {
    op: "groupedMatmulBackward",
    key: GROUPED_WEIGHT_GRAD.key(),
    wgsl: groupedWeightGradWgsl,
    cpu: ([a, b, c, d]) => groupedWeightGradCpu(e, k, n, a!, b!, c!, d!),
    native: (bufs, rt) =>
      groupedWeightGradNative(
        e,
        k,
        n,
        bufs,
        rt,
        ([a, b, c, d]) => groupedWeightGradCpu(e, k, n, a!, b!, c!, d!),
      ),
    buffers: [x, g, meta, dw],
    uniforms: GROUPED_WEIGHT_GRAD.uniforms({ e, k, n, total }),
    workgroups: gridStride(total, GM_WG),
  };
}
