/**
 * Trainer: exact resume (in-process stop and a real SIGKILL of the CLI), config mismatch on
 * resume, corrupt checkpoints, and bad input.
 */
import assert from "node:assert/strict";
import { CheckpointError, DivergenceError, ValueError } from "../mod.ts";
import { modelConfig, TransformerLM } from "../src/nn/mod.ts";
import { train, type TrainConfig, trainConfig } from "../src/train/mod.ts";
import { loadCheckpoint, loadWeights, saveCheckpoint } from "../src/train/checkpoint.ts";
import { cpu, gpu, native } from "./helpers.ts";

function tinyRun(overrides: Partial<TrainConfig> = {}): TrainConfig {
  const model = modelConfig("xxs", {
    sparsity: 0.5,
    seqLen: 16,
    dModel: 16,
    nHeads: 1,
    nLayers: 1,
    dFF: 32,
  });
  return trainConfig(model, {
    steps: 8,
    batchSize: 2,
    lr: 3e-3,
    warmup: 2,
    evalWindows: 4,
    logEvery: 2,
    checkpointEvery: 3,
    evalEvery: 4,
    ...overrides,
  });
}

async function weights(path: string): Promise<Float32Array[]> {
  const ck = await loadCheckpoint(path);
  return [...ck.tensors.entries()].filter(([k]) => !k.startsWith("optim.")).map(([, t]) =>
    t.data as Float32Array
  );
}

Deno.test("resume after a stop continues exactly (CPU bit-exact, WebGPU within 1e-5)", async () => {
  for (const dev of [cpu, gpu]) {
    if (!dev) continue;
    const dir = await Deno.makeTempDir();
    try {
      const cfg = tinyRun();
      const full = await train(dev, cfg, { out: `${dir}/full` });
      await assert.rejects(() => train(dev, cfg, { out: `${dir}/cut`, stopAfter: 5 }), ValueError);
      // The stop happened between checkpoints (every 3): resuming replays steps 4-5 from step 3.
      const resumed = await train(dev, cfg, { out: `${dir}/cut`, resume: true });
      const tol = dev.kind === "cpu" ? 0 : 1e-5;
      assert.ok(
        Math.abs(resumed.valLoss - full.valLoss) <= tol,
        `${dev.kind}: ${resumed.valLoss} vs ${full.valLoss}`,
      );
      const [a, b] = [
        await weights(`${dir}/full/checkpoint.safetensors`),
        await weights(`${dir}/cut/checkpoint.safetensors`),
      ];
      for (let i = 0; i < a.length; i++) {
        for (let j = 0; j < a[i]!.length; j++) {
          assert.ok(
            Math.abs(a[i]![j]! - b[i]![j]!) <= tol,
            `${dev.kind}: weight ${i}[${j}] ${a[i]![j]} vs ${b[i]![j]}`,
          );
        }
      }
      // The log was rewound to the checkpoint and continued: one line per step logged, no duplicates.
      const steps = (await Deno.readTextFile(`${dir}/cut/log.jsonl`)).trim().split("\n").map((l) =>
        JSON.parse(l)
      )
        .filter((r) => r.kind === "train").map((r) => r.step);
      assert.deepEqual(steps, [2, 4, 6, 8]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("a run killed with SIGKILL and resumed ends at the same loss (CLI, CPU backend)", async () => {
  const dir = await Deno.makeTempDir();
  const cli = new URL("../cli.ts", import.meta.url).pathname;
  const args = (out: string, extra: string[] = []) => [
    "run",
    "-A",
    cli,
    "train",
    "--model",
    "xxs",
    "--sparsity",
    "0.5",
    "--seq",
    "16",
    "--batch",
    "2",
    "--steps",
    "24",
    "--log-every",
    "2",
    "--checkpoint-every",
    "2",
    "--eval-windows",
    "4",
    "--device",
    "cpu",
    "--json",
    "--out",
    out,
    ...extra,
  ];
  const run = async (a: string[]) => {
    const r = await new Deno.Command(Deno.execPath(), { args: a, stdout: "piped", stderr: "piped" })
      .output();
    if (!r.success) throw new Error(new TextDecoder().decode(r.stderr));
    return JSON.parse(new TextDecoder().decode(r.stdout).trim().split("\n").at(-1)!);
  };
  try {
    const full = await run(args(`${dir}/full`));
    const child = new Deno.Command(Deno.execPath(), {
      args: args(`${dir}/killed`),
      stdout: "null",
      stderr: "null",
    }).spawn();
    // Wait until a checkpoint past step 4 exists, then kill -9 mid-run.
    const log = `${dir}/killed/log.jsonl`;
    for (let i = 0; i < 600; i++) {
      await new Promise((r) => setTimeout(r, 100));
      try {
        const lines = (await Deno.readTextFile(log)).trim().split("\n");
        if (lines.length >= 3) break;
      } catch { /* not yet */ }
    }
    child.kill("SIGKILL");
    const status = await child.status;
    assert.equal(status.success, false, "the child should have been killed before finishing");
    const resumed = await run(args(`${dir}/killed`, ["--resume"]));
    assert.equal(resumed.valLoss, full.valLoss);
    assert.equal(resumed.trainLoss, full.trainLoss);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("resuming with a different config names the differing fields", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(() => train(cpu, tinyRun(), { out: dir, stopAfter: 3 }), ValueError);
    const base = tinyRun({ lr: 1e-3 });
    const other = {
      ...base,
      model: { ...base.model, sparsity: { qkv: 0.5, o: 0.5, gateUp: 0.5, down: 0.4 } },
    };
    await assert.rejects(
      () => train(cpu, other, { out: dir, resume: true }),
      (e: unknown) =>
        e instanceof ValueError &&
        /config differs in .*model\.sparsity\.down.*lr|lr.*model\.sparsity\.down/.test(e.message),
    );
    // Without --resume an existing run is never overwritten.
    await assert.rejects(() => train(cpu, tinyRun(), { out: dir }), /already holds a checkpoint/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a truncated checkpoint is a CheckpointError naming the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(() => train(cpu, tinyRun(), { out: dir, stopAfter: 3 }), ValueError);
    const path = `${dir}/checkpoint.safetensors`;
    const bytes = await Deno.readFile(path);
    await Deno.writeFile(path, bytes.subarray(0, bytes.length - 100));
    await assert.rejects(
      () => train(cpu, tinyRun(), { out: dir, resume: true }),
      (e: unknown) => e instanceof CheckpointError && e.message.includes(path),
    );
    await assert.rejects(() => loadCheckpoint(`${dir}/nope.safetensors`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("initFrom loads weights for continued training; steps 0 evaluates a checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const base = await train(cpu, tinyRun(), { out: `${dir}/base` });
    const ck = `${dir}/base/checkpoint.safetensors`;
    const evalOnly = await train(cpu, tinyRun({ steps: 0, initFrom: ck }));
    assert.ok(Math.abs(evalOnly.valLoss - base.valLoss) < 1e-6);
    const m = new TransformerLM(cpu, tinyRun().model, 0);
    loadWeights(m, await loadCheckpoint(ck), ck);
    m.dispose();
    assert.throws(() => trainConfig(tinyRun().model, { steps: 0 }), /initFrom/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad model and training input gives clear errors", () => {
  assert.throws(() => modelConfig("huge"), /unknown model "huge"/);
  assert.throws(
    () => modelConfig("tiny", { sparsity: 1 }),
    /sparsity S for qkv must be in \[0, 1\)/,
  );
  assert.throws(() => modelConfig("tiny", { sparsity: -0.1 }), ValueError);
  assert.throws(() => modelConfig("xxs", { sparsity: 0.99 }), /keeps K=0 of 32 inputs at qkv/);
  assert.throws(
    () => modelConfig("tiny", { sparsity: 0.5, block: 48 }),
    /block 48 does not divide the qkv input width 64/,
  );
  assert.throws(() => modelConfig("tiny", { nHeads: 3 }), /not divisible by nHeads/);
  assert.throws(() => trainConfig(modelConfig("tiny"), { batchSize: 0 }), /batchSize/);
  assert.throws(() => trainConfig(modelConfig("tiny"), { lr: -1 }), /lr/);
});

/** Writes a checkpoint of `cfg`'s model with one NaN in `name` (weights only, for initFrom). */
async function poisoned(cfg: TrainConfig, path: string, name: string): Promise<void> {
  const m = new TransformerLM(cpu, cfg.model, 0);
  try {
    const w = new Float32Array(await m.namedParameters().get(name)!.data());
    w[3] = NaN;
    m.setParameter(name, w);
    const state = { step: 0, sampler: { seed: 0, step: 0 }, generator: { seed: 0, offset: 0 } };
    await saveCheckpoint(path, m, null, { ...state, tokens: 0, elapsed: 0 }, {});
  } finally {
    m.dispose();
  }
}

Deno.test("a NaN weight stops training with a DivergenceError naming step and tensor (issue 14)", async () => {
  for (const dev of [cpu, native]) {
    const dir = await Deno.makeTempDir();
    try {
      const name = "layers.0.ffn.down_proj.weight";
      await poisoned(tinyRun(), `${dir}/bad.safetensors`, name);
      const cfg = tinyRun({ initFrom: `${dir}/bad.safetensors` });
      await assert.rejects(
        () => train(dev, cfg, { out: `${dir}/run` }),
        (e: unknown) =>
          e instanceof DivergenceError && e.step === 1 && e.tensor === name &&
          e.message.includes(`first non-finite parameter: ${name}`) && /at step 1/.test(e.message),
      );
      // Nothing says "finished": no result, no done record, no checkpoint of the NaN state.
      await assert.rejects(() => Deno.stat(`${dir}/run/result.json`), Deno.errors.NotFound);
      await assert.rejects(
        () => Deno.stat(`${dir}/run/checkpoint.safetensors`),
        Deno.errors.NotFound,
      );
      assert.ok(!(await Deno.readTextFile(`${dir}/run/log.jsonl`)).includes('"done"'));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("a NaN weight on WebGPU is caught at the next loss readback (issue 14)", async () => {
  if (!gpu) return;
  const dir = await Deno.makeTempDir();
  try {
    await poisoned(tinyRun(), `${dir}/bad.safetensors`, "lm_head.weight");
    const cfg = tinyRun({ initFrom: `${dir}/bad.safetensors`, logEvery: 2 });
    await assert.rejects(
      () => train(gpu!, cfg),
      (e: unknown) => e instanceof DivergenceError && e.step === 2 && /steps 1–2/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("resume extends a finished run to more steps; force restarts it (issue 14)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const short = await train(cpu, tinyRun({ steps: 4, evalEvery: 0 }), { out: dir });
    assert.equal(short.tokens, 4 * 2 * 16);
    // Speed without compilation: measured over the log windows after the first (steps 3-4).
    assert.ok(short.steadyTokensPerSecond! > 0 && short.firstWindowSeconds! > 0);
    const messages: string[] = [];
    const view = {
      kind: "lines" as const,
      update() {},
      message: (t: string) => messages.push(t),
      end() {},
    };
    const longer = await train(cpu, tinyRun({ steps: 6, evalEvery: 0 }), {
      out: dir,
      resume: true,
      progress: view,
    });
    assert.equal(longer.tokens, 6 * 2 * 16);
    assert.match(messages[0]!, /extending .* from 4 to 6 steps \(resuming from step 4\)/);
    assert.equal(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)).steps, 6);
    // One done record (the extension's), train records continuing past the old end.
    const log = (await Deno.readTextFile(`${dir}/log.jsonl`)).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    assert.deepEqual(log.filter((r) => r.kind === "done").map((r) => r.step), [6]);
    assert.deepEqual(log.filter((r) => r.kind === "train").map((r) => r.step), [2, 4, 6]);
    // Fewer steps than the checkpoint is refused.
    await assert.rejects(
      () => train(cpu, tinyRun({ steps: 5, evalEvery: 0 }), { out: dir, resume: true }),
      /checkpoint is at step 6/,
    );
    // Resuming a finished run with the same steps says where it resumes.
    messages.length = 0;
    await train(cpu, tinyRun({ steps: 6, evalEvery: 0 }), {
      out: dir,
      resume: true,
      progress: view,
    });
    assert.match(messages[0]!, /resuming .* from step 6 of 6/);
    // force: a fresh run in the same folder, identical to a first run.
    const again = await train(cpu, tinyRun({ steps: 4, evalEvery: 0 }), { out: dir, force: true });
    assert.equal(again.valLoss, short.valLoss);
    await assert.rejects(
      () => train(cpu, tinyRun(), { out: dir, force: true, resume: true }),
      /exclude each other/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("64 flipped bytes in a checkpoint are a CheckpointError naming the tensor (issue 14)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await train(cpu, tinyRun({ steps: 2, evalEvery: 0 }), { out: dir });
    const path = `${dir}/checkpoint.safetensors`;
    const bytes = await Deno.readFile(path);
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    const [begin] = header["lm_head.weight"].data_offsets as [number, number];
    for (let i = 0; i < 64; i++) bytes[8 + n + begin + i] ^= 0x5a;
    await Deno.writeFile(path, bytes);
    await assert.rejects(
      () => loadCheckpoint(path),
      (e: unknown) =>
        e instanceof CheckpointError && e.message.includes(path) &&
        e.message.includes('tensor "lm_head.weight" fails its CRC-32'),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("WebGPU log records, read back a window late, match the CPU run's windows", async () => {
  if (!gpu) return;
  const cfg = tinyRun({ checkpointEvery: 0 });
  const seen: number[] = [];
  const [a, b] = [
    await train(cpu, cfg),
    await train(gpu, cfg, { onLog: (r) => void (r.kind === "train" && seen.push(r.step)) }),
  ];
  const rows = (r: typeof a) => r.log.filter((l) => l.kind !== "eval");
  assert.deepEqual(rows(b).map((l) => [l.kind, l.step]), rows(a).map((l) => [l.kind, l.step]));
  assert.deepEqual(seen, [2, 4, 6, 8]);
  for (const [x, y] of rows(a).filter((l) => l.kind === "train").map((l, i) => [l, rows(b)[i]!])) {
    assert.ok(Math.abs(x!.loss! - y!.loss!) < 1e-3, `step ${x!.step}: ${x!.loss} vs ${y!.loss}`);
    assert.ok(Math.abs(x!.gradNorm! - y!.gradNorm!) < 1e-3 * Math.max(1, x!.gradNorm!));
    assert.ok(Math.abs(x!.sparsity!.overall - y!.sparsity!.overall) < 1e-3);
  }
  assert.ok(Math.abs(a.valLoss - b.valLoss) < 1e-3);
});
