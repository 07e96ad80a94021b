/**
 * Dense matmul `C[b] = op(A[b]) · op(B[b])`, batched, with `transposeA` / `transposeB`.
 *
 * Two WGSL kernels and a GEMV:
 * - **tiled**: each invocation keeps an 8×8 block of C in registers (16 vec4 accumulators) and
 *   streams A and B with vec4 loads along whichever dim is contiguous. No workgroup memory: on
 *   a CPU adapter (llvmpipe) the CPU caches do that job and barriers are expensive. Needs
 *   K % 4 = 0, N % 8 = 0 (unless B is transposed) and M % 8 = 0 (if A is transposed).
 * - **general**: the same 8×8 register block with scalar loads and clamped indices, any shape.
 * - **gemv**: one row of A (decoding): each invocation owns 16 outputs (4 when N % 16 ≠ 0) and
 *   walks all of K.
 *
 * Batch broadcasting: a batch stride of 0 reuses one matrix for every batch (e.g. a weight).
 *
 * The three generators are written once for every family of such kernels: a
 * {@link MatmulFamily} says where the matrices lie (batch bases and leading dimensions, as WGSL
 * over the family's parameters) and how sums are scaled before the store, and the loops, FMA
 * order, tiling and vec4 loads are shared. This file's family is contiguous; the strided one of
 * kernels/matmul_strided.ts (attention's views) is the other, and the grouped kernels of
 * kernels/linear_group.ts reuse the parts ({@link matmulTiledParts}, {@link storeBlock}).
 *
 * Kernels for discrete GPUs (shared-memory tilings, workgroup GEMVs: kernels/matmul_tuning.ts)
 * run when forced by name or when an autotuning device measured one of them fastest for the
 * problem's class: {@link matmulDispatch} offers them as a `tune` of the default dispatch.
 *
 * @module
 */
import type { Dispatch, Storage, Tunable } from "../src/backend/backend.ts";
import { bytesPerElement, type DType, typedView } from "../src/core/dtype.ts";
import { ValueError } from "../src/core/errors.ts";
import { gemvWgDispatch } from "./gemv_wg.ts";
import { matmulSmemDispatch } from "./matmul_smem.ts";
import {
  GEMV_SHAPES,
  type GemvWgVariant,
  isTunedVariant,
  matmulCandidates,
  matmulOperandSizes,
  matmulTuneKey,
  sampleOperand,
  SMEM_TILES,
  type SmemVariant,
} from "./matmul_tuning.ts";
import { matmulNative } from "./native/matmul.ts";
import { type DeclaredKernel, defineKernel, type ParamTypes } from "./spec.ts";

/** Problem description of one (batched) matmul. */
export interface MatmulProblem {
  /** Rows of op(A) and C. */
  m: number;
  /** Columns of op(B) and C. */
  n: number;
  /** Inner dim. */
  k: number;
  /** Number of batches (C has `batch` matrices). */
  batch: number;
  /** Elements between consecutive A matrices (0 broadcasts one A). */
  strideA: number;
  /** Elements between consecutive B matrices (0 broadcasts one B). */
  strideB: number;
  /** A is stored `[k, m]` and read transposed. */
  transposeA: boolean;
  /** B is stored `[n, k]` and read transposed. */
  transposeB: boolean;
  /** Storage dtype of A, B and C (accumulation is always f32). */
  dtype: DType;
}

/** Default register block (rows = columns) and workgroup size (x and y) of the blocked kernels. */
const BLOCK = 8, WX = 8, WY = 8;

/**
 * Which kernel a problem runs on: the llvmpipe-tuned defaults (`tiled`, `general`, `gemv`) or a
 * kernel for discrete GPUs from kernels/matmul_tuning.ts.
 */
export type MatmulVariant =
  | "tiled"
  | "tiled16"
  | "general"
  | "gemv"
  // Spelled out (not derived from the table) so the public type names no internal one; a table
  // name missing here fails to compile where `matmulTunable` lists the candidates.
  | "smem64x64"
  | "smem128x128"
  | "smem128x64"
  | "smem64x64k32"
  | "smem128x128k8"
  | "smem128x128p"
  | "smem64x64p"
  | "smem64x64s"
  | "smem32x32s"
  | "gemvSplitK16x16"
  | "gemvSplitK8x32"
  | "gemvSplitK32x8"
  | "gemvSplitK4x64"
  | "gemvSplitK2x128"
  | "gemvDot64x4"
  | "gemvDot32x8"
  | "gemvDot128x2";

/** The fields of `MatmulProblem` every variant understands; see {@link matmulDispatch}. */
const UNDERSTOOD_FIELDS = new Set([
  "m",
  "n",
  "k",
  "batch",
  "strideA",
  "strideB",
  "transposeA",
  "transposeB",
  "dtype",
]);

/**
 * Picks the kernel for a problem: GEMV for one row, the vec4 tiled kernel when aligned,
 * the general kernel otherwise.
 */
export function matmulVariant(p: MatmulProblem): MatmulVariant {
  if (p.m === 1 && !p.transposeA && p.k % 4 === 0 && (p.transposeB || p.n % 4 === 0)) {
    return "gemv";
  }
  return blockFits(p, BLOCK) ? "tiled" : "general";
}

/**
 * Whether the tiled kernel's vec4 loads can run a problem with `block` × `block` register blocks:
 * K % 4 = 0, M a multiple of the block when A is transposed, N one unless B is.
 */
function blockFits(
  p: Pick<MatmulProblem, "m" | "n" | "k" | "transposeA" | "transposeB">,
  block: number,
): boolean {
  return p.k % 4 === 0 && (p.transposeA ? p.m % block === 0 : true) &&
    (p.transposeB ? true : p.n % block === 0);
}

/** All three variants share bindings and parameters; `V` is the operand load type. */
const MATMUL = defineKernel({
  name: "matmul",
  bindings: [
    { name: "A", type: "V", access: "read" },
    { name: "B", type: "V", access: "read" },
    { name: "C", type: "T", access: "read_write" },
  ],
  params: { m: "u32", n: "u32", k: "u32", batch: "u32", sa: "u32", sb: "u32", sc: "u32" },
});

/**
 * A family of default kernels (`tiled`, `general`, `gemv`): its declaration and where its
 * matrices lie, as WGSL over its parameters `p`. The contiguous family here and the strided one
 * of kernels/matmul_strided.ts differ only in these; the arithmetic is generated once.
 */
export interface MatmulFamily {
  /** Declares the bindings A, B (of the load type `V`) and C (of `T`), and the parameters. */
  kernel: Pick<DeclaredKernel<ParamTypes>, "header" | "key">;
  /** Statements that name, from `gid.z`, the batch indices the bases read. */
  batch: string;
  /** Element offset of the batch's matrix of A. */
  aBase: string;
  /** Element offset of the batch's matrix of B. */
  bBase: string;
  /** Element offset of the batch's matrix of C. */
  cBase: string;
  /** Elements between stored rows of A (stored `[m, k]`, or `[k, m]` when transposed). */
  lda(transposed: boolean): string;
  /** Elements between stored rows of B (stored `[k, n]`, or `[n, k]` when transposed). */
  ldb(transposed: boolean): string;
  /** Elements between rows of C. */
  ldc: string;
  /** Suffix applied to every f32 sum before it is stored ("" for none). */
  scale: string;
  /**
   * Rows and columns of C one invocation keeps in registers (default 8): the `tiled16` variant
   * takes 16, which loads each operand element for twice the FMAs.
   */
  block?: number;
  /**
   * A causal mask on one matrix of the product (the strided family's attention products): the
   * kernel reads the masked operand as zero outside its causal part and skips the k steps where
   * the whole register block would read zeros, or writes zeros outside C's causal part and skips
   * blocks that lie wholly outside it. The offset is the family's `p.off` (i32).
   */
  causal?: CausalMask;
}

/**
 * A causal (triangular) mask on one matrix of a product, the pattern of causal attention's
 * scores. The masked matrix is op(A) (`"a"`, shape `[m, k]`), op(B) (`"b"`, `[k, n]`) or C
 * (`"c"`, `[m, n]`); call its shape `[X, Y]` and an entry's indices `(x, y)`. Its entries with
 * `y − x ≤ Y − X` are kept (the lower triangle, aligned to the bottom-right corner as queries
 * at the end of a key cache see every key) or, when `transposed` (the matrix is the transpose
 * of such scores), those with `y − x ≥ Y − X`; every other entry counts as zero.
 */
export interface CausalMask {
  /** Which matrix is masked. */
  on: "a" | "b" | "c";
  /** Whether that matrix is the transpose of causal scores (keeps its upper triangle). */
  transposed: boolean;
}

/** The WGSL test that keeps a masked entry whose `y − x` is `d` (scalar or vec4i). */
function keepTest(mask: CausalMask, d: string, vec: boolean): string {
  const off = vec ? "vec4i(p.off)" : "p.off";
  return `(${d}) ${mask.transposed ? ">=" : "<="} ${off}`;
}

/** `value` (a vec4f or f32 expression) zeroed where `d` (its `y − x`) is masked. */
function maskedLoad(mask: CausalMask, value: string, d: string, vec: boolean): string {
  return `select(${vec ? "vec4f(0.0)" : "0.0"}, ${value}, ${keepTest(mask, d, vec)})`;
}

/**
 * Statements that bound the k loop of one register block under a causal mask: `lo`, `hi`
 * (the steps where some entry of the block is kept) and `safeLo`, `safeHi` (where every
 * entry is), as i32; with `step4` the bounds are widened to whole vec4 steps.
 */
function causalRange(mask: CausalMask, step4: boolean, block: number): string {
  const TM = block, TN = block;
  const fix: Record<string, string> = {
    "a": `  hi = r0 + p.off + ${TM};\n  safeHi = r0 + p.off + 1;\n`,
    "aT": `  lo = r0 + p.off;\n  safeLo = r0 + p.off + ${TM - 1};\n`,
    "b": `  lo = c0 - p.off;\n  safeLo = c0 + ${TN - 1} - p.off;\n`,
    "bT": `  hi = c0 - p.off + ${TN};\n  safeHi = c0 - p.off + 1;\n`,
    // A block wholly outside C's causal part accumulates nothing (and stores zeros).
    "c": `  if (c0 - r0 - ${TM - 1} > p.off) { hi = 0; }\n`,
    "cT": `  if (c0 + ${TN - 1} - r0 < p.off) { hi = 0; }\n`,
  };
  return `  let r0 = i32(row0);
  let c0 = i32(col0);
  let kn = i32(p.k);
  var lo = 0;
  var hi = kn;
  var safeLo = 0;
  var safeHi = kn;
${fix[mask.on + (mask.transposed ? "T" : "")]}  lo = clamp(lo, 0, kn);
  hi = clamp(hi, lo, kn);
${step4 ? "  lo = (lo / 4) * 4;\n  hi = min(kn, ((hi + 3) / 4) * 4);\n" : ""}`;
}

/** Packed matrices (rows `k`, `m`, `n` long), consecutive ones `sa`, `sb`, `sc` elements apart. */
const CONTIGUOUS: MatmulFamily = {
  kernel: MATMUL,
  batch: "  let b = gid.z;\n",
  aBase: "b * p.sa",
  bBase: "b * p.sb",
  cBase: "b * p.sc",
  lda: (transposed) => transposed ? "p.m" : "p.k",
  ldb: (transposed) => transposed ? "p.k" : "p.n",
  ldc: "p.n",
  scale: "",
};

const header = (family: MatmulFamily, dtype: DType, vec: boolean) =>
  family.kernel.header({ types: { T: dtype, V: vec ? `vec4<${dtype}>` : dtype } });

/** Binding names a generated matmul body reads and writes (the grouped kernels rename them). */
export interface MatmulNames {
  /** Left operand. */
  A: string;
  /** Right operand. */
  B: string;
  /** Output. */
  C: string;
}

const PLAIN: MatmulNames = { A: "A", B: "B", C: "C" };

/** The pieces of a register-blocked matmul kernel, joined by {@link matmulTiledWgsl} & co. */
export interface MatmulParts {
  /** Clamped row/column indices (before the loop). */
  idx: string;
  /** Accumulator declarations. */
  decl: string;
  /** The k loop, over `p.k`. */
  loop: string;
}

/**
 * The guarded store of the register block into `C` (named by `c`) of `family`, zero outside
 * C's causal part when the family masks C.
 */
export function storeBlock(dtype: DType, c = "C", family = CONTIGUOUS): string {
  const mask = family.causal;
  const TM = family.block ?? BLOCK, TN = TM;
  let s = "";
  for (let r = 0; r < TM; r++) {
    s += `  if (row0 + ${r}u < p.m) {\n`;
    s += `    let crow = cbase + (row0 + ${r}u) * ${family.ldc} + col0;\n`;
    for (let cc = 0; cc < TN / 4; cc++) {
      for (let j = 0; j < 4; j++) {
        const col = 4 * cc + j;
        let v = `${dtype}(acc${r}_${cc}[${j}]${family.scale})`;
        if (mask?.on === "c") {
          v = `select(${dtype}(0), ${v}, ${
            keepTest(mask, `i32(col0 + ${col}u) - i32(row0 + ${r}u)`, false)
          })`;
        }
        s += `    if (col0 + ${col}u < p.n) { ${c}[crow + ${col}u] = ${v}; }\n`;
      }
    }
    s += "  }\n";
  }
  return s;
}

/**
 * The k loop over `body`: every step, or under a causal mask only the steps some entry of the
 * block keeps, running `masked` (the body reading masked operands) on the steps where not every
 * entry is kept. Those are separate loops before and after the safe steps, not a branch in one
 * loop: a CPU adapter runs both arms of a branch it cannot prove uniform.
 */
function kLoop(
  mask: CausalMask | undefined,
  step: 1 | 4,
  body: string,
  masked: string,
  block: number,
): string {
  const inc = `k = k + ${step}u`;
  if (!mask) return `  for (var k = 0u; k < p.k; ${inc}) {\n${body}  }\n`;
  const range = causalRange(mask, step === 4, block);
  const loop = (from: string, to: string, b: string) =>
    `  for (var k = u32(${from}); k < u32(${to}); ${inc}) {\n${b}  }\n`;
  if (mask.on === "c" || masked === body) return range + loop("lo", "hi", masked);
  // Safe steps [s0, s1): whole steps inside [safeLo, safeHi).
  const up = step === 4 ? "((safeLo + 3) / 4) * 4" : "safeLo";
  const down = step === 4 ? "(safeHi / 4) * 4" : "safeHi";
  return `${range}  let s0 = clamp(${up}, lo, hi);
  let s1 = clamp(${down}, s0, hi);
${loop("lo", "s0", masked)}${loop("s0", "s1", body)}${loop("s1", "hi", masked)}`;
}

/** The pieces of the vec4 register-tiled kernel on the bindings `names` of `family`. */
export function matmulTiledParts(
  ta: boolean,
  tb: boolean,
  names: MatmulNames = PLAIN,
  family = CONTIGUOUS,
): MatmulParts {
  const { A, B } = names;
  const lda = family.lda(ta), ldb = family.ldb(tb);
  const mask = family.causal;
  const TM = family.block ?? BLOCK, TN = TM;
  let decl = "";
  for (let r = 0; r < TM; r++) {
    for (let c = 0; c < TN / 4; c++) decl += `  var acc${r}_${c} = vec4f(0.0);\n`;
  }
  let idx = "";
  // Clamp rows/cols that fall off the edge so loads stay in bounds; their results are not stored.
  if (!ta) { for (let r = 0; r < TM; r++) idx += `  let m${r} = min(row0 + ${r}u, p.m - 1u);\n`; }
  if (tb) { for (let c = 0; c < TN; c++) idx += `  let n${c} = min(col0 + ${c}u, p.n - 1u);\n`; }
  // Loads as [plain, masked] statements: a masked operand reads zero outside its causal part
  // (`d` is each loaded entry's y − x, a vec4i).
  const loads: [string, string][] = [];
  const load = (operand: "a" | "b", name: string, value: string, d: string) => {
    const plain = `    let ${name} = ${value};\n`;
    loads.push([
      plain,
      mask?.on === operand ? `    let ${name} = ${maskedLoad(mask, value, d, true)};\n` : plain,
    ]);
  };
  const lanes = "vec4i(0, 1, 2, 3)";
  // a(r, kk): scalar A[m0 + r][k + kk]
  const aVal: string[][] = [];
  if (!ta) {
    for (let r = 0; r < TM; r++) {
      load(
        "a",
        `a${r}`,
        `vec4f(${A}[(abase + m${r} * ${lda} + k) / 4u])`,
        `vec4i(i32(k) - i32(row0 + ${r}u)) + ${lanes}`,
      );
    }
    for (let r = 0; r < TM; r++) aVal.push([0, 1, 2, 3].map((kk) => `a${r}[${kk}]`));
  } else {
    for (let kk = 0; kk < 4; kk++) {
      for (let j = 0; j < TM / 4; j++) {
        load(
          "a",
          `at${kk}_${j}`,
          `vec4f(${A}[(abase + (k + ${kk}u) * ${lda} + row0) / 4u + ${j}u])`,
          `vec4i(i32(k + ${kk}u) - i32(row0 + ${4 * j}u)) - ${lanes}`,
        );
      }
    }
    for (let r = 0; r < TM; r++) aVal.push([0, 1, 2, 3].map((kk) => `at${kk}_${r >> 2}[${r & 3}]`));
  }
  // bv(kk, c): vec4 of B[k + kk][n0 + 4c .. n0 + 4c + 3]
  const bVec: string[][] = [];
  if (!tb) {
    for (let kk = 0; kk < 4; kk++) {
      const row: string[] = [];
      for (let c = 0; c < TN / 4; c++) {
        load(
          "b",
          `b${kk}_${c}`,
          `vec4f(${B}[(bbase + (k + ${kk}u) * ${ldb} + col0) / 4u + ${c}u])`,
          `vec4i(i32(col0 + ${4 * c}u) - i32(k + ${kk}u)) + ${lanes}`,
        );
        row.push(`b${kk}_${c}`);
      }
      bVec.push(row);
    }
  } else {
    for (let c = 0; c < TN; c++) {
      load(
        "b",
        `bt${c}`,
        `vec4f(${B}[(bbase + n${c} * ${ldb} + k) / 4u])`,
        `vec4i(i32(col0 + ${c}u) - i32(k)) - ${lanes}`,
      );
    }
    for (let kk = 0; kk < 4; kk++) {
      const row: string[] = [];
      for (let c = 0; c < TN / 4; c++) {
        const comps = [0, 1, 2, 3].map((j) => `bt${4 * c + j}[${kk}]`).join(", ");
        row.push(`vec4f(${comps})`);
      }
      bVec.push(row);
    }
  }
  let fmas = "";
  for (let kk = 0; kk < 4; kk++) {
    for (let r = 0; r < TM; r++) {
      for (let c = 0; c < TN / 4; c++) {
        fmas += `    acc${r}_${c} = fma(vec4f(${aVal[r]![kk]}), ${bVec[kk]![c]}, acc${r}_${c});\n`;
      }
    }
  }
  const body = loads.map(([plain]) => plain).join("") + fmas;
  const masked = loads.map(([, m]) => m).join("") + fmas;
  return { idx, decl, loop: kLoop(mask, 4, body, masked, TM) };
}

/** The pieces of the general kernel (scalar loads, clamped indices) on `names` of `family`. */
export function matmulGeneralParts(
  ta: boolean,
  tb: boolean,
  names: MatmulNames = PLAIN,
  family = CONTIGUOUS,
): MatmulParts {
  const { A, B } = names;
  const lda = family.lda(ta), ldb = family.ldb(tb);
  const mask = family.causal;
  const TM = family.block ?? BLOCK, TN = TM;
  let decl = "", idx = "", body = "";
  for (let r = 0; r < TM; r++) {
    for (let c = 0; c < TN / 4; c++) decl += `  var acc${r}_${c} = vec4f(0.0);\n`;
  }
  for (let r = 0; r < TM; r++) idx += `  let m${r} = min(row0 + ${r}u, p.m - 1u);\n`;
  for (let c = 0; c < TN; c++) idx += `  let n${c} = min(col0 + ${c}u, p.n - 1u);\n`;
  for (let r = 0; r < TM; r++) {
    const at = ta ? `k * ${lda} + m${r}` : `m${r} * ${lda} + k`;
    let v = `f32(${A}[abase + ${at}])`;
    if (mask?.on === "a") v = maskedLoad(mask, v, `i32(k) - i32(row0 + ${r}u)`, false);
    body += `    let a${r} = ${v};\n`;
  }
  for (let c = 0; c < TN / 4; c++) {
    const comps = [0, 1, 2, 3].map((j) => {
      const n = `n${4 * c + j}`;
      return `f32(${B}[bbase + ${tb ? `${n} * ${ldb} + k` : `k * ${ldb} + ${n}`}])`;
    });
    let v = `vec4f(${comps.join(", ")})`;
    if (mask?.on === "b") {
      v = maskedLoad(mask, v, `vec4i(i32(col0 + ${4 * c}u) - i32(k)) + vec4i(0, 1, 2, 3)`, true);
    }
    body += `    let b${c} = ${v};\n`;
  }
  for (let r = 0; r < TM; r++) {
    for (let c = 0; c < TN / 4; c++) {
      body += `    acc${r}_${c} = fma(vec4f(a${r}), b${c}, acc${r}_${c});\n`;
    }
  }
  // The general kernel masks every step: it is the fallback for shapes the tiled one cannot run.
  return { idx, decl, loop: kLoop(mask, 1, body, body, TM) };
}

/** Block origin, batch bases and the early exit of a register-blocked kernel of `family`. */
function blockPrologue(family: MatmulFamily): string {
  const block = family.block ?? BLOCK;
  return `  let row0 = gid.y * ${block}u;
  let col0 = gid.x * ${block}u;
${family.batch}  let abase = ${family.aBase};
  let bbase = ${family.bBase};
  let cbase = ${family.cBase};
  if (row0 >= p.m || col0 >= p.n) { return; }
`;
}

/** The prologue of the contiguous register-blocked kernels (its batch index is `b`). */
export const MATMUL_PROLOGUE = blockPrologue(CONTIGUOUS);

/** Rows (and columns) of C one invocation of the register-blocked kernels computes. */
export const MATMUL_BLOCK = BLOCK;

/** Workgroup size (x and y) of the register-blocked kernels. */
export const MATMUL_WORKGROUP = WX;

function blockedWgsl(dtype: DType, vec: boolean, family: MatmulFamily, parts: MatmulParts): string {
  return `${header(family, dtype, vec)}
@compute @workgroup_size(${WX}, ${WY})
fn main(@builtin(global_invocation_id) gid: vec3u) {
${blockPrologue(family)}${parts.idx}${parts.decl}${parts.loop}${storeBlock(dtype, "C", family)}}`;
}

/** WGSL of the vec4 register-tiled kernel of `family`. */
export function matmulTiledWgsl(
  dtype: DType,
  ta: boolean,
  tb: boolean,
  family = CONTIGUOUS,
): string {
  return blockedWgsl(dtype, true, family, matmulTiledParts(ta, tb, PLAIN, family));
}

/** WGSL of the general kernel of `family`: scalar loads, clamped indices, any shape. */
export function matmulGeneralWgsl(
  dtype: DType,
  ta: boolean,
  tb: boolean,
  family = CONTIGUOUS,
): string {
  return blockedWgsl(dtype, false, family, matmulGeneralParts(ta, tb, PLAIN, family));
}

const GEMV_WG = 64;

/**
 * WGSL of the GEMV of `family`: `y = x · B` (B `[k, n]`, each invocation owns 4 consecutive
 * outputs, 16 when `wide`, and reads B rows with vec4 loads) or `y = x · Bᵀ` (B `[n, k]`, each
 * invocation owns one output and takes a vec4 dot product along the contiguous k).
 */
export function gemvWgsl(dtype: DType, tb: boolean, wide = false, family = CONTIGUOUS): string {
  const { scale } = family;
  const bases = `${family.batch}  let abase = (${family.aBase}) / 4u;
  let cbase = ${family.cBase};
`;
  const head = `${header(family, dtype, true)}
@compute @workgroup_size(${GEMV_WG})
fn main(@builtin(global_invocation_id) gid: vec3u) {
`;
  if (!tb) {
    // Output vec4 j of the row; B's row k starts at vec4 bbase + k · ldb4.
    const loop = wide
      // 16 outputs (4 vec4) per invocation: each weight row is read as 64-byte runs, which is
      // what a CPU adapter's caches and SIMD lanes want (about 2× the 4-output form on llvmpipe).
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
    let v = select(select(select(a3, a2, c == 2u), a1, c == 1u), a0, c == 0u)${scale};
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
  let acc = (acc0 + acc1)${scale};
  let o = cbase + j * 4u;
  C[o] = ${dtype}(acc[0]); C[o + 1u] = ${dtype}(acc[1]);
  C[o + 2u] = ${dtype}(acc[2]); C[o + 3u] = ${dtype}(acc[3]);`;
    return `${head}  let j = gid.x${wide ? " * 4u" : ""};
  if (j * 4u >= p.n) { return; }
${bases}  let ldb4 = ${family.ldb(false)} / 4u;
  let bbase = (${family.bBase}) / 4u + j;
${loop}
}`;
  }
  return `${head}  let j = gid.x;
  if (j >= p.n) { return; }
${bases}  let bbase = (${family.bBase} + j * ${family.ldb(true)}) / 4u;
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
  C[cbase + j] = ${dtype}((acc[0] + acc[1] + acc[2] + acc[3])${scale});
}`;
}

/** The fields of a problem of either family that shape its default kernels. */
type KernelShape = Pick<MatmulProblem, "m" | "n" | "transposeA" | "transposeB" | "dtype">;

/**
 * Pipeline key, WGSL and grid of a default kernel of `family` for `batch` matrices.
 *
 * @param family The kernel family.
 * @param variant The kernel; the GEMV takes 16 outputs per invocation when B is not transposed
 *   and N % 16 = 0; `tiled16` is the tiled kernel with a 16 × 16 block per invocation.
 * @param p The problem's shape.
 * @param batch Number of matrices (workgroup z).
 * @returns The dispatch's `key`, `wgsl` and `workgroups`.
 */
export function defaultKernelLaunch(
  family: MatmulFamily,
  variant: "tiled" | "tiled16" | "general" | "gemv",
  p: KernelShape,
  batch: number,
): Pick<Dispatch, "key" | "wgsl" | "workgroups"> {
  const { dtype, transposeA: ta, transposeB: tb } = p;
  const flags = `${ta ? "T" : "N"}${tb ? "T" : "N"}`;
  if (variant === "gemv") {
    if (family.causal) {
      throw new ValueError(
        "matmul",
        "the GEMV takes no causal mask (the tiled and general kernels do)",
      );
    }
    const wide = !tb && p.n % 16 === 0;
    return {
      key: family.kernel.key(wide ? "gemv16" : "gemv", dtype, flags),
      wgsl: () => gemvWgsl(dtype, tb, wide, family),
      workgroups: [Math.ceil((tb ? p.n : p.n / (wide ? 16 : 4)) / GEMV_WG), 1, batch],
    };
  }
  const mask = family.causal;
  // tiled16: the tiled kernel with a 16 × 16 register block (the same FMA order per output).
  const f = variant === "tiled16" ? { ...family, block: WIDE_BLOCK } : family;
  const block = f.block ?? BLOCK;
  return {
    key: mask
      ? family.kernel.key(variant, dtype, flags, `causal-${mask.on}${mask.transposed ? "T" : ""}`)
      : family.kernel.key(variant, dtype, flags),
    wgsl: variant === "general"
      ? () => matmulGeneralWgsl(dtype, ta, tb, f)
      : () => matmulTiledWgsl(dtype, ta, tb, f),
    workgroups: [Math.ceil(p.n / (block * WX)), Math.ceil(p.m / (block * WY)), batch],
  };
}

/** The `tiled16` variant's register block. */
const WIDE_BLOCK = 16;

/**
 * Whether the `tiled16` kernel can run a problem: the tiled kernel's vec4 loads with 16-row or
 * 16-column blocks (K % 4 = 0, M % 16 = 0 when A is transposed, N % 16 = 0 unless B is).
 *
 * @param p The problem's shape and K.
 * @returns True when it can.
 *
 * @example
 * ```ts
 * import { tiled16Fits } from "./matmul.ts";
 * import assert from "node:assert/strict";
 * const shape = { m: 4096, k: 128, transposeA: false, transposeB: false };
 * assert.equal(tiled16Fits({ ...shape, n: 352 }), true);
 * assert.equal(tiled16Fits({ ...shape, n: 344 }), false); // B's rows end mid-block
 * ```
 */
export function tiled16Fits(
  p: Pick<MatmulProblem, "m" | "n" | "k" | "transposeA" | "transposeB">,
): boolean {
  return blockFits(p, WIDE_BLOCK);
}

/**
 * CPU twin of every matmul kernel: `C[b] = op(A[b]) · op(B[b])` with f64 accumulation rounded
 * to the storage dtype.
 */
export function matmulCpu(p: MatmulProblem, a: ArrayBuffer, b: ArrayBuffer, c: ArrayBuffer): void {
  const A = typedView(p.dtype, a), B = typedView(p.dtype, b);
  const C = typedView(p.dtype, c, p.batch * p.m * p.n);
  const { m, n, k } = p;
  const row = new Float64Array(n);
  for (let bi = 0; bi < p.batch; bi++) {
    const ao = bi * p.strideA, bo = bi * p.strideB, co = bi * m * n;
    for (let i = 0; i < m; i++) {
      row.fill(0);
      for (let kk = 0; kk < k; kk++) {
        const av = p.transposeA ? A[ao + kk * m + i]! : A[ao + i * k + kk]!;
        if (av === 0) continue;
        if (p.transposeB) {
          for (let j = 0; j < n; j++) row[j] += av * B[bo + j * k + kk]!;
        } else {
          const rb = bo + kk * n;
          for (let j = 0; j < n; j++) row[j] += av * B[rb + j]!;
        }
      }
      for (let j = 0; j < n; j++) C[co + i * n + j] = row[j]!;
    }
  }
}

/**
 * The dispatch of one matmul problem.
 *
 * @param p The problem.
 * @param a Storage of A.
 * @param b Storage of B.
 * @param c Storage of C (`batch · m · n` elements).
 * @param variant Force a kernel (tests use this to cover each path). Without it the default
 *   ({@link matmulVariant}) is returned carrying a `tune` with the kernels for discrete GPUs that
 *   are valid for the problem, which an autotuning WebGPU device may run instead.
 * @returns The dispatch.
 */
export function matmulDispatch(
  p: MatmulProblem,
  a: Storage,
  b: Storage,
  c: Storage,
  variant?: MatmulVariant,
): Dispatch {
  if ((variant === "tiled" && !blockFits(p, BLOCK)) || (variant === "tiled16" && !tiled16Fits(p))) {
    // A vec4 load off its boundary would read the wrong elements.
    throw new ValueError(
      "matmul",
      `the ${variant} kernel cannot run m=${p.m} n=${p.n} k=${p.k} (transposeA=${p.transposeA}, ` +
        `transposeB=${p.transposeB}): its vec4 loads need K % 4 = 0 and M (A transposed) or N ` +
        `(B not transposed) a multiple of ${variant === "tiled" ? BLOCK : WIDE_BLOCK}`,
    );
  }
  const d = variantDispatch(p, a, b, c, variant ?? matmulVariant(p));
  if (variant === undefined) d.tune = new MatmulTunable(p);
  return d;
}

/**
 * The variants of one problem, offered to an autotuning device (src/backend/autotune.ts). Its
 * fields are computed on first read: only an autotuning backend reads them, and computing them
 * costs about as much as the rest of the dispatch.
 */
class MatmulTunable implements Tunable {
  readonly #p: MatmulProblem;
  #variants: MatmulVariant[] | null = null;
  #key: string | null = null;

  constructor(p: MatmulProblem) {
    this.#p = p;
  }

  get variants(): MatmulVariant[] {
    if (this.#variants === null) {
      const p = this.#p;
      // Integer matmuls, and problems with fields the tuned kernels do not know (e.g. strided
      // operands added later), keep their default kernel.
      const known = (p.dtype === "f32" || p.dtype === "f16") &&
        Object.keys(p).every((f) => UNDERSTOOD_FIELDS.has(f));
      const base = matmulVariant(p);
      // On a CPU adapter a larger register block loads each element for more FMAs.
      const wide = known && base === "tiled" && tiled16Fits(p) ? ["tiled16" as const] : [];
      const candidates = known ? [...wide, ...matmulCandidates(p)] : [];
      this.#variants = candidates.length ? [base, ...candidates] : [];
    }
    return this.#variants;
  }

  get key(): string {
    return this.#key ??= matmulTuneKey(this.#p, this.variants);
  }

  build(v: string, [x, y, z]: readonly Storage[]): Dispatch {
    return variantDispatch(this.#p, x!, y!, z!, v as MatmulVariant);
  }

  sampleInputs(): ArrayBufferView[] {
    const [sizeA, sizeB] = matmulOperandSizes(this.#p);
    return [sampleOperand(this.#p.dtype, sizeA, 1), sampleOperand(this.#p.dtype, sizeB, 2)];
  }

  get outputBytes(): number[] {
    const p = this.#p;
    return [p.batch * p.m * p.n * bytesPerElement(p.dtype)];
  }

  get outputDType(): "f32" | "f16" {
    return this.#p.dtype === "f16" ? "f16" : "f32";
  }

  get tolerance(): number {
    // f32: accumulation order only (~1e-7 relative per add); f16: one rounding of the output.
    return this.#p.dtype === "f16" ? 4e-3 : 1e-4;
  }
}

function variantDispatch(
  p: MatmulProblem,
  a: Storage,
  b: Storage,
  c: Storage,
  variant: MatmulVariant,
): Dispatch {
  const cpu: Dispatch["cpu"] = ([x, y, z]) => matmulCpu(p, x!, y!, z!);
  const native: Dispatch["native"] = p.dtype === "f32"
    ? ([x, y, z], rt) => matmulNative(p, x!, y!, z!, rt)
    : undefined;
  if (isTunedVariant(variant)) {
    return variant in SMEM_TILES
      ? matmulSmemDispatch(variant, SMEM_TILES[variant as SmemVariant], p, a, b, c, cpu, native)
      : gemvWgDispatch(variant, GEMV_SHAPES[variant as GemvWgVariant], p, a, b, c, cpu, native);
  }
  return {
    op: "matmul",
    ...defaultKernelLaunch(CONTIGUOUS, variant, p, p.batch),
    cpu,
    native,
    buffers: [a, b, c],
    uniforms: MATMUL.uniforms({
      m: p.m,
      n: p.n,
      k: p.k,
      batch: p.batch,
      sa: p.strideA,
      sb: p.strideB,
      sc: p.m * p.n,
    }),
  };
}
