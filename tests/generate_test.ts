import assert from "node:assert/strict";
import { CheckpointError, type Device, sampleTokens, ValueError } from "../mod.ts";
import {
  Decoder,
  generate,
  KVCache,
  modelConfig,
  type ModelOverrides,
  TransformerLM,
} from "../src/nn/mod.ts";
import { loadModel, saveCheckpoint } from "../src/train/mod.ts";
import { saveSafetensors } from "../src/train/safetensors.ts";
import { sampleCpu } from "../kernels/sample.ts";
import { assertClose, cpu, gpu, hostRandom, native } from "./helpers.ts";

const devices: Device[] = [cpu, native, ...(gpu ? [gpu] : [])];

// A larger init than training's 0.02 gives decisive logits, so greedy picks are not near-ties.
function model(dev: Device, over: ModelOverrides = {}) {
  const c = modelConfig("xxs", { seqLen: 24, initStd: 0.25, ...over });
  return new TransformerLM(dev, c, 3);
}

function argmaxRows(logits: Float32Array, v: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < logits.length / v; r++) {
    let bi = 0;
    for (let i = 1; i < v; i++) if (logits[r * v + i]! > logits[r * v + bi]!) bi = i;
    out.push(bi);
  }
  return out;
}

/** Greedy decode with the cache; per-step logits and tokens. */
async function cachedGreedy(
  m: TransformerLM,
  prompts: number[][],
  steps: number,
  opts: ConstructorParameters<typeof Decoder>[3] = {},
): Promise<{ logits: Float32Array[]; tokens: number[][] }> {
  const dev = m.device, v = m.config.vocab, b = prompts.length;
  using dec = new Decoder(m, b, Math.max(...prompts.map((p) => p.length)) + steps, opts);
  const logits: Float32Array[] = [];
  const tokens: number[][] = prompts.map(() => []);
  let l = dec.prefill(prompts);
  for (let s = 0; s < steps; s++) {
    const data = (await l.data()).slice();
    l.dispose();
    logits.push(data);
    const next = argmaxRows(data, v);
    next.forEach((t, r) => tokens[r]!.push(t));
    if (s === steps - 1) break;
    using ids = dev.tensor(Uint32Array.from(next), [b, 1], "u32");
    l = dec.step(ids);
  }
  return { logits, tokens };
}

async function fullLogits(m: TransformerLM, seqs: number[][]): Promise<Float32Array> {
  const t = seqs[0]!.length;
  using ids = m.device.tensor(Uint32Array.from(seqs.flat()), [seqs.length, t], "u32");
  using y = m.forward(ids);
  return (await y.data()).slice();
}

for (const dev of devices) {
  Deno.test(`KV-cache decoding equals recomputing the sequence (${dev.kind})`, async () => {
    for (
      const over of [{}, { sparsity: 0.5 }, { bitnet: true, sparsity: 0.4 }] as ModelOverrides[]
    ) {
      using m = model(dev, over);
      const prompts = [[72, 101, 108, 108, 111], [87, 111, 114, 108, 100]];
      const steps = 6, v = m.config.vocab, p = 5;
      const { logits, tokens } = await cachedGreedy(m, prompts, steps);
      const seqs = prompts.map((pr, r) => [...pr, ...tokens[r]!.slice(0, -1)]);
      const full = await fullLogits(m, seqs);
      const t = p + steps - 1;
      for (let s = 0; s < steps; s++) {
        const ref = new Float32Array(2 * v);
        for (let r = 0; r < 2; r++) {
          ref.set(full.subarray((r * t + p - 1 + s) * v, (r * t + p + s) * v), r * v);
        }
        assertClose(
          logits[s]!,
          ref,
          { atol: 1e-5, rtol: 1e-5 },
          `step ${s} ${JSON.stringify(over)}`,
        );
        assert.deepEqual(argmaxRows(ref, v), tokens.map((tk) => tk[s]), `greedy step ${s}`);
      }
      // generate() gives the same greedy tokens.
      const g = await m.generate(prompts, { maxNewTokens: steps });
      assert.deepEqual(g.map((x) => x.tokens), tokens);
    }
  });

  Deno.test(`MoE models generate with the cache (${dev.kind})`, async () => {
    const c = modelConfig("xxs-moe4x1", { seqLen: 16, initStd: 0.25 });
    using m = new TransformerLM(dev, c, 5);
    const prompt = [[1, 2, 3, 4]];
    const { logits, tokens } = await cachedGreedy(m, prompt, 4);
    const full = await fullLogits(m, [[...prompt[0]!, ...tokens[0]!.slice(0, -1)]]);
    const v = c.vocab;
    for (let s = 0; s < 4; s++) {
      assertClose(logits[s]!, full.subarray((3 + s) * v, (4 + s) * v), { atol: 1e-5 }, `moe ${s}`);
    }
  });

  Deno.test(`sparse decoding equals the training path (${dev.kind})`, async () => {
    const cases: [ModelOverrides, ConstructorParameters<typeof Decoder>[3]][] = [
      [{ sparsity: 0.5 }, {}],
      [{ sparsity: 0.6, bitnet: true }, {}],
      [{ sparsity: 0.5, block: 32 }, {}],
      [{ bitnet: true }, {}],
      [{}, { sparsity: 0.5 }], // post-hoc top-K on a dense model
      [{ sparsity: 0.5, moe: { experts: 4, topK: 2 } }, {}], // sparse attention, MoE FFN
      [{ sparsity: 0.5 }, { fuse: false }],
    ];
    for (const [over, extra] of cases) {
      using m = model(dev, over);
      const prompts = [[5, 6, 7], [9, 10, 11], [30, 31, 32], [40, 41, 42]];
      const a = await cachedGreedy(m, prompts, 4, { ...extra, sparse: false });
      const b = await cachedGreedy(m, prompts, 4, { ...extra, sparse: true });
      const what = JSON.stringify([over, extra]);
      for (let s = 0; s < 4; s++) {
        if (!over.bitnet) {
          assertClose(b.logits[s]!, a.logits[s]!, { atol: 1e-4, rtol: 1e-4 }, `${what} step ${s}`);
          continue;
        }
        // int8 activations: a 1-ulp difference in an earlier layer's sum (another reduction
        // order) can flip one code by 1 at a later layer, moving the logits by ~scale·α (on the
        // CPU twin the orders coincide and the logits agree to 1e-4). Greedy tokens still agree.
        const x = b.logits[s]!, y = a.logits[s]!;
        const worst = Math.max(...x.map((v, i) => Math.abs(v - y[i]!)));
        if (m.device === cpu) assertClose(x, y, { atol: 1e-4, rtol: 1e-4 }, `${what} step ${s}`);
        assert.ok(worst < 0.1, `${what} step ${s}: worst ${worst}`);
        assert.deepEqual(b.tokens, a.tokens, `${what}: greedy tokens`);
      }
    }
  });

  Deno.test(`post-hoc sparsity changes a dense model's logits (${dev.kind})`, async () => {
    using m = model(dev);
    const a = await cachedGreedy(m, [[1, 2, 3]], 2);
    const b = await cachedGreedy(m, [[1, 2, 3]], 2, { sparsity: 0.7, sparse: true });
    const diff = a.logits[1]!.reduce((s, x, i) => s + Math.abs(x - b.logits[1]![i]!), 0);
    assert.ok(diff > 1e-3, `S = 0.7 should change the logits (diff ${diff})`);
  });

  Deno.test(`batched prompts of different lengths match single runs (${dev.kind})`, async () => {
    using m = model(dev);
    const prompts = [[65, 66], [67, 68, 69, 70, 71], [72, 73, 74]];
    const batch = await m.generate(prompts, { maxNewTokens: 6 });
    for (let r = 0; r < prompts.length; r++) {
      const [one] = await m.generate([prompts[r]!], { maxNewTokens: 6 });
      assert.deepEqual(batch[r]!.tokens, one!.tokens, `row ${r}`);
    }
  });

  Deno.test(`a captured decode loop generates the tokens ordinary decoding does (${dev.kind})`, async () => {
    // Dense, Q-Sparse with the sparse kernels, BitNet and MoE; seeded sampling (a per-step random
    // number) over left-padded prompts, for more steps than a read-back chunk (the history rows
    // wrap) and enough to replay many times after the recorded and the verified steps.
    const cases: [ModelOverrides, Record<string, unknown>][] = [
      [{}, {}],
      [{ sparsity: 0.5 }, { sparse: true }],
      [{ bitnet: true, sparsity: 0.5 }, { sparse: true }],
      [{ sparsity: 0.5, moe: { experts: 4, topK: 2 } }, { sparse: true }],
    ];
    for (const [over, decode] of cases) {
      using m = model(dev, { seqLen: 64, ...over });
      const prompts = [[65, 66], [67, 68, 69, 70, 71]];
      const opts = { maxNewTokens: 40, readEvery: 16, temperature: 0.9, seed: 5, ...decode };
      const plain = await m.generate(prompts, { ...opts, capture: false });
      const captured = await m.generate(prompts, { ...opts, capture: true });
      assert.deepEqual(
        captured.map((g) => g.tokens),
        plain.map((g) => g.tokens),
        JSON.stringify(over),
      );
    }
  });

  Deno.test(`generation reads tokens back in chunks (${dev.kind})`, async () => {
    using m = model(dev, { seqLen: 64 });
    const backend = dev.backend;
    const read = backend.read.bind(backend);
    let reads = 0;
    backend.read = (s, n, o) => {
      reads++;
      return read(s, n, o);
    };
    try {
      const chunks: number[] = [];
      const [g] = await m.generate("ab", {
        maxNewTokens: 40,
        readEvery: 16,
        temperature: 0.8,
        topK: 20,
        seed: 3,
        onChunk: (c) => chunks.push(c.tokens[0]!.length),
      });
      assert.equal(g!.tokens.length, 40);
      assert.deepEqual(chunks, [16, 16, 8]);
      assert.equal(reads, 3, "one readback per 16 tokens");
    } finally {
      backend.read = read;
    }
  });
}

Deno.test("Decoder.loop: recorded on its second run, then replayed", async () => {
  for (const dev of devices) {
    using m = model(dev);
    using dec = new Decoder(m, 1, 12);
    using next = dev.empty([1], "u32");
    using hist = dev.empty([8, 1], "u32");
    const l = dec.prefill([[65, 66]]);
    sampleTokens(l, {}, { next, history: hist, slot: 0 });
    l.dispose();
    using loop = dec.loop({ next, history: hist });
    loop.run(1, 1);
    assert.equal(loop.captured, false, "the first run is ordinary code");
    for (let s = 2; s < 8; s++) loop.run(s, s);
    assert.equal(loop.captured, true);
    assert.equal(dec.cache.length, 2 + 7);
    // Greedy tokens equal a step-by-step decode of the same prompt.
    const ref = await cachedGreedy(m, [[65, 66]], 8);
    assert.deepEqual([...await hist.data()], ref.tokens[0], dev.kind);
  }
});

Deno.test("sampling: seeded, reproducible, restricted by top-K/top-p, stops", async () => {
  using m = model(cpu);
  const opts = { maxNewTokens: 12, temperature: 1, seed: 11 };
  const [a] = await m.generate("xy", opts);
  const [b] = await m.generate("xy", opts);
  const [c] = await m.generate("xy", { ...opts, seed: 12 });
  assert.deepEqual(a!.tokens, b!.tokens);
  assert.notDeepEqual(a!.tokens, c!.tokens);
  const [g] = await m.generate("xy", { maxNewTokens: 12 });
  const [k1] = await m.generate("xy", { ...opts, topK: 1 });
  assert.deepEqual(k1!.tokens, g!.tokens, "top-K 1 is greedy");
  const [p0] = await m.generate("xy", { ...opts, topP: 1e-6 });
  assert.deepEqual(p0!.tokens, g!.tokens, "a tiny nucleus is greedy");
  const stopAt = g!.tokens[3]!;
  const [s] = await m.generate("xy", { maxNewTokens: 12, stop: [stopAt] });
  assert.equal(s!.finishReason, "stop");
  assert.deepEqual(s!.tokens, g!.tokens.slice(0, g!.tokens.indexOf(stopAt) + 1));
  const [ctx] = await m.generate("xy", { maxNewTokens: 100 });
  assert.equal(ctx!.tokens.length, 22);
  assert.equal(ctx!.finishReason, "context");
});

Deno.test("sampler kernel matches its CPU twin and the softmax distribution", async () => {
  const v = 50, rows = 4000;
  const base = hostRandom(v, 9, 2);
  const logits = new Float32Array(rows * v);
  for (let r = 0; r < rows; r++) logits.set(base, r * v);
  for (
    const o of [{ temperature: 1 }, { temperature: 0.7, topK: 5 }, { temperature: 1.3, topP: 0.6 }]
  ) {
    const ref: number[] = [];
    for (const dev of devices) {
      using l = dev.tensor(logits, [rows, v]);
      using ids = sampleTokens(l, { ...o, seed: 4, step: 2 });
      const got = [...await ids.data()];
      if (dev === cpu) ref.push(...got);
      else {
        const same = got.filter((x, i) => x === ref[i]).length;
        assert.ok(
          same >= rows * 0.995,
          `${dev.kind} vs cpu agree on ${same}/${rows} (${JSON.stringify(o)})`,
        );
      }
    }
    // Empirical frequencies follow the (restricted) softmax.
    const t = o.temperature;
    const order = [...base.keys()].sort((a, b) => base[b]! - base[a]! || a - b);
    let keptSet = new Set(order);
    if ("topK" in o) keptSet = new Set(order.slice(0, o.topK));
    if ("topP" in o) {
      const z = order.reduce((s, i) => s + Math.exp(base[i]! / t), 0);
      let mass = 0;
      const kept: number[] = [];
      for (const i of order) {
        kept.push(i);
        mass += Math.exp(base[i]! / t) / z;
        if (mass >= o.topP!) break;
      }
      keptSet = new Set(kept);
    }
    const zk = [...keptSet].reduce((s, i) => s + Math.exp(base[i]! / t), 0);
    const counts = new Array(v).fill(0);
    ref.forEach((x) => counts[x]++);
    for (let i = 0; i < v; i++) {
      const p = keptSet.has(i) ? Math.exp(base[i]! / t) / zk : 0;
      if (p === 0) assert.equal(counts[i], 0, `token ${i} outside the kept set was sampled`);
      else {
        const sd = Math.sqrt(rows * p * (1 - p));
        assert.ok(
          Math.abs(counts[i] - rows * p) <= 5 * sd + 2,
          `token ${i}: ${counts[i]} vs ${rows * p}`,
        );
      }
    }
  }
  // The twin itself: greedy picks the first maximum.
  const next = new Uint32Array(1), hist = new Uint32Array(1);
  sampleCpu(
    {
      rows: 1,
      vocab: 3,
      rowStride: 3,
      rowOffset: 0,
      temperature: 0,
      topK: 0,
      topP: 1,
      seed: 0,
      step: 0,
      slot: 0,
    },
    new Float32Array([1, 5, 5]).buffer,
    next.buffer,
    hist.buffer,
  );
  assert.equal(next[0], 1);
});

Deno.test("bad input gets a typed one-line error", async () => {
  using m = model(cpu, { seqLen: 8 });
  const oneLine = (re: RegExp) => (e: unknown) => {
    assert.ok(e instanceof ValueError || e instanceof CheckpointError, String(e));
    assert.ok(!(e as Error).message.includes("\n"), (e as Error).message);
    assert.match((e as Error).message, re);
    return true;
  };
  await assert.rejects(() => m.generate("", { maxNewTokens: 2 }), oneLine(/prompt 0 is empty/));
  await assert.rejects(() => m.generate("123456789"), oneLine(/longer than the context of 8/));
  await assert.rejects(() => m.generate([[1, 256]]), oneLine(/outside the vocabulary/));
  await assert.rejects(() => m.generate([], {}), oneLine(/no prompts/));
  const dir = await Deno.makeTempDir();
  try {
    await saveSafetensors(`${dir}/other.safetensors`, new Map(), { format: "pt" });
    await assert.rejects(
      () => loadModel(cpu, `${dir}/other.safetensors`),
      oneLine(/not a kit checkpoint/),
    );
    await assert.rejects(
      () => loadModel(cpu, `${dir}/missing.safetensors`),
      oneLine(/missing/),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadModel loads a training checkpoint that generates the same text", async () => {
  using m = model(cpu, { sparsity: 0.5 });
  const dir = await Deno.makeTempDir();
  try {
    const state = {
      step: 1,
      sampler: { seed: 0, step: 0 },
      generator: { seed: 0, offset: 0 },
      tokens: 0,
      elapsed: 0,
    };
    await saveCheckpoint(`${dir}/checkpoint.safetensors`, m, null, state, { model: m.config });
    using back = await loadModel(cpu, dir);
    assert.deepEqual(back.config, m.config);
    const [a] = await generate(m, "The ", { maxNewTokens: 8 });
    const [b] = await back.generate("The ", { maxNewTokens: 8 });
    assert.deepEqual(b!.tokens, a!.tokens);
    assert.equal(typeof b!.text, "string");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("KVCache.write places [B, T, H, hd] at positions pos.. of [B, H, Tmax, hd]", async () => {
  const b = 3, t = 2, h = 5, hd = 6, cap = 7, pos = 3;
  const src = hostRandom(b * t * h * hd, 4);
  const want = new Float32Array(b * h * cap * hd);
  for (let bi = 0; bi < b; bi++) {
    for (let ti = 0; ti < t; ti++) {
      for (let hi = 0; hi < h; hi++) {
        for (let e = 0; e < hd; e++) {
          want[((bi * h + hi) * cap + pos + ti) * hd + e] = src[((bi * t + ti) * h + hi) * hd + e]!;
        }
      }
    }
  }
  for (const dev of devices) {
    using cache = new KVCache(dev, { layers: 2, batch: b, heads: h, headDim: hd, capacity: cap });
    cache.advance(pos);
    using k = dev.tensor(src, [b, t, h, hd]);
    cache.write(1, k, k);
    assert.deepEqual(await cache.keys(1).data(), want, dev.kind);
    assert.deepEqual(await cache.values(1).data(), want, dev.kind);
    assert.ok((await cache.keys(0).data()).every((x) => x === 0), "other layers untouched");
    using wrong = dev.zeros([b, t, h + 1, hd]);
    assert.throws(() => cache.write(0, wrong, wrong), /must be \[B=3, T, H, hd\]/);
    cache.advance(t);
    using big = dev.zeros([b, 3, h, hd]);
    assert.throws(() => cache.write(0, big, big), /exceed the capacity/);
  }
});

Deno.test("stop strings cut the text; generation frees what it allocates, even on early exit", async () => {
  using m = model(cpu);
  const [g] = await m.generate("ab", { maxNewTokens: 16 });
  const text = g!.text;
  // An ASCII character: bytes before it decode the same whether or not more bytes follow.
  const stop = [...text].find((ch, i) => i >= 2 && ch.charCodeAt(0) < 128)!;
  assert.ok(stop, `no ASCII character in ${JSON.stringify(text)}`);
  const [s] = await m.generate("ab", { maxNewTokens: 16, stop: [stop] });
  assert.equal(s!.finishReason, "stop");
  assert.equal(s!.text, text.slice(0, text.indexOf(stop)));
  assert.ok(s!.tokens.length < 16);
  const before = cpu.stats().liveBuffers;
  await m.generate(["abc", "de"], { maxNewTokens: 5, sparse: true, sparsity: 0.5 });
  for await (const _ of m.stream("abc", { maxNewTokens: 10 })) break;
  assert.equal(cpu.stats().liveBuffers, before, "live buffers after generate/stream");
});

Deno.test("cli generate streams a continuation of the prompt; cli export writes a folder", async () => {
  using m = model(cpu);
  const dir = await Deno.makeTempDir();
  try {
    const state = {
      step: 0,
      sampler: { seed: 0, step: 0 },
      generator: { seed: 0, offset: 0 },
      tokens: 0,
      elapsed: 0,
    };
    await saveCheckpoint(`${dir}/checkpoint.safetensors`, m, null, state, { model: m.config });
    const cli = new URL("../cli.ts", import.meta.url).pathname;
    const run = (extra: string[]) =>
      new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", cli, "generate", "--checkpoint", dir, "--device", "cpu", ...extra],
        stdout: "piped",
        stderr: "piped",
      }).output();
    const r = await run(["--prompt", "Hi ", "--max-tokens", "6", "--temperature", "0"]);
    assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    const [g] = await m.generate("Hi ", { maxNewTokens: 6 });
    assert.equal(new TextDecoder().decode(r.stdout), `Hi ${g!.text}\n`);
    const ex = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", cli, "export", "--checkpoint", dir, "--out", `${dir}/hf`],
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(ex.code, 0, new TextDecoder().decode(ex.stderr));
    using back = await TransformerLM.fromCheckpoint(cpu, `${dir}/hf`);
    assert.deepEqual(back.config, m.config);
    const bad = await run(["--prompt", ""]);
    assert.equal(bad.code, 2);
    assert.match(new TextDecoder().decode(bad.stderr), /prompt 0 is empty/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
