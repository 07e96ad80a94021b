import assert from "node:assert/strict";
import {
  backward,
  countNonzero,
  DTypeError,
  keepCount,
  mul,
  ShapeError,
  sparsify,
  sumAll,
  type Tensor,
  topkMask,
  topkRows,
  ValueError,
} from "../mod.ts";
import { assertClose, cpu, hostRandom, onBoth, others } from "./helpers.ts";
import { gradCheck, gradOnBoth } from "./gradcheck.ts";

/** Independent reference: rank by (|x| desc with NaN on top, index asc) with a plain sort. */
function refTopk(
  row: ArrayLike<number>,
  k: number,
  order: "magnitude" | "value" = "magnitude",
): number[] {
  const score = (
    v: number,
  ) => (Number.isNaN(v) ? Infinity : order === "magnitude" ? Math.abs(v) : v);
  const nanFirst = (a: number, b: number) =>
    Number(Number.isNaN(row[b]!)) - Number(Number.isNaN(row[a]!));
  const idx = Array.from({ length: row.length }, (_, i) => i);
  idx.sort((a, b) => nanFirst(a, b) || score(row[b]!) - score(row[a]!) || a - b);
  return idx.slice(0, k);
}

/** Rows with ties, ±0, ±Inf and NaN mixed in. */
function nasty(n: number, seed: number): Float32Array {
  const r = hostRandom(n, seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = (r[i]! + 1) / 2;
    out[i] = u < 0.04
      ? NaN
      : u < 0.07
      ? Infinity
      : u < 0.1
      ? -Infinity
      : u < 0.2
      ? 0
      : u < 0.25
      ? -0
      : u < 0.5
      ? Math.round(r[(i * 7) % n]! * 4) / 2
      : r[(i * 13) % n]!;
  }
  return out;
}

async function checkAgainstRef(
  x: Float32Array,
  rows: number,
  d: number,
  k: number,
  sorted: boolean,
  order: "magnitude" | "value",
) {
  const s = topkRows(cpu.tensor(x, [rows, d]), k, { sorted, order });
  const vals = await s.values.data(), idx = await s.indices.data();
  for (let r = 0; r < rows; r++) {
    const want = refTopk(x.subarray(r * d, (r + 1) * d), k, order);
    const got = [...idx.subarray(r * k, (r + 1) * k)];
    assert.deepEqual(
      got,
      sorted ? want : [...want].sort((a, b) => a - b),
      `row ${r} d=${d} k=${k} ${order}`,
    );
    got.forEach((c, t) =>
      assert.ok(Object.is(vals[r * k + t], x[r * d + c]) || Number.isNaN(vals[r * k + t]!))
    );
  }
  s.dispose();
}

Deno.test("topkRows: CPU twin equals an independent sort (ties, NaN, ±Inf, ±0)", async () => {
  for (const [rows, d] of [[4, 1], [3, 7], [5, 33], [2, 300]] as const) {
    const x = nasty(rows * d, rows * 31 + d);
    for (const k of new Set([1, Math.max(1, d >> 2), d >> 1, d - 1, d])) {
      if (k < 1) continue;
      for (const sorted of [false, true]) {
        for (const order of ["magnitude", "value"] as const) {
          await checkAgainstRef(x, rows, d, k, sorted, order);
        }
      }
    }
  }
});

Deno.test("topkRows: WebGPU matches the CPU twin exactly", async (t) => {
  const cases: [number, number, number[]][] = [
    [3, 1, [0, 1]],
    [5, 7, [0, 1, 3, 7]],
    [4, 33, [1, 16, 32, 33]],
    [3, 300, [1, 100, 299]],
    [2, 4096, [1, 1638, 4095, 4096]],
    [1, 16384, [1, 6553, 16384]],
  ];
  for (const [rows, d, ks] of cases) {
    await t.step(`[${rows}, ${d}]`, async () => {
      for (const data of [hostRandom(rows * d, d), nasty(rows * d, d + 1)]) {
        for (const k of ks) {
          for (const sorted of [false, true]) {
            for (const order of ["magnitude", "value"] as const) {
              await onBoth(
                (dev) => {
                  const s = topkRows(dev.tensor(data, [rows, d]), k, { sorted, order });
                  return [s.values, s.indices];
                },
                { rtol: 0, atol: 0 },
                `topkRows [${rows}, ${d}] k=${k} sorted=${sorted} ${order}`,
              );
            }
          }
        }
      }
    });
  }
});

Deno.test("topkRows: exactly K kept per row, ascending distinct indices, leading dims kept", async () => {
  const x = hostRandom(2 * 3 * 100, 5);
  const s = topkRows(cpu.tensor(x, [2, 3, 100]), 37);
  assert.deepEqual(s.values.shape, [2, 3, 37]);
  assert.deepEqual(s.shape, [2, 3, 100]);
  assert.equal(s.nnz, 6 * 37);
  const idx = await s.indices.data();
  for (let r = 0; r < 6; r++) {
    for (let t = 1; t < 37; t++) assert.ok(idx[r * 37 + t]! > idx[r * 37 + t - 1]!);
  }
  const dense = s.toDense();
  assert.deepEqual([...await countNonzero(dense, { perRow: true }).data()], new Array(6).fill(37));
});

Deno.test("topkRows: edge cases K = 0, K = D, D = 1, all-equal rows, all-NaN rows", async () => {
  const z = topkRows(cpu.tensor([[1, 2, 3]]), 0);
  assert.deepEqual(z.values.shape, [1, 0]);
  assert.deepEqual(await z.toDense().toArray(), [[0, 0, 0]]);
  const all = topkRows(cpu.tensor([[3, -1, 2]]), 3);
  assert.deepEqual(await all.indices.toArray(), [[0, 1, 2]]);
  const one = topkRows(cpu.tensor([[5], [-2]]), 1);
  assert.deepEqual(await one.values.toArray(), [[5], [-2]]);
  // Ties go to the lower index: an all-equal row keeps the first K.
  for (const dev of [cpu, ...others]) {
    if (!dev) continue;
    const eq = topkRows(dev.full([2, 1000], -0.5), 300);
    const idx = await eq.indices.data();
    assert.deepEqual([...idx.subarray(0, 300)], Array.from({ length: 300 }, (_, i) => i));
    assert.deepEqual([...idx.subarray(300, 600)], Array.from({ length: 300 }, (_, i) => i));
    const nan = topkRows(dev.tensor([NaN, 1, NaN, -Infinity, 2, Infinity], [1, 6]), 4, {
      sorted: true,
    });
    assert.deepEqual([...await nan.indices.data()], [0, 2, 3, 5]);
  }
});

Deno.test("topkRows: f16 storage selects like f32 on the same values", async () => {
  const h = new Float16Array(hostRandom(3 * 200, 9));
  for (const dev of [cpu, ...others]) {
    if (!dev?.backend.hasF16) continue;
    const a = await topkRows(dev.tensor(h, [3, 200]), 50).indices.data();
    const b = await topkRows(dev.tensor(Float32Array.from(h), [3, 200]), 50).indices.data();
    assert.deepEqual([...a], [...b]);
  }
});

Deno.test("sparsify: K = ⌊(1 − S)·D⌋ computed robustly", async () => {
  assert.equal(keepCount(4096, 0.6), 1638);
  assert.equal(keepCount(10, 0.9), 1); // (1 − 0.9)·10 = 0.9999999999999998
  assert.equal(keepCount(10, 0.7), 3);
  assert.equal(keepCount(7, 0.5), 3);
  assert.equal(keepCount(8, 0), 8);
  assert.equal(keepCount(8, 1), 0);
  const s = sparsify(cpu.randn([2, 4096], { seed: 2 }), 0.6);
  assert.equal(s.k, 1638);
  assert.ok(Math.abs(s.sparsity - (1 - 1638 / 4096)) < 1e-12);
  assert.throws(
    () => sparsify(cpu.zeros([2, 8]), 1.5),
    (e: unknown) => e instanceof ValueError && /sparsify.*S/.test(e.message),
  );
  assert.throws(() => keepCount(8, -0.1), ValueError);
  await Promise.resolve();
});

Deno.test("topkRows: bad input is a typed error naming the op and the shape", () => {
  assert.throws(
    () => topkRows(cpu.zeros([2, 8]), 9),
    (e: unknown) =>
      e instanceof ShapeError && /^topkRows: K must be .*\[0, 8\].*got 9.*\[2, 8\]/.test(e.message),
  );
  assert.throws(() => topkRows(cpu.zeros([2, 8]), 1.5), ShapeError);
  assert.throws(() => topkRows(cpu.zeros([2, 8]), -1), ShapeError);
  assert.throws(
    () => topkRows(cpu.zeros([2, 8], "i32") as unknown as Tensor<"f32">, 1),
    (e: unknown) => e instanceof DTypeError && /topkRows/.test(e.message),
  );
  assert.throws(() => topkRows(cpu.tensor(3) as Tensor<"f32">, 1), ShapeError);
});

Deno.test("topkMask: equals topkRows(...).toDense(), on both devices", async () => {
  const x = nasty(4 * 130, 3);
  for (const k of [0, 1, 65, 130]) {
    const [m] = await onBoth(
      (dev) => topkMask(dev.tensor(x, [4, 130]), k),
      { rtol: 0, atol: 0 },
      `mask k=${k}`,
    );
    const dense = await topkRows(cpu.tensor(x, [4, 130]), k).toDense().data();
    assertClose(m!, dense, { rtol: 0, atol: 0 });
  }
  await onBoth((dev) => topkMask(dev.tensor(x, [4, 130]), { sparsity: 0.6 }, { order: "value" }), {
    rtol: 0,
    atol: 0,
  });
});

Deno.test("topkMask: STE passes the gradient unmasked; ste:false masks it", async () => {
  const x = cpu.tensor([[1, -3, 2, 0.5], [0, 4, -1, 3]]);
  x.requiresGrad = true;
  const w = cpu.tensor([[1, 2, 3, 4], [5, 6, 7, 8]]);
  backward(sumAll(mul(topkMask(x, 2), w)));
  assert.deepEqual(await x.grad!.toArray(), [[1, 2, 3, 4], [5, 6, 7, 8]]);
  x.grad!.dispose();
  x.grad = null;
  backward(sumAll(mul(topkMask(x, 2, { ste: false }), w)));
  assert.deepEqual(await x.grad!.toArray(), [[0, 2, 3, 0], [0, 6, 0, 8]]);
});

Deno.test("topkMask: ste:false gradient matches finite differences and GPU backward", async () => {
  // Well-separated magnitudes so a finite-difference step never changes the selection.
  const data = Float32Array.from(
    { length: 3 * 12 },
    (_, i) => ((i * 7) % 36 + 1) * 0.25 * (i % 2 ? 1 : -1),
  );
  const inputs = [{ data, shape: [3, 12] }];
  await gradCheck(([x]) => topkMask(x as Tensor<"f32">, 5, { ste: false }), inputs, { eps: 1e-2 });
  await gradCheck(
    ([x]) => topkMask(x as Tensor<"f32">, { sparsity: 0.5 }, { ste: false, block: { m: 4 } }),
    inputs,
  );
  await gradOnBoth(([x]) => topkMask(x as Tensor<"f32">, 5, { ste: false }), inputs);
  await gradOnBoth(([x]) => topkMask(x as Tensor<"f32">, 5), inputs);
});

Deno.test("topkMask: norm-preserving rescale keeps each row's L2 norm (off by default)", async () => {
  const x = hostRandom(3 * 500, 4);
  const [y] = await onBoth(
    (dev) => topkMask(dev.tensor(x, [3, 500]), { sparsity: 0.8 }, { rescale: true }),
    {
      rtol: 1e-5,
      atol: 1e-6,
    },
  );
  for (let r = 0; r < 3; r++) {
    let a = 0, b = 0, nz = 0;
    for (let i = 0; i < 500; i++) {
      a += x[r * 500 + i]! ** 2;
      b += y![r * 500 + i]! ** 2;
      if (y![r * 500 + i] !== 0) nz++;
    }
    assert.equal(nz, 100);
    assert.ok(
      Math.abs(Math.sqrt(a) - Math.sqrt(b)) < 1e-4 * Math.sqrt(a),
      `row ${r}: ${Math.sqrt(a)} vs ${Math.sqrt(b)}`,
    );
  }
  const plain = await topkMask(cpu.tensor(x, [3, 500]), 100).data();
  const ref = await topkRows(cpu.tensor(x, [3, 500]), 100).toDense().data();
  assertClose(plain, ref, { rtol: 0, atol: 0 });
  assert.throws(() => topkMask(cpu.zeros([2, 4]), 1, { rescale: true, ste: false }), ValueError);
});

Deno.test("countNonzero: per row and total, on both devices", async () => {
  const x = nasty(5 * 77, 8);
  await onBoth((dev) => countNonzero(dev.tensor(x, [5, 77]), { perRow: true }), {
    rtol: 0,
    atol: 0,
  });
  const [total] = await onBoth((dev) => countNonzero(dev.tensor(x, [5, 77])), { rtol: 0, atol: 0 });
  let want = 0;
  for (const v of x) if (v !== 0) want++;
  assert.equal(total![0], want);
  assert.deepEqual(countNonzero(cpu.zeros([3])).shape, []);
});

Deno.test("top-K: shapes past the native backend's parallel split match the twin", async () => {
  // Rows split across threads: the long-row select (sparse, sorted, dense with rescale) and the
  // many-short-rows mask, with ties, NaN and ±Inf sprinkled in.
  const long = nasty(20 * 3001, 31);
  for (const order of ["magnitude", "value"] as const) {
    for (const sorted of [false, true]) {
      await onBoth(
        (dev) => {
          const s = topkRows(dev.tensor(long, [20, 3001]), 1200, { sorted, order });
          return [s.values, s.indices];
        },
        { rtol: 0, atol: 0 },
        `topkRows split sorted=${sorted} ${order}`,
      );
    }
    await onBoth(
      (dev) => topkMask(dev.tensor(long, [20, 3001]), 1200, { order }),
      { rtol: 0, atol: 0 },
      `topkMask long rows ${order}`,
    );
  }
  const finite = hostRandom(20 * 3001, 32);
  await onBoth(
    (dev) => topkMask(dev.tensor(finite, [20, 3001]), 900, { rescale: true }),
    { rtol: 1e-6, atol: 1e-7 },
    "rescale long rows",
  );
  const short = nasty(601 * 77, 33);
  await onBoth((dev) => topkMask(dev.tensor(short, [601, 77]), 31), { rtol: 0, atol: 0 }, "short");
  const shortFinite = hostRandom(601 * 77, 34);
  await onBoth(
    (dev) => topkMask(dev.tensor(shortFinite, [601, 77]), 31, { rescale: true }),
    { rtol: 1e-6, atol: 1e-7 },
    "short rescale",
  );
  // ste:false records the 0/1 mask in the backward.
  await gradOnBoth(
    ([x]) => topkMask(x as Tensor<"f32">, 31, { ste: false }),
    [{ data: shortFinite, shape: [601, 77] }],
    { rtol: 0, atol: 0 },
    "short mask grad",
  );
});
