/**
 * `attentionCausal`: causal scaled-dot-product attention of `[B, T, H, hd]` heads in one launch
 * forward and two backward (kernels/attention_causal.ts), for a GPU that pays for every launch.
 *
 * @module
 */
import {
  ATTENTION_MAX_HEAD_DIM,
  attentionBackwardDispatches,
  attentionForwardDispatch,
  attentionHeadDimFits,
  attentionRowsPerInvocation,
  type AttentionShape,
} from "../../kernels/attention_causal.ts";
import { needsGrad, record } from "../autograd/tape.ts";
import { DeviceError, DTypeError, ShapeError, ValueError } from "../core/errors.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { isSoftwareAdapter } from "../backend/webgpu.ts";

const OP = "attentionCausal";

/**
 * `softmax(alpha · q·kᵀ, causal) · v` per batch and head, for q, k, v `[B, T, H, hd]` (the
 * projections' outputs seen as heads): query i attends to keys j ≤ i. The same values as the
 * strided products and the causal softmax, to f32 rounding (one launch instead of three; the
 * gradient two instead of five). The probabilities `[B, H, T, T]` are kept for the gradient.
 *
 * @param q Queries `[B, T, H, hd]`, f32.
 * @param k Keys, same shape.
 * @param v Values, same shape.
 * @param alpha Score scale (`1/√hd` in a transformer).
 * @returns The context `[B, T, H, hd]`.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { attentionCausal } from "./attention_causal.ts";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using q = dev.randn([1, 3, 1, 4], { seed: 1 });
 * using k = dev.randn([1, 3, 1, 4], { seed: 2 });
 * using v = dev.tensor([[[[1, 2, 3, 4]], [[5, 6, 7, 8]], [[9, 10, 11, 12]]]]);
 * using o = attentionCausal(q, k, v, 0.5);
 * // The first query sees only the first key: its context is the first value.
 * assert.deepEqual([...(await o.data()).slice(0, 4)], [1, 2, 3, 4]);
 * ```
 */
export function attentionCausal(
  q: Tensor<"f32">,
  k: Tensor<"f32">,
  v: Tensor<"f32">,
  alpha: number,
): Tensor<"f32"> {
  const shapes = [q.shape, k.shape, v.shape];
  for (const x of [q, k, v]) {
    if (x.dtype !== "f32") throw new DTypeError(OP, `needs f32 tensors, got ${x.dtype} ${x}`);
    if (x.device !== q.device) {
      throw DeviceError.mismatch(OP, shapes, "tensors live on different devices");
    }
  }
  if (q.rank !== 4 || shapes.some((s) => s.length !== 4 || s.some((d, i) => d !== q.shape[i]))) {
    throw ShapeError.mismatch(OP, shapes, "q, k and v must be [B, T, H, hd] of one shape");
  }
  const [b, t, h, hd] = q.shape as [number, number, number, number];
  if (!attentionHeadDimFits(hd)) {
    throw ShapeError.mismatch(
      OP,
      shapes,
      `head dim ${hd} must be a multiple of 4, at most ${ATTENTION_MAX_HEAD_DIM}`,
    );
  }
  if (!Number.isFinite(alpha)) throw new ValueError(OP, `alpha must be finite, got ${alpha}`);
  const dev = q.device;
  const software = dev.kind !== "webgpu" || isSoftwareAdapter({ description: dev.description });
  const s: AttentionShape = { b, t, h, hd, alpha, rows: attentionRowsPerInvocation(hd, software) };
  const out = dev.empty([b, t, h, hd], "f32", OP);
  if (out.size === 0) return out;
  const probs = dev.empty([b, h, t, t], "f32", OP);
  dev.run(attentionForwardDispatch(
    s,
    q.storage(OP),
    k.storage(OP),
    v.storage(OP),
    probs.storage(OP),
    out.storage(OP),
  ));
  if (!needsGrad(q, k, v)) {
    probs.dispose();
    return out;
  }
  // The probabilities live as long as the graph's other intermediates (the enclosing scope).
  record(out, OP, [q, k, v], (g) => {
    const bop = "attentionCausalBackward";
    const dq = dev.empty(q.shape, "f32", bop);
    const dk = dev.empty(k.shape, "f32", bop);
    const dv = dev.empty(v.shape, "f32", bop);
    using ds = dev.empty([b, h, t, t], "f32", bop);
    const [rows, keys] = attentionBackwardDispatches(
      s,
      {
        probs: probs.storage(bop),
        q: q.storage(bop),
        k: k.storage(bop),
        v: v.storage(bop),
        g: g.storage(bop),
      },
      ds.storage(bop),
      { dq: dq.storage(bop), dk: dk.storage(bop), dv: dv.storage(bop) },
    );
    dev.run(rows);
    dev.run(keys);
    return [dq, dk, dv];
  });
  return out;
}
