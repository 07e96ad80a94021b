/**
 * `backward(loss)`: reverse-mode accumulation over the graph recorded by the ops.
 *
 * @module
 */
import {
  binaryDispatch,
  broadcastLayout,
  MAX_RANK,
  scalarDispatch,
} from "../../kernels/elementwise.ts";
import { DTypeError, ShapeError } from "../core/errors.ts";
import { broadcastShapes } from "../core/shape.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { keep } from "../tensor/scope.ts";
import { type GradGroup, noGrad } from "./tape.ts";

// Gradient sums and copies dispatch the elementwise kernels directly: the public ops sit in the
// layer above autograd. These match ops/elementwise's `add` and `mulScalar(g, 1)` without the
// recording (backward runs with recording off anyway), and join the device's pending fused group
// as those do.

function add(a: Tensor, b: Tensor): Tensor {
  if (a.dtype !== b.dtype) {
    throw new DTypeError("backward", `gradients of ${a.dtype} ${a} and ${b.dtype} ${b} meet`);
  }
  const shape = broadcastShapes("backward", a.shape, b.shape);
  const layout = broadcastLayout(a.shape, b.shape, shape);
  if (layout.shape.length > MAX_RANK) {
    throw ShapeError.mismatch("backward", [a.shape, b.shape], `more than ${MAX_RANK} dims`);
  }
  const out = a.device.empty(shape, a.dtype, "backward");
  const fusion = a.device.fusion;
  if (out.size > 0 && fusion) fusion.binary("add", a, b, out);
  else if (out.size > 0) {
    a.device.run(
      binaryDispatch(
        "add",
        a.dtype,
        layout,
        a.storage("backward"),
        b.storage("backward"),
        out.storage("backward"),
      ),
    );
  }
  return out;
}

function copy(g: Tensor): Tensor {
  const out = g.device.empty(g.shape, g.dtype, "backward");
  const fusion = g.device.fusion;
  if (out.size === 0) return out;
  if (fusion) {
    fusion.scalar("mul", g, 1, false, out);
    return out;
  }
  g.device.run(
    scalarDispatch(
      "mul",
      g.dtype,
      false,
      1,
      g.storage("backward"),
      out.storage("backward"),
      g.size,
    ),
  );
  return out;
}

/** Options for {@link backward}. */
export interface BackwardOptions {
  /** Upstream gradient of `loss` (default: ones, so a scalar loss needs none). */
  grad?: Tensor;
}

/** Tensors reachable from `root` through recorded nodes, in reverse topological order. */
function reverseTopo(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<number>();
  // Iterative DFS: model graphs are deep enough to overflow recursion in long sequences.
  const stack: [Tensor, boolean][] = [[root, false]];
  while (stack.length) {
    const [t, done] = stack.pop()!;
    if (done) {
      order.push(t);
      continue;
    }
    if (seen.has(t.id)) continue;
    seen.add(t.id);
    stack.push([t, true]);
    for (const x of t.node?.inputs ?? []) {
      if (x.requiresGrad && !seen.has(x.id)) stack.push([x, false]);
    }
  }
  return order.reverse();
}

/**
 * Computes d(loss)/d(leaf) for every leaf tensor with `requiresGrad` reachable from `loss` and
 * adds it to `leaf.grad` (creating it on first use). Intermediate gradients are freed as soon as
 * they have been propagated. Recording is off while gradients are computed (no higher order).
 *
 * @param loss The tensor to differentiate (usually a scalar).
 * @param opts The upstream gradient for a non-scalar `loss`.
 * @returns The leaves that received a gradient.
 *
 * @example
 * ```ts
 * import { backward, mul, openDevice, sumAll } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * const w = dev.tensor([1, 2, 3]);
 * w.requiresGrad = true;
 * backward(sumAll(mul(w, w)));
 * assert.deepEqual([...await w.grad!.data()], [2, 4, 6]);
 * ```
 */
export function backward(loss: Tensor, opts: BackwardOptions = {}): Tensor[] {
  if (!loss.requiresGrad) {
    throw new ShapeError("backward", `${loss} does not require grad: nothing recorded leads to it`);
  }
  if (opts.grad && (opts.grad.size !== loss.size)) {
    throw ShapeError.mismatch(
      "backward",
      [loss.shape, opts.grad.shape],
      "grad must match the loss",
    );
  }
  return noGrad(() => {
    const order = reverseTopo(loss);
    const grads = new Map<number, Tensor>();
    // How many map slots hold each gradient tensor: VJPs may return the upstream tensor itself.
    const refs = new Map<Tensor, number>();
    const hold = (t: Tensor) => refs.set(t, (refs.get(t) ?? 0) + 1);
    const drop = (t: Tensor) => {
      const n = (refs.get(t) ?? 0) - 1;
      if (n <= 0) {
        refs.delete(t);
        t.dispose();
      } else refs.set(t, n);
    };
    // A scalar loss is seeded with the device's shared 1 (no fill launch per step); it and a
    // caller's tensor are never disposed here.
    const seed = opts.grad ??
      (loss.rank === 0 ? loss.device.unit(loss.dtype) : loss.device.ones(loss.shape, loss.dtype));
    grads.set(loss.id, seed);
    if (seed === opts.grad || loss.rank === 0) refs.set(seed, Infinity);
    else hold(seed);
    const leaves: Tensor[] = [];
    // Hands an op's input gradients on; `upstream` are the gradients the VJP was given (it may
    // return one of them as is).
    const propagate = (
      inputs: readonly Tensor[],
      inGrads: (Tensor | null)[],
      upstream: Tensor[],
    ) => {
      const mine = (gi: Tensor) => !refs.has(gi) && !upstream.includes(gi);
      inputs.forEach((x, i) => {
        const gi = inGrads[i];
        if (!gi || !x.requiresGrad) {
          if (gi && mine(gi)) gi.dispose();
          return;
        }
        const prev = grads.get(x.id);
        if (prev) {
          grads.set(x.id, add(prev, gi));
          hold(grads.get(x.id)!);
          drop(prev);
          if (mine(gi)) gi.dispose();
        } else {
          grads.set(x.id, gi);
          hold(gi);
        }
      });
    };
    // Outputs of multi-output ops in `order`: the group's VJP runs at the last of them (every
    // consumer of every output comes earlier in reverse topological order).
    const groupLeft = new Map<GradGroup, number>();
    const groupGrads = new Map<GradGroup, (Tensor | null)[]>();
    for (const t of order) {
      const gr = t.node?.group?.shared;
      if (gr) groupLeft.set(gr, (groupLeft.get(gr) ?? 0) + 1);
    }
    for (const t of order) {
      const g = grads.get(t.id);
      const group = t.node?.group;
      if (group) {
        const gr = group.shared;
        let slot = groupGrads.get(gr);
        if (!slot) groupGrads.set(gr, slot = new Array<Tensor | null>(gr.count).fill(null));
        if (g) {
          grads.delete(t.id);
          slot[group.index] = g;
        }
        const left = groupLeft.get(gr)! - 1;
        groupLeft.set(gr, left);
        if (left > 0) continue;
        groupGrads.delete(gr);
        const given = slot.filter((x): x is Tensor => x !== null);
        if (given.length === 0) continue;
        propagate(t.node!.inputs, gr.backward(slot), given);
        for (const x of given) drop(x);
        continue;
      }
      if (!g) continue;
      if (!t.node) {
        leaves.push(t);
        continue;
      }
      grads.delete(t.id);
      propagate(t.node.inputs, t.node.backward(g), [g]);
      drop(g);
    }
    const owned = new Set<Tensor>(); // gradients now owned by a leaf
    const pending = new Set<Tensor>(); // gradients to free once every leaf is served
    for (const leaf of leaves) {
      const g = grads.get(leaf.id)!;
      const callers = refs.get(g) === Infinity;
      if (leaf.grad) {
        const sum = add(leaf.grad, g);
        leaf.grad.dispose();
        leaf.grad = keep(sum);
        if (!callers) pending.add(g);
      } else if (owned.has(g) || callers) {
        leaf.grad = keep(copy(g)); // leaves own distinct tensors
      } else {
        leaf.grad = keep(g);
        owned.add(g);
      }
    }
    for (const g of pending) if (!owned.has(g)) g.dispose();
    return leaves;
  });
}
