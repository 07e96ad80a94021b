/**
 * Engine overheads, the baseline for the lazy/captured engine of issue 12: per backend, fused
 * (lazy elementwise groups) against unfused (`fuse: false`) in the same run, the host cost of one
 * dispatch (a chain of trivial elementwise kernels on 16 floats, flushed once), the 1,000-op
 * elementwise chain on 4,096 floats, and dispatches per training step of tiny/s.
 * Writes results/bench/engine.json.
 *
 * Run: `deno run -A bench/engine.ts [--no-llvmpipe] [--no-write]`
 */
import { add, backward, type Device, mulScalar, openDevice, scope } from "../mod.ts";
import { modelConfig, TransformerLM } from "../src/nn/mod.ts";
import { AdamW } from "../src/train/optimizer.ts";
import { codeVersion, median, writeJsonAtomic } from "./timing.ts";

/**
 * µs per op of a chain of `ops` elementwise ops on `n` floats, flushed once: `total` includes
 * the flush's wait for the device (≥ 10 ms on Deno, whose readiness poll sleeps 10 ms), `host`
 * stops when every op has been handed to the backend (encoded or, fused, emitted).
 */
async function chain(
  dev: Device,
  n: number,
  ops: number,
): Promise<{ total: number; host: number }> {
  using x = dev.randn([n], { seed: 1 });
  // The result is kept (and the intermediates freed by the scope), so a fused engine must
  // compute and write it: nothing is skipped because nobody reads it.
  const run = async () => {
    const t0 = performance.now();
    const y = scope(() => {
      let y = x;
      for (let i = 0; i < ops; i++) y = i % 2 ? add(y, x) : mulScalar(y, 0.5);
      return y;
    });
    dev.fusion?.emit();
    const t1 = performance.now();
    await dev.flush();
    const t2 = performance.now();
    y.dispose();
    return { total: t2 - t0, host: t1 - t0 };
  };
  await run();
  const total: number[] = [], host: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t = await run();
    total.push(t.total);
    host.push(t.host);
  }
  return { total: (median(total) * 1000) / ops, host: (median(host) * 1000) / ops };
}

async function dispatchesPerStep(dev: Device, name: string, sparsity: number): Promise<number> {
  const model = new TransformerLM(dev, modelConfig(name, { sparsity, seqLen: 32 }), 1);
  for (const s of model.sites()) s.countEnabled = false;
  const opt = new AdamW(dev, model.namedParameters());
  using ids = dev.tensor(Uint32Array.from({ length: 64 }, (_, i) => i % 256), [2, 32], "u32");
  using tg = dev.tensor(Uint32Array.from({ length: 64 }, (_, i) => (i * 7) % 256), [2, 32], "u32");
  const step = () =>
    scope(() => {
      backward(model.loss(ids, tg));
      opt.step(1e-3);
      model.zeroGrad();
    });
  step();
  await dev.flush();
  const d0 = dev.stats().dispatches;
  step();
  await dev.flush();
  const d = dev.stats().dispatches - d0;
  opt.dispose();
  model.dispose();
  return d;
}

/** Each backend fused and unfused, opened side by side so both are measured in one run. */
const devices: { dev: Device; fuse: boolean }[] = [];
for (const fuse of [false, true]) {
  devices.push({ dev: await openDevice({ prefer: "native", fuse }), fuse });
  devices.push({ dev: await openDevice({ prefer: "cpu", fuse }), fuse });
  if (!Deno.args.includes("--no-llvmpipe")) {
    try {
      devices.push({ dev: await openDevice({ prefer: "webgpu", fuse }), fuse });
    } catch (e) {
      console.warn(`no WebGPU adapter: ${(e as Error).message}`);
    }
  }
}
const rows: Record<string, unknown>[] = [];
for (const { dev, fuse } of devices) {
  const trivial = await chain(dev, 16, 1000), chain4096 = await chain(dev, 4096, 1000);
  const row = {
    kind: dev.kind,
    fuse,
    description: dev.description,
    usPerDispatchTrivial: trivial.total,
    usPerOpChain4096: chain4096.total,
    hostUsPerOpChain4096: chain4096.host,
    dispatchesTinyStep: await dispatchesPerStep(dev, "tiny", 0.5),
    dispatchesSStep: await dispatchesPerStep(dev, "s", 0.5),
  };
  rows.push(row);
  console.log(
    `${dev.kind.padEnd(7)} ${fuse ? "fused  " : "unfused"} µs/op (16 floats) ` +
      `${row.usPerDispatchTrivial.toFixed(1)}; 1,000-op chain on 4,096 floats ` +
      `${row.usPerOpChain4096.toFixed(1)} µs/op (host ${row.hostUsPerOpChain4096.toFixed(1)}); ` +
      `dispatches per step tiny ` +
      `${row.dispatchesTinyStep}, s ${row.dispatchesSStep} (${dev.description})`,
  );
}
/** Unfused over fused, per backend: how much the fusion saved in this run. */
const ratios: Record<string, unknown>[] = [];
for (const kind of new Set(rows.map((r) => r.kind))) {
  const off = rows.find((r) => r.kind === kind && !r.fuse) as Record<string, number> | undefined;
  const on = rows.find((r) => r.kind === kind && r.fuse) as Record<string, number> | undefined;
  if (!off || !on) continue;
  const ratio = {
    kind,
    chain16: off.usPerDispatchTrivial / on.usPerDispatchTrivial,
    chain4096: off.usPerOpChain4096 / on.usPerOpChain4096,
    chain4096Host: off.hostUsPerOpChain4096 / on.hostUsPerOpChain4096,
    dispatchesTiny: off.dispatchesTinyStep / on.dispatchesTinyStep,
    dispatchesS: off.dispatchesSStep / on.dispatchesSStep,
  };
  ratios.push(ratio);
  console.log(
    `${String(kind).padEnd(7)} unfused / fused: chain 16 ${ratio.chain16.toFixed(2)}×, chain ` +
      `4096 ${ratio.chain4096.toFixed(2)}× (host ${ratio.chain4096Host.toFixed(2)}×), ` +
      `dispatches tiny ${ratio.dispatchesTiny.toFixed(2)}×, ` +
      `s ${ratio.dispatchesS.toFixed(2)}×`,
  );
}
if (!Deno.args.includes("--no-write")) {
  await Deno.mkdir("results/bench", { recursive: true });
  await writeJsonAtomic("results/bench/engine.json", {
    date: new Date().toISOString(),
    code: await codeVersion(),
    loadavg: Deno.loadavg(),
    rows,
    ratios,
  });
}
for (const { dev } of devices) dev.destroy();
