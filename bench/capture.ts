/**
 * Captured training steps against ordinary execution, in one run: for each device and model, a
 * forward + backward + AdamW step executed as ordinary code ("eager") and as a replay of its
 * capture, in alternating rounds. Reports host time per step (until the step call returns: on
 * WebGPU that is encoding, on the host backends the whole step), step time with the device
 * finished, tokens/s, launches per step, and the capture's buffer plan. A host-bound case (tiny at
 * 1 × 32 tokens) shows the per-launch host cost the capture removes.
 *
 * As in the trainer, AdamW's step values (count, learning rate, bias corrections) are written to
 * its device buffer outside the step (`prepareStep`) and the recorded step applies them
 * (`applyStep`), so every replay is a real update; `tests/capture_test.ts` checks replays bit for
 * bit.
 * Writes results/bench/capture.json (not committed).
 *
 * Run: `deno run -A bench/capture.ts [--devices native,webgpu] [--cases tiny:32x128,s:32x128]
 * [--rounds 5] [--steps 1] [--no-write]`
 */
import { parseArgs } from "node:util";
import { backward, captureStep, type Device, openDevice, scope, type Tensor } from "../mod.ts";
import { modelConfig, TransformerLM } from "../src/nn/mod.ts";
import { AdamW } from "../src/train/optimizer.ts";
import { codeVersion, median, writeJsonAtomic } from "./timing.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    devices: { type: "string", default: "native,webgpu" },
    cases: { type: "string", default: "tiny:1x32,tiny:32x128,s:32x128" },
    sparsity: { type: "string", default: "0.5" },
    rounds: { type: "string", default: "5" },
    steps: { type: "string", default: "1" },
    "no-write": { type: "boolean", default: false },
  },
});
const rounds = Number(args.rounds), stepsPerRound = Number(args.steps);
const sparsity = Number(args.sparsity);
const cases = args.cases!.split(",").map((c) => {
  const [name, size] = c.split(":");
  const [b, t] = size!.split("x").map(Number);
  return { name: name!, batch: b!, seq: t! };
});

interface Timing {
  hostMs: number;
  stepMs: number;
}

async function timeSteps(dev: Device, run: () => void): Promise<Timing[]> {
  const out: Timing[] = [];
  for (let i = 0; i < stepsPerRound; i++) {
    const t0 = performance.now();
    run();
    const t1 = performance.now();
    await dev.flush();
    out.push({ hostMs: t1 - t0, stepMs: performance.now() - t0 });
  }
  return out;
}

async function bench(dev: Device, c: { name: string; batch: number; seq: number }) {
  const cfg = modelConfig(c.name, { sparsity, seqLen: c.seq });
  const models = [0, 1].map(() => {
    const model = new TransformerLM(dev, cfg, 1);
    for (const s of model.sites()) s.countEnabled = false;
    return { model, opt: new AdamW(dev, model.namedParameters()) };
  });
  const n = c.batch * c.seq;
  const ids = Uint32Array.from({ length: n }, (_, i) => (i * 7919) % 256);
  const targets = Uint32Array.from({ length: n }, (_, i) => (i * 104729) % 256);
  const stepOf =
    ({ model, opt }: (typeof models)[number]) =>
    (inp: { ids: Tensor<"u32">; targets: Tensor<"u32"> }) => {
      const loss = model.loss(inp.ids, inp.targets);
      backward(loss);
      opt.applyStep();
      model.zeroGrad();
      return { loss };
    };
  // Eager: the inputs are written the way the trainer writes them (fresh tensors per step).
  const eagerStep = stepOf(models[0]!);
  const eager = () =>
    scope(() => {
      const i = dev.tensor(ids, [c.batch, c.seq], "u32");
      const t = dev.tensor(targets, [c.batch, c.seq], "u32");
      models[0]!.opt.prepareStep(1e-3);
      eagerStep({ ids: i, targets: t });
    });
  const spec = { shape: [c.batch, c.seq], dtype: "u32" as const };
  using step = captureStep(dev, { ids: spec, targets: spec }, stepOf(models[1]!));
  const captured = () => {
    models[1]!.opt.prepareStep(1e-3);
    step.run({ ids, targets }).loss.dispose();
  };
  // Warm-up: compile pipelines, make the capture (its first run is ordinary, its second records).
  for (let i = 0; i < 2; i++) {
    eager();
    captured();
    await dev.flush();
  }
  const d0 = dev.stats().dispatches;
  eager();
  await dev.flush();
  const eagerDispatches = dev.stats().dispatches - d0;
  const e: Timing[] = [], k: Timing[] = [];
  for (let r = 0; r < rounds; r++) {
    e.push(...await timeSteps(dev, eager));
    k.push(...await timeSteps(dev, captured));
  }
  for (const m of models) {
    m.opt.dispose();
    m.model.dispose();
  }
  const med = (ts: Timing[], f: keyof Timing) => median(ts.map((t) => t[f]));
  const row = {
    device: dev.kind,
    model: c.name,
    sparsity,
    batch: c.batch,
    seq: c.seq,
    eagerDispatches,
    capturedDispatches: step.stats!.dispatches,
    eagerHostMs: med(e, "hostMs"),
    capturedHostMs: med(k, "hostMs"),
    eagerStepMs: med(e, "stepMs"),
    capturedStepMs: med(k, "stepMs"),
    eagerTokensPerSecond: n / (med(e, "stepMs") / 1000),
    capturedTokensPerSecond: n / (med(k, "stepMs") / 1000),
    plan: step.stats,
  };
  console.log(
    `${dev.kind.padEnd(6)} ${c.name} ${c.batch}×${c.seq}: host ms/step ${
      row.eagerHostMs.toFixed(2)
    } → ${row.capturedHostMs.toFixed(2)} (${(row.eagerHostMs / row.capturedHostMs).toFixed(1)}×, ${
      (1000 * row.eagerHostMs / eagerDispatches).toFixed(1)
    } → ${(1000 * row.capturedHostMs / row.capturedDispatches).toFixed(1)} µs/launch); ` +
      `step ms ${row.eagerStepMs.toFixed(1)} → ${row.capturedStepMs.toFixed(1)}; tokens/s ${
        row.eagerTokensPerSecond.toFixed(0)
      } → ${row.capturedTokensPerSecond.toFixed(0)} (${
        (row.capturedTokensPerSecond / row.eagerTokensPerSecond).toFixed(2)
      }×); launches ${eagerDispatches}/${row.capturedDispatches}; buffers ${step.stats!.buffers} ` +
      `for ${step.stats!.intermediates} temporaries (${
        (step.stats!.plannedBytes / 2 ** 20).toFixed(1)
      } vs ${(step.stats!.unplannedBytes / 2 ** 20).toFixed(1)} MiB)`,
  );
  return row;
}

const rows: Record<string, unknown>[] = [];
const load0 = Deno.loadavg();
for (const kind of args.devices!.split(",")) {
  let dev: Device;
  try {
    dev = await openDevice({ prefer: kind as "native" | "webgpu" | "cpu" });
  } catch (e) {
    console.warn(`${kind}: ${(e as Error).message}`);
    continue;
  }
  console.log(`# ${dev.description}`);
  for (const c of cases) rows.push({ description: dev.description, ...await bench(dev, c) });
  dev.destroy();
}
console.log(
  `load average before ${load0.map((x) => x.toFixed(1))}, after ${
    Deno.loadavg().map((x) => x.toFixed(1))
  }`,
);
if (!args["no-write"]) {
  await Deno.mkdir("results/bench", { recursive: true });
  await writeJsonAtomic("results/bench/capture.json", {
    date: new Date().toISOString(),
    code: await codeVersion(),
    loadavg: { before: load0, after: Deno.loadavg() },
    rounds,
    stepsPerRound,
    rows,
  });
}
