import assert from "node:assert/strict";
import { permute, ShapeError, type Tensor } from "../mod.ts";
import { permuteLayout } from "../kernels/permute.ts";
import { transpose } from "../mod.ts";
import { cpu, hostRandom, onBoth, others } from "./helpers.ts";
import { exactOnThreads } from "./native_threads.ts";
import { gradCheck, gradOnBoth } from "./gradcheck.ts";

function permutations(n: number): number[][] {
  if (n === 0) return [[]];
  return permutations(n - 1).flatMap((p) =>
    Array.from({ length: n }, (_, i) => [...p.slice(0, i), n - 1, ...p.slice(i)])
  );
}

/** Direct definition: out[i0..ik] = x[j] with input coordinate dims[k] = i_k. */
function ref(x: ArrayLike<number>, shape: number[], dims: number[]): number[] {
  const outShape = dims.map((d) => shape[d]!);
  const n = shape.reduce((a, b) => a * b, 1);
  const inStr = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    let rem = i, src = 0;
    for (let k = outShape.length - 1; k >= 0; k--) {
      const c = rem % outShape[k]!;
      rem = Math.floor(rem / outShape[k]!);
      src += c * inStr[dims[k]!]!;
    }
    out.push(x[src]!);
  }
  return out;
}

Deno.test("permute: every permutation of rank 3 and 4 matches the definition on both backends", async (t) => {
  for (const shape of [[3, 5, 7], [2, 3, 4, 5], [1, 4, 1, 3]]) {
    await t.step(`[${shape}]`, async () => {
      const n = shape.reduce((a, b) => a * b, 1), h = hostRandom(n, n);
      for (const dims of permutations(shape.length)) {
        const [y] = await onBoth(
          (d) => permute(d.tensor(h, shape), dims),
          { rtol: 0, atol: 0 },
          `[${dims}]`,
        );
        assert.deepEqual(Array.from(y!), ref(h, shape, dims), `dims [${dims}]`);
      }
    });
  }
});

Deno.test("permute: rank 0..6, big tensors, and every dtype", async () => {
  const cases: [number[], number[]][] = [
    [[], []],
    [[9], [0]],
    [[2, 1, 3, 2, 1, 4], [5, 3, 0, 2, 4, 1]],
    [[3, 2, 2, 3, 2, 2], [1, 0, 3, 2, 5, 4]],
    [[4, 257, 8, 16], [0, 2, 1, 3]],
    [[2, 33, 65], [2, 1, 0]],
  ];
  for (const [shape, dims] of cases) {
    const n = shape.reduce((a, b) => a * b, 1), h = hostRandom(n, 3);
    const [y] = await onBoth((d) => permute(d.tensor(h, shape), dims), { rtol: 0, atol: 0 });
    assert.deepEqual(Array.from(y!), ref(h, shape, dims), `[${shape}] by [${dims}]`);
  }
  const ints = Int32Array.from({ length: 60 }, (_, i) => i * 1000003 - 7);
  const [yi] = await onBoth((d) => permute(d.tensor(ints, [3, 4, 5]), [2, 0, 1]), {
    rtol: 0,
    atol: 0,
  });
  assert.deepEqual(Array.from(yi!), ref(ints, [3, 4, 5], [2, 0, 1]));
  const u = Uint32Array.from({ length: 60 }, (_, i) => 0xffffffff - i);
  await onBoth((d) => permute(d.tensor(u, [5, 12]), [1, 0]), { rtol: 0, atol: 0 });
  for (const dev of [cpu, ...others]) {
    if (!dev.backend.hasF16) continue;
    // Odd f16 counts: neighbouring halves share 32-bit words.
    const f = Float16Array.from({ length: 3 * 5 * 7 }, (_, i) => i / 8);
    const y = await permute(dev.tensor(f, [3, 5, 7]), [2, 1, 0]).data();
    assert.deepEqual(Array.from(y), ref(f, [3, 5, 7], [2, 1, 0]), `f16 on ${dev.kind}`);
  }
});

Deno.test("permuteLayout merges dims that stay adjacent and drops size-1 dims", () => {
  assert.deepEqual(permuteLayout([2, 3, 4, 5], [0, 2, 1, 3]), {
    shape: [2, 4, 3, 5],
    strides: [60, 5, 20, 1],
  });
  assert.deepEqual(permuteLayout([2, 3, 4], [0, 1, 2]), { shape: [24], strides: [1] });
  assert.deepEqual(permuteLayout([2, 1, 4], [2, 1, 0]), { shape: [4, 2], strides: [1, 4] });
  assert.deepEqual(permuteLayout([1, 1], [1, 0]), { shape: [1], strides: [1] });
});

Deno.test("permute: gradient is the inverse permutation", async () => {
  const cases: [number[], number[]][] = [[[2, 3, 4], [2, 0, 1]], [[2, 3, 2, 2], [0, 2, 1, 3]]];
  for (const [shape, dims] of cases) {
    const inp = [{ data: hostRandom(shape.reduce((a, b) => a * b, 1), 5), shape }];
    const fn = ([a]: Tensor[]) => permute(a!, dims);
    await gradCheck(fn, inp, { what: `permute [${dims}]` });
    await gradOnBoth(fn, inp, { rtol: 0, atol: 0 }, `permute [${dims}]`);
  }
});

Deno.test("permute: bad dims name the op and the shape", () => {
  const x = cpu.zeros([2, 3, 4]);
  assert.throws(
    () => permute(x, [0, 1]),
    (e: unknown) =>
      e instanceof ShapeError &&
      /permute: dims \[0, 1\] are not a permutation of 0\.\.2.*\[2, 3, 4\]/.test(e.message),
  );
  assert.throws(() => permute(x, [0, 1, 1]), ShapeError);
  assert.throws(() => permute(x, [0, 1, 3]), ShapeError);
  assert.throws(() => permute(x, [0, 1, 2.5]), ShapeError);
  assert.deepEqual(permute(x, [-1, 0, 1]).shape, [4, 2, 3]);
  assert.throws(
    () => permute(cpu.zeros([1, 1, 1, 1, 1, 1, 1]), [0, 1, 2, 3, 4, 5, 6]),
    (e: unknown) => e instanceof ShapeError && /at most 6 dims/.test(e.message),
  );
});

Deno.test("native: permute and transpose equal the twin across chunk boundaries (1 and 3 threads)", async (t) => {
  const cases: [number[], number[]][] = [
    [[32, 128, 4, 32], [0, 2, 1, 3]], // attention head split [B, T, H, hd] → [B, H, T, hd]
    [[32, 4, 128, 32], [0, 2, 1, 3]], // and merge
    [[300, 257], [1, 0]], // a real transpose: tiled walk
    [[3, 130, 257], [0, 2, 1]],
    [[70001, 2], [1, 0]], // strided inner dim, short rows
    [[2, 70001], [1, 0]],
    [[5, 6, 7, 8, 9], [4, 2, 0, 3, 1]],
    [[7, 9, 11, 13], [3, 2, 1, 0]],
  ];
  for (const [shape, dims] of cases) {
    await t.step(`[${shape}] by [${dims}]`, async () => {
      const n = shape.reduce((a, b) => a * b, 1);
      const h = hostRandom(n, n);
      await exactOnThreads((d) => permute(d.tensor(h, shape), dims), `permute [${shape}]`);
      await exactOnThreads((d) => transpose(d.tensor(h, shape)), `transpose [${shape}]`);
    });
  }
  const ints = Int32Array.from({ length: 300 * 257 }, (_, i) => i * 1000003);
  await exactOnThreads((d) => permute(d.tensor(ints, [300, 257]), [1, 0]), "i32 transpose");
  if (cpu.backend.hasF16) {
    const f = Float16Array.from({ length: 301 * 255 }, (_, i) => (i % 2049) / 8);
    await exactOnThreads((d) => permute(d.tensor(f, [301, 255]), [1, 0]), "f16 transpose");
    await exactOnThreads((d) => permute(d.tensor(f, [7, 43, 255]), [1, 0, 2]), "f16 permute");
  }
});
