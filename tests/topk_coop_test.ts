/**
 * The workgroup-per-row top-K mask (kernels/topk_coop.ts) against the CPU twin it shares with
 * kernels/topk_small.ts, on rows with ties, NaN and infinities, both orders, with the 0/1 mask and
 * with rescale; and the tunable launch (kernels/topk_mask.ts): an autotuning device that measures
 * the cooperative kernel faster runs it for `topkMask`, with the same entries kept.
 */
import assert from "node:assert/strict";
import { openDevice, topkMask } from "../mod.ts";
import { Autotuner, type DispatchTimer } from "../src/backend/autotune.ts";
import type { Dispatch } from "../src/backend/backend.ts";
import type { WebGpuBackend } from "../src/backend/webgpu.ts";
import { topkCoopDispatch } from "../kernels/topk_coop.ts";
import { TOPK_MASK_VARIANTS, topkMaskDispatch } from "../kernels/topk_mask.ts";
import { topkSmallCpu, type TopkSmallSpec } from "../kernels/topk_small.ts";
import { assertClose, cpu, gpu, hostRandom } from "./helpers.ts";

/** Rows with a tied row, NaN, −∞ and a zero, as the per-row kernel's test has them. */
function rowsWithSpecials(rows: number, d: number, seed: number): Float32Array {
  const h = hostRandom(rows * d, seed);
  for (let j = 0; j < d; j++) h[j] = 1;
  if (rows > 1) {
    h[d] = NaN;
    h[d + 1] = -Infinity;
    h[Math.min(2 * d, h.length - 1)] = 0;
  }
  // Coarse values in the last row: many ties at the threshold, spread over several chunks.
  for (let j = 0; j < d; j++) h[(rows - 1) * d + j] = (j * 7) % 5;
  return h;
}

Deno.test("topkCoop: WebGPU matches the CPU twin (ties, specials, both orders, mask, rescale)", async () => {
  if (!gpu) return;
  const cases: [number, number, number][] = [
    [64, 32, 16],
    [100, 96, 1],
    [40, 160, 80],
    [33, 1024, 300],
    [64, 7, 7],
    [64, 5, 0],
    [9, 200, 199],
  ];
  for (const [rows, d, k] of cases) {
    for (const order of ["magnitude", "value"] as const) {
      for (const [mask, rescale] of [[true, false], [false, true]] as const) {
        if (rescale && k === 0) continue;
        const h = rowsWithSpecials(rows, d, d + k);
        if (rescale) h.forEach((v, i) => h[i] = Number.isFinite(v) ? v : 0);
        const spec: TopkSmallSpec = { dtype: "f32", order, mask, rescale };
        const want = [new Float32Array(rows * d), new Float32Array(rows * d)];
        topkSmallCpu(spec, rows, d, k, [h.buffer as ArrayBuffer, want[0]!.buffer, want[1]!.buffer]);
        using x = gpu.tensor(h, [rows, d]);
        using out = gpu.empty([rows, d], "f32");
        using msk = gpu.empty([rows, d], "f32");
        const bufs = [x.storage("t"), out.storage("t")];
        if (mask) bufs.push(msk.storage("t"));
        gpu.run(topkCoopDispatch(spec, rows, d, k, bufs, "topkCoopTest"));
        const what = `[${rows}, ${d}] k=${k} ${order}${mask ? " mask" : ""}${
          rescale ? " rescale" : ""
        }`;
        const tol = rescale ? { atol: 1e-6, rtol: 1e-6 } : { atol: 0, rtol: 0 };
        assertClose(await out.data(), want[0]!, tol, what);
        if (mask) assertClose(await msk.data(), want[1]!, { atol: 0, rtol: 0 }, what + " (mask)");
      }
    }
  }
});

Deno.test("topkCoop: the bit search's early stop (K-th and K+1-th keys an ulp apart, ties)", async () => {
  if (!gpu) return;
  const rows = 8, d = 200;
  // Row r: keys 1 + j·ulp, so the K-th and K+1-th keys part only at the lowest bit; odd rows
  // repeat each value twice (ties at the threshold for odd K).
  const h = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < d; j++) h[r * d + j] = 1 + (r % 2 ? j >> 1 : j) * 2 ** -23;
  }
  const spec: TopkSmallSpec = { dtype: "f32", order: "magnitude", mask: true, rescale: false };
  for (const k of [1, 7, 100, 199]) {
    const want = [new Float32Array(rows * d), new Float32Array(rows * d)];
    topkSmallCpu(spec, rows, d, k, [h.buffer as ArrayBuffer, want[0]!.buffer, want[1]!.buffer]);
    using x = gpu.tensor(h, [rows, d]);
    using out = gpu.empty([rows, d], "f32");
    using msk = gpu.empty([rows, d], "f32");
    const bufs = [x.storage("t"), out.storage("t"), msk.storage("t")];
    gpu.run(topkCoopDispatch(spec, rows, d, k, bufs, "topkCoopTest"));
    assertClose(await out.data(), want[0]!, { atol: 0, rtol: 0 }, `k=${k}`);
    assertClose(await msk.data(), want[1]!, { atol: 0, rtol: 0 }, `k=${k} (mask)`);
  }
});

Deno.test("topkCoop: more segments than one dispatch dimension holds", async () => {
  if (!gpu) return;
  const segs = 70_000, d = 8, k = 3;
  const h = hostRandom(segs * d, 11);
  const spec: TopkSmallSpec = { dtype: "f32", order: "magnitude", mask: false, rescale: false };
  const want = new Float32Array(segs * d);
  topkSmallCpu(spec, segs, d, k, [h.buffer as ArrayBuffer, want.buffer]);
  using x = gpu.tensor(h, [segs, d]);
  using out = gpu.empty([segs, d], "f32");
  gpu.run(topkCoopDispatch(spec, segs, d, k, [x.storage("t"), out.storage("t")], "topkCoopTest"));
  assertClose(await out.data(), want, { atol: 0, rtol: 0 });
});

Deno.test("topkMask: an autotuned device runs the cooperative kernel when it measures faster", async () => {
  if (!gpu) return;
  const timer: DispatchTimer = {
    precise: true,
    time: (d: Dispatch, reps: number) =>
      Promise.resolve(reps * (d.key.startsWith("topkCoop:") ? 1e5 : 9e5)),
  };
  const dev = await openDevice({ prefer: "webgpu", autotune: false });
  const be = dev.backend as WebGpuBackend;
  be.autotuner = new Autotuner(be, { adapterKey: "topk-test", cacheDir: null, timer });
  try {
    const h = rowsWithSpecials(256, 96, 4);
    const want = await topkMask(cpu.tensor(h, [256, 96]), { sparsity: 0.6 }).data();
    // First use: the default kernel, and the class waits for tune().
    assertClose(await topkMask(dev.tensor(h, [256, 96]), { sparsity: 0.6 }).data(), want, {
      atol: 0,
      rtol: 0,
    });
    const [r] = await dev.autotune();
    assert.deepEqual(Object.keys(r!.ns), [...TOPK_MASK_VARIANTS]);
    assert.deepEqual(r!.rejected, []);
    assert.equal(r!.choice, "topkCoop");
    const s = { id: -1, bytes: 0 };
    const spec: TopkSmallSpec = { dtype: "f32", order: "magnitude", mask: false, rescale: false };
    const resolved = be.autotuner.resolve(topkMaskDispatch(spec, 256, 96, 38, [s, s], "topkMask"));
    assert.match(resolved.key, /^topkCoop:/);
    assertClose(await topkMask(dev.tensor(h, [256, 96]), { sparsity: 0.6 }).data(), want, {
      atol: 0,
      rtol: 0,
    });
  } finally {
    dev.destroy();
  }
});
