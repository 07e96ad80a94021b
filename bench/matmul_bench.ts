/**
 * `deno bench` for dense matmul and GEMV on the default device (WebGPU when present).
 * Run: `deno bench -A bench/matmul_bench.ts`. For a GFLOP/s table use bench/matmul_table.ts.
 */
import { matmul, openDevice } from "../mod.ts";

const dev = await openDevice();
console.log(`device: ${dev.kind} — ${dev.description}`);

for (const n of [256, 512, 1024]) {
  const a = dev.randn([n, n], { seed: 1 }), b = dev.randn([n, n], { seed: 2 });
  await dev.flush();
  Deno.bench(`matmul ${n}³ f32`, { group: "matmul", baseline: n === 256 }, async () => {
    const c = matmul(a, b);
    await dev.flush();
    c.dispose();
  });
}

const x = dev.randn([1, 4096], { seed: 3 }), w = dev.randn([4096, 4096], { seed: 4 });
await dev.flush();
Deno.bench("gemv 1×4096 · 4096×4096 f32", { group: "gemv" }, async () => {
  const y = matmul(x, w);
  await dev.flush();
  y.dispose();
});
