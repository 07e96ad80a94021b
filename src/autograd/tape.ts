/**
 * Reverse-mode autograd. Each op that sees an input with `requiresGrad` records a
 * {@link GradNode} on its output: the inputs and a vector-Jacobian product. `backward(loss)`
 * walks the recorded graph in reverse topological order and accumulates gradients into the
 * leaves' `.grad`.
 *
 * @module
 */
import type { JointGrad } from "../tensor/grad_node.ts";
import type { Tensor } from "../tensor/tensor.ts";
import type { DType } from "../core/dtype.ts";
import { pauseRecording, recordingEnabled, resumeRecording } from "../tensor/grad_node.ts";

export type { GradNode, JointGrad } from "../tensor/grad_node.ts";

/**
 * True when autograd is on and any input wants a gradient.
 *
 * @param inputs The op's inputs.
 * @returns Whether to record.
 *
 * @example
 * ```ts
 * import { needsGrad, noGrad, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using x = dev.ones([2]);
 * using w = dev.ones([2]);
 * assert.equal(needsGrad(x, null), false);
 * w.requiresGrad = true;
 * assert.equal(needsGrad(x, w), true);
 * assert.equal(noGrad(() => needsGrad(w)), false);
 * ```
 */
export function needsGrad(...inputs: (Tensor | null | undefined)[]): boolean {
  if (!recordingEnabled()) return false;
  for (const t of inputs) if (t?.requiresGrad) return true;
  return false;
}

/**
 * Records how `out` was made so `backward` can reach `inputs`.
 *
 * @param out The op's output.
 * @param op The op's name.
 * @param inputs Its inputs.
 * @param backward Its vector-Jacobian product.
 * @returns `out`, for chaining.
 *
 * @example A custom op y = 3x with its gradient
 * ```ts
 * import {
 *   backward,
 *   mulScalar,
 *   needsGrad,
 *   noGrad,
 *   openDevice,
 *   record,
 *   sumAll,
 *   type Tensor,
 * } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * function triple(x: Tensor<"f32">): Tensor<"f32"> {
 *   const y = noGrad(() => mulScalar(x, 3));
 *   return needsGrad(x) ? record(y, "triple", [x], (g) => [mulScalar(g, 3)]) : y;
 * }
 * using dev = await openDevice({ prefer: "cpu" });
 * const w = dev.tensor([1, 2]);
 * w.requiresGrad = true;
 * backward(sumAll(triple(w)));
 * assert.deepEqual([...await w.grad!.data()], [3, 3]);
 * ```
 */
export function record<D extends DType>(
  out: Tensor<D>,
  op: string,
  inputs: readonly Tensor[],
  backward: (grad: Tensor) => (Tensor | null)[],
): Tensor<D> {
  out.requiresGrad = true;
  out.node = { op, inputs, backward };
  return out;
}

/**
 * Records an op with several outputs whose gradients are mapped back together (one kernel for
 * all of them): `backward` runs once, when every output's gradient is complete, with null for an
 * output no gradient reached.
 *
 * @param outs The op's outputs.
 * @param op The op's name.
 * @param inputs Its inputs.
 * @param backward Its vector-Jacobian product, from all output gradients at once.
 * @returns `outs`, for chaining.
 *
 * @example y = (x + 1, 2x) with one backward for both
 * ```ts
 * import {
 *   add,
 *   addScalar,
 *   backward,
 *   mulScalar,
 *   noGrad,
 *   openDevice,
 *   recordJoint,
 *   sumAll,
 * } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * const x = dev.tensor([1, 2]);
 * x.requiresGrad = true;
 * const outs = noGrad(() => [addScalar(x, 1), mulScalar(x, 2)]);
 * let calls = 0;
 * const [a, b] = recordJoint(outs, "plusOneAndDouble", [x], ([ga, gb]) => {
 *   calls++;
 *   return [add(ga!, mulScalar(gb!, 2))];
 * });
 * backward(add(sumAll(a!), sumAll(b!)));
 * assert.equal(calls, 1);
 * assert.deepEqual(await x.grad!.toArray(), [3, 3]);
 * ```
 */
export function recordJoint<T extends Tensor[]>(
  outs: T,
  op: string,
  inputs: readonly Tensor[],
  backward: (grads: (Tensor | null)[]) => (Tensor | null)[],
): T {
  const joint: JointGrad = { outputs: outs, backward };
  outs.forEach((out, index) => {
    out.requiresGrad = true;
    out.node = {
      op,
      inputs,
      joint,
      index,
      backward: (g) => backward(outs.map((_, i) => (i === index ? g : null))),
    };
  });
  return outs;
}

/**
 * Runs `fn` with autograd recording switched off (inference, optimizer updates).
 *
 * @param fn The work.
 * @returns What `fn` returns.
 *
 * @example
 * ```ts
 * import { mul, noGrad, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * const w = dev.ones([2]);
 * w.requiresGrad = true;
 * using y = noGrad(() => mul(w, w));
 * assert.equal(y.requiresGrad, false);
 * ```
 */
export function noGrad<T>(fn: () => T): T {
  pauseRecording();
  try {
    const r = fn();
    if (r instanceof Promise) {
      // Keep recording off until the async work settles.
      return r.finally(resumeRecording) as T;
    }
    resumeRecording();
    return r;
  } catch (e) {
    resumeRecording();
    throw e;
  }
}
