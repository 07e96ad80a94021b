/**
 * KV-cache append: writes the keys (or values) of T new positions, laid out as the projection
 * produces them (`[B, T, H, hd]`), into a preallocated cache `[B, H, Tmax, hd]` at positions
 * `pos .. pos + T − 1`. The cache keeps the head-major layout attention multiplies with, so a
 * decode step appends in one launch instead of B·H copies and never re-permutes the history.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { gridStride, WG } from "./common.ts";
import { defineKernel } from "./spec.ts";
import { STEP_VALUE, STEP_VALUES_BINDING, stepValue } from "./step_values.ts";

/** Sizes of one append. */
export interface KvWriteParams {
  /** Sequences B. */
  b: number;
  /** New positions T. */
  t: number;
  /** Heads H. */
  h: number;
  /** Head width hd. */
  hd: number;
  /** Cache capacity Tmax. */
  tMax: number;
  /** First position written. */
  pos: number;
}

const KV_WRITE = defineKernel({
  name: "kvWrite",
  bindings: [
    { name: "src", type: "f32", access: "read" },
    { name: "cache", type: "f32", access: "read_write" },
    // With step values (a captured decode loop), the position is `pos + sv[0]`.
    STEP_VALUES_BINDING,
  ],
  params: { n: "u32", t: "u32", h: "u32", hd: "u32", tmax: "u32", pos: "u32" },
});

/**
 * WGSL of the append (one invocation per new element).
 *
 * @param stepValues Read the position's offset from the step-values buffer.
 * @returns The shader.
 */
export function kvWriteWgsl(stepValues = false): string {
  return `${KV_WRITE.header({ omit: stepValues ? [] : ["sv"] })}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  let pos = p.pos${stepValues ? ` + sv[${STEP_VALUE.pos}]` : ""};
  for (var i = gid.x; i < p.n; i = i + stride) {
    let e = i % p.hd;
    let head = (i / p.hd) % p.h;
    let t = (i / (p.hd * p.h)) % p.t;
    let b = i / (p.hd * p.h * p.t);
    cache[((b * p.h + head) * p.tmax + pos + t) * p.hd + e] = src[i];
  }
}`;
}

/** CPU twin of {@link kvWriteWgsl}. */
export function kvWriteCpu(p: KvWriteParams, src: ArrayBuffer, cache: ArrayBuffer): void {
  const s = new Float32Array(src), c = new Float32Array(cache);
  const n = p.b * p.t * p.h * p.hd;
  for (let i = 0; i < n; i++) {
    const e = i % p.hd;
    const head = Math.floor(i / p.hd) % p.h;
    const t = Math.floor(i / (p.hd * p.h)) % p.t;
    const b = Math.floor(i / (p.hd * p.h * p.t));
    c[((b * p.h + head) * p.tMax + p.pos + t) * p.hd + e] = s[i]!;
  }
}

/**
 * Dispatch of one append.
 *
 * @param p Sizes and position.
 * @param src New entries `[B, T, H, hd]` (f32).
 * @param cache Cache `[B, H, Tmax, hd]` (f32), updated in place.
 * @param sv Step values (kernels/step_values.ts): the position is then `p.pos + sv[0]`.
 * @returns The dispatch.
 */
export function kvWriteDispatch(
  p: KvWriteParams,
  src: Storage,
  cache: Storage,
  sv?: Storage,
): Dispatch {
  const n = p.b * p.t * p.h * p.hd;
  return {
    op: "kvWrite",
    key: sv ? KV_WRITE.key("sv") : KV_WRITE.key(),
    wgsl: () => kvWriteWgsl(sv !== undefined),
    cpu: ([s, c, v]) => kvWriteCpu({ ...p, pos: p.pos + stepValue(v, STEP_VALUE.pos) }, s!, c!),
    buffers: sv ? [src, cache, sv] : [src, cache],
    uniforms: KV_WRITE.uniforms({ n, t: p.t, h: p.h, hd: p.hd, tmax: p.tMax, pos: p.pos }),
    workgroups: gridStride(n),
  };
}
