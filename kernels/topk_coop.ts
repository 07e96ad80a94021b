/**
 * Top-K mask of many short rows, one workgroup per row (or per N:M block): the discrete-GPU form
 * of kernels/topk_small.ts, with the same selection, ties and rescale, so the two are
 * interchangeable and an autotuning device picks between them (kernels/topk_mask.ts).
 *
 * Why a second kernel: `topk_small` gives each row one invocation, which suits llvmpipe (no
 * barriers) but leaves a GPU idle. A 4,096-row training batch is then 64 workgroups on a chip with
 * 132 multiprocessors, each invocation walking its row 33 times. On an H200, per-row masks took
 * 9.2 of the 16.7 ms of kernel time in a Q-Sparse s step (2026-11-30). Here the 64 invocations of
 * a workgroup share the row:
 * 1. the k-th largest key T is built bit by bit from the top, as in `topk_small` (stopping, as it
 *    does, at the first prefix exactly K keys reach), but each bit's count is a workgroup sum
 *    (coalesced, strided loads), read back as a uniform value so the loop may stop on it;
 * 2. the entries > T are counted the same way; the ties (== T) are kept from the lowest index, so
 *    each invocation takes a contiguous chunk and starts from the number of ties before it (an
 *    exclusive prefix over the workgroup);
 * 3. with rescale, ‖x‖² and ‖x_kept‖² are workgroup sums (a different summation order than
 *    `topk_small`: the rescaled values agree to f32 rounding, the selection exactly).
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { keyFnWgsl } from "./topk.ts";
import { defineKernel } from "./spec.ts";
import {
  TOPK_MASK_BINDINGS,
  topkMaskHost,
  type TopkSmallSpec,
  writeKeptWgsl,
} from "./topk_small.ts";

/** Invocations per workgroup (one workgroup per segment). */
const WG = 64;
/** Largest workgroup count in one dimension; more segments spill into the second. */
const MAX_X = 65535;

const TOPK_COOP = defineKernel({
  name: "topkCoop",
  bindings: TOPK_MASK_BINDINGS,
  params: { segs: "u32", d: "u32", k: "u32", perX: "u32" },
});

/**
 * WGSL of the workgroup-per-row mask kernel.
 *
 * @param s Specialisation (dtype, order, mask output, rescale).
 * @returns The shader.
 */
export function topkCoopWgsl(s: TopkSmallSpec): string {
  const T = s.dtype;
  const topBit = s.order === "magnitude" ? 30 : 31;
  return `${TOPK_COOP.header({ types: { T }, omit: s.mask ? [] : ["msk"] })}
${keyFnWgsl(T, s.order)}
var<workgroup> cnt: atomic<u32>;
var<workgroup> cntTotal: u32;
var<workgroup> pre: array<u32, ${WG}>;
var<workgroup> sq: array<vec2f, ${WG}>;

// Sum over the workgroup of one u32 per invocation; every invocation gets the total, as a
// uniform value (so the bit search may leave its loop on it with barriers still uniform).
fn countAll(c: u32, lid: u32) -> u32 {
  if (lid == 0u) { atomicStore(&cnt, 0u); }
  workgroupBarrier();
  if (c > 0u) { atomicAdd(&cnt, c); }
  workgroupBarrier();
  if (lid == 0u) { cntTotal = atomicLoad(&cnt); }
  return workgroupUniformLoad(&cntTotal);
}

@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) l: vec3u, @builtin(workgroup_id) w: vec3u) {
  let lid = l.x;
  let seg = w.x + w.y * p.perX;
  // seg is the same for the whole workgroup, so every barrier below is reached by all or none.
  if (seg >= p.segs) { return; }
  let base = seg * p.d;
  var t = 0u;
  var exact = false;
  for (var b = ${topBit}; b >= 0; b = b - 1) {
    let cand = t | (1u << u32(b));
    var c = 0u;
    for (var j = lid; j < p.d; j = j + ${WG}u) { c = c + select(0u, 1u, keyOf(x[base + j]) >= cand); }
    let n = countAll(c, lid);
    if (n >= p.k) {
      t = cand;
      // Exactly k keys are >= cand: they are the top k (as in topk_small).
      if (n == p.k) { exact = true; break; }
    }
  }
  var ties = 0u;
  if (exact) {
    t = t - 1u; // keep key > t, i.e. key >= cand, and no ties
  } else {
    var a = 0u;
    for (var j = lid; j < p.d; j = j + ${WG}u) { a = a + select(0u, 1u, keyOf(x[base + j]) > t); }
    ties = p.k - countAll(a, lid);
  }
  // Ties are kept from the lowest index: a contiguous chunk per invocation, starting after the
  // ties of the chunks before it.
  let chunk = (p.d + ${WG - 1}u) / ${WG}u;
  let lo = min(lid * chunk, p.d);
  let hi = min(lo + chunk, p.d);
  var eq = 0u;
  for (var j = lo; j < hi; j = j + 1u) { eq = eq + select(0u, 1u, keyOf(x[base + j]) == t); }
  pre[lid] = eq;
  workgroupBarrier();
  var before = 0u;
  for (var i = 0u; i < lid; i = i + 1u) { before = before + pre[i]; }
  var scale = 1.0;
  ${
    s.rescale
      ? `var all = 0.0; var kept = 0.0; var seen = before;
  for (var j = lo; j < hi; j = j + 1u) {
    let v = f32(x[base + j]); let key = keyOf(x[base + j]);
    all = all + v * v;
    var keep = key > t;
    if (key == t && seen < ties) { keep = true; seen = seen + 1u; }
    if (keep) { kept = kept + v * v; }
  }
  sq[lid] = vec2f(all, kept);
  workgroupBarrier();
  var tot = vec2f(0.0);
  for (var i = 0u; i < ${WG}u; i = i + 1u) { tot = tot + sq[i]; }
  if (tot.y > 0.0) { scale = sqrt(tot.x / tot.y); }`
      : ""
  }
  ${writeKeptWgsl(T, s.mask, "lo", "hi", "before")}
}`;
}

/**
 * Dispatch of the workgroup-per-row mask kernel over `segs` segments of length `d`, keeping `k`
 * each. Buffers: x, out, then the mask when `spec.mask`. Host backends run the same twin as
 * `topk_small` (identical selection).
 *
 * @param s Specialisation.
 * @param segs Segments (rows, or N:M blocks).
 * @param d Segment length.
 * @param k Entries kept per segment.
 * @param bufs Storages in binding order.
 * @param op Op name for errors and profiles.
 * @returns The dispatch.
 */
export function topkCoopDispatch(
  s: TopkSmallSpec,
  segs: number,
  d: number,
  k: number,
  bufs: Storage[],
  op: string,
): Dispatch {
  const perX = Math.min(segs, MAX_X);
  return {
    op,
    key: TOPK_COOP.key(s.dtype, s.order, `${s.mask ? "m" : ""}${s.rescale ? "r" : ""}`),
    wgsl: () => topkCoopWgsl(s),
    ...topkMaskHost(s, segs, d, k),
    buffers: bufs,
    uniforms: TOPK_COOP.uniforms({ segs, d, k, perX }),
    workgroups: [Math.max(1, perX), Math.max(1, Math.ceil(segs / perX)), 1],
  };
}
