/**
 * The weight gradients of several RMSNorms in one launch: `gw_t[j] = Σ_rows g_t · x_t · r_t` for
 * each member t, every member's sum computed exactly as {@link rmsNormWeightGradWgsl} computes
 * it alone (the same row chunks, the same tree), so the results are the single kernel's bit for
 * bit. A transformer's norms each need this reduction at some point of the backward, and nothing
 * reads their weights' gradients before the optimizer: the device defers them
 * (src/tensor/deferred.ts) and launches them together.
 *
 * Every workgroup handles its 8 columns of every member in turn, one member after another,
 * with no branch on the member: llvmpipe cannot tell that a `switch` on a per-workgroup member
 * index is uniform and runs every case under a mask (see `ADAMW_ELEMENTS_PER_INVOCATION` in
 * kernels/optim_group.ts), which would multiply the work by the member count. A member narrower
 * than another leaves the extra workgroups' columns idle.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import type { DType } from "../src/core/dtype.ts";
import { ValueError } from "../src/core/errors.ts";
import { RMS_NORM_WEIGHT_GRAD_SPLITS, rmsNormWeightGradF32Native } from "./native/rmsnorm.ts";
import { rmsNormWeightGradCpu, weightGradChunk, WG_COLS } from "./rmsnorm.ts";
import { type BindingSpec, defineKernel } from "./spec.ts";

/** Most members one launch takes (it sizes the uniform table and the generated WGSL). */
export const MAX_WEIGHT_GRAD_MEMBERS = 8;

/** One norm's weight gradient: its forward input, upstream gradient, per-row r and output. */
export interface WeightGradMember {
  readonly rows: number;
  readonly cols: number;
  readonly x: Storage;
  readonly g: Storage;
  readonly rstd: Storage;
  /** `[cols]` f32. */
  readonly gw: Storage;
}

const memberBindings: BindingSpec[] = Array.from(
  { length: MAX_WEIGHT_GRAD_MEMBERS },
  (_, t) =>
    [
      { name: `xs${t}`, type: "T", access: "read", optional: true },
      { name: `g${t}`, type: "T", access: "read", optional: true },
      { name: `rstd${t}`, type: "f32", access: "read", optional: true },
      { name: `gw${t}`, type: "f32", access: "read_write", optional: true },
    ] satisfies BindingSpec[],
).flat();

const RMS_NORM_WEIGHT_GRAD_GROUP = defineKernel({
  name: "rmsNormWeightGradGroup",
  bindings: memberBindings,
  // Per member: (rows, cols, chunk, unused).
  params: { members: `array<vec4u, ${MAX_WEIGHT_GRAD_MEMBERS}>` },
});

/**
 * Members one launch may take on a device: four storage bindings each.
 *
 * @param maxStorageBuffers The device's `maxStorageBuffersPerShaderStage`.
 * @returns The group size (at least 1).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { weightGradGroupCapacity } from "./rmsnorm_weight_group.ts";
 * assert.equal(weightGradGroupCapacity(8), 2); // WebGPU's default limit
 * assert.equal(weightGradGroupCapacity(32), 8); // llvmpipe
 * ```
 */
export function weightGradGroupCapacity(maxStorageBuffers: number): number {
  return Math.max(1, Math.min(MAX_WEIGHT_GRAD_MEMBERS, Math.floor(maxStorageBuffers / 4)));
}

/**
 * WGSL of a group of `k` members of storage dtype `dtype`.
 *
 * @param dtype Storage dtype of every member's x and g.
 * @param k Members.
 * @returns The WGSL.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { rmsNormWeightGradGroupWgsl } from "./rmsnorm_weight_group.ts";
 * assert.match(rmsNormWeightGradGroupWgsl("f32", 2), /gw1\[j\] = part\[li\]/);
 * ```
 */
export function rmsNormWeightGradGroupWgsl(dtype: DType, k: number): string {
  const S = RMS_NORM_WEIGHT_GRAD_SPLITS, C = WG_COLS;
  const omit = memberBindings.map((b) => b.name).filter((n) => Number(n.match(/\d+$/)![0]) >= k);
  const member = (t: number) =>
    `  {
    let m = p.members[${t}];
    var acc = 0.0;
    if (j < m.y) {
      let r0 = min(s * m.z, m.x);
      let r1 = min(r0 + m.z, m.x);
      for (var r = r0; r < r1; r = r + 1u) {
        acc = acc + f32(g${t}[r * m.y + j]) * f32(xs${t}[r * m.y + j]) * rstd${t}[r];
      }
    }
    part[li] = acc;
    for (var h = ${S / 2}u; h > 0u; h = h >> 1u) {
      workgroupBarrier();
      if (s < h) { part[li] = part[li] + part[li + h * ${C}u]; }
    }
    if (s == 0u && j < m.y) { gw${t}[j] = part[li]; }
    workgroupBarrier();
  }`;
  return `${RMS_NORM_WEIGHT_GRAD_GROUP.header({ types: { T: dtype }, omit })}
var<workgroup> part: array<f32, ${S * C}>;
@compute @workgroup_size(${S * C})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3u) {
  let jl = li % ${C}u;
  let s = li / ${C}u;
  let j = wg.x * ${C}u + jl;
${Array.from({ length: k }, (_, t) => member(t)).join("\n")}
}`;
}

/**
 * Dispatch of the weight gradients of `members` (all of storage dtype `dtype`) in one launch.
 * Host backends run each member's single kernel (the same numbers).
 *
 * @param dtype Storage dtype of every member's x and g.
 * @param members 1 to {@link MAX_WEIGHT_GRAD_MEMBERS} members (at most `capacity`).
 * @param capacity The device's group size, checked when given.
 * @returns The dispatch.
 */
export function rmsNormWeightGradGroupDispatch(
  dtype: DType,
  members: readonly WeightGradMember[],
  capacity?: number,
): Dispatch {
  const k = members.length, op = "rmsNormWeightGradGroup";
  if (k < 1 || k > MAX_WEIGHT_GRAD_MEMBERS || (capacity !== undefined && k > capacity)) {
    throw new ValueError(
      op,
      `a group holds 1 to ${Math.min(MAX_WEIGHT_GRAD_MEMBERS, capacity ?? Infinity)} members, ` +
        `got ${k}`,
    );
  }
  const at = (bufs: ArrayBuffer[], t: number) => bufs.slice(4 * t, 4 * t + 4);
  return {
    op,
    key: RMS_NORM_WEIGHT_GRAD_GROUP.key(dtype, k),
    wgsl: () => rmsNormWeightGradGroupWgsl(dtype, k),
    cpu: (bufs) =>
      members.forEach((m, t) => rmsNormWeightGradCpu(dtype, m.rows, m.cols, at(bufs, t))),
    native: dtype === "f32"
      ? (bufs, rt) =>
        members.forEach((m, t) =>
          rmsNormWeightGradF32Native(m.rows, m.cols, weightGradChunk(m.rows), at(bufs, t), rt)
        )
      : undefined,
    buffers: members.flatMap((m) => [m.x, m.g, m.rstd, m.gw]),
    uniforms: RMS_NORM_WEIGHT_GRAD_GROUP.uniforms({
      members: members.flatMap((m) => [m.rows, m.cols, weightGradChunk(m.rows), 0]),
    }),
    workgroups: [Math.max(...members.map((m) => Math.ceil(m.cols / WG_COLS))), 1, 1],
  };
}
