/**
 * The multi-tensor optimizer (kernels/optim_group.ts, AdamW in src/train/optimizer.ts) against the
 * per-tensor kernels it replaced: the same squared norms, clip factor, parameters and moments,
 * bit for bit on the CPU twin and the native backend, within f32 tolerance on WebGPU; groups
 * split at the binding limit; a step costs a few dispatches and its uniforms do not change from
 * step to step (what lets a recorded step be replayed).
 */
import assert from "node:assert/strict";
import type { Tensor } from "../mod.ts";
import type { Backend, DeviceLimits, Dispatch } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu.ts";
import { ValueError } from "../src/core/errors.ts";
import { Device } from "../src/tensor/device.ts";
import { AdamW, type AdamWConfig } from "../src/train/optimizer.ts";
import { adamwDispatch, clipScaleDispatch, sqNormDispatch } from "../kernels/optim.ts";
import {
  adamwGroupCapacity,
  adamwGroupDispatch,
  adamwStepValues,
  MAX_GROUP_TENSORS,
  sqNormGroupCapacity,
  sqNormGroupDispatch,
} from "../kernels/optim_group.ts";
import { assertClose, cpu, gpu, hostRandom } from "./helpers.ts";
import { threadDevices } from "./native_threads.ts";

/**
 * AdamW as it was before the multi-tensor kernels: per parameter one Σg² and one update
 * dispatch, lr and bias corrections in the uniforms, moments in one buffer per parameter.
 */
class PerTensorAdamW {
  readonly m: Tensor<"f32">[];
  readonly v: Tensor<"f32">[];
  readonly sq: Tensor<"f32">;
  readonly res: Tensor<"f32">;
  t = 0;
  constructor(
    readonly dev: Device,
    readonly params: Tensor<"f32">[],
    readonly c: Required<AdamWConfig>,
  ) {
    this.m = params.map((p) => dev.zeros(p.shape));
    this.v = params.map((p) => dev.zeros(p.shape));
    this.sq = dev.zeros([params.length]);
    this.res = dev.tensor([0, 1]);
  }
  step(lr: number): void {
    this.t++;
    const c = this.c, sq = this.sq.storage("ref"), res = this.res.storage("ref");
    this.params.forEach((p, slot) => {
      if (p.grad) this.dev.run(sqNormDispatch(p.grad.storage("ref"), p.size, sq, slot));
    });
    this.dev.run(clipScaleDispatch(sq, this.params.length, c.clipNorm, res));
    const bc1 = 1 - c.beta1 ** this.t, bc2 = 1 - c.beta2 ** this.t;
    this.params.forEach((p, i) => {
      if (!p.grad) return;
      const weightDecay = p.rank >= 2 ? c.weightDecay : 0;
      this.dev.run(adamwDispatch(
        { lr, beta1: c.beta1, beta2: c.beta2, eps: c.eps, weightDecay, bc1, bc2 },
        p.size,
        p.storage("ref"),
        this.m[i]!.storage("ref"),
        this.v[i]!.storage("ref"),
        p.grad.storage("ref"),
        res,
      ));
    });
  }
}

/**
 * A backend that records every dispatch and can report smaller limits than the one it wraps
 * (WebGPU's default of 8 storage buffers, say) while running on it.
 */
function recording(
  inner: Backend,
  limits: Partial<DeviceLimits> = {},
): { device: Device; log: Dispatch[] } {
  const log: Dispatch[] = [];
  const backend = new Proxy(inner, {
    get(target, key) {
      if (key === "dispatch") {
        return (d: Dispatch) => {
          log.push(d);
          target.dispatch(d);
        };
      }
      if (key === "limits") return { ...target.limits, ...limits };
      const value = Reflect.get(target, key);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  return { device: new Device(backend), log };
}

/** Odd sizes around the workgroup (256), matrices, one above 2047 workgroups of 256. */
const SHAPES: number[][] = [
  [1],
  [3],
  [255],
  [256, 1],
  [257],
  [7, 37],
  [1000],
  [4097],
  [70001],
  [5, 3],
  [2, 2, 2],
  [2047 * 256 + 5],
];

/** 40 parameters (more than any group holds): the shapes above, repeated with small ones. */
const PARAMS: number[][] = Array.from(
  { length: 40 },
  (_, i) => i < SHAPES.length ? SHAPES[i]! : [1 + ((i * 37) % 300), ...(i % 3 ? [] : [3])],
);

/** Parameters without a gradient in a step (their moments stay as they are). */
const NO_GRAD = new Set([4, 17, 33]);

const CONFIG: Required<AdamWConfig> = {
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weightDecay: 0.1,
  clipNorm: 0.5,
};

const LRS = [1e-2, 3e-3, 7e-3];

interface Outcome {
  params: Float32Array[];
  m: Float32Array[];
  v: Float32Array[];
  sq: Float32Array;
  res: Float32Array;
}

/** Three steps with changing lr on fresh parameters, by the grouped or the per-tensor path. */
async function train(dev: Device, grouped: boolean): Promise<Outcome> {
  const params = PARAMS.map((shape, i) => {
    const n = shape.reduce((a, b) => a * b, 1);
    return dev.tensor(hostRandom(n, i + 1), shape);
  });
  const opt = grouped
    ? new AdamW(dev, new Map(params.map((p, i) => [`p${i}`, p])), CONFIG)
    : new PerTensorAdamW(dev, params, CONFIG);
  for (const [t, lr] of LRS.entries()) {
    params.forEach((p, i) => {
      p.grad?.dispose();
      p.grad = NO_GRAD.has(i) && t > 0 ? null : dev.tensor(hostRandom(p.size, 100 * t + i, 3));
    });
    opt.step(lr);
  }
  let m: Float32Array[], v: Float32Array[], sq: Float32Array, res: Float32Array;
  if (opt instanceof AdamW) {
    const s = await opt.state();
    assert.equal(s.t, LRS.length);
    m = params.map((_, i) => s.m.get(`p${i}`)!);
    v = params.map((_, i) => s.v.get(`p${i}`)!);
    // The slots, then the norm and factor the AdamW launches stored (gradNorm's copy of them).
    const all = await opt.sqGradNorms.data();
    sq = all.slice(0, params.length);
    res = await opt.gradNorm.data();
    assert.deepEqual([...all.slice(params.length)], [...res]);
    opt.dispose();
  } else {
    m = await Promise.all(opt.m.map((t) => t.data()));
    v = await Promise.all(opt.v.map((t) => t.data()));
    sq = await opt.sq.data();
    res = await opt.res.data();
    for (const t of [...opt.m, ...opt.v, opt.sq, opt.res]) t.dispose();
  }
  const out = await Promise.all(params.map((p) => p.data()));
  for (const p of params) {
    p.grad?.dispose();
    p.dispose();
  }
  return { params: out, m, v, sq, res };
}

function assertSame(got: Outcome, want: Outcome, what: string, rtol = 0, atol = 0): void {
  const tol = { rtol, atol };
  assertClose(got.sq, want.sq, tol, `${what}: Σg²`);
  assertClose(got.res, want.res, tol, `${what}: [norm, clip factor]`);
  for (const [k, xs] of [["param", got.params], ["m", got.m], ["v", got.v]] as const) {
    const ref = k === "param" ? want.params : k === "m" ? want.m : want.v;
    xs.forEach((x, i) => assertClose(x, ref[i]!, tol, `${what}: ${k} ${i} [${PARAMS[i]}]`));
  }
}

const reference = await train(cpu, false);

Deno.test("grouped AdamW equals the per-tensor kernels bit for bit on the CPU twin (40 odd-sized params, splits, skipped grads, changing lr)", async () => {
  // The clip must engage, or the clip factor would not be tested.
  assert.ok(reference.res[1]! < 1, `clip factor ${reference.res[1]}`);
  assertSame(await train(cpu, true), reference, "cpu grouped vs per-tensor");
});

Deno.test("grouped AdamW: WebGPU's default limit of 8 storage buffers (groups of 2 and 7) gives the same bits", async () => {
  const { device, log } = recording(new CpuBackend(), { maxStorageBuffersPerShaderStage: 8 });
  assertSame(await train(device, true), reference, "cpu, 8 bindings");
  const sizes = log.filter((d) => d.op === "adamwGroup").map((d) => (d.buffers.length - 4) / 2);
  assert.ok(sizes.length > 0 && sizes.every((k) => k >= 1 && k <= 2), `groups ${sizes}`);
  const norms = log.filter((d) => d.op === "sqNormGroup").map((d) => d.buffers.length - 1);
  assert.ok(norms.every((k) => k <= 7) && norms.some((k) => k === 7), `groups ${norms}`);
  device.destroy();
});

Deno.test("grouped AdamW: native equals the CPU twin bit for bit on 1 and 3 threads", async () => {
  for (const dev of threadDevices) assertSame(await train(dev, true), reference, dev.description);
});

Deno.test("grouped AdamW: WebGPU matches the CPU twin and its own per-tensor kernels", async () => {
  if (!gpu) return;
  const grouped = await train(gpu, true);
  assertSame(grouped, reference, "webgpu grouped vs cpu", 1e-5, 1e-6);
  // Same adapter, same arithmetic per element: the grouped kernels change only who runs what.
  assertSame(grouped, await train(gpu, false), "webgpu grouped vs per-tensor", 1e-6, 1e-7);
});

Deno.test("grouped AdamW: a step is ceil(P / sqNorm group) + ceil(P / AdamW group) dispatches (the clip factor inside AdamW)", () => {
  const limits = [8, 32, 2 ** 31 - 1];
  for (const maxStorage of limits) {
    const { device, log } = recording(new CpuBackend(), {
      maxStorageBuffersPerShaderStage: maxStorage,
    });
    const ps = PARAMS.map((shape) => device.zeros(shape.length > 1 ? [3, 2] : [5]));
    using opt = new AdamW(device, new Map(ps.map((p, i) => [`p${i}`, p])), CONFIG);
    for (const p of ps) p.grad = device.ones(p.shape);
    opt.step(1e-3);
    log.length = 0;
    opt.step(1e-3);
    const P = ps.length;
    const sqGroup = sqNormGroupCapacity(maxStorage), adamGroup = adamwGroupCapacity(maxStorage);
    assert.equal(log.length, Math.ceil(P / sqGroup) + Math.ceil(P / adamGroup));
    assert.ok(!log.some((d) => d.op === "clipScale"), "no launch of its own for the clip factor");
    // The bound: two dispatches per group, against 2 per parameter before.
    assert.ok(log.length <= Math.ceil(P / adamGroup) * 2, `${log.length} dispatches`);
    device.destroy();
  }
});

// (That lr and the bias corrections still reach the update is what the bit-for-bit comparisons
// with the per-tensor kernels above check, with a different lr at every step.)
Deno.test("grouped AdamW: a step's uniforms do not change with lr or the step count", () => {
  const { device, log } = recording(new CpuBackend());
  const ps = [device.tensor(hostRandom(300, 1), [20, 15]), device.tensor(hostRandom(7, 2))];
  using opt = new AdamW(device, new Map(ps.map((p, i) => [`p${i}`, p])), CONFIG);
  const steps: Dispatch[][] = [];
  for (const lr of [1e-2, 5e-3, 1e-4]) {
    for (const p of ps) p.grad = device.tensor(hostRandom(p.size, 9, 2), p.shape);
    log.length = 0;
    opt.step(lr);
    steps.push([...log]);
  }
  const summary = (ds: Dispatch[]) =>
    ds.map((d) => ({ key: d.key, uniforms: Array.from(d.uniforms ?? []) }));
  assert.deepEqual(summary(steps[1]!), summary(steps[0]!));
  assert.deepEqual(summary(steps[2]!), summary(steps[0]!));
  device.destroy();
});

Deno.test("grouped AdamW: moments saved and loaded per parameter resume the same steps", async () => {
  const make = (dev: Device) =>
    PARAMS.slice(0, 20).map((shape, i) => {
      const n = shape.reduce((a, b) => a * b, 1);
      return dev.tensor(hostRandom(n, i + 1), shape);
    });
  const grads = (ps: Tensor<"f32">[], t: number) =>
    ps.forEach((p, i) => {
      p.grad?.dispose();
      p.grad = cpu.tensor(hostRandom(p.size, 50 * t + i, 2), p.shape);
    });
  const a = make(cpu), b = make(cpu);
  using optA = new AdamW(cpu, new Map(a.map((p, i) => [`p${i}`, p])), CONFIG);
  grads(a, 0);
  optA.step(1e-2);
  const saved = await optA.state();
  for (const [i, p] of a.entries()) assert.equal(saved.m.get(`p${i}`)!.length, p.size);
  // b: same weights as a after the first step, moments loaded.
  for (const [i, p] of b.entries()) cpu.backend.write(p.storage("test"), await a[i]!.data());
  using optB = new AdamW(cpu, new Map(b.map((p, i) => [`p${i}`, p])), CONFIG);
  optB.load(saved);
  grads(a, 1);
  grads(b, 1);
  optA.step(5e-3);
  optB.step(5e-3);
  for (const [i, p] of a.entries()) assert.deepEqual(await b[i]!.data(), await p.data());
  assert.throws(
    () => optB.load({ ...saved, m: new Map([...saved.m].map(([k, x]) => [k, x.subarray(1)])) }),
    (e: unknown) => e instanceof ValueError && /moments of p0/.test(e.message),
  );
});

Deno.test("group dispatches: Σg² slots equal the per-tensor kernel's; groups too large are refused", async () => {
  const sizes = [1, 255, 256, 257, 4097, 70001];
  const xs = sizes.map((n, i) => cpu.tensor(hostRandom(n, i + 3, 5)));
  using perTensor = cpu.zeros([sizes.length]);
  using grouped = cpu.zeros([sizes.length]);
  xs.forEach((x, i) => cpu.run(sqNormDispatch(x.storage("t"), x.size, perTensor.storage("t"), i)));
  // Reversed slots: the table, not the binding order, says where each sum goes.
  const members = xs.map((x, i) => ({ x: x.storage("t"), n: x.size, slot: sizes.length - 1 - i }));
  cpu.run(sqNormGroupDispatch(members, grouped.storage("t")));
  assert.deepEqual([...await grouped.data()], [...await perTensor.data()].reverse());
  const many = Array.from({ length: MAX_GROUP_TENSORS + 1 }, () => members[0]!);
  assert.throws(() => sqNormGroupDispatch(many, grouped.storage("t")), ValueError);
  assert.throws(() => sqNormGroupDispatch(members, grouped.storage("t"), 5), /exceeds/);
  const s = xs[0]!.storage("t");
  const one = { param: s, grad: s, n: 1, momentOffset: 0, weightDecay: 0 };
  const c = { beta1: 0.9, beta2: 0.95, eps: 1e-8 };
  const clip = { count: 1, maxNorm: 1 };
  assert.throws(() => adamwGroupDispatch(c, [], s, s, s, s, clip), ValueError);
  assert.throws(() => adamwGroupDispatch(c, [one, one, one], s, s, s, s, clip, 2), /exceeds/);
  for (const x of xs) x.dispose();
});

Deno.test("group dispatches: the launch geometry (elements per invocation, the workgroup cap) does not change a bit", async () => {
  // 2047 · 256 + 5 elements at one element per invocation: past the 2047 workgroups one tensor
  // of a full group may take, so the grid-stride loop runs twice for some invocations.
  const sizes = [1, 257, 2047 * 256 + 5, 70001];
  const c = { beta1: 0.9, beta2: 0.95, eps: 1e-8 };
  const run = async (dev: Device, how: "per-tensor" | number) => {
    const ps = sizes.map((n, i) => dev.tensor(hostRandom(n, i + 1)));
    const gs = sizes.map((n, i) => dev.tensor(hostRandom(n, i + 7, 2)));
    const total = sizes.reduce((a, b) => a + b, 0);
    // Σg² = 4 against a threshold of 1.5: the clip factor is 1.5 / (2 + 1e-6), about .75.
    const m = dev.zeros([total]), v = dev.zeros([total]), norms = dev.tensor([4, 0, 0]);
    const res = dev.zeros([2]);
    const clip = { count: 1, maxNorm: 1.5 };
    if (how === "per-tensor") {
      dev.run(clipScaleDispatch(norms.storage("t"), 1, clip.maxNorm, res.storage("t")));
    }
    const hyper = dev.tensor(adamwStepValues(1e-2, c.beta1, c.beta2, 1));
    let offset = 0;
    const members = sizes.map((n, i) => {
      const mb = {
        param: ps[i]!.storage("t"),
        grad: gs[i]!.storage("t"),
        n,
        momentOffset: offset,
        weightDecay: i % 2 ? 0.1 : 0,
      };
      offset += n;
      return mb;
    });
    const ms = sizes.map((n) => dev.zeros([n])), vs = sizes.map((n) => dev.zeros([n]));
    const h = await hyper.data();
    if (how === "per-tensor") {
      members.forEach((mb, i) =>
        dev.run(adamwDispatch(
          { ...c, lr: h[0]!, bc1: h[1]!, bc2: h[2]!, weightDecay: mb.weightDecay },
          mb.n,
          mb.param,
          ms[i]!.storage("t"),
          vs[i]!.storage("t"),
          mb.grad,
          res.storage("t"),
        ))
      );
    } else {
      dev.run(adamwGroupDispatch(
        c,
        members,
        m.storage("t"),
        v.storage("t"),
        hyper.storage("t"),
        norms.storage("t"),
        clip,
        undefined,
        how,
      ));
      const [, norm, factor] = await norms.data();
      assert.deepEqual([norm, factor], [
        ...await (async () => {
          dev.run(clipScaleDispatch(norms.storage("t"), 1, clip.maxNorm, res.storage("t")));
          return await res.data();
        })(),
      ], "the norm and factor stored after the slots are clipScale's");
    }
    const out = await Promise.all(ps.map((p) => p.data()));
    const moments = how === "per-tensor"
      ? await Promise.all(ms.map((x) => x.data()))
      : (await m.data()).slice(0);
    for (const t of [...ps, ...gs, ...ms, ...vs, m, v, res, norms, hyper]) t.dispose();
    return {
      out,
      moments: how === "per-tensor" ? concat(moments as Float32Array[]) : moments as Float32Array,
    };
  };
  const concat = (xs: Float32Array[]) => {
    const all = new Float32Array(xs.reduce((a, x) => a + x.length, 0));
    let o = 0;
    for (const x of xs) {
      all.set(x, o);
      o += x.length;
    }
    return all;
  };
  const exact = { rtol: 0, atol: 0 };
  for (const dev of gpu ? [cpu, gpu] : [cpu]) {
    const perTensor = await run(dev, "per-tensor");
    const [one, many] = [await run(dev, 1), await run(dev, 64)];
    // Same kernel, other geometry: the same bits on any adapter.
    one.out.forEach((x, i) => assertClose(x, many.out[i]!, exact, `param ${i}, 1 vs 64`));
    assertClose(one.moments, many.moments, exact, "moments, 1 vs 64");
    // Against the per-tensor kernel: bit for bit on the twin; a GPU compiler may contract the
    // two kernels' arithmetic differently (llvmpipe does not: it gives the same bits).
    const tol = dev.kind === "cpu" ? exact : { rtol: 1e-6, atol: 1e-7 };
    many.out.forEach((x, i) => assertClose(x, perTensor.out[i]!, tol, `param ${i}`));
    assertClose(many.moments, perTensor.moments, tol, "moments");
  }
});
