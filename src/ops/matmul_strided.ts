/**
 * `matmulStrided`: a batched matmul whose operands and output are permuted views of their
 * storage, read and written in place — attention's `[B, T, H, hd]` ↔ `[B, H, T, hd]` without
 * permute copies — and its gradient, produced in each operand's own layout.
 *
 * @module
 */
import {
  type CausalMask,
  matmulStridedDispatch,
  type MatrixLayout,
  type StridedMatmulProblem,
  type StridedMatmulVariant,
} from "../../kernels/matmul_strided.ts";
import { needsGrad, record } from "../autograd/tape.ts";
import { type DType, isFloat } from "../core/dtype.ts";
import { DeviceError, DTypeError, ShapeError, ValueError } from "../core/errors.ts";
import type { Tensor } from "../tensor/tensor.ts";

export type { CausalMask, StridedMatmulVariant } from "../../kernels/matmul_strided.ts";

/** Options for {@link matmulStrided}. */
export interface MatmulStridedOptions {
  /** Read `a` as its transpose (last two dims of its view). */
  transposeA?: boolean;
  /** Read `b` as its transpose (last two dims of its view). */
  transposeB?: boolean;
  /** Read `a` as `permute(a, dimsA)`, without a copy. The last dim must stay last. */
  dimsA?: readonly number[];
  /** Read `b` as `permute(b, dimsB)`, without a copy. The last dim must stay last. */
  dimsB?: readonly number[];
  /**
   * Store the product `c` so that `permute(out, dimsOut)` is `c`: the returned tensor has shape
   * `out.shape[dimsOut[i]] = c.shape[i]`. The last dim must stay last.
   */
  dimsOut?: readonly number[];
  /**
   * Scale of the product (default 1): `c = alpha · op(a) · op(b)`, applied once to each
   * accumulated sum as BLAS applies its alpha — e.g. attention's 1/√hd, with no launch of its own.
   */
  alpha?: number;
  /**
   * A causal mask on one matrix of the product (see {@link CausalMask}): `{ on: "a" }` reads
   * op(a) as zero above its diagonal (aligned to the bottom-right corner), `{ on: "c" }` makes
   * the product zero there; `transposed` masks the other triangle (a matrix that is the
   * transpose of causal scores). Attention passes it so the kernels skip the masked triangle's
   * work: about half of each score product. The gradient keeps the mask.
   */
  causal?: { on: "a" | "b" | "c"; transposed?: boolean };
  /** Force a kernel (tests and benchmarks). */
  variant?: StridedMatmulVariant;
}

/**
 * Where a mask lands in a gradient product: `slots` maps the forward's masked matrix (op(a),
 * op(b) or c) to its slot in the gradient product, and `flips` says which of them the gradient
 * reads transposed.
 */
function gradMask(
  mask: CausalMask | undefined,
  slots: Record<CausalMask["on"], CausalMask["on"]>,
  flips: Record<CausalMask["on"], boolean>,
): CausalMask | undefined {
  return mask && { on: slots[mask.on], transposed: mask.transposed !== flips[mask.on] };
}

/** Most dims an operand may have: two batch dims and the matrix. */
const MAX_RANK = 4;

/** Row-major strides of a shape. */
function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** Checks `dims` (a permutation keeping the last dim last) and returns it, identity by default. */
function viewDims(
  op: string,
  name: string,
  dims: readonly number[] | undefined,
  rank: number,
  shapes: readonly (readonly number[])[],
): number[] {
  if (dims === undefined) return [...Array(rank).keys()];
  const seen = new Set(dims);
  const ok = dims.length === rank && seen.size === rank &&
    dims.every((d) => Number.isInteger(d) && d >= 0 && d < rank);
  if (!ok) {
    throw ShapeError.mismatch(
      op,
      shapes,
      `${name} [${dims.join(", ")}] is not a permutation of 0..${rank - 1}`,
    );
  }
  if (dims[rank - 1] !== rank - 1) {
    throw ShapeError.mismatch(
      op,
      shapes,
      `${name} [${dims.join(", ")}] must keep the last dim last (rows are read contiguously)`,
    );
  }
  return [...dims];
}

/**
 * The layout of the view `permute(stored, dims)` as a two-level batch of row-strided matrices.
 * A batch level of size 1 gets stride 0, so it never blocks the aligned kernel.
 */
function layoutOf(stored: readonly number[], dims: readonly number[]): MatrixLayout {
  const st = stridesOf(stored), r = dims.length;
  const batch = dims.slice(0, r - 2);
  while (batch.length < 2) batch.unshift(-1);
  const stride = (d: number) => (d < 0 || stored[d] === 1 ? 0 : st[d]!);
  return { outer: stride(batch[0]!), inner: stride(batch[1]!), ld: st[dims[r - 2]!]! };
}

/**
 * Matrix product of permuted views: `c = op(permute(a, dimsA)) · op(permute(b, dimsB))` over the
 * last two dims, with equal batch dims (at most two), stored so that `permute(out, dimsOut) = c`.
 * Nothing is copied: the kernels read and write through strides. Each permutation must keep the
 * last dim last (the rows of every matrix are contiguous). f32 accumulation.
 *
 * Gradient: two more strided products (with the same alpha), each written straight into its
 * operand's own layout.
 *
 * @param a Left operand, rank 2–4.
 * @param b Right operand, same rank.
 * @param opts Views, transposes and the scale alpha.
 * @returns The product, shaped `c` permuted by the inverse of `dimsOut`.
 *
 * @example Attention scores from q and k stored `[B, T, H, hd]`, read as `[B, H, T, hd]`
 * ```ts
 * import { matmul, matmulStrided, openDevice, permute } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using q = dev.randn([2, 5, 3, 4], { seed: 1 });
 * using k = dev.randn([2, 5, 3, 4], { seed: 2 });
 * const heads = [0, 2, 1, 3];
 * using s = matmulStrided(q, k, { transposeB: true, dimsA: heads, dimsB: heads });
 * using ref = matmul(permute(q, heads), permute(k, heads), { transposeB: true });
 * assert.deepEqual(s.shape, [2, 3, 5, 5]);
 * assert.deepEqual(await s.data(), await ref.data());
 * ```
 */
export function matmulStrided<D extends DType>(
  a: Tensor<D>,
  b: Tensor<D>,
  opts: MatmulStridedOptions = {},
): Tensor<D> {
  const op = "matmulStrided";
  const ta = opts.transposeA ?? false, tb = opts.transposeB ?? false;
  const shapes = [a.shape, b.shape];
  if (a.rank < 2 || a.rank > MAX_RANK || b.rank !== a.rank) {
    throw ShapeError.mismatch(op, shapes, `operands need the same rank, 2 to ${MAX_RANK}`);
  }
  if (a.dtype !== b.dtype) throw new DTypeError(op, `dtypes differ: ${a.dtype} and ${b.dtype}`);
  if (!isFloat(a.dtype)) throw new DTypeError(op, `needs float tensors, got ${a.dtype}`);
  if (a.device !== b.device) {
    throw DeviceError.mismatch(op, shapes, "tensors live on different devices");
  }
  const alpha = opts.alpha ?? 1;
  const causal: CausalMask | undefined = opts.causal &&
    { on: opts.causal.on, transposed: opts.causal.transposed ?? false };
  if (causal && !["a", "b", "c"].includes(causal.on)) {
    throw new ValueError(op, `causal.on must be "a", "b" or "c", got ${String(causal.on)}`);
  }
  if (!Number.isFinite(alpha)) {
    throw new ValueError(
      op,
      `alpha must be finite, got ${alpha} (operands ${
        shapes.map((x) => `[${x.join(", ")}]`).join(" and ")
      })`,
    );
  }
  const r = a.rank;
  const dimsA = viewDims(op, "dimsA", opts.dimsA, r, shapes);
  const dimsB = viewDims(op, "dimsB", opts.dimsB, r, shapes);
  const dimsOut = viewDims(op, "dimsOut", opts.dimsOut, r, shapes);
  const va = dimsA.map((d) => a.shape[d]!), vb = dimsB.map((d) => b.shape[d]!);
  const [ar, ac] = va.slice(-2) as [number, number];
  const [br, bc] = vb.slice(-2) as [number, number];
  const m = ta ? ac : ar, k = ta ? ar : ac;
  const kb = tb ? bc : br, n = tb ? br : bc;
  const views = `views [${va.join(", ")}] and [${vb.join(", ")}]`;
  if (k !== kb) {
    throw ShapeError.mismatch(
      op,
      shapes,
      `inner dims differ: ${k} vs ${kb} (${views}, transposeA=${ta}, transposeB=${tb})`,
    );
  }
  const batchShape = va.slice(0, -2);
  if (batchShape.some((d, i) => d !== vb[i])) {
    throw ShapeError.mismatch(op, shapes, `batch dims of the ${views} differ`);
  }
  const cShape = [...batchShape, m, n];
  const outShape = new Array<number>(r);
  dimsOut.forEach((d, i) => (outShape[d] = cShape[i]!));
  const out = a.device.empty(outShape, a.dtype, op);
  if (out.size > 0) {
    const p: StridedMatmulProblem = {
      m,
      n,
      k,
      batchOuter: r === 4 ? batchShape[0]! : 1,
      batchInner: r >= 3 ? batchShape[r - 3]! : 1,
      a: layoutOf(a.shape, dimsA),
      b: layoutOf(b.shape, dimsB),
      c: layoutOf(outShape, dimsOut),
      transposeA: ta,
      transposeB: tb,
      dtype: a.dtype,
      alpha,
      causal,
    };
    a.device.run(
      matmulStridedDispatch(p, a.storage(op), b.storage(op), out.storage(op), opts.variant),
    );
  }
  if (needsGrad(a, b)) {
    record(out, op, [a, b], (g) => {
      // c = α·A·B: dA = α·G·Bᵀ, dB = α·Aᵀ·G (as in matmul), where G is read through dimsOut and
      // each gradient is written through its operand's dims, i.e. in the operand's own layout.
      // A mask follows its matrix into each gradient product (G stands for the masked c).
      let ga: Tensor | null = null, gb: Tensor | null = null;
      if (a.requiresGrad) {
        ga = ta
          // dAᵀ = α·op(B)·Gᵀ
          ? matmulStrided(b, g, {
            transposeA: tb,
            transposeB: true,
            dimsA: dimsB,
            dimsB: dimsOut,
            dimsOut: dimsA,
            alpha,
            causal: gradMask(causal, { a: "c", b: "a", c: "b" }, { a: true, b: false, c: true }),
          })
          // dA = α·G·op(B)ᵀ
          : matmulStrided(g, b, {
            transposeB: !tb,
            dimsA: dimsOut,
            dimsB,
            dimsOut: dimsA,
            alpha,
            causal: gradMask(causal, { a: "c", b: "b", c: "a" }, { a: false, b: true, c: false }),
          });
      }
      if (b.requiresGrad) {
        gb = tb
          // dBᵀ = α·Gᵀ·op(A)
          ? matmulStrided(g, a, {
            transposeA: true,
            transposeB: ta,
            dimsA: dimsOut,
            dimsB: dimsA,
            dimsOut: dimsB,
            alpha,
            causal: gradMask(causal, { a: "b", b: "c", c: "a" }, { a: false, b: true, c: true }),
          })
          // dB = α·op(A)ᵀ·G
          : matmulStrided(a, g, {
            transposeA: !ta,
            dimsA,
            dimsB: dimsOut,
            dimsOut: dimsB,
            alpha,
            causal: gradMask(causal, { a: "a", b: "c", c: "b" }, { a: true, b: false, c: false }),
          });
      }
      return [ga, gb];
    });
  }
  return out;
}
