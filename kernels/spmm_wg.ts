/**
 * Sparse activations × dense weights (`Y = dense(A) · W`, W input-major `[D_in, D_out]`) for
 * discrete GPUs: the split-K form of kernels/gemv_wg.ts over a row's kept entries. A workgroup
 * owns `4·WX` output columns of one row; its `KS` rows of invocations take every `KS`-th kept
 * entry, so neighbouring invocations read neighbouring vec4 of one kept weight row (coalesced),
 * and the `KS` partial sums are added in workgroup memory.
 *
 * Why beside kernels/spmm.ts's rows kernel: there an invocation walks all of a row's entries for
 * its 16 columns, which suits llvmpipe; a GPU then has D_out/16 invocations in flight for a whole
 * decoding step (256 for D_out = 4096), too few to hide memory latency. Entries are summed in
 * another order than the rows kernel, so results may differ from it in the last bits of f32.
 *
 * @module
 */
import type { Dispatch, Storage, Tunable } from "../src/backend/backend.ts";
import { bytesPerElement, type DType } from "../src/core/dtype.ts";
import { uniform01 } from "../src/core/random.ts";
import { defineKernel } from "./spec.ts";
import { sampleOperand } from "./matmul_tuning.ts";
import { stridedSum } from "./gemv_wg.ts";

/** Workgroup shape of the split-K sparse GEMV: `wx` vec4 columns × `ks` entry slices. */
export interface SpmmSplitShape {
  /** vec4 output columns per workgroup. */
  readonly wx: number;
  /** Invocations sharing one column group, each taking every `ks`-th entry. */
  readonly ks: number;
}

/** The split-K shapes an autotuning device chooses from, by variant name. */
export const SPMM_SPLIT_SHAPES = {
  spmmSplit16x16: { wx: 16, ks: 16 },
  spmmSplit8x32: { wx: 8, ks: 32 },
  spmmSplit32x8: { wx: 32, ks: 8 },
  // Fewer columns per workgroup: more workgroups for one decoding row (D_out / 16 for 4x64).
  spmmSplit4x64: { wx: 4, ks: 64 },
  spmmSplit2x128: { wx: 2, ks: 128 },
} as const satisfies Record<string, SpmmSplitShape>;

/** Version of these kernels, part of their class keys (bump when they change). */
export const SPMM_KERNELS_VERSION = 1;

const SPMM_SPLIT = defineKernel({
  name: "spmmSplitK",
  bindings: [
    { name: "vals", type: "T", access: "read" },
    { name: "idxs", type: "u32", access: "read" },
    { name: "W", type: "vec4<T>", access: "read" },
    { name: "Y", type: "T", access: "read_write" },
    { name: "ptr", type: "u32", access: "read", optional: true },
  ],
  params: { rows: "u32", dOut: "u32", k: "u32" },
});

/** Problem fields the split kernel reads (structural: kernels/spmm.ts passes its own). */
export interface SpmmSplitProblem {
  /** Rows of A and Y. */
  readonly rows: number;
  /** D_in. */
  readonly dIn: number;
  /** D_out (a multiple of 4). */
  readonly dOut: number;
  /** Entries per row (fixed layouts). */
  readonly k: number;
  /** Storage dtype of values, W and Y. */
  readonly dtype: DType;
}

/**
 * Whether the split kernel can run a problem: vec4 weight rows (D_out % 4 = 0) and one
 * workgroup row per sparse row (rows ≤ 65535).
 *
 * @param p The problem.
 * @returns True when valid.
 * @example
 * ```ts
 * import { spmmSplitFits } from "./spmm_wg.ts";
 * import assert from "node:assert/strict";
 * assert.equal(spmmSplitFits({ rows: 1, dIn: 64, dOut: 32, k: 8, dtype: "f32" }), true);
 * assert.equal(spmmSplitFits({ rows: 1, dIn: 64, dOut: 30, k: 8, dtype: "f32" }), false);
 * ```
 */
export function spmmSplitFits(p: SpmmSplitProblem): boolean {
  return p.dOut % 4 === 0 && p.rows <= 65535 && p.rows > 0;
}

/**
 * WGSL of the split-K sparse GEMV.
 *
 * @param dtype Storage dtype (f32 or f16; accumulation is f32).
 * @param csr Rows given by a row-pointer buffer instead of a fixed K.
 * @param s The workgroup shape.
 * @returns The kernel source.
 * @example
 * ```ts
 * import { spmmSplitWgsl } from "./spmm_wg.ts";
 * import assert from "node:assert/strict";
 * assert.match(spmmSplitWgsl("f32", false, { wx: 16, ks: 16 }), /@workgroup_size\(16, 16\)/);
 * ```
 */
export function spmmSplitWgsl(dtype: DType, csr: boolean, s: SpmmSplitShape): string {
  const header = SPMM_SPLIT.header({ types: { T: dtype }, omit: csr ? [] : ["ptr"] });
  const range = csr
    ? "let lo = ptr[row];\n  let hi = ptr[row + 1u];"
    : "let lo = row * p.k;\n  let hi = lo + p.k;";
  let tree = "";
  for (let half = s.ks / 2; half >= 1; half /= 2) {
    tree += `  if (lid.y < ${half}u) { part[lid.y * ${s.wx}u + lid.x] = ` +
      `part[lid.y * ${s.wx}u + lid.x] + part[(lid.y + ${half}u) * ${s.wx}u + lid.x]; }\n` +
      "  workgroupBarrier();\n";
  }
  return `${header}
var<workgroup> part: array<vec4f, ${s.wx * s.ks}>;

@compute @workgroup_size(${s.wx}, ${s.ks})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let c4 = wid.x * ${s.wx}u + lid.x;
  let row = wid.y;
  let n4 = p.dOut / 4u;
  ${range}
${
    stridedSum(
      "acc",
      "lo + lid.y",
      "hi",
      s.ks,
      (t, acc) => `fma(vec4f(f32(vals[${t}])), vec4f(W[idxs[${t}] * n4 + c4]), ${acc})`,
      "vec4f(0.0)",
      "c4 < n4",
    )
  }  part[lid.y * ${s.wx}u + lid.x] = acc;
  workgroupBarrier();
${tree}  if (lid.y == 0u && c4 < n4) {
    let v = part[lid.x];
    let o = row * p.dOut + c4 * 4u;
    Y[o] = ${dtype}(v[0]); Y[o + 1u] = ${dtype}(v[1]); Y[o + 2u] = ${dtype}(v[2]); Y[o + 3u] = ${dtype}(v[3]);
  }
}`;
}

/**
 * Dispatch of the split-K sparse GEMV. Buffers as kernels/spmm.ts: vals, idxs, W, Y (and rowPtr
 * for CSR rows).
 *
 * @param name Variant name, part of the pipeline key.
 * @param s The workgroup shape.
 * @param p The problem.
 * @param csr Whether rows come from a row-pointer buffer.
 * @param buffers Storages in binding order.
 * @param cpu The CPU twin of the problem.
 * @param native The host kernel, when one exists.
 * @returns The dispatch.
 * @example
 * ```ts
 * import { spmmSplitDispatch } from "./spmm_wg.ts";
 * import assert from "node:assert/strict";
 * const s = { id: 0, bytes: 64 };
 * const p = { rows: 3, dIn: 64, dOut: 256, k: 8, dtype: "f32" as const };
 * const d = spmmSplitDispatch("spmmSplit16x16", { wx: 16, ks: 16 }, p, false, [s, s, s, s], () => {});
 * assert.deepEqual(d.workgroups, [4, 3, 1]);
 * ```
 */
export function spmmSplitDispatch(
  name: string,
  s: SpmmSplitShape,
  p: SpmmSplitProblem,
  csr: boolean,
  buffers: Storage[],
  cpu: Dispatch["cpu"],
  native?: Dispatch["native"],
): Dispatch {
  return {
    op: "spmm",
    key: SPMM_SPLIT.key(name, p.dtype, csr ? "csr" : "fixed"),
    wgsl: () => spmmSplitWgsl(p.dtype, csr, s),
    cpu,
    native,
    buffers,
    uniforms: SPMM_SPLIT.uniforms({ rows: p.rows, dOut: p.dOut, k: p.k }),
    workgroups: [Math.ceil(p.dOut / (4 * s.wx)), p.rows, 1],
  };
}

function pow2(x: number): number {
  return x <= 1 ? 1 : 2 ** Math.ceil(Math.log2(x));
}

/**
 * The variants of a fixed-K sparse product (rows kernel first, then the split shapes), offered to
 * an autotuning device. Tuning inputs keep `k` evenly spread columns per row.
 *
 * @param p The problem.
 * @param layout `fixed` or `fixedUnsorted` (the class key keeps it).
 * @param build The dispatch of a variant on given buffers.
 * @returns The tunable.
 * @example
 * ```ts
 * import { spmmTunable } from "./spmm_wg.ts";
 * import assert from "node:assert/strict";
 * const t = spmmTunable({ rows: 1, dIn: 4096, dOut: 4096, k: 1638, dtype: "f32" }, "fixed", () => { throw new Error("not run"); });
 * assert.equal(t.key, "spmm.v1:f32:fixed:r1:i4096:o4096:k2048:rows,spmmSplit16x16,spmmSplit8x32,spmmSplit32x8,spmmSplit4x64,spmmSplit2x128");
 * ```
 */
export function spmmTunable(
  p: SpmmSplitProblem,
  layout: "fixed" | "fixedUnsorted",
  build: (variant: string, buffers: readonly Storage[]) => Dispatch,
): Tunable {
  return new SpmmTunable(p, layout, build);
}

const SPMM_VARIANTS = ["rows", ...Object.keys(SPMM_SPLIT_SHAPES)];

/** Fields computed on first read: only an autotuning backend reads them. */
class SpmmTunable implements Tunable {
  readonly variants: readonly string[] = SPMM_VARIANTS;
  #key: string | null = null;

  constructor(
    readonly p: SpmmSplitProblem,
    readonly layout: "fixed" | "fixedUnsorted",
    readonly build: (variant: string, buffers: readonly Storage[]) => Dispatch,
  ) {}

  get key(): string {
    const p = this.p;
    return this.#key ??= `spmm.v${SPMM_KERNELS_VERSION}:${p.dtype}:${this.layout}:` +
      `r${pow2(p.rows)}:i${pow2(p.dIn)}:o${pow2(p.dOut)}:k${pow2(p.k)}:${SPMM_VARIANTS.join(",")}`;
  }

  sampleInputs(): ArrayBufferView[] {
    const p = this.p;
    const idxs = new Uint32Array(p.rows * p.k);
    for (let r = 0; r < p.rows; r++) {
      // Evenly spread, shifted per row: distinct ascending columns, different rows.
      const shift = Math.floor(uniform01(3, r) * (p.dIn / Math.max(1, p.k)));
      for (let t = 0; t < p.k; t++) {
        idxs[r * p.k + t] = Math.min(p.dIn - 1, Math.floor((t * p.dIn) / p.k) + shift);
      }
    }
    return [
      sampleOperand(p.dtype, p.rows * p.k, 1),
      idxs,
      sampleOperand(p.dtype, p.dIn * p.dOut, 2),
    ];
  }

  get outputBytes(): number[] {
    return [this.p.rows * this.p.dOut * bytesPerElement(this.p.dtype)];
  }

  get outputDType(): "f32" | "f16" {
    return this.p.dtype === "f16" ? "f16" : "f32";
  }

  get tolerance(): number {
    return this.p.dtype === "f16" ? 4e-3 : 1e-4;
  }
}
