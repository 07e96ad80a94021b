/**
 * Mixture-of-experts routing: top-k of E router probabilities per token, gates renormalised over
 * the chosen k, and its backward. Layout and vocabulary: `moe_layout.ts`.
 *
 * @module
 */
import type { Dispatch, NativeRuntime, ParallelTask, Storage } from "../src/backend/backend.ts";
import { gridStride, WG } from "./common.ts";
import { fr, GRID, NONE } from "./moe_layout.ts";
import { beats, WGSL_FLOAT_HELPERS } from "./reduce.ts";
import { defineKernel } from "./spec.ts";

const MOE_ROUTE = defineKernel({
  name: "moeRoute",
  bindings: [
    { name: "probs", type: "f32", access: "read" },
    { name: "experts", type: "u32", access: "read_write" },
    { name: "gates", type: "f32", access: "read_write" },
  ],
  params: { n: "u32", e: "u32", k: "u32", norm: "u32" },
});

/** WGSL of the routing kernel: `experts[t, j]`, `gates[t, j]` for the top-k of `probs[t, :]`. */
export function moeRouteWgsl(): string {
  return `${MOE_ROUTE.header()}
${WGSL_FLOAT_HELPERS}
@compute @workgroup_size(${WG})
fn main(${GRID}) {
  let stride = nwg.x * ${WG}u;
  for (var t = gid.x; t < p.n; t = t + stride) {
    var sum = 0.0;
    for (var j = 0u; j < p.k; j = j + 1u) {
      var bv = neg_inf();
      var bi = 0xffffffffu;
      for (var e = 0u; e < p.e; e = e + 1u) {
        var taken = false;
        for (var i = 0u; i < j; i = i + 1u) {
          if (experts[t * p.k + i] == e) { taken = true; }
        }
        let v = probs[t * p.e + e];
        if (!taken && beats(bv, bi, v, e)) { bv = v; bi = e; }
      }
      experts[t * p.k + j] = bi;
      gates[t * p.k + j] = bv;
      sum = sum + bv;
    }
    if (p.norm == 1u) {
      for (var j = 0u; j < p.k; j = j + 1u) {
        let a = t * p.k + j;
        // A zero sum (every chosen probability underflowed) falls back to equal gates.
        gates[a] = select(1.0 / f32(p.k), gates[a] / sum, sum > 0.0);
      }
    }
  }
}`;
}

/** CPU twin of {@link moeRouteWgsl}. */
export function moeRouteCpu(
  n: number,
  e: number,
  k: number,
  norm: boolean,
  probs: ArrayBuffer,
  experts: ArrayBuffer,
  gates: ArrayBuffer,
): void {
  const pv = new Float32Array(probs), ex = new Uint32Array(experts, 0, n * k);
  const gv = new Float32Array(gates, 0, n * k);
  for (let t = 0; t < n; t++) {
    let sum = 0;
    for (let j = 0; j < k; j++) {
      let bv = -Infinity, bi = NONE;
      for (let x = 0; x < e; x++) {
        let taken = false;
        for (let i = 0; i < j; i++) if (ex[t * k + i] === x) taken = true;
        const v = pv[t * e + x]!;
        if (!taken && beats(bv, bi, v, x)) {
          bv = v;
          bi = x;
        }
      }
      ex[t * k + j] = bi;
      gv[t * k + j] = bv;
      sum = fr(sum + bv);
    }
    if (norm) {
      for (let j = 0; j < k; j++) {
        const a = t * k + j;
        gv[a] = sum > 0 ? gv[a]! / sum : 1 / k;
      }
    }
  }
}

/**
 * Dispatch of the routing kernel.
 *
 * @param n Tokens.
 * @param e Experts.
 * @param k Slots per token (≤ e).
 * @param norm Renormalise the gates over the chosen k.
 * @param probs Router probabilities `[n, e]` (f32).
 * @param experts Output u32 `[n, k]`.
 * @param gates Output f32 `[n, k]`.
 * @returns The dispatch.
 */
export function moeRouteDispatch(
  n: number,
  e: number,
  k: number,
  norm: boolean,
  probs: Storage,
  experts: Storage,
  gates: Storage,
): Dispatch {
  return {
    op: "moeRoute",
    key: MOE_ROUTE.key(),
    wgsl: moeRouteWgsl,
    cpu: ([a, b, c]) => moeRouteCpu(n, e, k, norm, a!, b!, c!),
    native: (bufs, rt) => moeRouteNative(n, e, k, norm, bufs, rt),
    buffers: [probs, experts, gates],
    uniforms: MOE_ROUTE.uniforms({ n, e, k, norm: norm ? 1 : 0 }),
    workgroups: gridStride(n),
  };
}

const MOE_ROUTE_BACKWARD = defineKernel({
  name: "moeRouteBackward",
  bindings: [
    { name: "probs", type: "f32", access: "read" },
    { name: "experts", type: "u32", access: "read" },
    { name: "gg", type: "f32", access: "read" },
    { name: "gp", type: "f32", access: "read_write" },
  ],
  params: { n: "u32", e: "u32", k: "u32", norm: "u32" },
});

/**
 * WGSL of the routing backward: the gradient of the gates with respect to the probabilities.
 * Renormalised gates `g_j = p_j / S` (S the sum of the chosen p) give
 * `∂L/∂p_i = (∂L/∂g_i − Σ_j ∂L/∂g_j · g_j) / S` for chosen i; unchosen experts get 0.
 */
export function moeRouteBackwardWgsl(): string {
  return `${MOE_ROUTE_BACKWARD.header()}
@compute @workgroup_size(${WG})
fn main(${GRID}) {
  let stride = nwg.x * ${WG}u;
  for (var t = gid.x; t < p.n; t = t + stride) {
    for (var e = 0u; e < p.e; e = e + 1u) { gp[t * p.e + e] = 0.0; }
    var sum = 0.0;
    for (var j = 0u; j < p.k; j = j + 1u) { sum = sum + probs[t * p.e + experts[t * p.k + j]]; }
    var dot = 0.0;
    for (var j = 0u; j < p.k; j = j + 1u) {
      let a = t * p.k + j;
      dot = dot + gg[a] * (probs[t * p.e + experts[a]] / sum);
    }
    for (var j = 0u; j < p.k; j = j + 1u) {
      let a = t * p.k + j;
      var v = gg[a];
      if (p.norm == 1u) { v = select(0.0, (gg[a] - dot) / sum, sum > 0.0); }
      gp[t * p.e + experts[a]] = v;
    }
  }
}`;
}

/** CPU twin of {@link moeRouteBackwardWgsl}. */
export function moeRouteBackwardCpu(
  n: number,
  e: number,
  k: number,
  norm: boolean,
  probs: ArrayBuffer,
  experts: ArrayBuffer,
  gg: ArrayBuffer,
  gp: ArrayBuffer,
): void {
  const pv = new Float32Array(probs), ex = new Uint32Array(experts), g = new Float32Array(gg);
  const out = new Float32Array(gp, 0, n * e);
  out.fill(0);
  for (let t = 0; t < n; t++) {
    let sum = 0;
    for (let j = 0; j < k; j++) sum = fr(sum + pv[t * e + ex[t * k + j]!]!);
    let dot = 0;
    for (let j = 0; j < k; j++) {
      const a = t * k + j;
      dot = fr(dot + fr(g[a]! * fr(pv[t * e + ex[a]!]! / sum)));
    }
    for (let j = 0; j < k; j++) {
      const a = t * k + j;
      let v = g[a]!;
      if (norm) v = sum > 0 ? fr(g[a]! - dot) / sum : 0;
      out[t * e + ex[a]!] = v;
    }
  }
}

/**
 * Dispatch of the routing backward.
 *
 * @param n Tokens.
 * @param e Experts.
 * @param k Slots.
 * @param norm Whether the forward renormalised.
 * @param probs Router probabilities `[n, e]`.
 * @param experts Chosen experts `[n, k]`.
 * @param gg Gradient of the gates `[n, k]`.
 * @param gp Output: gradient of the probabilities `[n, e]`.
 * @returns The dispatch.
 */
export function moeRouteBackwardDispatch(
  n: number,
  e: number,
  k: number,
  norm: boolean,
  probs: Storage,
  experts: Storage,
  gg: Storage,
  gp: Storage,
): Dispatch {
  return {
    op: "moeRouteBackward",
    key: MOE_ROUTE_BACKWARD.key(),
    wgsl: moeRouteBackwardWgsl,
    cpu: ([a, b, c, d]) => moeRouteBackwardCpu(n, e, k, norm, a!, b!, c!, d!),
    native: (bufs, rt) => moeRouteBackwardNative(n, e, k, norm, bufs, rt),
    buffers: [probs, experts, gg, gp],
    uniforms: MOE_ROUTE_BACKWARD.uniforms({ n, e, k, norm: norm ? 1 : 0 }),
    workgroups: gridStride(n),
  };
}

// ---------------------------------------------------------------------------------------------
// Native: the CPU twin over token ranges. It lives here, next to the twin it runs, rather than in
// native/, so the kernel and its native form do not import each other.
//
// Native MoE routing and its backward: tokens are independent, so each thread runs the CPU twin
// on its own range of tokens through views that start at the range (same code, same results,
// no copy). The work is O(N·k·E·k) and small next to the expert matmuls; this only spreads it.

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
