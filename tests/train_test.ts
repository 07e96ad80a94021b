/**
 * Trainer: exact resume (in-process stop and a real SIGKILL of the CLI), config mismatch on
 * resume, corrupt checkpoints, and bad input.
 */
import assert from "node:assert/strict";
import { CheckpointError, ValueError } from "../mod.ts";
import { modelConfig, TransformerLM } from "../src/nn/mod.ts";
import { train, type TrainConfig, trainConfig } from "../src/train/mod.ts";
import { loadCheckpoint, loadWeights } from "../src/train/checkpoint.ts";
import { cpu, gpu } from "./helpers.ts";

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
