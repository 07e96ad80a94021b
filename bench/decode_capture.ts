/**
 * Captured against ordinary decode steps, in one run: for each model and variant, KV-cache decoding
 * with sampling on the device, as ordinary code (`Decoder.step` + `sampleTokens`, what
 * `generate({ capture: false })` runs) and as the replay of `Decoder.loop` (what `generate` runs
 * on WebGPU), in alternating rounds of `steps` tokens with one wait per round. Reports host ms
 * per step (until the loop returns), ms per step with the device finished, tokens/s, launches per
 * step and the ratio. On a GPU a decode step is bound by its launches' host cost; on a CPU
 * adapter by the kernels.
 *
 * Run: `deno run -A bench/decode_capture.ts [--device webgpu|native|cpu] [--models quick,big]
 * [--batch 1] [--steps 32] [--rounds 5]`. Writes results/bench/capture_decode.json (not
 * `decode_*.json`: notebook 06 reads those as bench/decode.ts tables).
 */
import { parseArgs } from "node:util";
import { type Device, openDevice, sampleTokens } from "../mod.ts";
import { Decoder, modelConfig, TransformerLM } from "../src/nn/mod.ts";
import { codeVersion, median, writeJsonAtomic } from "./timing.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    device: { type: "string", default: "webgpu" },
    models: { type: "string", default: "quick,big" },
    batch: { type: "string", default: "1" },
    steps: { type: "string", default: "32" },
    rounds: { type: "string", default: "5" },
  },
});
const dev: Device = await openDevice({ prefer: args.device as "webgpu" | "native" | "cpu" });
const b = Number(args.batch), steps = Number(args.steps), rounds = Number(args.rounds);
const SIZES: Record<string, { dModel: number; nLayers: number; nHeads: number; dFF: number }> = {
  quick: { dModel: 256, nLayers: 2, nHeads: 4, dFF: 672 },
  big: { dModel: 1024, nLayers: 8, nHeads: 16, dFF: 2688 },
};
const prompt = Array.from({ length: 16 }, (_, i) => (i * 7 + 1) % 256);
const capacity = prompt.length + (2 * rounds + 3) * steps + 4;
console.log(`# ${dev.description}; batch ${b}, ${rounds} rounds of ${steps} steps`);

interface Side {
  round(): Promise<{ host: number; total: number; launches: number }>;
  close(): void;
}

/** One decode session, ordinary or captured, with its own cache and id buffers. */
function session(model: TransformerLM, sparse: boolean, captured: boolean): Side {
  const dec = new Decoder(model, b, capacity, { sparse });
  const next = dev.empty([b], "u32"), hist = dev.empty([steps, b], "u32");
  const l = dec.prefill(Array.from({ length: b }, () => prompt));
  sampleTokens(l, {}, { next, history: hist, slot: 0 });
  l.dispose();
  const loop = captured ? dec.loop({ next, history: hist }) : null;
  let step = 1;
  return {
    async round() {
      await dev.flush();
      const d0 = dev.stats().dispatches, t0 = performance.now();
      for (let s = 0; s < steps; s++, step++) {
        if (loop) loop.run(step, s);
        else {
          using col = next.reshape([b, 1]);
          const logits = dec.step(col);
          sampleTokens(logits, { step }, { next, history: hist, slot: s });
          logits.dispose();
        }
      }
      const host = performance.now() - t0;
      const launches = dev.stats().dispatches - d0;
      await dev.flush();
      return {
        host: host / steps,
        total: (performance.now() - t0) / steps,
        launches: launches / steps,
      };
    },
    close() {
      loop?.dispose();
      next.dispose();
      hist.dispose();
      dec.dispose();
    },
  };
}

const rows: Record<string, unknown>[] = [];
for (const name of args.models.split(",")) {
  for (const s of [0, 0.5]) {
    const model = new TransformerLM(
      dev,
      modelConfig(`decode-${name}`, { ...SIZES[name]!, vocab: 256, seqLen: capacity, sparsity: s }),
      1,
    );
    for (const site of model.sites()) site.countEnabled = false;
    const eager = session(model, s > 0, false), cap = session(model, s > 0, true);
    // Warm-up: pipelines, pools, and the captured side's warm-up, recorded and verified runs.
    await eager.round();
    await cap.round();
    const e: { host: number; total: number; launches: number }[] = [];
    const c: typeof e = [];
    for (let r = 0; r < rounds; r++) {
      e.push(await eager.round());
      c.push(await cap.round());
    }
    eager.close();
    cap.close();
    model.dispose();
    const m = (xs: typeof e, k: "host" | "total" | "launches") => median(xs.map((x) => x[k]));
    const row = {
      model: name,
      sparsity: s,
      batch: b,
      eagerHostMs: m(e, "host"),
      capturedHostMs: m(c, "host"),
      eagerStepMs: m(e, "total"),
      capturedStepMs: m(c, "total"),
      eagerTokensPerSecond: (1000 * b) / m(e, "total"),
      capturedTokensPerSecond: (1000 * b) / m(c, "total"),
      launchesPerStep: m(e, "launches"),
    };
    rows.push(row);
    console.log(
      `${name} S=${s}: host ms/step ${row.eagerHostMs.toFixed(2)} → ${
        row.capturedHostMs.toFixed(2)
      }; step ms ${row.eagerStepMs.toFixed(2)} → ${row.capturedStepMs.toFixed(2)} (${
        (row.eagerStepMs / row.capturedStepMs).toFixed(2)
      }×); ${row.launchesPerStep} launches a step`,
    );
  }
}
await Deno.mkdir("results/bench", { recursive: true });
await writeJsonAtomic("results/bench/capture_decode.json", {
  adapter: dev.description,
  kind: dev.kind,
  date: new Date().toISOString(),
  code: await codeVersion(),
  loadavg: Deno.loadavg(),
  steps,
  rounds,
  rows,
});
