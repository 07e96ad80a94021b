import assert from "node:assert/strict";
import {
  backward,
  type Device,
  DTypeError,
  mul,
  rmsNorm,
  ShapeError,
  sumAll,
  type Tensor,
  ValueError,
} from "../mod.ts";
import { assertClose, cpu, hostRandom, launchesDuring, onBoth, others } from "./helpers.ts";
import { gradCheck, gradOnBoth } from "./gradcheck.ts";
import { exactOnThreads, sameOnThreads } from "./native_threads.ts";

/** Direct f64 definition. */
function ref(
  x: ArrayLike<number>,
  w: ArrayLike<number> | null,
  cols: number,
  eps: number,
): number[] {
  const out: number[] = [];
  for (let r = 0; r * cols < x.length; r++) {
    let ms = 0;
    for (let j = 0; j < cols; j++) ms += x[r * cols + j]! ** 2 / cols;
    for (let j = 0; j < cols; j++) {
      out.push((x[r * cols + j]! / Math.sqrt(ms + eps)) * (w ? w[j]! : 1));
    }
  }
  return out;
}

const SHAPES = [[1], [7], [3, 1], [5, 255], [4, 257], [2, 8192], [1000, 4], [2, 3, 64], [0, 4]];

Deno.test("rmsNorm: WebGPU matches the CPU twin, the twin matches the math", async (t) => {
  for (const shape of SHAPES) {
    await t.step(`[${shape}]`, async () => {
      const n = shape.reduce((a, b) => a * b, 1), cols = shape[shape.length - 1]!;
      const h = hostRandom(n, n + 1, 3), w = hostRandom(cols, cols + 2, 2);
      for (const eps of [1e-6, 0.5]) {
        const [y] = await onBoth((d) => rmsNorm(d.tensor(h, shape), d.tensor(w, [cols]), eps), {
          rtol: 1e-5,
          atol: 1e-5,
        });
        assertClose(y!, ref(h, w, cols, eps), { rtol: 1e-5, atol: 1e-5 }, "with weight vs math");
        const [z] = await onBoth((d) => rmsNorm(d.tensor(h, shape), null, eps), {
          rtol: 1e-5,
          atol: 1e-5,
        });
        assertClose(z!, ref(h, null, cols, eps), { rtol: 1e-5, atol: 1e-5 }, "no weight vs math");
      }
    });
  }
  // A zero row stays zero (eps keeps it finite).
  const [y] = await onBoth((d) => rmsNorm(d.zeros([2, 3]), null));
  assert.deepEqual(Array.from(y!), [0, 0, 0, 0, 0, 0]);
});

Deno.test("f16 storage: rmsNorm computes in f32", async () => {
  for (const dev of [cpu, ...others]) {
    if (!dev?.backend.hasF16) continue;
    const h = hostRandom(64, 3, 100);
    const y = await rmsNorm(dev.tensor(Float16Array.from(h), [2, 32]), null).data();
    const e = ref(Float16Array.from(h), null, 32, 1e-6);
    assertClose(y, e, { rtol: 2e-3, atol: 2e-3 }, `f16 on ${dev.kind}`);
  }
});

Deno.test("rmsNorm: gradients for x and weight match finite differences, GPU matches CPU", async (t) => {
  type C = [
    string,
    (xs: Tensor[]) => Tensor,
    { data: Float32Array; shape: number[]; grad?: boolean }[],
  ];
  const cases: C[] = [
    ["x and weight", ([x, w]) => rmsNorm(x!, w!), [
      { data: hostRandom(15, 1, 2), shape: [3, 5] },
      { data: hostRandom(5, 2, 2), shape: [5] },
    ]],
    ["no weight, rank 3", ([x]) => rmsNorm(x!, null, 1e-3), [{
      data: hostRandom(48, 3, 2),
      shape: [2, 3, 8],
    }]],
    ["weight only", ([x, w]) => rmsNorm(x!, w!), [
      { data: hostRandom(12, 4, 2), shape: [3, 4], grad: false },
      { data: hostRandom(4, 5, 2), shape: [4] },
    ]],
    ["x only", ([x, w]) => rmsNorm(x!, w!), [
      { data: hostRandom(12, 6, 2), shape: [3, 4] },
      { data: hostRandom(4, 7, 2), shape: [4], grad: false },
    ]],
    ["many rows (several weight chunks)", ([x, w]) => rmsNorm(x!, w!), [
      { data: hostRandom(300 * 6, 8, 2), shape: [300, 6] },
      { data: hostRandom(6, 9, 2), shape: [6] },
    ]],
  ];
  for (const [name, fn, inputs] of cases) {
    await t.step(name, async () => {
      await gradCheck(fn, inputs, { what: name, maxPoints: 16 });
      await gradOnBoth(fn, inputs, { rtol: 1e-4, atol: 1e-5 }, name);
    });
  }
  await t.step("long rows, GPU backward vs CPU", async () => {
    await gradOnBoth(
      ([x, w]) => rmsNorm(x!, w!),
      [
        { data: hostRandom(3 * 4096, 10), shape: [3, 4096] },
        { data: hostRandom(4096, 11), shape: [4096] },
      ],
      { rtol: 1e-4, atol: 1e-5 },
      "long rows",
    );
  });
});

Deno.test("rmsNorm: bad input names the op and the shapes", () => {
  const x = cpu.zeros([2, 3]);
  assert.throws(
    () => rmsNorm(x, cpu.zeros([4])),
    (e: unknown) =>
      e instanceof ShapeError &&
      /rmsNorm: weight must be \[3\].*\[2, 3\] and \[4\]/.test(e.message),
  );
  assert.throws(() => rmsNorm(x, cpu.zeros([1, 3])), ShapeError);
  assert.throws(() => rmsNorm(cpu.zeros([2, 3], "i32"), null), DTypeError);
  assert.throws(() => rmsNorm(x, cpu.zeros([3], "i32") as never), DTypeError);
  assert.throws(() => rmsNorm(cpu.tensor(2), null), ShapeError);
  assert.throws(() => rmsNorm(x, null, -1), ValueError);
});

Deno.test("f16 storage: rmsNorm backward (x and weight) agrees on both backends", async () => {
  if (!cpu.backend.hasF16 || !others.every((d) => d.backend.hasF16)) return;
  await gradOnBoth(
    ([x, w]) => rmsNorm(x!, w!),
    [
      { data: hostRandom(70 * 24, 12), shape: [70, 24], dtype: "f16" },
      { data: hostRandom(24, 13), shape: [24], dtype: "f16" },
    ],
    { rtol: 5e-3, atol: 5e-3 },
    "f16 rmsNorm",
  );
});

Deno.test("rmsNorm: shapes past the native backend's parallel split match the twin", async () => {
  // 301 rows of 130 split across threads (rows and weight-gradient chunks), with and without
  // a weight.
  const x = { data: hostRandom(301 * 130, 22, 3), shape: [301, 130] };
  const w = { data: hostRandom(130, 23, 2), shape: [130] };
  await onBoth((d) => rmsNorm(d.tensor(x.data, x.shape), d.tensor(w.data, w.shape)));
  await gradOnBoth(([a, b]) => rmsNorm(a!, b!), [x, w], { rtol: 1e-4, atol: 1e-5 }, "split");
  await gradOnBoth(([a]) => rmsNorm(a!, null), [x], { rtol: 1e-4, atol: 1e-5 }, "split, no w");
});

Deno.test("rmsNorm: native results do not depend on the thread count", async () => {
  const h = hostRandom(301 * 130, 27, 3), wh = hostRandom(130, 28, 2);
  const fn = (d: Device) => {
    const x = d.tensor(h, [301, 130]), w = d.tensor(wh, [130]);
    x.requiresGrad = true;
    w.requiresGrad = true;
    const y = rmsNorm(x, w);
    backward(sumAll(mul(y, d.tensor(h.map((v) => v * 0.5), [301, 130]))));
    return [y, x.grad!, w.grad!];
  };
  await exactOnThreads(fn, "rmsNorm", { rtol: 1e-5, atol: 1e-6 });
  await sameOnThreads(fn, "rmsNorm");
});

Deno.test("rmsNorm: the weight gradient is one launch, matching the twin and a plain sum", async () => {
  // Rows below, at and above the 32 row splits (empty splits, a ragged last split) and columns
  // that are not a multiple of the 8 a workgroup owns. The twin sums each split in f64, so it
  // is checked against a plain f64 sum of g·x·r; every device against the twin.
  for (const [rows, cols] of [[1, 3], [5, 13], [32, 8], [33, 9], [1000, 17], [70, 130]]) {
    const xh = hostRandom(rows * cols, rows + cols, 2), gh = hostRandom(rows * cols, cols, 1);
    const wh = hostRandom(cols, 7, 1);
    const wgrad = async (d: Device) => {
      const x = d.tensor(xh, [rows, cols]), w = d.tensor(wh, [cols]);
      w.requiresGrad = true;
      backward(sumAll(mul(rmsNorm(x, w), d.tensor(gh, [rows, cols]))));
      return { gw: await w.grad!.data() };
    };
    const ref = await wgrad(cpu);
    const plain = Array.from({ length: cols }, (_, j) => {
      let s = 0;
      for (let r = 0; r < rows; r++) {
        let ss = 0;
        for (let k = 0; k < cols; k++) ss += Math.fround(xh[r * cols + k]!) ** 2;
        const rs = Math.fround(1 / Math.sqrt(Math.fround(ss) / cols + Math.fround(1e-6)));
        s += gh[r * cols + j]! * xh[r * cols + j]! * rs;
      }
      return s;
    });
    assertClose(ref.gw, plain, { rtol: 1e-5, atol: 1e-6 }, `[${rows}, ${cols}] twin vs f64 sum`);
    for (const d of others) {
      const got = await wgrad(d);
      const tol = d.kind === "native" ? { rtol: 0, atol: 0 } : { rtol: 1e-5, atol: 1e-6 };
      assertClose(got.gw, ref.gw, tol, `[${rows}, ${cols}] ${d.kind} vs twin`);
    }
  }
});

Deno.test("rmsNorm backward: two launches (x gradient, weight gradient), no separate sum", () => {
  // A fusing device defers the weight gradient to a group launch (tests/deferred_test.ts); the
  // helper's closing `stats()` launches it.
  for (const d of [cpu, ...others]) {
    const x = d.tensor(hostRandom(40 * 12, 3), [40, 12]), w = d.tensor(hostRandom(12, 4), [12]);
    x.requiresGrad = true;
    w.requiresGrad = true;
    const y = rmsNorm(x, w);
    const g = d.tensor(hostRandom(40 * 12, 5), [40, 12]);
    const ops = launchesDuring(d, () => backward(y, { grad: g }));
    const weightGrad = d.deferred ? "rmsNormWeightGradGroup" : "rmsNormWeightGrad";
    assert.deepEqual(ops, ["rmsNormBackward", weightGrad], `${d.kind}: ${ops}`);
  }
});
