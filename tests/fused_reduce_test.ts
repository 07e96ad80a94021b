/**
 * Reductions that end a fused elementwise group (kernels/fused.ts `FusedReduce`,
 * src/tensor/fusion.ts `reduce`): one kernel computes the chain and reduces it. Fused results
 * against unfused ones (the CPU twins bit for bit, WebGPU within f32 tolerance), launch counts,
 * what is written, splits at the binding limit, f16, NaN and ties, and gradients.
 */
import assert from "node:assert/strict";
import {
  add,
  argmax,
  argmaxAll,
  backward,
  cast,
  type Device,
  exp,
  max,
  maxAll,
  mean,
  meanAll,
  mul,
  mulScalar,
  relu,
  scope,
  sub,
  sum,
  sumAll,
  sumSquares,
  tanh,
  type Tensor,
} from "../mod.ts";
import { Device as DeviceClass } from "../src/tensor/device.ts";
import { assertClose, cpu, gpu, hostRandom } from "./helpers.ts";
import {
  compareAll as compareWith,
  cpuFused,
  evaluate,
  RecordingBackend,
} from "./fusion_helpers.ts";

/** {@link compareWith} at this file's tolerance. */
const compareAll = (
  what: string,
  build: (dev: Device) => Tensor[],
  tol = TOL,
) => compareWith(what, build, tol);

/** The fused group's kernels may order a sum differently from the CPU: a looser default. */
const TOL = { rtol: 1e-4, atol: 1e-4 };

/** A chain over `[rows, cols]` with a row vector and a column broadcast in it. */
function chain(d: Device, rows: number, cols: number, seed = 1): Tensor {
  const x = d.tensor(hostRandom(rows * cols, seed, 2), [rows, cols]);
  const w = d.tensor(hostRandom(cols, seed + 1), [cols]);
  const c = d.tensor(hostRandom(rows, seed + 2), [rows, 1]);
  return tanh(add(mul(x, w), mulScalar(c, 0.5)));
}

const ROW_REDUCTIONS = { sum, mean, sumSquares, max, argmax } as const;
const ALL_REDUCTIONS = { sumAll, meanAll, maxAll, argmaxAll } as const;

Deno.test("every last-dim reduction ending a chain matches its unfused result", async () => {
  // Short rows (many rows per workgroup, down to one lane), long rows (256 lanes), odd sizes.
  for (const [rows, cols] of [[7, 13], [64, 1], [3, 5000], [300, 40]] as const) {
    for (const [name, f] of Object.entries(ROW_REDUCTIONS)) {
      await compareAll(`${name} [${rows}, ${cols}]`, (d) => {
        const h = chain(d, rows, cols);
        const y = (f as (x: Tensor, o?: { keepdim?: boolean }) => Tensor)(h);
        return name === "argmax" ? [cast(y, "f32")] : [y];
      });
    }
  }
});

Deno.test("every all-element reduction ending a chain matches, one pass and two", async () => {
  for (const [rows, cols] of [[10, 10], [100, 200]] as const) { // 100 and 20,000 elements
    for (const [name, f] of Object.entries(ALL_REDUCTIONS)) {
      await compareAll(`${name} of ${rows * cols}`, (d) => {
        const y = (f as (x: Tensor) => Tensor)(chain(d, rows, cols));
        return name === "argmaxAll" ? [cast(y, "f32")] : [y];
      });
    }
  }
});

Deno.test("a chain and its reduction are one launch; disposed intermediates are not written", async () => {
  for (const dev of [cpuFused, gpu].filter((d): d is Device => d !== null)) {
    using x = dev.tensor(hostRandom(600, 4), [20, 30]);
    using w = dev.tensor(hostRandom(30, 5), [30]);
    const d0 = dev.stats().dispatches;
    using s = scope(() => sum(relu(sub(mul(x, w), x))));
    await s.data();
    assert.equal(dev.stats().dispatches - d0, 1, `${dev.kind}: row sum`);
    const d1 = dev.stats().dispatches;
    using big = dev.tensor(hostRandom(20000, 6), [20000]);
    using m = scope(() => meanAll(exp(mulScalar(big, 0.1))));
    await m.data();
    assert.equal(
      dev.stats().dispatches - d1,
      2,
      `${dev.kind}: two-pass mean (chain + pass 1, pass 2)`,
    );
  }
  const be = new RecordingBackend();
  using dev = new DeviceClass(be, { fuse: true });
  using x = dev.tensor(hostRandom(600, 4), [20, 30]);
  using w = dev.tensor(hostRandom(30, 5), [30]);
  const before = be.seen.length;
  using s = scope(() => sumSquares(relu(sub(mul(x, w), x))));
  await s.data();
  assert.equal(be.seen.length - before, 1);
  const d = be.seen[be.seen.length - 1]!;
  assert.equal(d.op, "mul+sub+relu+sumSquares");
  assert.deepEqual(
    d.buffers.map((b) => b.id).sort(),
    [x, w, s].map((t) => t.storage("t").id).sort(),
  );
});

Deno.test("an intermediate still held is written by the reducing kernel", async () => {
  for (const dev of [cpuFused, gpu].filter((d): d is Device => d !== null)) {
    using x = dev.tensor(hostRandom(120, 7), [4, 30]);
    using h = exp(mulScalar(x, 0.5)); // held: the kernel writes it and reduces it
    using m = max(h);
    assert.equal(dev.fusion!.pending, 2); // closed by the max, emitted when read
    const hv = await h.data();
    const want = Array.from(hostRandom(120, 7), (v) => Math.exp(Math.fround(v * 0.5)));
    assertClose(hv, want, { rtol: 1e-5, atol: 1e-6 });
    const rowMax = [0, 1, 2, 3].map((r) => Math.max(...hv.slice(r * 30, r * 30 + 30)));
    assert.deepEqual([...await m.data()], rowMax);
  }
});

Deno.test("a reduction of a tensor outside the pending group runs on its own", async () => {
  const be = new RecordingBackend();
  using dev = new DeviceClass(be, { fuse: true });
  using x = dev.tensor(hostRandom(60, 8), [6, 10]);
  using y = mulScalar(x, 3); // pending, but the sum below reads x, not y
  const before = be.seen.length;
  using s = sum(x);
  assert.deepEqual(be.seen.slice(before).map((d) => d.op), ["mulScalar", "sum"]);
  const [want] = await evaluate(cpu, (d) => [sum(d.tensor(hostRandom(60, 8), [6, 10]))]);
  assert.deepEqual([...await s.data()], want);
  assert.deepEqual([...await y.data()], Array.from(hostRandom(60, 8), (v) => Math.fround(v * 3)));
});

Deno.test("a group too wide for the binding limit splits, and the last kernel reduces", async () => {
  const be = new RecordingBackend();
  using dev = new DeviceClass(be, { fuse: { maxBindings: 5 } });
  const build = (d: Device) => {
    const xs = [0, 1, 2, 3, 4].map((k) => d.tensor(hostRandom(40, k + 11), [4, 10]));
    let h = xs[0]!;
    for (const x of xs.slice(1)) h = add(mulScalar(h, 0.7), x);
    return [sum(h), meanAll(h)];
  };
  const before = be.seen.length;
  const got = await evaluate(dev, build);
  const ran = be.seen.slice(before);
  assert.ok(ran.length >= 2, `${ran.length} kernels`);
  for (const d of ran) assert.ok(d.buffers.length <= 5, `${d.op}: ${d.buffers.length} bindings`);
  assert.ok(ran.some((d) => d.op.endsWith("+sum")), ran.map((d) => d.op).join(", "));
  assert.deepEqual(got, await evaluate(cpu, build));
  assert.equal(dev.stats().liveBuffers, 0);
});

Deno.test("f16 chains reduce what the stored f16 values would give", async () => {
  await compareAll("f16 sum and max", (d) => {
    const x = cast(d.tensor(hostRandom(8 * 50, 3, 3), [8, 50]), "f16");
    const h = mulScalar(exp(mulScalar(x, 0.3)), 1.7);
    return [cast(sum(h), "f32"), cast(max(h), "f32"), cast(sumAll(h), "f32")];
  }, { rtol: 2e-3, atol: 2e-3 });
});

Deno.test("NaN and ties in a fused max follow the unfused kernel", async () => {
  // Each row of 8 holds its largest value, 9, at cols 0 and 4; row 1 (8..15) also a NaN at col 5.
  const v = Float32Array.from({ length: 24 }, (_, i) => (i % 4 === 0 ? 9 : i % 3));
  v[13] = NaN;
  await compareAll("nan and ties", (d) => {
    const h = mulScalar(d.tensor(v, [3, 8]), 2);
    return [max(h), cast(argmax(h), "f32"), cast(argmaxAll(mulScalar(h, 1)), "f32")];
  }, { rtol: 0, atol: 0 });
  const [idx] = await evaluate(
    cpuFused,
    (d) => [cast(argmax(mulScalar(d.tensor(v, [3, 8]), 2)), "f32")],
  );
  assert.deepEqual(idx, [0, 5, 0]); // ties go to the lowest index; a NaN beats every number
});

Deno.test("gradients through a fused chain and reduction equal the unfused ones", async () => {
  const build = async (dev: Device) => {
    using x = dev.tensor(hostRandom(48, 21), [6, 8]);
    using w = dev.tensor(hostRandom(8, 22), [8]);
    x.requiresGrad = true;
    w.requiresGrad = true;
    scope(() => backward(meanAll(mulScalar(sumSquares(tanh(mul(x, w))), 0.5))));
    return [[...await x.grad!.data()], [...await w.grad!.data()]];
  };
  const ref = await build(cpu);
  assert.deepEqual(await build(cpuFused), ref);
  if (gpu) {
    (await build(gpu)).forEach((g, i) => assertClose(g, ref[i]!, { rtol: 1e-4, atol: 1e-5 }));
  }
});
