import assert from "node:assert/strict";
import {
  DTypeError,
  matmul,
  quantizeActivations,
  quantizeActivationsSte,
  quantizeWeights,
  quantizeWeightsSte,
  ShapeError,
  spmmTernary,
  type Tensor,
  topkMask,
  topkQuantized,
  topkRows,
} from "../mod.ts";
import { roundHalfEven } from "../kernels/quant_ste.ts";
import { assertClose, cpu, hostRandom, native, onBoth, others } from "./helpers.ts";

const EXACT = { rtol: 0, atol: 0 };

Deno.test("quantizeActivations: codes and scales match the CPU twin and the BitNet formula", async () => {
  const x = hostRandom(5 * 37, 1, 3);
  const [codes, scale] = await onBoth((dev) => {
    const q = quantizeActivations(dev.tensor(x, [5, 37]));
    return [q.codes, q.scale];
  }, EXACT);
  for (let r = 0; r < 5; r++) {
    let m = 0;
    for (let j = 0; j < 37; j++) m = Math.max(m, Math.abs(x[r * 37 + j]!));
    const s = Math.fround(127 / Math.fround(m + Math.fround(1e-5)));
    assert.equal(scale![r], s);
    for (let j = 0; j < 37; j++) {
      const want = Math.max(-128, Math.min(127, roundHalfEven(Math.fround(x[r * 37 + j]! * s))));
      assert.equal(codes![r * 37 + j], want + 0);
      assert.ok(Math.abs(codes![r * 37 + j]!) <= 127);
    }
  }
});

Deno.test("dequantize(quantize(x)) equals the fake-quant STE forward bit for bit", async () => {
  const x = hostRandom(4 * 50, 2, 2), w = hostRandom(24 * 20, 3);
  for (const dev of [cpu, ...others]) {
    const xt = dev.tensor(x, [4, 50]);
    assertClose(
      await quantizeActivations(xt).dequantize().data(),
      await quantizeActivationsSte(xt).data(),
      EXACT,
    );
    const wt = dev.tensor(w, [24, 20]);
    assertClose(
      await quantizeWeights(wt).dequantize().data(),
      await quantizeWeightsSte(wt).data(),
      EXACT,
    );
  }
});

Deno.test("quantizeWeights: packed codes on both devices, padding past D_out, ternary values", async () => {
  for (const [r, c] of [[3, 1], [5, 20], [8, 16], [7, 33]] as const) {
    const w = hostRandom(r * c, r + c);
    const [packed] = await onBoth(
      (dev) => quantizeWeights(dev.tensor(w, [r, c])).packed,
      EXACT,
      `[${r}, ${c}]`,
    );
    const words = Math.ceil(c / 16);
    for (let i = 0; i < r; i++) {
      for (let col = c; col < words * 16; col++) {
        assert.equal(
          (packed![i * words + (col >> 4)]! >>> (2 * (col & 15))) & 3,
          1,
          "padding decodes to 0",
        );
      }
    }
    const t = quantizeWeights(cpu.tensor(w, [r, c]));
    const a = await t.alpha.item();
    let mean = 0;
    for (const v of w) mean += Math.abs(v);
    assert.ok(Math.abs(a - (mean / w.length + 1e-5)) < 1e-5);
    const dq = await t.dequantize().data();
    for (let i = 0; i < dq.length; i++) {
      assert.ok([0, a, -a].includes(dq[i]!));
      assert.equal(dq[i], Math.max(-1, Math.min(1, roundHalfEven(Math.fround(w[i]! / a)))) * a + 0);
    }
  }
});

Deno.test("topkQuantized: quantize-then-mask equals mask-then-quantize", async () => {
  const x = hostRandom(6 * 64, 7, 5);
  for (const k of [1, 16, 64]) {
    await onBoth(
      (dev) => {
        const q = topkQuantized(dev.tensor(x, [6, 64]), k);
        return [q.rows.values, q.rows.indices, q.scale];
      },
      EXACT,
      `k=${k}`,
    );
    const q = topkQuantized(cpu.tensor(x, [6, 64]), k);
    // Quantize then mask: the dense codes, masked by the top-K of x.
    const full = quantizeActivations(cpu.tensor(x, [6, 64]));
    const mask = topkMask(cpu.tensor(x, [6, 64]), k);
    const codes = await q.rows.toDense().data();
    const fullCodes = await full.codes.data(), m = await mask.data();
    for (let i = 0; i < codes.length; i++) assert.equal(codes[i], m[i] === 0 ? 0 : fullCodes[i]);
    assert.deepEqual([...await q.rows.indices.data()], [
      ...await topkRows(cpu.tensor(x, [6, 64]), k).indices.data(),
    ]);
    // Mask then quantize (fake-quant of the masked tensor) gives the same dequantized values.
    assertClose(await q.dequantize().data(), await quantizeActivationsSte(mask).data(), EXACT);
  }
  assert.deepEqual(topkQuantized(cpu.zeros([2, 10]), { sparsity: 0.6 }).rows.k, 4);
});

Deno.test("spmmTernary: int8 (sparse or dense) x ternary matches the CPU twin and the f32 product", async () => {
  for (const [rows, dIn, dOut] of [[1, 64, 16], [5, 40, 20], [9, 32, 5], [3, 128, 48]] as const) {
    const x = hostRandom(rows * dIn, rows + dIn), w = hostRandom(dIn * dOut, dIn + dOut);
    for (const form of ["sparse", "dense"] as const) {
      const make = (dev: typeof cpu) => {
        const xt = dev.tensor(x, [rows, dIn]);
        return form === "sparse" ? topkQuantized(xt, dIn >> 2) : quantizeActivations(xt);
      };
      const [y] = await onBoth(
        (dev) => spmmTernary(make(dev), quantizeWeights(dev.tensor(w, [dIn, dOut]))),
        {
          rtol: 1e-6,
          atol: 1e-6,
        },
        `${form} [${rows}, ${dIn}]x[${dIn}, ${dOut}]`,
      );
      const ref = await matmul(
        make(cpu).dequantize(),
        quantizeWeights(cpu.tensor(w, [dIn, dOut])).dequantize(),
      ).data();
      assertClose(y!, ref, { rtol: 1e-4, atol: 1e-4 }, `${form} vs f32 product`);
    }
  }
  // Leading dims are kept.
  const q = topkQuantized(cpu.randn([2, 3, 32], { seed: 5 }), 8);
  assert.deepEqual(spmmTernary(q, quantizeWeights(cpu.randn([32, 16], { seed: 6 }))).shape, [
    2,
    3,
    16,
  ]);
});

Deno.test("quantization: bad input is a typed error naming the op and the shapes", () => {
  assert.throws(
    () => quantizeActivations(cpu.zeros([2, 4], "i32") as unknown as Tensor<"f32">),
    (e: unknown) => e instanceof DTypeError && /quantizeActivations/.test(e.message),
  );
  assert.throws(
    () => quantizeWeights(cpu.zeros([2, 3, 4])),
    (e: unknown) => e instanceof ShapeError && /quantizeWeights.*\[2, 3, 4\]/.test(e.message),
  );
  assert.throws(
    () => topkQuantized(cpu.zeros([2, 4]), 5),
    (e: unknown) => e instanceof ShapeError && /topkRows.*\[2, 4\]/.test(e.message),
  );
  const t = quantizeWeights(cpu.zeros([8, 4]));
  assert.throws(
    () => spmmTernary(quantizeActivations(cpu.zeros([2, 6])), t),
    (e: unknown) =>
      e instanceof ShapeError && /^spmmTernary: .*D_in = 6.*\[2, 6\] and \[8, 4\]/.test(e.message),
  );
});

Deno.test("quantization on the native backend: sizes past the thread split match the twin exactly", async () => {
  // Rows/words/elements just past the parallel threshold, odd column counts, a packed word count
  // that does not divide evenly between threads, sparse and dense int8 × ternary.
  const x = hostRandom(300 * 257, 11, 3), w = hostRandom(100 * 700, 12);
  await onBoth((dev) => {
    const q = quantizeActivations(dev.tensor(x, [300, 257]));
    return [q.codes, q.scale, q.dequantize(), quantizeActivationsSte(dev.tensor(x, [300, 257]))];
  }, EXACT);
  await onBoth((dev) => {
    const t = quantizeWeights(dev.tensor(w, [100, 700]));
    return [t.packed, t.alpha, t.dequantize(), quantizeWeightsSte(dev.tensor(w, [100, 700]))];
  }, EXACT);
  // Fake quantization bit for bit, signed zeros included (values rounding to 0 from below give
  // −0 in the twin), with exact ties (x·s = ±0.5, ±1.5 … when max|x| = 127 and ε is tiny).
  const ties = Float32Array.from({ length: 200 * 340 }, (_, i) => {
    const v = hostRandom(1, i)[0]! * 3;
    return i % 340 === 0 ? 127 : i % 7 === 0 ? (i % 14) - 6.5 : i % 5 === 0 ? -0.001 : v;
  });
  const bits = (a: ArrayLike<number>) => new Uint32Array(Float32Array.from(a).buffer);
  for (const dev of others) {
    for (
      const [got, want] of [[dev, cpu]].map(([a, b]) =>
        [a!, b!].map((d) => [
          quantizeActivationsSte(d.tensor(ties, [200, 340])),
          quantizeWeightsSte(d.tensor(ties, [340, 200])),
        ])
      )
    ) {
      for (let i = 0; i < got!.length; i++) {
        const [g, w] = [bits(await got![i]!.data()), bits(await want![i]!.data())];
        // First differing bit pattern (deepEqual's diff of 68K elements is far too slow).
        const at = g.findIndex((v, j) => v !== w[j]);
        assert.equal(at, -1, `${dev.kind} output ${i}: bits ${g[at]} vs ${w[at]} at ${at}`);
      }
    }
  }
  // Few rows: the packed-word loop; many kept entries (rows·k > D_in): unpack + exact sgemm.
  for (
    const [rows, dIn, dOut, k] of [[1, 2048, 520, 700], [3, 512, 520, 129], [
      40,
      256,
      100,
      64,
    ]] as const
  ) {
    const xs = hostRandom(rows * dIn, 13), ws = hostRandom(dIn * dOut, 14);
    for (const form of ["sparse", "dense"] as const) {
      const run = (dev: typeof cpu) => {
        const xt = dev.tensor(xs, [rows, dIn]);
        const a = form === "sparse" ? topkQuantized(xt, k) : quantizeActivations(xt);
        return spmmTernary(a, quantizeWeights(dev.tensor(ws, [dIn, dOut])));
      };
      const what = `${form} [${rows}, ${dIn}]x[${dIn}, ${dOut}]`;
      // WGSL division is not correctly rounded, so WebGPU gets 1e-6; the native kernel's
      // integer sums and f32 scaling equal the twin's exactly.
      const [ref] = await onBoth(run, { rtol: 1e-6, atol: 1e-6 }, what);
      assertClose(await run(native).data(), ref!, EXACT, `${what} native`);
    }
  }
});
