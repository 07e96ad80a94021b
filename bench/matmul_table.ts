/**
 * Prints a dense matmul / GEMV table (GFLOP/s, ms) on the device in use and writes it to
 * results/bench/matmul.json. Also measures the adapter's own FMA ceiling with a kernel of
 * independent FMA chains, so the table says what fraction of it matmul reaches.
 *
 * Run: `deno run -A bench/matmul_table.ts [--cpu]`
 */
import { matmul, openDevice } from "../mod.ts";
import type { WebGpuBackend } from "../src/backend/webgpu.ts";
import { codeVersion, timeMs, writeJsonAtomic } from "./timing.ts";

const dev = await openDevice({ prefer: Deno.args.includes("--cpu") ? "cpu" : "webgpu" });
console.log(`device: ${dev.kind} — ${dev.description}`);

const rows: Record<string, unknown>[] = [];
for (const n of [256, 512, 1024]) {
  const a = dev.randn([n, n], { seed: 1 }), b = dev.randn([n, n], { seed: 2 });
  await dev.flush();
  const ms = await timeMs(async () => {
    const c = matmul(a, b);
    await dev.flush();
    c.dispose();
  }, n === 1024 ? 5 : 9);
  rows.push({ case: `matmul ${n}³`, ms, gflops: (2 * n ** 3) / ms / 1e6 });
  a.dispose();
  b.dispose();
}
for (const transposeB of [false, true]) {
  // W stored [K, N] (input-major, the layout spmm uses) or [N, K] (PyTorch's Linear layout).
  const x = dev.randn([1, 4096], { seed: 3 }), w = dev.randn([4096, 4096], { seed: 4 });
  await dev.flush();
  const ms = await timeMs(async () => {
    const y = matmul(x, w, { transposeB });
    await dev.flush();
    y.dispose();
  }, 9);
  rows.push({
    case: `gemv 1×4096·4096×4096, W stored ${transposeB ? "[N, K]" : "[K, N]"}`,
    ms,
    gflops: (2 * 4096 * 4096) / ms / 1e6,
    gbps: (4096 * 4096 * 4) / ms / 1e6,
  });
  x.dispose();
  w.dispose();
}

/** The adapter's FMA ceiling: many invocations each running 8 independent FMA chains. */
async function fmaCeiling(): Promise<number | null> {
  if (dev.kind !== "webgpu") return null;
  const device = (dev.backend as WebGpuBackend).device;
  const iters = 4096, wgs = 256, threads = 64;
  const code = `@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(${threads})
fn main(@builtin(global_invocation_id) gid: vec3u) {
  var a0 = vec4f(f32(gid.x)); var a1 = a0 + 1.0; var a2 = a0 + 2.0; var a3 = a0 + 3.0;
  var a4 = a0 + 4.0; var a5 = a0 + 5.0; var a6 = a0 + 6.0; var a7 = a0 + 7.0;
  let m = vec4f(0.9999); let c = vec4f(0.0001);
  for (var i = 0u; i < ${iters}u; i = i + 1u) {
    a0 = fma(a0, m, c); a1 = fma(a1, m, c); a2 = fma(a2, m, c); a3 = fma(a3, m, c);
    a4 = fma(a4, m, c); a5 = fma(a5, m, c); a6 = fma(a6, m, c); a7 = fma(a7, m, c);
  }
  let s = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
  out[gid.x] = s.x + s.y + s.z + s.w;
}`;
  const module = device.createShaderModule({ code });
  const pipe = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const buf = device.createBuffer({ size: wgs * threads * 4, usage: GPUBufferUsage.STORAGE });
  const bg = device.createBindGroup({
    layout: pipe.getBindGroupLayout(0),
    entries: [{ binding: 0, resource: { buffer: buf } }],
  });
  const ms = await timeMs(async () => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipe);
    pass.setBindGroup(0, bg);
    pass.dispatchWorkgroups(wgs);
    pass.end();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
  }, 5);
  buf.destroy();
  return (wgs * threads * iters * 8 * 4 * 2) / ms / 1e6;
}
const ceiling = await fmaCeiling();

console.log("\n| case | ms (median) | GFLOP/s |" + (ceiling ? " % of FMA ceiling |" : ""));
console.log("|---|---|---|" + (ceiling ? "---|" : ""));
for (const r of rows) {
  const g = r.gflops as number;
  console.log(
    `| ${r.case} | ${(r.ms as number).toFixed(2)} | ${g.toFixed(2)} |` +
      (ceiling ? ` ${((100 * g) / ceiling).toFixed(0)}% |` : ""),
  );
}
if (ceiling) console.log(`\nFMA ceiling (independent FMA chains): ${ceiling.toFixed(1)} GFLOP/s`);

if (!Deno.args.includes("--no-write")) {
  await Deno.mkdir("results/bench", { recursive: true });
  const file = `results/bench/matmul${dev.kind === "cpu" ? "_cpu" : ""}.json`;
  await writeJsonAtomic(file, {
    adapter: dev.description,
    kind: dev.kind,
    date: new Date().toISOString(),
    code: await codeVersion(),
    fmaCeilingGflops: ceiling,
    rows,
  });
  console.log(`wrote ${file}`);
}
dev.destroy();
