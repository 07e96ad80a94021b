/**
 * Dense matmul for discrete GPUs: a workgroup computes a `BM × BN` block of C, staging `BK`-deep
 * slices of A and B in workgroup (shared) memory; each invocation keeps a `TM × TN` block of C in
 * registers (TN/4 vec4 accumulators per row) and reads its operands from the staged slices.
 *
 * Why beside kernels/matmul.ts's register-tiled kernel: on a GPU a workgroup's invocations share
 * one staged slice, so each element of A and B is read from device memory once per workgroup
 * instead of once per invocation, and the inner loop reads on-chip memory. On llvmpipe (a CPU)
 * shared memory is ordinary memory and barriers are coroutine switches, so there the older kernel
 * usually wins; the autotuner (src/backend/autotune.ts) measures which one an adapter prefers.
 *
 * Every configuration handles what `MatmulProblem` describes: transposed A and/or B, batches with
 * their own strides (0 broadcasts one matrix) and any tail (loads outside the matrix read 0,
 * stores outside C are skipped). With `vec4` the loads move 4 elements along each operand's
 * contiguous dim, which needs that dim (and so the batch strides) to be a multiple of 4. f16
 * storage is read into f32 staging and accumulated in f32.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import type { DType } from "../src/core/dtype.ts";
import { defineKernel } from "./spec.ts";

/** One tiling of the shared-memory matmul. */
export interface SmemTile {
  /** Rows of C per workgroup. */
  readonly bm: number;
  /** Columns of C per workgroup. */
  readonly bn: number;
  /** Depth of the staged slices of A and B. */
  readonly bk: number;
  /** Rows of C per invocation. */
  readonly tm: number;
  /** Columns of C per invocation (a multiple of 4). */
  readonly tn: number;
  /** vec4 loads along each operand's contiguous dim (needs it to be a multiple of 4). */
  readonly vec4: boolean;
  /**
   * Load the next slices into registers while computing on the staged ones (one barrier-free
   * global-load latency hidden per slice, for a GPU; costs registers).
   */
  readonly prefetch?: boolean;
}

/** The subset of `MatmulProblem` this kernel reads (kept structural so matmul.ts can pass its own). */
export interface SmemProblem {
  /** Rows of op(A) and C. */
  readonly m: number;
  /** Columns of op(B) and C. */
  readonly n: number;
  /** Inner dim. */
  readonly k: number;
  /** Number of C matrices. */
  readonly batch: number;
  /** Elements between A matrices (0 broadcasts). */
  readonly strideA: number;
  /** Elements between B matrices (0 broadcasts). */
  readonly strideB: number;
  /** A stored `[k, m]`. */
  readonly transposeA: boolean;
  /** B stored `[n, k]`. */
  readonly transposeB: boolean;
  /** Storage dtype of A, B and C. */
  readonly dtype: DType;
}

const MATMUL_SMEM = defineKernel({
  name: "matmulSmem",
  bindings: [
    { name: "A", type: "V", access: "read" },
    { name: "B", type: "V", access: "read" },
    { name: "C", type: "T", access: "read_write" },
  ],
  params: { m: "u32", n: "u32", k: "u32", sa: "u32", sb: "u32", sc: "u32" },
});

/** Invocations per workgroup of a tiling. */
function smemThreads(t: SmemTile): number {
  return (t.bm / t.tm) * (t.bn / t.tn);
}

/**
 * Whether a tiling can run a problem: vec4 tilings need each operand's contiguous dim to be a
 * multiple of 4 (so every vec4 lies wholly inside or outside the matrix, and batch offsets stay
 * aligned).
 *
 * @param t The tiling.
 * @param p The problem.
 * @returns True when the tiling's loads are valid for it.
 * @example
 * ```ts
 * import { smemFits } from "./matmul_smem.ts";
 * import assert from "node:assert/strict";
 * const t = { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4, vec4: true };
 * const p = { m: 5, n: 8, k: 12, batch: 1, strideA: 0, strideB: 0, transposeA: false, transposeB: false, dtype: "f32" as const };
 * assert.equal(smemFits(t, p), true);
 * assert.equal(smemFits(t, { ...p, n: 7 }), false);
 * ```
 */
export function smemFits(t: SmemTile, p: SmemProblem): boolean {
  if (!t.vec4) return true;
  const aDim = p.transposeA ? p.m : p.k, bDim = p.transposeB ? p.k : p.n;
  return aDim % 4 === 0 && bDim % 4 === 0 && p.strideA % 4 === 0 && p.strideB % 4 === 0;
}

/**
 * Loads of one operand's tile into workgroup memory, staged `[BK][rows]` (k-major) so the inner
 * loop reads vec4 runs along rows (A) or columns (B). `direct` loads and stores at once;
 * `load` only fills the registers `pf<name><round>` from the slice at `kBase` (so the loads are in
 * flight during the compute of the current slice), and `store` writes those registers to staging.
 *
 * @param name `A` or `B`.
 * @param rowsDim Tile extent along m (A) or n (B).
 * @param kMajor Whether the operand is stored with k as its slow dim (Aᵀ, B).
 */
function tileLoad(
  name: "A" | "B",
  rowsDim: number,
  kMajor: boolean,
  t: SmemTile,
  threads: number,
  mode: "direct" | "load" | "store" = "direct",
  kBase = "k0",
): string {
  const sh = `tile${name}`;
  const v = t.vec4 ? 4 : 1;
  const total = (rowsDim * t.bk) / v;
  const rounds = Math.ceil(total / threads);
  const origin = name === "A" ? "row0" : "col0";
  const extent = name === "A" ? "p.m" : "p.n";
  // Leading dim of the stored matrix: the contiguous one.
  const lead = kMajor ? extent : "p.k";
  const base = name === "A" ? "abase" : "bbase";
  const zero = t.vec4 ? "vec4f(0.0)" : "0.0";
  let s = "";
  for (let r = 0; r < rounds; r++) {
    const reg = `pf${name}${r}`;
    s += `  {\n    let l = lid + ${r * threads}u;\n`;
    if ((r + 1) * threads > total) s += `    if (l < ${total}u) {\n`;
    // kMajor: stored [k][rows], a vec4 runs along rows and lands in staging as one vec4.
    // Otherwise stored [rows][k]: a vec4 runs along k; its lanes go to 4 staging rows.
    const per = kMajor ? rowsDim / v : t.bk / v;
    s += kMajor
      ? `    let kr = l / ${per}u;\n    let rr = (l % ${per}u) * ${v}u;\n`
      : `    let rr = l / ${per}u;\n    let kr = (l % ${per}u) * ${v}u;\n`;
    if (mode !== "store") {
      const at = kMajor ? `gk * ${lead} + gr` : `gr * ${lead} + gk`;
      const dst = mode === "load" ? reg : "val";
      s += `    let gk = ${kBase} + kr;\n    let gr = ${origin} + rr;\n`;
      if (mode === "direct") s += `    var val = ${zero};\n`;
      else s += `    ${reg} = ${zero};\n`;
      s += `    if (gk < p.k && gr < ${extent}) { ${dst} = ${
        t.vec4 ? "vec4f" : "f32"
      }(${name}[(${base} + ${at}) / ${v}u]); }\n`;
    } else {
      s += `    let val = ${reg};\n`;
    }
    if (mode !== "load") {
      if (kMajor && t.vec4) s += `    ${sh}[(kr * ${rowsDim}u + rr) / 4u] = val;\n`;
      else if (t.vec4) {
        for (let j = 0; j < 4; j++) {
          s +=
            `    { let e = (kr + ${j}u) * ${rowsDim}u + rr; ${sh}[e / 4u][e % 4u] = val[${j}]; }\n`;
        }
      } else s += `    let e = kr * ${rowsDim}u + rr;\n    ${sh}[e / 4u][e % 4u] = val;\n`;
    }
    if ((r + 1) * threads > total) s += "    }\n";
    s += "  }\n";
  }
  return s;
}

/** Declarations of the prefetch registers of one operand (see {@link tileLoad}). */
function prefetchRegs(name: "A" | "B", rowsDim: number, t: SmemTile, threads: number): string {
  const rounds = Math.ceil((rowsDim * t.bk) / (t.vec4 ? 4 : 1) / threads);
  let s = "";
  for (let r = 0; r < rounds; r++) s += `  var pf${name}${r} = ${t.vec4 ? "vec4f(0.0)" : "0.0"};\n`;
  return s;
}

/**
 * WGSL of one tiling.
 *
 * @param dtype Storage dtype (f32 or f16).
 * @param ta A stored transposed.
 * @param tb B stored transposed.
 * @param t The tiling.
 * @returns The kernel source.
 * @example
 * ```ts
 * import { matmulSmemWgsl } from "./matmul_smem.ts";
 * import assert from "node:assert/strict";
 * const src = matmulSmemWgsl("f32", false, true, { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4, vec4: true });
 * assert.match(src, /var<workgroup> tileA: array<vec4f, 256>/);
 * ```
 */
export function matmulSmemWgsl(dtype: DType, ta: boolean, tb: boolean, t: SmemTile): string {
  const threads = smemThreads(t);
  const wx = t.bn / t.tn, wy = t.bm / t.tm;
  const tn4 = t.tn / 4;
  let decl = "", inner = "", store = "";
  for (let r = 0; r < t.tm; r++) {
    for (let c = 0; c < tn4; c++) decl += `  var acc${r}_${c} = vec4f(0.0);\n`;
  }
  // Operands of one k step: TM values of A (as TM/4 vec4 of staging), TN/4 vec4 of B.
  for (let i = 0; i < t.tm / 4; i++) {
    inner += `      let a${i} = tileA[kk * ${t.bm / 4}u + ty * ${t.tm / 4}u + ${i}u];\n`;
  }
  for (let c = 0; c < tn4; c++) {
    inner += `      let b${c} = tileB[kk * ${t.bn / 4}u + tx * ${tn4}u + ${c}u];\n`;
  }
  for (let r = 0; r < t.tm; r++) {
    for (let c = 0; c < tn4; c++) {
      inner += `      acc${r}_${c} = fma(vec4f(a${r >> 2}[${r & 3}]), b${c}, acc${r}_${c});\n`;
    }
  }
  for (let r = 0; r < t.tm; r++) {
    store += `  if (crow + ${r}u < p.m) {\n    let o = cbase + (crow + ${r}u) * p.n + ccol;\n`;
    for (let c = 0; c < tn4; c++) {
      for (let j = 0; j < 4; j++) {
        const col = 4 * c + j;
        store +=
          `    if (ccol + ${col}u < p.n) { C[o + ${col}u] = ${dtype}(acc${r}_${c}[${j}]); }\n`;
      }
    }
    store += "  }\n";
  }
  // Without prefetch each slice is loaded and staged at the top of its iteration; with it the
  // registers filled during the previous iteration are staged, and the next slice's loads are
  // issued right after the barrier so they overlap this slice's arithmetic.
  const [ka, kb] = [ta, !tb];
  const prologue = t.prefetch
    ? prefetchRegs("A", t.bm, t, threads) + prefetchRegs("B", t.bn, t, threads) +
      tileLoad("A", t.bm, ka, t, threads, "load", "0u") +
      tileLoad("B", t.bn, kb, t, threads, "load", "0u")
    : "";
  const stage = t.prefetch
    ? tileLoad("A", t.bm, ka, t, threads, "store") + tileLoad("B", t.bn, kb, t, threads, "store")
    : tileLoad("A", t.bm, ka, t, threads) + tileLoad("B", t.bn, kb, t, threads);
  const prefetchNext = t.prefetch
    ? tileLoad("A", t.bm, ka, t, threads, "load", `k0 + ${t.bk}u`) +
      tileLoad("B", t.bn, kb, t, threads, "load", `k0 + ${t.bk}u`)
    : "";
  const header = MATMUL_SMEM.header({
    types: { T: dtype, V: t.vec4 ? `vec4<${dtype}>` : dtype },
  });
  return `${header}
var<workgroup> tileA: array<vec4f, ${(t.bk * t.bm) / 4}>;
var<workgroup> tileB: array<vec4f, ${(t.bk * t.bn) / 4}>;

@compute @workgroup_size(${wx}, ${wy})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid3: vec3u) {
  let tx = lid3.x;
  let ty = lid3.y;
  let lid = ty * ${wx}u + tx;
  let row0 = wid.y * ${t.bm}u;
  let col0 = wid.x * ${t.bn}u;
  let abase = wid.z * p.sa;
  let bbase = wid.z * p.sb;
  let cbase = wid.z * p.sc;
${decl}${prologue}  for (var k0 = 0u; k0 < p.k; k0 = k0 + ${t.bk}u) {
${stage}    workgroupBarrier();
${prefetchNext}
    for (var kk = 0u; kk < ${t.bk}u; kk = kk + 1u) {
${inner}    }
    workgroupBarrier();
  }
  let crow = row0 + ty * ${t.tm}u;
  let ccol = col0 + tx * ${t.tn}u;
${store}}`;
}

/**
 * The dispatch of one problem on one tiling (same buffers and CPU twin as every matmul kernel).
 *
 * @param name Variant name, part of the pipeline key.
 * @param t The tiling.
 * @param p The problem.
 * @param a Storage of A.
 * @param b Storage of B.
 * @param c Storage of C.
 * @param cpu The CPU twin of the problem.
 * @param native The host kernel, when one exists.
 * @returns The dispatch.
 * @example
 * ```ts
 * import { matmulSmemDispatch } from "./matmul_smem.ts";
 * import assert from "node:assert/strict";
 * const s = { id: 0, bytes: 64 };
 * const p = { m: 4, n: 4, k: 4, batch: 1, strideA: 0, strideB: 0, transposeA: false, transposeB: false, dtype: "f32" as const };
 * const d = matmulSmemDispatch("smem64", { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4, vec4: true }, p, s, s, s, () => {});
 * assert.deepEqual(d.workgroups, [1, 1, 1]);
 * ```
 */
export function matmulSmemDispatch(
  name: string,
  t: SmemTile,
  p: SmemProblem,
  a: Storage,
  b: Storage,
  c: Storage,
  cpu: Dispatch["cpu"],
  native?: Dispatch["native"],
): Dispatch {
  const flags = `${p.transposeA ? "T" : "N"}${p.transposeB ? "T" : "N"}`;
  return {
    op: "matmul",
    key: MATMUL_SMEM.key(name, p.dtype, flags),
    wgsl: () => matmulSmemWgsl(p.dtype, p.transposeA, p.transposeB, t),
    cpu,
    native,
    buffers: [a, b, c],
    uniforms: MATMUL_SMEM.uniforms({
      m: p.m,
      n: p.n,
      k: p.k,
      sa: p.strideA,
      sb: p.strideB,
      sc: p.m * p.n,
    }),
    workgroups: [Math.ceil(p.n / t.bn), Math.ceil(p.m / t.bm), p.batch],
  };
}
