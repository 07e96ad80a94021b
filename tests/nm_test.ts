import assert from "node:assert/strict";
import {
  DTypeError,
  NMSparse,
  ShapeError,
  type Tensor,
  toCsr,
  topkBlocks,
  topkMask,
} from "../mod.ts";
import { NM_RANK_MAX_M } from "../kernels/nm.ts";
import { assertClose, cpu, hostRandom, onBoth } from "./helpers.ts";

function nasty(n: number, seed: number): Float32Array {
  const r = hostRandom(n, seed);
  return r.map((v, i) => {
    const u = (v + 1) / 2;
    return u < 0.04
      ? NaN
      : u < 0.07
      ? Infinity
      : u < 0.1
      ? -Infinity
      : u < 0.2
      ? 0
      : u < 0.5
      ? Math.round(r[(i * 7) % n]! * 4) / 2
      : v;
  });
}

/** Reference: per block, rank by (|x| desc, NaN on top, index asc). */
function refBlocks(x: Float32Array, d: number, n: number, m: number): number[][] {
  const rows: number[][] = [];
  for (let r = 0; r < x.length / d; r++) {
    const kept: number[] = [];
    for (let b = 0; b < d / m; b++) {
      const idx = Array.from({ length: m }, (_, i) => b * m + i);
      const s = (i: number) => (Number.isNaN(x[r * d + i]) ? Infinity : Math.abs(x[r * d + i]!));
      const nan = (i: number) => Number(Number.isNaN(x[r * d + i]));
      idx.sort((a, c) => nan(c) - nan(a) || s(c) - s(a) || a - c);
      kept.push(...idx.slice(0, n).sort((a, c) => a - c));
    }
    rows.push(kept);
  }
  return rows;
}

Deno.test("topkBlocks: CPU twin equals an independent per-block sort", async () => {
  for (
    const [n, m, d] of [[1, 2, 8], [2, 4, 12], [16, 32, 64], [5, 7, 21], [40, 128, 256]] as const
  ) {
    const x = nasty(3 * d, n * m + d);
    const s = topkBlocks(cpu.tensor(x, [3, d]), n, m);
    assert.deepEqual(await s.indices.toArray(), refBlocks(x, d, n, m), `${n}:${m} d=${d}`);
  }
});

Deno.test("topkBlocks: WebGPU matches the CPU twin (rank kernel and segmented row select)", async () => {
  const cases: [number, number, number][] = [
    [1, 2, 6],
    [2, 4, 40],
    [16, 32, 4096],
    [0, 32, 64],
    [32, 32, 64],
    [3, 7, 35],
    [30, NM_RANK_MAX_M, 256],
    [64, 128, 512],
    [100, 256, 512],
  ];
  for (const [n, m, d] of cases) {
    for (const data of [hostRandom(5 * d, d + n), nasty(5 * d, m)]) {
      await onBoth(
        (dev) => {
          const s = topkBlocks(dev.tensor(data, [5, d]), n, m);
          return [s.values, s.indices];
        },
        { rtol: 0, atol: 0 },
        `${n}:${m} d=${d}`,
      );
      await onBoth((dev) => topkMask(dev.tensor(data, [5, d]), (d / m) * n, { block: { n, m } }), {
        rtol: 0,
        atol: 0,
      }, `mask ${n}:${m}`);
    }
  }
});

Deno.test("topkBlocks: exactly n per block, ascending absolute indices, 16:32 default shape", async () => {
  const s = topkBlocks(cpu.randn([2, 3, 128], { seed: 4 }), 16, 32);
  assert.ok(s instanceof NMSparse);
  assert.deepEqual(s.values.shape, [2, 3, 64]);
  assert.equal(s.density, 0.5);
  const idx = await s.indices.data();
  for (let r = 0; r < 6; r++) {
    for (let b = 0; b < 4; b++) {
      const blk = [...idx.subarray(r * 64 + b * 16, r * 64 + (b + 1) * 16)];
      assert.ok(blk.every((c, i) => Math.floor(c / 32) === b && (i === 0 || c > blk[i - 1]!)));
    }
  }
  const dense = s.toDense();
  const mask = topkMask(cpu.randn([2, 3, 128], { seed: 4 }), { sparsity: 0.5 }, {
    block: { m: 32 },
  });
  assertClose(await dense.data(), await mask.data(), { rtol: 0, atol: 0 });
  const csr = toCsr(s);
  assertClose(await csr.toDense().data(), await dense.data(), { rtol: 0, atol: 0 });
});

Deno.test("topkBlocks: all-equal blocks keep the first n; NaN beats Inf", async () => {
  const s = topkBlocks(cpu.full([1, 8], 2), 2, 4);
  assert.deepEqual(await s.indices.toArray(), [[0, 1, 4, 5]]);
  const t = topkBlocks(cpu.tensor([[1, Infinity, NaN, -Infinity]]), 2, 4);
  assert.deepEqual(await t.indices.toArray(), [[1, 2]]);
});

Deno.test("topkBlocks: bad input names the op and the shape", () => {
  assert.throws(
    () => topkBlocks(cpu.zeros([2, 30]), 16, 32),
    (e: unknown) =>
      e instanceof ShapeError &&
      /^topkBlocks: block length m = 32 .*dividing the last dim 30.*\[2, 30\]/.test(e.message),
  );
  assert.throws(
    () => topkBlocks(cpu.zeros([2, 32]), 33, 32),
    (e: unknown) => e instanceof ShapeError && /n must be/.test(e.message),
  );
  assert.throws(
    () => topkBlocks(cpu.zeros([2, 32], "u32") as unknown as Tensor<"f32">, 1, 2),
    DTypeError,
  );
  assert.throws(() => topkMask(cpu.zeros([2, 64]), 9, { block: { m: 32 } }), ShapeError);
  assert.throws(() => topkMask(cpu.zeros([2, 32]), 16, { block: { n: 8, m: 32 } }), ShapeError);
});

Deno.test("topkBlocks: shapes past the native backend's parallel split match the twin", async () => {
  // 130 rows of 256: 1040 blocks of 32 (rank kernel) and 260 of 128 (segmented row select).
  const data = nasty(130 * 256, 41);
  for (const [n, m] of [[16, 32], [2, 4], [50, 128]]) {
    await onBoth(
      (dev) => {
        const s = topkBlocks(dev.tensor(data, [130, 256]), n!, m!);
        return [s.values, s.indices];
      },
      { rtol: 0, atol: 0 },
      `${n}:${m} split`,
    );
    await onBoth(
      (dev) => topkMask(dev.tensor(data, [130, 256]), (256 / m!) * n!, { block: { n, m: m! } }),
      { rtol: 0, atol: 0 },
      `mask ${n}:${m} split`,
    );
  }
});
