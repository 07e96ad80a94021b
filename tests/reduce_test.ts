import assert from "node:assert/strict";
import {
  argmax,
  argmaxAll,
  DTypeError,
  max,
  maxAll,
  mean,
  meanAll,
  ShapeError,
  sum,
  sumAll,
  sumSquares,
  type Tensor,
} from "../mod.ts";
import {
  argScatterDispatch,
  rowLanes,
  rowReduceDispatch,
  type RowReduceSpec,
} from "../kernels/reduce.ts";
import { assertClose, cpu, gpu, hostRandom, onBoth, others } from "./helpers.ts";
import { exactOnThreads } from "./native_threads.ts";
import { gradCheck, gradOnBoth } from "./gradcheck.ts";

const SHAPES: number[][] = [
  [1],
  [7],
  [3, 1],
  [5, 255],
  [4, 257],
  [2, 3, 100],
  [2, 8192],
  [1000, 4],
  [3000, 3],
  [0, 5],
];

const ROW_OPS = { sum, mean, sumSquares, max } as const;

/** Direct f64 definitions of the last-dim reductions. */
function rowRef(op: keyof typeof ROW_OPS | "argmax", x: Float32Array, cols: number): number[] {
  const out: number[] = [];
  for (let r = 0; r * cols < x.length; r++) {
    const row = Array.from(x.subarray(r * cols, (r + 1) * cols));
    if (op === "sum") out.push(row.reduce((a, v) => a + v, 0));
    if (op === "mean") out.push(row.reduce((a, v) => a + v, 0) / cols);
    if (op === "sumSquares") out.push(row.reduce((a, v) => a + v * v, 0));
    if (op === "max") out.push(Math.max(...row));
    if (op === "argmax") out.push(row.indexOf(Math.max(...row)));
  }
  return out;
}

Deno.test("last-dim reductions: WebGPU matches the CPU twin, the twin matches the math", async (t) => {
  for (const [name, op] of Object.entries(ROW_OPS)) {
    await t.step(name, async () => {
      for (const shape of SHAPES) {
        const n = shape.reduce((a, b) => a * b, 1), cols = shape[shape.length - 1]!;
        if (name === "max" && cols === 0) continue;
        const h = hostRandom(n, n + 5, 3);
        const [res] = await onBoth(
          (d) => op(d.tensor(h, shape)),
          { rtol: 1e-5, atol: 1e-4 },
          `${name} [${shape}]`,
        );
        assertClose(
          res!,
          rowRef(name as keyof typeof ROW_OPS, h, cols),
          { rtol: 1e-5, atol: 1e-4 },
          `${name} [${shape}] vs math`,
        );
        for (const keepdim of [false, true]) {
          const y = op(cpu.tensor(h, shape), { keepdim });
          assert.deepEqual(y.shape, keepdim ? [...shape.slice(0, -1), 1] : shape.slice(0, -1));
          y.dispose();
        }
      }
    });
  }
  await t.step("argmax", async () => {
    for (const shape of SHAPES) {
      const n = shape.reduce((a, b) => a * b, 1), cols = shape[shape.length - 1]!;
      if (cols === 0) continue;
      const h = hostRandom(n, n + 9, 3);
      const [res] = await onBoth(
        (d) => argmax(d.tensor(h, shape)),
        { rtol: 0, atol: 0 },
        `argmax [${shape}]`,
      );
      assert.deepEqual(Array.from(res!), rowRef("argmax", h, cols));
    }
  });
});

Deno.test("argmax and max: ties go to the lowest index, NaN beats numbers (PyTorch)", async () => {
  const rows = [
    [3, 1, 3, 2],
    [5, 5, 5, 5],
    [-Infinity, -Infinity, -Infinity, -Infinity],
    [1, NaN, 2, NaN],
    [-Infinity, Infinity, Infinity, 0],
    [-0, 0, -1, -2],
  ];
  const flat = new Float32Array(rows.flat());
  const [idx] = await onBoth(
    (d) => argmax(d.tensor(flat, [6, 4])),
    { rtol: 0, atol: 0 },
    "argmax edge",
  );
  assert.deepEqual(Array.from(idx!), [0, 0, 0, 1, 1, 0]);
  const [vals] = await onBoth((d) => max(d.tensor(flat, [6, 4])), { rtol: 0, atol: 0 }, "max edge");
  assert.deepEqual(Array.from(vals!), [3, 5, -Infinity, NaN, Infinity, -0]);
  // Ties spread over lanes of a long row, and over chunks of the two-pass all-element argmax.
  const long = new Float32Array(50000).fill(-1);
  long[40001] = 7;
  long[3001] = 7;
  long[45000] = 7;
  const [li] = await onBoth((d) => argmax(d.tensor(long, [5, 10000])), { rtol: 0, atol: 0 });
  assert.deepEqual(Array.from(li!), [3001, 0, 0, 0, 1]);
  const [gi] = await onBoth((d) => argmaxAll(d.tensor(long)), { rtol: 0, atol: 0 });
  assert.equal(gi![0], 3001);
  long[49999] = NaN;
  long[20000] = NaN;
  const [gn] = await onBoth((d) => argmaxAll(d.tensor(long)), { rtol: 0, atol: 0 });
  assert.equal(gn![0], 20000);
  const [mn] = await onBoth((d) => maxAll(d.tensor(long)), { rtol: 0, atol: 0 });
  assert.ok(Number.isNaN(mn![0]));
});

Deno.test("all-element reductions: one and two passes, both backends, against f64 sums", async (t) => {
  for (const n of [0, 1, 7, 255, 8192, 8193, 100003, 1 << 20]) {
    await t.step(`n=${n}`, async () => {
      const h = hostRandom(n, n + 1, 2);
      let s = 0, mx = -Infinity, am = 0;
      for (let i = 0; i < n; i++) {
        s += h[i]!;
        if (h[i]! > mx) [mx, am] = [h[i]!, i];
      }
      const tol = { rtol: 1e-5, atol: 1e-4 * Math.sqrt(n + 1) };
      const [rs] = await onBoth((d) => sumAll(d.tensor(h)), tol, `sumAll n=${n}`);
      assertClose(rs!, [s], tol, `sumAll n=${n} vs f64`);
      const [rm] = await onBoth((d) => meanAll(d.tensor(h)), tol, `meanAll n=${n}`);
      assertClose(rm!, [s / n], { rtol: 1e-5, atol: 1e-6 }, `meanAll n=${n} vs f64`);
      if (n === 0) return;
      const [rx] = await onBoth((d) => maxAll(d.tensor(h)), { rtol: 0, atol: 0 });
      assert.equal(rx![0], mx);
      const [ri] = await onBoth((d) => argmaxAll(d.tensor(h)), { rtol: 0, atol: 0 });
      assert.equal(ri![0], am);
      const x = cpu.tensor(h, [n]);
      assert.deepEqual(sumAll(x).shape, []);
    });
  }
});

Deno.test("row reduction: the grid-stride row loop covers rows beyond the launched workgroups", async () => {
  if (!gpu) return;
  for (const cols of [3, 40, 300]) {
    const rows = 2000, h = hostRandom(rows * cols, cols, 1);
    const spec: RowReduceSpec = {
      kind: "sum",
      square: false,
      inType: "f32",
      outType: "f32",
      lanes: rowLanes(cols),
      values: true,
      indices: false,
      indexIn: false,
    };
    const outs: ArrayLike<number>[] = [];
    for (const dev of [cpu, gpu]) {
      const x = dev.tensor(h, [rows, cols]), o = dev.empty([rows], "f32");
      const d = rowReduceDispatch(
        "sum",
        spec,
        { rows, cols, n: rows * cols, scale: 1, istride: 0 },
        [
          x.storage("t"),
          o.storage("t"),
        ],
      );
      dev.run({ ...d, workgroups: [3, 1, 1] });
      outs.push(await o.data());
    }
    assertClose(outs[1]!, outs[0]!, { rtol: 1e-5, atol: 1e-5 }, `cols=${cols}`);
  }
});

Deno.test("f16 storage: reductions widen to f32 and store f16", async () => {
  for (const dev of [cpu, ...others]) {
    if (!dev.backend.hasF16) continue;
    const x = dev.tensor(new Float16Array(2048).fill(0.1), [2, 1024]);
    const s = await sum(x).data();
    assert.equal(x.dtype, "f16");
    // An f16 accumulator stalls near 256; f32 accumulation lands on f16(102.4).
    assert.ok(Math.abs(s[0]! - 1024 * 0.0999755859375) < 0.1, `got ${s[0]}`);
    assert.equal((await argmax(dev.tensor(new Float16Array([1, 3, 3]))).data())[0], 1);
    assert.ok(Math.abs((await sumAll(x).data())[0]! - 204.75) < 0.2);
  }
});

/** Distinct values at least 0.1 apart, so a finite-difference step never changes the argmax. */
function spread(n: number, seed: number): Float32Array {
  const r = hostRandom(n, seed);
  const order = [...r.keys()].sort((a, b) => r[a]! - r[b]!);
  const out = new Float32Array(n);
  order.forEach((i, rank) => (out[i] = (rank - n / 2) * 0.1));
  return out;
}

Deno.test("reductions: gradients match finite differences, GPU backward matches CPU", async (t) => {
  const x = { data: hostRandom(3 * 5, 3), shape: [3, 5] };
  const cases: [string, (xs: Tensor[]) => Tensor, typeof x][] = [
    ["sum", ([a]) => sum(a!), x],
    ["sum keepdim", ([a]) => sum(a!, { keepdim: true }), x],
    ["mean", ([a]) => mean(a!), x],
    ["sumSquares", ([a]) => sumSquares(a!), x],
    ["max", ([a]) => max(a!), { data: spread(15, 4), shape: [3, 5] }],
    ["sumAll", ([a]) => sumAll(a!), x],
    ["meanAll", ([a]) => meanAll(a!), x],
    ["maxAll", ([a]) => maxAll(a!), { data: spread(15, 5), shape: [3, 5] }],
    ["sumAll two-pass", ([a]) => sumAll(a!), { data: hostRandom(9000, 8), shape: [9000] }],
    ["maxAll two-pass", ([a]) => maxAll(a!), { data: spread(9000, 9), shape: [9000] }],
    ["sum rank 3", ([a]) => sum(a!), { data: hostRandom(2 * 3 * 4, 2), shape: [2, 3, 4] }],
  ];
  for (const [name, fn, inp] of cases) {
    await t.step(name, async () => {
      await gradCheck(fn, [inp], { what: name, maxPoints: 16 });
      await gradOnBoth(fn, [inp], { rtol: 1e-5, atol: 1e-5 }, name);
    });
  }
});

Deno.test("reductions: bad input names the op and the shape", () => {
  assert.throws(
    () => sum(cpu.zeros([2, 3], "i32")),
    (e: unknown) => e instanceof DTypeError && /^sum: needs a float/.test(e.message),
  );
  assert.throws(() => argmax(cpu.zeros([2], "u32")), DTypeError);
  assert.throws(() => sumAll(cpu.zeros([2], "i32")), DTypeError);
  assert.throws(
    () => mean(cpu.tensor(3)),
    (e: unknown) => e instanceof ShapeError && /mean: .*\(shapes \[\]\)/.test(e.message),
  );
  assert.throws(
    () => max(cpu.zeros([4, 0])),
    (e: unknown) => e instanceof ShapeError && /max: .*\[4, 0\]/.test(e.message),
  );
  assert.throws(() => maxAll(cpu.zeros([0, 3])), ShapeError);
});

/** Random rows with NaN, ±∞ and ties planted in some rows. */
function awkwardRows(rows: number, cols: number, seed: number): Float32Array {
  const h = hostRandom(rows * cols, seed, 3).map((v) => Math.round(v * 4) / 4); // many ties
  for (let r = 0; r < rows; r += 7) {
    const k = r % 5;
    if (k === 0) h[r * cols + (r % cols)] = NaN;
    if (k === 1) h[r * cols + ((r * 3) % cols)] = Infinity;
    if (k === 2) h.fill(-Infinity, r * cols, (r + 1) * cols);
    if (k === 3 && cols > 2) h[r * cols + cols - 1] = NaN, h[r * cols + 1] = NaN;
  }
  return h;
}

Deno.test("native: row reductions equal the twin bit for bit across the row split (1 and 3 threads)", async (t) => {
  const shapes = [[1, 1], [5, 7], [300, 257], [70001, 1], [3, 70001], [1000, 100], [4096, 352]];
  for (const [rows, cols] of shapes) {
    await t.step(`[${rows}, ${cols}]`, async () => {
      const h = awkwardRows(rows!, cols!, rows! + cols!);
      for (const [name, op] of Object.entries(ROW_OPS)) {
        await exactOnThreads((d) => op(d.tensor(h, [rows!, cols!])), `${name} [${rows}, ${cols}]`);
      }
      await exactOnThreads((d) => argmax(d.tensor(h, [rows!, cols!])), `argmax [${rows}, ${cols}]`);
    });
  }
});

Deno.test("native: all-element reductions (one and two passes) equal the twin", async () => {
  for (const n of [1, 8192, 8193, 100003, 1048577]) {
    const h = awkwardRows(1, n, n);
    h[n >> 1] = 0; // keep the sums finite: no NaN or ∞ in these
    const finite = h.map((v) => (Number.isFinite(v) ? v : 0.5));
    await exactOnThreads((d) => sumAll(d.tensor(finite)), `sumAll n=${n}`);
    await exactOnThreads((d) => meanAll(d.tensor(finite)), `meanAll n=${n}`);
    await exactOnThreads((d) => maxAll(d.tensor(h)), `maxAll n=${n}`);
    await exactOnThreads((d) => argmaxAll(d.tensor(h)), `argmaxAll n=${n}`);
    // A NaN late in the tensor wins over every number, in the second pass too.
    const late = finite.slice();
    late[n - 1] = NaN;
    await exactOnThreads((d) => argmaxAll(d.tensor(late)), `argmaxAll late NaN n=${n}`);
  }
});

Deno.test("native: the argmax gradient scatter equals the twin across the row split", async () => {
  for (const [rows, cols] of [[3, 5], [70001, 2], [300, 257]]) {
    const g = hostRandom(rows!, 2);
    const idx = new Uint32Array(rows!).map((_, r) => (r % 9 === 0 ? 0xffffffff : (r * 7) % cols!));
    await exactOnThreads((d) => {
      const gt = d.tensor(g), it = d.tensor(idx), out = d.empty([rows!, cols!], "f32");
      d.run(
        argScatterDispatch(
          "f32",
          rows! * cols!,
          cols!,
          gt.storage("t"),
          it.storage("t"),
          out.storage("t"),
        ),
      );
      return out;
    }, `argScatter [${rows}, ${cols}]`);
  }
});
