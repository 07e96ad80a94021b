/**
 * Training on the native backend: deterministic (same seed, same thread count → bit-identical
 * losses and weights, whatever the worker timing), and within f32 rounding of the CPU reference.
 */
import assert from "node:assert/strict";
import { modelConfig } from "../src/nn/mod.ts";
import { train, trainConfig } from "../src/train/mod.ts";
import { NativeBackend } from "../src/backend/native.ts";
import { Device } from "../src/tensor/device.ts";
import { cpu } from "./helpers.ts";

function run() {
  // Sizes above the parallel thresholds so worker threads really take part.
  const model = modelConfig("tiny", { sparsity: 0.5, seqLen: 64 });
  return trainConfig(model, {
    steps: 4,
    batchSize: 16,
    lr: 3e-3,
    warmup: 1,
    evalWindows: 4,
    logEvery: 1,
    evalEvery: 4,
  });
}

async function losses(dev: Device): Promise<number[]> {
  const r = await train(dev, run());
  return [...r.log.filter((l) => l.kind === "train").map((l) => l.loss as number), r.valLoss];
}

Deno.test("native training is bit-identical run to run and across thread counts", async () => {
  const seen: number[][] = [];
  for (const threads of [2, 2, 1]) {
    using dev = new Device(new NativeBackend({ threads }));
    await (dev.backend as NativeBackend).ready();
    seen.push(await losses(dev));
  }
  assert.deepEqual(seen[1], seen[0], "same thread count");
  assert.deepEqual(seen[2], seen[0], "1 vs 2 host threads (BLAS threads unchanged)");
  const ref = await losses(cpu);
  for (let i = 0; i < ref.length; i++) {
    assert.ok(Math.abs(seen[0]![i]! - ref[i]!) <= 1e-4 * Math.abs(ref[i]!), `${seen[0]} vs ${ref}`);
  }
});
