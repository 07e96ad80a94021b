/**
 * `matmulShared` (grouped projections of one input): forward equal to separate matmuls bit for
 * bit on every backend, gradients against separate matmuls and finite differences, the launch
 * counts, typed errors, and attention / FFN / a training step against the ungrouped path.
 */
import assert from "node:assert/strict";
import {
  add,
  backward,
  type Device,
  DTypeError,
  matmul,
  matmulShared,
  mul,
  mulScalar,
  scope,
  ShapeError,
  sumAll,
  type Tensor,
} from "../mod.ts";
import { Attention, FeedForward, modelConfig, TransformerLM } from "../src/nn/mod.ts";
import { sharedProjections } from "../src/nn/linear.ts";
import { AdamW } from "../src/train/optimizer.ts";
import { assertClose, cpu, gpu, hostRandom, native, others } from "./helpers.ts";
import { gradCheck, gradOnBoth } from "./gradcheck.ts";
import { linearGroupSplitDispatches } from "../kernels/linear_group.ts";

const ALL: Device[] = [cpu, ...others];

/** Shapes: x's dims, the weights' [k, n], how many weights. */
const CASES = [
  { what: "tiny q/k/v", x: [2, 8, 64], w: [64, 64], count: 3 },
  { what: "xs gate/up", x: [2, 8, 128], w: [128, 344], count: 2 },
  { what: "odd sizes (general kernel)", x: [3, 5, 13], w: [13, 11], count: 3 },
  { what: "unaligned n", x: [7, 16], w: [16, 12], count: 2 },
  { what: "one weight", x: [9, 8], w: [8, 16], count: 1 },
  { what: "one row (GEMV path)", x: [1, 1, 16], w: [16, 12], count: 3 },
];

const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

function hostCase(c: (typeof CASES)[number]) {
  return {
    hx: hostRandom(size(c.x), 11 + size(c.x)),
    hw: Array.from({ length: c.count }, (_, i) => hostRandom(size(c.w), 100 + i, 0.5)),
  };
}

Deno.test("matmulShared: every output equals the separate matmul bit for bit, on every backend", async () => {
  for (const dev of ALL) {
    for (const c of CASES) {
      const { hx, hw } = hostCase(c);
      const x = dev.tensor(hx, c.x), ws = hw.map((h) => dev.tensor(h, c.w));
      const outs = matmulShared(x, ws);
      assert.equal(outs.length, c.count);
      for (let i = 0; i < c.count; i++) {
        using ref = matmul(x.reshape([-1, c.w[0]!]), ws[i]!);
        assert.deepEqual(outs[i]!.shape, [...c.x.slice(0, -1), c.w[1]]);
        assert.deepEqual(await outs[i]!.data(), await ref.data(), `${c.what} [${i}] ${dev.kind}`);
      }
      [x, ...ws, ...outs].forEach((t) => t.dispose());
    }
  }
});

Deno.test("matmulShared: native and WebGPU match the CPU twin", async () => {
  for (const c of CASES) {
    const { hx, hw } = hostCase(c);
    for (const dev of others) {
      const outs = matmulShared(dev.tensor(hx, c.x), hw.map((h) => dev.tensor(h, c.w)));
      const refs = matmulShared(cpu.tensor(hx, c.x), hw.map((h) => cpu.tensor(h, c.w)));
      for (let i = 0; i < c.count; i++) {
        assertClose(await outs[i]!.data(), await refs[i]!.data(), { rtol: 1e-5, atol: 1e-5 });
      }
    }
  }
});

Deno.test("matmulShared: f16 storage equals the separate f16 matmul bit for bit", async () => {
  const devices = [cpu, ...others].filter((d) => d.backend.hasF16);
  for (const dev of devices) {
    for (const c of CASES) {
      const { hx, hw } = hostCase(c);
      const x = dev.tensor(Float16Array.from(hx), c.x, "f16");
      const ws = hw.map((h) => dev.tensor(Float16Array.from(h), c.w, "f16"));
      const outs = matmulShared(x, ws);
      for (let i = 0; i < c.count; i++) {
        const ref = matmul(x.reshape([-1, c.w[0]!]), ws[i]!);
        assert.deepEqual(await outs[i]!.data(), await ref.data(), `${c.what} f16 ${dev.kind}`);
      }
    }
  }
});

/** A loss that weighs the outputs differently, so every gradient term matters. */
function combine(outs: Tensor[]): Tensor {
  let y = outs[0]!;
  if (outs[1]) y = add(y, mulScalar(outs[1], 2));
  if (outs[2]) y = add(y, mul(outs[2], outs[2]));
  return y;
}

Deno.test("matmulShared: gradients against finite differences and across backends", async () => {
  const x = { data: hostRandom(3 * 5 * 12, 1), shape: [3, 5, 12] };
  const w = (s: number) => ({ data: hostRandom(12 * 8, s, 0.5), shape: [12, 8] });
  const fn = ([xx, ...ws]: Tensor[]) => combine(matmulShared(xx!, ws));
  await gradCheck(fn, [x, w(2), w(3), w(4)], { what: "matmulShared" });
  await gradOnBoth(fn, [x, w(2), w(3), w(4)], { rtol: 1e-4, atol: 1e-5 }, "matmulShared");
  // Aligned (tiled kernels) and a weight that needs no gradient.
  const xa = { data: hostRandom(16 * 32, 5), shape: [16, 32] };
  const wa = (s: number, grad = true) => ({
    data: hostRandom(32 * 16, s, 0.5),
    shape: [32, 16],
    grad,
  });
  await gradOnBoth(fn, [xa, wa(6), wa(7, false), wa(8)], { rtol: 1e-4, atol: 1e-5 }, "aligned");
});

/** Gradients of x and every weight through `fn`, as host arrays. */
async function gradsThrough(
  dev: Device,
  hx: Float32Array,
  xShape: number[],
  hw: Float32Array[],
  wShape: number[],
  fn: (x: Tensor<"f32">, ws: Tensor<"f32">[]) => Tensor[],
  use: number[],
): Promise<Float32Array[]> {
  const x = dev.tensor(hx, xShape), ws = hw.map((h) => dev.tensor(h, wShape));
  for (const t of [x, ...ws]) t.requiresGrad = true;
  const outs = fn(x, ws);
  backward(sumAll(combine(use.map((i) => outs[i]!))));
  const grads = [x, ...ws].map((t) => t.grad);
  const out = await Promise.all(grads.map((g) => g ? g.data() : Promise.resolve(null)));
  [x, ...ws].forEach((t) => t.dispose());
  return out.map((d) => (d ? Float32Array.from(d) : new Float32Array(0)));
}

Deno.test("matmulShared: gradients equal separate matmuls' (dX up to f32 rounding), unused outputs too", async () => {
  const c = CASES[0]!;
  const { hx, hw } = hostCase(c);
  const separate = (x: Tensor<"f32">, ws: Tensor<"f32">[]) =>
    ws.map((w) => matmul(x.reshape([-1, 64]), w).reshape([...c.x.slice(0, -1), 64]));
  for (const dev of ALL) {
    for (const use of [[0, 1, 2], [0, 2], [1]]) {
      const got = await gradsThrough(dev, hx, c.x, hw, c.w, matmulShared, use);
      const want = await gradsThrough(dev, hx, c.x, hw, c.w, separate, use);
      got.forEach((g, i) => {
        assert.equal(g.length, want[i]!.length, `grad ${i} present (${use})`);
        // One rounding instead of one per product and per sum: within f32 rounding of the
        // largest terms (the entries themselves may be small after cancellation).
        const scale = want[i]!.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        assertClose(
          g,
          want[i]!,
          { rtol: 1e-5, atol: 1e-5 * scale },
          `${dev.kind} grad ${i} (${use})`,
        );
      });
    }
  }
});

/** Launches of a 3-way projection's forward and backward, grouped or as separate matmuls. */
function launches(dev: Device, grouped: boolean): [number, number] {
  const x = dev.randn([4, 16, 32], { seed: 1 });
  const ws = [2, 3, 4].map((seed) => dev.randn([32, 32], { seed }));
  for (const t of [x, ...ws]) t.requiresGrad = true;
  const d0 = dev.stats().dispatches;
  const outs = grouped ? matmulShared(x, ws) : ws.map((w) => matmul(x.reshape([64, 32]), w));
  const d1 = dev.stats().dispatches;
  const d2 = scope(() => {
    backward(sumAll(add(add(mulScalar(outs[0]!, 1), outs[1]!), outs[2]!)));
    return dev.stats().dispatches;
  });
  [x, ...ws, ...outs].forEach((t) => t.dispose());
  return [d1 - d0, d2 - d1];
}

Deno.test("matmulShared: one launch forward; backward 2 launches where separate products take 6 and 2 sums", () => {
  for (const dev of ALL) {
    const [fg, bg] = launches(dev, true), [fs, bs] = launches(dev, false);
    assert.equal(fg, 1, `${dev.kind} forward`);
    assert.equal(fs, 3, `${dev.kind} separate forward`);
    // On WebGPU the two sums of x's gradient would fuse into neighbouring elementwise work.
    if (dev.kind === "webgpu") assert.ok(bs - bg >= 4, `${dev.kind}: ${bs} → ${bg}`);
    else assert.equal(bs - bg, 6, `${dev.kind}: backward ${bs} → ${bg}`);
  }
});

Deno.test("matmulShared: typed errors name the op and shapes", () => {
  const x = cpu.ones([2, 8]);
  const w = (s: number[]) => cpu.ones(s);
  assert.throws(() => matmulShared(x, []), ShapeError);
  assert.throws(() => matmulShared(x, [w([8, 4]), w([8, 4]), w([8, 4]), w([8, 4])]), ShapeError);
  assert.throws(() => matmulShared(x, [w([8, 4]), w([8, 5])]), /matmulShared.*\[8, 5\]/s);
  assert.throws(() => matmulShared(x, [w([7, 4])]), /matmulShared.*inner dims differ/s);
  assert.throws(() => matmulShared(x, [cpu.ones([8, 4], "f16")]), DTypeError);
  assert.throws(() => matmulShared(x, [w([2, 8, 4])]), ShapeError);
});

/** Output and every parameter gradient of a module's forward, grouped or not. */
async function moduleRun(
  dev: Device,
  make: (dev: Device) => Attention | FeedForward,
  grouped: boolean,
): Promise<{ y: Float32Array; grads: Map<string, Float32Array> }> {
  sharedProjections.enabled = grouped;
  try {
    using m = make(dev);
    using x = dev.randn([2, 8, 64], { seed: 9 });
    const y = m.forward(x);
    backward(sumAll(mul(y, y)));
    const grads = new Map<string, Float32Array>();
    for (const [name, p] of m.namedParameters()) {
      grads.set(name, Float32Array.from(await p.grad!.data()));
    }
    const out = { y: Float32Array.from(await y.data()), grads };
    y.dispose();
    return out;
  } finally {
    sharedProjections.enabled = true;
  }
}

Deno.test("attention and FFN: grouped projections give the separate path's output bit for bit and its gradients", async () => {
  const config = modelConfig("tiny", { sparsity: 0.5 });
  const makers = {
    attention: (d: Device) => new Attention(d, "attn", config, 1),
    ffn: (d: Device) => new FeedForward(d, "ffn", config, 1),
    bitnetAttention: (d: Device) => new Attention(d, "attn", { ...config, bitnet: true }, 1),
    bitnetFfn: (d: Device) => new FeedForward(d, "ffn", { ...config, bitnet: true }, 1),
  };
  for (const dev of ALL) {
    for (const [name, make] of Object.entries(makers)) {
      const a = await moduleRun(dev, make, true), b = await moduleRun(dev, make, false);
      assert.deepEqual(a.y, b.y, `${name} forward on ${dev.kind}`);
      assert.equal(a.grads.size, b.grads.size);
      for (const [p, g] of a.grads) {
        assertClose(g, b.grads.get(p)!, { rtol: 1e-4, atol: 1e-6 }, `${name} ${p} on ${dev.kind}`);
      }
    }
  }
});

async function stepDispatches(dev: Device, grouped: boolean): Promise<number> {
  sharedProjections.enabled = grouped;
  try {
    using model = new TransformerLM(dev, modelConfig("tiny", { sparsity: 0.5, seqLen: 32 }), 1);
    for (const s of model.sites()) s.countEnabled = false;
    using opt = new AdamW(dev, model.namedParameters());
    using ids = dev.tensor(Uint32Array.from({ length: 64 }, (_, i) => i % 256), [2, 32], "u32");
    using tg = dev.tensor(
      Uint32Array.from({ length: 64 }, (_, i) => (i * 7) % 256),
      [2, 32],
      "u32",
    );
    const step = () =>
      scope(() => {
        backward(model.loss(ids, tg));
        opt.step(1e-3);
        model.zeroGrad();
      });
    step();
    await dev.flush();
    const d0 = dev.stats().dispatches;
    step();
    await dev.flush();
    return dev.stats().dispatches - d0;
  } finally {
    sharedProjections.enabled = true;
  }
}

Deno.test("a tiny training step launches fewer kernels with grouped projections", async () => {
  for (const dev of gpu ? [gpu, native] : [native]) {
    const before = await stepDispatches(dev, false), after = await stepDispatches(dev, true);
    console.log(`${dev.kind}: dispatches per tiny step ${before} → ${after}`);
    // Per block: q/k/v 9 → 3 products and 2 fewer sums, gate/up 6 → 3 products and 1 fewer sum.
    assert.ok(before - after >= 20, `${dev.kind}: ${before} → ${after}`);
  }
});

Deno.test("matmulShared: split-K weight gradients (many rows, small weights) match the twin", async () => {
  const fn = ([xx, ...ws]: Tensor[]) => combine(matmulShared(xx!, ws));
  // 2048 rows into [32, 16]: 8 chunks, tiled; 1536 into [24, 12]: 4 chunks, general kernel.
  for (const [rows, k, n] of [[2048, 32, 16], [1536, 24, 12]] as const) {
    const inputs = [
      { data: hostRandom(rows * k, 3), shape: [rows, k] },
      ...[4, 5, 6].map((s) => ({ data: hostRandom(k * n, s, 0.5), shape: [k, n] })),
    ];
    await gradOnBoth(fn, inputs, { rtol: 1e-4, atol: 1e-4 }, `split-K ${rows}×${k}·${k}×${n}`);
  }
  const dev = gpu;
  if (!dev) return;
  // On WebGPU the backward is dX, the chunk products and their sum: three launches, no matmul
  // (the sums wait for the weight gradients' first reader and go as one deferred group launch).
  const ops: string[] = [];
  const backend = dev.backend, dispatch = backend.dispatch;
  const x = dev.randn([2048, 32], { seed: 1 });
  const ws = [2, 3, 4].map((seed) => dev.randn([32, 16], { seed }));
  for (const t of [x, ...ws]) t.requiresGrad = true;
  try {
    scope(() => {
      const loss = sumAll(combine(matmulShared(x, ws)));
      backend.dispatch = (d) => {
        ops.push(d.op);
        dispatch.call(backend, d);
      };
      backward(loss);
    });
    dev.deferred!.emit();
  } finally {
    backend.dispatch = dispatch;
  }
  const grouped = ops.filter((o) => /^(linearGroup|matmul|splitSum)/.test(o));
  assert.deepEqual(grouped, ["linearGroupSum", "linearGroupSplitK", "splitSumGroup"]);
  [x, ...ws].forEach((t) => t.dispose());
});

Deno.test("linearGroupSplitDispatches: chunk products and their sum equal xᵀ·g on every backend", async () => {
  for (const dev of ALL) {
    const x = dev.tensor(hostRandom(512 * 24, 1), [512, 24]);
    const gs = [2, 3, 4].map((s) => dev.tensor(hostRandom(512 * 12, s), [512, 12]));
    const parts = dev.empty([12, 24, 12], "f32");
    const outs = gs.map(() => dev.empty([24, 12], "f32"));
    const p = {
      kind: "shared",
      count: 3,
      m: 24,
      n: 12,
      k: 512,
      transposeA: true,
      transposeB: false,
      dtype: "f32",
      splits: 4,
    } as const;
    const launches = linearGroupSplitDispatches(
      p,
      x.storage("test"),
      gs.map((g) => g.storage("test")),
      parts.storage("test"),
      outs.map((o) => o.storage("test")),
    );
    for (const d of launches) dev.run(d);
    for (let i = 0; i < 3; i++) {
      using ref = matmul(x, gs[i]!, { transposeA: true });
      assertClose(await outs[i]!.data(), await ref.data(), { rtol: 1e-5, atol: 1e-5 }, dev.kind);
    }
    [x, ...gs, parts, ...outs].forEach((t) => t.dispose());
  }
  assert.throws(
    () =>
      linearGroupSplitDispatches(
        { ...SPLIT_BAD },
        cpu.ones([1]).storage("t"),
        [],
        cpu.ones([1]).storage("t"),
        [],
      ),
    /split-K/,
  );
});

const SPLIT_BAD = {
  kind: "summed",
  count: 1,
  m: 8,
  n: 8,
  k: 8,
  transposeA: false,
  transposeB: true,
  dtype: "f32",
  splits: 2,
} as const;
