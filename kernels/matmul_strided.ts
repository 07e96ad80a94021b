/**
 * Strided matmul `C[o, i] = op(A[o, i]) · op(B[o, i])`: a two-level batch `(o, i)` where every
 * operand and the output is a strided view — a stride per batch level and a row stride (leading
 * dimension) — so attention reads q, k, v stored `[B, T, H, hd]` as `[B, H, T, hd]` matrices and
 * writes its context straight back into `[B, T, H, hd]`, with no permute copies.
 *
 * Three WGSL kernels with the arithmetic of the `tiled`, `general` and `gemv` kernels of
 * `kernels/matmul.ts` (the same FMA order) and every address computed from the layouts instead
 * of from `m`, `n`, `k`: on the same data they give the same bits as the contiguous kernels
 * after a permute.
 * - **tiled**: vec4 loads along each operand's contiguous dim. Needs K % 4 = 0, M % 8 = 0 (A
 *   transposed), N % 8 = 0 (B not transposed), and every stride and leading dimension of A and
 *   B a multiple of 4 (a vec4 load must start on a vec4 boundary).
 * - **general**: scalar loads with clamped indices, any shape and any strides.
 * - **gemv**: one row of A per matrix (decoding), K % 4 = 0, N % 4 = 0 unless B is transposed,
 *   strides of A and B in multiples of 4.
 *
 * It is a separate kernel family, not more fields on `MatmulProblem`, so the contiguous kernels
 * and their variant selection stay as they are.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { type DType, typedView } from "../src/core/dtype.ts";
import { ValueError } from "../src/core/errors.ts";
import { matmulStridedNative } from "./native/matmul_strided.ts";
import { defineKernel } from "./spec.ts";

/** Where the matrices of one operand lie in its buffer, in elements. */
export interface MatrixLayout {
  /** Between consecutive matrices of the outer batch level. */
  outer: number;
  /** Between consecutive matrices of the inner batch level. */
  inner: number;
  /** Between consecutive stored rows (the leading dimension; the stored row is contiguous). */
  ld: number;
}

/** One strided matmul. */
export interface StridedMatmulProblem {
  /** Rows of op(A) and C. */
  m: number;
  /** Columns of op(B) and C. */
  n: number;
  /** Inner dim. */
  k: number;
  /** Outer batch count. */
  batchOuter: number;
  /** Inner batch count (batch index `z = o · batchInner + i`). */
  batchInner: number;
  /** A: stored `[m, k]` per matrix, or `[k, m]` with `transposeA`. */
  a: MatrixLayout;
  /** B: stored `[k, n]` per matrix, or `[n, k]` with `transposeB`. */
  b: MatrixLayout;
  /** C: stored `[m, n]` per matrix. */
  c: MatrixLayout;
  /** A is stored `[k, m]` and read transposed. */
  transposeA: boolean;
  /** B is stored `[n, k]` and read transposed. */
  transposeB: boolean;
  /** Storage dtype of A, B and C (accumulation is always f32; the twin's is f64). */
  dtype: DType;
  /**
   * Scale of the product, `C = alpha · op(A) · op(B)`, applied once to each accumulated sum
   * before it is stored (as BLAS applies its alpha). Default 1 (a multiply by 1 is exact).
   */
  alpha?: number;
}

/** Which kernel a strided problem runs on. */
export type StridedMatmulVariant = "tiled" | "general" | "gemv";

const TM = 8, TN = 8, WX = 8, WY = 8;

/** Whether every batch stride and the leading dimension of a layout is a whole number of vec4s. */
function vec4Layout(l: MatrixLayout, withLd = true): boolean {
  return l.outer % 4 === 0 && l.inner % 4 === 0 && (!withLd || l.ld % 4 === 0);
}

/** Whether the tiled kernel's vec4 loads are legal for a problem. */
function tiledApplies(p: StridedMatmulProblem): boolean {
  return p.k % 4 === 0 && (p.transposeA ? p.m % 8 === 0 : true) &&
    (p.transposeB ? true : p.n % 8 === 0) && vec4Layout(p.a) && vec4Layout(p.b);
}

/** Whether the GEMV's vec4 loads are legal: one row of A, read along k. */
function gemvApplies(p: StridedMatmulProblem): boolean {
  return p.m === 1 && !p.transposeA && p.k % 4 === 0 && (p.transposeB || p.n % 4 === 0) &&
    vec4Layout(p.a, false) && vec4Layout(p.b);
}

/**
 * Picks the kernel as the contiguous matmul does: the GEMV for one row (decoding), the vec4
 * tiled kernel when shapes and strides allow vec4 loads, else the general one.
 *
 * @param p The problem.
 * @returns The variant.
 *
 * @example
 * ```ts
 * import { stridedMatmulVariant } from "./matmul_strided.ts";
 * import assert from "node:assert/strict";
 * const heads = (hd: number) => ({ outer: 16 * 4 * hd, inner: hd, ld: 4 * hd }); // [B, 16, 4, hd]
 * const p = (hd: number) => ({
 *   m: 16, n: 16, k: hd, batchOuter: 2, batchInner: 4, transposeA: false, transposeB: true,
 *   a: heads(hd), b: heads(hd), c: { outer: 4 * 256, inner: 256, ld: 16 }, dtype: "f32" as const,
 * });
 * assert.equal(stridedMatmulVariant(p(32)), "tiled");
 * assert.equal(stridedMatmulVariant(p(6)), "general"); // heads start off vec4 boundaries
 * ```
 */
export function stridedMatmulVariant(p: StridedMatmulProblem): StridedMatmulVariant {
  if (gemvApplies(p)) return "gemv";
  return tiledApplies(p) ? "tiled" : "general";
}

/** All variants share bindings and parameters; `V` is the operand load type. */
const MATMUL_STRIDED = defineKernel({
  name: "matmulStrided",
  bindings: [
    { name: "A", type: "V", access: "read" },
    { name: "B", type: "V", access: "read" },
    { name: "C", type: "T", access: "read_write" },
  ],
  params: {
    m: "u32",
    n: "u32",
    k: "u32",
    inner: "u32",
    ao: "u32",
    ai: "u32",
    lda: "u32",
    bo: "u32",
    bi: "u32",
    ldb: "u32",
    co: "u32",
    ci: "u32",
    ldc: "u32",
    alpha: "f32",
  },
});

const header = (dtype: DType, vec: boolean) =>
  MATMUL_STRIDED.header({ types: { T: dtype, V: vec ? `vec4<${dtype}>` : dtype } });

/** Entry point, batch bases and the early exit shared by the tiled and general kernels. */
function prologue(): string {
  return `@compute @workgroup_size(${WX}, ${WY})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let row0 = gid.y * ${TM}u;
  let col0 = gid.x * ${TN}u;
  let zo = gid.z / p.inner;
  let zi = gid.z % p.inner;
  let abase = zo * p.ao + zi * p.ai;
  let bbase = zo * p.bo + zi * p.bi;
  let cbase = zo * p.co + zi * p.ci;
  if (row0 >= p.m || col0 >= p.n) { return; }
`;
}

function accumulators(): string {
  let s = "";
  for (let r = 0; r < TM; r++) {
    for (let c = 0; c < TN / 4; c++) s += `  var acc${r}_${c} = vec4f(0.0);\n`;
  }
  return s;
}

function storeBlock(dtype: DType): string {
  let s = "";
  for (let r = 0; r < TM; r++) {
    s += `  if (row0 + ${r}u < p.m) {\n    let crow = cbase + (row0 + ${r}u) * p.ldc + col0;\n`;
    for (let c = 0; c < TN / 4; c++) {
      for (let j = 0; j < 4; j++) {
        const col = 4 * c + j;
        s +=
          `    if (col0 + ${col}u < p.n) { C[crow + ${col}u] = ${dtype}(acc${r}_${c}[${j}] * p.alpha); }\n`;
      }
    }
    s += "  }\n";
  }
  return s;
}

/**
 * WGSL of the vec4 register-tiled strided kernel.
 *
 * @param dtype Storage dtype.
 * @param ta A transposed.
 * @param tb B transposed.
 * @returns The WGSL source.
 */
export function matmulStridedTiledWgsl(dtype: DType, ta: boolean, tb: boolean): string {
  let idx = "";
  // Clamp rows/cols that fall off the edge so loads stay in bounds; their results are not stored.
  if (!ta) { for (let r = 0; r < TM; r++) idx += `  let m${r} = min(row0 + ${r}u, p.m - 1u);\n`; }
  if (tb) { for (let c = 0; c < TN; c++) idx += `  let n${c} = min(col0 + ${c}u, p.n - 1u);\n`; }
  let body = "";
  const aVal: string[][] = [];
  if (!ta) {
    for (let r = 0; r < TM; r++) {
      body += `    let a${r} = vec4f(A[(abase + m${r} * p.lda + k) / 4u]);\n`;
    }
    for (let r = 0; r < TM; r++) aVal.push([0, 1, 2, 3].map((kk) => `a${r}[${kk}]`));
  } else {
    for (let kk = 0; kk < 4; kk++) {
      for (let j = 0; j < TM / 4; j++) {
        body +=
          `    let at${kk}_${j} = vec4f(A[(abase + (k + ${kk}u) * p.lda + row0) / 4u + ${j}u]);\n`;
      }
    }
    for (let r = 0; r < TM; r++) aVal.push([0, 1, 2, 3].map((kk) => `at${kk}_${r >> 2}[${r & 3}]`));
  }
  const bVec: string[][] = [];
  if (!tb) {
    for (let kk = 0; kk < 4; kk++) {
      const row: string[] = [];
      for (let c = 0; c < TN / 4; c++) {
        body +=
          `    let b${kk}_${c} = vec4f(B[(bbase + (k + ${kk}u) * p.ldb + col0) / 4u + ${c}u]);\n`;
        row.push(`b${kk}_${c}`);
      }
      bVec.push(row);
    }
  } else {
    for (let c = 0; c < TN; c++) {
      body += `    let bt${c} = vec4f(B[(bbase + n${c} * p.ldb + k) / 4u]);\n`;
    }
    for (let kk = 0; kk < 4; kk++) {
      const row: string[] = [];
      for (let c = 0; c < TN / 4; c++) {
        row.push(`vec4f(${[0, 1, 2, 3].map((j) => `bt${4 * c + j}[${kk}]`).join(", ")})`);
      }
      bVec.push(row);
    }
  }
  for (let kk = 0; kk < 4; kk++) {
    for (let r = 0; r < TM; r++) {
      for (let c = 0; c < TN / 4; c++) {
        body += `    acc${r}_${c} = fma(vec4f(${aVal[r]![kk]}), ${bVec[kk]![c]}, acc${r}_${c});\n`;
      }
    }
  }
  return `${header(dtype, true)}
${prologue()}${idx}${accumulators()}  for (var k = 0u; k < p.k; k = k + 4u) {
${body}  }
${storeBlock(dtype)}}`;
}

/**
 * WGSL of the general strided kernel: scalar loads, clamped indices, any shape and strides.
 *
 * @param dtype Storage dtype.
 * @param ta A transposed.
 * @param tb B transposed.
 * @returns The WGSL source.
 */
export function matmulStridedGeneralWgsl(dtype: DType, ta: boolean, tb: boolean): string {
  let idx = "", body = "";
  for (let r = 0; r < TM; r++) idx += `  let m${r} = min(row0 + ${r}u, p.m - 1u);\n`;
  for (let c = 0; c < TN; c++) idx += `  let n${c} = min(col0 + ${c}u, p.n - 1u);\n`;
  for (let r = 0; r < TM; r++) {
    body += `    let a${r} = f32(A[abase + ${ta ? `k * p.lda + m${r}` : `m${r} * p.lda + k`}]);\n`;
  }
  for (let c = 0; c < TN / 4; c++) {
    const comps = [0, 1, 2, 3].map((j) => {
      const n = `n${4 * c + j}`;
      return `f32(B[bbase + ${tb ? `${n} * p.ldb + k` : `k * p.ldb + ${n}`}])`;
    });
    body += `    let b${c} = vec4f(${comps.join(", ")});\n`;
  }
  for (let r = 0; r < TM; r++) {
    for (let c = 0; c < TN / 4; c++) {
      body += `    acc${r}_${c} = fma(vec4f(a${r}), b${c}, acc${r}_${c});\n`;
    }
  }
  return `${header(dtype, false)}
${prologue()}${idx}${accumulators()}  for (var k = 0u; k < p.k; k = k + 1u) {
${body}  }
${storeBlock(dtype)}}`;
}

const GEMV_WG = 64;

/**
 * WGSL of the strided GEMV (one row of A per matrix, as in decoding), the contiguous GEMV's
 * arithmetic with B's rows `ldb` apart: `y = x · B` (B `[k, n]`: 4 consecutive outputs per
 * invocation, or 16 when `wide`) or `y = x · Bᵀ` (B `[n, k]`: one output per invocation, a vec4
 * dot product along k).
 *
 * @param dtype Storage dtype.
 * @param tb B transposed.
 * @param wide 16 outputs per invocation (needs N % 16 = 0; B not transposed).
 * @returns The WGSL source.
 */
export function matmulStridedGemvWgsl(dtype: DType, tb: boolean, wide = false): string {
  const bases = `  let zo = gid.z / p.inner;
  let zi = gid.z % p.inner;
  let abase = (zo * p.ao + zi * p.ai) / 4u;
  let cbase = zo * p.co + zi * p.ci;`;
  if (!tb) {
    // Output vec4 j of the row; B's row k starts at vec4 bbase + k · ldb4.
    const loop = wide
      ? `  var a0 = vec4f(0.0); var a1 = vec4f(0.0); var a2 = vec4f(0.0); var a3 = vec4f(0.0);
  for (var k = 0u; k < p.k; k = k + 4u) {
    let x = vec4f(A[abase + k / 4u]);
    for (var t = 0u; t < 4u; t = t + 1u) {
      let r = bbase + (k + t) * ldb4;
      let xv = vec4f(x[t]);
      a0 = fma(xv, vec4f(B[r]), a0);
      a1 = fma(xv, vec4f(B[r + 1u]), a1);
      a2 = fma(xv, vec4f(B[r + 2u]), a2);
      a3 = fma(xv, vec4f(B[r + 3u]), a3);
    }
  }
  let o = cbase + j * 4u;
  for (var c = 0u; c < 4u; c = c + 1u) {
    let v = select(select(select(a3, a2, c == 2u), a1, c == 1u), a0, c == 0u) * p.alpha;
    C[o + 4u * c] = ${dtype}(v[0]); C[o + 4u * c + 1u] = ${dtype}(v[1]);
    C[o + 4u * c + 2u] = ${dtype}(v[2]); C[o + 4u * c + 3u] = ${dtype}(v[3]);
  }`
      : `  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  for (var k = 0u; k < p.k; k = k + 4u) {
    let x = vec4f(A[abase + k / 4u]);
    let r = bbase + k * ldb4;
    acc0 = fma(vec4f(x[0]), vec4f(B[r]), acc0);
    acc1 = fma(vec4f(x[1]), vec4f(B[r + ldb4]), acc1);
    acc0 = fma(vec4f(x[2]), vec4f(B[r + 2u * ldb4]), acc0);
    acc1 = fma(vec4f(x[3]), vec4f(B[r + 3u * ldb4]), acc1);
  }
  let acc = (acc0 + acc1) * p.alpha;
  let o = cbase + j * 4u;
  C[o] = ${dtype}(acc[0]); C[o + 1u] = ${dtype}(acc[1]);
  C[o + 2u] = ${dtype}(acc[2]); C[o + 3u] = ${dtype}(acc[3]);`;
    return `${header(dtype, true)}
@compute @workgroup_size(${GEMV_WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let j = gid.x${wide ? " * 4u" : ""};
  if (j * 4u >= p.n) { return; }
${bases}
  let ldb4 = p.ldb / 4u;
  let bbase = (zo * p.bo + zi * p.bi) / 4u + j;
${loop}
}`;
  }
  return `${header(dtype, true)}
@compute @workgroup_size(${GEMV_WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let j = gid.x;
  if (j >= p.n) { return; }
${bases}
  let bbase = (zo * p.bo + zi * p.bi + j * p.ldb) / 4u;
  var acc0 = vec4f(0.0);
  var acc1 = vec4f(0.0);
  var k = 0u;
  for (; k + 8u <= p.k; k = k + 8u) {
    acc0 = fma(vec4f(A[abase + k / 4u]), vec4f(B[bbase + k / 4u]), acc0);
    acc1 = fma(vec4f(A[abase + k / 4u + 1u]), vec4f(B[bbase + k / 4u + 1u]), acc1);
  }
  if (k < p.k) {
    acc0 = fma(vec4f(A[abase + k / 4u]), vec4f(B[bbase + k / 4u]), acc0);
  }
  let acc = acc0 + acc1;
  C[cbase + j] = ${dtype}((acc[0] + acc[1] + acc[2] + acc[3]) * p.alpha);
}`;
}

/**
 * CPU twin: every output row accumulated in f64 over k in order (as the contiguous twin does),
 * scaled by alpha, rounded to the storage dtype.
 *
 * @param p The problem.
 * @param a A's buffer.
 * @param b B's buffer.
 * @param c C's buffer (only the elements the layout of C names are written).
 */
export function matmulStridedCpu(
  p: StridedMatmulProblem,
  a: ArrayBuffer,
  b: ArrayBuffer,
  c: ArrayBuffer,
): void {
  const A = typedView(p.dtype, a), B = typedView(p.dtype, b), C = typedView(p.dtype, c);
  const { m, n, k } = p;
  const lda = p.a.ld, ldb = p.b.ld, ldc = p.c.ld, alpha = Math.fround(p.alpha ?? 1);
  const row = new Float64Array(n);
  for (let zo = 0; zo < p.batchOuter; zo++) {
    for (let zi = 0; zi < p.batchInner; zi++) {
      const ao = zo * p.a.outer + zi * p.a.inner, bo = zo * p.b.outer + zi * p.b.inner;
      const co = zo * p.c.outer + zi * p.c.inner;
      for (let i = 0; i < m; i++) {
        row.fill(0);
        for (let kk = 0; kk < k; kk++) {
          const av = p.transposeA ? A[ao + kk * lda + i]! : A[ao + i * lda + kk]!;
          if (av === 0) continue;
          if (p.transposeB) {
            for (let j = 0; j < n; j++) row[j] += av * B[bo + j * ldb + kk]!;
          } else {
            const rb = bo + kk * ldb;
            for (let j = 0; j < n; j++) row[j] += av * B[rb + j]!;
          }
        }
        const rc = co + i * ldc;
        for (let j = 0; j < n; j++) C[rc + j] = row[j]! * alpha;
      }
    }
  }
}

/**
 * The dispatch of one strided matmul problem.
 *
 * @param p The problem.
 * @param a Storage of A.
 * @param b Storage of B.
 * @param c Storage of C.
 * @param variant Force a kernel (tests cover each); default picks one. Forcing `tiled` on a
 * problem it cannot run (a vec4 load off a vec4 boundary would read the wrong elements) throws.
 * @returns The dispatch.
 *
 * @example Two `[2, 2]` matrices stored side by side in rows of 4 (`[2, 2, 2]` permuted `[1, 0, 2]`)
 * ```ts
 * import { matmulStridedDispatch } from "./matmul_strided.ts";
 * import assert from "node:assert/strict";
 * const d = matmulStridedDispatch(
 *   {
 *     m: 2, n: 2, k: 2, batchOuter: 1, batchInner: 2, transposeA: false, transposeB: false,
 *     a: { outer: 0, inner: 2, ld: 4 }, b: { outer: 0, inner: 0, ld: 2 },
 *     c: { outer: 0, inner: 4, ld: 2 }, dtype: "f32",
 *   },
 *   null as never, null as never, null as never,
 * );
 * const a = new Float32Array([1, 2, 5, 6, 3, 4, 7, 8]), b = new Float32Array([1, 0, 0, 1]);
 * const c = new Float32Array(8);
 * d.cpu([a.buffer, b.buffer, c.buffer]); // B is the identity: C[i] is the i-th matrix of A
 * assert.deepEqual([...c], [1, 2, 3, 4, 5, 6, 7, 8]);
 * ```
 */
export function matmulStridedDispatch(
  p: StridedMatmulProblem,
  a: Storage,
  b: Storage,
  c: Storage,
  variant: StridedMatmulVariant = stridedMatmulVariant(p),
): Dispatch {
  const ta = p.transposeA, tb = p.transposeB;
  if (
    (variant === "tiled" && !tiledApplies(p)) || (variant === "gemv" && !gemvApplies(p))
  ) {
    throw new ValueError(
      "matmulStrided",
      `the ${variant} kernel cannot run m=${p.m} n=${p.n} k=${p.k} ` +
        `(transposeA=${ta}, transposeB=${tb}), A ${JSON.stringify(p.a)}, ` +
        `B ${JSON.stringify(p.b)}: its vec4 loads need K % 4 = 0, N % 8 = 0 (B not transposed; ` +
        `N % 4 for the GEMV), M % 8 = 0 (A transposed; the GEMV takes one untransposed row) ` +
        `and strides of A and B in multiples of 4`,
    );
  }
  let wgsl: () => string;
  let workgroups: [number, number, number];
  let variantKey: string = variant;
  const batch = p.batchOuter * p.batchInner;
  if (variant === "gemv") {
    const wide = !tb && p.n % 16 === 0;
    wgsl = () => matmulStridedGemvWgsl(p.dtype, tb, wide);
    workgroups = [Math.ceil((tb ? p.n : p.n / (wide ? 16 : 4)) / GEMV_WG), 1, batch];
    if (wide) variantKey = "gemv16";
  } else {
    wgsl = variant === "tiled"
      ? () => matmulStridedTiledWgsl(p.dtype, ta, tb)
      : () => matmulStridedGeneralWgsl(p.dtype, ta, tb);
    workgroups = [Math.ceil(p.n / (TN * WX)), Math.ceil(p.m / (TM * WY)), batch];
  }
  return {
    op: "matmulStrided",
    key: MATMUL_STRIDED.key(variantKey, p.dtype, `${ta ? "T" : "N"}${tb ? "T" : "N"}`),
    wgsl,
    cpu: ([x, y, z]) => matmulStridedCpu(p, x!, y!, z!),
    native: p.dtype === "f32"
      ? ([x, y, z], rt) =>
        rt.blas && p.k > 0
          ? matmulStridedNative(p, x!, y!, z!, rt, rt.blas)
          : matmulStridedCpu(p, x!, y!, z!)
      : undefined,
    buffers: [a, b, c],
    uniforms: MATMUL_STRIDED.uniforms({
      m: p.m,
      n: p.n,
      k: p.k,
      inner: p.batchInner,
      ao: p.a.outer,
      ai: p.a.inner,
      lda: p.a.ld,
      bo: p.b.outer,
      bi: p.b.inner,
      ldb: p.b.ld,
      co: p.c.outer,
      ci: p.c.inner,
      ldc: p.c.ld,
      alpha: p.alpha ?? 1,
    }),
    workgroups,
  };
}
