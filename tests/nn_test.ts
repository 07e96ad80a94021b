/**
 * Model family, accounting, optimizer and BitNet fake-quant kernels.
 */
import assert from "node:assert/strict";
import { backward, mul, quantizeActivationsSte, quantizeWeightsSte, sumAll } from "../mod.ts";
import { modelConfig, paramCounts, TransformerLM } from "../src/nn/mod.ts";
import { AdamW, cosineLr, measureSparsity } from "../src/train/mod.ts";
import { adamwCpu } from "../kernels/optim.ts";
import { roundHalfEven } from "../kernels/quant_ste.ts";
import { assertClose, cpu, hostRandom, onBoth, others } from "./helpers.ts";
import { exactOnThreads } from "./native_threads.ts";

Deno.test("paramCounts matches the tensors a model actually allocates", () => {
  for (const name of ["xxs", "tiny", "xs"]) {
    const cfg = modelConfig(name, { sparsity: 0.5 });
    const m = new TransformerLM(cpu, cfg, 0);
    const total = m.parameters().reduce((a, p) => a + p.size, 0);
    const counts = paramCounts(cfg);
    assert.equal(total, counts.total, name);
    const emb = m.namedParameters().get("embed.weight")!.size +
      m.namedParameters().get("lm_head.weight")!.size;
    assert.equal(counts.embedding, emb);
    m.dispose();
  }
  // The named sizes span ≥ 30× in non-embedding parameters.
  assert.ok(
    paramCounts(modelConfig("l")).nonEmbedding / paramCounts(modelConfig("xxs")).nonEmbedding > 30,
  );
});

Deno.test("accounting: top-K sites hit S exactly; ReLU² makes the down-projection sparser", async () => {
  const m = new TransformerLM(cpu, modelConfig("tiny", { sparsity: 0.3, seqLen: 16 }), 3);
  m.forward(cpu.tensor(Uint32Array.from({ length: 64 }, (_, i) => (i * 7) % 256), [4, 16], "u32"));
  const r = (await measureSparsity(m))!;
  // K = ⌊(1 − S)·64⌋ = 44 kept of 64 at every token.
  for (const site of ["qkv", "o", "gateUp"] as const) {
    assert.equal(r.perSite[site], 1 - 44 / 64, site);
  }
  assert.ok(r.perSite.down > 0.3, `down ${r.perSite.down}`); // ReLU² zeros on top of top-K
  const c = paramCounts(m.config);
  const lin = c.perSite.qkv + c.perSite.o + c.perSite.gateUp + c.perSite.down;
  const active = (1 - r.perSite.qkv) * c.perSite.qkv + (1 - r.perSite.o) * c.perSite.o +
    (1 - r.perSite.gateUp) * c.perSite.gateUp + (1 - r.perSite.down) * c.perSite.down;
  assert.ok(Math.abs(r.overall - (1 - active / lin)) < 1e-12);
  assert.ok(Math.abs(r.Na - (active + c.norms)) < 1e-6);
  assert.equal(await measureSparsity(m), null); // counters were reset
  m.dispose();
});

Deno.test("a dense ReLU² model still has natural down-projection sparsity, a SwiGLU one none", async () => {
  for (const ffn of ["relu2glu", "swiglu"] as const) {
    const m = new TransformerLM(cpu, modelConfig("tiny", { seqLen: 8, ffn }), 1);
    m.forward(cpu.tensor(Uint32Array.from({ length: 16 }, (_, i) => i * 11), [2, 8], "u32"));
    const r = (await measureSparsity(m))!;
    if (ffn === "relu2glu") assert.ok(r.perSite.down > 0.2, `relu² down ${r.perSite.down}`);
    else assert.equal(r.perSite.down, 0);
    assert.equal(r.perSite.qkv, 0);
    m.dispose();
  }
});

Deno.test("model forward and backward agree on CPU and WebGPU for every variant", async () => {
  const variants = [{}, { sparsity: 0.5 }, { sparsity: 0.5, block: 32 }, {
    bitnet: true,
    sparsity: 0.4,
  }, { ffn: "swiglu" as const }];
  for (const v of variants) {
    const ids = Uint32Array.from({ length: 32 }, (_, i) => (i * 13) % 256);
    const tg = Uint32Array.from({ length: 32 }, (_, i) => (i * 29) % 256);
    await onBoth(
      (d) => {
        const m = new TransformerLM(d, modelConfig("tiny", { seqLen: 16, ...v }), 5);
        const loss = m.loss(d.tensor(ids, [2, 16], "u32"), d.tensor(tg, [2, 16], "u32"));
        backward(loss);
        const g = m.namedParameters().get("layers.0.attn.q_proj.weight")!.grad!;
        return [loss, g];
      },
      { rtol: 1e-4, atol: 1e-5 },
      JSON.stringify(v),
    );
  }
});

Deno.test("AdamW kernel: WebGPU matches the CPU twin; the first step moves each weight by lr", async () => {
  const n = 1000;
  const w0 = hostRandom(n, 1), g = hostRandom(n, 2);
  await onBoth((d) => {
    const w = d.tensor(w0);
    w.requiresGrad = true;
    const gw = d.tensor(g);
    const opt = new AdamW(d, new Map([["w", w]]), { weightDecay: 0.1, clipNorm: 0 });
    for (let t = 0; t < 3; t++) {
      w.grad = gw;
      opt.step(1e-2);
    }
    w.grad = null;
    return w;
  }, { rtol: 1e-5, atol: 1e-6 });
  // Against the formula on the host (PyTorch's AdamW).
  const p = Float32Array.from(w0), m = new Float32Array(n), v = new Float32Array(n);
  adamwCpu(
    { lr: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0, bc1: 0.1, bc2: 0.05 },
    n,
    p,
    m,
    v,
    g,
    new Float32Array([0, 1]),
  );
  for (let i = 0; i < n; i++) {
    assert.ok(Math.abs(Math.abs(p[i]! - w0[i]!) - 0.1) < 1e-4 || g[i] === 0);
  }
});

Deno.test("gradient clipping scales to the max norm", async () => {
  for (const d of [cpu, ...others]) {
    const w = d.tensor([3, 4]);
    w.requiresGrad = true;
    const opt = new AdamW(d, new Map([["w", w]]), { clipNorm: 1, weightDecay: 0 });
    backward(sumAll(mul(w, w))); // grad (6, 8), norm 10
    opt.step(0.1);
    const [norm, scale] = await opt.gradNorm.data();
    assert.ok(Math.abs(norm! - 10) < 1e-5);
    assert.ok(Math.abs(scale! - 0.1) < 1e-6);
  }
});

Deno.test("AdamW with clipping: native equals the twin bit for bit (sizes around the split, 1 and 3 threads)", async () => {
  const sizes = [1, 128, 45056, 70001];
  await exactOnThreads((d) => {
    const ws = sizes.map((n, i) => {
      const w = d.tensor(hostRandom(n, i + 1));
      w.requiresGrad = true;
      return w;
    });
    const opt = new AdamW(d, new Map(ws.map((w, i) => [`w${i}`, w])), {
      weightDecay: 0.1,
      clipNorm: 0.5,
    });
    for (let t = 0; t < 3; t++) {
      ws.forEach((w, i) => (w.grad = d.tensor(hostRandom(w.size, 10 * t + i, 3))));
      opt.step(1e-2);
    }
    return [...ws, opt.gradNorm];
  }, "AdamW");
});

Deno.test("BitNet fake quantisation: WebGPU matches the CPU twin; ternary and int8 grids", async () => {
  const h = hostRandom(37 * 64, 4, 3);
  await onBoth((d) => quantizeActivationsSte(d.tensor(h, [37, 64])), { rtol: 1e-6, atol: 1e-6 });
  await onBoth((d) => quantizeWeightsSte(d.tensor(h, [37, 64])), { rtol: 1e-6, atol: 1e-6 });
  const q = await quantizeActivationsSte(cpu.tensor(h, [37, 64])).data();
  for (let r = 0; r < 37; r++) {
    const row = h.subarray(r * 64, r * 64 + 64);
    const s = Math.fround(127 / Math.fround(Math.max(...row.map(Math.abs)) + Math.fround(1e-5)));
    for (let j = 0; j < 64; j++) {
      const level = q[r * 64 + j]! * s;
      assert.ok(Math.abs(level - Math.round(level)) < 1e-3, "int8 level");
    }
  }
  const t = await quantizeWeightsSte(cpu.tensor(h)).data();
  assert.ok(new Set(Array.from(t, (x) => Math.abs(x).toFixed(6))).size <= 2);
  assert.equal(roundHalfEven(2.5), 2);
  assert.equal(roundHalfEven(-1.5), -2);
  assert.equal(roundHalfEven(0.5), 0);
  // STE: gradients pass straight through both.
  const x = cpu.tensor(h.subarray(0, 8), [2, 4]);
  x.requiresGrad = true;
  backward(sumAll(quantizeWeightsSte(quantizeActivationsSte(x))));
  assertClose(await x.grad!.data(), new Float32Array(8).fill(1));
});

Deno.test("cosine schedule: warmup, peak, floor", () => {
  const s = { lr: 1, warmup: 4, total: 20, minLr: 0.1 };
  assert.equal(cosineLr(s, 1), 0.25);
  assert.equal(cosineLr(s, 4), 1);
  assert.ok(Math.abs(cosineLr(s, 12) - 0.55) < 1e-12);
  assert.ok(Math.abs(cosineLr(s, 20) - 0.1) < 1e-12);
});
