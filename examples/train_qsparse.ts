/**
 * Trains a tiny Q-Sparse model (top-K S = 0.5 at every projection input, STE, ReLU²GLU) and its
 * dense twin on the Brown corpus with the same data and seed, then prints validation loss,
 * achieved sparsity per site and activated parameters N_a side by side. About two minutes on a
 * 2-core CPU; `deno task demo` runs this.
 *
 * Speed is fair between the two: each model first trains two throw-away steps, which pay the
 * one-time pipeline compilation (tens of seconds for the first model on WebGPU), and that time
 * is reported on its own row instead of inside tokens/s.
 *
 * Run: `deno run -A examples/train_qsparse.ts [--steps N] [--device webgpu|native|cpu]`
 */
import { parseArgs } from "node:util";
import { openDevice, sparsify, spmm } from "../mod.ts";
import { modelConfig } from "../src/nn/mod.ts";
import { train, trainConfig, type TrainResult } from "../src/train/mod.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { steps: { type: "string" }, device: { type: "string" } },
});
const kind = values.device;
if (kind !== undefined && kind !== "webgpu" && kind !== "native" && kind !== "cpu") {
  console.error(`error: --device must be webgpu, native or cpu, got "${kind}"`);
  Deno.exit(2);
}
using dev = await openDevice(kind ? { prefer: kind } : {});
console.log(`device: ${dev.kind} — ${dev.description}`);

// A small sparse example first: top-K of a token and a sparse × dense product.
{
  using x = dev.randn([1, 1024], { seed: 1 });
  using w = dev.randn([1024, 256], { seed: 2, std: 0.03 });
  using xs = sparsify(x, 0.6);
  using y = spmm(xs, w);
  console.log(
    `sparsify(S=0.6) keeps ${xs.k} of ${xs.width}; spmm reads ${xs.k} of ${xs.width} weight rows → y ${
      y.shape.join("×")
    }`,
  );
}

const steps = Number(values.steps ?? 120);
const runs: [string, TrainResult][] = [];
const warmups: number[] = [];
for (const [label, sparsity] of [["dense", 0], ["Q-Sparse S=0.5", 0.5]] as const) {
  const cfg = trainConfig(modelConfig("tiny", { sparsity, seqLen: 64 }), {
    steps,
    batchSize: 16,
    lr: 3e-3,
    minLr: 3e-4,
    warmup: Math.round(steps / 10),
    evalWindows: 128,
    logEvery: 20,
    seed: 1,
  });
  // Warm-up: two steps and a tiny evaluation compile every pipeline this model uses.
  const t0 = performance.now();
  await train(dev, { ...cfg, steps: 2, warmup: 0, evalWindows: 16 }, { chunkSizes: [] });
  warmups.push((performance.now() - t0) / 1000);
  console.log(`\ntraining ${label} (${steps} steps × ${16 * 64} tokens)`);
  runs.push([label, await train(dev, cfg, { progress: true })]);
}

const pct = (v: number | undefined) => (v === undefined ? "-" : `${(100 * v).toFixed(1)}%`);
const rows = [
  ["", ...runs.map(([l]) => l)],
  [
    "val loss (nats/byte)",
    ...runs.map(([, r]) => `${r.valLoss.toFixed(4)} ± ${r.valStderr.toFixed(4)}`),
  ],
  ["sparsity qkv", ...runs.map(([, r]) => pct(r.sparsity?.perSite.qkv))],
  ["sparsity o", ...runs.map(([, r]) => pct(r.sparsity?.perSite.o))],
  ["sparsity gate/up", ...runs.map(([, r]) => pct(r.sparsity?.perSite.gateUp))],
  ["sparsity down (ReLU² + top-K)", ...runs.map(([, r]) => pct(r.sparsity?.perSite.down))],
  ["overall sparsity", ...runs.map(([, r]) => pct(r.sparsity?.overall))],
  ["N (non-embedding)", ...runs.map(([, r]) => String(r.N))],
  ["N_a (activated)", ...runs.map(([, r]) => String(Math.round(r.Na)))],
  ["tokens/s (after warm-up)", ...runs.map(([, r]) => r.tokensPerSecond.toFixed(0))],
  ["warm-up incl. compilation (s)", ...warmups.map((s) => s.toFixed(1))],
];
const widths = rows[0]!.map((_, j) => Math.max(...rows.map((r) => r[j]!.length)));
console.log("\n" + rows.map((r) => r.map((c, j) => c.padEnd(widths[j]!)).join("  ")).join("\n"));
