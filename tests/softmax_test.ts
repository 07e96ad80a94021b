import assert from "node:assert/strict";
import { DTypeError, logSoftmax, ShapeError, softmax, type Tensor } from "../mod.ts";
import { assertClose, cpu, hostRandom, onBoth, others } from "./helpers.ts";
import { gradCheck, gradOnBoth } from "./gradcheck.ts";

/** Direct f64 definition: mask (causal), subtract the max, exponentiate, normalise. */
function ref(
  x: ArrayLike<number>,
  cols: number,
  opts: { causal?: boolean; log?: boolean } = {},
): number[] {
  const out: number[] = [];
  for (let r = 0; r * cols < x.length; r++) {
    const i = r % cols;
    const row = Array.from({ length: cols }, (_, j) => x[r * cols + j]!);
    const valid = row.map((_, j) => !opts.causal || j <= i);
    const m = Math.max(...row.filter((_, j) => valid[j]));
    const z = row.reduce((a, v, j) => a + (valid[j] ? Math.exp(v - m) : 0), 0);
    for (let j = 0; j < cols; j++) {
      if (opts.log) out.push(valid[j] ? row[j]! - m - Math.log(z) : -Infinity);
      else out.push(valid[j] ? Math.exp(row[j]! - m) / z : 0);
    }
  }
  return out;
}

const SHAPES = [[1], [7], [3, 1], [5, 255], [4, 257], [2, 8192], [1000, 4], [2, 3, 17], [0, 3]];

Deno.test("softmax / logSoftmax: WebGPU matches the CPU twin, the twin matches the math", async (t) => {
  for (const shape of SHAPES) {
    await t.step(`[${shape}]`, async () => {
      const n = shape.reduce((a, b) => a * b, 1), cols = shape[shape.length - 1]!;
      for (const scale of [1, 30]) {
        const h = hostRandom(n, n + scale, scale);
        const [p] = await onBoth(
          (d) => softmax(d.tensor(h, shape)),
          { rtol: 1e-5, atol: 1e-6 },
          `softmax [${shape}]`,
        );
        assertClose(p!, ref(h, cols), { rtol: 1e-5, atol: 1e-7 }, "softmax vs math");
        const [l] = await onBoth(
          (d) => logSoftmax(d.tensor(h, shape)),
          { rtol: 1e-5, atol: 1e-5 },
          `logSoftmax [${shape}]`,
        );
        assertClose(
          l!,
          ref(h, cols, { log: true }),
          { rtol: 1e-5, atol: 1e-5 },
          "logSoftmax vs math",
        );
      }
    });
  }
});

Deno.test("causal softmax masks keys after the query, fused", async (t) => {
  for (const shape of [[1, 1], [4, 4], [2, 3, 17, 17], [1, 64, 64], [2, 300, 300]]) {
    await t.step(`[${shape}]`, async () => {
      const n = shape.reduce((a, b) => a * b, 1), T = shape[shape.length - 1]!;
      const h = hostRandom(n, T, 4);
      const [p] = await onBoth((d) => softmax(d.tensor(h, shape), { causal: true }), {
        rtol: 1e-5,
        atol: 1e-6,
      });
      const e = ref(h, T, { causal: true });
      assertClose(p!, e, { rtol: 1e-5, atol: 1e-7 }, "causal vs math");
      // Masked entries are exactly zero, whatever the scores held.
      for (let i = 0; i < n; i++) if (e[i] === 0) assert.equal(p![i], 0);
    });
  }
  // Masked scores may hold NaN or Infinity: they never enter the max or the sum.
  const s = new Float32Array([1, NaN, Infinity, 2, 3, NaN, 0, 0, 0]);
  const [p] = await onBoth((d) => softmax(d.tensor(s, [3, 3]), { causal: true }), {
    rtol: 1e-6,
    atol: 1e-7,
  });
  assertClose(p!, [1, 0, 0, 1 / (1 + Math.E), Math.E / (1 + Math.E), 0, 1 / 3, 1 / 3, 1 / 3]);
});

Deno.test("softmax edge values: huge logits, -Infinity, NaN", async () => {
  const x = new Float32Array([
    3e38,
    3e38,
    -3e38,
    -Infinity,
    0,
    1,
    -Infinity,
    -Infinity,
    -Infinity,
    1,
    NaN,
    2,
  ]);
  const [p] = await onBoth((d) => softmax(d.tensor(x, [4, 3])), { rtol: 1e-6, atol: 1e-7 });
  assertClose(Array.from(p!).slice(0, 6), [
    0.5,
    0.5,
    0,
    0,
    1 / (1 + Math.E),
    Math.E / (1 + Math.E),
  ]);
  assert.ok([6, 7, 8].every((i) => Number.isNaN(p![i]!)), "a fully -inf row is NaN (PyTorch)");
  assert.ok([9, 10, 11].every((i) => Number.isNaN(p![i]!)), "a NaN poisons its row");
  const [l] = await onBoth((d) => logSoftmax(d.tensor(x, [4, 3])), { rtol: 1e-6, atol: 1e-6 });
  assert.equal(l![3], -Infinity);
  assertClose([l![4]!, l![5]!], [-Math.log1p(Math.E), 1 - Math.log1p(Math.E)]);
});

Deno.test("f16 storage: softmax computes in f32", async () => {
  for (const dev of [cpu, ...others]) {
    if (!dev?.backend.hasF16) continue;
    const x = dev.tensor(new Float16Array([1000, 1000, 999]), [1, 3]);
    const p = await softmax(x).data();
    const e = ref([1000, 1000, 999], 3);
    assertClose(p, e, { rtol: 1e-3, atol: 1e-3 }, `f16 on ${dev.kind}`);
  }
});

Deno.test("softmax: gradients match finite differences, GPU backward matches CPU", async (t) => {
  const x = { data: hostRandom(4 * 6, 3, 2), shape: [4, 6] };
  const sq = { data: hostRandom(2 * 5 * 5, 4, 2), shape: [2, 5, 5] };
  const cases: [string, (xs: Tensor[]) => Tensor, typeof x][] = [
    ["softmax", ([a]) => softmax(a!), x],
    ["softmax causal", ([a]) => softmax(a!, { causal: true }), sq],
    ["logSoftmax", ([a]) => logSoftmax(a!), x],
    ["softmax long row", ([a]) => softmax(a!), {
      data: hostRandom(2 * 600, 5, 3),
      shape: [2, 600],
    }],
  ];
  for (const [name, fn, inp] of cases) {
    await t.step(name, async () => {
      await gradCheck(fn, [inp], { what: name, maxPoints: 24, eps: 1e-2 });
      await gradOnBoth(fn, [inp], { rtol: 1e-4, atol: 1e-6 }, name);
    });
  }
});

Deno.test("softmax: bad input names the op and the shape", () => {
  assert.throws(
    () => softmax(cpu.zeros([2, 3], "i32")),
    (e: unknown) => e instanceof DTypeError && /^softmax: needs a float/.test(e.message),
  );
  assert.throws(
    () => logSoftmax(cpu.tensor(1)),
    (e: unknown) => e instanceof ShapeError && /^logSoftmax/.test(e.message),
  );
  assert.throws(
    () => softmax(cpu.zeros([2, 3, 4]), { causal: true }),
    (e: unknown) => e instanceof ShapeError && /softmax: causal .*\[2, 3, 4\]/.test(e.message),
  );
  assert.throws(() => softmax(cpu.zeros([4]), { causal: true }), ShapeError);
});

Deno.test("logSoftmax keeps small log-probabilities next to a large max", async () => {
  // (x − max) − log Σ, not x − (max + log Σ): the latter rounds log 3 to the ulp of 5e4.
  const [l] = await onBoth((d) => logSoftmax(d.tensor([5e4, 5e4, 5e4])), {
    rtol: 1e-6,
    atol: 1e-7,
  });
  assertClose(l!, [-Math.log(3), -Math.log(3), -Math.log(3)], { rtol: 1e-6, atol: 1e-7 });
});

Deno.test("f16 storage: softmax and logSoftmax backward agree on both backends", async () => {
  if (!cpu.backend.hasF16 || !others.every((d) => d.backend.hasF16)) return;
  const inp = [{ data: hostRandom(6 * 6, 14, 2), shape: [6, 6], dtype: "f16" as const }];
  await gradOnBoth(
    ([a]) => softmax(a!, { causal: true }),
    inp,
    { rtol: 5e-3, atol: 5e-3 },
    "f16 softmax",
  );
  await gradOnBoth(([a]) => logSoftmax(a!), inp, { rtol: 5e-3, atol: 5e-3 }, "f16 logSoftmax");
});

Deno.test("softmax: shapes past the native backend's parallel split match the twin", async () => {
  // Enough rows that the native kernel splits them across threads, odd widths, and a causal
  // batch whose split falls inside a T×T block.
  const cases: [number[], boolean][] = [[[301, 130], false], [[3, 2, 131, 131], true]];
  for (const [shape, causal] of cases) {
    const h = hostRandom(shape.reduce((a, b) => a * b), 21, 4);
    await onBoth((d) => softmax(d.tensor(h, shape), { causal }), {}, `softmax ${shape}`);
    await onBoth((d) => logSoftmax(d.tensor(h, shape)), {}, `logSoftmax ${shape}`);
    await gradOnBoth(
      ([a]) => softmax(a!, { causal }),
      [{ data: h, shape }],
      { rtol: 1e-4, atol: 1e-6 },
      `softmax grad ${shape}`,
    );
    await gradOnBoth(([a]) => logSoftmax(a!), [{ data: h, shape }], {
      rtol: 1e-4,
      atol: 1e-6,
    }, `logSoftmax grad ${shape}`);
  }
});
