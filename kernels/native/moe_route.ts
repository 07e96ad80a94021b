/**
 * Native MoE routing and its backward: tokens are independent, so each thread runs the CPU twin
 * on its own range of tokens through views that start at the range (same code, same results,
 * no copy). The work is O(N·k·E·k) and small next to the expert matmuls; this only spreads it.
 *
 * @module
 */
import type { NativeRuntime, ParallelTask } from "../../src/backend/backend.ts";
import { moeRouteBackwardCpu, moeRouteCpu } from "../moe_route.ts";

/** Tokens below which routing stays on the calling thread. */
const MIN_PARALLEL_TOKENS = 1024;

/** Route task over tokens: args `[probs, experts, gates, e, k, norm]` (addresses). */
export const moeRouteTask: ParallelTask = {
  name: "moeRoute",
  run(ctx, args, lo, hi) {
    const e = args[3]!, k = args[4]!, n = hi - lo;
    moeRouteCpu(
      n,
      e,
      k,
      args[5] === 1,
      ctx.view(args[0]! + 4 * lo * e, 4 * n * e),
      ctx.view(args[1]! + 4 * lo * k, 4 * n * k),
      ctx.view(args[2]! + 4 * lo * k, 4 * n * k),
    );
  },
};

/** Backward task over tokens: args `[probs, experts, gg, gp, e, k, norm]` (addresses). */
export const moeRouteBackwardTask: ParallelTask = {
  name: "moeRouteBackward",
  run(ctx, args, lo, hi) {
    const e = args[4]!, k = args[5]!, n = hi - lo;
    moeRouteBackwardCpu(
      n,
      e,
      k,
      args[6] === 1,
      ctx.view(args[0]! + 4 * lo * e, 4 * n * e),
      ctx.view(args[1]! + 4 * lo * k, 4 * n * k),
      ctx.view(args[2]! + 4 * lo * k, 4 * n * k),
      ctx.view(args[3]! + 4 * lo * e, 4 * n * e),
    );
  },
};

/**
 * Top-k routing of `n` tokens over `e` experts (buffers: probs, experts, gates).
 *
 * @param n Tokens.
 * @param e Experts.
 * @param k Slots per token.
 * @param norm Renormalise the gates.
 * @param bufs The dispatch's buffers.
 * @param rt The runtime.
 *
 * @example
 * ```ts
 * import { moeRoute, openDevice } from "@qsparse/kit";
 * using dev = await openDevice({ prefer: "native" });
 * const r = moeRoute(dev.tensor([[0.1, 0.7, 0.2]]), 1);
 * console.log(await r.experts.toArray()); // [[1]]
 * ```
 */
export function moeRouteNative(
  n: number,
  e: number,
  k: number,
  norm: boolean,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  if (n === 0 || k === 0) return;
  const args = [...bufs.slice(0, 3).map((b) => rt.address(b)), e, k, norm ? 1 : 0];
  rt.parallel(moeRouteTask, n, args, { minParallel: MIN_PARALLEL_TOKENS });
}

/**
 * Gradient of the router probabilities (buffers: probs, experts, gg, gp).
 *
 * @param n Tokens.
 * @param e Experts.
 * @param k Slots per token.
 * @param norm Whether the gates were renormalised.
 * @param bufs The dispatch's buffers.
 * @param rt The runtime.
 *
 * @example
 * ```ts
 * import { backward, moeRoute, openDevice, sumAll } from "@qsparse/kit";
 * using dev = await openDevice({ prefer: "native" });
 * const p = dev.tensor([[0.1, 0.7, 0.2]]);
 * p.requiresGrad = true;
 * backward(sumAll(moeRoute(p, 2, { normalize: false }).gates));
 * console.log(await p.grad!.toArray()); // [[0, 1, 1]]
 * ```
 */
export function moeRouteBackwardNative(
  n: number,
  e: number,
  k: number,
  norm: boolean,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  if (n === 0 || e === 0) return;
  const args = [...bufs.slice(0, 4).map((b) => rt.address(b)), e, k, norm ? 1 : 0];
  rt.parallel(moeRouteBackwardTask, n, args, { minParallel: MIN_PARALLEL_TOKENS });
}
