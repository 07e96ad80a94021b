/**
 * `permute`: reorder the dims of a tensor (copying), with its gradient.
 *
 * @module
 */
import { PERMUTE_MAX_RANK, permuteDispatch, permuteLayout } from "../../kernels/permute.ts";
import { needsGrad, record } from "../autograd/tape.ts";
import type { DType } from "../core/dtype.ts";
import { ShapeError } from "../core/errors.ts";
import type { Tensor } from "../tensor/tensor.ts";

/**
 * Reorders dims: output dim i is input dim `dims[i]` (like `torch.permute` / `np.transpose`),
 * materialised as a new contiguous tensor. Any dtype; rank ≤ 6. Negative dims count from the
 * end.
 *
 * Gradient: the inverse permutation.
 *
 * @param x The tensor.
 * @param dims A permutation of `0 .. rank-1`.
 * @returns The permuted tensor, shape `dims.map((d) => x.shape[d])`.
 *
 * @example Attention heads: [B, T, H, hd] → [B, H, T, hd]
 * ```ts
 * import { openDevice, permute } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using x = dev.arange(24).reshape([1, 3, 2, 4]);
 * using y = permute(x, [0, 2, 1, 3]);
 * assert.deepEqual(y.shape, [1, 2, 3, 4]);
 * assert.deepEqual([...await y.data()].slice(0, 8), [0, 1, 2, 3, 8, 9, 10, 11]);
 * ```
 */
export function permute<D extends DType>(x: Tensor<D>, dims: readonly number[]): Tensor<D> {
  const op = "permute";
  const rank = x.rank;
  if (rank > PERMUTE_MAX_RANK) {
    throw ShapeError.mismatch(
      op,
      [x.shape],
      `supports at most ${PERMUTE_MAX_RANK} dims, got ${rank}`,
    );
  }
  const norm = dims.map((d) => (d < 0 ? d + rank : d));
  const seen = new Set(norm);
  if (
    dims.length !== rank || seen.size !== rank ||
    norm.some((d) => !Number.isInteger(d) || d < 0 || d >= rank)
  ) {
    throw ShapeError.mismatch(
      op,
      [x.shape],
      `dims [${dims.join(", ")}] are not a permutation of 0..${rank - 1}`,
    );
  }
  const out = x.device.empty(norm.map((d) => x.shape[d]!), x.dtype, op);
  if (out.size > 0) {
    x.device.run(
      permuteDispatch(x.dtype, permuteLayout(x.shape, norm), x.storage(op), out.storage(op)),
    );
  }
  if (needsGrad(x)) {
    const inverse = new Array<number>(rank);
    norm.forEach((d, i) => (inverse[d] = i));
    record(out, op, [x], (g) => [permute(g, inverse)]);
  }
  return out;
}
