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
    // A second (source, cache) pair — the values beside the keys — in the same launch.
    { name: "src2", type: "f32", access: "read", optional: true },
    { name: "cache2", type: "f32", access: "read_write", optional: true },
    // With step values (a captured decode loop), the position is `pos + sv[0]`.
    STEP_VALUES_BINDING,
  ],
  params: { n: "u32", t: "u32", h: "u32", hd: "u32", tmax: "u32", pos: "u32" },
});

/**
 * WGSL of the append (one invocation per new element; with `pair`, it writes the element of
 * both pairs).
 *
 * @param stepValues Read the position's offset from the step-values buffer.
 * @param pair Also append `src2` into `cache2` (keys and values in one launch).
 * @returns The shader.
 */
export function kvWriteWgsl(stepValues = false, pair = false): string {
  const omit = [...(stepValues ? [] : ["sv"]), ...(pair ? [] : ["src2", "cache2"])];
  return `${KV_WRITE.header({ omit })}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  let pos = p.pos${stepValues ? ` + sv[${STEP_VALUE.pos}]` : ""};
  for (var i = gid.x; i < p.n; i = i + stride) {
    let e = i % p.hd;
    let head = (i / p.hd) % p.h;
    let t = (i / (p.hd * p.h)) % p.t;
    let b = i / (p.hd * p.h * p.t);
    let at = ((b * p.h + head) * p.tmax + pos + t) * p.hd + e;
    cache[at] = src[i];${pair ? "\n    cache2[at] = src2[i];" : ""}
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
 * Dispatch of one append, or of two with the same sizes and position in one launch (`second`:
 * a layer's values beside its keys).
 *
 * @param p Sizes and position.
 * @param src New entries `[B, T, H, hd]` (f32).
 * @param cache Cache `[B, H, Tmax, hd]` (f32), updated in place.
 * @param sv Step values (kernels/step_values.ts): the position is then `p.pos + sv[0]`.
 * @param second Another `{ src, cache }` appended alike, or none.
 * @returns The dispatch.
 */
export function kvWriteDispatch(
  p: KvWriteParams,
  src: Storage,
  cache: Storage,
  sv?: Storage,
  second?: { src: Storage; cache: Storage },
): Dispatch {
  const n = p.b * p.t * p.h * p.hd, pair = second !== undefined;
  return {
    op: "kvWrite",
    key: KV_WRITE.key(sv ? "sv" : "", pair ? "pair" : ""),
    wgsl: () => kvWriteWgsl(sv !== undefined, pair),
    cpu: (bufs) => {
      const at = { ...p, pos: p.pos + stepValue(sv ? bufs.at(-1) : undefined, STEP_VALUE.pos) };
      kvWriteCpu(at, bufs[0]!, bufs[1]!);
      if (pair) kvWriteCpu(at, bufs[2]!, bufs[3]!);
    },
    buffers: [src, cache, ...(second ? [second.src, second.cache] : []), ...(sv ? [sv] : [])],
    uniforms: KV_WRITE.uniforms({ n, t: p.t, h: p.h, hd: p.hd, tmax: p.tMax, pos: p.pos }),
    workgroups: gridStride(n),
  };
}
