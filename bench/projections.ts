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
import { backward, type Device, openDevice, scope } from "../mod.ts";
import { modelConfig, TransformerLM } from "../src/nn/mod.ts";
import { sharedProjections } from "../src/nn/linear.ts";
import { AdamW } from "../src/train/optimizer.ts";
import { codeVersion, median, writeJsonAtomic } from "./timing.ts";

// Compare the two paths on every adapter, llvmpipe included (grouping is off there by default).
sharedProjections.onSoftwareAdapters = true;

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
const cases = (positionals.length ? positionals : ["tiny:0.5", "s:0.5"]).map((s) => {
  const [name, sp] = s.split(":");
  return { name: name!, sparsity: Number(sp ?? 0) };
});

type Path = "separate" | "grouped";
const use = (path: Path) => (sharedProjections.enabled = path === "grouped");
const order = (r: number): Path[] => r % 2 ? ["grouped", "separate"] : ["separate", "grouped"];

/** A model, its optimizer and a fixed batch; `step` runs one training step. */
function setup(dev: Device, name: string, sparsity: number) {
  const model = new TransformerLM(dev, modelConfig(name, { sparsity, seqLen: seq }), 1);
  for (const s of model.sites()) s.countEnabled = false;
  const opt = new AdamW(dev, model.namedParameters());
  const ids = (mul: number) =>
    dev.tensor(
      Uint32Array.from({ length: batch * seq }, (_, i) => (i * mul) % 256),
      [batch, seq],
      "u32",
    );
  const x = ids(7919), y = ids(104729);
  const step = () =>
    scope(() => {
      backward(model.loss(x, y));
      opt.step(1e-3);
      model.zeroGrad();
    });
  const dispose = () => [x, y, opt, model].forEach((o) => o.dispose());
  return { step, dispose };
}

const rows: Record<string, unknown>[] = [];
let adapter = "";
const started = new Date().toISOString();
for (const c of cases) {
  const dev = await openDevice({ prefer });
  adapter = dev.description;
  const { step, dispose } = setup(dev, c.name, c.sparsity);
  const times: Record<Path, number[]> = { separate: [], grouped: [] };
  const dispatches: Record<Path, number> = { separate: 0, grouped: 0 };
  for (const path of ["separate", "grouped"] as const) {
    use(path); // warm-up: pipelines compiled, pools filled
    step();
    await dev.flush();
  }
  for (let r = 0; r < rounds; r++) {
    // Alternate which path goes first, so a drift in the machine's load hits both.
    for (const path of order(r)) {
      use(path);
      const d0 = dev.stats().dispatches;
      for (let i = 0; i < steps; i++) {
        const t0 = performance.now();
        step();
        await dev.flush();
        times[path].push(performance.now() - t0);
      }
      dispatches[path] = (dev.stats().dispatches - d0) / steps;
    }
  }
  dispose();
  dev.destroy();
  const kernels: Record<string, Record<string, number>> = {};
  if (flags.profile && prefer === "webgpu") {
    const pdev = await openDevice({ prefer, profile: true });
    const ps = setup(pdev, c.name, c.sparsity);
    for (const path of ["separate", "grouped"] as const) {
      use(path);
      ps.step();
      await pdev.flush();
      kernels[path] = {};
    }
    for (let r = 0; r < rounds; r++) {
      for (const path of order(r)) {
        use(path);
        pdev.backend.resetProfile();
        for (let i = 0; i < steps; i++) ps.step();
        await pdev.flush();
        const acc = kernels[path]!;
        for (const [op, k] of pdev.profile()!) {
          acc[op] = (acc[op] ?? 0) + k.ns / 1e6 / (steps * rounds);
        }
      }
    }
    ps.dispose();
    pdev.destroy();
  }
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
