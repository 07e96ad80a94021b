/**
 * Declared kernels (kernels/spec.ts): the generated WGSL header, the uniform packing by name and
 * WGSL layout (checked against a real WGSL compiler on the WebGPU device), the errors that replace
 * silent positional mistakes, and a scan that keeps hand-written headers out of kernels/.
 */
import assert from "node:assert/strict";
import { defineKernel } from "../kernels/spec.ts";
import { gpu } from "./helpers.ts";

const bits = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0]!;

const NORM = defineKernel({
  name: "testNorm",
  bindings: [
    { name: "xs", type: "T", access: "read" },
    { name: "w", type: "T", access: "read", optional: true },
    { name: "out", type: "T", access: "read_write" },
    { name: "rstd", type: "f32", access: "read_write" },
  ],
  params: { rows: "u32", cols: "u32", eps: "f32" },
});

Deno.test("kernel spec: header with f16, all bindings numbered in order, uniform last", () => {
  assert.equal(
    NORM.header({ types: { T: "f16" } }),
    `enable f16;
struct P { rows: u32, cols: u32, eps: f32 };
@group(0) @binding(0) var<storage, read> xs: array<f16>;
@group(0) @binding(1) var<storage, read> w: array<f16>;
@group(0) @binding(2) var<storage, read_write> out: array<f16>;
@group(0) @binding(3) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(4) var<uniform> p: P;`,
  );
});

Deno.test("kernel spec: an omitted optional binding takes no number; f32 needs no enable", () => {
  assert.equal(
    NORM.header({ types: { T: "f32" }, omit: ["w"] }),
    `struct P { rows: u32, cols: u32, eps: f32 };
@group(0) @binding(0) var<storage, read> xs: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read_write> rstd: array<f32>;
@group(0) @binding(3) var<uniform> p: P;`,
  );
});

Deno.test("kernel spec: type variables inside a type; f16 enabled by a variable alone", () => {
  const MM = defineKernel({
    name: "testVec",
    bindings: [
      { name: "A", type: "vec4<T>", access: "read" },
      { name: "C", type: "u32", access: "read_write" },
    ],
    params: { n: "u32" },
  });
  assert.equal(
    MM.header({ types: { T: "f32" } }).split("\n")[1],
    "@group(0) @binding(0) var<storage, read> A: array<vec4<f32>>;",
  );
  // A body may use a type variable (`${U}(0)`) that no binding uses: f16 is still enabled.
  assert.match(MM.header({ types: { T: "f32", U: "f16" } }), /^enable f16;\n/);
  assert.doesNotMatch(MM.header({ types: { T: "f32", U: "i32" } }), /enable/);
});

Deno.test("kernel spec: a kernel without params gets no struct and no uniform binding", () => {
  const COPY = defineKernel({
    name: "testCopy",
    bindings: [
      { name: "src", type: "u32", access: "read" },
      { name: "dst", type: "u32", access: "read_write" },
    ],
  });
  assert.equal(
    COPY.header(),
    `@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;`,
  );
  assert.throws(() => COPY.uniforms({}), /kernel "testCopy" has no uniform parameters/);
});

Deno.test("kernel spec: uniforms pack by name in declared order (u32, i32, f32 bits)", () => {
  const K = defineKernel({
    name: "testPack",
    bindings: [{ name: "out", type: "f32", access: "read_write" }],
    params: { n: "u32", delta: "i32", scale: "f32", big: "u32", neg: "f32" },
  });
  // Given in another order than declared: the struct order wins.
  const words = K.uniforms({ neg: -0, scale: 1.5, big: 0xffffffff, delta: -3, n: 7 });
  assert.deepEqual(Array.from(words), [
    7,
    0xfffffffd, // -3 as two's complement
    0x3fc00000, // 1.5
    0xffffffff,
    0x80000000, // -0 keeps its sign bit
    0,
    0,
    0,
  ]);
  assert.equal(words[2], bits(1.5));
  // At least 4 words (16 bytes), as every uniform block here.
  assert.equal(NORM.uniforms({ rows: 1, cols: 2, eps: 1e-6 }).length, 4);
  assert.equal(NORM.uniforms({ rows: 1, cols: 2, eps: 1e-6 })[2], bits(1e-6));
});

const LAYOUT = defineKernel({
  name: "testLayout",
  bindings: [{ name: "out", type: "u32", access: "read_write" }],
  params: {
    n: "u32",
    i: "i32",
    sh: "array<vec4u, 2>",
    s: "f32",
    inv: "array<vec4f, 1>",
    last: "u32",
  },
});

Deno.test("kernel spec: vec4 arrays align to 16 bytes; short lists are zero-filled", () => {
  assert.match(
    LAYOUT.header(),
    /^struct P \{ n: u32, i: i32, sh: array<vec4u, 2>, s: f32, inv: array<vec4f, 1>, last: u32 \};/,
  );
  const w = LAYOUT.uniforms({ n: 5, i: -1, sh: [1, 2, 3], s: 2, inv: [0.5], last: 9 });
  // n, i, (pad to 16 bytes), sh[0..8], s, (pad), inv[0..4], last, (struct rounded to 16 bytes)
  assert.deepEqual(Array.from(w), [
    5,
    0xffffffff,
    0,
    0,
    1,
    2,
    3,
    0,
    0,
    0,
    0,
    0,
    bits(2),
    0,
    0,
    0,
    bits(0.5),
    0,
    0,
    0,
    9,
    0,
    0,
    0,
  ]);
});

Deno.test("kernel spec: the packed layout is the one the WGSL compiler gives the struct", async () => {
  if (!gpu) return; // no WebGPU adapter: the layout is still checked by the test above
  const be = gpu.backend;
  const out = be.allocate(16 * 4, "testLayout");
  try {
    const values = {
      n: 5,
      i: -7,
      sh: [1, 2, 3, 4, 5, 6, 7, 8],
      s: -2.5,
      inv: [0.25, 0.5, 0.75, 1],
      last: 0xfffffff0,
    };
    be.dispatch({
      op: "testLayout",
      key: LAYOUT.key("readback"),
      wgsl: () =>
        `${LAYOUT.header()}
@compute @workgroup_size(1)
fn main() {
  out[0] = p.n;
  out[1] = bitcast<u32>(p.i);
  for (var k = 0u; k < 8u; k = k + 1u) { out[2u + k] = p.sh[k / 4u][k % 4u]; }
  out[10] = bitcast<u32>(p.s);
  for (var k = 0u; k < 4u; k = k + 1u) { out[11u + k] = bitcast<u32>(p.inv[0][k]); }
  out[15] = p.last;
}`,
      cpu: () => {},
      buffers: [out],
      uniforms: LAYOUT.uniforms(values),
      workgroups: [1, 1, 1],
    });
    const got = new Uint32Array(await be.read(out, 16 * 4));
    assert.deepEqual(Array.from(got), [
      5,
      -7 >>> 0,
      ...values.sh,
      bits(-2.5),
      ...values.inv.map(bits),
      0xfffffff0,
    ]);
  } finally {
    be.release(out);
  }
});

Deno.test("kernel spec: a missing or unknown field throws, naming the kernel and field", () => {
  const rows = 4, cols = 8;
  assert.throws(
    () => NORM.uniforms({ rows, cols } as never),
    /kernel "testNorm": uniform field "eps" missing/,
  );
  assert.throws(
    () => NORM.uniforms({ rows, cols, eps: 1e-6, lanes: 4 } as never),
    /kernel "testNorm": unknown uniform field "lanes"/,
  );
});

Deno.test("kernel spec: integers out of their WGSL type's range throw instead of wrapping", () => {
  const K = defineKernel({
    name: "testRange",
    bindings: [{ name: "out", type: "u32", access: "read_write" }],
    params: { u: "u32", i: "i32", list: "array<vec4u, 1>" },
  });
  const ok = { u: 0, i: 0, list: [] };
  assert.throws(
    () => K.uniforms({ ...ok, u: -1 }),
    /kernel "testRange": "u" = -1 does not fit u32/,
  );
  assert.throws(() => K.uniforms({ ...ok, u: 2 ** 32 }), /"u" = 4294967296 does not fit u32/);
  assert.throws(() => K.uniforms({ ...ok, u: 1.5 }), /"u" = 1.5 does not fit u32/);
  assert.throws(() => K.uniforms({ ...ok, i: 2 ** 31 }), /"i" = 2147483648 does not fit i32/);
  assert.throws(() => K.uniforms({ ...ok, list: [1, -2] }), /"list\[1\]" = -2 does not fit u32/);
  assert.throws(
    () => K.uniforms({ ...ok, list: [1, 2, 3, 4, 5] }),
    /"list" must be a list of at most 4/,
  );
  assert.equal(K.uniforms({ ...ok, i: -(2 ** 31) })[1], 0x80000000);
});

Deno.test("kernel spec: declaration and header mistakes throw, naming the kernel", () => {
  assert.throws(
    () => NORM.header({ types: { T: "f32" }, omit: ["xs"] }),
    /kernel "testNorm": cannot omit "xs" \(not an optional binding\)/,
  );
  assert.throws(() => NORM.header(), /kernel "testNorm": type variable T not given/);
  assert.throws(
    () => defineKernel({ name: "testNorm", bindings: [] }),
    /kernel "testNorm" is declared twice/,
  );
  assert.throws(
    () =>
      defineKernel({
        name: "testBadType",
        bindings: [],
        params: { m: "mat4x4f" as "f32" },
      }),
    /kernel "testBadType": parameter "m" has unsupported type "mat4x4f"/,
  );
  assert.throws(
    () =>
      defineKernel({
        name: "testBadBinding",
        bindings: [
          { name: "a", type: "f32", access: "read" },
          { name: "a", type: "f32", access: "read" },
        ],
      }),
    /kernel "testBadBinding": bad or repeated binding name "a"/,
  );
});

Deno.test("kernel spec: the key is the name then the specialisation parts", () => {
  assert.equal(NORM.key("f16", "w", "L32"), "testNorm:f16:w:L32");
  assert.equal(NORM.key(), "testNorm");
});

/**
 * Files of kernels/ allowed to write WGSL headers by hand, with the reason. Empty: every kernel
 * declares its header through spec.ts (which generates it, so it is not listed).
 */
const HAND_WRITTEN_HEADERS: Readonly<Record<string, string>> = {};

Deno.test("kernel spec: no kernel in kernels/ writes struct P or @binding lines by hand", async () => {
  const dir = new URL("../kernels/", import.meta.url);
  const offenders: string[] = [];
  let scanned = 0;
  for await (const e of Deno.readDir(dir)) {
    if (!e.isFile || !e.name.endsWith(".ts") || e.name === "spec.ts") continue;
    if (e.name in HAND_WRITTEN_HEADERS) continue;
    scanned++;
    const text = await Deno.readTextFile(new URL(e.name, dir));
    text.split("\n").forEach((line, i) => {
      if (/struct P\s*\{|@binding\(|var<uniform>/.test(line)) {
        offenders.push(`kernels/${e.name}:${i + 1}: ${line.trim()}`);
      }
    });
  }
  assert.ok(scanned >= 25, `scanned only ${scanned} kernel files`);
  assert.deepEqual(offenders, [], "declare these through defineKernel (kernels/spec.ts)");
});

Deno.test("kernel spec: every kernel module loads (a repeated kernel name would throw)", async () => {
  const dir = new URL("../kernels/", import.meta.url);
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && e.name.endsWith(".ts")) await import(new URL(e.name, dir).href);
  }
});
