import assert from "node:assert/strict";
import {
  backward,
  type Device,
  matmul,
  mul,
  openDevice,
  rmsNorm,
  scope,
  sumAll,
  sumTo,
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
import {
  splitSumGroupCapacity,
  splitSumGroupDispatch,
  type SplitSumMember,
} from "../kernels/split_sum_group.ts";
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

Deno.test("splitSumGroup: every member is the f32 sum of its chunks in order, as sumTo's WGSL", async () => {
  const shapes: [number, number][] = [[2, 5], [4, 300], [8, 1], [3, 1000]]; // [splits, mn]
  for (const d of [fusedCpu, ...(gpu ? [gpu] : [])]) {
    const parts = shapes.map(([s, mn], i) => d.tensor(hostRandom(s * mn, 70 + i, 3), [s, mn]));
    const want = shapes.map((_, i) => sumTo(parts[i]!, [shapes[i]![1]]));
    // Two outputs share one partials buffer, the second from an offset.
    const shared = d.tensor(hostRandom(2 * 3 * 7, 90), [6, 7]);
    const outs = shapes.map(([, mn]) => d.empty([mn], "f32"));
    const outsShared = [d.empty([7], "f32"), d.empty([7], "f32")];
    const cap = splitSumGroupCapacity(d.limits.maxStorageBuffersPerShaderStage);
    const members: SplitSumMember[] = [
      ...shapes.map(([splits, mn], i) => ({
        splits,
        mn,
        parts: parts[i]!.storage("t"),
        offset: 0,
        out: outs[i]!.storage("t"),
      })),
      ...[0, 1].map((i) => ({
        splits: 3,
        mn: 7,
        parts: shared.storage("t"),
        offset: i * 21,
        out: outsShared[i]!.storage("t"),
      })),
    ];
    d.run(splitSumGroupDispatch("f32", members, cap));
    for (let i = 0; i < shapes.length; i++) {
      const [splits, mn] = shapes[i]!, host = await parts[i]!.data();
      const ref = Array.from({ length: mn }, (_, e) => {
        let s = 0;
        for (let c = 0; c < splits; c++) s = Math.fround(s + host[c * mn + e]!);
        return s;
      });
      const got = [...await outs[i]!.data()];
      assert.deepEqual(got, ref, `${d.kind} ${i}: f32 sums in chunk order`);
      // sumTo's WGSL sums the same way (its CPU twin sums in f64, a last-bit difference).
      if (d === gpu) assert.deepEqual(got, [...await want[i]!.data()], `${d.kind} ${i}: sumTo`);
    }
    const host = await shared.data();
    for (let i = 0; i < 2; i++) {
      const ref = Array.from({ length: 7 }, (_, e) => {
        let s = 0;
        for (let c = 0; c < 3; c++) s = Math.fround(s + host[i * 21 + c * 7 + e]!);
        return s;
      });
      assert.deepEqual([...await outsShared[i]!.data()], ref, `${d.kind}: shared partials ${i}`);
    }
    [...parts, ...want, ...outs, ...outsShared, shared].forEach((t) => t.dispose());
  }
});

Deno.test("split-K weight gradients: the sums wait and launch together, the same bits", async () => {
  if (!gpu) return; // split-K is WebGPU's (host backends run the whole K at once)
  const plain = await openDevice({ prefer: "webgpu", fuse: false });
  const grads = async (d: Device) => {
    // x [tokens, k] with a long token dim: Xᵀ·dY has a small output, so it is split.
    const x = d.tensor(hostRandom(2048 * 64, 1), [2048, 64]);
    const w1 = d.tensor(hostRandom(64 * 64, 2), [64, 64]),
      w2 = d.tensor(hostRandom(64 * 32, 3), [64, 32]);
    w1.requiresGrad = w2.requiresGrad = true;
    const ops = launchesDuring(
      d,
      () =>
        scope(() =>
          backward(
            sumAll(mul(matmul(matmul(x, w1), w2), d.tensor(hostRandom(2048 * 32, 4), [2048, 32]))),
          )
        ),
    );
    const out = [...await w1.grad!.data(), ...await w2.grad!.data()];
    [x, w1.grad!, w2.grad!, w1, w2].forEach((t) => t.dispose());
    return { ops, out };
  };
  const got = await grads(gpu), want = await grads(plain);
  const count = (ops: string[], op: string) => ops.filter((o) => o === op).length;
  assert.equal(count(want.ops, "sumTo"), 2, `${want.ops}`);
  assert.equal(count(got.ops, "sumTo"), 0, `${got.ops}`);
  assert.equal(count(got.ops, "splitSumGroup"), 1, `${got.ops}`);
  assert.deepEqual(got.out, want.out);
  plain.destroy();
});
