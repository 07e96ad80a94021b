/**
 * End-to-end decode speed: tokens/s of KV-cache decoding at batch 1, 4, 16 and 64 and prefill
 * tokens/s, for a dense model, Q-Sparse at S ∈ {.4, .5, .6, .7, .8} (sparse-activation kernels:
 * only the kept rows of W are read) and BitNet b1.58 + Q-Sparse (int8 × packed ternary), on a
 * model where reading W dominates (d = 1024, 8 layers, dFF = 2688, random weights). Each figure
 * stands next to its memory-bandwidth bound: bytes of W read per step ÷ the bandwidth measured
 * in the same run (the faster of a large device copy and a dense GEMV over a 64 MB matrix).
 *
 * Speed-ups are medians of per-round ratios, the variant and dense decoding in alternating rounds
 * (so load from other processes hits both alike). Random weights are fine for speed: top-K keeps
 * K of every row whatever the values. The Q-Sparse rows decode the dense model's weights with
 * `sparsity: S` (the same kernels a Q-Sparse-trained model runs). Sampling (greedy, on the
 * device) is included in every step.
 *
 * On WebGPU the decode step is captured and replayed (`Decoder.loop`, as `generate` runs it;
 * `--no-capture` times ordinary steps).
 *
 * Run: `deno run -A bench/decode.ts [--device auto|webgpu|native|cpu] [--quick] [--steps N]
 *   [--rounds R] [--batches 1,4,16,64] [--sparsities .4,.5,.6,.7,.8] [--no-capture] [--no-write]`
 * Writes results/bench/decode_<kind>.json (`--quick`: d = 256, 2 layers; writes
 * decode_<kind>_quick.json).
 */
import { parseArgs } from "node:util";
import { type Device, matmul, openDevice, sampleTokens } from "../mod.ts";
import { Decoder, modelConfig, TransformerLM } from "../src/nn/mod.ts";
import { codeVersion, median, writeJsonAtomic } from "./timing.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    device: { type: "string", default: "auto" },
    quick: { type: "boolean", default: false },
    steps: { type: "string" },
    rounds: { type: "string" },
    batches: { type: "string", default: "1,4,16,64" },
    sparsities: { type: "string", default: "0.4,0.5,0.6,0.7,0.8" },
    prompt: { type: "string", default: "128" },
    "no-write": { type: "boolean", default: false },
    "no-capture": { type: "boolean", default: false },
  },
});
const kind = values.device as "auto" | "webgpu" | "native" | "cpu";
const dev: Device = await openDevice(kind === "auto" ? {} : { prefer: kind });
const quick = values.quick;
const capture = dev.kind === "webgpu" && !values["no-capture"];
const size = quick
  ? { dModel: 256, nLayers: 2, nHeads: 4, dFF: 672 }
  : { dModel: 1024, nLayers: 8, nHeads: 16, dFF: 2688 };
const steps = Number(values.steps ?? (quick ? 8 : 16));
const rounds = Number(values.rounds ?? (quick ? 3 : 5));
const batches = values.batches.split(",").map(Number);
const sparsities = values.sparsities.split(",").map(Number);
const promptLen = Number(values.prompt);
const ctxLen = 16; // prompt length before the timed decode steps
const seqLen = Math.max(promptLen, ctxLen + steps + 4);

console.log(`device: ${dev.kind} — ${dev.description}`);
console.log(
  `model: d=${size.dModel}, ${size.nLayers} layers, dFF=${size.dFF}, heads=${size.nHeads}; ` +
    `${rounds} rounds of ${steps} timed decode steps after a ${ctxLen}-token prompt` +
    (capture ? "; captured decode steps" : ""),
);

// ---- memory bandwidth, measured in this run ----
async function bandwidth(): Promise<{ copyGBs: number; gemvGBs: number }> {
  // Capped at the device's largest buffer (llvmpipe allows 128 MiB per binding).
  const lim = Math.min(
    dev.backend.limits.maxBufferSize,
    dev.backend.limits.maxStorageBufferBindingSize,
  );
  const bytes = Math.min(quick ? 32 << 20 : 256 << 20, Math.floor(lim / 16) * 16);
  const src = dev.empty([bytes / 4], "f32"), dst = dev.empty([bytes / 4], "f32");
  dev.backend.copy(src.storage("bench"), 0, dst.storage("bench"), 0, bytes);
  await dev.flush();
  const tc: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    dev.backend.copy(src.storage("bench"), 0, dst.storage("bench"), 0, bytes);
    await dev.flush();
    tc.push(performance.now() - t0);
  }
  src.dispose();
  dst.dispose();
  // A dense GEMV over a 64 MB matrix (16 MB in quick mode): the kernel decode itself runs.
  const rows = quick ? 1024 : 2048, cols = quick ? 4096 : 8192;
  const w = dev.randn([rows, cols], { seed: 1 }), x = dev.randn([1, rows], { seed: 2 });
  const reps = 8;
  matmul(x, w).dispose();
  await dev.flush();
  const tg: number[] = [];
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) matmul(x, w).dispose();
    await dev.flush();
    tg.push((performance.now() - t0) / reps);
  }
  w.dispose();
  x.dispose();
  return {
    copyGBs: (2 * bytes) / (median(tc) / 1000) / 1e9,
    gemvGBs: (rows * cols * 4) / (median(tg) / 1000) / 1e9,
  };
}
// Measured before and after the decode runs; the best of each is kept (a busy machine only
// ever makes a measurement slower).
const bw = await bandwidth();
console.log(
  `bandwidth (before): copy ${bw.copyGBs.toFixed(1)} GB/s (read + write), dense GEMV ${
    bw.gemvGBs.toFixed(1)
  } GB/s`,
);

// ---- models ----
const base = { ...size, vocab: 256, seqLen, initStd: 0.02 };
const dense = new TransformerLM(dev, modelConfig("decode-bench", base), 1);
const bitnet = new TransformerLM(dev, modelConfig("decode-bench", { ...base, bitnet: true }), 1);
for (const m of [dense, bitnet]) for (const s of m.sites()) s.countEnabled = false;

interface Variant {
  name: string;
  model: TransformerLM;
  s: number;
  sparse: boolean;
  bitnet: boolean;
}
const variants: Variant[] = [
  { name: "dense", model: dense, s: 0, sparse: false, bitnet: false },
  ...sparsities.map((s) => ({ name: `qsparse`, model: dense, s, sparse: true, bitnet: false })),
  { name: "bitnet", model: bitnet, s: 0, sparse: true, bitnet: true },
  ...[0.5, 0.6].map((s) => ({
    name: "bitnet+qsparse",
    model: bitnet,
    s,
    sparse: true,
    bitnet: true,
  })),
];

/** Bytes of weights one decode step reads: projections (rows kept by some token) + LM head. */
function bytesPerStep(v: Variant, batch: number): number {
  const d = size.dModel, f = size.dFF, L = size.nLayers;
  const proj = L * (4 * d * d + 3 * d * f);
  // Rows of W kept by at least one of `batch` tokens (independent top-K picks): 1 − S^B.
  const frac = v.sparse ? 1 - Math.pow(v.s, batch) : 1;
  const perWeight = v.bitnet ? 0.25 : 4; // packed ternary: 2 bits
  return proj * frac * perWeight + d * 256 * 4;
}

function prompts(batch: number, len: number): number[][] {
  return Array.from(
    { length: batch },
    (_, b) => Array.from({ length: len }, (_, i) => (b * 31 + i * 7 + 1) % 256),
  );
}

/**
 * A decode session: a Decoder with a prefilled prompt; each call of the returned function times
 * `steps` greedy steps (selection, kernels and on-device sampling) and returns their seconds.
 * Attention multiplies with the whole cache capacity, so every round costs the same.
 */
function session(v: Variant, batch: number): { round: () => Promise<number>; close: () => void } {
  const dec = new Decoder(v.model, batch, ctxLen + (rounds + 1) * steps + 4, {
    sparse: v.sparse,
    sparsity: v.s,
  });
  const next = dev.empty([batch], "u32");
  const hist = dev.empty([1, batch], "u32");
  let i = 0;
  const step = (logits: ReturnType<Decoder["step"]>) => {
    sampleTokens(logits, { step: i++ }, { next, history: hist, slot: 0 });
    logits.dispose();
  };
  step(dec.prefill(prompts(batch, ctxLen)));
  // As `generate` decodes: captured and replayed on WebGPU, where an ordinary step is bound by
  // its launches' host cost and would hide what the kernels differ by.
  const loop = capture ? dec.loop({ next, history: hist }) : null;
  return {
    round: async () => {
      await dev.flush();
      const t0 = performance.now();
      for (let k = 0; k < steps; k++) {
        if (loop) loop.run(i++, 0);
        else {
          using ids = next.reshape([batch, 1]);
          step(dec.step(ids));
        }
      }
      await dev.flush();
      return (performance.now() - t0) / 1000;
    },
    close: () => {
      loop?.dispose();
      next.dispose();
      hist.dispose();
      dec.dispose();
    },
  };
}

/**
 * Tokens/s of a variant and its speed-up over dense, from rounds that alternate the two (load
 * from other processes then hits both alike): the speed-up is the median of per-round ratios.
 */
async function decodeRate(v: Variant, batch: number): Promise<{ rate: number; speedup: number }> {
  const a = session(v, batch);
  const d = v.name === "dense" ? null : session(variants[0]!, batch);
  try {
    await a.round(); // warm-up: pipelines, pools
    await d?.round();
    // Kernel variants measured on this adapter for what the warm-up met (WebGPU; else a no-op).
    await dev.autotune();
    const rates: number[] = [], ratios: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const td = d ? await d.round() : 0;
      const tv = await a.round();
      rates.push((batch * steps) / tv);
      if (d) ratios.push(td / tv);
    }
    return { rate: median(rates), speedup: d ? median(ratios) : 1 };
  } finally {
    a.close();
    d?.close();
  }
}

async function prefillRate(v: Variant): Promise<number> {
  const times: number[] = [];
  for (let r = 0; r < 3; r++) {
    using dec = new Decoder(v.model, 1, promptLen, { sparse: v.sparse, sparsity: v.s });
    const t0 = performance.now();
    dec.prefill(prompts(1, promptLen)).dispose();
    await dev.flush();
    times.push(performance.now() - t0);
  }
  return promptLen / (median(times.slice(1)) / 1000);
}

interface Row {
  variant: string;
  sparsity: number;
  batch: number;
  tokensPerSecond: number;
  msPerStep: number;
  speedupVsDense: number;
  boundTokensPerSecond: number;
  fractionOfBound: number;
  weightBytesPerStep: number;
}
const rows: Row[] = [];
const prefill: Record<string, unknown>[] = [];
for (const v of variants) {
  const p = await prefillRate(v);
  prefill.push({ variant: v.name, sparsity: v.s, tokensPerSecond: p });
  for (const batch of batches) {
    const { rate, speedup } = await decodeRate(v, batch);
    const row: Row = {
      variant: v.name,
      sparsity: v.s,
      batch,
      tokensPerSecond: rate,
      msPerStep: (1000 * batch) / rate,
      speedupVsDense: speedup,
      boundTokensPerSecond: 0,
      fractionOfBound: 0,
      weightBytesPerStep: bytesPerStep(v, batch),
    };
    rows.push(row);
    console.log(
      `${v.name.padEnd(15)} S=${v.s.toFixed(1)} B=${String(batch).padStart(2)}  ` +
        `${rate.toFixed(1).padStart(8)} tok/s  ${row.msPerStep.toFixed(2).padStart(7)} ms/step  ` +
        `×${row.speedupVsDense.toFixed(2)} vs dense  prefill ${p.toFixed(0)} tok/s`,
    );
  }
}
const bw2 = await bandwidth();
bw.copyGBs = Math.max(bw.copyGBs, bw2.copyGBs);
bw.gemvGBs = Math.max(bw.gemvGBs, bw2.gemvGBs);
const gbs = Math.max(bw.copyGBs, bw.gemvGBs);
console.log(
  `bandwidth (best of before/after): copy ${bw.copyGBs.toFixed(1)} GB/s, dense GEMV ${
    bw.gemvGBs.toFixed(1)
  } GB/s → bounds use ${gbs.toFixed(1)} GB/s`,
);
for (const r of rows) {
  r.boundTokensPerSecond = (r.batch * gbs * 1e9) / r.weightBytesPerStep;
  r.fractionOfBound = r.tokensPerSecond / r.boundTokensPerSecond;
}

console.log(
  `\n| variant | S | ${batches.map((b) => `B=${b} tok/s (×dense, %bound)`).join(" | ")} |`,
);
console.log(`|---|---|${batches.map(() => "---").join("|")}|`);
for (const v of variants) {
  const cells = batches.map((b) => {
    const r = rows.find((x) => x.variant === v.name && x.sparsity === v.s && x.batch === b)!;
    const f = (k: keyof Row) => r[k] as number;
    return `${f("tokensPerSecond").toFixed(0)} (×${f("speedupVsDense").toFixed(2)}, ${
      (100 * f("fractionOfBound")).toFixed(0)
    }%)`;
  });
  console.log(`| ${v.name} | ${v.s} | ${cells.join(" | ")} |`);
}

if (!values["no-write"]) {
  await Deno.mkdir("results/bench", { recursive: true });
  const path = `results/bench/decode_${dev.kind}${quick ? "_quick" : ""}.json`;
  await writeJsonAtomic(path, {
    adapter: dev.description,
    kind: dev.kind,
    date: new Date().toISOString(),
    code: await codeVersion(),
    model: { ...size, vocab: 256, weights: "random normal(0, 0.02)" },
    steps,
    rounds,
    capturedSteps: capture,
    promptTokens: ctxLen,
    prefillTokens: promptLen,
    bandwidth: { ...bw, usedGBs: gbs },
    note: "bound = batch · bandwidth / weight bytes per step; rows read per step at batch B " +
      "estimated as 1 − S^B of each W (independent top-K picks); KV-cache and activation " +
      "traffic not counted",
    rows,
    prefill,
  });
  console.log(`wrote ${path}`);
}
dense.dispose();
bitnet.dispose();
dev.destroy();
