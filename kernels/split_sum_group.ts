/**
 * The last step of several split-K products in one launch: each member sums `splits` partial
 * products into its output, `out[e] = T(Σ_c parts[offset + c·mn + e])` in chunk order from 0, the
 * arithmetic of `sumTo` over the chunk axis (kernels/layout.ts) and of `linearGroupReduce`
 * (kernels/linear_group.ts), so a member's output is theirs bit for bit. Split-K serves weight
 * gradients (`Xᵀ·dY` with a long K of tokens), which nothing reads before the optimizer: the
 * device defers their sums (src/tensor/deferred.ts) and launches them together.
 *
 * Every workgroup handles its elements of every member in turn, with no branch on the member
 * (llvmpipe would run every case of such a branch under a mask; see
 * kernels/rmsnorm_weight_group.ts).
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { type DType, typedView } from "../src/core/dtype.ts";
import { ValueError } from "../src/core/errors.ts";
import { type BindingSpec, defineKernel } from "./spec.ts";

/** Most members one launch takes (it sizes the uniform table and the generated WGSL). */
export const MAX_SPLIT_SUM_MEMBERS = 16;

const WG = 256;

/** One split-K product's sum. */
export interface SplitSumMember {
  /** Chunks. */
  readonly splits: number;
  /** Output elements. */
  readonly mn: number;
  /** Partials; this member's chunk c of element e is at `offset + c·mn + e`. */
  readonly parts: Storage;
  readonly offset: number;
  /** `[mn]` output. */
  readonly out: Storage;
}

const memberBindings: BindingSpec[] = Array.from(
  { length: MAX_SPLIT_SUM_MEMBERS },
  (_, t) =>
    [
      { name: `parts${t}`, type: "T", access: "read", optional: true },
      { name: `out${t}`, type: "T", access: "read_write", optional: true },
    ] satisfies BindingSpec[],
).flat();

const SPLIT_SUM_GROUP = defineKernel({
  name: "splitSumGroup",
  bindings: memberBindings,
  // n: the largest member's elements; per member: (splits, mn, offset, unused).
  params: { n: "u32", members: `array<vec4u, ${MAX_SPLIT_SUM_MEMBERS}>` },
});

/**
 * Members one launch may take on a device: two storage bindings each.
 *
 * @param maxStorageBuffers The device's `maxStorageBuffersPerShaderStage`.
 * @returns The group size (at least 1).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { splitSumGroupCapacity } from "./split_sum_group.ts";
 * assert.equal(splitSumGroupCapacity(8), 4); // WebGPU's default limit
 * assert.equal(splitSumGroupCapacity(32), 16); // llvmpipe
 * ```
 */
export function splitSumGroupCapacity(maxStorageBuffers: number): number {
  return Math.max(1, Math.min(MAX_SPLIT_SUM_MEMBERS, Math.floor(maxStorageBuffers / 2)));
}

/**
 * WGSL of a group of `k` members of dtype `dtype`.
 *
 * @param dtype Element type of the partials and the outputs.
 * @param k Members.
 * @returns The WGSL.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { splitSumGroupWgsl } from "./split_sum_group.ts";
 * assert.match(splitSumGroupWgsl("f32", 2), /out1\[e\] = f32\(s\)/);
 * ```
 */
export function splitSumGroupWgsl(dtype: DType, k: number): string {
  const omit = memberBindings.map((b) => b.name).filter((n) => Number(n.match(/\d+$/)![0]) >= k);
  const member = (t: number) =>
    `    {
      let m = p.members[${t}];
      if (e < m.y) {
        var s = 0.0;
        for (var c = 0u; c < m.x; c = c + 1u) { s = s + f32(parts${t}[m.z + c * m.y + e]); }
        out${t}[e] = ${dtype}(s);
      }
    }`;
  return `${SPLIT_SUM_GROUP.header({ types: { T: dtype }, omit })}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  for (var e = gid.x; e < p.n; e = e + stride) {
${Array.from({ length: k }, (_, t) => member(t)).join("\n")}
  }
}`;
}

/** CPU twin of {@link splitSumGroupWgsl}: f32 sums in chunk order, stored in the dtype. */
function splitSumGroupCpu(
  dtype: DType,
  members: readonly SplitSumMember[],
  bufs: ArrayBuffer[],
): void {
  members.forEach((m, t) => {
    const parts = typedView(dtype, bufs[2 * t]!), out = typedView(dtype, bufs[2 * t + 1]!, m.mn);
    for (let e = 0; e < m.mn; e++) {
      let s = 0;
      for (let c = 0; c < m.splits; c++) s = Math.fround(s + parts[m.offset + c * m.mn + e]!);
      out[e] = s;
    }
  });
}

/**
 * Dispatch of the sums of `members` in one launch.
 *
 * @param dtype Element type of every member's partials and output.
 * @param members 1 to {@link MAX_SPLIT_SUM_MEMBERS} members (at most `capacity`).
 * @param capacity The device's group size, checked when given.
 * @returns The dispatch.
 */
export function splitSumGroupDispatch(
  dtype: DType,
  members: readonly SplitSumMember[],
  capacity?: number,
): Dispatch {
  const k = members.length, op = "splitSumGroup";
  if (k < 1 || k > MAX_SPLIT_SUM_MEMBERS || (capacity !== undefined && k > capacity)) {
    throw new ValueError(
      op,
      `a group holds 1 to ${Math.min(MAX_SPLIT_SUM_MEMBERS, capacity ?? Infinity)} members, ` +
        `got ${k}`,
    );
  }
  const n = Math.max(...members.map((m) => m.mn));
  const groups = Math.min(Math.ceil(n / WG), 65535);
  return {
    op,
    key: SPLIT_SUM_GROUP.key(dtype, k),
    wgsl: () => splitSumGroupWgsl(dtype, k),
    cpu: (bufs) => splitSumGroupCpu(dtype, members, bufs),
    buffers: members.flatMap((m) => [m.parts, m.out]),
    uniforms: SPLIT_SUM_GROUP.uniforms({
      n,
      members: members.flatMap((m) => [m.splits, m.mn, m.offset, 0]),
    }),
    workgroups: [Math.max(1, groups), 1, 1],
  };
}
