/**
 * `matmul`: batched dense matrix product with optional transposes, and its gradient.
 *
 * @module
 */
import { sumToDispatch, sumToLayout } from "../../kernels/layout.ts";
import { matmulDispatch, type MatmulProblem, type MatmulVariant } from "../../kernels/matmul.ts";
import { needsGrad, record } from "../autograd/tape.ts";
import { type DType, isFloat } from "../core/dtype.ts";
import { DeviceError, DTypeError, ShapeError } from "../core/errors.ts";
import { broadcastShapes, sizeOf } from "../core/shape.ts";
import { sumSplits } from "./split_sum.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { sumTo } from "./layout.ts";

export type { MatmulVariant } from "../../kernels/matmul.ts";

/** Options for {@link matmul}. */
export interface MatmulOptions {
  /** Read `a` as its transpose (last two dims). */
  transposeA?: boolean;
  /** Read `b` as its transpose (last two dims). */
  transposeB?: boolean;
  /** Force a kernel (tests and benchmarks). */
  variant?: MatmulVariant;
}

/**
 * How many K-chunks to split a product into (1 = no split). Only for `Aᵀ·B` with one batch,
 * where K-chunks of both operands are contiguous, when the output alone would give fewer than
 * 16 workgroups of the tiled kernel and K is long enough to amortise the extra reduction.
 */
function splitKFactor(p: MatmulProblem): number {
  if (!p.transposeA || p.transposeB || p.batch !== 1) return 1;
  const tiles = Math.ceil(p.m / 64) * Math.ceil(p.n / 64);
  if (tiles >= 16 || p.k < 1024) return 1;
  let s = 1;
  // Chunks stay multiples of 8 rows (the tiled kernel's row block) and at least 256 long.
  while (s * 2 * tiles <= 32 && p.k % (s * 2 * 8) === 0 && p.k / (s * 2) >= 256) s *= 2;
  return s;
}

/**
 * Matrix product over the last two dims, broadcasting leading (batch) dims.
 * `a` is `[..., m, k]` (or `[..., k, m]` with `transposeA`), `b` is `[..., k, n]` (or
 * `[..., n, k]` with `transposeB`); the result is `[..., m, n]`. f32 accumulation.
 *
 * @param a Left operand.
 * @param b Right operand.
 * @param opts Transposes.
 * @returns The product.
 *
 * @example
 * ```ts
 * import { matmul, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using c = matmul(dev.tensor([[1, 2], [3, 4]]), dev.tensor([[5, 6], [7, 8]]));
 * assert.deepEqual(await c.toArray(), [[19, 22], [43, 50]]);
 * ```
 */
export function matmul<D extends DType>(
  a: Tensor<D>,
  b: Tensor<D>,
  opts: MatmulOptions = {},
): Tensor<D> {
  const ta = opts.transposeA ?? false, tb = opts.transposeB ?? false;
  if (a.rank < 2 || b.rank < 2) {
    throw ShapeError.mismatch("matmul", [a.shape, b.shape], "operands need at least 2 dims");
  }
  if (a.dtype !== b.dtype) {
    throw new DTypeError("matmul", `dtypes differ: ${a.dtype} and ${b.dtype}`);
  }
  if (!isFloat(a.dtype)) throw new DTypeError("matmul", `needs float tensors, got ${a.dtype}`);
  if (a.device !== b.device) {
    throw DeviceError.mismatch("matmul", [a.shape, b.shape], "tensors live on different devices");
  }
  const [ar, ac] = a.shape.slice(-2) as [number, number];
  const [br, bc] = b.shape.slice(-2) as [number, number];
  const m = ta ? ac : ar, k = ta ? ar : ac;
  const kb = tb ? bc : br, n = tb ? br : bc;
  if (k !== kb) {
    throw ShapeError.mismatch(
      "matmul",
      [a.shape, b.shape],
      `inner dims differ: ${k} vs ${kb}${ta || tb ? ` (transposeA=${ta}, transposeB=${tb})` : ""}`,
    );
  }
  const ba = a.shape.slice(0, -2), bb = b.shape.slice(0, -2);
  const sizeA = sizeOf(ba), sizeB = sizeOf(bb);
  // Supported batch broadcasting: equal batch shapes, or one side without batch (a shared matrix).
  const same = ba.length === bb.length && ba.every((d, i) => d === bb[i]);
  if (!same && sizeA !== 1 && sizeB !== 1) {
    throw ShapeError.mismatch(
      "matmul",
      [a.shape, b.shape],
      "batch dims must match or one side must have none",
    );
  }
  // A shared side may still carry size-1 batch dims ([1, m, k] · [3, k, n]): broadcast them.
  const batchShape = same ? ba : broadcastShapes("matmul", ba, bb);
  const batch = sizeOf(batchShape);
  const out = a.device.empty([...batchShape, m, n], a.dtype, "matmul");
  if (out.size > 0) {
    const p: MatmulProblem = {
      m,
      n,
      k,
      batch,
      strideA: sizeA === 1 ? 0 : m * k,
      strideB: sizeB === 1 ? 0 : k * n,
      transposeA: ta,
      transposeB: tb,
      dtype: a.dtype,
    };
    // Split-K is for a GPU's occupancy; host backends (BLAS, the twin) run the whole K in one
    // product and skip the partials buffer and its reduction.
    const splits = opts.variant || a.device.kind !== "webgpu" ? 1 : splitKFactor(p);
    if (splits > 1) {
      // Split-K: a small output with a long inner dim (weight gradients Xᵀ·dY) would occupy a
      // handful of invocations; K-chunks of Aᵀ and B are contiguous row blocks, so the chunks run
      // as one batched product and a sum over the chunk axis finishes it.
      const kc = k / splits;
      const parts = a.device.empty([splits, m, n], a.dtype, "matmul");
      a.device.run(matmulDispatch(
        { ...p, k: kc, batch: splits, strideA: kc * m, strideB: kc * n },
        a.storage("matmul"),
        b.storage("matmul"),
        parts.storage("matmul"),
      ));
      sumSplits(parts, [out], splits, "matmul", () =>
        a.device.run(
          sumToDispatch(
            a.dtype,
            sumToLayout([splits, m, n], [m, n]),
            parts.storage("matmul"),
            out.storage("matmul"),
          ),
        ));
      parts.dispose();
    } else {
      a.device.run(
        matmulDispatch(
          p,
          a.storage("matmul"),
          b.storage("matmul"),
          out.storage("matmul"),
          opts.variant,
        ),
      );
    }
  }
  if (needsGrad(a, b)) {
    record(out, "matmul", [a, b], (g) => {
      // C = A·B: dA = G·Bᵀ, dB = Aᵀ·G, each in the stored orientation of A and B.
      let ga: Tensor | null = null, gb: Tensor | null = null;
      if (a.requiresGrad) {
        ga = ta
          ? matmul(b, g, { transposeA: tb, transposeB: true })
          : matmul(g, b, { transposeB: !tb });
        if (sizeOf(ba) !== batch || ba.length !== batchShape.length) ga = sumTo(ga, a.shape);
      }
      if (b.requiresGrad) {
        gb = tb
          ? matmul(g, a, { transposeA: true, transposeB: ta })
          : matmul(a, g, { transposeA: !ta });
        if (sizeOf(bb) !== batch || bb.length !== batchShape.length) gb = sumTo(gb, b.shape);
      }
      return [ga, gb];
    });
  }
  return out;
}
