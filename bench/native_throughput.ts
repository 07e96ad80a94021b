/**
 * Training throughput of the native backend per model size: tokens/s of full training steps
 * (forward, backward, AdamW) at batch 32 × 128, the shape of every v2 study run. The v2 grid's
 * token budgets are sized from these numbers (docs/studies-v2.md; `scripts/v2_arithmetic.ts`
 * turns them into run minutes and grid hours). Writes results/bench/native_throughput.json.
 *
 * The load average is recorded with the numbers: on a shared machine the measured rate is what
 * a background sweep will see, not the machine's peak.
 *
 * Sizes are named sizes or `n<K>k` (a shape of K thousand parameters, as the v2 grids build).
 *
 * Run: `deno run -A bench/native_throughput.ts [xxs tiny xs n853k] [--S 0,0.8] [--steps 4]
 * [--note TEXT] [--out FILE]`
 */
import { cpuUsage } from "node:process";
import { parseArgs } from "node:util";
import { backward, openDevice, scope } from "../mod.ts";
import { paramCounts, TransformerLM } from "../src/nn/mod.ts";
import { v2Model } from "../studies/v2_grid.ts";
import { AdamW } from "../src/train/mod.ts";
import { codeVersion, median, writeJsonAtomic } from "./timing.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    S: { type: "string" },
    steps: { type: "string" },
    out: { type: "string" },
    note: { type: "string" },
    "no-write": { type: "boolean" },
  },
});
const sizes = positionals.length ? positionals : ["xxs", "tiny", "xs", "s", "m"];
const sparsities = (values.S ?? "0,0.8").split(",").map(Number);
const steps = Number(values.steps ?? 4);
const batch = 32, seq = 128;

function loadAverage(): number[] {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).map(Number);
  } catch {
    return [];
  }
}

const dev = await openDevice({ prefer: "native" });
const rows: {
  size: string;
  S: number;
  N: number;
  stepMs: number;
  tokensPerSecond: number;
  cpuMsPerStep: number;
  tokensPerCpuSecond: number;
  tokensPerCpuSecondBest: number;
  stepsTimed: number;
}[] = [];
const load0 = loadAverage();
for (const size of sizes) {
  for (const S of sparsities) {
    const cfg = v2Model(size, { sparsity: S, seqLen: seq });
    const model = new TransformerLM(dev, cfg, 1);
    const opt = new AdamW(dev, model.namedParameters());
    const tokens = (mult: number) =>
      dev.tensor(
        Uint32Array.from({ length: batch * seq }, (_, i) => (i * mult) % 256),
        [batch, seq],
        "u32",
      );
    const ids = tokens(7919), tg = tokens(104729);
    const step = () =>
      scope(() => {
        const loss = model.loss(ids, tg);
        backward(loss);
        opt.step(1e-3);
        model.zeroGrad();
      });
    step();
    await dev.flush();
    const times: number[] = [], cpus: number[] = [];
    for (let i = 0; i < steps; i++) {
      const c0 = cpuUsage(), t0 = performance.now();
      step();
      await dev.flush();
      times.push(performance.now() - t0);
      const c = cpuUsage(c0);
      cpus.push((c.user + c.system) / 1000);
    }
    const stepMs = median(times);
    // CPU milliseconds per step (all threads): on a loaded machine wall time measures the
    // neighbours too, CPU time mostly the work (an idle machine with c cores runs a step in
    // about cpu / c to cpu ms). The least of the steps is the least disturbed one.
    const cpuMsPerStep = median(cpus);
    const cpuMsBest = Math.min(...cpus);
    const row = {
      size,
      S,
      N: paramCounts(cfg).nonEmbedding,
      stepMs,
      tokensPerSecond: (batch * seq) / (stepMs / 1000),
      cpuMsPerStep,
      tokensPerCpuSecond: (batch * seq) / (cpuMsPerStep / 1000),
      tokensPerCpuSecondBest: (batch * seq) / (cpuMsBest / 1000),
      stepsTimed: steps,
    };
    rows.push(row);
    console.log(
      `${size.padEnd(5)} S=${S.toFixed(2)}  N ${(row.N / 1e3).toFixed(0).padStart(6)}K  ` +
        `step ${stepMs.toFixed(0).padStart(6)} ms  ${
          row.tokensPerSecond.toFixed(0).padStart(7)
        } tok/s  ` +
        `cpu ${cpuMsPerStep.toFixed(0).padStart(6)} ms/step  ${
          row.tokensPerCpuSecond.toFixed(0).padStart(7)
        } tok/cpu-s (best step ${row.tokensPerCpuSecondBest.toFixed(0)})`,
    );
    ids.dispose();
    tg.dispose();
    opt.dispose();
    model.dispose();
  }
}
const load1 = loadAverage();
console.log(`device: ${dev.description}; batch ${batch} × seq ${seq}; load ${load0} → ${load1}`);
dev.destroy();
if (!values["no-write"]) {
  await Deno.mkdir("results/bench", { recursive: true });
  await writeJsonAtomic(values.out ?? "results/bench/native_throughput.json", {
    adapter: dev.description,
    date: new Date().toISOString(),
    code: await codeVersion(),
    ...(values.note ? { note: values.note } : {}),
    cpus: navigator.hardwareConcurrency,
    loadAverage: { before: load0, after: load1 },
    batch,
    seq,
    rows,
  });
}
