/**
 * Counter-based random numbers: element i of a draw with (seed, offset) is a pure function of
 * (seed, offset + i), so CPU and WebGPU produce the same uniforms bit for bit and normals to
 * within f32 rounding of log/cos, and a draw can be reproduced or split without state.
 *
 * The mixer is two rounds of the "lowbias32" integer hash (Chris Wellons' hash-prospector),
 * seeded through a third round.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { gridStride, WG } from "./common.ts";
import { uniform01 } from "../src/core/random.ts";
import { defineKernel } from "./spec.ts";

const WGSL_HASH = `
fn lowbias32(v: u32) -> u32 {
  var x = v;
  x = x ^ (x >> 16u); x = x * 0x7feb352du;
  x = x ^ (x >> 15u); x = x * 0x846ca68bu;
  x = x ^ (x >> 16u);
  return x;
}
fn random_bits(seed: u32, c: u32) -> u32 {
  return lowbias32(lowbias32(c ^ lowbias32(seed)) + seed);
}
fn uniform01(seed: u32, c: u32) -> f32 {
  return f32(random_bits(seed, c) >> 8u) * (1.0 / 16777216.0);
}`;

/** Which distribution to draw. */
export type RandomKind = "uniform" | "normal";

const RANDOM = defineKernel({
  name: "random",
  bindings: [
    { name: "out", type: "f32", access: "read_write" },
  ],
  params: { n: "u32", seed: "u32", offset: "u32", a: "f32", b: "f32" },
});

/** WGSL for a uniform or normal draw into an f32 buffer. */
export function randomWgsl(kind: RandomKind): string {
  const body = kind === "uniform"
    ? "out[i] = p.a + (p.b - p.a) * uniform01(p.seed, p.offset + i);"
    : `let c = p.offset + 2u * i;
    let u1 = 1.0 - uniform01(p.seed, c);
    let u2 = uniform01(p.seed, c + 1u);
    out[i] = p.a + p.b * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);`;
  return `${WGSL_HASH}
${RANDOM.header()}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < p.n; i = i + stride) {
    ${body}
  }
}`;
}

/**
 * CPU twin of {@link randomWgsl}.
 *
 * @param kind Distribution.
 * @param out Output.
 * @param seed Seed.
 * @param offset Counter offset.
 * @param a Low bound (uniform) or mean (normal).
 * @param b High bound (uniform) or standard deviation (normal).
 */
export function randomCpu(
  kind: RandomKind,
  out: Float32Array,
  seed: number,
  offset: number,
  a: number,
  b: number,
): void {
  const fa = Math.fround(a), fb = Math.fround(b);
  for (let i = 0; i < out.length; i++) {
    if (kind === "uniform") {
      out[i] = fa + Math.fround(Math.fround(fb - fa) * uniform01(seed, (offset + i) >>> 0));
    } else {
      const c = (offset + 2 * i) >>> 0;
      const u1 = 1 - uniform01(seed, c);
      const u2 = uniform01(seed, (c + 1) >>> 0);
      out[i] = fa + fb * Math.sqrt(-2 * Math.log(u1)) * Math.cos(6.283185307179586 * u2);
    }
  }
}

/** Builds the dispatch of a random draw of `n` f32 into `out`. */
export function randomDispatch(
  kind: RandomKind,
  out: Storage,
  n: number,
  seed: number,
  offset: number,
  a: number,
  b: number,
): Dispatch {
  return {
    op: kind === "uniform" ? "rand" : "randn",
    key: RANDOM.key(kind),
    wgsl: () => randomWgsl(kind),
    cpu: ([o]) => randomCpu(kind, new Float32Array(o!, 0, n), seed, offset, a, b),
    buffers: [out],
    uniforms: RANDOM.uniforms({ n, seed: seed >>> 0, offset: offset >>> 0, a, b }),
    workgroups: gridStride(n),
  };
}
