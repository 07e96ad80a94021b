/**
 * Fused causal attention (`attentionCausal`: one launch forward, two backward) against the
 * strided products and causal softmax (eight launches), in one run: training steps (forward,
 * backward, AdamW) of the same model on the same batch, the two paths alternating round by round
 * (`fusedAttention.enabled`), with launches per step and, with `--profile`, kernel time per op
 * from timestamp queries on a second device. WebGPU only (the host backends keep the products).
 * Writes results/bench/attention_fused.json (unless `--no-write`).
 *
 * Run: `deno run -A bench/attention_fused.ts [--rounds 3] [--steps 2] [--batch 32] [--seq 128]
 * [--profile] [tiny:0.5 s:0.5 ...]`
 */
import { parseArgs } from "node:util";
import { fusedAttention } from "../src/nn/mod.ts";
import { abSteps, modelCases } from "./ab_steps.ts";
import { codeVersion, median, writeJsonAtomic } from "./timing.ts";

const { values: flags, positionals } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "3" },
    steps: { type: "string", default: "2" },
    batch: { type: "string", default: "32" },
    seq: { type: "string", default: "128" },
    profile: { type: "boolean", default: false },
    "no-write": { type: "boolean", default: false },
  },
  allowPositionals: true,
});
const cases = modelCases(positionals, ["tiny:0.5", "s:0.5"]);
type Path = "products" | "fused";
const use = (path: Path) => (fusedAttention.enabled = path === "fused");
const batch = Number(flags.batch), seq = Number(flags.seq);

const rows: Record<string, unknown>[] = [];
let adapter = "";
const started = new Date().toISOString();
for (const c of cases) {
  const r = await abSteps<Path>({
    prefer: "webgpu",
    ...c,
    batch,
    seq,
    paths: ["products", "fused"],
    use,
    rounds: Number(flags.rounds),
    steps: Number(flags.steps),
    profile: flags.profile,
  });
  use("fused");
  adapter = r.adapter;
  const before = median(r.times.products), after = median(r.times.fused);
  const attention = (k?: Record<string, number>) =>
    Object.entries(k ?? {}).filter(([op]) => /attention|matmulStrided|softmax/i.test(op))
      .reduce((a, [, ms]) => a + ms, 0);
  const row = {
    model: c.name,
    sparsity: c.sparsity,
    stepMsProducts: before,
    stepMsFused: after,
    speedup: before / after,
    launchesProducts: r.dispatches.products,
    launchesFused: r.dispatches.fused,
    stepTimesMs: r.times,
    attentionKernelMsProducts: attention(r.kernels.products),
    attentionKernelMsFused: attention(r.kernels.fused),
    kernelMsPerOp: r.kernels,
  };
  rows.push(row);
  console.log(
    `${c.name} S=${c.sparsity} ${batch}×${seq}: launches ${row.launchesProducts} → ` +
      `${row.launchesFused}, step ms ${before.toFixed(0)} → ${after.toFixed(0)} ` +
      `(${row.speedup.toFixed(2)}×)` +
      (flags.profile
        ? `, attention kernels ms ${row.attentionKernelMsProducts.toFixed(1)} → ` +
          `${row.attentionKernelMsFused.toFixed(1)}`
        : ""),
  );
}
console.log(`# ${adapter}`);
if (!flags["no-write"]) {
  await writeJsonAtomic("results/bench/attention_fused.json", {
    bench: "attention_fused",
    started,
    finished: new Date().toISOString(),
    adapter,
    code: await codeVersion(),
    loadAverage: Deno.loadavg(),
    batch,
    seq,
    rows,
  });
}
