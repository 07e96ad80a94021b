/**
 * BitNet b1.58 fake quantisation with the straight-through estimator, for training: the forward
 * value is the quantised-then-dequantised tensor, the gradient passes through unchanged
 * (`x + (q(x) − x).detach()` in PyTorch terms). Activations: int8 absmax per token; weights:
 * ternary absmean per tensor (docs/paper-notes.md §1.4).
 *
 * @module
 */
import { fakeQuantRowsDispatch, fakeQuantTernaryDispatch } from "../../kernels/quant_ste.ts";
import { needsGrad, noGrad, record } from "../autograd/tape.ts";
import { DTypeError, ShapeError } from "../core/errors.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { abs } from "./elementwise.ts";
import { meanAll } from "./reduce.ts";

/**
 * ε added to the per-token absmax before dividing (BitNet's reference uses 1e-5).
 *
 * @example ε keeps an all-zero token finite
 * ```ts
 * import { openDevice, quantizeActivationsSte } from "@qsparse/kit";
 * import { ACT_QUANT_EPS } from "./quant_ste.ts";
 * import assert from "node:assert/strict";
 * assert.equal(ACT_QUANT_EPS, 1e-5);
 * using dev = await openDevice({ prefer: "cpu" });
 * using q = quantizeActivationsSte(dev.zeros([1, 3]));
 * assert.deepEqual([...await q.data()], [0, 0, 0]);
 * ```
 */
export const ACT_QUANT_EPS = 1e-5;
/**
 * ε added to the per-tensor mean |w| (BitNet's reference clamps at 1e-5).
 *
 * @example ε keeps all-zero weights finite
 * ```ts
 * import { openDevice, quantizeWeightsSte } from "@qsparse/kit";
 * import { WEIGHT_QUANT_EPS } from "./quant_ste.ts";
 * import assert from "node:assert/strict";
 * assert.equal(WEIGHT_QUANT_EPS, 1e-5);
 * using dev = await openDevice({ prefer: "cpu" });
 * using q = quantizeWeightsSte(dev.zeros([2, 2]));
 * assert.deepEqual([...await q.data()], [0, 0, 0, 0]);
 * ```
 */
export const WEIGHT_QUANT_EPS = 1e-5;

function checkF32(op: string, x: Tensor): void {
  if (x.dtype !== "f32") throw new DTypeError(op, `needs f32, got ${x.dtype} ${x}`);
  if (x.rank < 1) throw ShapeError.mismatch(op, [x.shape], "needs at least one dim");
}

/**
 * int8 absmax fake quantisation per row (token) with STE: `clamp(round(x·s), −128, 127)/s`,
 * `s = 127/(max|x| + ε)`. A row's max survives top-K, so quantize-then-mask equals
 * mask-then-quantize.
 *
 * @param x Activations `[..., D]`, f32.
 * @returns The dequantised values (same shape); gradient = identity.
 *
 * @example
 * ```ts
 * import { openDevice, quantizeActivationsSte } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using q = quantizeActivationsSte(dev.tensor([[1.27, 0.004, -0.5]]));
 * const v = await q.data();
 * assert.ok(Math.abs(v[0]! - 1.27) < 1e-4); // the max comes back (off only by ε)
 * assert.equal(v[1], 0); // below half a step
 * ```
 */
export function quantizeActivationsSte(x: Tensor<"f32">): Tensor<"f32"> {
  const op = "quantizeActivationsSte";
  checkF32(op, x);
  const cols = x.shape[x.rank - 1]!;
  const rows = cols === 0 ? 0 : x.size / cols;
  const out = x.device.empty(x.shape, "f32", op);
  if (x.size > 0) {
    x.device.run(fakeQuantRowsDispatch(x.storage(op), out.storage(op), rows, cols, ACT_QUANT_EPS));
  }
  if (needsGrad(x)) record(out, op, [x], (g) => [g]);
  return out;
}

/**
 * Ternary absmean fake quantisation per tensor with STE: `clamp(round(w/a), −1, 1)·a`,
 * `a = mean|w| + ε`. Latent full-precision weights keep training.
 *
 * @param w Weights, f32.
 * @returns Values in {−a, 0, a} (same shape); gradient = identity.
 *
 * @example
 * ```ts
 * import { openDevice, quantizeWeightsSte } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using q = quantizeWeightsSte(dev.tensor([0.9, -0.1, -1.2, 0.2]));
 * assert.equal(new Set((await q.data()).map((v) => Math.abs(v))).size, 2); // {0, a}
 * ```
 */
export function quantizeWeightsSte(w: Tensor<"f32">): Tensor<"f32"> {
  const op = "quantizeWeightsSte";
  checkF32(op, w);
  const out = w.device.empty(w.shape, "f32", op);
  if (w.size > 0) {
    const m = noGrad(() => meanAll(abs(w)));
    w.device.run(
      fakeQuantTernaryDispatch(
        w.storage(op),
        m.storage(op),
        out.storage(op),
        w.size,
        WEIGHT_QUANT_EPS,
      ),
    );
    m.dispose();
  }
  if (needsGrad(w)) record(out, op, [w], (g) => [g]);
  return out;
}
