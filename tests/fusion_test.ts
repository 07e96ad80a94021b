/**
 * Lazy fused elementwise execution (kernels/fused.ts, src/tensor/fusion.ts): fused results
 * against unfused ones on the CPU twins (bit for bit: same ops in the same order, each node
 * rounded to its dtype) and on WebGPU (within f32 tolerance: the compiler may contract a
 * multiply and an add inside one kernel); what is written, when a group is emitted, how it
 * splits, and that errors still come from the op.
 */
import assert from "node:assert/strict";
import {
  add,
  addScalar,
  backward,
  broadcastTo,
  cast,
  type Device,
  DisposedError,
  div,
  DTypeError,
  exp,
  maximum,
  mul,
  mulScalar,
  neg,
  relu,
  rsubScalar,
  scope,
  ShapeError,
  sigmoid,
  sub,
  sum,
  sumAll,
  tanh,
  type Tensor,
  where,
} from "../mod.ts";
import { CpuBackend } from "../src/backend/cpu.ts";
import { Device as DeviceClass } from "../src/tensor/device.ts";
import { binaryRaw, unaryRaw } from "../src/ops/elementwise.ts";
import { BINARY, type BinaryOp, UNARY, type UnaryOp } from "../kernels/elementwise.ts";
import { assertClose, cpu, gpu, hostRandom } from "./helpers.ts";
import { compareAll, cpuFused, evaluate, gpuEager, RecordingBackend } from "./fusion_helpers.ts";

const X = hostRandom(4 * 5 * 6, 1, 2), W = hostRandom(6, 2), R = hostRandom(4 * 5, 3);

Deno.test("fused chains with broadcasts, scalars and shared subexpressions match unfused", async () => {
  await compareAll("chain", (d) => {
    const x = d.tensor(X, [4, 5, 6]), w = d.tensor(W, [6]), r = d.tensor(R, [4, 5, 1]);
    const h = add(mul(x, w), r); // [6] and [4,5,1] broadcast over [4,5,6]
    const e = exp(mulScalar(h, -0.5)); // shared by both outputs below
    const y = div(add(e, h), addScalar(mul(e, e), 1));
    const z = sub(rsubScalar(sigmoid(y), 1), tanh(maximum(h, neg(e))));
    return [y, relu(z)];
  });
});

Deno.test("a fused WebGPU chain gives the same bits run after run", async () => {
  if (!gpu) return;
  const build = (d: Device) => {
    const x = d.tensor(X, [4, 5, 6]), w = d.tensor(W, [6]);
    return [tanh(add(mul(exp(mulScalar(x, 0.3)), w), x))];
  };
  const first = await evaluate(gpu, build);
  assert.deepEqual(await evaluate(gpu, build), first);
});

Deno.test("every unary and binary op fuses to the values of its eager kernel", async () => {
  const pos = (v: number) => Math.abs(v) + 0.01;
  for (const op of Object.keys(UNARY) as UnaryOp[]) {
    const positive = op === "log" || op === "sqrt" || op === "rsqrt";
    await compareAll(`unary ${op}`, (d) => {
      const x = d.tensor(X.map((v) => (positive ? pos(v) : v)), [4, 5, 6]);
      return [unaryRaw(op, addScalar(x, 0.25))];
    });
  }
  for (const op of Object.keys(BINARY) as BinaryOp[]) {
    const positive = op === "pow";
    await compareAll(`binary ${op}`, (d) => {
      const x = d.tensor(X.map((v) => (positive ? pos(v) : v)), [4, 5, 6]);
      const w = d.tensor(op === "pow" ? [2, 3, 0.5, 1, -1, 2.5] : W, [6]);
      return [binaryRaw(op, mulScalar(x, 1.5), w), binaryRaw(op, w, x)];
    }, { rtol: 1e-4, atol: 1e-5 });
  }
});

Deno.test("both operands broadcast, rank-0 operands and empty tensors", async () => {
  await compareAll("broadcast both", (d) => {
    const col = d.tensor(R.slice(0, 4), [4, 1]), row = d.tensor(W.slice(0, 5), [1, 5]);
    const s = d.tensor(0.75); // rank 0, broadcast over everything
    const y = mul(add(col, row), s);
    return [sub(y, exp(s)), maximum(y, add(row, row))];
  });
  for (const dev of [cpuFused, gpu].filter((d): d is Device => d !== null)) {
    using e = dev.zeros([0, 3]);
    using y = addScalar(exp(e), 1);
    assert.deepEqual(y.shape, [0, 3]);
    assert.equal((await y.data()).length, 0);
  }
});

Deno.test("where and casts fuse: row flags, suffix conditions, int and float round trips", async () => {
  await compareAll("where/cast", (d) => {
    const x = d.tensor(X, [4, 5, 6]);
    const flag = d.tensor(Float32Array.from(R, (v) => (v > 0 ? 1 : 0)), [4, 5, 1]);
    const cols = d.tensor([1, 0, 1, 1, 0, 0], [6], "i32");
    const a = where(flag, exp(x), neg(x)); // one flag per row
    const b = where(cols, a, mulScalar(x, 3)); // an i32 condition per column
    const i = cast(mulScalar(b, 10), "i32"); // truncates toward zero
    const u = cast(i, "u32"); // negative i32 wrap as WGSL's conversion does
    return [b, cast(i, "f32"), cast(u, "f32")];
  });
});

Deno.test("broadcastTo is a node of the group, for floats and integers", async () => {
  await compareAll("broadcastTo", (d) => {
    const w = d.tensor(W, [6]), r = d.tensor(R, [4, 5, 1]);
    const i = d.tensor([3, -1, 4, 1, -5, 9], [1, 6], "i32");
    return [
      add(broadcastTo(exp(w), [4, 5, 6]), broadcastTo(r, [4, 5, 6])),
      broadcastTo(i, [3, 6]),
    ];
  });
});

Deno.test("integer dtypes fuse with WGSL's integer semantics", async () => {
  const ints = Int32Array.from(X, (v) => Math.round(v * 50));
  await compareAll("i32", (d) => {
    const a = d.tensor(ints, [4, 5, 6], "i32");
    const b = d.tensor([3, -2, 0, 7, 1, -5], [6], "i32");
    const q = binaryRaw("div", a, b); // b = 0 gives a
    const m = binaryRaw("mul", binaryRaw("maximum", q, neg(a)), b);
    return [m, unaryRaw("sign", sub(m, q)), binaryRaw("gt", m, q), unaryRaw("abs", a)];
  });
  await compareAll("u32", (d) => {
    const a = d.tensor(Uint32Array.from(ints, (v) => Math.abs(v)), [4, 5, 6], "u32");
    const b = d.tensor([3, 2, 1, 7, 1, 5], [6], "u32");
    return [binaryRaw("minimum", binaryRaw("div", a, b), add(b, b)), binaryRaw("eq", a, a)];
  });
});

Deno.test("f16 storage: each fused node rounds to f16 as a store would", async () => {
  const run = (d: Device) => {
    const x = cast(d.tensor(X, [4, 5, 6]), "f16");
    const y = add(mul(x, x), mulScalar(x, 1 / 3)); // every intermediate rounds to f16
    return [cast(y, "f32"), cast(mulScalar(cast(x, "f32"), 1 / 3), "f16")];
  };
  const ref = await evaluate(cpu, run);
  assert.deepEqual(await evaluate(cpuFused, run), ref);
  if (gpu?.backend.hasF16 && gpuEager) {
    const fused = await evaluate(gpu, run), eager = await evaluate(gpuEager, run);
    fused.forEach((v, i) => {
      assertClose(v, eager[i]!, { rtol: 1e-3, atol: 1e-3 }, `f16 output ${i} fused vs eager`);
      assertClose(v, ref[i]!, { rtol: 1e-3, atol: 1e-3 }, `f16 output ${i} fused vs CPU`);
    });
  }
});

Deno.test("a chain whose intermediates are disposed writes only its result", async () => {
  const be = new RecordingBackend();
  using dev = new DeviceClass(be, { fuse: true });
  using x = dev.tensor(X, [4, 5, 6]);
  using w = dev.tensor(W, [6]);
  const before = be.seen.length;
  using y = scope(() => {
    let h = x;
    for (let i = 0; i < 20; i++) h = i % 2 ? add(h, w) : mulScalar(h, 0.9);
    return tanh(h);
  });
  assert.equal(dev.fusion!.pending, 21);
  assertClose(
    await y.data(),
    await evaluate(cpu, (d) => {
      let h = d.tensor(X, [4, 5, 6]);
      for (let i = 0; i < 20; i++) h = i % 2 ? add(h, d.tensor(W, [6])) : mulScalar(h, 0.9);
      return [tanh(h)];
    }).then((v) => v[0]!),
    { rtol: 0, atol: 0 },
  );
  assert.equal(be.seen.length - before, 1);
  const d = be.seen[be.seen.length - 1]!;
  // Named after the ops it computes, so errors, captures and profiles still say what ran.
  assert.equal(d.op, "mulScalar+add+tanh");
  // x and w read, y written: the 20 intermediates were neither written nor allocated past use.
  assert.deepEqual(
    d.buffers.map((s) => s.id).sort(),
    [x, w, y].map((t) => t.storage("t").id).sort(),
  );
});

Deno.test("kept intermediates are written; a node nobody needs is not computed", async () => {
  const be = new RecordingBackend();
  using dev = new DeviceClass(be, { fuse: true });
  using x = dev.tensor(X, [4, 5, 6]);
  const before = be.seen.length;
  const a = exp(x);
  const dead = mulScalar(a, 7);
  dead.dispose();
  const b = addScalar(a, 1); // a is still held: both a and b are written
  assert.deepEqual([...await a.data()], [...await evaluate(cpu, (d) => [exp(d.tensor(X))])][0]);
  assert.equal(be.seen.length - before, 1);
  const nodes = be.seen[be.seen.length - 1]!;
  assert.equal(nodes.buffers.length, 3); // x; a, b
  assert.ok(!nodes.wgsl().includes("b_mul_f32"), "the disposed node is not computed");
  a.dispose();
  b.dispose();
});

Deno.test("an input disposed while its group is pending still reads its values", async () => {
  for (const dev of [cpuFused, gpu].filter((d): d is Device => d !== null)) {
    const x = dev.tensor(X, [120]);
    const y = mulScalar(x, 2); // pending: reads x
    const live = dev.fusion!.pending;
    x.dispose(); // the group's reference keeps x's buffer out of the pool...
    const others = [0, 1, 2].map(() => addScalar(y, 1)); // ...so these cannot be given it
    assert.equal(dev.fusion!.pending, live + 3);
    assertClose(await y.data(), Array.from(X, (v) => 2 * v), { rtol: 0, atol: 0 });
    assertClose(await others[2]!.data(), Array.from(X, (v) => Math.fround(2 * v) + 1));
    for (const t of [y, ...others]) t.dispose();
  }
});

Deno.test("a group is emitted before any other dispatch, so order is kept", async () => {
  for (const dev of [cpuFused, gpu].filter((d): d is Device => d !== null)) {
    using x = dev.tensor(X, [20, 6]);
    using y = addScalar(x, 1); // pending
    assert.equal(dev.fusion!.pending, 1);
    using s = sum(y); // ends the group: it stays pending but takes no more nodes
    assert.equal(dev.fusion!.pending, 1);
    using z = mul(s, s); // reads the sum: the group is emitted, and this starts a new one
    assert.equal(dev.fusion!.pending, 1);
    const expect = Array.from({ length: 20 }, (_, r) => {
      let t = 0;
      for (let c = 0; c < 6; c++) t += Math.fround(X[r * 6 + c]! + 1);
      return t * t;
    });
    assertClose(await z.data(), expect, { rtol: 1e-5, atol: 1e-5 });
    // A reshape of a pending output feeds the next op by index, in the same group.
    using r = addScalar(y, 2);
    using v = neg(r.reshape([120]));
    assert.equal(dev.fusion!.pending, 2);
    assertClose(await v.data(), Array.from(X, (t) => -(Math.fround(t + 1) + 2)));
  }
});

Deno.test("the 1,000-op chain is one dispatch fused, 1,000 unfused", async () => {
  for (const [dev, expected] of [[cpuFused, 1], [cpu, 1000], [gpu, 1]] as const) {
    if (!dev) continue;
    using x = dev.tensor(hostRandom(4096, 9), [4096]);
    const d0 = dev.stats().dispatches;
    using y = scope(() => {
      let y = x;
      for (let i = 0; i < 1000; i++) y = i % 2 ? add(y, x) : mulScalar(y, 0.5);
      return y;
    });
    await y.data();
    assert.equal(dev.stats().dispatches - d0, expected, dev.kind);
  }
});

Deno.test("a long fused chain is submitted as it is emitted, a short one at the flush", async () => {
  if (!gpu) return;
  using x = gpu.tensor(hostRandom(64, 3), [64]);
  await gpu.flush();
  const s0 = gpu.stats().submits;
  // 300 ops in one kernel count as 300 launches toward WebGPU's submit-every-256 rule.
  using y = scope(() => {
    let y = x;
    for (let i = 0; i < 300; i++) y = addScalar(y, 1);
    return y;
  });
  gpu.fusion!.emit();
  assert.equal(gpu.stats().submits - s0, 1);
  using z = scope(() => addScalar(addScalar(x, 1), 1));
  gpu.fusion!.emit();
  assert.equal(gpu.stats().submits - s0, 1);
  const xv = [...await x.data()];
  const plus = (v: number, times: number) => {
    for (let k = 0; k < times; k++) v = Math.fround(v + 1);
    return v;
  };
  assert.deepEqual([...await y.data()], xv.map((v) => plus(v, 300)));
  assert.deepEqual([...await z.data()], xv.map((v) => plus(v, 2)));
});

Deno.test("a group splits to stay within the storage-binding limit", async () => {
  const be = new RecordingBackend();
  using dev = new DeviceClass(be, { fuse: { maxBindings: 4 } });
  const build = (d: Device) => {
    const xs = [0, 1, 2, 3, 4].map((k) => d.tensor(hostRandom(30, k + 1), [5, 6]));
    const w = d.tensor(W, [6]);
    let h = mul(xs[0]!, w);
    const kept = [h];
    for (const x of xs.slice(1)) {
      h = add(exp(mulScalar(h, 0.3)), x);
      kept.push(h);
    }
    return [...kept, relu(h)];
  };
  const before = be.seen.length;
  const got = await evaluate(dev, build);
  const fused = be.seen.slice(before).filter((d) => d.key.startsWith("fused"));
  assert.ok(fused.length > 1, `split into ${fused.length}`);
  for (const d of fused) assert.ok(d.buffers.length <= 4, `${d.buffers.length} bindings`);
  assert.deepEqual(got, await evaluate(cpu, build));
  // An intermediate no tensor holds but a later kernel reads goes through a temporary.
  const chain = (d: Device) => {
    const xs = [0, 1, 2, 3].map((k) => d.tensor(hostRandom(30, k + 7), [30]));
    return [scope(() => add(add(add(xs[0]!, xs[1]!), xs[2]!), xs[3]!))];
  };
  assert.deepEqual(await evaluate(dev, chain), await evaluate(cpu, chain));
  assert.equal(dev.stats().liveBuffers, 0);
});

Deno.test("a group is emitted at its node limit", async () => {
  using dev = new DeviceClass(new CpuBackend(), { fuse: { maxNodes: 3 } });
  using x = dev.tensor([1, 2]);
  const d0 = dev.stats().dispatches;
  using y = scope(() => addScalar(addScalar(addScalar(addScalar(x, 1), 1), 1), 1));
  assert.equal(dev.fusion!.pending, 1);
  assert.deepEqual([...await y.data()], [5, 6]);
  assert.equal(dev.stats().dispatches - d0, 2);
});

Deno.test("scalar constants are uniforms: other values reuse the pipeline", async () => {
  if (!gpu) return;
  const dev = gpu;
  const run = async (s: number) => {
    using x = dev.tensor(X);
    using y = scope(() => addScalar(mulScalar(exp(x), s), -s));
    return [...await y.data()];
  };
  await run(2);
  const p0 = gpu.stats().pipelines;
  const v = await run(3);
  assert.equal(gpu.stats().pipelines, p0);
  assertClose(v, Array.from(X, (t) => Math.exp(t) * 3 - 3), { rtol: 1e-5, atol: 1e-5 });
});

Deno.test("errors are raised at the op, naming it and the shapes", () => {
  for (const dev of [cpuFused, gpu].filter((d): d is Device => d !== null)) {
    const a = dev.tensor([1, 2, 3], [3]), b = dev.tensor([1, 2], [2]);
    const p = exp(a); // pending
    assert.throws(
      () => add(p, b),
      (e: Error) => e instanceof ShapeError && /add.*\[3\].*\[2\]/.test(e.message),
    );
    assert.throws(
      () => add(p, dev.tensor([1, 2, 3], [3], "i32") as unknown as Tensor<"f32">),
      DTypeError,
    );
    assert.throws(() => where(b, p, p), /where/);
    const gone = exp(a);
    gone.dispose();
    assert.throws(() => neg(gone), DisposedError);
    for (const t of [a, b, p]) t.dispose();
  }
});

Deno.test("autograd through fused ops: gradients equal the unfused ones", async () => {
  const grads = async (dev: Device) => {
    const x = dev.tensor(X, [4, 5, 6]), w = dev.tensor(W, [6]);
    x.requiresGrad = true;
    w.requiresGrad = true;
    scope(() => backward(sumAll(tanh(mul(sigmoid(add(x, w)), relu(mulScalar(x, 2)))))));
    const out = [[...await x.grad!.data()], [...await w.grad!.data()]];
    x.dispose();
    w.dispose();
    return out;
  };
  assert.deepEqual(await grads(cpuFused), await grads(cpu));
  if (gpu) {
    const [gx, gw] = await grads(gpu), [rx, rw] = await grads(cpu);
    assertClose(gx!, rx!, { rtol: 1e-4, atol: 1e-5 });
    assertClose(gw!, rw!, { rtol: 1e-4, atol: 1e-5 });
  }
});

Deno.test("WebGPU eager kernels (fuse: false) still match the twins", async () => {
  if (!gpuEager) return;
  for (const op of Object.keys(UNARY) as UnaryOp[]) {
    const x = X.map((
      v,
    ) => (op === "log" || op === "sqrt" || op === "rsqrt" ? Math.abs(v) + 0.01 : v));
    const [g] = await evaluate(gpuEager, (d) => [unaryRaw(op, d.tensor(x))]);
    const [c] = await evaluate(cpu, (d) => [unaryRaw(op, d.tensor(x))]);
    assertClose(g!, c!, { rtol: 2e-5, atol: 1e-5 }, op);
  }
  const mixed = (d: Device) => {
    const x = d.tensor(X, [4, 5, 6]), w = d.tensor(W, [6]);
    return [
      where(d.tensor(W.map((v) => (v > 0 ? 1 : 0)), [6]), add(x, w), mulScalar(x, 2)),
      cast(cast(mulScalar(x, 10), "i32"), "f32"),
    ];
  };
  const [g, c] = [await evaluate(gpuEager, mixed), await evaluate(cpu, mixed)];
  g.forEach((v, i) => assertClose(v, c[i]!, { rtol: 2e-5, atol: 1e-5 }));
  assert.equal(gpuEager.fusion, null);
});
