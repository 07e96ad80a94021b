/**
 * Training speed: tokens/s for a few configs, and the step time against the sum of its kernels'
 * device times (timestamp queries, one compute pass per dispatch). Also counts readbacks per step
 * (the trainer reads the loss once per `logEvery` steps). Writes results/bench/train_speed.json.
 *
 * Run: `deno run -A bench/train_speed.ts [tiny:0.5 s:0.5 ...] [--no-autotune]`
 */
import { backward, openDevice, scope } from "../mod.ts";
import { modelConfig, TransformerLM } from "../src/nn/mod.ts";
import { AdamW } from "../src/train/optimizer.ts";
import { codeVersion, median, writeJsonAtomic } from "./timing.ts";

const specs = Deno.args.filter((a) => !a.startsWith("--"));
const cases = (specs.length ? specs : ["tiny:0", "tiny:0.5", "s:0", "s:0.5"]).map((s) => {
  const [name, sp] = s.split(":");
  return { name: name!, sparsity: Number(sp ?? 0) };
});
const batch = 32, seq = 128, steps = 6;
const rows: Record<string, unknown>[] = [];
let adapter = "";
for (const c of cases) {
  for (const profile of [false, true]) {
    const dev = await openDevice({ profile });
    adapter = dev.description;
    const model = new TransformerLM(
      dev,
      modelConfig(c.name, { sparsity: c.sparsity, seqLen: seq }),
      1,
    );
    for (const s of model.sites()) s.countEnabled = false;
    const opt = new AdamW(dev, model.namedParameters());
    const ids = dev.tensor(Uint32Array.from({ length: batch * seq }, (_, i) => (i * 7919) % 256), [
      batch,
      seq,
    ], "u32");
    const tg = dev.tensor(Uint32Array.from({ length: batch * seq }, (_, i) => (i * 104729) % 256), [
      batch,
      seq,
    ], "u32");
    const step = () =>
      scope(() => {
        const loss = model.loss(ids, tg);
        backward(loss);
        opt.step(1e-3);
        model.zeroGrad();
      });
    step();
    await dev.flush();
    // Kernel variants measured on this adapter for the classes the warm-up step met (WebGPU;
    // a no-op elsewhere); the timed steps below then run the choices. The profiled pass reuses
    // them from the disk cache (profiling takes the timestamp queries, so it would tune on the
    // slower wall clock).
    if (!profile && !Deno.args.includes("--no-autotune")) await dev.autotune();
    dev.backend.resetProfile();
    const submits0 = dev.stats().submits, dispatches0 = dev.stats().dispatches;
    const times: number[] = [];
    for (let i = 0; i < steps; i++) {
      const t0 = performance.now();
      step();
      await dev.flush();
      times.push(performance.now() - t0);
    }
    const stepMs = median(times);
    const dispatches = (dev.stats().dispatches - dispatches0) / steps;
    const submits = (dev.stats().submits - submits0) / steps;
    const prof = dev.profile();
    if (!profile) {
      rows.push({
        model: c.name,
        sparsity: c.sparsity,
        stepMs,
        tokensPerSecond: (batch * seq) / (stepMs / 1000),
        dispatchesPerStep: dispatches,
        submitsPerStep: submits,
      });
    } else if (prof) {
      const kernelMs = [...prof.values()].reduce((a, k) => a + k.ns, 0) / 1e6 / steps;
      const top = [...prof.entries()].sort((a, b) => b[1].ns - a[1].ns).slice(0, 8)
        .map(([op, k]) => ({ op, msPerStep: k.ns / 1e6 / steps, calls: k.count / steps }));
      const row = rows[rows.length - 1]!;
      Object.assign(row, {
        kernelMsPerStep: kernelMs,
        stepOverKernels: (row.stepMs as number) / kernelMs,
        topKernels: top,
      });
    }
    opt.dispose();
    model.dispose();
    dev.destroy();
  }
}
console.log(`adapter: ${adapter}; batch ${batch} × seq ${seq}`);
console.log(
  "| model | S | step ms | tokens/s | Σ kernel ms | step / Σ kernels | dispatches | submits |",
);
console.log("|---|---|---|---|---|---|---|---|");
for (const r of rows) {
  const f = (k: string, d = 1) => (typeof r[k] === "number" ? (r[k] as number).toFixed(d) : "-");
  console.log(
    `| ${r.model} | ${r.sparsity} | ${f("stepMs")} | ${f("tokensPerSecond", 0)} | ${
      f("kernelMsPerStep")
    } | ${f("stepOverKernels", 2)} | ${f("dispatchesPerStep", 0)} | ${f("submitsPerStep", 1)} |`,
  );
}
for (const r of rows) {
  console.log(
    `${r.model} S=${r.sparsity} top kernels:`,
    (r.topKernels as { op: string; msPerStep: number }[] | undefined)?.map((k) =>
      `${k.op} ${k.msPerStep.toFixed(1)}ms`
    ).join(", "),
  );
}
if (!Deno.args.includes("--no-write")) {
  await Deno.mkdir("results/bench", { recursive: true });
  await writeJsonAtomic("results/bench/train_speed.json", {
    adapter,
    date: new Date().toISOString(),
    code: await codeVersion(),
    batch,
    seq,
    rows,
  });
}
