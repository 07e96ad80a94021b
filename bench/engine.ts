/**
 * Engine overheads, the baseline for the lazy/captured engine of issue 12: per backend, fused
 * (lazy elementwise groups) against unfused (`fuse: false`) in the same run, the host cost of one
 * dispatch (a chain of trivial elementwise kernels on 16 floats, flushed once), the 1,000-op
 * elementwise chain on 4,096 floats, and dispatches per training step of tiny/s.
 * Writes results/bench/engine.json.
 *
 * Run: `deno run -A bench/engine.ts [--no-llvmpipe] [--no-write]`
 */
import {
  add,
  type BackendKind,
  backward,
  type Device,
  mulScalar,
  openDevice,
  scope,
  type Tensor,
} from "../mod.ts";
import { modelConfig, TransformerLM } from "../src/nn/mod.ts";
import { isSoftwareAdapter } from "../src/backend/webgpu.ts";
import { AdamW } from "../src/train/optimizer.ts";
import { codeVersion, median, writeJsonAtomic } from "./timing.ts";

/** One timed chain: `total` includes the flush's wait, `host` ends once every op is handed over. */
interface ChainTime {
  total: number;
  host: number;
}

/**
 * A chain of `ops` elementwise ops on `n` floats, flushed once, in ms: `total` includes the
 * flush's wait for the device (≥ 10 ms on Deno, whose readiness poll sleeps 10 ms), `host` stops
 * when every op has been handed to the backend (encoded or, fused, emitted).
 */
async function chainOnce(dev: Device, x: Tensor, ops: number): Promise<ChainTime> {
  const t0 = performance.now();
  // The result is kept (and the intermediates freed by the scope), so a fused engine must
  // compute and write it: nothing is skipped because nobody reads it.
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
}

/**
 * µs per op of the chain on each device, rounds alternating between them (the machine's load
 * drifts; alternating keeps the comparison fair): medians of 7 rounds after a warm-up.
 */
async function chains(devs: Device[], n: number, ops: number): Promise<ChainTime[]> {
  const xs = devs.map((d) => d.randn([n], { seed: 1 }));
  const times: ChainTime[][] = devs.map(() => []);
  for (let r = 0; r < 8; r++) {
    for (let k = 0; k < devs.length; k++) {
      const i = r % 2 ? devs.length - 1 - k : k;
      const t = await chainOnce(devs[i]!, xs[i]!, ops);
      if (r > 0) times[i]!.push(t);
    }
  }
  for (const x of xs) x.dispose();
  return times.map((ts) => ({
    total: (median(ts.map((t) => t.total)) * 1000) / ops,
    host: (median(ts.map((t) => t.host)) * 1000) / ops,
  }));
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

/** Each backend unfused and fused, side by side so both are measured in one run. */
const kinds: BackendKind[] = ["native", "cpu", "webgpu"];
// --no-llvmpipe skips WebGPU on a software adapter only (minutes there); a real GPU is measured.
const skipSoftware = Deno.args.includes("--no-llvmpipe");
const rows: Record<string, unknown>[] = [];
const devices: Device[] = [];
for (const kind of kinds) {
  let pair: Device[];
  try {
    pair = [
      await openDevice({ prefer: kind, fuse: false }),
      await openDevice({ prefer: kind, fuse: true }),
    ];
  } catch (e) {
    console.warn(`no ${kind} device: ${(e as Error).message}`);
    continue;
  }
  if (
    skipSoftware && kind === "webgpu" && isSoftwareAdapter({ description: pair[0]!.description })
  ) {
    console.warn(`skipping WebGPU on ${pair[0]!.description} (--no-llvmpipe)`);
    for (const d of pair) d.destroy();
    continue;
  }
  devices.push(...pair);
  const trivial = await chains(pair, 16, 1000), chain4096 = await chains(pair, 4096, 1000);
  for (const [k, dev] of pair.entries()) {
    const row = {
      kind: dev.kind,
      fuse: k === 1,
      description: dev.description,
      usPerDispatchTrivial: trivial[k]!.total,
      usPerOpChain4096: chain4096[k]!.total,
      hostUsPerOpChain4096: chain4096[k]!.host,
      dispatchesTinyStep: await dispatchesPerStep(dev, "tiny", 0.5),
      dispatchesSStep: await dispatchesPerStep(dev, "s", 0.5),
    };
    rows.push(row);
    console.log(
      `${dev.kind.padEnd(7)} ${row.fuse ? "fused  " : "unfused"} µs/op (16 floats) ` +
        `${row.usPerDispatchTrivial.toFixed(1)}; 1,000-op chain on 4,096 floats ` +
        `${row.usPerOpChain4096.toFixed(1)} µs/op (host ${row.hostUsPerOpChain4096.toFixed(1)}); ` +
        `dispatches per step tiny ${row.dispatchesTinyStep}, s ${row.dispatchesSStep} ` +
        `(${dev.description})`,
    );
  }
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
for (const dev of devices) dev.destroy();
