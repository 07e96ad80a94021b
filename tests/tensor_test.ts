import assert from "node:assert/strict";
import {
  add,
  broadcastTo,
  concat,
  Device,
  DeviceError,
  DisposedError,
  keep,
  matmul,
  mul,
  openDevice,
  scope,
  ShapeError,
  slice,
  sumTo,
  transpose,
  ValueError,
} from "../mod.ts";
import { declaredBindings, WebGpuBackend } from "../src/backend/webgpu.ts";
import { randomBits } from "../src/core/random.ts";
import { assertClose, cpu, gpu, hostRandom, native, onBoth } from "./helpers.ts";

Deno.test("creation ops agree on both backends", async () => {
  await onBoth((d) => d.zeros([3, 5]));
  await onBoth((d) => d.ones([7]));
  await onBoth((d) => d.full([2, 2], -1.25));
  await onBoth((d) => d.full([3], 7, "i32"), { atol: 0, rtol: 0 });
  await onBoth((d) => d.arange(10));
  await onBoth((d) => d.arange(2, 11, 3, "u32"), { atol: 0, rtol: 0 });
  const [a] = await onBoth((d) => d.arange(5, 0, -2));
  assert.deepEqual(Array.from(a!), [5, 3, 1]);
  assert.deepEqual([...await cpu.full([2], 2 ** 30 + 1, "i32").data()], [2 ** 30 + 1, 2 ** 30 + 1]);
});

Deno.test("rand and randn: same numbers on CPU and WebGPU for the same seed", async () => {
  const [u] = await onBoth((d) => d.rand([4097], { seed: 42 }), { atol: 0, rtol: 0 }, "rand");
  const [n] = await onBoth((d) => d.randn([4097], { seed: 42, mean: 1, std: 2 }), {
    atol: 2e-5,
    rtol: 1e-5,
  }, "randn");
  const mean = (xs: ArrayLike<number>) => Array.from(xs).reduce((s, v) => s + v, 0) / xs.length;
  assert.ok(Math.abs(mean(u!) - 0.5) < 0.02);
  assert.ok(Math.abs(mean(n!) - 1) < 0.1);
  const sd = Math.sqrt(mean(Array.from(n!).map((v) => (v - 1) ** 2)));
  assert.ok(Math.abs(sd - 2) < 0.1, `std ${sd}`);
  // A different seed or offset gives different numbers; the same gives the same.
  const a = await cpu.rand([8], { seed: 1 }).data(), b = await cpu.rand([8], { seed: 1 }).data();
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, await cpu.rand([8], { seed: 2 }).data());
  assert.deepEqual([...await cpu.rand([4], { seed: 1, offset: 4 }).data()], [...a.slice(4)]);
  // The counter-based hash has no obvious correlation between neighbouring counters.
  assert.notEqual(randomBits(0, 0), randomBits(0, 1));
});

Deno.test("the device generator advances between unseeded draws", async () => {
  const d = await openDevice({ prefer: "cpu" });
  const a = await d.rand([4]).data(), b = await d.rand([4]).data();
  assert.notDeepEqual(a, b);
  d.generator.offset = 0;
  assert.deepEqual(await d.rand([4]).data(), a);
  d.destroy();
});

Deno.test("reshape, transpose, slice and concat agree on both backends", async () => {
  const h = hostRandom(2 * 3 * 37 * 5, 9);
  await onBoth((d) => d.tensor(h, [2, 3, 37, 5]).reshape([6, -1]));
  await onBoth((d) => transpose(d.tensor(h, [6, 37, 5])));
  await onBoth((d) => transpose(d.tensor(h, [2 * 3 * 37, 5])));
  await onBoth((d) => slice(d.tensor(h, [6, 185]), 2, 5));
  await onBoth((d) => slice(d.tensor(h, [6, 185]), -3));
  await onBoth((d) => slice(d.tensor(h, [6, 37, 5]), 10, 20, 1));
  await onBoth((d) => slice(d.tensor(h, [6, 37, 5]), 1, 4, -1));
  await onBoth((d) =>
    concat([d.tensor(h.slice(0, 30), [6, 5]), d.tensor(h.slice(30, 60), [6, 5])], 0)
  );
  await onBoth((d) =>
    concat([d.tensor(h.slice(0, 30), [6, 5]), d.tensor(h.slice(30, 42), [6, 2])], 1)
  );
  if (cpu.backend.hasF16) {
    await onBoth((d) => slice(d.tensor(new Float16Array([1, 2, 3, 4, 5])), 1, 4));
  }
  assert.throws(() => slice(cpu.zeros([3, 4]), 2, 5), ValueError);
  assert.throws(() => concat([cpu.zeros([3, 4]), cpu.zeros([2, 5])]), ShapeError);
  assert.throws(() => cpu.zeros([6]).reshape([4, -1]), ShapeError);
});

Deno.test("toArray, item and nested input", async () => {
  const t = cpu.tensor([[[1, 2]], [[3, 4]]]);
  assert.deepEqual(t.shape, [2, 1, 2]);
  assert.deepEqual(await t.toArray(), [[[1, 2]], [[3, 4]]]);
  assert.equal(await cpu.tensor(5).item(), 5);
  assert.deepEqual(cpu.tensor(5).shape, []);
  assert.throws(() => cpu.tensor([[1, 2], [3]]), ShapeError);
});

Deno.test("using a disposed tensor is a DisposedError, not garbage", async () => {
  for (const d of [cpu, gpu]) {
    if (!d) continue;
    const x = d.ones([4]);
    x.dispose();
    x.dispose(); // idempotent
    assert.equal(x.disposed, true);
    assert.throws(
      () => add(x, x),
      (e: unknown) =>
        e instanceof DisposedError && /add: tensor #\d+ \[4\] was disposed/.test(e.message),
    );
    await assert.rejects(() => x.data(), DisposedError);
    {
      using y = d.ones([2]);
      assert.equal(y.disposed, false);
    }
  }
});

Deno.test("reshape shares storage; the buffer lives until the last view is disposed", async () => {
  for (const d of [cpu, gpu]) {
    if (!d) continue;
    const before = d.stats().liveBuffers;
    const x = d.arange(6);
    const v = x.reshape([2, 3]);
    assert.equal(d.stats().liveBuffers, before + 1);
    x.dispose();
    assert.deepEqual(await v.toArray(), [[0, 1, 2], [3, 4, 5]]);
    v.dispose();
    assert.equal(d.stats().liveBuffers, before);
  }
});

Deno.test("scope frees intermediates and keeps results and kept tensors", async () => {
  for (const d of [cpu, gpu]) {
    if (!d) continue;
    const before = d.stats();
    const x = d.ones([3]);
    let kept = null as unknown as ReturnType<Device["ones"]>;
    const { y, list } = scope(() => {
      const a = add(x, x);
      const b = mul(a, a);
      kept = keep(d.zeros([1]));
      return { y: b, list: [add(b, x)] };
    });
    assert.equal(d.stats().liveBuffers, before.liveBuffers + 4); // x, y, list[0], kept
    assert.deepEqual([...await y.data()], [4, 4, 4]);
    assert.deepEqual([...await list[0]!.data()], [5, 5, 5]);
    // Nested scopes hand results outward; an async scope works too.
    const z = await scope(async () => {
      const inner = scope(() => add(x, x));
      await d.flush();
      return mul(inner, inner);
    });
    assert.deepEqual([...await z.data()], [4, 4, 4]);
    // A throwing scope still frees what it made.
    const mid = d.stats().liveBuffers;
    assert.throws(() =>
      scope(() => {
        add(x, x);
        throw new Error("boom");
      }), /boom/);
    assert.equal(d.stats().liveBuffers, mid);
    for (const t of [x, y, list[0]!, kept, z]) t.dispose();
    assert.equal(d.stats().liveBuffers, before.liveBuffers);
  }
});

Deno.test("WebGPU: ops are batched into few submits; reading flushes", async () => {
  if (!gpu) return;
  const s0 = gpu.stats();
  let x = gpu.ones([1024]);
  for (let i = 0; i < 50; i++) {
    const y = add(x, x);
    x.dispose();
    x = y;
  }
  const s1 = gpu.stats();
  // Fusing, the 50 adds are one kernel (emitted by stats()) after the fill.
  assert.equal(s1.dispatches - s0.dispatches, gpu.fusion ? 2 : 51);
  assert.equal(s1.submits, s0.submits); // nothing submitted yet
  assert.equal((await x.data())[0], 2 ** 50);
  assert.equal(gpu.stats().submits, s0.submits + 1);
  // Pooled buffers are reused: 50 adds did not leave 50 buffers behind.
  const s2 = gpu.stats();
  assert.ok(s2.pooledBuffers + s2.liveBuffers - (s0.pooledBuffers + s0.liveBuffers) <= 3);
  x.dispose();
});

Deno.test("WebGPU: a host write while ops are pending is ordered after them", async () => {
  if (!gpu) return;
  const a = gpu.full([4], 3);
  const b = add(a, a); // pending: reads a
  a.dispose(); // a's buffer returns to the pool while the add is still queued
  const c = gpu.tensor([100, 200, 300, 400]); // may reuse a's buffer
  assert.deepEqual([...await b.data()], [6, 6, 6, 6]);
  assert.deepEqual([...await c.data()], [100, 200, 300, 400]);
});

Deno.test("WebGPU: a lost device turns pending and later ops into DeviceError (no hang)", async () => {
  const backend = await WebGpuBackend.open();
  if (!backend) return;
  const d = new Device(backend);
  const x = d.ones([1 << 16]);
  const y = add(x, x); // pending
  backend.device.destroy(); // simulate loss underneath the kit
  await assert.rejects(() => y.data(), DeviceError);
  assert.throws(() => add(x, x), DeviceError);
  assert.throws(() => d.ones([2]), DeviceError);
});

Deno.test("WebGPU: a kernel that fails to compile is reported with its name", async () => {
  if (!gpu) return;
  const t = gpu.zeros([4]);
  gpu.run({
    op: "broken",
    key: "test:broken",
    wgsl: () => "this is not wgsl",
    cpu: () => {},
    buffers: [t.storage("broken")],
    workgroups: [1, 1, 1],
  });
  await assert.rejects(
    () => gpu!.flush(),
    (e: unknown) => e instanceof DeviceError && /test:broken/.test(e.message),
  );
  // The device keeps working for valid kernels.
  assertClose(await gpu.ones([3]).data(), [1, 1, 1]);
});

Deno.test("sumTo and broadcastTo: WebGPU matches the CPU twin on varied reductions", async () => {
  const h = hostRandom(3 * 5 * 7 * 2, 31);
  for (const to of [[5, 7, 2], [7, 2], [1, 7, 1], [3, 1, 1, 2], [1], [], [3, 5, 1, 1]]) {
    await onBoth(
      (d) => sumTo(d.tensor(h, [3, 5, 7, 2]), to),
      { rtol: 1e-5, atol: 1e-5 },
      `sumTo [${to}]`,
    );
  }
  await onBoth((d) => broadcastTo(d.tensor(h.subarray(0, 14), [7, 2]), [3, 7, 2]));
  assert.throws(() => sumTo(cpu.zeros([3, 4]), [2, 4]), ShapeError);
});

Deno.test("host backends refuse an allocation over the limit before allocating (issue 14)", () => {
  for (const dev of [cpu, native]) {
    const t0 = performance.now();
    // 2^31 f32 elements = 8 GiB, over the default 4 GiB limit: refused at once, nothing allocated.
    assert.throws(
      () => dev.zeros([2 ** 31]),
      (e: unknown) =>
        e instanceof DeviceError && /8\.00 GiB/.test(e.message) &&
        e.message.includes("QSPARSE_MAX_ALLOC_BYTES"),
    );
    assert.ok(
      performance.now() - t0 < 1000,
      `${dev.kind}: refused in ${performance.now() - t0} ms`,
    );
  }
});

Deno.test("tensors of two devices in one op are a DeviceError (issue 14)", () => {
  using a = cpu.ones([2, 2]);
  using b = native.ones([2, 2]);
  assert.throws(
    () => matmul(a, b),
    (e: unknown) =>
      e instanceof DeviceError && !(e instanceof ShapeError) &&
      /matmul: tensors live on different devices \(shapes \[2, 2\] and \[2, 2\]\)/.test(e.message),
  );
  assert.throws(() => add(a, b), DeviceError);
  assert.throws(() => concat([a, b]), DeviceError);
});

Deno.test("declaredBindings reads a kernel's group-0 buffer bindings in order, or gives up", () => {
  const wgsl = `struct P { n: u32 };
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> c: array<atomic<u32>>;
@group(0) @binding(2) var<storage> d: array<f32>;
@group(0) @binding(3) var<uniform> p: P;`;
  assert.deepEqual(declaredBindings(wgsl), [
    "read-only-storage",
    "storage",
    "read-only-storage",
    "uniform",
  ]);
  assert.equal(declaredBindings(wgsl.replace("@binding(1)", "@binding(5)")), null); // a gap
  assert.equal(declaredBindings(wgsl.replace("@binding(2)", "@binding(0)")), null); // a repeat
  assert.equal(declaredBindings("fn main() {}"), null);
});
