import assert from "node:assert/strict";
import {
  backward,
  type Device,
  DTypeError,
  embedding,
  mul,
  ShapeError,
  sumAll,
  type Tensor,
  ValueError,
} from "../mod.ts";
import { assertClose, cpu, hostRandom, launchesDuring, onBoth, others } from "./helpers.ts";
import { exactOnThreads } from "./native_threads.ts";
import { gradCheck, gradOnBoth } from "./gradcheck.ts";

function randomIds(n: number, v: number, seed: number): Uint32Array {
  return Uint32Array.from(hostRandom(n, seed), (x) => Math.floor(((x + 1) / 2) * v) % v);
}

/** Table gradient of Σ w·embedding(table, ids) by direct f64 scatter-add. */
function gradRef(ids: Uint32Array, w: Float32Array, v: number, d: number): Float64Array {
  const out = new Float64Array(v * d);
  ids.forEach((id, t) => {
    if (id < v) { for (let c = 0; c < d; c++) out[id * d + c]! += w[t * d + c]!; }
  });
  return out;
}

/** Runs forward + backward with upstream `w` and returns the table gradient. */
async function tableGrad(
  dev: Device,
  table: Float32Array,
  shape: number[],
  ids: Uint32Array,
  w: Float32Array,
): Promise<Float32Array> {
  const t = dev.tensor(table, shape);
  t.requiresGrad = true;
  const e = embedding(t, dev.tensor(ids, [ids.length], "u32"));
  backward(sumAll(mul(e, dev.tensor(w, e.shape))));
  const g = Float32Array.from(await t.grad!.data());
  t.dispose();
  return g;
}

Deno.test("embedding forward: WebGPU matches the CPU twin and the definition", async (t) => {
  const cases: [number, number, number[]][] = [[1, 1, [1]], [50, 7, [13]], [1000, 64, [300]], [
    30,
    5,
    [2, 3],
  ], [8, 3, [0]]];
  for (const [v, d, idShape] of cases) {
    await t.step(`V=${v} D=${d} ids [${idShape}]`, async () => {
      const n = idShape.reduce((a, b) => a * b, 1);
      const table = hostRandom(v * d, v + d), ids = randomIds(n, v, n + 1);
      const [y] = await onBoth(
        (dev) => embedding(dev.tensor(table, [v, d]), dev.tensor(ids, idShape, "u32")),
        { rtol: 0, atol: 0 },
      );
      const e: number[] = [];
      ids.forEach((id) => e.push(...table.subarray(id * d, id * d + d)));
      assert.deepEqual(Array.from(y!), e);
    });
  }
  await t.step("out-of-range device ids read as zero rows", async () => {
    const table = hostRandom(12, 1);
    const ids = new Uint32Array([1, 4, 0xffffffff, 2]);
    const [y] = await onBoth(
      (dev) => embedding(dev.tensor(table, [4, 3]), dev.tensor(ids, [4], "u32")),
      { rtol: 0, atol: 0 },
    );
    assert.deepEqual(Array.from(y!).slice(3, 9), [0, 0, 0, 0, 0, 0]);
    assert.deepEqual(Array.from(y!).slice(0, 3), Array.from(table.subarray(3, 6)));
  });
});

Deno.test("embedding backward: deterministic scatter-add, bit-identical on both backends", async (t) => {
  const cases: [string, number, number, Uint32Array][] = [
    ["random ids", 100, 9, randomIds(500, 100, 3)],
    ["all the same id", 10, 4, new Uint32Array(2000).fill(7)],
    ["all distinct", 600, 3, Uint32Array.from({ length: 600 }, (_, i) => (i * 7) % 600)],
    ["one token", 5, 1, new Uint32Array([4])],
    ["out-of-range ids are skipped", 6, 2, new Uint32Array([1, 6, 1, 0xffffffff, 5])],
    ["wide rows", 40, 300, randomIds(64, 40, 9)],
  ];
  for (const [name, v, d, ids] of cases) {
    await t.step(name, async () => {
      const table = hostRandom(v * d, 2), w = hostRandom(ids.length * d, 5);
      const g = await tableGrad(cpu, table, [v, d], ids, w);
      assertClose(g, gradRef(ids, w, v, d), { rtol: 1e-5, atol: 1e-5 }, `${name} vs math`);
      for (const dev of others) {
        const gg = await tableGrad(dev, table, [v, d], ids, w);
        assert.deepEqual(gg, g, `${name}: ${dev.kind} and cpu differ`);
        assert.deepEqual(
          await tableGrad(dev, table, [v, d], ids, w),
          gg,
          `${name}: not deterministic on ${dev.kind}`,
        );
      }
    });
  }
});

Deno.test("embedding: gradient matches finite differences, GPU backward matches CPU", async () => {
  const ids = new Uint32Array([2, 0, 2, 3, 2, 1]);
  const fn = ([tb]: Tensor[]) => embedding(tb!, cpuOrSame(tb!, ids));
  const inputs = [{ data: hostRandom(5 * 4, 1), shape: [5, 4] }];
  await gradCheck(fn, inputs, { what: "embedding" });
  await gradOnBoth(fn, inputs, { rtol: 0, atol: 0 }, "embedding");
  // Host ids: validated, uploaded, and freed with the graph.
  await gradCheck(([tb]) => embedding(tb!, [1, 1, 4]), inputs, { what: "embedding host ids" });
});

/** ids as a u32 tensor on the table's device, shaped [2, 3]. */
function cpuOrSame(tb: Tensor, ids: Uint32Array): Tensor<"u32"> {
  return tb.device.tensor(ids, [2, 3], "u32");
}

Deno.test("f16 tables gather and accumulate in f32", async () => {
  for (const dev of [cpu, ...others]) {
    if (!dev.backend.hasF16) continue;
    const t = dev.tensor(new Float16Array([1, 2, 3, 4]), [2, 2]);
    t.requiresGrad = true;
    const e = embedding(t, [1, 0, 1]);
    assert.deepEqual(Array.from(await e.data()), [3, 4, 1, 2, 3, 4]);
    backward(sumAll(e));
    assert.deepEqual(Array.from(await t.grad!.data()), [1, 1, 2, 2]);
    assert.equal(t.grad!.dtype, "f16");
  }
});

Deno.test("embedding: bad input names the op and the shapes", () => {
  const table = cpu.zeros([4, 3]);
  assert.throws(
    () => embedding(table, [0, 4]),
    (e: unknown) =>
      e instanceof ValueError &&
      /embedding: id 4 at position 1 is outside \[0, 4\)/.test(e.message),
  );
  assert.throws(() => embedding(table, [1.5]), ValueError);
  assert.throws(() => embedding(table, [-1]), ValueError);
  assert.throws(
    () => embedding(table, cpu.zeros([2], "i32") as never),
    (e: unknown) => e instanceof DTypeError && /ids must be u32, got i32/.test(e.message),
  );
  assert.throws(
    () => embedding(cpu.zeros([12]), [0]),
    (e: unknown) =>
      e instanceof ShapeError && /embedding: table must be \[V, D\].*\[12\]/.test(e.message),
  );
  assert.throws(() => embedding(cpu.zeros([4, 3], "u32") as never, [0]), DTypeError);
});

Deno.test("native: embedding gather and backward equal the twin across the token split (1 and 3 threads)", async () => {
  const cases: [string, number, number, Uint32Array][] = [
    ["s model", 256, 128, Uint32Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256)],
    ["many tokens, narrow rows", 1000, 3, randomIds(70001, 1000, 4)],
    ["one hot id", 50, 40, new Uint32Array(3000).fill(49)],
    [
      "out-of-range ids",
      9,
      70,
      Uint32Array.from({ length: 2000 }, (_, i) => (i % 11 === 0 ? 9 + i : i % 9)),
    ],
  ];
  for (const [name, v, d, ids] of cases) {
    const table = hostRandom(v * d, v), w = hostRandom(ids.length * d, d);
    await exactOnThreads(
      (dev) => embedding(dev.tensor(table, [v, d]), dev.tensor(ids, [ids.length], "u32")),
      `${name}: forward`,
    );
    await exactOnThreads((dev) => {
      const t = dev.tensor(table, [v, d]);
      t.requiresGrad = true;
      const e = embedding(t, dev.tensor(ids, [ids.length], "u32"));
      backward(sumAll(mul(e, dev.tensor(w, e.shape))));
      return t.grad!;
    }, `${name}: table gradient`);
  }
});

Deno.test("embedding backward: two launches, the link pass zeroes rows of unseen ids in a reused buffer", async () => {
  const V = 40, D = 24, ids = Uint32Array.from([3, 7, 3, 39, 0, 7, 7]);
  const gh = hostRandom(ids.length * D, 31);
  for (const d of [cpu, ...others]) {
    // Leave a non-zero buffer of the table gradient's size in the pool first.
    d.full([V, D], 5).dispose();
    const table = d.tensor(hostRandom(V * D, 30), [V, D]);
    table.requiresGrad = true;
    const y = embedding(table, d.tensor(ids, [ids.length], "u32"));
    const g = d.tensor(gh, [ids.length, D]);
    const ops = launchesDuring(d, () => backward(y, { grad: g }));
    assert.deepEqual(ops, ["embeddingBackward", "embeddingBackward"], `${d.kind}: ${ops}`);
    const want = new Float32Array(V * D);
    ids.forEach((id, t) => {
      for (let c = 0; c < D; c++) {
        want[id * D + c] = Math.fround(want[id * D + c]! + gh[t * D + c]!);
      }
    });
    assertClose(await table.grad!.data(), want, { rtol: 1e-6, atol: 1e-7 }, d.kind);
  }
});
