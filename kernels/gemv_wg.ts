/**
 * GEMV (`y = x · op(W)`, one row of A per batch) for discrete GPUs: a workgroup shares each output
 * among many invocations and finishes it with a reduction in workgroup memory.
 *
 * - **split-K** (W stored `[K, N]`): a workgroup owns `4·WX` consecutive outputs; its `KS` rows of
 *   invocations walk every `KS`-th row of W, so neighbouring invocations read neighbouring vec4
 *   of one weight row (coalesced), and the `KS` partial sums are added in workgroup memory.
 * - **dot** (W stored `[N, K]`): `R` outputs per workgroup, `L` invocations per output walking its
 *   contiguous weight row in vec4 steps, then a tree sum over the `L` lanes.
 *
 * Why beside kernels/matmul.ts's GEMV: that one gives each invocation whole outputs and all of K,
 * which suits llvmpipe (CPU caches, 64-byte runs) but leaves a GPU with too few invocations in
 * flight to hide memory latency (an H200 measured 3.97 ms for 4096², where reading W takes 14 µs).
 * The reduction order differs from the one-invocation kernel (partial sums over strided k), so the
 * result may differ from it in the last bits of f32; it is fixed for a given variant.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import type { DType } from "../src/core/dtype.ts";
import type { SmemProblem } from "./matmul_smem.ts";
import { defineKernel } from "./spec.ts";

/** Shape of one GEMV workgroup. */
export type GemvShape =
  | { readonly kind: "splitK"; readonly wx: number; readonly ks: number }
  | { readonly kind: "dot"; readonly lanes: number; readonly rows: number };

const GEMV_WG = defineKernel({
  name: "gemvWg",
  bindings: [
    { name: "A", type: "VA", access: "read" },
    { name: "B", type: "V", access: "read" },
    { name: "C", type: "T", access: "read_write" },
  ],
  params: { n: "u32", k: "u32", sa: "u32", sb: "u32", sc: "u32" },
});

/**
 * Whether a workgroup GEMV can run a problem: one row of op(A); split-K needs W `[K, N]` with
 * N % 4 = 0, dot needs W `[N, K]` with K % 4 = 0. (With m = 1, A `[1, K]` and its transpose
 * `[K, 1]` are the same memory, so `transposeA` does not matter.)
 *
 * @param s The workgroup shape.
 * @param p The problem.
 * @returns True when the kernel is valid for it.
 * @example
 * ```ts
 * import { gemvWgFits } from "./gemv_wg.ts";
 * import assert from "node:assert/strict";
 * const p = { m: 1, n: 64, k: 30, batch: 1, strideA: 0, strideB: 0, transposeA: false, transposeB: false, dtype: "f32" as const };
 * assert.equal(gemvWgFits({ kind: "splitK", wx: 16, ks: 16 }, p), true);
 * assert.equal(gemvWgFits({ kind: "dot", lanes: 64, rows: 4 }, { ...p, transposeB: true }), false);
 * ```
 */
export function gemvWgFits(s: GemvShape, p: SmemProblem): boolean {
  if (p.m !== 1) return false;
  if (s.kind === "splitK") return !p.transposeB && p.n % 4 === 0 && p.strideB % 4 === 0;
  return p.transposeB && p.k % 4 === 0 && p.strideA % 4 === 0 && p.strideB % 4 === 0;
}

/**
 * WGSL of a strided accumulation: `acc = update(i, acc)` for `i = start, start + step, …` below
 * `end`, with four independent accumulators so four loads are in flight per step (a GPU hides
 * memory latency with loads in flight, not with more arithmetic), summed into `total` at the end.
 *
 * @param total Name of the result variable (declared here).
 * @param start First index (WGSL expression).
 * @param end Exclusive bound (WGSL expression).
 * @param step Stride (a constant).
 * @param update The accumulation of term `i` into accumulator `acc`, e.g. an `fma`.
 * @param zero The accumulators' zero, e.g. `vec4f(0.0)`.
 * @param guard A condition under which to accumulate at all (else `total` stays zero).
 * @returns WGSL statements.
 * @example
 * ```ts
 * import { stridedSum } from "./gemv_wg.ts";
 * import assert from "node:assert/strict";
 * const src = stridedSum("s", "lid.x", "n", 64, (i, acc) => `${acc} + x[${i}]`, "0.0", "true");
 * assert.match(src, /i \+ 192u < n; i = i \+ 256u/);
 * ```
 */
export function stridedSum(
  total: string,
  start: string,
  end: string,
  step: number,
  update: (i: string, acc: string) => string,
  zero: string,
  guard: string,
): string {
  const accs = [0, 1, 2, 3].map((u) => `${total}${u}`);
  return `  ${accs.map((a) => `var ${a} = ${zero};`).join(" ")}
  if (${guard}) {
    var i = ${start};
    for (; i + ${3 * step}u < ${end}; i = i + ${4 * step}u) {
${accs.map((a, u) => `      ${a} = ${update(u ? `(i + ${u * step}u)` : "i", a)};`).join("\n")}
    }
    for (; i < ${end}; i = i + ${step}u) { ${accs[0]} = ${update("i", accs[0]!)}; }
  }
  let ${total} = (${accs[0]} + ${accs[1]}) + (${accs[2]} + ${accs[3]});
`;
}

/** Tree sum of `count` slots of `part` (stride `stride`), lane `lane`; barriers between levels. */
function treeSum(count: number, lane: string, at: (i: string) => string): string {
  let s = "";
  for (let half = count / 2; half >= 1; half /= 2) {
    s += `  if (${lane} < ${half}u) { part[${at(lane)}] = part[${at(lane)}] + part[${
      at(`${lane} + ${half}u`)
    }]; }\n  workgroupBarrier();\n`;
  }
  return s;
}

/**
 * WGSL of one workgroup GEMV.
 *
 * @param dtype Storage dtype (f32 or f16; accumulation is f32).
 * @param s The workgroup shape.
 * @returns The kernel source.
 * @example
 * ```ts
 * import { gemvWgWgsl } from "./gemv_wg.ts";
 * import assert from "node:assert/strict";
 * assert.match(gemvWgWgsl("f32", { kind: "dot", lanes: 64, rows: 4 }), /@workgroup_size\(64, 4\)/);
 * ```
 */
export function gemvWgWgsl(dtype: DType, s: GemvShape): string {
  if (s.kind === "splitK") {
    const header = GEMV_WG.header({ types: { T: dtype, VA: dtype, V: `vec4<${dtype}>` } });
    const at = (y: string) => `(${y}) * ${s.wx}u + lid.x`;
    return `${header}
var<workgroup> part: array<vec4f, ${s.wx * s.ks}>;

@compute @workgroup_size(${s.wx}, ${s.ks})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let c4 = wid.x * ${s.wx}u + lid.x;
  let n4 = p.n / 4u;
  let abase = wid.z * p.sa;
  let bbase = wid.z * p.sb / 4u + c4;
${
      stridedSum(
        "acc",
        "lid.y",
        "p.k",
        s.ks,
        (k, acc) => `fma(vec4f(f32(A[abase + ${k}])), vec4f(B[bbase + ${k} * n4]), ${acc})`,
        "vec4f(0.0)",
        "c4 < n4",
      )
    }  part[${at("lid.y")}] = acc;
  workgroupBarrier();
${treeSum(s.ks, "lid.y", at)}  if (lid.y == 0u && c4 < n4) {
    let v = part[lid.x];
    let o = wid.z * p.sc + c4 * 4u;
    C[o] = ${dtype}(v[0]); C[o + 1u] = ${dtype}(v[1]); C[o + 2u] = ${dtype}(v[2]); C[o + 3u] = ${dtype}(v[3]);
  }
}`;
  }
  const header = GEMV_WG.header({
    types: { T: dtype, VA: `vec4<${dtype}>`, V: `vec4<${dtype}>` },
  });
  const at = (x: string) => `lid.y * ${s.lanes}u + ${x}`;
  return `${header}
var<workgroup> part: array<f32, ${s.lanes * s.rows}>;

@compute @workgroup_size(${s.lanes}, ${s.rows})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let j = wid.x * ${s.rows}u + lid.y;
  let k4 = p.k / 4u;
  let abase = wid.z * p.sa / 4u;
  let bbase = (wid.z * p.sb) / 4u + j * k4;
${
    stridedSum(
      "acc",
      "lid.x",
      "k4",
      s.lanes,
      (t, acc) => `fma(vec4f(A[abase + ${t}]), vec4f(B[bbase + ${t}]), ${acc})`,
      "vec4f(0.0)",
      "j < p.n",
    )
  }  part[${at("lid.x")}] = acc[0] + acc[1] + acc[2] + acc[3];
  workgroupBarrier();
${
    treeSum(s.lanes, "lid.x", at)
  }  if (lid.x == 0u && j < p.n) { C[wid.z * p.sc + j] = ${dtype}(part[lid.y * ${s.lanes}u]); }
}`;
}

/**
 * The dispatch of one GEMV problem on one workgroup shape.
 *
 * @param name Variant name, part of the pipeline key.
 * @param s The workgroup shape.
 * @param p The problem (m = 1).
 * @param a Storage of A.
 * @param b Storage of B (W).
 * @param c Storage of C.
 * @param cpu The CPU twin of the problem.
 * @param native The host kernel, when one exists.
 * @returns The dispatch.
 * @example
 * ```ts
 * import { gemvWgDispatch } from "./gemv_wg.ts";
 * import assert from "node:assert/strict";
 * const s = { id: 0, bytes: 64 };
 * const p = { m: 1, n: 256, k: 64, batch: 2, strideA: 64, strideB: 0, transposeA: false, transposeB: false, dtype: "f32" as const };
 * const d = gemvWgDispatch("gemvSplitK16", { kind: "splitK", wx: 16, ks: 16 }, p, s, s, s, () => {});
 * assert.deepEqual(d.workgroups, [4, 1, 2]);
 * ```
 */
export function gemvWgDispatch(
  name: string,
  s: GemvShape,
  p: SmemProblem,
  a: Storage,
  b: Storage,
  c: Storage,
  cpu: Dispatch["cpu"],
  native?: Dispatch["native"],
): Dispatch {
  const groups = s.kind === "splitK" ? Math.ceil(p.n / (4 * s.wx)) : Math.ceil(p.n / s.rows);
  return {
    op: "matmul",
    key: GEMV_WG.key(name, p.dtype),
    wgsl: () => gemvWgWgsl(p.dtype, s),
    cpu,
    native,
    buffers: [a, b, c],
    uniforms: GEMV_WG.uniforms({
      n: p.n,
      k: p.k,
      sa: p.strideA,
      sb: p.strideB,
      sc: p.n,
    }),
    workgroups: [groups, 1, p.batch],
  };
}
