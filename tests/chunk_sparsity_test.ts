/**
 * Chunk-level sparsity: exact values where they are known (one-token chunks give the per-token
 * sparsity; a top-1 MoE with dense experts leaves 1 − 1/E of the expert weights untouched per
 * token), monotone in the chunk size, the same as a host union of the captured masks for a dense
 * site and an MoE expert site, and no side effects on the sparsity counters.
 */
import assert from "node:assert/strict";
import { type Device, ShapeError, ValueError } from "../mod.ts";
import {
  type ModelConfig,
  modelConfig,
  type ModelOverrides,
  type MoeFeedForward,
  TransformerLM,
} from "../src/nn/mod.ts";
import { measureChunkSparsity, measureSparsity } from "../src/train/mod.ts";
import type { ExpertSite } from "../src/nn/moe.ts";
import { cpu, others } from "./helpers.ts";

const B = 2, T = 16;

function tinyConfig(o: ModelOverrides): ModelConfig {
  return modelConfig("tiny", { seqLen: T, ...o });
}

function probeIds(dev: Device) {
  return dev.tensor(new Uint32Array(B * T).map((_, i) => (i * 37 + 5) % 256), [B, T], "u32");
}

Deno.test("chunk sparsity: one-token chunks give the per-token sparsity; larger chunks touch more", async () => {
  using m = new TransformerLM(cpu, tinyConfig({ sparsity: 0.75 }), 3);
  using ids = probeIds(cpu);
  const r = await measureChunkSparsity(m, ids, [1, 4, 16]);
  assert.deepEqual(r.chunkSizes, [1, 4, 16]);
  for (const site of ["qkv", "o", "gateUp"] as const) {
    assert.ok(Math.abs(r.perSite[site][0]! - 0.75) < 1e-6, `${site}: ${r.perSite[site]}`);
  }
  assert.ok(r.perSite.down[0]! >= 0.75 - 1e-6);
  for (const s of r.sites) {
    assert.ok(s.sparsity[0]! >= s.sparsity[1]! && s.sparsity[1]! >= s.sparsity[2]!, s.name);
  }
  assert.ok(r.overall[1]! < r.overall[0]!);
  assert.equal(r.sites.length, 2 * 4);
  assert.equal(r.tokens, B * T);
  const n = m.params().nonEmbedding - m.params().norms;
  assert.ok(Math.abs(r.loadedWeights[0]! - 0.25 * n) / n < 0.01);
});

Deno.test("chunk sparsity: a dense model touches every weight", async () => {
  using m = new TransformerLM(cpu, tinyConfig({ ffn: "swiglu" }), 3);
  using ids = probeIds(cpu);
  const r = await measureChunkSparsity(m, ids, [1, 8]);
  assert.deepEqual(r.overall, [0, 0]);
});

Deno.test("chunk sparsity: top-1 MoE with dense experts leaves 1 − 1/E untouched per token", async () => {
  using m = new TransformerLM(cpu, tinyConfig({ moe: { experts: 4, topK: 1 } }), 3);
  using ids = probeIds(cpu);
  const r = await measureChunkSparsity(m, ids, [1, 8, 64]);
  assert.ok(Math.abs(r.perSite.gateUp[0]! - 0.75) < 1e-6, `${r.perSite.gateUp}`);
  assert.ok(r.perSite.gateUp[1]! < 0.75);
  assert.equal(r.perSite.qkv[0], 0);
  const moeSites = r.sites.filter((s) => s.experts === 4);
  assert.equal(moeSites.length, 4);
  // Router weights count as always loaded.
  const router = 2 * 64 * 4;
  const total = r.sites.reduce((a, s) => a + s.weights, 0) + router;
  assert.ok(Math.abs(r.overall[0]! - (1 - r.loadedWeights[0]! / total)) < 1e-12);
});

/** Host union: untouched fraction of `w` columns over chunks × experts. */
function hostCls(
  rows: { token: number; expert: number; data: ArrayLike<number> }[],
  tokens: number,
  experts: number,
  w: number,
  chunk: number,
): number {
  const per = Math.ceil(T / chunk), chunks = (tokens / T) * per;
  const used = new Uint8Array(chunks * experts * w);
  for (const r of rows) {
    const s = Math.floor(r.token / T), c = s * per + Math.floor((r.token % T) / chunk);
    for (let col = 0; col < w; col++) {
      if (r.data[col] !== 0) used[(c * experts + r.expert) * w + col] = 1;
    }
  }
  return 1 - used.reduce((a, b) => a + b, 0) / used.length;
}

async function crossCheck(dev: Device): Promise<void> {
  using m = new TransformerLM(
    dev,
    tinyConfig({ sparsity: 0.5, moe: { experts: 4, topK: 2, capacityFactor: 0.75 } }),
    5,
  );
  using ids = probeIds(dev);
  const r = await measureChunkSparsity(m, ids, [4, 16]);
  // Capture layer 0's masks with the same hooks, on a second forward.
  const qkv = m.layers[0]!.attn.qkvSite;
  const ffn = m.layers[0]!.ffn as MoeFeedForward;
  const site: ExpertSite = ffn.gateUpSite;
  let qkvData: Float32Array | null = null, tokData: Float32Array | null = null;
  let perm: Uint32Array | null = null, experts: Uint32Array | null = null;
  const pending: Promise<void>[] = [];
  qkv.observer = (h) =>
    void pending.push(h.data().then((d) => void (qkvData = Float32Array.from(d))));
  site.observer = (h) =>
    void pending.push(h.data().then((d) => void (tokData = Float32Array.from(d))));
  site.groupedObserver = (_h, g) => {
    pending.push(g.perm.data().then((d) => void (perm = Uint32Array.from(d))));
    pending.push(g.experts.data().then((d) => void (experts = Uint32Array.from(d))));
  };
  m.forward(ids);
  await Promise.all(pending);
  qkv.observer = null;
  site.observer = null;
  site.groupedObserver = null;
  const d = 64, n = B * T;
  const qkvRows = Array.from({ length: n }, (_, t) => ({
    token: t,
    expert: 0,
    data: qkvData!.subarray(t * d, t * d + d),
  }));
  const moeRows = Array.from(perm!).filter((a) => a !== 0xffffffff).map((a) => ({
    token: Math.floor(a / 2),
    expert: experts![a]!,
    data: tokData!.subarray(Math.floor(a / 2) * d, Math.floor(a / 2) * d + d),
  }));
  assert.ok(moeRows.length < n * 2, "capacity 0.75 should drop assignments");
  r.chunkSizes.forEach((c, j) => {
    const a = r.sites.find((s) => s.name === "layers.0.attn.qkv")!.sparsity[j]!;
    assert.ok(Math.abs(a - hostCls(qkvRows, n, 1, d, c)) < 1e-6, `qkv chunk ${c} on ${dev.kind}`);
    const b = r.sites.find((s) => s.name === "layers.0.ffn.gate_up")!.sparsity[j]!;
    assert.ok(Math.abs(b - hostCls(moeRows, n, 4, d, c)) < 1e-6, `moe chunk ${c} on ${dev.kind}`);
  });
}

Deno.test("chunk sparsity: equals a host union of the captured masks (dense and MoE sites)", async () => {
  await crossCheck(cpu);
  for (const dev of others) await crossCheck(dev);
});

Deno.test("chunk sparsity: the probe leaves the sparsity and router counters alone", async () => {
  using m = new TransformerLM(cpu, tinyConfig({ sparsity: 0.5, moe: { experts: 4, topK: 2 } }), 3);
  using ids = probeIds(cpu);
  await measureChunkSparsity(m, ids);
  assert.equal(await measureSparsity(m), null);
  m.forward(ids);
  await measureChunkSparsity(m, ids);
  const r = (await measureSparsity(m))!;
  assert.equal(r.routing!.layers[0]!.tokens, B * T);
  // Repeated probes free everything they allocate.
  const live = cpu.stats().liveBuffers;
  await measureChunkSparsity(m, ids);
  await measureChunkSparsity(m, ids);
  assert.equal(cpu.stats().liveBuffers, live);
});

Deno.test("chunk sparsity: bad input names the op", async () => {
  using m = new TransformerLM(cpu, tinyConfig({}), 3);
  using ids = probeIds(cpu);
  await assert.rejects(() => measureChunkSparsity(m, ids, [0]), ValueError);
  await assert.rejects(() => measureChunkSparsity(m, ids, []), /chunk sizes/);
  await assert.rejects(() => measureChunkSparsity(m, ids.reshape([B * T])), ShapeError);
});
