/**
 * The native backend itself: BLAS loading and its fallback, the thread pool (every chunk runs,
 * results do not depend on the thread count), device choice, and the host allocation limit.
 */
import assert from "node:assert/strict";
import { DeviceError, matmul, openDevice } from "../mod.ts";
import { NativeBackend } from "../src/backend/native.ts";
import { isSoftwareAdapter } from "../src/backend/webgpu.ts";
import { taskId } from "../src/backend/thread_pool.ts";
import { TASKS } from "../kernels/native/tasks.ts";
import { Device } from "../src/tensor/device.ts";
import { assertClose, cpu, hostRandom, native } from "./helpers.ts";

Deno.test("native: description names the backend, the BLAS and the threads", () => {
  assert.equal(native.kind, "native");
  assert.match(native.description, /^native \(host kernels on \d+ threads?; /);
  if (Deno.env.get("QSPARSE_REQUIRE_BLAS")) assert.match(native.description, /BLAS .*OpenBLAS/);
});

Deno.test("native: task names are unique (workers find tasks by their hash)", () => {
  const ids = new Set(TASKS.map((t) => taskId(t.name)));
  assert.equal(ids.size, TASKS.length);
});

Deno.test("native: a parallel fill matches the CPU twin for every size around the split", async () => {
  for (const n of [0, 1, 15, 16, 17, 65535, 65536, 65537, 300001]) {
    using a = cpu.arange(0.5, 0.5 + n * 0.25, 0.25);
    using b = native.arange(0.5, 0.5 + n * 0.25, 0.25);
    assert.deepEqual(await b.data(), await a.data(), `n = ${n}`);
  }
});

Deno.test("native: results do not depend on the thread count", async () => {
  const devs = [1, 2, 3].map((t) => new Device(new NativeBackend({ threads: t })));
  try {
    for (const d of devs) await (d.backend as NativeBackend).ready();
    const outs = await Promise.all(devs.map(async (d) => {
      using x = d.tensor(hostRandom(70_000, 3), [700, 100]);
      using w = d.tensor(hostRandom(100 * 60, 4), [100, 60]);
      using y = matmul(x, w);
      using f = d.arange(0, 200_001, 1);
      return [await y.data(), await f.data()];
    }));
    for (const o of outs.slice(1)) {
      assert.deepEqual(o[0], outs[0]![0]);
      assert.deepEqual(o[1], outs[0]![1]);
    }
  } finally {
    for (const d of devs) d.destroy();
  }
});

Deno.test("native: without a BLAS, matmul runs in TypeScript and agrees with the twin", async () => {
  using d = new Device(new NativeBackend({ noBlas: true, threads: 1 }));
  assert.match(d.description, /no BLAS/);
  for (
    const [m, n, k, ta, tb] of [[5, 7, 3, false, false], [1, 9, 4, false, true], [
      6,
      4,
      5,
      true,
      true,
    ]] as const
  ) {
    const a = hostRandom(m * k, 1), b = hostRandom(k * n, 2);
    const run = async (dev: Device) => {
      using x = dev.tensor(a, ta ? [k, m] : [m, k]);
      using y = dev.tensor(b, tb ? [n, k] : [k, n]);
      using z = matmul(x, y, { transposeA: ta, transposeB: tb });
      return await z.data();
    };
    assertClose(await run(d), await run(cpu), {}, `${m}x${n}x${k}`);
  }
});

Deno.test("native: a BLAS path that does not load is named in the description", () => {
  using d = new Device(new NativeBackend({ blas: "/nonexistent/libblas.so", threads: 1 }));
  assert.match(d.description, /no BLAS.*\/nonexistent\/libblas\.so/);
});

Deno.test("openDevice: software adapters are recognised", () => {
  assert.ok(isSoftwareAdapter({ description: "llvmpipe (LLVM 15.0.6, 256 bits)" }));
  assert.ok(isSoftwareAdapter({ vendor: "mesa", device: "lavapipe" }));
  assert.ok(isSoftwareAdapter({ description: "SwiftShader Device (Subzero)" }));
  assert.ok(!isSoftwareAdapter({ description: "NVIDIA H200", vendor: "nvidia" }));
});

Deno.test("openDevice: the default on a machine without a real GPU is native", async () => {
  using d = await openDevice();
  // This suite runs on CPU-only machines (llvmpipe at most); on a real GPU the default is WebGPU.
  if (d.kind !== "webgpu") assert.equal(d.kind, "native");
  using c = await openDevice({ prefer: "cpu" });
  assert.equal(c.kind, "cpu");
});

Deno.test("host backends refuse an allocation beyond the limit before allocating", () => {
  for (const d of [cpu, native]) {
    const t0 = performance.now();
    assert.throws(() => d.zeros([2 ** 31]), (e: unknown) => {
      assert.ok(e instanceof DeviceError);
      assert.match((e as Error).message, /zeros|full/);
      assert.match((e as Error).message, /8\.00 GiB.*limit is 4\.00 GiB.*QSPARSE_MAX_ALLOC_BYTES/);
      return true;
    });
    assert.ok(performance.now() - t0 < 1000);
  }
});
