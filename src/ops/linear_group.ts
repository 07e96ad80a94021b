/**
 * `matmulShared`: the products `x·W_i` of one input with several weights (attention's q/k/v,
 * the FFN's gate/up) in one launch, and a gradient of two launches: `dX = Σ_i g_i·W_iᵀ`
 * accumulated in registers, and every `dW_i = xᵀ·g_i`.
 *
 * @module
 */
import {
  linearGroupDispatch,
  type LinearGroupProblem,
  linearGroupSplitDispatches,
  MAX_GROUP,
} from "../../kernels/linear_group.ts";
import { matmulDispatch } from "../../kernels/matmul.ts";
import { needsGrad, recordGroup } from "../autograd/tape.ts";
import { type DType, isFloat } from "../core/dtype.ts";
import { DeviceError, DTypeError, ShapeError } from "../core/errors.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { sumSplits } from "./split_sum.ts";

const OP = "matmulShared";

/**
 * K-chunks for the weight gradients `xᵀ·g_i` (matmul's split-K rule, per weight): only when
 * one weight's output gives fewer than 16 workgroups of 64 × 64 and K is long enough to amortise
 * the reduction. For a GPU's occupancy; host backends run the whole K in one product.
 */
function splitKFactor(m: number, n: number, k: number): number {
  const tiles = Math.ceil(m / 64) * Math.ceil(n / 64);
  if (tiles >= 16 || k < 1024) return 1;
  let s = 1;
  while (s * 2 * tiles <= 32 && k % (s * 2 * 8) === 0 && k / (s * 2) >= 256) s *= 2;
  return s;
}

/**
 * `[x·W_0, x·W_1, …]` for `x` `[..., k]` and weights `[k, n]` of one shape (1 to 3 of them),
 * each result `[..., n]`. One launch computes all of them, each with the k loop of
 * {@link matmul}'s kernel, so every result equals `matmul` of the flattened `x` with its weight
 * bit for bit (a single row runs the separate GEMVs, as `matmul` would). The weights stay
 * separate tensors, each with its own gradient.
 *
 * Gradient: `dx = Σ_i g_i·W_iᵀ` in one launch that accumulates every product in f32 before a
 * single store (it differs from summing separate products by f32 rounding only), and all
 * `dW_i = xᵀ·g_i` in another (on WebGPU, with many rows and small weights, split into K-chunks
 * and a sum as `matmul` does: two launches).
 *
 * @param x Input, `[..., k]`.
 * @param weights Weights, each `[k, n]`.
 * @returns One output per weight, `[..., n]`.
 *
 * @example q, k and v of one input
 * ```ts
 * import { matmul, matmulShared, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using x = dev.randn([2, 5, 8], { seed: 1 });
 * const ws = [2, 3, 4].map((seed) => dev.randn([8, 6], { seed }));
 * const [q, k, v] = matmulShared(x, ws);
 * assert.deepEqual(v!.shape, [2, 5, 6]);
 * using ref = matmul(x.reshape([10, 8]), ws[1]!);
 * assert.deepEqual(await k!.data(), await ref.data());
 * for (const t of [q!, k!, v!, ...ws]) t.dispose();
 * ```
 */
export function matmulShared<D extends DType>(
  x: Tensor<D>,
  weights: readonly Tensor<D>[],
): Tensor<D>[] {
  const shapes = [x.shape, ...weights.map((w) => w.shape)];
  const count = weights.length;
  if (count < 1 || count > MAX_GROUP) {
    throw ShapeError.mismatch(OP, shapes, `takes 1 to ${MAX_GROUP} weights, got ${count}`);
  }
  if (x.rank < 1) throw ShapeError.mismatch(OP, shapes, "x needs at least 1 dim");
  if (!isFloat(x.dtype)) throw new DTypeError(OP, `needs float tensors, got ${x.dtype}`);
  const w0 = weights[0]!;
  for (const w of weights) {
    if (w.dtype !== x.dtype) throw new DTypeError(OP, `dtypes differ: ${x.dtype} and ${w.dtype}`);
    if (w.device !== x.device) {
      throw DeviceError.mismatch(OP, shapes, "tensors live on different devices");
    }
    if (w.rank !== 2 || w.shape[0] !== w0.shape[0] || w.shape[1] !== w0.shape[1]) {
      throw ShapeError.mismatch(OP, shapes, "weights must all be [k, n] of one shape");
    }
  }
  const k = x.shape[x.rank - 1]!, n = w0.shape[1]!;
  if (w0.shape[0] !== k) {
    throw ShapeError.mismatch(OP, shapes, `inner dims differ: ${k} vs ${w0.shape[0]}`);
  }
  const dev = x.device, lead = x.shape.slice(0, -1);
  const m = x.size / Math.max(k, 1);
  const outs = weights.map(() => dev.empty([...lead, n], x.dtype, OP));
  if (m > 0 && n > 0) {
    const xs = x.storage(OP);
    if (m === 1) {
      // One row: matmul's GEMV (another loop order), one launch per weight, as before.
      const single = { m, n, k, batch: 1, strideA: 0, strideB: 0, dtype: x.dtype };
      weights.forEach((w, i) => {
        const p = { ...single, transposeA: false, transposeB: false };
        dev.run(matmulDispatch(p, xs, w.storage(OP), outs[i]!.storage(OP)));
      });
    } else {
      const p: LinearGroupProblem = {
        kind: "shared",
        count,
        m,
        n,
        k,
        transposeA: false,
        transposeB: false,
        dtype: x.dtype,
      };
      dev.run(linearGroupDispatch(p, [
        xs,
        ...weights.map((w) => w.storage(OP)),
        ...outs.map((o) => o.storage(OP)),
      ]));
    }
  }
  if (needsGrad(x, ...weights)) {
    recordGroup(outs, OP, [x, ...weights], (grads) => {
      const live = grads.flatMap((g, i) => (g ? [i] : []));
      let gx: Tensor | null = null;
      if (x.requiresGrad) {
        gx = dev.empty(x.shape, x.dtype, OP);
        if (gx.size > 0) {
          dev.run(linearGroupDispatch({
            kind: "summed",
            count: live.length,
            m,
            n: k,
            k: n,
            transposeA: false,
            transposeB: true,
            dtype: x.dtype,
          }, [
            ...live.map((i) => grads[i]!.storage(OP)),
            ...live.map((i) => weights[i]!.storage(OP)),
            gx.storage(OP),
          ]));
        }
      }
      const gws: (Tensor | null)[] = weights.map(() => null);
      const need = live.filter((i) => weights[i]!.requiresGrad);
      if (need.length) {
        for (const i of need) gws[i] = dev.empty(w0.shape, x.dtype, OP);
        if (k > 0 && n > 0) {
          const p: LinearGroupProblem = {
            kind: "shared",
            count: need.length,
            m: k,
            n,
            k: m,
            transposeA: true,
            transposeB: false,
            dtype: x.dtype,
          };
          const bs = need.map((i) => grads[i]!.storage(OP));
          const cs = need.map((i) => gws[i]!.storage(OP));
          const splits = dev.kind === "webgpu" ? splitKFactor(k, n, m) : 1;
          if (splits > 1) {
            // A long K (tokens) into small outputs: chunk products, then one sum into each dW.
            using parts = dev.empty([need.length * splits, k, n], x.dtype, OP);
            const [prod, sum] = linearGroupSplitDispatches(
              { ...p, splits },
              x.storage(OP),
              bs,
              parts.storage(OP),
              cs,
            );
            dev.run(prod);
            sumSplits(parts, need.map((i) => gws[i]!), splits, OP, () => dev.run(sum));
          } else dev.run(linearGroupDispatch(p, [x.storage(OP), ...bs, ...cs]));
        }
      }
      return [gx, ...gws];
    });
  }
  return outs;
}
