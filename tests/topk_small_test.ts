/**
 * The per-row top-K mask kernel used for training batches: WebGPU vs its CPU twin, and the twin
 * vs the workgroup radix kernel's CPU twin (same semantics: ties to the lower index, NaN first).
 */
import assert from "node:assert/strict";
import { topkSmallCpu, type TopkSmallSpec } from "../kernels/topk_small.ts";
import { topkMask } from "../mod.ts";
import { cpu, hostRandom, onBoth } from "./helpers.ts";

Deno.test("topkSmall: WebGPU matches the CPU twin on random, tied and special rows", async () => {
  for (
    const [rows, d, k] of [[64, 32, 16], [100, 96, 1], [40, 160, 80], [33, 1024, 300], [64, 7, 7], [
      64,
      5,
      0,
    ]]
  ) {
    const h = hostRandom(rows! * d!, d! + k!, 2);
    // Ties and specials in a few rows.
    for (let j = 0; j < d!; j++) h[j] = 1;
    h[d!] = NaN;
    h[d! + 1] = -Infinity;
    h[2 * d!] = 0;
    await onBoth(
      (dev) => topkMask(dev.tensor(h, [rows!, d!]), k!),
      { atol: 0, rtol: 0 },
      `[${rows}, ${d}] k=${k}`,
    );
    await onBoth((dev) => topkMask(dev.tensor(h, [rows!, d!]), k!, { order: "value" }), {
      atol: 0,
      rtol: 0,
    }, "value order");
    if (k! > 0) {
      await onBoth(
        (dev) =>
          topkMask(dev.tensor(h.map((v) => Number.isFinite(v) ? v : 0), [rows!, d!]), k!, {
            rescale: true,
          }),
        { atol: 1e-6, rtol: 1e-6 },
        "rescale",
      );
    }
  }
  // Rows whose K-th and K+1-th keys part only at the lowest bit, or tie in clusters: the search
  // stops early where exactly K keys reach a prefix, and runs to the last bit where they tie.
  // (48 rows: fewer than 32 go to the radix kernel.)
  const ulp = Array.from({ length: 48 * 24 }, (_, i) => 1 + (i % 24) * 2 ** -23);
  const coarse = hostRandom(48 * 24, 5).map((v) => Math.round(v * 4) / 4);
  for (const [name, data] of [["ulp apart", ulp], ["clustered ties", coarse]] as const) {
    for (const k of [1, 5, 12, 23]) {
      await onBoth((dev) => topkMask(dev.tensor(data, [48, 24]), k), { atol: 0, rtol: 0 }, name);
    }
  }
  // N:M blocks go through the same kernel.
  const h = hostRandom(64 * 64, 3);
  await onBoth(
    (dev) => topkMask(dev.tensor(h, [64, 64]), { sparsity: 0.5 }, { block: { m: 32 } }),
    { atol: 0, rtol: 0 },
    "16:32",
  );
});

Deno.test("topkSmall CPU twin: exactly K kept, ties to the lower index, NaN ranks first", () => {
  const spec: TopkSmallSpec = { dtype: "f32", order: "magnitude", mask: true, rescale: false };
  const x = new Float32Array([2, -2, 2, NaN, 1, -3, 0, 2]);
  const out = new Float32Array(8), m = new Float32Array(8);
  topkSmallCpu(spec, 1, 8, 4, [x.buffer, out.buffer, m.buffer]);
  // NaN, −3, then the two lowest-index of the four |2|s.
  assert.deepEqual([...m], [1, 1, 0, 1, 0, 1, 0, 0]);
  assert.ok(Number.isNaN(out[3]!));
  const big = hostRandom(1000, 9);
  const o2 = new Float32Array(1000), m2 = new Float32Array(1000);
  topkSmallCpu(spec, 10, 100, 37, [big.buffer as ArrayBuffer, o2.buffer, m2.buffer]);
  for (let r = 0; r < 10; r++) {
    assert.equal(m2.subarray(r * 100, r * 100 + 100).reduce((a, v) => a + v, 0), 37);
  }
});

Deno.test("topkSmall agrees with the workgroup radix kernel (long-row path)", async () => {
  const h = hostRandom(8 * 512, 4);
  // 8 rows use the radix kernel (< 32 rows); 64 copies of them use the small kernel.
  const few = await topkMask(cpu.tensor(h, [8, 512]), 100).data();
  const many = await topkMask(
    cpu.tensor(new Float32Array(64 * 512).map((_, i) => h[i % (8 * 512)]!), [64, 512]),
    100,
  ).data();
  assert.deepEqual([...many.subarray(0, 8 * 512)], [...few]);
});
