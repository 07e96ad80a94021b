/**
 * The training-time top-K mask's two kernels (kernels/topk_mask.ts) on this adapter, at the row
 * shapes of a training step: the per-invocation default (`topkSmall`) and the workgroup-per-row
 * `topkCoop`, each timed with the autotuner's clock (timestamp queries when the adapter has them),
 * and the variant the device's own autotune picks. Writes results/bench/topk_variants.json.
 *
 * Run: `deno run -A bench/topk_variants.ts [--budget MS]`
 */
import { parseArgs } from "node:util";
import { openDevice } from "../mod.ts";
import { Autotuner } from "../src/backend/autotune.ts";
import type { WebGpuBackend } from "../src/backend/webgpu.ts";
import { topkMaskDispatch } from "../kernels/topk_mask.ts";
import { codeVersion, writeJsonAtomic } from "./timing.ts";

const { values: args } = parseArgs({ options: { budget: { type: "string", default: "1000" } } });
Deno.env.set("QSPARSE_CACHE_DIR", await Deno.makeTempDir({ prefix: "qsparse-autotune-" }));
const dev = await openDevice({ prefer: "webgpu", autotune: true });
const be = dev.backend as WebGpuBackend;
const timer = be.tuningTimer();
console.log(`device: ${dev.description}; clock: ${timer.precise ? "timestamps" : "wall"}`);

// Rows × width of the projection inputs of tiny (d 64), xs (96), n853k/s (128, 256) and a GLU
// down input (384), at batch 32 × 128 and 256 × 128 tokens; keep half (S = .5).
const cases: [number, number][] = [[4096, 64], [4096, 128], [4096, 256], [4096, 384], [
  32768,
  128,
]];
const dummy = { id: -1, bytes: 0 };
const rows: Record<string, unknown>[] = [];
for (const [segs, d] of cases) {
  const k = Math.floor(d / 2);
  const spec = { dtype: "f32" as const, order: "magnitude" as const, mask: false, rescale: false };
  const tune = topkMaskDispatch(spec, segs, d, k, [dummy, dummy], "topkMask").tune!;
  // A fresh tuner per case, so every case is measured even when classes coincide.
  const bench = new Autotuner(be, {
    adapterKey: "bench",
    cacheDir: null,
    timer,
    budgetMs: Number(args.budget),
  });
  const [m] = await bench.tune([tune]);
  // Its own class's result: autotune() also tunes any other class queued by then.
  const own = (await dev.autotune([tune])).find((r) => r.key === tune.key);
  const pick = own?.choice ?? be.autotuner!.choices.get(tune.key)!;
  const us = Object.fromEntries(Object.entries(m!.ns).map(([v, ns]) => [v, ns / 1e3]));
  const ratio = us.topkSmall! / us.topkCoop!;
  console.log(
    `${segs}×${d} keep ${k}: topkSmall ${us.topkSmall!.toFixed(1)} µs, topkCoop ` +
      `${us.topkCoop!.toFixed(1)} µs (coop ${ratio.toFixed(2)}× faster); autotune picks ${pick}` +
      (m!.rejected.length ? `; rejected ${m!.rejected}` : ""),
  );
  rows.push({
    rows: segs,
    d,
    k,
    us,
    coopSpeedup: ratio,
    autotunePick: pick,
    rejected: m!.rejected,
  });
}
await Deno.mkdir("results/bench", { recursive: true });
await writeJsonAtomic("results/bench/topk_variants.json", {
  adapter: dev.description,
  clock: timer.precise ? "timestamps" : "wall",
  date: new Date().toISOString(),
  code: await codeVersion(),
  loadavg: Deno.loadavg(),
  rows,
});
console.log("wrote results/bench/topk_variants.json");
