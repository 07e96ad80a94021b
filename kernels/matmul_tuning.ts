/**
 * The table of matmul kernels an autotuning device chooses from (src/backend/autotune.ts): the
 * shared-memory tilings of kernels/matmul_smem.ts and the workgroup GEMVs of kernels/gemv_wg.ts,
 * which variants are valid for a problem, and the problem class one measured choice serves.
 *
 * A class buckets m, n, k and the batch to the next power of two and keeps dtype, transposes,
 * broadcast operands and the list of valid variants (so a choice made on one problem of the
 * class is valid for every other). `MATMUL_KERNELS_VERSION` is part of the key: bump it when a
 * kernel here changes speed or meaning, so choices cached on disk are measured again.
 *
 * @module
 */
import { allocTyped, type DType } from "../src/core/dtype.ts";
import { uniform01 } from "../src/core/random.ts";
import type { GemvShape } from "./gemv_wg.ts";
import { gemvWgFits } from "./gemv_wg.ts";
import { smemFits, type SmemProblem, type SmemTile } from "./matmul_smem.ts";

/** Version of the kernels in this table, part of every class key (see the module doc). */
export const MATMUL_KERNELS_VERSION = 1;

/**
 * Shared-memory tilings, by variant name. At most 256 invocations and 16 KiB of workgroup memory,
 * so all fit WebGPU's default limits. The `s` variants load scalars and take any shape.
 */
export const SMEM_TILES = {
  smem64x64: { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4, vec4: true },
  smem128x128: { bm: 128, bn: 128, bk: 16, tm: 8, tn: 8, vec4: true },
  smem128x64: { bm: 128, bn: 64, bk: 16, tm: 8, tn: 4, vec4: true },
  smem64x64k32: { bm: 64, bn: 64, bk: 32, tm: 4, tn: 4, vec4: true },
  smem128x128k8: { bm: 128, bn: 128, bk: 8, tm: 8, tn: 8, vec4: true },
  smem128x128p: { bm: 128, bn: 128, bk: 16, tm: 8, tn: 8, vec4: true, prefetch: true },
  smem64x64p: { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4, vec4: true, prefetch: true },
  smem64x64s: { bm: 64, bn: 64, bk: 16, tm: 4, tn: 4, vec4: false },
  smem32x32s: { bm: 32, bn: 32, bk: 16, tm: 4, tn: 4, vec4: false },
} as const satisfies Record<string, SmemTile>;

/** Workgroup GEMV shapes, by variant name. */
export const GEMV_SHAPES = {
  gemvSplitK16x16: { kind: "splitK", wx: 16, ks: 16 },
  gemvSplitK8x32: { kind: "splitK", wx: 8, ks: 32 },
  gemvSplitK32x8: { kind: "splitK", wx: 32, ks: 8 },
  // Fewer columns per workgroup: more workgroups (N / 16 for 4x64), 32-byte row segments.
  gemvSplitK4x64: { kind: "splitK", wx: 4, ks: 64 },
  gemvSplitK2x128: { kind: "splitK", wx: 2, ks: 128 },
  gemvDot64x4: { kind: "dot", lanes: 64, rows: 4 },
  gemvDot32x8: { kind: "dot", lanes: 32, rows: 8 },
  gemvDot128x2: { kind: "dot", lanes: 128, rows: 2 },
} as const satisfies Record<string, GemvShape>;

/** A shared-memory tiling's variant name. */
export type SmemVariant = keyof typeof SMEM_TILES;
/** A workgroup GEMV's variant name. */
export type GemvWgVariant = keyof typeof GEMV_SHAPES;

/**
 * Whether a variant name is one of this table's.
 *
 * @param v A variant name.
 * @returns True for a shared-memory tiling or a workgroup GEMV.
 * @example
 * ```ts
 * import { isTunedVariant } from "./matmul_tuning.ts";
 * import assert from "node:assert/strict";
 * assert.equal(isTunedVariant("smem64x64"), true);
 * assert.equal(isTunedVariant("tiled"), false);
 * ```
 */
export function isTunedVariant(v: string): v is SmemVariant | GemvWgVariant {
  return v in SMEM_TILES || v in GEMV_SHAPES;
}

/**
 * The table's variants valid for a problem: workgroup GEMVs for one row of A, shared-memory
 * tilings otherwise.
 *
 * @param p The problem.
 * @returns Variant names, in table order.
 * @example
 * ```ts
 * import { matmulCandidates } from "./matmul_tuning.ts";
 * import assert from "node:assert/strict";
 * const p = { m: 1, n: 4096, k: 4096, batch: 1, strideA: 0, strideB: 0, transposeA: false, transposeB: true, dtype: "f32" as const };
 * assert.deepEqual(matmulCandidates(p), ["gemvDot64x4", "gemvDot32x8", "gemvDot128x2"]);
 * ```
 */
export function matmulCandidates(p: SmemProblem): (SmemVariant | GemvWgVariant)[] {
  if (p.m === 1) {
    return (Object.keys(GEMV_SHAPES) as GemvWgVariant[]).filter((v) =>
      gemvWgFits(GEMV_SHAPES[v], p)
    );
  }
  return (Object.keys(SMEM_TILES) as SmemVariant[]).filter((v) => smemFits(SMEM_TILES[v], p));
}

function pow2(x: number): number {
  return x <= 1 ? 1 : 2 ** Math.ceil(Math.log2(x));
}

/**
 * The problem class of a matmul for autotuning.
 *
 * @param p The problem.
 * @param variants The variants valid for it, default first.
 * @returns The class key.
 * @example
 * ```ts
 * import { matmulTuneKey } from "./matmul_tuning.ts";
 * import assert from "node:assert/strict";
 * const p = { m: 1000, n: 1024, k: 700, batch: 1, strideA: 0, strideB: 0, transposeA: false, transposeB: false, dtype: "f32" as const };
 * assert.equal(matmulTuneKey(p, ["tiled", "smem64x64"]), "matmul.v1:f32:NN:m1024:n1024:k1024:b1:ab:tiled,smem64x64");
 * ```
 */
export function matmulTuneKey(p: SmemProblem, variants: readonly string[]): string {
  const flags = `${p.transposeA ? "T" : "N"}${p.transposeB ? "T" : "N"}`;
  const shared = `${p.strideA === 0 ? "a" : "A"}${p.strideB === 0 ? "b" : "B"}`;
  return `matmul.v${MATMUL_KERNELS_VERSION}:${p.dtype}:${flags}:m${pow2(p.m)}:n${pow2(p.n)}:` +
    `k${pow2(p.k)}:b${pow2(p.batch)}:${shared}:${variants.join(",")}`;
}

/**
 * Elements of A and B a problem reads (the last batch's matrix ends there).
 *
 * @param p The problem.
 * @returns `[elements of A, elements of B]`.
 * @example
 * ```ts
 * import { matmulOperandSizes } from "./matmul_tuning.ts";
 * import assert from "node:assert/strict";
 * const p = { m: 2, n: 3, k: 4, batch: 5, strideA: 8, strideB: 0, transposeA: false, transposeB: false, dtype: "f32" as const };
 * assert.deepEqual(matmulOperandSizes(p), [40, 12]);
 * ```
 */
export function matmulOperandSizes(p: SmemProblem): [number, number] {
  const last = Math.max(0, p.batch - 1);
  return [last * p.strideA + p.m * p.k, last * p.strideB + p.k * p.n];
}

/**
 * Deterministic inputs for timing and checking variants: uniform in [-1, 1) from the host PRNG.
 *
 * @param dtype f32 or f16.
 * @param n Elements.
 * @param seed Stream.
 * @returns The array.
 * @example
 * ```ts
 * import { sampleOperand } from "./matmul_tuning.ts";
 * import assert from "node:assert/strict";
 * const x = sampleOperand("f32", 8, 1);
 * assert.ok(x.every((v) => v >= -1 && v < 1));
 * ```
 */
export function sampleOperand(dtype: DType, n: number, seed: number): Float32Array | Float16Array {
  const out = allocTyped(dtype === "f16" ? "f16" : "f32", n);
  for (let i = 0; i < n; i++) out[i] = 2 * uniform01(seed, i) - 1;
  return out;
}
