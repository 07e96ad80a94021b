import assert from "node:assert/strict";
import { backward, crossEntropy, DTypeError, ShapeError, type Tensor, ValueError } from "../mod.ts";
import { assertClose, cpu, hostRandom, onBoth, others } from "./helpers.ts";
import { exactOnThreads } from "./native_threads.ts";
import { gradCheck, gradOnBoth } from "./gradcheck.ts";

function randomTargets(n: number, v: number, seed: number): Uint32Array {
  return Uint32Array.from(hostRandom(n, seed), (x) => Math.floor(((x + 1) / 2) * v) % v);
}

/** Direct f64 definition: −log softmax(x)[target]. */
function ref(x: ArrayLike<number>, t: Uint32Array, v: number): number[] {
  return Array.from(t, (target, r) => {
    const row = Array.from({ length: v }, (_, j) => x[r * v + j]!);
    const m = Math.max(...row);
    return m + Math.log(row.reduce((a, z) => a + Math.exp(z - m), 0)) - row[target]!;
  });
}

Deno.test("crossEntropy: WebGPU matches the CPU twin, the twin matches the math", async (t) => {
  for (
    const [n, v] of [[1, 1], [1, 7], [5, 255], [4, 257], [2, 8192], [1000, 4], [0, 5]] as const
  ) {
    await t.step(`N=${n} V=${v}`, async () => {
      for (const scale of [1, 40]) {
        const x = hostRandom(n * v, n + v + scale, scale), tg = randomTargets(n, v, n + 3);
        const e = ref(x, tg, v);
        const [rows] = await onBoth(
          (d) => crossEntropy(d.tensor(x, [n, v]), d.tensor(tg, [n], "u32"), { reduction: "none" }),
          { rtol: 1e-5, atol: 1e-5 },
        );
        assertClose(rows!, e, { rtol: 1e-5, atol: 1e-5 }, "rows vs math");
        if (n === 0) continue;
        const [mean] = await onBoth((d) => crossEntropy(d.tensor(x, [n, v]), tg), {
          rtol: 1e-5,
          atol: 1e-5,
        });
        assertClose(mean!, [e.reduce((a, b) => a + b, 0) / n], { rtol: 1e-5, atol: 1e-5 }, "mean");
        const [sum] = await onBoth(
          (d) => crossEntropy(d.tensor(x, [n, v]), tg, { reduction: "sum" }),
          { rtol: 1e-5, atol: 1e-4 },
        );
        assertClose(sum!, [e.reduce((a, b) => a + b, 0)], { rtol: 1e-5, atol: 1e-4 }, "sum");
      }
    });
  }
  await t.step("leading dims: logits [B, T, V], targets [B, T] or [B·T]", async () => {
    const x = hostRandom(2 * 3 * 11, 4, 3), tg = randomTargets(6, 11, 5);
    const [a] = await onBoth((d) =>
      crossEntropy(d.tensor(x, [2, 3, 11]), d.tensor(tg, [2, 3], "u32"), { reduction: "none" })
    );
    assertClose(a!, ref(x, tg, 11));
    const y = crossEntropy(cpu.tensor(x, [2, 3, 11]), cpu.tensor(tg, [6], "u32"), {
      reduction: "none",
    });
    assert.deepEqual(y.shape, [2, 3]);
  });
});

Deno.test("crossEntropy: huge logits stay finite; a bad device target makes its row NaN", async () => {
  const x = new Float32Array([1e30, 0, -1e30, 5e4, 5e4, 5e4]);
  const [l] = await onBoth((d) =>
    crossEntropy(d.tensor(x, [2, 3]), d.tensor(new Uint32Array([0, 2]), [2], "u32"), {
      reduction: "none",
    })
  );
  assertClose(l!, [0, Math.log(3)]);
  const [bad] = await onBoth((d) =>
    crossEntropy(d.tensor(x, [2, 3]), d.tensor(new Uint32Array([1, 3]), [2], "u32"), {
      reduction: "none",
    })
  );
  assert.equal(bad![0], Math.fround(1e30));
  assert.ok(Number.isNaN(bad![1]));
});

Deno.test("crossEntropy: gradients match finite differences, GPU backward matches CPU", async (t) => {
  const tg = new Uint32Array([2, 0, 4, 4]);
  const x = { data: hostRandom(4 * 5, 3, 2), shape: [4, 5] };
  const cases: [string, (xs: Tensor[]) => Tensor, typeof x][] = [
    ["mean", ([a]) => crossEntropy(a!, tg), x],
    ["sum", ([a]) => crossEntropy(a!, tg, { reduction: "sum" }), x],
    ["none", ([a]) => crossEntropy(a!, tg, { reduction: "none" }), x],
    ["device targets, rank 3", ([a]) => crossEntropy(a!, a!.device.tensor(tg, [2, 2], "u32")), {
      data: hostRandom(20, 4, 2),
      shape: [2, 2, 5],
    }],
    ["long rows", ([a]) => crossEntropy(a!, [7, 999]), {
      data: hostRandom(2 * 1000, 5, 3),
      shape: [2, 1000],
    }],
  ];
  for (const [name, fn, inp] of cases) {
    await t.step(name, async () => {
      await gradCheck(fn, [inp], { what: name, maxPoints: 20 });
      await gradOnBoth(fn, [inp], { rtol: 1e-4, atol: 1e-6 }, name);
    });
  }
  await t.step("the fused gradient is (softmax − onehot)/N", async () => {
    const { backward } = await import("../mod.ts");
    const l = cpu.tensor(x.data, x.shape);
    l.requiresGrad = true;
    backward(crossEntropy(l, tg));
    const g = await l.grad!.data();
    for (let r = 0; r < 4; r++) {
      const row = Array.from(x.data.subarray(r * 5, r * 5 + 5));
      const z = row.reduce((a, v) => a + Math.exp(v), 0);
      assertClose(
        g.subarray(r * 5, r * 5 + 5),
        row.map((v, j) => (Math.exp(v) / z - (j === tg[r] ? 1 : 0)) / 4),
      );
    }
  });
});

Deno.test("f16 logits: loss computed in f32", async () => {
  for (const dev of [cpu, ...others]) {
    if (!dev.backend.hasF16) continue;
    const l = await crossEntropy(
      dev.tensor(new Float16Array([1000, 1000, 999, 998]), [1, 4]),
      [2],
      { reduction: "none" },
    ).data();
    const e = ref([1000, 1000, 999, 998], new Uint32Array([2]), 4);
    assertClose(l, e, { rtol: 2e-3, atol: 2e-3 }, `f16 on ${dev.kind}`);
  }
});

Deno.test("crossEntropy: bad input names the op and the shapes", () => {
  const x = cpu.zeros([3, 4]);
  assert.throws(
    () => crossEntropy(x, [0, 4, 1]),
    (e: unknown) =>
      e instanceof ValueError &&
      /crossEntropy: id 4 at position 1 is outside \[0, 4\)/.test(e.message),
  );
  assert.throws(
    () => crossEntropy(x, [0, 1]),
    (e: unknown) =>
      e instanceof ShapeError &&
      /crossEntropy: needs 3 targets.*\[3, 4\] and \[2\]/.test(e.message),
  );
  assert.throws(() => crossEntropy(x, cpu.zeros([3], "i32") as never), DTypeError);
  assert.throws(() => crossEntropy(x, cpu.zeros([4], "u32")), ShapeError);
  assert.throws(() => crossEntropy(cpu.zeros([3, 4], "i32") as never, [0, 0, 0]), DTypeError);
  assert.throws(() => crossEntropy(x, [0, 0, 0], { reduction: "avg" as never }), ValueError);
});

Deno.test("f16 storage: crossEntropy backward agrees on both backends", async () => {
  if (!cpu.backend.hasF16 || others.some((d) => !d.backend.hasF16)) return;
  await gradOnBoth(
    ([a]) => crossEntropy(a!, [1, 0, 6]),
    [
      { data: hostRandom(3 * 7, 15, 3), shape: [3, 7], dtype: "f16" },
    ],
    { rtol: 5e-3, atol: 5e-3 },
    "f16 crossEntropy",
  );
});

/** About one f32 ulp: the native kernel's fast exponential is within 1e-8 of `Math.exp`. */
const ULP = { rtol: 2.5e-7, atol: 1e-12 };

Deno.test("native: crossEntropy and its backward agree with the twin to an f32 ulp across the row split (1 and 3 threads)", async (t) => {
  for (const [n, v] of [[4096, 256], [70001, 2], [3, 30000], [257, 129], [1, 1]] as const) {
    await t.step(`N=${n} V=${v}`, async () => {
      const x = hostRandom(n * v, n + v, 8), tg = randomTargets(n, v, n);
      // Awkward rows: all −∞ but the target, one +∞, a NaN, a huge spread.
      if (n > 4) {
        x.fill(-Infinity, 0, v);
        x[tg[0]!] = 0;
        x[v + (tg[1]! + 1) % v] = Infinity;
        x[2 * v] = NaN;
        x[3 * v] = 80;
      }
      for (const reduction of ["none", "mean"] as const) {
        await exactOnThreads(
          (d) => crossEntropy(d.tensor(x, [n, v]), d.tensor(tg, [n], "u32"), { reduction }),
          `loss (${reduction})`,
          ULP,
        );
      }
      await exactOnThreads(
        (d) => {
          const l = d.tensor(x, [n, v]);
          l.requiresGrad = true;
          backward(crossEntropy(l, d.tensor(tg, [n], "u32")));
          return l.grad!;
        },
        "gradient",
        ULP,
      );
    });
  }
});
