/**
 * Top-K sparsification (Q-Sparse): per row over the last dim by |x|, ties to the lower index,
 * NaN above every number, ±Inf by magnitude. Sparse forms (`topkRows`, `sparsify`,
 * `topkBlocks`) and the differentiable masked-dense form (`topkMask`, straight-through).
 *
 * @module
 */
import { TOPK_SMALL_MAX_D } from "../../kernels/topk_small.ts";
import { topkMaskDispatch } from "../../kernels/topk_mask.ts";
import { nmDispatch } from "../../kernels/nm.ts";
import {
  type TopkOrder,
  topkRowsDispatch,
  type TopkSpec,
  topkWorkgroupSize,
} from "../../kernels/topk.ts";
import { needsGrad, record } from "../autograd/tape.ts";
import { type FloatDType, isFloat } from "../core/dtype.ts";
import { DTypeError, ShapeError, ValueError } from "../core/errors.ts";
import { sizeOf } from "../core/shape.ts";
import { NMSparse, SparseRows } from "../tensor/sparse.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { mul } from "./elementwise.ts";

export type { TopkOrder };

/**
 * K = ⌊(1 − S)·D⌋, the entries kept per row at sparsity S, robust to float error: a product
 * within 1e-9 of an integer counts as that integer, so `(1 − 0.9)·10` keeps 1 (not 0) and
 * `(1 − 0.6)·4096` keeps 1638.
 *
 * @param d Row length D.
 * @param sparsity S in [0, 1].
 * @param op Op name for the error.
 * @returns K.
 *
 * @example
 * ```ts
 * import { keepCount } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * assert.equal(keepCount(4096, 0.6), 1638);
 * assert.equal(keepCount(10, 0.9), 1);
 * assert.equal(keepCount(32, 0.5), 16);
 * ```
 */
export function keepCount(d: number, sparsity: number, op = "keepCount"): number {
  if (!(sparsity >= 0 && sparsity <= 1)) {
    throw new ValueError(op, `sparsity S must be in [0, 1], got ${sparsity} (D = ${d})`);
  }
  const raw = (1 - sparsity) * d;
  const near = Math.round(raw);
  return Math.abs(raw - near) <= 1e-9 * Math.max(1, d) ? near : Math.floor(raw);
}

function checkFloat(op: string, x: Tensor): asserts x is Tensor<FloatDType> {
  if (!isFloat(x.dtype)) throw new DTypeError(op, `needs a float tensor, got ${x.dtype} ${x}`);
  if (x.rank < 1) {
    throw ShapeError.mismatch(op, [x.shape], "needs at least 1 dim (rows over the last)");
  }
}

function checkK(op: string, x: Tensor, k: number): void {
  const d = x.shape[x.rank - 1]!;
  if (!Number.isInteger(k) || k < 0 || k > d) {
    throw ShapeError.mismatch(
      op,
      [x.shape],
      `K must be an integer in [0, ${d}] (the last dim), got ${k}`,
    );
  }
}

/** Options for {@link topkRows}. */
export interface TopkOptions {
  /** Rank by `"magnitude"` |x| (default, Q-Sparse) or by `"value"` x. */
  order?: TopkOrder;
  /** Return each row in rank order (largest first) instead of ascending column order. */
  sorted?: boolean;
}

/**
 * The K top entries of every row (last dim) by |x|, as {@link SparseRows}. One dispatch with
 * O(D) work per row (radix select + compaction), any K from 0 to D. Ties go to the lower index,
 * NaN ranks above every number, ±Inf by magnitude. Rows come out in ascending column order, or in
 * rank order with `sorted`.
 *
 * @param x A float tensor `[..., D]`.
 * @param k Entries to keep per row, 0..D.
 * @param opts Order (magnitude or value) and sorting.
 * @returns The sparse rows (`values`, `indices` `[..., K]`).
 *
 * @example
 * ```ts
 * import { openDevice, topkRows } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using x = dev.tensor([[0.5, -2, 1, 2], [NaN, 1, -Infinity, 0]]);
 * using s = topkRows(x, 2);
 * assert.deepEqual(await s.indices.toArray(), [[1, 3], [0, 2]]); // tie at |2| → lower index first
 * using r = topkRows(x, 2, { sorted: true, order: "value" });
 * assert.deepEqual(await r.values.toArray(), [[2, 1], [NaN, 1]]);
 * ```
 */
export function topkRows<D extends FloatDType>(
  x: Tensor<D>,
  k: number,
  opts: TopkOptions = {},
): SparseRows<D> {
  const op = "topkRows";
  checkFloat(op, x);
  checkK(op, x, k);
  const d = x.shape[x.rank - 1]!;
  const rows = sizeOf(x.shape.slice(0, -1));
  const outShape = [...x.shape.slice(0, -1), k];
  const values = x.device.empty(outShape, x.dtype, op);
  const indices = x.device.empty(outShape, "u32", op);
  if (rows > 0 && k > 0) {
    const spec: TopkSpec = {
      dtype: x.dtype,
      order: opts.order ?? "magnitude",
      output: "sparse",
      sorted: opts.sorted ?? false,
      mask: false,
      rescale: false,
      wg: topkWorkgroupSize(d),
    };
    x.device.run(
      topkRowsDispatch(spec, { rows, d, k, segs: 1 }, [
        x.storage(op),
        values.storage(op),
        indices.storage(op),
      ], op),
    );
  }
  return new SparseRows(values, indices, x.shape, opts.sorted ?? false);
}

/**
 * Q-Sparse's sparsification at sparsity S: {@link topkRows} with K = ⌊(1 − S)·D⌋ (see
 * {@link keepCount}).
 *
 * @param x A float tensor `[..., D]`.
 * @param sparsity S in [0, 1], the fraction of each row dropped.
 * @param opts Order and sorting, as for `topkRows`.
 * @returns The sparse rows.
 *
 * @example
 * ```ts
 * import { openDevice, sparsify } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using s = sparsify(dev.randn([3, 4096], { seed: 1 }), 0.6);
 * assert.equal(s.k, 1638);
 * assert.deepEqual(s.values.shape, [3, 1638]);
 * ```
 */
export function sparsify<D extends FloatDType>(
  x: Tensor<D>,
  sparsity: number,
  opts: TopkOptions = {},
): SparseRows<D> {
  checkFloat("sparsify", x);
  return topkRows(x, keepCount(x.shape[x.rank - 1]!, sparsity, "sparsify"), opts);
}

function checkBlocks(op: string, x: Tensor, n: number, m: number): void {
  const d = x.shape[x.rank - 1]!;
  if (!Number.isInteger(m) || m < 1 || d % m !== 0) {
    throw ShapeError.mismatch(
      op,
      [x.shape],
      `block length m = ${m} must be a positive integer dividing the last dim ${d}`,
    );
  }
  if (!Number.isInteger(n) || n < 0 || n > m) {
    throw ShapeError.mismatch(op, [x.shape], `n must be an integer in [0, m = ${m}], got ${n}`);
  }
}

/** Options for {@link topkBlocks}. */
export interface TopkBlocksOptions {
  /** Rank by `"magnitude"` (default) or `"value"`. */
  order?: TopkOrder;
}

/**
 * N:M top-K (Block Q-Sparse): the `n` top entries by |x| inside each block of `m` consecutive
 * values along the last dim. `m` must divide D. Ties go to the lower index. The default use is
 * 16:32.
 *
 * @param x A float tensor `[..., D]`.
 * @param n Kept per block.
 * @param m Block length (divides D).
 * @param opts Ranking order.
 * @returns The {@link NMSparse} tensor.
 *
 * @example
 * ```ts
 * import { openDevice, topkBlocks } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using s = topkBlocks(dev.randn([2, 64], { seed: 3 }), 16, 32);
 * assert.deepEqual(s.values.shape, [2, 32]);
 * assert.equal(s.sparsity, 0.5);
 * ```
 */
export function topkBlocks<D extends FloatDType>(
  x: Tensor<D>,
  n: number,
  m: number,
  opts: TopkBlocksOptions = {},
): NMSparse<D> {
  const op = "topkBlocks";
  checkFloat(op, x);
  checkBlocks(op, x, n, m);
  const d = x.shape[x.rank - 1]!;
  const rows = sizeOf(x.shape.slice(0, -1));
  const outShape = [...x.shape.slice(0, -1), (d / m) * n];
  const values = x.device.empty(outShape, x.dtype, op);
  const indices = x.device.empty(outShape, "u32", op);
  if (rows > 0 && n > 0 && d > 0) {
    x.device.run(
      nmDispatch(
        { dtype: x.dtype, order: opts.order ?? "magnitude", output: "sparse", mask: false, n, m },
        rows,
        d,
        [x.storage(op), values.storage(op), indices.storage(op)],
      ),
    );
  }
  return new NMSparse(values, indices, x.shape, n, m);
}

/** Options for {@link topkMask}. */
export interface TopkMaskOptions {
  /**
   * Straight-through estimator (default true, as in Q-Sparse): the gradient passes to every
   * entry unmasked. With false the gradient is masked (g ⊙ M).
   */
  ste?: boolean;
  /**
   * Block Q-Sparse: keep `n` of every `m` consecutive values. `n` defaults to the count the second
   * argument implies for one block (K·m/D, or ⌊(1 − S)·m⌋).
   */
  block?: { n?: number; m: number };
  /**
   * Scale the kept entries by ‖x‖₂/‖x_kept‖₂ per row (norm-preserving). Off by default, matching
   * the official Q-Sparse code, which does no rescale. Needs `ste` (the gradient treats it as
   * identity).
   */
  rescale?: boolean;
  /** Rank by `"magnitude"` (default) or `"value"`. */
  order?: TopkOrder;
}

/** Entries to keep, as a count K or a sparsity S. */
export type KeepSpec = number | { sparsity: number };

/**
 * The masked-dense form of top-K sparsification, differentiable: `x ⊙ M` with `M` the top-K (or
 * N:M) mask by |x| per row. The backward pass is the straight-through estimator by default
 * (identity), or `g ⊙ M` with `ste: false` (the mask is recomputed in the backward pass, so no
 * state outlives the forward).
 *
 * @param x A float tensor `[..., D]`.
 * @param keep K per row, or `{ sparsity: S }` for K = ⌊(1 − S)·D⌋.
 * @param opts STE, N:M blocks, norm-preserving rescale, order.
 * @returns The masked tensor, same shape as x.
 *
 * @example
 * ```ts
 * import { backward, openDevice, sumAll, topkMask } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * const x = dev.tensor([[1, -3, 2, 0.5]]);
 * x.requiresGrad = true;
 * using y = topkMask(x, { sparsity: 0.5 });
 * assert.deepEqual(await y.toArray(), [[0, -3, 2, 0]]);
 * backward(sumAll(y));
 * assert.deepEqual(await x.grad!.toArray(), [[1, 1, 1, 1]]); // straight-through
 * using z = topkMask(dev.tensor([[1, -3, 2, 0.5]]), 2, { block: { m: 2 } }); // 1 of every 2
 * assert.deepEqual(await z.toArray(), [[0, -3, 2, 0]]);
 * ```
 */
export function topkMask<D extends FloatDType>(
  x: Tensor<D>,
  keep: KeepSpec,
  opts: TopkMaskOptions = {},
): Tensor<D> {
  const op = "topkMask";
  checkFloat(op, x);
  const ste = opts.ste ?? true;
  const rescale = opts.rescale ?? false;
  if (rescale && !ste) {
    throw new ValueError(op, `rescale needs ste (its gradient is taken as identity) for ${x}`);
  }
  const d = x.shape[x.rank - 1]!;
  const order = opts.order ?? "magnitude";
  let k: number;
  let block: { n: number; m: number } | null = null;
  if (opts.block) {
    const m = opts.block.m;
    checkBlocks(op, x, opts.block.n ?? 0, m);
    if (rescale) {
      throw new ValueError(op, "rescale is only defined for unstructured top-K, not N:M blocks");
    }
    let n: number;
    if (typeof keep === "number") {
      checkK(op, x, keep);
      n = (keep * m) / d;
      if (opts.block.n !== undefined && opts.block.n !== n) {
        throw ShapeError.mismatch(
          op,
          [x.shape],
          `K = ${keep} per row does not match ${opts.block.n}:${m} blocks`,
        );
      }
      if (!Number.isInteger(n)) {
        throw ShapeError.mismatch(
          op,
          [x.shape],
          `K = ${keep} is not a whole number per block of ${m}`,
        );
      }
    } else n = opts.block.n ?? keepCount(m, keep.sparsity, op);
    block = { n, m };
    k = (d / m) * n;
  } else {
    k = typeof keep === "number" ? keep : keepCount(d, keep.sparsity, op);
    checkK(op, x, k);
  }
  const run = (withMask: boolean): [Tensor<D>, Tensor<D> | null] => {
    const out = x.device.empty(x.shape, x.dtype, op);
    const mask = withMask ? x.device.empty(x.shape, x.dtype, op) : null;
    if (out.size === 0) return [out, mask];
    const bufs = [x.storage(op), out.storage(op)];
    if (mask) bufs.push(mask.storage(op));
    const rows = sizeOf(x.shape.slice(0, -1));
    // Many short rows (a training batch) or N:M blocks: one invocation per row/block, no
    // barriers (kernels/topk_small.ts), or on an autotuned GPU one workgroup per row/block
    // (kernels/topk_coop.ts); long rows keep the workgroup-per-row radix select.
    const segLen = block ? block.m : d, segs = block ? rows * (d / block.m) : rows;
    if (segLen <= TOPK_SMALL_MAX_D && (block !== null || segs >= 32)) {
      x.device.run(
        topkMaskDispatch(
          { dtype: x.dtype, order, mask: withMask, rescale },
          segs,
          segLen,
          block ? block.n : k,
          bufs,
          op,
        ),
      );
    } else if (block) {
      x.device.run(
        nmDispatch(
          { dtype: x.dtype, order, output: "dense", mask: withMask, ...block },
          rows,
          d,
          bufs,
        ),
      );
    } else {
      const spec: TopkSpec = {
        dtype: x.dtype,
        order,
        output: "dense",
        sorted: false,
        mask: withMask,
        rescale,
        wg: topkWorkgroupSize(d),
      };
      x.device.run(topkRowsDispatch(spec, { rows, d, k, segs: 1 }, bufs, op));
    }
    return [out, mask];
  };
  const [out] = run(false);
  if (needsGrad(x)) {
    record(out, op, [x], (g) => {
      if (ste) return [g];
      const [masked, mask] = run(true);
      masked.dispose();
      const gx = mul(g as Tensor<D>, mask!);
      mask!.dispose();
      return [gx];
    });
  }
  return out;
}
