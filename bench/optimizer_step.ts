/**
 * The multi-tensor optimizer against the per-tensor one it replaced, measured in one run: per
 * model and backend, dispatches per training step, training step time and the optimizer step
 * alone (gradients in place, 10 `opt.step` per flush), each arm run in alternating rounds on the
 * same model so the machine's drift hits both. The per-tensor arm is the previous AdamW.step,
 * kept here as the baseline. Writes results/bench/optimizer_step.json (unless `--no-write`).
 *
 * Run: `deno run -A bench/optimizer_step.ts [tiny:0.5 s:0.5 ...] [--device webgpu|native]
 *   [--rounds 3] [--steps 2]`
 */
import { parseArgs } from "node:util";
import { backward, type Device, openDevice, scope, type Tensor } from "../mod.ts";
import { adamwDispatch, clipScaleDispatch, sqNormDispatch } from "../kernels/optim.ts";
import { modelConfig, TransformerLM } from "../src/nn/mod.ts";
import { AdamW } from "../src/train/optimizer.ts";
import { modelCases } from "./ab_steps.ts";
import { codeVersion, median, writeJsonAtomic } from "./timing.ts";

/** The optimizer step before the multi-tensor kernels: two dispatches per parameter. */
class PerTensorAdamW {
  readonly m: Tensor<"f32">[];
  readonly v: Tensor<"f32">[];
  readonly sq: Tensor<"f32">;
  readonly res: Tensor<"f32">;
  t = 0;
  constructor(readonly dev: Device, readonly params: Tensor<"f32">[]) {
    this.m = params.map((p) => dev.zeros(p.shape));
    this.v = params.map((p) => dev.zeros(p.shape));
    this.sq = dev.zeros([params.length]);
    this.res = dev.tensor([0, 1]);
  }
  step(lr: number): void {
    this.t++;
    const [beta1, beta2, eps, wd] = [0.9, 0.95, 1e-8, 0.1];
    const sq = this.sq.storage("bench"), res = this.res.storage("bench");
    this.params.forEach((p, slot) => {
      if (p.grad) this.dev.run(sqNormDispatch(p.grad.storage("bench"), p.size, sq, slot));
    });
    this.dev.run(clipScaleDispatch(sq, this.params.length, 1, res));
    const bc1 = 1 - beta1 ** this.t, bc2 = 1 - beta2 ** this.t;
    this.params.forEach((p, i) => {
      if (!p.grad) return;
      this.dev.run(adamwDispatch(
        { lr, beta1, beta2, eps, weightDecay: p.rank >= 2 ? wd : 0, bc1, bc2 },
        p.size,
        p.storage("bench"),
        this.m[i]!.storage("bench"),
        this.v[i]!.storage("bench"),
        p.grad.storage("bench"),
        res,
      ));
    });
  }
  dispose(): void {
    for (const t of [...this.m, ...this.v, this.sq, this.res]) t.dispose();
  }
}

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    device: { type: "string", multiple: true },
    rounds: { type: "string", default: "3" },
    steps: { type: "string", default: "2" },
    "no-write": { type: "boolean", default: false },
  },
});
const cases = modelCases(positionals, ["tiny:0.5", "s:0.5"]);
const kinds = (values.device ?? ["webgpu", "native"]) as ("webgpu" | "native")[];
const rounds = Number(values.rounds), steps = Number(values.steps);
const batch = 32, seq = 128;
/** Optimizer steps per flush when the optimizer is timed alone. */
const OPT_STEPS = 10;

const rows: Record<string, unknown>[] = [];
for (const kind of kinds) {
  const dev = await openDevice({ prefer: kind });
  for (const c of cases) {
    const model = new TransformerLM(
      dev,
      modelConfig(c.name, { sparsity: c.sparsity, seqLen: seq }),
      1,
    );
    for (const s of model.sites()) s.countEnabled = false;
    const named = model.namedParameters();
    const arms = {
      perTensor: new PerTensorAdamW(dev, [...named.values()]),
      grouped: new AdamW(dev, named),
    };
    const ids = dev.tensor(
      Uint32Array.from({ length: batch * seq }, (_, i) => (i * 7919) % 256),
      [batch, seq],
      "u32",
    );
    const tg = dev.tensor(
      Uint32Array.from({ length: batch * seq }, (_, i) => (i * 104729) % 256),
      [batch, seq],
      "u32",
    );
    const trainStep = (opt: { step(lr: number): void }) =>
      scope(() => {
        backward(model.loss(ids, tg));
        opt.step(1e-3);
        model.zeroGrad();
      });
    const stats: Record<string, { dispatches: number; stepMs: number[]; optMs: number[] }> = {};
    for (const [arm, opt] of Object.entries(arms)) {
      trainStep(opt); // compiles the pipelines
      await dev.flush();
      const d0 = dev.stats().dispatches;
      trainStep(opt);
      await dev.flush();
      stats[arm] = { dispatches: dev.stats().dispatches - d0, stepMs: [], optMs: [] };
    }
    for (let r = 0; r < rounds; r++) {
      // Alternate which arm goes first, so a trend in the machine's load favours neither.
      const order = Object.entries(arms);
      if (r % 2) order.reverse();
      for (const [arm, opt] of order) {
        for (let i = 0; i < steps; i++) {
          const t0 = performance.now();
          trainStep(opt);
          await dev.flush();
          stats[arm]!.stepMs.push(performance.now() - t0);
        }
      }
      // The optimizer alone: one backward leaves gradients in place, then only opt.step runs,
      // OPT_STEPS times per flush (a flush alone costs ≥ 10 ms on Deno's WebGPU).
      scope(() => backward(model.loss(ids, tg)));
      await dev.flush();
      if (![...named.values()].every((p) => p.grad)) throw new Error("gradients were freed");
      for (const [arm, opt] of order) {
        const t0 = performance.now();
        for (let i = 0; i < OPT_STEPS; i++) opt.step(1e-3);
        await dev.flush();
        stats[arm]!.optMs.push((performance.now() - t0) / OPT_STEPS);
      }
      model.zeroGrad();
    }
    const [a, b] = [stats.perTensor!, stats.grouped!];
    const row = {
      device: kind,
      description: dev.description,
      model: c.name,
      sparsity: c.sparsity,
      params: named.size,
      dispatchesPerStep: { perTensor: a.dispatches, grouped: b.dispatches },
      stepMs: { perTensor: median(a.stepMs), grouped: median(b.stepMs) },
      optimizerMs: { perTensor: median(a.optMs), grouped: median(b.optMs) },
      stepSpeedup: median(a.stepMs) / median(b.stepMs),
      optimizerSpeedup: median(a.optMs) / median(b.optMs),
      loadavg: Deno.loadavg(),
    };
    rows.push(row);
    console.log(
      `${kind} ${c.name} S=${c.sparsity} (${named.size} params): dispatches/step ` +
        `${a.dispatches} → ${b.dispatches}; step ${row.stepMs.perTensor.toFixed(1)} → ` +
        `${row.stepMs.grouped.toFixed(1)} ms (${row.stepSpeedup.toFixed(2)}×); optimizer ` +
        `${row.optimizerMs.perTensor.toFixed(2)} → ${row.optimizerMs.grouped.toFixed(2)} ms ` +
        `(${row.optimizerSpeedup.toFixed(2)}×); load ${
          row.loadavg.map((x) => x.toFixed(1)).join(" ")
        }`,
    );
    arms.perTensor.dispose();
    arms.grouped.dispose();
    ids.dispose();
    tg.dispose();
    model.dispose();
  }
  dev.destroy();
}
if (!values["no-write"]) {
  await Deno.mkdir("results/bench", { recursive: true });
  await writeJsonAtomic("results/bench/optimizer_step.json", {
    date: new Date().toISOString(),
    code: await codeVersion(),
    batch,
    seq,
    rounds,
    steps,
    optimizerStepsPerFlush: OPT_STEPS,
    rows,
  });
}
