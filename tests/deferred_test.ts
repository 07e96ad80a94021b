import assert from "node:assert/strict";
import {
  backward,
  type Device,
  mul,
  openDevice,
  rmsNorm,
  scope,
  sumAll,
  type Tensor,
  ValueError,
} from "../mod.ts";
import { modelConfig, TransformerLM } from "../src/nn/mod.ts";
import {
  rmsNormWeightGradGroupDispatch,
  weightGradGroupCapacity,
  type WeightGradMember,
} from "../kernels/rmsnorm_weight_group.ts";
import { rmsNormWeightGradDispatch } from "../kernels/rmsnorm.ts";
import { backendOf, cpu, gpu, hostRandom, launchesDuring } from "./helpers.ts";
import type { Dispatch } from "../src/backend/backend.ts";

const fusedCpu = await openDevice({ prefer: "cpu", fuse: true });
const fusing: Device[] = gpu ? [fusedCpu, gpu] : [fusedCpu];
for (const d of fusing) backendOf(d); // cached while nothing is pending

/** Norm weight-gradient members of the given shapes on `d`, with their inputs. */
function members(d: Device, shapes: readonly [number, number][], seed: number) {
  return shapes.map(([rows, cols], i) => {
    const x = d.tensor(hostRandom(rows * cols, seed + 3 * i), [rows, cols]);
    const g = d.tensor(hostRandom(rows * cols, seed + 3 * i + 1), [rows, cols]);
    const r = d.tensor(hostRandom(rows, seed + 3 * i + 2, 2), [rows]);
    return { rows, cols, x, g, r };
  });
}

Deno.test("rmsNormWeightGradGroup: every member equals its single kernel bit for bit", async () => {
  // Rows below, at and above the 32 splits; columns not a multiple of the 8 per workgroup;
  // members of different widths (the narrower ones leave workgroups idle).
  const shapes: [number, number][] = [[40, 12], [1, 5], [33, 16], [300, 9], [64, 128], [7, 1]];
  for (const d of [fusedCpu, ...(gpu ? [gpu] : [])]) {
    const cap = weightGradGroupCapacity(d.limits.maxStorageBuffersPerShaderStage);
    for (let k = 1; k <= Math.min(cap, shapes.length); k++) {
      const ms = members(d, shapes.slice(0, k), 10 * k);
      const single = ms.map((m) => {
        const out = d.empty([m.cols], "f32");
        d.run(rmsNormWeightGradDispatch(
          "f32",
          m.rows,
          m.cols,
          m.x.storage("t"),
          m.g.storage("t"),
          m.r.storage("t"),
          out.storage("t"),
        ));
        return out;
      });
      const grouped = ms.map((m) => d.empty([m.cols], "f32"));
      const spec: WeightGradMember[] = ms.map((m, t) => ({
        rows: m.rows,
        cols: m.cols,
        x: m.x.storage("t"),
        g: m.g.storage("t"),
        rstd: m.r.storage("t"),
        gw: grouped[t]!.storage("t"),
      }));
      d.run(rmsNormWeightGradGroupDispatch("f32", spec, cap));
      for (let t = 0; t < k; t++) {
        assert.deepEqual(
          [...await grouped[t]!.data()],
          [...await single[t]!.data()],
          `${d.kind}: member ${t} of ${k}`,
        );
      }
      [...single, ...grouped].forEach((t) => t.dispose());
      ms.forEach((m) => [m.x, m.g, m.r].forEach((t) => t.dispose()));
    }
    assert.throws(
      () => rmsNormWeightGradGroupDispatch("f32", [], cap),
      (e: unknown) => e instanceof ValueError && /rmsNormWeightGradGroup/.test(e.message),
    );
  }
});

/** Weight gradients of a chain of `n` norms on `d` (fresh weights each call). */
function chainGrads(d: Device, n: number): Tensor[] {
  const ws = Array.from({ length: n }, (_, i) => d.tensor(hostRandom(16, 50 + i), [16]));
  for (const w of ws) w.requiresGrad = true;
  const x = d.tensor(hostRandom(24 * 16, 7), [24, 16]);
  scope(() => {
    let y = x;
    for (const w of ws) y = rmsNorm(y, w);
    backward(sumAll(mul(y, x)));
  });
  x.dispose();
  return ws;
}

Deno.test("deferred weight gradients: one launch for every norm, when first read", async () => {
  for (const d of fusing) {
    const plain = d === gpu
      ? await openDevice({ prefer: "webgpu", fuse: false })
      : await openDevice({ prefer: "cpu" });
    const ref = chainGrads(plain, 5);
    const before = d.stats().dispatches;
    const ws = chainGrads(d, 5);
    assert.equal(d.deferred!.pending, 5, `${d.kind}: five members wait`);
    assert.equal(d.stats().dispatches - before, 5 + 5 + 3 + 1, `${d.kind}: launches`);
    assert.equal(d.deferred!.pending, 0, "stats() reached the backend and launched them");
    for (let i = 0; i < 5; i++) {
      assert.deepEqual([...await ws[i]!.grad!.data()], [...await ref[i]!.grad!.data()]);
    }
    // Reading one pending output launches the group first.
    const ws2 = chainGrads(d, 3);
    assert.equal(d.deferred!.pending, 3);
    const ops = launchesDuring(d, () => ws2[1]!.grad!.storage("read"));
    assert.deepEqual(ops, ["rmsNormWeightGradGroup"]);
    const ref3 = chainGrads(plain, 3);
    assert.deepEqual([...await ws2[0]!.grad!.data()], [...await ref3[0]!.grad!.data()]);
    // A pending output disposed before anything read it is never computed.
    const ws3 = chainGrads(d, 2);
    ws3[0]!.grad!.dispose();
    ws3[1]!.grad!.dispose();
    assert.equal(d.deferred!.pending, 0);
    assert.deepEqual(launchesDuring(d, () => {}), []);
    [...ref, ...ref3, ...ws, ...ws2, ...ws3].forEach((w) => {
      w.grad?.dispose();
      w.dispose();
    });
    plain.destroy();
  }
});

Deno.test("deferred weight gradients: a full group launches at once; held reads stay alive", () => {
  const d = fusedCpu;
  const cap = weightGradGroupCapacity(d.limits.maxStorageBuffersPerShaderStage);
  const live = d.stats().liveBuffers;
  const ws = chainGrads(d, cap + 1);
  assert.equal(d.deferred!.pending, 1, "the first group launched when it was full");
  // The waiting member's x, g and r outlive the backward's scope (weights and gradients: 2 each).
  assert.equal(backendOf(d).stats().liveBuffers, live + 2 * (cap + 1) + 3);
  ws.forEach((w) => {
    w.grad!.dispose();
    w.dispose();
  });
  assert.equal(d.stats().liveBuffers, live, "nothing leaks once the outputs are gone");
});

Deno.test("deferred weight gradients: a launch binding a held read runs after the group", async () => {
  const d = fusedCpu, plain = cpu;
  const grad = async (dev: Device, zeroAfter: boolean) => {
    const w = dev.tensor(hostRandom(8, 3), [8]);
    w.requiresGrad = true;
    const x = dev.tensor(hostRandom(4 * 8, 4), [4, 8]);
    backward(rmsNorm(x, w), { grad: dev.tensor(hostRandom(4 * 8, 5), [4, 8]) });
    let ops: string[] = [];
    if (zeroAfter) {
      assert.equal(dev.deferred!.pending, 1);
      ops = launchesDuring(dev, () => dev.run(overwrite(x)));
    }
    const out = [...await w.grad!.data()];
    [w.grad!, w, x].forEach((t) => t.dispose());
    return { out, ops };
  };
  const got = await grad(d, true);
  assert.deepEqual(got.ops, ["rmsNormWeightGradGroup", "overwrite"]);
  assert.deepEqual(got.out, (await grad(plain, false)).out, "computed from x before it changed");
});

/** A host-only launch that zeroes `t` in place. */
function overwrite(t: Tensor): Dispatch {
  return {
    op: "overwrite",
    key: "overwrite",
    wgsl: () => {
      throw new Error("host only");
    },
    cpu: ([b]) => void new Float32Array(b!).fill(0),
    buffers: [t.storage("overwrite")],
    workgroups: [1, 1, 1],
  };
}

Deno.test("a Transformer step launches one group for its norms' weight gradients", () => {
  for (const d of fusing) {
    const model = new TransformerLM(d, modelConfig("tiny", { seqLen: 8 }), 1);
    const ids = d.tensor(Uint32Array.from({ length: 16 }, (_, i) => i % 7), [2, 8], "u32");
    const ops = launchesDuring(d, () => scope(() => backward(model.loss(ids, ids))));
    const count = (op: string) => ops.filter((o) => o === op).length;
    assert.equal(count("rmsNormWeightGrad"), 0, d.kind);
    assert.equal(count("rmsNormWeightGradGroup"), 1, `${d.kind}: ${ops}`);
    assert.equal(count("full"), 0, `${d.kind}: the loss's seed is the device's shared 1: ${ops}`);
    assert.equal(count("crossEntropyBackward"), 1);
    model.zeroGrad();
    ids.dispose();
    model.dispose();
  }
});
