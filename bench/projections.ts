/**
 * Grouped projections (`matmulShared` for q/k/v and gate/up) against separate matmuls, in one
 * run: training steps (forward, backward, AdamW) of the same model on the same batch,
 * alternating the two paths round by round (`sharedProjections.enabled`), with dispatches per
 * step and, with `--profile`, kernel time per op from timestamp queries (WebGPU only), also in
 * alternating rounds. Writes results/bench/projections.json (unless `--no-write`).
 *
 * Run: `deno run -A bench/projections.ts [--device webgpu|native] [--rounds 3] [--steps 1]
 * [--profile] [--out file.json] [tiny:0.5 s:0.5 ...]`
 */
import { parseArgs } from "node:util";
import { sharedProjections } from "../src/nn/linear.ts";
import { abSteps, modelCases } from "./ab_steps.ts";
import { codeVersion, median, writeJsonAtomic } from "./timing.ts";

const { values: flags, positionals } = parseArgs({
  args: Deno.args,
  options: {
    device: { type: "string", default: "webgpu" },
    rounds: { type: "string", default: "3" },
    steps: { type: "string", default: "1" },
    batch: { type: "string", default: "32" },
    seq: { type: "string", default: "128" },
    profile: { type: "boolean", default: false },
    "no-write": { type: "boolean", default: false },
    out: { type: "string", default: "results/bench/projections.json" },
  },
  allowPositionals: true,
});
const prefer = flags.device as "webgpu" | "native";
const rounds = Number(flags.rounds), steps = Number(flags.steps);
const batch = Number(flags.batch), seq = Number(flags.seq);
const cases = modelCases(positionals, ["tiny:0.5", "s:0.5"]);

type Path = "separate" | "grouped";
const use = (path: Path) => (sharedProjections.enabled = path === "grouped");

const rows: Record<string, unknown>[] = [];
let adapter = "";
const started = new Date().toISOString();
for (const c of cases) {
  const r = await abSteps<Path>({
    prefer,
    ...c,
    batch,
    seq,
    paths: ["separate", "grouped"],
    use,
    rounds,
    steps,
    profile: flags.profile,
  });
  adapter = r.adapter;
  const { times, dispatches, kernels } = r;
  use("grouped");
  const before = median(times.separate), after = median(times.grouped);
  const sum = (k?: Record<string, number>) => Object.values(k ?? {}).reduce((a, b) => a + b, 0);
  const row = {
    model: c.name,
    sparsity: c.sparsity,
    stepMsSeparate: before,
    stepMsGrouped: after,
    speedup: before / after,
    dispatchesSeparate: dispatches.separate,
    dispatchesGrouped: dispatches.grouped,
    stepTimesMs: times,
    kernelMsSeparate: sum(kernels.separate),
    kernelMsGrouped: sum(kernels.grouped),
    kernelMsPerOp: kernels,
  };
  rows.push(row);
  console.log(
    `${c.name} S=${c.sparsity}: dispatches ${row.dispatchesSeparate} → ${row.dispatchesGrouped}, ` +
      `step ms ${before.toFixed(0)} → ${after.toFixed(0)} (${row.speedup.toFixed(2)}×)` +
      (flags.profile
        ? `, Σ kernels ms ${row.kernelMsSeparate.toFixed(0)} → ${row.kernelMsGrouped.toFixed(0)}`
        : ""),
  );
}

const out = {
  bench: "projections",
  started,
  finished: new Date().toISOString(),
  adapter,
  code: await codeVersion(),
  loadAverage: Deno.loadavg(),
  batch,
  seq,
  rounds,
  steps,
  rows,
};
if (!flags["no-write"]) await writeJsonAtomic(flags.out!, out);
