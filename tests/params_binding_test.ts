/**
 * Kernels' parameter blocks bound as uniform or as read-only storage (`paramsBinding`, storage by
 * default on software adapters): the same bits either way, through whole training steps (grouped
 * and separate projections, AdamW's 32-binding group kernel that keeps its uniform, split-K weight
 * gradients) and a captured step's replay.
 */
import assert from "node:assert/strict";
import { backward, captureStep, type Device, openDevice, scope } from "../mod.ts";
import { modelConfig, TransformerLM } from "../src/nn/mod.ts";
import { sharedProjections } from "../src/nn/linear.ts";
import { paramsAsStorage, type WebGpuBackend } from "../src/backend/webgpu.ts";
import { matmulTiledWgsl } from "../kernels/matmul.ts";
import { ropeWgsl } from "../kernels/rope.ts";
import { AdamW } from "../src/train/optimizer.ts";
import { gpu } from "./helpers.ts";

/** Losses of `steps` training steps of tiny (S = .5), then the bits of every parameter. */
async function train(dev: Device, grouped: boolean, captured: boolean) {
  sharedProjections.enabled = grouped;
  const model = new TransformerLM(dev, modelConfig("tiny", { sparsity: 0.5, seqLen: 32 }), 3);
  const opt = new AdamW(dev, model.namedParameters());
  const ids = (mul: number) =>
    dev.tensor(Uint32Array.from({ length: 4 * 32 }, (_, i) => (i * mul) % 256), [4, 32], "u32");
  const x = ids(7919), y = ids(104729);
  const losses: number[] = [];
  const stepOnce = () =>
    scope(() => {
      const loss = model.loss(x, y);
      backward(loss);
      opt.step(1e-3);
      model.zeroGrad();
      return loss;
    });
  try {
    if (captured) {
      using step = captureStep(dev, {}, () => {
        const loss = stepOnce();
        return { loss };
      });
      for (let i = 0; i < 3; i++) {
        const out = step.run({});
        losses.push((await out.loss.data())[0]!);
        out.loss.dispose();
      }
    } else {
      for (let i = 0; i < 3; i++) {
        const loss = stepOnce();
        losses.push((await loss.data())[0]!);
        loss.dispose();
      }
    }
    const params: Float32Array[] = [];
    for (const [, p] of model.namedParameters()) params.push(await p.data() as Float32Array);
    return { losses, params };
  } finally {
    x.dispose();
    y.dispose();
    opt.dispose();
    model.dispose();
    sharedProjections.enabled = true;
  }
}

Deno.test({
  name: "paramsBinding: storage and uniform parameter blocks give the same training bits",
  ignore: gpu === null,
  async fn() {
    const uniform = await openDevice({ prefer: "webgpu", paramsBinding: "uniform" });
    const storage = await openDevice({ prefer: "webgpu", paramsBinding: "storage" });
    try {
      for (const grouped of [false, true]) {
        for (const captured of [false, true]) {
          const a = await train(uniform, grouped, captured);
          const b = await train(storage, grouped, captured);
          const what = `${grouped ? "grouped" : "separate"}${captured ? ", captured" : ""}`;
          assert.deepEqual(b.losses, a.losses, what);
          assert.ok(a.losses.every(Number.isFinite), what);
          assert.equal(b.params.length, a.params.length);
          b.params.forEach((p, i) => assert.deepEqual(p, a.params[i], `${what}: parameter ${i}`));
        }
      }
    } finally {
      uniform.destroy();
      storage.destroy();
    }
  },
});

Deno.test({
  name: "paramsBinding: storage is the default on a software adapter only",
  ignore: gpu === null,
  fn() {
    const backend = gpu!.backend as WebGpuBackend;
    const software = /llvmpipe|lavapipe|swiftshader/i.test(backend.description);
    assert.equal(backend.paramsBinding, software ? "storage" : "uniform");
  },
});

Deno.test("paramsAsStorage: scalar blocks are copied into registers, blocks with arrays are not", () => {
  const limits = { maxStorageBuffersPerShaderStage: 8 };
  // The weight-gradient matmul lavapipe recompiled at every launch: storage, then one copy.
  const tn = paramsAsStorage(matmulTiledWgsl("f32", true, false), limits);
  assert.match(tn, /var<storage, read> p: P;/);
  assert.doesNotMatch(tn, /var<uniform>/);
  assert.match(tn, /fn main\(@builtin\(global_invocation_id\) gid: vec3u\) \{\n {2}let p = p;/);
  // RoPE's block holds its frequencies: read in place, not copied per invocation.
  const rope = paramsAsStorage(ropeWgsl("f32"), limits);
  assert.match(rope, /var<storage, read> p: P;/);
  assert.doesNotMatch(rope, /let p = p;/);
});
