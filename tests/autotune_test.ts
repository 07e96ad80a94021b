/**
 * The autotuner (src/backend/autotune.ts) with injected clocks, so nothing depends on speed: it
 * picks the fastest variant whose output agrees with the default's, never a wrong one; later
 * dispatches of the class run the choice; choices survive on disk per adapter; an unwritable or
 * corrupt cache is ignored; autotuning can be turned off; and the trainer tunes once, after its
 * first step (by default only on real GPUs).
 */
import assert from "node:assert/strict";
import { backward, type Device, matmul, openDevice } from "../mod.ts";
import { modelConfig, TransformerLM } from "../src/nn/mod.ts";
import { autotuneEnabled, Autotuner, type DispatchTimer } from "../src/backend/autotune.ts";
import type { Dispatch, Tunable } from "../src/backend/backend.ts";
import type { WebGpuBackend } from "../src/backend/webgpu.ts";
import { matmulDispatch, type MatmulProblem } from "../kernels/matmul.ts";
import { train, trainConfig } from "../src/train/trainer.ts";
import { assertClose, cpu, gpu, hostRandom } from "./helpers.ts";

/** A clock that charges each variant (found in the pipeline key) a fixed time per launch. */
function fakeTimer(nsByVariant: Record<string, number>, precise = true, otherNs = 1e6) {
  const calls: { key: string; reps: number }[] = [];
  const timer: DispatchTimer = {
    precise,
    time(d: Dispatch, reps: number) {
      calls.push({ key: d.key, reps });
      const v = Object.keys(nsByVariant).find((name) => d.key.split(":").includes(name));
      return Promise.resolve(reps * (v === undefined ? otherNs : nsByVariant[v]!));
    },
  };
  return { timer, calls };
}

const P: MatmulProblem = {
  m: 70,
  n: 72,
  k: 64,
  batch: 1,
  strideA: 0,
  strideB: 0,
  transposeA: false,
  transposeB: false,
  dtype: "f32",
};

function tunableOf(p: MatmulProblem): Tunable {
  const s = { id: -1, bytes: 0 };
  return matmulDispatch(p, s, s, s).tune!;
}

/** `t` with some fields replaced (a tunable may keep its fields in getters, so no spread). */
function override(t: Tunable, fields: Partial<Tunable>): Tunable {
  return {
    key: t.key,
    variants: t.variants,
    build: (v, buffers) => t.build(v, buffers),
    sampleInputs: () => t.sampleInputs(),
    outputBytes: t.outputBytes,
    outputDType: t.outputDType,
    tolerance: t.tolerance,
    ...fields,
  };
}

async function openTuned(timer: DispatchTimer, cacheDir: string | null, adapterKey = "test") {
  const dev = await openDevice({ prefer: "webgpu", autotune: false });
  const be = dev.backend as WebGpuBackend;
  be.autotuner = new Autotuner(be, { adapterKey, cacheDir, timer });
  return { dev, tuner: be.autotuner };
}

async function checkProduct(dev: Device, p: MatmulProblem): Promise<void> {
  const ha = hostRandom(p.m * p.k, 5), hb = hostRandom(p.k * p.n, 6);
  const got = matmul(dev.tensor(ha, [p.m, p.k]), dev.tensor(hb, [p.k, p.n]));
  const want = matmul(cpu.tensor(ha, [p.m, p.k]), cpu.tensor(hb, [p.k, p.n]));
  assertClose(await got.data(), await want.data(), { rtol: 1e-4, atol: 1e-4 });
}

Deno.test("autotune: the first use runs the default and records the class; tune() picks the fastest", async () => {
  if (!gpu) return;
  const { timer } = fakeTimer({ tiled: 9e5, smem64x64: 5e5, smem128x64: 2e5, smem32x32s: 7e5 });
  const { dev, tuner } = await openTuned(timer, null);
  try {
    await checkProduct(dev, P); // default kernel; the class is now pending
    assert.deepEqual(tuner.pending, [tunableOf(P).key]);
    const [r] = await dev.autotune();
    assert.equal(r!.choice, "smem128x64");
    assert.deepEqual(r!.rejected, []);
    assert.deepEqual(Object.keys(r!.ns), tunableOf(P).variants);
    // Every later problem of the class (same power-of-two bucket and valid variants) runs it.
    const s = { id: -1, bytes: 0 };
    const other = { ...P, m: 100, n: 120 };
    assert.match(tuner.resolve(matmulDispatch(other, s, s, s)).key, /^matmulSmem:smem128x64:/);
    await checkProduct(dev, other);
    // Another class still runs its default.
    assert.match(tuner.resolve(matmulDispatch({ ...P, k: 8 }, s, s, s)).key, /^matmul:tiled:/);
    // ...and waits for the next tune(); a class is measured once.
    assert.equal((await dev.autotune()).length, 1);
    assert.deepEqual(await dev.autotune(), []);
  } finally {
    dev.destroy();
  }
});

Deno.test("autotune: a variant whose output differs is never chosen, however fast", async () => {
  if (!gpu) return;
  const good = tunableOf(P);
  // "broken" reads A with the wrong row length: a fast kernel computing something else.
  const broken = override(good, {
    key: good.key + ":with-broken",
    variants: [...good.variants, "broken"],
    build: (v, [a, b, c]) =>
      v === "broken"
        ? { ...matmulDispatch({ ...P, k: P.k - 4 }, a!, b!, c!, "tiled"), key: "broken" }
        : good.build(v, [a!, b!, c!]),
  });
  const { timer } = fakeTimer({ broken: 1, tiled: 5e5, smem64x64: 6e5 });
  const { dev, tuner } = await openTuned(timer, null);
  try {
    const [r] = await tuner.tune([broken]);
    assert.deepEqual(r!.rejected, ["broken"]);
    assert.equal(r!.choice, "tiled");
  } finally {
    dev.destroy();
  }
});

Deno.test("autotune: choices round-trip through the disk cache, per adapter", async () => {
  if (!gpu) return;
  const dir = await Deno.makeTempDir();
  try {
    const first = await openTuned(fakeTimer({ smem64x64: 1 }).timer, dir, "adapter-A");
    try {
      await first.tuner.tune([tunableOf(P)]);
    } finally {
      first.dev.destroy();
    }
    const file = JSON.parse(await Deno.readTextFile(`${dir}/autotune.json`));
    assert.equal(file.adapters["adapter-A"][tunableOf(P).key], "smem64x64");
    // A new process on the same adapter runs the choice from the first dispatch, untuned.
    const { calls, timer } = fakeTimer({});
    const again = await openTuned(timer, dir, "adapter-A");
    try {
      assert.equal(again.tuner.choices.get(tunableOf(P).key), "smem64x64");
      await checkProduct(again.dev, P);
      assert.deepEqual(again.tuner.pending, []);
      assert.equal(calls.length, 0);
    } finally {
      again.dev.destroy();
    }
    // Another adapter (or driver) shares nothing.
    const other = await openTuned(timer, dir, "adapter-B");
    try {
      assert.equal(other.tuner.choices.size, 0);
    } finally {
      other.dev.destroy();
    }
    // A corrupt file is ignored, then replaced by the next save.
    await Deno.writeTextFile(`${dir}/autotune.json`, "{not json");
    const fresh = await openTuned(fakeTimer({ smem32x32s: 1 }).timer, dir, "adapter-A");
    try {
      assert.equal(fresh.tuner.choices.size, 0);
      await fresh.tuner.tune([tunableOf(P)]);
      const saved = JSON.parse(await Deno.readTextFile(`${dir}/autotune.json`));
      assert.equal(saved.adapters["adapter-A"][tunableOf(P).key], "smem32x32s");
    } finally {
      fresh.dev.destroy();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("autotune: a cache folder that cannot be written is not an error", async () => {
  if (!gpu) return;
  const dir = await Deno.makeTempDir();
  try {
    const blocker = `${dir}/file`;
    await Deno.writeTextFile(blocker, "");
    const { dev, tuner } = await openTuned(fakeTimer({ smem64x64: 1 }).timer, `${blocker}/sub`);
    try {
      const [r] = await tuner.tune([tunableOf(P)]);
      assert.equal(r!.choice, "smem64x64");
      assert.equal(tuner.choices.get(tunableOf(P).key), "smem64x64");
    } finally {
      dev.destroy();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("autotune: wall-clock measurements grow to ≥ 50 ms; the budget caps them", async () => {
  if (!gpu) return;
  // 1 ms per launch on a wall clock: one launch is too short to trust, 50 are enough.
  const slow = fakeTimer({ tiled: 1e6, smem64x64: 1e6 }, false);
  const { dev, tuner } = await openTuned(slow.timer, null);
  try {
    await tuner.tune([override(tunableOf(P), { variants: ["tiled", "smem64x64"] })]);
    const reps = slow.calls.map((c) => c.reps);
    assert.equal(Math.max(...reps), 50, `reps ${reps}`);
    // 30 ms per launch: a 500 ms budget shared by all the variants allows single launches
    // only, and measuring stays within the budget.
    const huge = fakeTimer({}, false, 3e7);
    const be = dev.backend as WebGpuBackend;
    be.autotuner = new Autotuner(be, { adapterKey: "t", cacheDir: null, timer: huge.timer });
    await be.autotuner.tune([tunableOf(P)]);
    assert.ok(huge.calls.every((c) => c.reps === 1), JSON.stringify(huge.calls));
    assert.ok(huge.calls.length * 30 <= 500, `${huge.calls.length} launches of 30 ms`);
    for (const v of tunableOf(P).variants) {
      assert.ok(huge.calls.some((c) => c.key.split(":").includes(v)), `${v} not measured`);
    }
    // Ties keep the default.
    assert.equal(be.autotuner.choices.get(tunableOf(P).key), tunableOf(P).variants[0]);
    assert.equal(tuner.choices.size, 1);
  } finally {
    dev.destroy();
  }
});

Deno.test("autotune off: openDevice({ autotune: false }) and QSPARSE_AUTOTUNE=0", async () => {
  assert.equal(autotuneEnabled(false), false);
  assert.equal(autotuneEnabled(true), true);
  const before = Deno.env.get("QSPARSE_AUTOTUNE");
  try {
    Deno.env.set("QSPARSE_AUTOTUNE", "0");
    assert.equal(autotuneEnabled(), false);
    Deno.env.set("QSPARSE_AUTOTUNE", "1");
    assert.equal(autotuneEnabled(), true);
  } finally {
    if (before === undefined) Deno.env.delete("QSPARSE_AUTOTUNE");
    else Deno.env.set("QSPARSE_AUTOTUNE", before);
  }
  if (!gpu) return;
  const dev = await openDevice({ prefer: "webgpu", autotune: false });
  try {
    assert.equal((dev.backend as WebGpuBackend).autotuner, null);
    await checkProduct(dev, P);
    assert.deepEqual(await dev.autotune(), []);
  } finally {
    dev.destroy();
  }
});

Deno.test("autotune on the real clock: whatever it picks is correct (no timing asserted)", async () => {
  if (!gpu) return;
  const dir = await Deno.makeTempDir();
  const before = Deno.env.get("QSPARSE_CACHE_DIR");
  Deno.env.set("QSPARSE_CACHE_DIR", dir);
  const dev = await openDevice({ prefer: "webgpu", autotune: true });
  try {
    const p = { ...P, m: 64, n: 64, k: 64 };
    await checkProduct(dev, p);
    const [r] = await dev.autotune();
    assert.ok(tunableOf(p).variants.includes(r!.choice), r!.choice);
    assert.ok(Object.values(r!.ns).every((ns) => ns > 0));
    await checkProduct(dev, p);
  } finally {
    dev.destroy();
    if (before === undefined) Deno.env.delete("QSPARSE_CACHE_DIR");
    else Deno.env.set("QSPARSE_CACHE_DIR", before);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("autotune: a Q-Sparse training step on tuned kernels matches the default kernels", async () => {
  if (!gpu) return;
  // A clock that makes the discrete-GPU kernels look fastest, so the step really switches.
  const { timer } = fakeTimer({ smem32x32s: 1, smem64x64s: 2, smem64x64: 3, gemvDot32x8: 1 });
  const { dev, tuner } = await openTuned(timer, null);
  const ref = await openDevice({ prefer: "webgpu", autotune: false });
  const cfg = modelConfig("tiny", { sparsity: 0.5, seqLen: 16 });
  const ids = Uint32Array.from({ length: 4 * 16 }, (_, i) => (i * 7919) % 256);
  const targets = ids.slice().reverse();
  const step = async (d: Device) => {
    const model = new TransformerLM(d, cfg, 1);
    const loss = model.loss(d.tensor(ids, [4, 16], "u32"), d.tensor(targets, [4, 16], "u32"));
    backward(loss);
    const out = [
      await loss.data(),
      ...await Promise.all(
        [...model.namedParameters().values()].map((p) => p.grad!.data()),
      ),
    ];
    model.dispose();
    return out;
  };
  try {
    await step(dev); // default kernels; records the step's matmul classes
    const results = await dev.autotune();
    assert.ok(results.some((r) => r.choice.startsWith("smem")), JSON.stringify(results));
    assert.ok(tuner.pending.length === 0);
    const tuned = await step(dev);
    const want = await step(ref);
    tuned.forEach((t, i) => assertClose(t, want[i]!, { rtol: 1e-3, atol: 1e-4 }, `tensor ${i}`));
  } finally {
    dev.destroy();
    ref.destroy();
  }
});

Deno.test("autotune: a variant the adapter cannot compile is rejected and the device stays usable", async () => {
  if (!gpu) return;
  const good = tunableOf(P);
  const withBad = override(good, {
    key: good.key + ":with-uncompilable",
    variants: [...good.variants.slice(0, 2), "uncompilable"],
    build: (v, buffers) =>
      v === "uncompilable"
        ? { ...good.build(good.variants[0]!, buffers), key: "uncompilable", wgsl: () => "fn (" }
        : good.build(v, buffers),
  });
  const { timer } = fakeTimer({ uncompilable: 1, tiled: 5e5, smem64x64: 6e5 });
  const { dev, tuner } = await openTuned(timer, null);
  try {
    const [r] = await tuner.tune([withBad]);
    assert.deepEqual(r!.rejected, ["uncompilable"]);
    assert.equal(r!.choice, "tiled");
    await checkProduct(dev, P);
    await dev.flush();
  } finally {
    dev.destroy();
  }
});

Deno.test("trainer: autotunes once after its first step, before the capture; only when asked on a software adapter", async () => {
  if (!gpu) return;
  const cfg = trainConfig(modelConfig("xxs", { seqLen: 16, sparsity: 0.5 }), {
    steps: 5,
    batchSize: 4,
    lr: 2e-3,
    warmup: 1,
    logEvery: 5,
    evalWindows: 4,
    checkpointEvery: 0,
  });
  // Only the cooperative top-K kernel measures faster: every matmul keeps its default (ties keep
  // the default), and the two top-K kernels keep the same entries, so the run must match bit for
  // bit a run that never tuned.
  const { timer } = fakeTimer({ topkCoop: 1e5 });
  const { dev, tuner } = await openTuned(timer, null);
  const calls: number[] = [];
  const tune = dev.autotune.bind(dev);
  dev.autotune = (extra = []) => {
    calls.push(Date.now());
    return tune(extra);
  };
  try {
    const untuned = await train(dev, cfg, { capture: true });
    assert.equal(calls.length, 0, "llvmpipe is not autotuned by default");
    const tuned = await train(dev, cfg, { capture: true, autotune: true });
    assert.equal(calls.length, 1);
    assert.ok(
      [...tuner.choices].some(([k, v]) => k.startsWith("topkMask") && v === "topkCoop"),
      JSON.stringify([...tuner.choices]),
    );
    const strip = (r: typeof tuned) =>
      r.log.map(({ tokensPerSecond: _t, elapsed: _e, ...rest }) => rest);
    assert.deepEqual(strip(tuned), strip(untuned));
    assert.equal(tuned.valLoss, untuned.valLoss);
  } finally {
    dev.destroy();
  }
});
