/**
 * The engine against the previous one, in one process and one run (issue 12's measurement):
 * the kit of this checkout and the kit of an older checkout (`--old DIR`, e.g. a `git worktree`
 * of the commit before the engine work) each open their own WebGPU device, and rounds alternate
 * between them. Per engine: host µs per trivial dispatch (1,000 unfused elementwise ops on 16
 * floats, ten such chains per flush), the 1,000-op elementwise chain on 4,096 floats (µs per op: one chain per flush,
 * and ten chains per flush so Deno's 10 ms readiness poll is shared as in a loop), dispatches per
 * training step, and training tokens/s (forward + backward + AdamW, `--steps` steps per flush as
 * the trainer does between log points). The new engine trains the way the trainer does on
 * WebGPU: kernel variants autotuned after the first step (in a fresh cache folder), then a
 * captured step replayed; the old one as ordinary code.
 * Step times are reported as medians and as the fastest round of each engine (the round least
 * disturbed by other load). Writes results/bench/engine_ab.json.
 *
 * Run: `git worktree add /tmp/kit-old <commit> && deno run -A bench/engine_ab.ts --old /tmp/kit-old
 * [--cases tiny:32x128,s:32x128] [--rounds 3] [--steps 4] [--no-write]`
 */
import { parseArgs } from "node:util";
import { codeVersion, median, writeJsonAtomic } from "./timing.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    old: { type: "string" },
    cases: { type: "string", default: "tiny:32x128,s:32x128" },
    sparsity: { type: "string", default: "0.5" },
    rounds: { type: "string", default: "3" },
    steps: { type: "string", default: "4" },
    "no-write": { type: "boolean", default: false },
  },
});
if (!args.old) {
  throw new Error("engine_ab: --old DIR (a checkout of the previous engine) is required");
}
const rounds = Number(args.rounds), steps = Number(args.steps), sparsity = Number(args.sparsity);
const cases = args.cases!.split(",").map((c) => {
  const [name, size] = c.split(":");
  const [b, t] = size!.split("x").map(Number);
  return { name: name!, batch: b!, seq: t! };
});

// deno-lint-ignore no-explicit-any
type Any = any;
interface Engine {
  label: string;
  kit: Any;
  nn: Any;
  optim: Any;
  dev: Any;
  unfused: Any;
}

async function load(label: string, dir: string): Promise<Engine> {
  const root = new URL(dir.endsWith("/") ? dir : dir + "/", `file://${Deno.cwd()}/`);
  const kit = await import(new URL("mod.ts", root).href);
  const nn = await import(new URL("src/nn/mod.ts", root).href);
  const optim = await import(new URL("src/train/optimizer.ts", root).href);
  const dev = await kit.openDevice({ prefer: "webgpu" });
  // Host cost per dispatch needs dispatches: the new engine would fuse the trivial chain into
  // one kernel, so it is measured on a device that does not fuse (the old one ignores `fuse`).
  const unfused = await kit.openDevice({ prefer: "webgpu", fuse: false });
  return { label, kit, nn, optim, dev, unfused };
}

/**
 * µs per op of the 1,000-op chain on `n` floats (median of 5 after a warm-up): `chains` chains
 * issued, then one flush. Each chain's result is kept until after the flush, so a fused engine
 * must compute and write it (a chain whose result is dropped would be skipped entirely). With
 * `chains` = 1 the time includes the flush's wait (≥ 10 ms on Deno, whose readiness poll sleeps
 * 10 ms); with more, that wait is shared, as in a loop that does not await the device.
 */
async function chain(e: Engine, n: number, chains = 1, dev = e.dev): Promise<number> {
  const { kit } = e;
  const x = dev.randn([n], { seed: 1 });
  const run = async () => {
    const ys = [];
    for (let c = 0; c < chains; c++) {
      ys.push(kit.scope(() => {
        let y = x;
        for (let i = 0; i < 1000; i++) y = i % 2 ? kit.add(y, x) : kit.mulScalar(y, 0.5);
        return y;
      }));
    }
    await dev.flush();
    for (const y of ys) y.dispose();
  };
  await run();
  const ts: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    await run();
    ts.push(performance.now() - t0);
  }
  x.dispose();
  return (median(ts) * 1000) / (1000 * chains);
}

interface Trainer {
  step(): void;
  dispatches: number;
  dispose(): void;
}

async function trainer(e: Engine, c: (typeof cases)[number]): Promise<Trainer> {
  const { kit, nn, optim, dev } = e;
  const model = new nn.TransformerLM(dev, nn.modelConfig(c.name, { sparsity, seqLen: c.seq }), 1);
  for (const s of model.sites()) s.countEnabled = false;
  const opt = new optim.AdamW(dev, model.namedParameters());
  const n = c.batch * c.seq;
  const ids = Uint32Array.from({ length: n }, (_, i) => (i * 7919) % 256);
  const targets = Uint32Array.from({ length: n }, (_, i) => (i * 104729) % 256);
  const shape = [c.batch, c.seq];
  let step: () => void, dispose = () => {};
  if (kit.captureStep && opt.prepareStep) {
    const spec = { shape, dtype: "u32" };
    const cap = kit.captureStep(dev, { ids: spec, targets: spec }, (inp: Any) => {
      const loss = model.loss(inp.ids, inp.targets);
      kit.backward(loss);
      opt.applyStep();
      model.zeroGrad();
      return { loss };
    });
    step = () => {
      opt.prepareStep(1e-3);
      cap.run({ ids, targets }).loss.dispose();
    };
    dispose = () => cap.dispose();
  } else {
    step = () =>
      kit.scope(() => {
        const i = dev.tensor(ids, shape, "u32"), t = dev.tensor(targets, shape, "u32");
        kit.backward(model.loss(i, t));
        opt.step(1e-3);
        model.zeroGrad();
      });
  }
  // Warm-up: pipelines, and the capture's ordinary, recording and first replayed runs. An engine
  // that autotunes measures its kernel variants after the first step, as the trainer does (in a
  // fresh cache folder, so no earlier run's choices carry over), before the step is recorded.
  step();
  await dev.flush();
  if (dev.autotune) await dev.autotune();
  for (let i = 0; i < 2; i++) step();
  await dev.flush();
  const d0 = dev.stats().dispatches;
  step();
  await dev.flush();
  const dispatches = dev.stats().dispatches - d0;
  return {
    step,
    dispatches,
    dispose: () => {
      dispose();
      opt.dispose();
      model.dispose();
    },
  };
}

/** Chains per flush of the steady-state chain measurement. */
const STEADY_CHAINS = 10;
const cacheDir = await Deno.makeTempDir({ prefix: "qsparse-engine-ab-" });
Deno.env.set("QSPARSE_CACHE_DIR", cacheDir);
const engines = [await load("old", args.old), await load("new", ".")];
const rows: Record<string, unknown>[] = [];
const trivial: Record<string, number[]> = { old: [], new: [] };
const chain4096: Record<string, number[]> = { old: [], new: [] };
const chain4096Steady: Record<string, number[]> = { old: [], new: [] };
for (let r = 0; r < rounds; r++) {
  for (const e of engines) {
    trivial[e.label]!.push(await chain(e, 16, STEADY_CHAINS, e.unfused));
    chain4096[e.label]!.push(await chain(e, 4096));
    chain4096Steady[e.label]!.push(await chain(e, 4096, STEADY_CHAINS));
  }
}
for (const c of cases) {
  const ts: Record<string, number[]> = { old: [], new: [] };
  const ds: Record<string, number> = {};
  const ts2 = await Promise.all(engines.map((e) => trainer(e, c)));
  engines.forEach((e, i) => (ds[e.label] = ts2[i]!.dispatches));
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < engines.length; i++) {
      const t0 = performance.now();
      for (let s = 0; s < steps; s++) ts2[i]!.step();
      await engines[i]!.dev.flush();
      ts[engines[i]!.label]!.push((performance.now() - t0) / steps);
    }
  }
  ts2.forEach((t) => t.dispose());
  const tokens = c.batch * c.seq;
  const row = {
    model: c.name,
    batch: c.batch,
    seq: c.seq,
    sparsity,
    dispatchesOld: ds.old,
    dispatchesNew: ds.new,
    stepMsOld: median(ts.old!),
    stepMsNew: median(ts.new!),
    tokensPerSecondOld: tokens / (median(ts.old!) / 1000),
    tokensPerSecondNew: tokens / (median(ts.new!) / 1000),
    speedup: median(ts.old!) / median(ts.new!),
    // The fastest round of each: the least disturbed by other load on the machine.
    stepMsOldMin: Math.min(...ts.old!),
    stepMsNewMin: Math.min(...ts.new!),
    speedupOfMinima: Math.min(...ts.old!) / Math.min(...ts.new!),
    stepMsOldRounds: ts.old!,
    stepMsNewRounds: ts.new!,
  };
  rows.push(row);
  console.log(
    `${c.name} ${c.batch}×${c.seq}: dispatches/step ${row.dispatchesOld} → ${row.dispatchesNew}; ` +
      `step ${row.stepMsOld.toFixed(0)} → ${row.stepMsNew.toFixed(0)} ms (${
        row.speedup.toFixed(2)
      }× of medians, ${row.speedupOfMinima.toFixed(2)}× of the fastest rounds)`,
  );
}
const summary = {
  usPerDispatchTrivialOld: median(trivial.old!),
  usPerDispatchTrivialNew: median(trivial.new!),
  usPerOpChain4096Old: median(chain4096.old!),
  usPerOpChain4096New: median(chain4096.new!),
  steadyChainsPerFlush: STEADY_CHAINS,
  usPerOpChain4096SteadyOld: median(chain4096Steady.old!),
  usPerOpChain4096SteadyNew: median(chain4096Steady.new!),
};
console.log(
  `trivial dispatch ${summary.usPerDispatchTrivialOld.toFixed(1)} → ` +
    `${summary.usPerDispatchTrivialNew.toFixed(1)} µs; 1,000-op chain on 4,096 floats ` +
    `${summary.usPerOpChain4096Old.toFixed(1)} → ${summary.usPerOpChain4096New.toFixed(1)} µs/op ` +
    `(${(summary.usPerOpChain4096Old / summary.usPerOpChain4096New).toFixed(1)}×); ` +
    `${STEADY_CHAINS} chains per flush ${summary.usPerOpChain4096SteadyOld.toFixed(1)} → ` +
    `${summary.usPerOpChain4096SteadyNew.toFixed(1)} µs/op (${
      (summary.usPerOpChain4096SteadyOld / summary.usPerOpChain4096SteadyNew).toFixed(1)
    }×) ` +
    `(${engines[1]!.dev.description})`,
);
if (!args["no-write"]) {
  await Deno.mkdir("results/bench", { recursive: true });
  await writeJsonAtomic("results/bench/engine_ab.json", {
    date: new Date().toISOString(),
    code: await codeVersion(),
    old: args.old,
    adapter: engines[1]!.dev.description,
    loadavg: Deno.loadavg(),
    rounds,
    stepsPerFlush: steps,
    ...summary,
    rows,
  });
}
for (const e of engines) {
  e.dev.destroy();
  e.unfused.destroy();
}
await Deno.remove(cacheDir, { recursive: true });
