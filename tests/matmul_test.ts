import assert from "node:assert/strict";
import { DTypeError, matmul, openDevice, ShapeError, ValueError } from "../mod.ts";
import { matmulDispatch, type MatmulVariant, tiled16Fits } from "../kernels/matmul.ts";
import { cpu, gpu, hostRandom, onBoth } from "./helpers.ts";

function naive(a: Float32Array, b: Float32Array, m: number, k: number, n: number): number[] {
  const c: number[] = [];
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += a[i * k + t]! * b[t * n + j]!;
      c.push(s);
    }
  }
  return c;
}

Deno.test("matmul CPU twin matches a naive triple loop", async () => {
  const a = hostRandom(5 * 7, 1), b = hostRandom(7 * 3, 2);
  const c = await matmul(cpu.tensor(a, [5, 7]), cpu.tensor(b, [7, 3])).data();
  naive(a, b, 5, 7, 3).forEach((v, i) => assert.ok(Math.abs(c[i]! - v) < 1e-5));
});

Deno.test("matmul: every kernel and transpose matches the CPU twin", async (t) => {
  const shapes: [number, number, number][] = [
    [1, 1, 1],
    [1, 64, 4096],
    [1, 8, 12],
    [3, 5, 7],
    [8, 16, 8],
    [17, 33, 65],
    [64, 64, 64],
    [70, 128, 72],
    [128, 12, 256],
    [48, 32, 80], // 16-blocks that do not fill a 128 × 128 workgroup
    [5, 0, 4],
  ];
  for (const variant of ["auto", "general", "tiled", "tiled16", "gemv"] as const) {
    for (const ta of [false, true]) {
      for (const tb of [false, true]) {
        await t.step(`${variant} transposeA=${ta} transposeB=${tb}`, async () => {
          for (const [m, k, n] of shapes) {
            if (
              variant === "tiled" &&
              !(k % 4 === 0 && (ta ? m % 8 === 0 : true) && (tb ? true : n % 8 === 0))
            ) continue;
            if (
              variant === "tiled16" && !tiled16Fits({ m, n, k, transposeA: ta, transposeB: tb })
            ) {
              continue;
            }
            if (variant === "gemv" && !(m === 1 && !ta && k % 4 === 0 && (tb || n % 4 === 0))) {
              continue;
            }
            const ha = hostRandom(m * k, m + k), hb = hostRandom(k * n, k + n);
            await onBoth(
              (d) =>
                matmul(d.tensor(ha, ta ? [k, m] : [m, k]), d.tensor(hb, tb ? [n, k] : [k, n]), {
                  transposeA: ta,
                  transposeB: tb,
                  ...(variant === "auto" ? {} : { variant: variant as MatmulVariant }),
                }),
              { rtol: 1e-4, atol: 1e-4 },
              `[${m}x${k}]·[${k}x${n}]`,
            );
          }
        });
      }
    }
  }
});

Deno.test("matmul: batched and broadcast batch dims", async () => {
  const a = hostRandom(3 * 2 * 16 * 8, 3), w = hostRandom(8 * 24, 4);
  await onBoth((d) => matmul(d.tensor(a, [3, 2, 16, 8]), d.tensor(w, [8, 24])), {
    rtol: 1e-4,
    atol: 1e-4,
  });
  await onBoth((d) => matmul(d.tensor(w, [24, 8]), d.tensor(a, [6, 8, 16])), {
    rtol: 1e-4,
    atol: 1e-4,
  });
  const b = hostRandom(6 * 16 * 5, 5);
  await onBoth(
    (d) => matmul(d.tensor(a, [6, 16, 8]), d.tensor(b, [6, 16, 5]), { transposeA: true }),
    { rtol: 1e-4, atol: 1e-4 },
  );
});

Deno.test("matmul: f16 storage accumulates in f32", async () => {
  for (const dev of [cpu, gpu]) {
    if (!dev?.backend.hasF16) continue;
    const k = 256;
    const a = dev.tensor(new Float16Array(k).fill(0.1), [1, k]);
    const b = dev.tensor(new Float16Array(k * 8).fill(1), [k, 8]);
    const c = await matmul(a, b).data();
    // 256 × f16(0.1): an f16 accumulator would stall far from the exact 25.59; f32 gets it.
    assert.ok(Math.abs(c[0]! - 256 * new Float16Array([0.1])[0]!) < 0.05, `got ${c[0]}`);
  }
});

Deno.test("matmul: bad input", () => {
  const a = cpu.zeros([2, 3]), b = cpu.zeros([4, 5]);
  assert.throws(
    () => matmul(a, b),
    (e: unknown) =>
      e instanceof ShapeError &&
      /matmul: inner dims differ: 3 vs 4.*\[2, 3\].*\[4, 5\]/.test(e.message),
  );
  assert.throws(() => matmul(cpu.zeros([3]), b), ShapeError);
  assert.throws(() => matmul(cpu.zeros([2, 4], "i32"), cpu.zeros([4, 2], "i32")), DTypeError);
  assert.throws(() => matmul(cpu.zeros([2, 2, 4]), cpu.zeros([3, 4, 2])), ShapeError);
});

Deno.test("a tensor over maxStorageBufferBindingSize is a DeviceError before any dispatch", async () => {
  if (!gpu) return;
  const max = gpu.backend.limits.maxStorageBufferBindingSize;
  const before = gpu.stats().dispatches;
  assert.throws(
    () => gpu!.zeros([Math.ceil(max / 4) + 16]),
    /DeviceError|maxStorageBufferBindingSize/,
  );
  assert.equal(gpu.stats().dispatches, before);
  // The device still works afterwards.
  assert.deepEqual([...await gpu.ones([2]).data()], [1, 1]);
  void openDevice;
});

Deno.test("matmul: split-K for weight-gradient shapes (Aᵀ·B, small output, long K) matches", async () => {
  const a = hostRandom(4096 * 64, 21), b = hostRandom(4096 * 40, 22);
  const [split] = await onBoth(
    (d) => matmul(d.tensor(a, [4096, 64]), d.tensor(b, [4096, 40]), { transposeA: true }),
    { rtol: 1e-4, atol: 1e-4 },
  );
  // Forcing a kernel disables the split: same numbers.
  const [plain] = await onBoth(
    (d) =>
      matmul(d.tensor(a, [4096, 64]), d.tensor(b, [4096, 40]), {
        transposeA: true,
        variant: "general",
      }),
    { rtol: 1e-4, atol: 1e-4 },
  );
  for (let i = 0; i < plain!.length; i++) assert.ok(Math.abs(split![i]! - plain![i]!) < 1e-3);
});

Deno.test("matmul tiled16: the tiled kernel's bits with a 16 × 16 block; offered to autotune", async () => {
  // The same FMA order per output as `tiled`, so an autotuned choice between them changes no bit.
  if (gpu) {
    for (
      const [m, k, n, ta, tb] of [
        [64, 64, 64, false, false],
        [48, 32, 80, false, true],
        [80, 128, 48, true, false],
        [32, 4096, 16, true, false], // a weight gradient's shape
        [4096, 128, 352, false, false],
      ] as const
    ) {
      const ha = hostRandom(m * k, 7), hb = hostRandom(k * n, 8);
      const run = (variant: MatmulVariant) =>
        matmul(gpu!.tensor(ha, ta ? [k, m] : [m, k]), gpu!.tensor(hb, tb ? [n, k] : [k, n]), {
          transposeA: ta,
          transposeB: tb,
          variant,
        }).data();
      assert.deepEqual(await run("tiled16"), await run("tiled"), `${m}×${k}·${k}×${n}`);
    }
  }
  // Forced where its vec4 loads cannot run: a typed error, not wrong numbers.
  assert.throws(
    () => matmul(cpu.zeros([8, 8]), cpu.zeros([8, 24]), { variant: "tiled16" }),
    (e: unknown) =>
      e instanceof ValueError &&
      /^matmul: the tiled16 kernel cannot run m=8 n=24 k=8/.test(e.message),
  );
  assert.throws(
    () => matmul(cpu.zeros([8, 6]), cpu.zeros([6, 8]), { variant: "tiled" }),
    (e: unknown) => e instanceof ValueError && /the tiled kernel cannot run/.test(e.message),
  );
  const p = {
    m: 4096,
    n: 352,
    k: 128,
    batch: 1,
    strideA: 0,
    strideB: 0,
    transposeA: false,
    transposeB: false,
    dtype: "f32" as const,
  };
  const none = null as never;
  assert.deepEqual(matmulDispatch(p, none, none, none).tune!.variants.slice(0, 2), [
    "tiled",
    "tiled16",
  ]);
  assert.ok(!matmulDispatch({ ...p, n: 344 }, none, none, none).tune!.variants.includes("tiled16"));
});
