/**
 * Multi-tensor optimizer kernels (apex's `multi_tensor_apply`): one dispatch computes Σg² of a
 * whole group of gradients, one applies AdamW to a whole group of parameters. A per-tensor step
 * costs two dispatches per parameter (43 of a tiny training step's 195); grouped, the optimizer of
 * that step takes four.
 *
 * A group binds as many tensors as the adapter's `maxStorageBuffersPerShaderStage` allows (see
 * {@link sqNormGroupCapacity}, {@link adamwGroupCapacity}); the WGSL is generated for the group's
 * arity, and each workgroup finds its tensor in a small table of the uniform block, then
 * `switch`es to that tensor's bindings (WGSL cannot index an array of bindings).
 *
 * What changes from step to step (the learning rate, the bias corrections, the clip factor) is
 * read from device buffers, never from the uniforms: `hyper` (written each step with
 * {@link adamwStepValues}) and the Σg² slots the first kernel writes, from which every AdamW
 * workgroup computes the global norm and the clip factor itself (as `clipScale` of `optim.ts`
 * would: the same sum in the same order, so the same bits) — the clipping costs no launch of
 * its own — and the first workgroup stores both after the slots for the log to read. A recorded
 * training step can then be replayed with the same uniforms.
 *
 * Both kernels compute per tensor exactly what the per-tensor kernels of `optim.ts` compute, in the
 * same order: the CPU twins call those kernels' twins, so the results are the same bits.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { ValueError } from "../src/core/errors.ts";
import { adamwNative, sqNormNative } from "./native/optim.ts";
import { adamwCpu, clipScaleCpu, sqNormCpu } from "./optim.ts";
import { type BindingSpec, defineKernel } from "./spec.ts";

/**
 * Most tensors one group dispatch takes, whatever the binding limit: it sizes the uniform table
 * and bounds the generated `switch` (and the WGSL compile time with it).
 */
export const MAX_GROUP_TENSORS = 32;

/** Threads per workgroup of both kernels (the sum of squares must match `optim.ts`'s 256). */
const WG = 256;

/**
 * Workgroups one tensor of an AdamW group gets at most: a full group then stays within 65,535
 * workgroups, the per-dimension dispatch limit every WebGPU adapter guarantees. Larger tensors
 * loop (grid stride), which changes nothing in the result: elements are independent.
 */
const MAX_WORKGROUPS_PER_TENSOR = Math.floor(65535 / MAX_GROUP_TENSORS);

/**
 * Elements each invocation of an AdamW group updates, at least (fewer workgroups, each looping).
 * Why: llvmpipe cannot tell that the `switch` on the tensor index is uniform in a workgroup, so
 * it runs every case under an execution mask, and the masked-off cases cost about one masked
 * pass of the body each per workgroup. With one element per invocation a group of 14 tensors
 * took 7× the kernel time of the per-tensor kernels (23 ms against 3.3 ms for tiny's 14 largest
 * tensors, 2026-11-30); with 16 elements 2.6 ms, with 64 1.3 ms. On a real GPU the branch is
 * uniform and 64 elements per invocation still leaves a 16M-element tensor 1,024 workgroups.
 */
export const ADAMW_ELEMENTS_PER_INVOCATION = 64;

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

const optionalBindings = (
  prefix: string,
  access: BindingSpec["access"],
): BindingSpec[] =>
  range(MAX_GROUP_TENSORS).map((t) => ({
    name: `${prefix}${t}`,
    type: "f32",
    access,
    optional: true,
  }));

/** The optional bindings a group of `k` tensors leaves out. */
const unused = (k: number, ...prefixes: string[]): string[] =>
  prefixes.flatMap((p) => range(MAX_GROUP_TENSORS - k).map((t) => `${p}${k + t}`));

function checkArity(op: string, k: number, capacity?: number): void {
  if (k < 1 || k > MAX_GROUP_TENSORS) {
    throw new ValueError(op, `a group holds 1 to ${MAX_GROUP_TENSORS} tensors, got ${k}`);
  }
  if (capacity !== undefined && k > capacity) {
    throw new ValueError(op, `a group of ${k} tensors exceeds this device's ${capacity}`);
  }
}

/**
 * Tensors one Σg² group may bind: every storage buffer but the output.
 *
 * @param maxStorageBuffers The device's `maxStorageBuffersPerShaderStage`.
 * @returns The group size.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sqNormGroupCapacity } from "./optim_group.ts";
 * assert.equal(sqNormGroupCapacity(8), 7); // WebGPU's default limit
 * assert.equal(sqNormGroupCapacity(32), 31); // llvmpipe
 * assert.equal(sqNormGroupCapacity(1000), 32); // capped
 * ```
 */
export function sqNormGroupCapacity(maxStorageBuffers: number): number {
  return Math.max(1, Math.min(MAX_GROUP_TENSORS, maxStorageBuffers - 1));
}

/**
 * Parameters one AdamW group may bind: a parameter and its gradient each, beside the group's two
 * moment buffers, `hyper` and the Σg² slots.
 *
 * @param maxStorageBuffers The device's `maxStorageBuffersPerShaderStage`.
 * @returns The group size.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adamwGroupCapacity } from "./optim_group.ts";
 * assert.equal(adamwGroupCapacity(8), 2); // WebGPU's default limit
 * assert.equal(adamwGroupCapacity(32), 14); // llvmpipe
 * ```
 */
export function adamwGroupCapacity(maxStorageBuffers: number): number {
  return Math.max(1, Math.min(MAX_GROUP_TENSORS, Math.floor((maxStorageBuffers - 4) / 2)));
}

// ---------------------------------------------------------------------------------------------
// Σg² of a group

const SQ_NORM_GROUP = defineKernel({
  name: "sqNormGroup",
  bindings: [
    ...optionalBindings("x", "read"),
    { name: "out", type: "f32", access: "read_write" },
  ],
  // Per tensor: (elements, output slot, unused, unused).
  params: { tensors: `array<vec4u, ${MAX_GROUP_TENSORS}>` },
});

/** One tensor of a Σg² group. */
export interface SqNormMember {
  /** The tensor's storage (f32, read from element 0). */
  readonly x: Storage;
  /** Elements. */
  readonly n: number;
  /** Index of `out` that receives Σ x². */
  readonly slot: number;
}

/**
 * WGSL of Σ x² for each of `k` tensors: workgroup t sums tensor t exactly as `sqNormWgsl` does
 * (256 strided partial sums, then a tree), so each slot gets the per-tensor kernel's bits.
 *
 * @param k Tensors in the group.
 * @returns The WGSL.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sqNormGroupWgsl } from "./optim_group.ts";
 * assert.match(sqNormGroupWgsl(3), /case 2u/);
 * ```
 */
export function sqNormGroupWgsl(k: number): string {
  checkArity("sqNormGroup", k);
  const cases = range(k).map((t) =>
    `    case ${t}u: { for (var i = lid.x; i < n; i = i + ${WG}u) { s = s + x${t}[i] * x${t}[i]; } }`
  ).join("\n");
  return `${SQ_NORM_GROUP.header({ omit: unused(k, "x") })}
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  let t = wid.x;
  let n = p.tensors[t].x;
  var s = 0.0;
  switch t {
${cases}
    default: {}
  }
  part[lid.x] = s;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w = w / 2u) {
    if (lid.x < w) { part[lid.x] = part[lid.x] + part[lid.x + w]; }
    workgroupBarrier();
  }
  if (lid.x == 0u) { out[p.tensors[t].y] = part[0]; }
}`;
}

/**
 * Dispatch of Σ x² for a group: one workgroup per tensor, `out[slot]` per tensor.
 *
 * @param members The tensors (at most {@link sqNormGroupCapacity} of the device).
 * @param out The squared-norm buffer.
 * @param capacity The device's group size, checked when given.
 * @returns The dispatch.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CpuBackend } from "../src/backend/cpu.ts";
 * import { sqNormGroupDispatch } from "./optim_group.ts";
 * const be = new CpuBackend();
 * const a = be.allocate(8, "a"), b = be.allocate(4, "b"), out = be.allocate(8, "out");
 * be.write(a, new Float32Array([3, 4]));
 * be.write(b, new Float32Array([2]));
 * be.dispatch(sqNormGroupDispatch([{ x: a, n: 2, slot: 1 }, { x: b, n: 1, slot: 0 }], out));
 * assert.deepEqual([...new Float32Array(await be.read(out, 8))], [4, 25]);
 * ```
 */
export function sqNormGroupDispatch(
  members: readonly SqNormMember[],
  out: Storage,
  capacity?: number,
): Dispatch {
  const k = members.length;
  checkArity("sqNormGroup", k, capacity);
  const meta = members.flatMap((m) => [m.n, m.slot, 0, 0]);
  return {
    op: "sqNormGroup",
    key: SQ_NORM_GROUP.key(k),
    wgsl: () => sqNormGroupWgsl(k),
    cpu: (bufs) => {
      const o = new Float32Array(bufs[k]!);
      members.forEach((m, t) => sqNormCpu(new Float32Array(bufs[t]!, 0, m.n), m.n, o, m.slot));
    },
    native: (bufs) => members.forEach((m, t) => sqNormNative(bufs[t]!, m.n, bufs[k]!, m.slot)),
    buffers: [...members.map((m) => m.x), out],
    uniforms: SQ_NORM_GROUP.uniforms({ tensors: meta }),
    workgroups: [k, 1, 1],
  };
}

// ---------------------------------------------------------------------------------------------
// AdamW of a group

/** Words of the `hyper` buffer: `[lr, 1 − β1^t, 1 − β2^t, 0]`. */
export const ADAMW_HYPER_WORDS = 4;

/**
 * The step-varying values an AdamW group reads from its `hyper` buffer, as the f32 words to write
 * there each step (the bias corrections computed in f64, then rounded, as the per-tensor path did).
 *
 * @param lr Learning rate of this step.
 * @param beta1 β1.
 * @param beta2 β2.
 * @param t Steps taken, this one included (≥ 1).
 * @returns `[lr, 1 − β1^t, 1 − β2^t, 0]`.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adamwStepValues } from "./optim_group.ts";
 * assert.deepEqual([...adamwStepValues(0.5, 0.5, 0.75, 1)], [0.5, 0.5, 0.25, 0]);
 * ```
 */
export function adamwStepValues(lr: number, beta1: number, beta2: number, t: number): Float32Array {
  return new Float32Array([lr, 1 - beta1 ** t, 1 - beta2 ** t, 0]);
}

/** AdamW constants of a whole run (the step-varying values come from `hyper`). */
export interface AdamWConstants {
  /** β1. */
  readonly beta1: number;
  /** β2. */
  readonly beta2: number;
  /** ε. */
  readonly eps: number;
}

/** One parameter of an AdamW group. */
export interface AdamWMember {
  /** The parameter, updated in place (f32, from element 0). */
  readonly param: Storage;
  /** Its gradient (before clipping). */
  readonly grad: Storage;
  /** Elements. */
  readonly n: number;
  /** Where its moments start in the group's `m` and `v` buffers (elements). */
  readonly momentOffset: number;
  /** Decoupled weight decay of this parameter (0 for vectors). */
  readonly weightDecay: number;
}

const ADAMW_GROUP = defineKernel({
  name: "adamwGroup",
  bindings: [
    ...optionalBindings("param", "read_write"),
    ...optionalBindings("grad", "read"),
    { name: "m", type: "f32", access: "read_write" },
    { name: "v", type: "f32", access: "read_write" },
    { name: "hyper", type: "f32", access: "read" },
    { name: "norms", type: "f32", access: "read_write" },
  ],
  params: {
    b1: "f32",
    b2: "f32",
    eps: "f32",
    // Σg² slots before the norm and the factor, and the clip threshold (0: no clipping).
    count: "u32",
    maxNorm: "f32",
    // Per tensor: (first workgroup, workgroups, elements, moment offset).
    tensors: `array<vec4u, ${MAX_GROUP_TENSORS}>`,
    wd: `array<vec4f, ${MAX_GROUP_TENSORS / 4}>`,
  },
});

/**
 * WGSL of AdamW over `k` parameters. Per element it is `adamwWgsl` of `optim.ts`, operation for
 * operation; lr and the bias corrections come from `hyper`, the clip factor from the Σg² slots
 * (`clipScaleWgsl`'s arithmetic, stored after the slots by the first workgroup).
 *
 * @param k Parameters in the group.
 * @returns The WGSL.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { adamwGroupWgsl } from "./optim_group.ts";
 * assert.match(adamwGroupWgsl(2), /param1\[i\] = r\.x/);
 * ```
 */
export function adamwGroupWgsl(k: number): string {
  checkArity("adamwGroup", k);
  const cases = range(k).map((t) =>
    `    case ${t}u: {
      for (var i = first; i < e.z; i = i + stride) {
        let r = adam(param${t}[i], grad${t}[i] * s, m[e.w + i], v[e.w + i], keepW, step, sbc2);
        param${t}[i] = r.x;
        m[e.w + i] = r.y;
        v[e.w + i] = r.z;
      }
    }`
  ).join("\n");
  return `${ADAMW_GROUP.header({ omit: unused(k, "param", "grad") })}
fn adam(w: f32, g: f32, m0: f32, v0: f32, keepW: f32, step: f32, sbc2: f32) -> vec3f {
  let mi = p.b1 * m0 + (1.0 - p.b1) * g;
  let vi = p.b2 * v0 + (1.0 - p.b2) * g * g;
  let decayed = w * keepW;
  return vec3f(decayed - step * mi / (sqrt(vi) / sbc2 + p.eps), mi, vi);
}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_id) lid: vec3u, @builtin(workgroup_id) wid: vec3u) {
  // This workgroup's tensor: the last whose first workgroup is at or before it.
  var t = 0u;
  for (var j = 1u; j < ${k}u; j = j + 1u) { if (wid.x >= p.tensors[j].x) { t = j; } }
  let e = p.tensors[t];
  let lr = hyper[0];
  let step = lr / hyper[1];
  let sbc2 = sqrt(hyper[2]);
  var sq = 0.0;
  for (var q = 0u; q < p.count; q = q + 1u) { sq = sq + norms[q]; }
  let norm = sqrt(sq);
  let s = select(1.0, min(1.0, p.maxNorm / (norm + 1e-6)), p.maxNorm > 0.0);
  if (wid.x == 0u && lid.x == 0u) {
    norms[p.count] = norm;
    norms[p.count + 1u] = s;
  }
  let keepW = 1.0 - lr * p.wd[t / 4u][t % 4u];
  let stride = e.y * ${WG}u;
  let first = (wid.x - e.x) * ${WG}u + lid.x;
  switch t {
${cases}
    default: {}
  }
}`;
}

/**
 * Dispatch of one AdamW update of a group of parameters in place.
 *
 * @param c β1, β2, ε.
 * @param members The parameters (at most {@link adamwGroupCapacity} of the device).
 * @param m First moments of the group (each member's at its `momentOffset`).
 * @param v Second moments, laid out like `m`.
 * @param hyper The {@link adamwStepValues} of this step.
 * @param norms `clip.count` Σg² slots, then two words where the launch stores the global norm
 *   and the clip factor it applied.
 * @param clip How many slots and the clip threshold (0: none).
 * @param capacity The device's group size, checked when given.
 * @param elementsPerInvocation How many elements an invocation updates at least (the launch
 *   geometry only: results do not depend on it).
 * @returns The dispatch.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CpuBackend } from "../src/backend/cpu.ts";
 * import { adamwGroupDispatch, adamwStepValues } from "./optim_group.ts";
 * const be = new CpuBackend();
 * const buf = (xs: number[]) => {
 *   const s = be.allocate(4 * xs.length, "x");
 *   be.write(s, new Float32Array(xs));
 *   return s;
 * };
 * const w = buf([1, -2, 3]), g = buf([1, -1, 1]), m = buf([0, 0, 0]), v = buf([0, 0, 0]);
 * const hyper = buf([...adamwStepValues(0.1, 0.9, 0.95, 1)]), norms = buf([3, 0, 0]);
 * const members = [{ param: w, grad: g, n: 3, momentOffset: 0, weightDecay: 0 }];
 * const c = { beta1: 0.9, beta2: 0.95, eps: 1e-8 };
 * be.dispatch(adamwGroupDispatch(c, members, m, v, hyper, norms, { count: 1, maxNorm: 1 }));
 * const after = new Float32Array(await be.read(w, 12));
 * assert.ok(Math.abs(after[0]! - 0.9) < 1e-5); // the first Adam step moves each weight by lr
 * const [, norm, factor] = new Float32Array(await be.read(norms, 12));
 * assert.ok(Math.abs(norm! - Math.sqrt(3)) < 1e-6 && Math.abs(factor! - 1 / norm!) < 1e-6);
 * ```
 */
export function adamwGroupDispatch(
  c: AdamWConstants,
  members: readonly AdamWMember[],
  m: Storage,
  v: Storage,
  hyper: Storage,
  norms: Storage,
  clip: { count: number; maxNorm: number },
  capacity?: number,
  elementsPerInvocation: number = ADAMW_ELEMENTS_PER_INVOCATION,
): Dispatch {
  const k = members.length;
  checkArity("adamwGroup", k, capacity);
  const meta: number[] = [];
  let workgroups = 0;
  const perGroup = WG * elementsPerInvocation;
  for (const mb of members) {
    const count = Math.max(1, Math.min(Math.ceil(mb.n / perGroup), MAX_WORKGROUPS_PER_TENSOR));
    meta.push(workgroups, count, mb.n, mb.momentOffset);
    workgroups += count;
  }
  // The per-tensor twins and native kernels take the step values as numbers: read them from
  // `hyper` when the dispatch runs, as the WGSL does.
  // The host kernels compute the norm and factor once per launch, with the clip-scale twin,
  // store them after the slots, and hand the per-tensor twins `[norm, factor]`.
  const storeClip = (normsBuf: ArrayBuffer) => {
    const res = new Float32Array(normsBuf, 4 * clip.count, 2);
    clipScaleCpu(new Float32Array(normsBuf, 0, clip.count), clip.count, clip.maxNorm, res);
    return res;
  };
  const stepOf = (hyperBuf: ArrayBuffer, mb: AdamWMember) => {
    const h = new Float32Array(hyperBuf, 0, ADAMW_HYPER_WORDS);
    return { ...c, lr: h[0]!, bc1: h[1]!, bc2: h[2]!, weightDecay: mb.weightDecay };
  };
  return {
    op: "adamwGroup",
    key: ADAMW_GROUP.key(k),
    wgsl: () => adamwGroupWgsl(k),
    cpu: (bufs) => {
      const mm = new Float32Array(bufs[2 * k]!), vv = new Float32Array(bufs[2 * k + 1]!);
      const sc = storeClip(bufs[2 * k + 3]!);
      members.forEach((mb, t) => {
        const { n, momentOffset: o } = mb;
        adamwCpu(
          stepOf(bufs[2 * k + 2]!, mb),
          n,
          new Float32Array(bufs[t]!, 0, n),
          mm.subarray(o, o + n),
          vv.subarray(o, o + n),
          new Float32Array(bufs[k + t]!, 0, n),
          sc,
        );
      });
    },
    native: (bufs, rt) => {
      const [mm, vv, hy, sc] = bufs.slice(2 * k) as [
        ArrayBuffer,
        ArrayBuffer,
        ArrayBuffer,
        ArrayBuffer,
      ];
      storeClip(sc);
      members.forEach((mb, t) =>
        adamwNative(
          stepOf(hy, mb),
          mb.n,
          [bufs[t]!, mm, vv, bufs[k + t]!, sc],
          rt,
          mb.momentOffset,
          clip.count + 1,
        )
      );
    },
    buffers: [
      ...members.map((mb) => mb.param),
      ...members.map((mb) => mb.grad),
      m,
      v,
      hyper,
      norms,
    ],
    uniforms: ADAMW_GROUP.uniforms({
      b1: c.beta1,
      b2: c.beta2,
      eps: c.eps,
      count: clip.count,
      maxNorm: clip.maxNorm,
      tensors: meta,
      wd: members.map((mb) => mb.weightDecay),
    }),
    workgroups: [workgroups, 1, 1],
  };
}
