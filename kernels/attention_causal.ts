/**
 * Causal self-attention in three launches per block (forward one, backward two) instead of eight
 * (two strided products, a softmax; four products and a softmax backward).
 *
 * Layout: q, k, v, the output and its gradient are `[B, T, H, hd]` (the projections' output seen
 * as heads, no permute); the probabilities P and the score gradients dS are `[B, H, T, T]`. Query
 * i attends to keys j ≤ i. One invocation owns a block of consecutive rows of one (batch, head)
 * ({@link attentionRowsPerInvocation}): query rows in the forward and the first backward kernel,
 * key rows in the second; each key, value, query or gradient row it loads serves the whole block.
 *
 * - **forward**: `s_j = alpha · q_i·k_j` (one fma chain over the head dim, as the products'),
 *   max, `exp(s_j − max)`, their sum, `P_ij = e_j / Σ` and `o_i = Σ_j P_ij v_j`. P's row holds
 *   the scores, then the exponentials, then the probabilities (no scratch). Entries above the
 *   diagonal (j > i) are neither written nor read by any of the three kernels.
 * - **backward, query rows**: `dP_ij = g_i·v_j`, `dS_ij = P_ij (dP_ij − Σ_j P_ij dP_ij)` (the
 *   softmax backward) and `dq_i = alpha Σ_j dS_ij k_j`. Writes dS for j ≤ i only.
 * - **backward, key rows**: `dk_j = alpha Σ_{i ≥ j} dS_ij q_i`, `dv_j = Σ_{i ≥ j} P_ij g_i`.
 *
 * Operands load as vec4 (the head dim a multiple of 4, at most {@link ATTENTION_MAX_HEAD_DIM}).
 * The CPU twins accumulate in f64 and round each stored value to f32.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { ValueError } from "../src/core/errors.ts";
import { gridStride } from "./common.ts";
import { defineKernel } from "./spec.ts";

/** Largest head dim the kernels take (each invocation keeps 2 head-dim rows in registers). */
export const ATTENTION_MAX_HEAD_DIM = 256;

/**
 * Sizes of one causal attention: batch, tokens, heads, head dim, score scale, and the query (or
 * key) rows each invocation owns ({@link attentionRowsPerInvocation}).
 */
export interface AttentionShape {
  b: number;
  t: number;
  h: number;
  hd: number;
  alpha: number;
  rows: number;
}

const WGA = 64;
const PARAMS = { blocks: "u32", nb: "u32", t: "u32", h: "u32", alpha: "f32" } as const;

/**
 * Rows one invocation owns. On a CPU adapter a storage load is a loop over the SIMD lanes, so
 * loads, not FMAs, bound these loops, and each key or value row loaded should feed several query
 * rows: 8 for head dims up to 32, fewer for wider heads (whose rows would not stay in registers).
 * On a GPU, one row: the invocations of a warp read the same key row (a broadcast), and more
 * register rows would spill.
 *
 * @param hd Head dim.
 * @param software Whether the adapter is a CPU rasterizer (llvmpipe, SwiftShader).
 * @returns Rows per invocation.
 * @example
 * ```ts
 * import { attentionRowsPerInvocation } from "./attention_causal.ts";
 * import assert from "node:assert/strict";
 * assert.equal(attentionRowsPerInvocation(32, true), 8);
 * assert.equal(attentionRowsPerInvocation(32, false), 1);
 * ```
 */
export function attentionRowsPerInvocation(hd: number, software: boolean): number {
  if (!software) return 1;
  return hd <= 32 ? 8 : hd <= 64 ? 4 : hd <= 128 ? 2 : 1;
}

const FORWARD = defineKernel({
  name: "attentionCausal",
  bindings: [
    { name: "q", type: "vec4f", access: "read" },
    { name: "k", type: "vec4f", access: "read" },
    { name: "v", type: "vec4f", access: "read" },
    { name: "probs", type: "f32", access: "read_write" },
    { name: "out", type: "vec4f", access: "read_write" },
  ],
  params: PARAMS,
});

const BACKWARD_Q = defineKernel({
  name: "attentionCausalBackwardQ",
  bindings: [
    { name: "probs", type: "f32", access: "read" },
    { name: "k", type: "vec4f", access: "read" },
    { name: "v", type: "vec4f", access: "read" },
    { name: "g", type: "vec4f", access: "read" },
    { name: "ds", type: "f32", access: "read_write" },
    { name: "dq", type: "vec4f", access: "read_write" },
  ],
  params: PARAMS,
});

const BACKWARD_KV = defineKernel({
  name: "attentionCausalBackwardKV",
  bindings: [
    { name: "probs", type: "f32", access: "read" },
    { name: "ds", type: "f32", access: "read" },
    { name: "q", type: "vec4f", access: "read" },
    { name: "g", type: "vec4f", access: "read" },
    { name: "dk", type: "vec4f", access: "read_write" },
    { name: "dv", type: "vec4f", access: "read_write" },
  ],
  params: PARAMS,
});

/**
 * Whether the kernels take a head dim: a multiple of 4 (vec4 loads), at most
 * {@link ATTENTION_MAX_HEAD_DIM}.
 *
 * @param hd Head dim.
 * @returns True when they do.
 * @example
 * ```ts
 * import { attentionHeadDimFits } from "./attention_causal.ts";
 * import assert from "node:assert/strict";
 * assert.equal(attentionHeadDimFits(32), true);
 * assert.equal(attentionHeadDimFits(30), false);
 * ```
 */
export function attentionHeadDimFits(hd: number): boolean {
  return Number.isInteger(hd) && hd > 0 && hd % 4 === 0 && hd <= ATTENTION_MAX_HEAD_DIM;
}

/**
 * The loop every kernel opens over blocks of `RB` consecutive rows of one (batch, head): `n` =
 * (batch · head) · nb + block; row `r0 + ρ` exists when `ok${ρ}` (the last block may be short).
 */
function blockLoop(hd: number, rb: number, body: string): string {
  let rows = "";
  for (let i = 0; i < rb; i++) {
    rows += `    let ok${i} = r0 + ${i}u < p.t;
`;
  }
  return `const HV = ${hd / 4}u;
@compute @workgroup_size(${WGA})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WGA}u;
  for (var n = gid.x; n < p.blocks; n = n + stride) {
    let bh = n / p.nb;
    let r0 = (n - bh * p.nb) * ${rb}u;
    let b = bh / p.h;
    let hh = bh - b * p.h;
    let tok0 = b * p.t;
    let rl = min(r0 + ${rb - 1}u, p.t - 1u);
${rows}${body}
  }
}`;
}

/** vec4 index of head `hh`'s row of token `tok` in a `[B, T, H, hd]` tensor. */
const at = (tok: string) => `((${tok}) * p.h + hh) * HV`;

/** `body(i)` for each row of the block, joined. */
const each = (rb: number, body: (i: number) => string) =>
  Array.from({ length: rb }, (_, i) => body(i)).join("");

/** Loads head row `tok` of `src` into the register row `name`. */
const load = (name: string, src: string, tok: string, hd: number) =>
  `      var ${name}: array<vec4f, ${hd / 4}>;
      { let base = ${
    at(tok)
  }; for (var d = 0u; d < HV; d = d + 1u) { ${name}[d] = ${src}[base + d]; } }
`;

/** A dot product of two register rows as one fma chain in head-dim order. */
const dot = (acc: string, a: string, b: string) =>
  `var ${acc} = 0.0;
        for (var d = 0u; d < HV; d = d + 1u) {
          let x4 = ${a}[d];
          let y4 = ${b}[d];
          ${acc} = fma(x4.x, y4.x, ${acc});
          ${acc} = fma(x4.y, y4.y, ${acc});
          ${acc} = fma(x4.z, y4.z, ${acc});
          ${acc} = fma(x4.w, y4.w, ${acc});
        }`;

/** WGSL of the forward for head dim `hd`, `rb` query rows per invocation. */
export function attentionForwardWgsl(hd: number, rb: number): string {
  return `${FORWARD.header()}
${
    blockLoop(
      hd,
      rb,
      `${each(rb, (i) => load(`q${i}`, "q", `tok0 + min(r0 + ${i}u, p.t - 1u)`, hd))}${
        each(rb, (i) =>
          `    let prow${i} = (bh * p.t + r0 + ${i}u) * p.t;
    var m${i} = bitcast<f32>(0xff800000u);
`)
      }    for (var j = 0u; j <= rl; j = j + 1u) {
${load("kj", "k", "tok0 + j", hd)}${
        each(rb, (i) =>
          `      if (ok${i} && j <= r0 + ${i}u) {
        ${dot("acc", `q${i}`, "kj")}
        let s = acc * p.alpha;
        probs[prow${i} + j] = s;
        m${i} = max(m${i}, s);
      }
`)
      }    }
${
        each(rb, (i) =>
          `    var inv${i} = 0.0;
    if (ok${i}) {
      var l = 0.0;
      for (var j = 0u; j <= r0 + ${i}u; j = j + 1u) {
        let e = exp(probs[prow${i} + j] - m${i});
        probs[prow${i} + j] = e;
        l = l + e;
      }
      inv${i} = 1.0 / l;
    }
    var o${i}: array<vec4f, ${hd / 4}>;
`)
      }    for (var j = 0u; j <= rl; j = j + 1u) {
${load("vj", "v", "tok0 + j", hd)}${
        each(rb, (i) =>
          `      if (ok${i} && j <= r0 + ${i}u) {
        let pj = probs[prow${i} + j] * inv${i};
        probs[prow${i} + j] = pj;
        for (var d = 0u; d < HV; d = d + 1u) { o${i}[d] = fma(vec4f(pj), vj[d], o${i}[d]); }
      }
`)
      }    }
${
        each(rb, (i) =>
          `    if (ok${i}) {
      let ob = ${at(`tok0 + r0 + ${i}u`)};
      for (var d = 0u; d < HV; d = d + 1u) { out[ob + d] = o${i}[d]; }
    }
`)
      }`,
    )
  }`;
}

/** WGSL of the backward over query rows (dS and dq) for head dim `hd`, `rb` rows each. */
export function attentionBackwardQWgsl(hd: number, rb: number): string {
  return `${BACKWARD_Q.header()}
${
    blockLoop(
      hd,
      rb,
      `${each(rb, (i) => load(`g${i}`, "g", `tok0 + min(r0 + ${i}u, p.t - 1u)`, hd))}${
        each(rb, (i) =>
          `    let prow${i} = (bh * p.t + r0 + ${i}u) * p.t;
    var total${i} = 0.0;
`)
      }    for (var j = 0u; j <= rl; j = j + 1u) {
${load("vj", "v", "tok0 + j", hd)}${
        each(rb, (i) =>
          `      if (ok${i} && j <= r0 + ${i}u) {
        ${dot("dp", `g${i}`, "vj")}
        ds[prow${i} + j] = dp;
        total${i} = fma(probs[prow${i} + j], dp, total${i});
      }
`)
      }    }
${
        each(rb, (i) =>
          `    var a${i}: array<vec4f, ${hd / 4}>;
`)
      }    for (var j = 0u; j <= rl; j = j + 1u) {
${load("kj", "k", "tok0 + j", hd)}${
        each(rb, (i) =>
          `      if (ok${i} && j <= r0 + ${i}u) {
        let s = probs[prow${i} + j] * (ds[prow${i} + j] - total${i});
        ds[prow${i} + j] = s;
        for (var d = 0u; d < HV; d = d + 1u) { a${i}[d] = fma(vec4f(s), kj[d], a${i}[d]); }
      }
`)
      }    }
${
        each(rb, (i) =>
          `    if (ok${i}) {
      let qb = ${at(`tok0 + r0 + ${i}u`)};
      for (var d = 0u; d < HV; d = d + 1u) { dq[qb + d] = a${i}[d] * p.alpha; }
    }
`)
      }`,
    )
  }`;
}

/** WGSL of the backward over key rows (dk and dv) for head dim `hd`, `rb` rows each. */
export function attentionBackwardKVWgsl(hd: number, rb: number): string {
  return `${BACKWARD_KV.header()}
${
    blockLoop(
      hd,
      rb,
      `${
        each(rb, (i) =>
          `    var ak${i}: array<vec4f, ${hd / 4}>;
    var av${i}: array<vec4f, ${hd / 4}>;
`)
      }    for (var i = r0; i < p.t; i = i + 1u) {
${load("qi", "q", "tok0 + i", hd)}${
        load("gi", "g", "tok0 + i", hd)
      }      let e0 = (bh * p.t + i) * p.t + r0;
${
        each(rb, (c) =>
          `      if (ok${c} && i >= r0 + ${c}u) {
        let s = ds[e0 + ${c}u];
        let pp = probs[e0 + ${c}u];
        for (var d = 0u; d < HV; d = d + 1u) {
          ak${c}[d] = fma(vec4f(s), qi[d], ak${c}[d]);
          av${c}[d] = fma(vec4f(pp), gi[d], av${c}[d]);
        }
      }
`)
      }    }
${
        each(rb, (c) =>
          `    if (ok${c}) {
      let kb = ${at(`tok0 + r0 + ${c}u`)};
      for (var d = 0u; d < HV; d = d + 1u) {
        dk[kb + d] = ak${c}[d] * p.alpha;
        dv[kb + d] = av${c}[d];
      }
    }
`)
      }`,
    )
  }`;
}

/** Element offset of head `hh`'s row of token `tok` in a `[B, T, H, hd]` tensor. */
function rowAt(s: AttentionShape, tok: number, hh: number): number {
  return (tok * s.h + hh) * s.hd;
}

/** Calls `f(bh, b, hh, row)` for every row of every (batch, head). */
function eachRow(s: AttentionShape, f: (bh: number, b: number, hh: number, r: number) => void) {
  for (let bh = 0; bh < s.b * s.h; bh++) {
    const b = Math.floor(bh / s.h), hh = bh % s.h;
    for (let r = 0; r < s.t; r++) f(bh, b, hh, r);
  }
}

/** CPU twin of {@link attentionForwardWgsl}. */
export function attentionForwardCpu(
  s: AttentionShape,
  qb: ArrayBuffer,
  kb: ArrayBuffer,
  vb: ArrayBuffer,
  pb: ArrayBuffer,
  ob: ArrayBuffer,
): void {
  const q = new Float32Array(qb), k = new Float32Array(kb), v = new Float32Array(vb);
  const P = new Float32Array(pb, 0, s.b * s.h * s.t * s.t);
  const out = new Float32Array(ob, 0, s.b * s.t * s.h * s.hd);
  const { t, hd } = s, alpha = Math.fround(s.alpha);
  const e = new Float64Array(t), o = new Float64Array(hd);
  eachRow(s, (bh, b, hh, i) => {
    const qo = rowAt(s, b * t + i, hh), prow = (bh * t + i) * t;
    let m = -Infinity;
    for (let j = 0; j <= i; j++) {
      const ko = rowAt(s, b * t + j, hh);
      let acc = 0;
      for (let d = 0; d < hd; d++) acc += q[qo + d]! * k[ko + d]!;
      e[j] = acc * alpha;
      if (e[j]! > m || Number.isNaN(e[j]!)) m = e[j]!;
    }
    let sum = 0;
    for (let j = 0; j <= i; j++) sum += e[j] = Math.exp(e[j]! - m);
    o.fill(0);
    for (let j = 0; j <= i; j++) {
      const pj = e[j]! / sum;
      P[prow + j] = pj;
      const vo = rowAt(s, b * t + j, hh);
      for (let d = 0; d < hd; d++) o[d] += pj * v[vo + d]!;
    }
    for (let d = 0; d < hd; d++) out[qo + d] = o[d]!;
  });
}

/** CPU twin of {@link attentionBackwardQWgsl}. */
export function attentionBackwardQCpu(
  s: AttentionShape,
  pb: ArrayBuffer,
  kb: ArrayBuffer,
  vb: ArrayBuffer,
  gb: ArrayBuffer,
  dsb: ArrayBuffer,
  dqb: ArrayBuffer,
): void {
  const P = new Float32Array(pb), k = new Float32Array(kb), v = new Float32Array(vb);
  const g = new Float32Array(gb), dS = new Float32Array(dsb, 0, s.b * s.h * s.t * s.t);
  const dq = new Float32Array(dqb, 0, s.b * s.t * s.h * s.hd);
  const { t, hd } = s, alpha = Math.fround(s.alpha);
  const dp = new Float64Array(t), acc = new Float64Array(hd);
  eachRow(s, (bh, b, hh, i) => {
    const go = rowAt(s, b * t + i, hh), prow = (bh * t + i) * t;
    let total = 0;
    for (let j = 0; j <= i; j++) {
      const vo = rowAt(s, b * t + j, hh);
      let x = 0;
      for (let d = 0; d < hd; d++) x += g[go + d]! * v[vo + d]!;
      dp[j] = x;
      total += P[prow + j]! * x;
    }
    acc.fill(0);
    for (let j = 0; j <= i; j++) {
      const sj = P[prow + j]! * (dp[j]! - total);
      dS[prow + j] = sj;
      const ko = rowAt(s, b * t + j, hh);
      for (let d = 0; d < hd; d++) acc[d] += sj * k[ko + d]!;
    }
    for (let d = 0; d < hd; d++) dq[go + d] = acc[d]! * alpha;
  });
}

/** CPU twin of {@link attentionBackwardKVWgsl}. */
export function attentionBackwardKVCpu(
  s: AttentionShape,
  pb: ArrayBuffer,
  dsb: ArrayBuffer,
  qb: ArrayBuffer,
  gb: ArrayBuffer,
  dkb: ArrayBuffer,
  dvb: ArrayBuffer,
): void {
  const P = new Float32Array(pb), dS = new Float32Array(dsb);
  const q = new Float32Array(qb), g = new Float32Array(gb);
  const n = s.b * s.t * s.h * s.hd;
  const dk = new Float32Array(dkb, 0, n), dv = new Float32Array(dvb, 0, n);
  const { t, hd } = s, alpha = Math.fround(s.alpha);
  const ak = new Float64Array(hd), av = new Float64Array(hd);
  eachRow(s, (bh, b, hh, j) => {
    ak.fill(0);
    av.fill(0);
    for (let i = j; i < t; i++) {
      const e = (bh * t + i) * t + j, qo = rowAt(s, b * t + i, hh);
      const sij = dS[e]!, pij = P[e]!;
      for (let d = 0; d < hd; d++) {
        ak[d] += sij * q[qo + d]!;
        av[d] += pij * g[qo + d]!;
      }
    }
    const ko = rowAt(s, b * t + j, hh);
    for (let d = 0; d < hd; d++) {
      dk[ko + d] = ak[d]! * alpha;
      dv[ko + d] = av[d]!;
    }
  });
}

function check(op: string, s: AttentionShape): void {
  if (!Number.isInteger(s.rows) || s.rows < 1 || s.rows > 8) {
    throw new ValueError(op, `rows per invocation must be 1 to 8, got ${s.rows}`);
  }
  if (!attentionHeadDimFits(s.hd)) {
    throw new ValueError(
      op,
      `head dim ${s.hd} must be a multiple of 4 and at most ${ATTENTION_MAX_HEAD_DIM}`,
    );
  }
}

/** Row blocks per (batch, head) and in all. */
function blocks(s: AttentionShape): { nb: number; blocks: number } {
  const nb = Math.ceil(s.t / s.rows);
  return { nb, blocks: s.b * s.h * nb };
}

function uniforms(s: AttentionShape): Uint32Array {
  return FORWARD.uniforms({ ...blocks(s), t: s.t, h: s.h, alpha: s.alpha });
}

/**
 * Dispatch of the forward.
 *
 * @param s Sizes and scale.
 * @param q Queries `[B, T, H, hd]`.
 * @param k Keys, same shape.
 * @param v Values, same shape.
 * @param probs Probabilities `[B, H, T, T]` (written where j ≤ i).
 * @param out Output `[B, T, H, hd]` (written).
 * @returns The dispatch.
 */
export function attentionForwardDispatch(
  s: AttentionShape,
  q: Storage,
  k: Storage,
  v: Storage,
  probs: Storage,
  out: Storage,
): Dispatch {
  check("attentionCausal", s);
  return {
    op: "attentionCausal",
    key: FORWARD.key(s.hd, s.rows),
    wgsl: () => attentionForwardWgsl(s.hd, s.rows),
    cpu: ([a, b, c, d, e]) => attentionForwardCpu(s, a!, b!, c!, d!, e!),
    buffers: [q, k, v, probs, out],
    uniforms: uniforms(s),
    workgroups: gridStride(blocks(s).blocks, WGA),
  };
}

/**
 * Dispatches of the backward: query rows (dS, dq), then key rows (dk, dv).
 *
 * @param s Sizes and scale.
 * @param t The forward's tensors: probabilities, q, k, v, and the output's gradient g.
 * @param ds Score gradients `[B, H, T, T]` (scratch, written by the first launch).
 * @param grads dq, dk, dv `[B, T, H, hd]` (written).
 * @returns The two dispatches, in order.
 */
export function attentionBackwardDispatches(
  s: AttentionShape,
  t: { probs: Storage; q: Storage; k: Storage; v: Storage; g: Storage },
  ds: Storage,
  grads: { dq: Storage; dk: Storage; dv: Storage },
): [Dispatch, Dispatch] {
  check("attentionCausalBackward", s);
  const workgroups = gridStride(blocks(s).blocks, WGA);
  return [
    {
      op: "attentionCausalBackward",
      key: BACKWARD_Q.key(s.hd, s.rows),
      wgsl: () => attentionBackwardQWgsl(s.hd, s.rows),
      cpu: ([a, b, c, d, e, f]) => attentionBackwardQCpu(s, a!, b!, c!, d!, e!, f!),
      buffers: [t.probs, t.k, t.v, t.g, ds, grads.dq],
      uniforms: uniforms(s),
      workgroups,
    },
    {
      op: "attentionCausalBackward",
      key: BACKWARD_KV.key(s.hd, s.rows),
      wgsl: () => attentionBackwardKVWgsl(s.hd, s.rows),
      cpu: ([a, b, c, d, e, f]) => attentionBackwardKVCpu(s, a!, b!, c!, d!, e!, f!),
      buffers: [t.probs, ds, t.q, t.g, grads.dk, grads.dv],
      uniforms: uniforms(s),
      workgroups,
    },
  ];
}
