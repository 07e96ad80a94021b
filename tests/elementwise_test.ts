import assert from "node:assert/strict";
import { add, addScalar, cast, DTypeError, rdivScalar, ShapeError, where } from "../mod.ts";
import { binaryRaw, unaryRaw } from "../src/ops/elementwise.ts";
import {
  BINARY,
  type BinaryOp,
  scalarDispatch,
  UNARY,
  type UnaryOp,
} from "../kernels/elementwise.ts";
import { assertClose, cpu, hostRandom, onBoth, others } from "./helpers.ts";
import { exactOnThreads } from "./native_threads.ts";

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
  for (const dev of [cpu, ...others]) {
    if (!dev.backend.hasF16) continue;
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

/** Sizes around the native parallel split (64Ki elements) and odd ones. */
const SPLIT_SIZES = [1, 17, 65535, 65536, 65537, 200003];

/** Random values with the awkward ones first: NaN, ±0, ±∞, subnormals, the f32 extremes. */
function edgy(n: number, seed: number, scale = 4): Float32Array {
  const h = hostRandom(n, seed, scale);
  const edges = [NaN, -0, 0, Infinity, -Infinity, 1e-45, -1e-45, 3.4e38, -3.4e38, 1, -1];
  for (let i = 0; i < Math.min(n, edges.length); i++) h[i] = edges[i]!;
  return h;
}

Deno.test("native: unary kernels equal the twin bit for bit, edge values, 1 and 3 threads", async (t) => {
  for (const op of Object.keys(UNARY) as UnaryOp[]) {
    await t.step(op, async () => {
      for (const n of SPLIT_SIZES) {
        const h = edgy(n, n + 5);
        await exactOnThreads((d) => unaryRaw(op, d.tensor(h)), `${op} n=${n}`);
      }
    });
  }
});

Deno.test("native: relu, relu2 and step take the sign from the bits: NaN and −0 give 0", async () => {
  const x = new Float32Array([NaN, -0, 0, -1e-45, 1e-45, -Infinity, Infinity, -2, 3]);
  for (const dev of [cpu, ...others]) {
    const got = (op: UnaryOp) => unaryRaw(op, dev.tensor(x)).data();
    const tiny = Math.fround(1e-45);
    assert.deepEqual([...await got("relu")], [0, 0, 0, 0, tiny, 0, Infinity, 0, 3], dev.kind);
    assert.deepEqual([...await got("relu2")], [0, 0, 0, 0, 0, 0, Infinity, 0, 9], dev.kind);
    assert.deepEqual([...await got("step")], [0, 0, 0, 0, 1, 0, 1, 0, 1], dev.kind);
  }
});

Deno.test("native: broadcasting binary kernels equal the twin across chunk boundaries", async (t) => {
  const cases: [number[], number[]][] = [
    [[70001], [70001]],
    [[70001], [1]],
    [[1], [70001]],
    [[300, 257], [257]],
    [[300, 257], [300, 1]],
    [[3, 1, 40000], [2, 1]],
    [[65, 1, 33], [1, 64, 33]],
    [[2, 1, 3, 1, 2], [4, 1, 5, 2]],
    [[7, 1], [1, 9]],
  ];
  for (const op of Object.keys(BINARY) as BinaryOp[]) {
    await t.step(op, async () => {
      for (const [sa, sb] of cases) {
        const na = sa.reduce((a, b) => a * b, 1), nb = sb.reduce((a, b) => a * b, 1);
        const ha = edgy(na, 21), hb = edgy(nb, 22).reverse();
        await exactOnThreads(
          (d) => binaryRaw(op, d.tensor(ha, sa), d.tensor(hb, sb)),
          `${op} [${sa}] [${sb}]`,
        );
      }
    });
  }
});

Deno.test("native: scalar-form kernels (every op, both operand orders) equal the twin", async () => {
  for (const op of Object.keys(BINARY) as BinaryOp[]) {
    for (const reversed of [false, true]) {
      for (const n of [5, 70001]) {
        for (const s of [1.7, 0, -3]) {
          const h = edgy(n, n + 1);
          await exactOnThreads((d) => {
            const x = d.tensor(h), out = d.empty([n], "f32");
            d.run(scalarDispatch(op, "f32", reversed, s, x.storage("t"), out.storage("t"), n));
            return out;
          }, `${op}Scalar reversed=${reversed} n=${n} s=${s}`);
        }
      }
    }
  }
});

Deno.test("native: where and cast equal the twin across chunk boundaries", async () => {
  const n = 70001;
  const h = edgy(n, 3, 1e10), h2 = hostRandom(n, 4);
  const full = new Uint32Array(n).map((_, i) => (i * 7) % 3);
  await exactOnThreads((d) => where(d.tensor(full), d.tensor(h), d.tensor(h2)), "where full");
  const rowFlag = new Float32Array(n).map((_, i) => (i % 5 === 0 ? -0 : i % 2));
  await exactOnThreads(
    (d) => where(d.tensor(rowFlag, [n, 1]), d.tensor(h, [n, 1]), d.tensor(h2, [n, 1])),
    "where per row",
  );
  await exactOnThreads(
    (d) =>
      where(
        d.tensor(new Int32Array([1, 0, -1]), [3]),
        d.tensor(h.subarray(0, 69999), [23333, 3]),
        d.tensor(h2.subarray(0, 69999), [23333, 3]),
      ),
    "where per column",
  );
  await exactOnThreads(
    (d) =>
      where(
        d.tensor(new Float32Array(1000).map((_, i) => i % 3), [1000, 1]),
        d.tensor(h.subarray(0, 70000), [1000, 70]),
        d.tensor(h2.subarray(0, 70000), [1000, 70]),
      ),
    "where row blocks",
  );
  const big = h.map((v, i) => (i % 4 === 0 ? v : v * 1e-8));
  for (const to of ["i32", "u32", "f32"] as const) {
    await exactOnThreads((d) => cast(d.tensor(big), to), `cast f32→${to}`);
  }
  const ints = new Int32Array(n).map((_, i) => (i * 2654435761) | 0);
  for (const to of ["f32", "u32", "i32"] as const) {
    await exactOnThreads((d) => cast(d.tensor(ints), to), `cast i32→${to}`);
    await exactOnThreads((d) => cast(d.tensor(new Uint32Array(ints.buffer)), to), `cast u32→${to}`);
  }
});
