/**
 * BitNet b1.58 integer quantization (docs/paper-notes.md §1.4): per-token absmax int8
 * activations, per-tensor absmean ternary weights, quantized top-K (quantize then mask), and the product of
 * int8 (sparse) activations by ternary weights. For training, the straight-through fake-quant
 * forms are `quantizeActivationsSte` / `quantizeWeightsSte`; these ops share their conventions,
 * so `quantizeActivations(x).dequantize()` equals `quantizeActivationsSte(x)` exactly.
 *
 * @module
 */
import {
  packTernaryDispatch,
  quantKeptDispatch,
  quantRowsDispatch,
  ternaryMatmulDispatch,
} from "../../kernels/quant.ts";
import { noGrad } from "../autograd/tape.ts";
import { DeviceError, DTypeError, ShapeError } from "../core/errors.ts";
import { Int8Rows, Int8SparseRows, TernaryWeights } from "../tensor/quantized.ts";
import { sizeOf } from "../core/shape.ts";
import { SparseRows } from "../tensor/sparse.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { abs } from "./elementwise.ts";
import { ACT_QUANT_EPS, WEIGHT_QUANT_EPS } from "./quant_ste.ts";
import { meanAll } from "./reduce.ts";
import { keepCount, type KeepSpec, topkRows } from "./topk.ts";

function checkF32(op: string, x: Tensor): void {
  if (x.dtype !== "f32") throw new DTypeError(op, `needs f32, got ${x.dtype} ${x}`);
  if (x.rank < 1) throw ShapeError.mismatch(op, [x.shape], "needs at least one dim");
}

/**
 * Per-token (row) absmax int8 quantization: `scale = 127 / (max|x| + ε)`, `codes =
 * clamp(round(x · scale), −128, 127)` (round half to even), ε = 1e-5.
 *
 * @param x f32 activations `[..., D]`.
 * @returns Codes `[..., D]` and per-row scale `[..., 1]`.
 *
 * @example
 * ```ts
 * import { openDevice, quantizeActivations } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using q = quantizeActivations(dev.tensor([[1, -0.5], [0, 4]]));
 * assert.deepEqual(await q.codes.toArray(), [[127, -63], [0, 127]]); // −0.5 · 127/(1 + 1e-5) ≈ −63.4994
 * assert.deepEqual(q.scale.shape, [2, 1]);
 * ```
 */
export function quantizeActivations(x: Tensor<"f32">): Int8Rows {
  const op = "quantizeActivations";
  checkF32(op, x);
  const d = x.shape[x.rank - 1]!;
  const rows = sizeOf(x.shape.slice(0, -1));
  const codes = x.device.empty(x.shape, "i32", op);
  const scale = x.device.empty([...x.shape.slice(0, -1), 1], "f32", op);
  if (rows > 0) {
    x.device.run(
      quantRowsDispatch(rows, d, ACT_QUANT_EPS, [
        x.storage(op),
        codes.storage(op),
        scale.storage(op),
      ]),
    );
  }
  return new Int8Rows(codes, scale);
}

/**
 * Per-tensor absmean ternary quantization of input-major weights `[D_in, D_out]`:
 * `alpha = mean|w| + ε`, `t = clamp(round(w / alpha), −1, 1)`, packed 16 per u32.
 *
 * @param w f32 weights `[D_in, D_out]`.
 * @returns The packed ternary weights.
 *
 * @example
 * ```ts
 * import { openDevice, quantizeWeights } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using t = quantizeWeights(dev.randn([64, 40], { seed: 1 }));
 * assert.deepEqual(t.packed.shape, [64, 3]);
 * const w = await t.dequantize().data();
 * assert.equal(new Set(w.map(Math.abs)).size, 2); // {0, alpha}
 * ```
 */
export function quantizeWeights(w: Tensor<"f32">): TernaryWeights {
  const op = "quantizeWeights";
  checkF32(op, w);
  if (w.rank !== 2) throw ShapeError.mismatch(op, [w.shape], "needs [D_in, D_out] weights");
  const [r, c] = w.shape as [number, number];
  const words = Math.ceil(c / 16);
  const packed = w.device.empty([r, words], "u32", op);
  const alpha = w.device.empty([1], "f32", op);
  const mean = noGrad(() => (w.size > 0 ? meanAll(abs(w)) : w.device.zeros([1])));
  w.device.run(
    packTernaryDispatch(r, c, WEIGHT_QUANT_EPS, [
      w.storage(op),
      mean.storage(op),
      packed.storage(op),
      alpha.storage(op),
    ]),
  );
  mean.dispose();
  return new TernaryWeights(packed, alpha, [r, c]);
}

/**
 * Quantized top-K: selects the K top entries of each row by |x| (as `topkRows`, same ties and
 * NaN rule), then stores their int8 codes under the full row's absmax scale. This is
 * quantize-then-mask; it equals mask-then-quantize because the row max always survives.
 *
 * @param x f32 activations `[..., D]`.
 * @param keep K per row, or `{ sparsity: S }` for K = ⌊(1 − S)·D⌋.
 * @returns Sparse int8 rows and the per-row scale.
 *
 * @example
 * ```ts
 * import { openDevice, topkQuantized } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using q = topkQuantized(dev.tensor([[0.1, -4, 2, 1]]), { sparsity: 0.5 });
 * assert.deepEqual(await q.rows.indices.toArray(), [[1, 2]]);
 * assert.deepEqual(await q.rows.values.toArray(), [[-127, 63]]);
 * const x = await q.dequantize().data(); // [0, ≈ −4, ≈ 1.98, 0]
 * assert.ok(x[0] === 0 && x[3] === 0 && Math.abs(x[2]! - 2) < 4 / 127);
 * ```
 */
export function topkQuantized(x: Tensor<"f32">, keep: KeepSpec): Int8SparseRows {
  const op = "topkQuantized";
  checkF32(op, x);
  const d = x.shape[x.rank - 1]!;
  const k = typeof keep === "number" ? keep : keepCount(d, keep.sparsity, op);
  const sel = topkRows(x, k);
  const rows = sizeOf(x.shape.slice(0, -1));
  const codes = x.device.empty(sel.values.shape, "i32", op);
  const scale = x.device.empty([...x.shape.slice(0, -1), 1], "f32", op);
  if (rows > 0) {
    x.device.run(
      quantKeptDispatch(rows, d, k, ACT_QUANT_EPS, [
        x.storage(op),
        sel.values.storage(op),
        codes.storage(op),
        scale.storage(op),
      ]),
    );
  }
  sel.values.dispose();
  return new Int8SparseRows(new SparseRows(codes, sel.indices, x.shape), scale);
}

/**
 * int8 activations (sparse top-K rows, or dense rows) × ternary weights:
 * `y = (Σ codes · t) / scale · alpha`, with exact i32 sums. Weights are read packed (2 bits per
 * weight) and only for kept entries, so the kernel moves 16× fewer weight bytes than f32 and
 * skips dropped rows entirely.
 *
 * @param a Quantized activations `[..., D_in]` (from `topkQuantized` or `quantizeActivations`).
 * @param w Ternary weights `[D_in, D_out]`.
 * @returns f32 `[..., D_out]`.
 *
 * @example
 * ```ts
 * import { matmul, openDevice, quantizeWeights, spmmTernary, topkQuantized } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using x = dev.randn([2, 64], { seed: 1 });
 * using q = topkQuantized(x, 16);
 * using t = quantizeWeights(dev.randn([64, 32], { seed: 2 }));
 * using y = spmmTernary(q, t);
 * using ref = matmul(q.dequantize(), t.dequantize());
 * const [a, b] = [await y.data(), await ref.data()];
 * assert.ok(a.every((v, i) => Math.abs(v - b[i]!) < 1e-3));
 * ```
 */
export function spmmTernary(a: Int8SparseRows | Int8Rows, w: TernaryWeights): Tensor<"f32"> {
  const op = "spmmTernary";
  const dIn = a.shape[a.shape.length - 1]!;
  const [wIn, dOut] = w.shape;
  if (wIn !== dIn) {
    throw ShapeError.mismatch(
      op,
      [a.shape, w.shape],
      `ternary weights must be [D_in, D_out] with D_in = ${dIn}`,
    );
  }
  if (a.device !== w.device) {
    throw DeviceError.mismatch(op, [a.shape, w.shape], "tensors live on different devices");
  }
  const lead = a.shape.slice(0, -1);
  const rows = sizeOf(lead);
  const out = w.device.empty([...lead, dOut], "f32", op);
  if (out.size === 0) return out;
  const dense = a instanceof Int8Rows;
  const k = dense ? dIn : a.rows.k;
  const bufs = dense
    ? [a.codes, w.packed, a.scale, w.alpha, out]
    : [a.rows.values, a.rows.indices, w.packed, a.scale, w.alpha, out];
  w.device.run(ternaryMatmulDispatch(rows, dIn, dOut, k, dense, bufs.map((t) => t.storage(op))));
  return out;
}
