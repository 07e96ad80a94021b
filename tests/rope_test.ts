import assert from "node:assert/strict";
import {
  add,
  backward,
  type Device,
  DTypeError,
  mul,
  mulScalar,
  rope,
  ropeFrequencies,
  ropePair,
  ShapeError,
  sumAll,
  type Tensor,
  ValueError,
} from "../mod.ts";
import { assertClose, cpu, hostRandom, launchesDuring, onBoth, others } from "./helpers.ts";
import { gradCheck, gradOnBoth } from "./gradcheck.ts";
import { exactOnThreads, sameOnThreads } from "./native_threads.ts";

/**
 * The documented convention built the Hugging Face way: cos/sin tables of width hd
 * (`cat(freqs, freqs)`), `y = x·cos + rotate_half(x)·sin`, `rotate_half(x) = cat(−x2, x1)`.
 */
function hfRef(x: ArrayLike<number>, shape: number[], offset = 0, base = 10000): number[] {
  const [T, H, hd] = shape.slice(-3) as [number, number, number];
  const h = hd / 2;
  const inv = ropeFrequencies(hd, base);
  const out: number[] = [];
  for (let v = 0; v * hd < x.length; v++) {
    const pos = (Math.floor(v / H) % T) + offset;
    const vec = Array.from({ length: hd }, (_, j) => x[v * hd + j]!);
    const rot = [...vec.slice(h).map((z) => -z), ...vec.slice(0, h)];
    for (let j = 0; j < hd; j++) {
      const ang = Math.fround(pos * inv[j % h]!);
      out.push(vec[j]! * Math.cos(ang) + rot[j]! * Math.sin(ang));
    }
  }
  return out;
}

Deno.test("ropeFrequencies rounds like HF's float32 inv_freq", () => {
  const f = ropeFrequencies(64);
  assert.equal(f.length, 32);
  assert.equal(f[0], 1);
  // 1/10000^(2·31/64) in f64 is 1.3335214321633240e-4; f32 rounding of each step stays within 1 ulp.
  assert.ok(Math.abs(f[31]! - 1.333521432163324e-4) < 2e-11);
  assert.deepEqual([...ropeFrequencies(4, 100)], [1, Math.fround(0.1)]);
});

Deno.test("rope: WebGPU matches the CPU twin, the twin matches the HF construction", async (t) => {
  const shapes = [[1, 1, 1, 2], [2, 5, 3, 8], [1, 7, 2, 6], [2, 64, 4, 64], [3, 2, 128], [
    1,
    3,
    1,
    512,
  ], [2, 0, 2, 4]];
  for (const shape of shapes) {
    for (const offset of [0, 5, 4000]) {
      await t.step(`[${shape}] offset ${offset}`, async () => {
        const n = shape.reduce((a: number, b: number) => a * b, 1);
        const h = hostRandom(n, n + offset, 2);
        const [y] = await onBoth((d) => rope(d.tensor(h, shape), { offset }), {
          rtol: 1e-5,
          atol: 2e-6,
        }, "rope");
        assertClose(
          y!,
          hfRef(h, shape, offset),
          { rtol: 1e-6, atol: 1e-6 },
          "rope vs HF construction",
        );
      });
    }
  }
  await t.step("base 500000 (LLaMA 3)", async () => {
    const h = hostRandom(2 * 9 * 2 * 16, 3);
    const [y] = await onBoth((d) => rope(d.tensor(h, [2, 9, 2, 16]), { base: 500000 }), {
      rtol: 1e-5,
      atol: 2e-6,
    });
    assertClose(y!, hfRef(h, [2, 9, 2, 16], 0, 500000), { rtol: 1e-6, atol: 1e-6 });
  });
});

Deno.test("rope preserves norms and makes q·k depend on the relative position only", async () => {
  const hd = 16, q = hostRandom(hd, 1), k = hostRandom(hd, 2);
  const dot = async (m: number, n: number) => {
    const rq = await rope(cpu.tensor(q, [1, 1, 1, hd]), { offset: m }).data();
    const rk = await rope(cpu.tensor(k, [1, 1, 1, hd]), { offset: n }).data();
    return rq.reduce((a, v, i) => a + v * rk[i]!, 0);
  };
  const d1 = await dot(7, 3), d2 = await dot(24, 20), d0 = await dot(4, 0);
  assert.ok(Math.abs(d1 - d2) < 1e-5 && Math.abs(d1 - d0) < 1e-5, `${d0} ${d1} ${d2}`);
  const y = await rope(cpu.tensor(q, [1, 1, 1, hd]), { offset: 11 }).data();
  const norm = (a: ArrayLike<number>) => Math.hypot(...Array.from(a));
  assert.ok(Math.abs(norm(y) - norm(q)) < 1e-5);
});

Deno.test("f16 storage: rope computes in f32", async () => {
  for (const dev of [cpu, ...others]) {
    if (!dev?.backend.hasF16) continue;
    const h = Float16Array.from(hostRandom(2 * 3 * 2 * 8, 4));
    const y = await rope(dev.tensor(h, [2, 3, 2, 8]), { offset: 2 }).data();
    assertClose(y, hfRef(h, [2, 3, 2, 8], 2), { rtol: 2e-3, atol: 2e-3 }, `f16 on ${dev.kind}`);
  }
});

Deno.test("rope: gradient (rotation by −angle) matches finite differences, GPU matches CPU", async () => {
  const cases: [string, (xs: Tensor[]) => Tensor, { data: Float32Array; shape: number[] }][] = [
    ["rope", ([a]) => rope(a!), { data: hostRandom(2 * 3 * 2 * 4, 1), shape: [2, 3, 2, 4] }],
    ["rope offset", ([a]) => rope(a!, { offset: 100 }), {
      data: hostRandom(3 * 2 * 6, 2),
      shape: [3, 2, 6],
    }],
  ];
  for (const [name, fn, inp] of cases) {
    await gradCheck(fn, [inp], { what: name });
    await gradOnBoth(fn, [inp], { rtol: 1e-5, atol: 2e-6 }, name);
  }
});

Deno.test("rope: bad input names the op and the shapes", () => {
  assert.throws(
    () => rope(cpu.zeros([2, 3, 5])),
    (e: unknown) =>
      e instanceof ShapeError && /rope: head dim must be even.*\[2, 3, 5\]/.test(e.message),
  );
  assert.throws(
    () => rope(cpu.zeros([4, 8])),
    (e: unknown) =>
      e instanceof ShapeError && /rope: x must be \[\.\.\., T, H, hd\]/.test(e.message),
  );
  assert.throws(() => rope(cpu.zeros([1, 1, 1, 1024])), ShapeError);
  assert.throws(() => rope(cpu.zeros([1, 2, 1, 4], "i32")), DTypeError);
  assert.throws(() => rope(cpu.zeros([1, 2, 1, 4]), { offset: -1 }), ValueError);
  assert.throws(() => rope(cpu.zeros([1, 2, 1, 4]), { base: 0 }), ValueError);
  assert.throws(() => ropeFrequencies(3), ValueError);
});

Deno.test("rope: shapes past the native backend's parallel split match the twin", async () => {
  // 4·70·3 = 840 head vectors of 64 split across threads; positions repeat per batch, so each
  // thread's cos/sin table is filled for positions it meets in another thread's batch too.
  const shape = [4, 70, 3, 64];
  const h = hostRandom(4 * 70 * 3 * 64, 24);
  for (const offset of [0, 37]) {
    await onBoth((d) => rope(d.tensor(h, shape), { offset }), { rtol: 1e-5, atol: 1e-6 });
  }
  await gradOnBoth(([a]) => rope(a!), [{ data: h, shape }], { rtol: 1e-5, atol: 2e-6 }, "split");
});

Deno.test("rope: native results do not depend on the thread count", async () => {
  const h = hostRandom(4 * 70 * 3 * 64, 29);
  const fn = (d: Device) => [rope(d.tensor(h, [4, 70, 3, 64]), { offset: 5 })];
  await exactOnThreads(fn, "rope", { rtol: 1e-5, atol: 1e-6 });
  await sameOnThreads(fn, "rope");
});

Deno.test("ropePair: one launch each way, the bits of two rope calls on every device", async () => {
  for (
    const [shape, offset] of [[[2, 9, 3, 16], 0], [[1, 1, 2], 7], [[3, 5, 1, 6], 100]] as const
  ) {
    const n = shape.reduce((a: number, b: number) => a * b, 1);
    const ha = hostRandom(n, 40 + n), hb = hostRandom(n, 41 + n);
    const ga = hostRandom(n, 42 + n), gb = hostRandom(n, 43 + n);
    for (const d of [cpu, ...others]) {
      const run = (pair: boolean) => {
        const a = d.tensor(ha, [...shape]), b = d.tensor(hb, [...shape]);
        a.requiresGrad = true;
        b.requiresGrad = true;
        let ys: Tensor[] = [];
        const fwd = launchesDuring(d, () => {
          ys = pair ? ropePair(a, b, { offset }) : [rope(a, { offset }), rope(b, { offset })];
        });
        const loss = add(
          sumAll(mul(ys[0]!, d.tensor(ga, [...shape]))),
          sumAll(mul(ys[1]!, d.tensor(gb, [...shape]))),
        );
        const bwd = launchesDuring(d, () => backward(loss)).filter((o) => o.startsWith("rope"));
        return { ys, grads: [a.grad!, b.grad!], fwd, bwd };
      };
      const one = run(true), two = run(false);
      assert.deepEqual(one.fwd, ["ropePair"], `${d.kind} forward launches`);
      assert.deepEqual(one.bwd, ["ropePairBackward"], `${d.kind} backward launches`);
      assert.deepEqual(two.bwd, ["ropeBackward", "ropeBackward"]);
      for (let i = 0; i < 2; i++) {
        const what = `${d.kind} [${shape}] tensor ${i}`;
        assert.deepEqual(await one.ys[i]!.data(), await two.ys[i]!.data(), `${what}: forward bits`);
        assert.deepEqual(
          await one.grads[i]!.data(),
          await two.grads[i]!.data(),
          `${what}: grad bits`,
        );
      }
    }
  }
});

Deno.test("ropePair: gradient matches finite differences, GPU matches CPU; one output used", async () => {
  const inputs = [
    { data: hostRandom(2 * 3 * 2 * 4, 11), shape: [2, 3, 2, 4] },
    { data: hostRandom(2 * 3 * 2 * 4, 12), shape: [2, 3, 2, 4] },
  ];
  const both = ([a, b]: Tensor[]) => {
    const [x, y] = ropePair(a!, b!, { offset: 3 });
    return add(x, mulScalar(y, -2));
  };
  await gradCheck(both, inputs, { what: "ropePair" });
  await gradOnBoth(both, inputs, { rtol: 1e-5, atol: 2e-6 }, "ropePair");
  // Only the second output reaches the loss: its gradient alone, by the one-tensor kernel.
  for (const d of [cpu, ...others]) {
    const a = d.tensor(inputs[0]!.data, inputs[0]!.shape);
    const b = d.tensor(inputs[1]!.data, inputs[1]!.shape);
    a.requiresGrad = true;
    b.requiresGrad = true;
    const [, y] = ropePair(a, b);
    const ops = launchesDuring(d, () => backward(sumAll(y))).filter((o) => o.startsWith("rope"));
    assert.deepEqual(ops, ["ropeBackward"], d.kind);
    assert.equal(a.grad, null);
    const ref = cpu.tensor(inputs[1]!.data, inputs[1]!.shape);
    ref.requiresGrad = true;
    backward(sumAll(rope(ref)));
    assertClose(await b.grad!.data(), await ref.grad!.data(), { rtol: 1e-5, atol: 2e-6 }, d.kind);
  }
});

Deno.test("ropePair: bad input names the op and the shapes", () => {
  assert.throws(
    () => ropePair(cpu.zeros([1, 2, 1, 4]), cpu.zeros([1, 2, 2, 4])),
    (e: unknown) =>
      e instanceof ShapeError &&
      /ropePair: both tensors must have one shape.*\[1, 2, 1, 4\]/.test(e.message),
  );
  assert.throws(() => ropePair(cpu.zeros([1, 2, 3]), cpu.zeros([1, 2, 3])), ShapeError);
  assert.throws(
    () => ropePair(cpu.zeros([1, 2, 1, 4]), cpu.zeros([1, 2, 1, 4], "f16") as never),
    DTypeError,
  );
  assert.throws(
    () => ropePair(cpu.zeros([1, 2, 1, 4]), others[0]!.zeros([1, 2, 1, 4])),
    /ropePair/,
  );
});
