/**
 * Reverse-mode autograd. Each op that sees an input with `requiresGrad` records a
 * {@link GradNode} on its output: the inputs and a vector-Jacobian product. `backward(loss)`
 * walks the recorded graph in reverse topological order and accumulates gradients into the
 * leaves' `.grad`.
 *
 * @module
 */
import type { Tensor } from "../tensor/tensor.ts";
import type { DType } from "../core/dtype.ts";
import { pauseRecording, recordingEnabled, resumeRecording } from "../tensor/grad_node.ts";

export type { GradGroup, GradNode } from "../tensor/grad_node.ts";

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
 * Records how the outputs `outs` of one op were made, with one vector-Jacobian product for all of
 * them: `backward(loss)` calls it once, after every output's gradient is complete, with the
 * gradients in output order (null for an output no gradient reached).
 *
 * @param outs The op's outputs.
 * @param op The op's name.
 * @param inputs Its inputs.
 * @param backward Its vector-Jacobian product over all outputs.
 * @returns `outs`, for chaining.
 *
 * @example A custom op (y, z) = (2x, 3x): one backward call sees both gradients
 * ```ts
 * import {
 *   add,
 *   backward,
 *   mulScalar,
 *   noGrad,
 *   openDevice,
 *   recordGroup,
 *   sumAll,
 * } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * const x = dev.tensor([1, 2]);
 * x.requiresGrad = true;
 * const [y, z] = noGrad(() => [mulScalar(x, 2), mulScalar(x, 3)]);
 * let calls = 0;
 * recordGroup([y!, z!], "twoThree", [x], ([gy, gz]) => {
 *   calls++;
 *   return [add(mulScalar(gy!, 2), mulScalar(gz!, 3))];
 * });
 * backward(sumAll(add(y!, z!)));
 * assert.equal(calls, 1);
 * assert.deepEqual([...await x.grad!.data()], [5, 5]);
 * ```
 */
export function recordGroup(
  outs: readonly Tensor[],
  op: string,
  inputs: readonly Tensor[],
  backward: (grads: (Tensor | null)[]) => (Tensor | null)[],
): readonly Tensor[] {
  const shared = { count: outs.length, backward };
  const own = () => {
    throw new Error(`${op}: an output of a group is differentiated through its group`);
  };
  outs.forEach((out, index) => {
    out.requiresGrad = true;
    out.node = { op, inputs, backward: own, group: { shared, index } };
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
