/**
 * `deno bench` for the sparsity kernels on the default device (WebGPU when present): per-row
 * top-K, N:M top-K, and the sparse GEMV against the dense one. Run:
 * `deno bench -A bench/sparsity_bench.ts`. For the full table with peers and the batched curve use
 * bench/sparsity_table.ts.
 */
import { keepCount, matmul, openDevice, spmm, topkBlocks, topkRows } from "../mod.ts";

const dev = await openDevice();
console.log(`device: ${dev.kind} — ${dev.description}`);

const x = dev.randn([256, 4096], { seed: 1 });
await dev.flush();
Deno.bench("topkRows 256×4096 keep 1638 (S = 0.6)", { group: "topk", baseline: true }, async () => {
  topkRows(x, keepCount(4096, 0.6)).dispose();
  await dev.flush();
});
Deno.bench("topkBlocks 256×4096 16:32", { group: "topk" }, async () => {
  topkBlocks(x, 16, 32).dispose();
  await dev.flush();
});

const x1 = dev.randn([1, 4096], { seed: 3 }), w = dev.randn([4096, 4096], { seed: 4 });
await dev.flush();
Deno.bench("dense GEMV 1×4096 · 4096×4096", { group: "gemv", baseline: true }, async () => {
  matmul(x1, w).dispose();
  await dev.flush();
});
for (const S of [0.5, 0.6, 0.9]) {
  Deno.bench(`top-K + sparse GEMV S = ${S}`, { group: "gemv" }, async () => {
    const s = topkRows(x1, keepCount(4096, S));
    spmm(s, w).dispose();
    s.dispose();
    await dev.flush();
  });
}
