/**
 * Finite-difference checks of every differentiable elementwise, layout and matmul op, plus
 * GPU-backward vs CPU-backward.
 */
import assert from "node:assert/strict";
import {
  abs,
  add,
  addScalar,
  broadcastTo,
  cast,
  concat,
  div,
  exp,
  log,
  matmul,
  maximum,
  maxScalar,
  minimum,
  mul,
  mulScalar,
  neg,
  powScalar,
  rdivScalar,
  relu,
  relu2,
  rsqrt,
  rsubScalar,
  sigmoid,
  silu,
  slice,
  sqrt,
  square,
  sub,
  sumTo,
  tanh,
  type Tensor,
  transpose,
  where,
} from "../mod.ts";
import { binaryRaw, unaryRaw } from "../src/ops/elementwise.ts";
import { assertClose, cpu, hostRandom, onBoth, others } from "./helpers.ts";
import { exactOnThreads } from "./native_threads.ts";
import { gradCheck, type GradInput, gradOnBoth } from "./gradcheck.ts";

const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
/** Random values with |x| ≥ 0.2, so a step of 1e-2 never crosses a kink at 0. */
const awayFromZero = (n: number, seed: number) =>
  hostRandom(n, seed, 1.5).map((v) => (v >= 0 ? v + 0.2 : v - 0.2));
/** Multiples of 0.3 in [−1.5, 1.5], plus `shift`. */
const onGrid = (n: number, seed: number, shift: number) =>
  hostRandom(n, seed).map((v) => Math.round(v * 5) * 0.3 + shift);
const positive = (n: number, seed: number) => hostRandom(n, seed).map((v) => Math.abs(v) + 0.3);
const inp = (
  shape: number[],
  data: Float32Array = hostRandom(size(shape), size(shape) + 1),
): GradInput => ({
  data,
  shape,
});

type Case = [string, (xs: Tensor[]) => Tensor, GradInput[], { eps?: number; rtol?: number }?];

async function check(t: Deno.TestContext, cases: Case[]): Promise<void> {
  for (const [name, fn, inputs, o] of cases) {
    await t.step(name, async () => {
      await gradCheck(fn, inputs, { what: name, maxPoints: 24, ...o });
      await gradOnBoth(fn, inputs, { rtol: 1e-4, atol: 1e-5 }, name);
    });
  }
}

Deno.test("unary ops: gradients match finite differences", async (t) => {
  const s = [3, 7];
  const x = inp(s), nz = inp(s, awayFromZero(21, 2)), pos = inp(s, positive(21, 3));
  await check(t, [
    ["neg", ([a]) => neg(a!), [x]],
    ["abs", ([a]) => abs(a!), [nz]],
    ["exp", ([a]) => exp(a!), [x]],
    ["log", ([a]) => log(a!), [pos]],
    ["sqrt", ([a]) => sqrt(a!), [pos]],
    ["rsqrt", ([a]) => rsqrt(a!), [pos]],
    ["square", ([a]) => square(a!), [x]],
    ["relu", ([a]) => relu(a!), [nz]],
    ["relu2", ([a]) => relu2(a!), [nz]],
    ["sigmoid", ([a]) => sigmoid(a!), [nz]],
    ["silu", ([a]) => silu(a!), [nz]],
    ["tanh", ([a]) => tanh(a!), [nz]],
  ]);
});

Deno.test("binary ops with broadcasting: gradients match finite differences", async (t) => {
  const pairs: [number[], number[]][] = [[[3, 4], [3, 4]], [[3, 4], [4]], [[3, 1], [1, 4]], [[
    2,
    3,
    4,
  ], [3, 1]], [[5], []]];
  const cases: Case[] = [];
  for (const [sa, sb] of pairs) {
    const a = inp(sa, awayFromZero(size(sa), 11)), b = inp(sb, awayFromZero(size(sb), 97));
    // max/min: a on a 0.3 grid and b halfway between, so a step never crosses a tie.
    const ga = inp(sa, onGrid(size(sa), 5, 0)), gb = inp(sb, onGrid(size(sb), 71, 0.15));
    const tag = `[${sa}] [${sb}]`;
    cases.push(
      [`add ${tag}`, ([x, y]) => add(x!, y!), [a, b]],
      [`sub ${tag}`, ([x, y]) => sub(x!, y!), [a, b]],
      [`mul ${tag}`, ([x, y]) => mul(x!, y!), [a, b]],
      [`div ${tag}`, ([x, y]) => div(x!, y!), [a, b]],
      [`maximum ${tag}`, ([x, y]) => maximum(x!, y!), [ga, gb]],
      [`minimum ${tag}`, ([x, y]) => minimum(x!, y!), [ga, gb]],
    );
  }
  cases.push(["mul(x, x) accumulates both operands", ([x]) => mul(x!, x!), [inp([6])]]);
  cases.push(["only b needs a gradient", ([x, y]) => mul(x!, y!), [
    { ...inp([2, 3]), grad: false },
    inp([3]),
  ]]);
  await check(t, cases);
});

Deno.test("scalar forms, where and cast: gradients match finite differences", async (t) => {
  const x = inp([4, 5]), nz = inp([4, 5], awayFromZero(20, 4)), pos = inp([4, 5], positive(20, 5));
  const rowFlag = cpu.tensor(new Float32Array([1, 0, 1, 0]), [4, 1]);
  await check(t, [
    ["addScalar", ([a]) => addScalar(a!, 2.5), [x]],
    ["mulScalar", ([a]) => mulScalar(a!, -3), [x]],
    ["rsubScalar", ([a]) => rsubScalar(a!, 1), [x]],
    ["rdivScalar", ([a]) => rdivScalar(a!, 2), [nz]],
    ["powScalar 3 (negative bases too)", ([a]) => powScalar(a!, 3), [x]],
    ["powScalar -2", ([a]) => powScalar(a!, -2), [nz]],
    ["powScalar 0.5", ([a]) => powScalar(a!, 0.5), [pos]],
    ["maxScalar", ([a]) => maxScalar(a!, 0), [nz]],
    [
      "where (full cond)",
      ([a, b]) =>
        where(a!.device.tensor(new Float32Array(20).map((_, i) => i % 3), [4, 5]), a!, b!),
      [x, inp([4, 5], hostRandom(20, 9))],
    ],
    [
      "where (row flag)",
      ([a, b]) =>
        where(
          a!.device === cpu ? rowFlag : a!.device.tensor(new Float32Array([1, 0, 1, 0]), [4, 1]),
          a!,
          b!,
        ),
      [x, inp([4, 5], hostRandom(20, 8))],
    ],
    ["cast f32 → f32", ([a]) => cast(a!, "f32"), [x]],
  ]);
  if (cpu.backend.hasF16) {
    await check(t, [[
      "cast f32 → f16 → f32 passes the gradient through",
      ([a]) => cast(cast(a!, "f16"), "f32"),
      [x],
      { eps: 0.1, rtol: 5e-2 },
    ]]);
  }
});

Deno.test("layout ops: gradients match finite differences", async (t) => {
  await check(t, [
    ["transpose", ([a]) => transpose(a!), [inp([3, 5])]],
    ["transpose batched", ([a]) => transpose(a!), [inp([2, 3, 4])]],
    ["slice dim 0", ([a]) => slice(a!, 1, 3), [inp([4, 3])]],
    ["slice dim 1", ([a]) => slice(a!, 1, 4, 1), [inp([3, 5])]],
    ["slice last dim, negative start", ([a]) => slice(a!, -2, undefined, 2), [inp([2, 3, 4])]],
    ["concat dim 0", ([a, b]) => concat([a!, b!], 0), [inp([2, 3]), inp([1, 3], hostRandom(3, 4))]],
    ["concat dim 1, three parts", ([a, b, c]) => concat([a!, b!, c!], 1), [
      inp([2, 1]),
      inp([2, 3], hostRandom(6, 3)),
      inp([2, 2], hostRandom(4, 7)),
    ]],
    ["sumTo", ([a]) => sumTo(a!, [3, 1]), [inp([2, 3, 4])]],
    ["sumTo leading", ([a]) => sumTo(a!, [4]), [inp([2, 3, 4])]],
    ["broadcastTo", ([a]) => broadcastTo(a!, [2, 3, 4]), [inp([3, 1])]],
    ["reshape", ([a]) => a!.reshape([4, 3]).reshape([2, 6]), [inp([3, 4])]],
  ]);
});

Deno.test("matmul: gradients for every transpose and batch layout match finite differences", async (t) => {
  const cases: Case[] = [];
  for (const ta of [false, true]) {
    for (const tb of [false, true]) {
      const [m, k, n] = [3, 5, 4];
      cases.push([
        `transposeA=${ta} transposeB=${tb}`,
        ([a, b]) => matmul(a!, b!, { transposeA: ta, transposeB: tb }),
        [inp(ta ? [k, m] : [m, k]), inp(tb ? [n, k] : [k, n], hostRandom(20, 3))],
      ]);
      cases.push([
        `batched, shared B, transposeA=${ta} transposeB=${tb}`,
        ([a, b]) => matmul(a!, b!, { transposeA: ta, transposeB: tb }),
        [inp(ta ? [2, k, m] : [2, m, k]), inp(tb ? [n, k] : [k, n], hostRandom(20, 4))],
      ]);
    }
  }
  cases.push(["shared A, batched B", ([a, b]) => matmul(a!, b!), [
    inp([3, 5]),
    inp([2, 5, 4], hostRandom(40, 5)),
  ]]);
  cases.push(["batched both", ([a, b]) => matmul(a!, b!), [
    inp([2, 3, 5]),
    inp([2, 5, 4], hostRandom(40, 6)),
  ]]);
  cases.push(["size-1 batch on one side", ([a, b]) => matmul(a!, b!), [
    inp([1, 3, 5]),
    inp([2, 5, 4], hostRandom(40, 7)),
  ]]);
  cases.push(["aligned (tiled kernel)", ([a, b]) => matmul(a!, b!), [
    inp([8, 8]),
    inp([8, 8], hostRandom(64, 8)),
  ]]);
  cases.push(["gemv row", ([a, b]) => matmul(a!, b!), [
    inp([1, 8]),
    inp([8, 4], hostRandom(32, 9)),
  ]]);
  await check(t, cases);
});

Deno.test("matmul: a size-1 batch dim broadcasts against the other side (pins a fixed bug)", async () => {
  // Was [1, 2, 4]: the output took A's batch shape whenever both had the same rank.
  assert.deepEqual(matmul(cpu.ones([1, 2, 3]), cpu.ones([3, 3, 4])).shape, [3, 2, 4]);
  assert.deepEqual(matmul(cpu.ones([3, 2, 3]), cpu.ones([1, 3, 4])).shape, [3, 2, 4]);
  assert.deepEqual(Array.from(await matmul(cpu.ones([1, 1, 2]), cpu.ones([2, 2, 1])).data()), [
    2,
    2,
  ]);
});

Deno.test("pow with a negative base and an integer exponent agrees on both backends (pins a fixed bug)", async () => {
  // WGSL pow(a, b) = exp2(b·log2 a) was NaN for a < 0 on WebGPU while the CPU twin gave a³.
  const x = new Float32Array([-2, -0.5, 0.5, 3, -1.5]);
  const [y] = await onBoth((d) => powScalar(d.tensor(x), 3));
  assertClose(y!, Array.from(x, (v) => v ** 3));
  const [z] = await onBoth((d) => powScalar(d.tensor(x), -2));
  assertClose(z!, Array.from(x, (v) => v ** -2));
  const [h] = await onBoth((d) => powScalar(d.tensor(x), 0.5));
  assert.ok(Number.isNaN(h![0]) && Number.isNaN(h![1]) && Math.abs(h![3]! - Math.sqrt(3)) < 1e-6);
});

Deno.test("native: sumTo, slice and concat equal the twin across chunk boundaries (1 and 3 threads)", async (t) => {
  const sums: [number[], number[]][] = [
    [[4096, 128], [128]], // bias gradient
    [[4096, 128], [4096, 1]], // reduced dim innermost
    [[4, 128, 256], [128, 256]], // summing batch partials
    [[2, 128, 352], [1, 352]],
    [[70001, 3], [3]],
    [[3, 70001], [3, 1]],
    [[5, 1, 7, 3, 9], [7, 1, 9]],
    [[6, 5, 2], []],
    [[300, 257], [300, 257]],
  ];
  for (const [from, to] of sums) {
    await t.step(`sumTo [${from}] → [${to}]`, async () => {
      const h = hostRandom(size(from), size(from) + 3, 10);
      await exactOnThreads((d) => sumTo(d.tensor(h, from), to), `sumTo [${from}] → [${to}]`);
    });
  }
  await t.step("slice and concat", async () => {
    const h = hostRandom(700 * 301, 2);
    for (const [s0, e0, dim] of [[3, 290, 1], [1, 300, 1], [10, 650, 0], [0, 1, 1]] as const) {
      await exactOnThreads((d) => slice(d.tensor(h, [700, 301]), s0, e0, dim), `slice ${dim}`);
    }
    const h3 = hostRandom(2 * 70001 * 3, 4);
    await exactOnThreads((d) => slice(d.tensor(h3, [2, 70001, 3]), 1, 3, 2), "slice inner");
    await exactOnThreads(
      (d) => concat([d.tensor(h, [700, 301]), d.tensor(h.subarray(0, 700 * 5), [700, 5])], 1),
      "concat dim 1",
    );
    await exactOnThreads(
      (d) => concat([d.tensor(h3, [2, 70001, 3]), d.tensor(h3, [2, 70001, 3])], 2),
      "concat inner",
    );
  });
});

Deno.test("reluGrad and relu2Grad equal the op chains they replace, bit for bit, on every device", async () => {
  const edges = [NaN, -0, 0, Infinity, -Infinity, 1e-45, -1e-45, 3e38, -2, 0.5];
  const x = hostRandom(70001, 8, 3), g = hostRandom(70001, 9, 2);
  x.set(edges);
  g.set([1, Infinity, -Infinity, NaN, 2, -3, 4, 5, 6, -0], 0);
  g.set([Infinity, NaN, -Infinity], 20);
  x.set([-1, 0, NaN], 20);
  for (const dev of [cpu, ...others]) {
    const xt = dev.tensor(x), gt = dev.tensor(g);
    const chain1 = await mul(gt, unaryRaw("step", xt)).data();
    const chain2 = await mul(gt, mulScalar(unaryRaw("relu", xt), 2)).data();
    assertClose(await binaryRaw("reluGrad", gt, xt).data(), chain1, { rtol: 0, atol: 0 }, dev.kind);
    assertClose(
      await binaryRaw("relu2Grad", gt, xt).data(),
      chain2,
      { rtol: 0, atol: 0 },
      dev.kind,
    );
  }
});
