import assert from "node:assert/strict";
import { add, addScalar, cast, DTypeError, rdivScalar, ShapeError, where } from "../mod.ts";
import { binaryRaw, unaryRaw } from "../src/ops/elementwise.ts";
import { BINARY, type BinaryOp, UNARY, type UnaryOp } from "../kernels/elementwise.ts";
import { assertClose, cpu, gpu, hostRandom, onBoth } from "./helpers.ts";

const SIZES = [1, 7, 255, 256, 257, 1000, 8192 * 3];

Deno.test("unary ops: WebGPU matches the CPU twin", async (t) => {
  for (const op of Object.keys(UNARY) as UnaryOp[]) {
    await t.step(op, async () => {
      for (const n of SIZES) {
        const positive = op === "log" || op === "sqrt" || op === "rsqrt";
        const h = hostRandom(n, n + 3, 4).map((v) => (positive ? Math.abs(v) + 0.01 : v));
        await onBoth((d) => unaryRaw(op, d.tensor(h)), { rtol: 2e-5, atol: 1e-5 }, `${op} n=${n}`);
      }
    });
  }
});

Deno.test("unary ops match their math definitions on the CPU", async () => {
  const x = cpu.tensor([-2, -0.5, 0, 0.5, 3]);
  assert.deepEqual([...await unaryRaw("relu2", x).data()], [0, 0, 0, 0.25, 9]);
  assert.deepEqual([...await unaryRaw("relu", x).data()], [0, 0, 0, 0.5, 3]);
  assertClose(
    await unaryRaw("silu", x).data(),
    [-2, -0.5, 0, 0.5, 3].map((v) => v / (1 + Math.exp(-v))),
  );
  assertClose(await unaryRaw("tanh", cpu.tensor([-100, 100])).data(), [-1, 1]);
});

Deno.test("binary ops with broadcasting: WebGPU matches the CPU twin", async (t) => {
  const cases: [number[], number[]][] = [
    [[1], [1]],
    [[257], [257]],
    [[4, 5], [5]],
    [[4, 5], [4, 1]],
    [[3, 1, 6], [1, 5, 1]],
    [[2, 3, 4, 5], [3, 1, 5]],
    [[], [7]],
    [[8192], [1]],
    [[2, 1, 3, 1, 2], [4, 1, 5, 2]],
  ];
  for (const op of Object.keys(BINARY) as BinaryOp[]) {
    await t.step(op, async () => {
      for (const [sa, sb] of cases) {
        const na = sa.reduce((a, b) => a * b, 1), nb = sb.reduce((a, b) => a * b, 1);
        const ha = hostRandom(na, 11, 3), hb = hostRandom(nb, 12, 3);
        if (op === "pow") ha.forEach((v, i) => (ha[i] = Math.abs(v) + 0.1));
        if (op === "div") hb.forEach((v, i) => (hb[i] = v + (v >= 0 ? 0.5 : -0.5)));
        await onBoth((d) => binaryRaw(op, d.tensor(ha, sa), d.tensor(hb, sb)), {
          rtol: 1e-5,
          atol: 1e-5,
        }, `${op} [${sa}] [${sb}]`);
      }
    });
  }
});

Deno.test("integer binary ops agree on both backends", async () => {
  const a = new Int32Array([7, -7, 100, 0, -3]), b = new Int32Array([2, 2, -7, 5, 0]);
  for (const op of ["add", "sub", "mul", "div", "maximum", "minimum"] as BinaryOp[]) {
    await onBoth((d) => binaryRaw(op, d.tensor(a), d.tensor(b)), { atol: 0, rtol: 0 }, `i32 ${op}`);
  }
  const q = await binaryRaw("div", cpu.tensor(a), cpu.tensor(b)).data();
  assert.deepEqual([...q], [3, -3, -14, 0, -3]); // truncation; x/0 = x as WGSL defines it
});

Deno.test("scalar forms, where and cast agree on both backends", async () => {
  const h = hostRandom(1000, 5, 2);
  await onBoth((d) => addScalar(d.tensor(h), 1.5));
  await onBoth((d) => rdivScalar(d.tensor(h.map((v) => v + 3)), 2));
  const cond = new Uint32Array(1000).map((_, i) => i % 3);
  await onBoth((d) => where(d.tensor(cond), d.tensor(h), d.zeros([1000])));
  await onBoth((d) =>
    where(d.tensor(new Float32Array([1, 0])), d.tensor(h, [500, 2]), d.ones([500, 2]))
  );
  await onBoth((d) =>
    where(
      d.tensor(new Float32Array(500).map((_, i) => i % 2), [500, 1]),
      d.tensor(h, [500, 2]),
      d.ones([500, 2]),
    ).reshape([1000])
  );
  for (const to of ["i32", "u32", "f32"] as const) {
    await onBoth(
      (d) => cast(d.tensor(h.map((v) => v * 100)), to),
      { atol: 0, rtol: 0 },
      `cast f32→${to}`,
    );
  }
  await onBoth((d) => cast(d.tensor(new Int32Array([-5, 0, 123456])), "f32"));
});

Deno.test("f16 storage round-trips and computes in f32", async () => {
  for (const dev of [cpu, gpu]) {
    if (!dev || !dev.backend.hasF16) continue;
    const x = dev.tensor(new Float16Array([1, 2.5, -3, 65504]));
    assert.equal(x.dtype, "f16");
    assert.deepEqual([...await x.data()], [1, 2.5, -3, 65504]);
    const y = add(x, x);
    assert.deepEqual([...await y.data()], [2, 5, -6, Infinity]);
    assert.deepEqual([...await cast(cast(dev.tensor([0.1]), "f16"), "f32").data()], [
      Math.fround(new Float16Array([0.1])[0]!),
    ]);
  }
});

Deno.test("bad input: shape and dtype errors name the op and the shapes", () => {
  const a = cpu.tensor(new Float32Array(6), [2, 3]);
  const b = cpu.tensor(new Float32Array(8), [2, 4]);
  assert.throws(
    () => add(a, b),
    (e: unknown) => e instanceof ShapeError && /add.*\[2, 3\].*\[2, 4\]/.test(e.message),
  );
  const i = cpu.tensor(new Int32Array(6), [2, 3]);
  assert.throws(
    () => add(a, i as never),
    (e: unknown) => e instanceof DTypeError && /add: dtypes differ: f32/.test(e.message),
  );
  assert.throws(() => unaryRaw("exp", i), DTypeError);
  assert.throws(() => cpu.tensor([1, 2, 3], [2, 2]), ShapeError);
});
