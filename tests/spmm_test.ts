import assert from "node:assert/strict";
import {
  backward,
  denseToCsr,
  Device,
  DTypeError,
  matmul,
  mul,
  ShapeError,
  spmm,
  sumAll,
  type Tensor,
  toCsr,
  topkBlocks,
  topkMask,
  topkRows,
  transpose,
  ValueError,
} from "../mod.ts";
import { spmmAutoKernel, spmmGradInput, spmmGradWeight } from "../src/ops/spmm.ts";
import { type RowLayout, spmmDispatch, type SpmmKernel, type SpmmTiling } from "../kernels/spmm.ts";
import { assertClose, cpu, hostRandom, onBoth, others } from "./helpers.ts";
import { NativeBackend } from "../src/backend/native.ts";
import { exactOnThreads, sameOnThreads } from "./native_threads.ts";

const TOL = { rtol: 1e-4, atol: 1e-4 };

/** Runs one forward kernel with an explicit tiling on `dev`. */
function runKernel(
  dev: Device,
  x: Float32Array,
  rows: number,
  dIn: number,
  dOut: number,
  k: number,
  kernel: SpmmKernel,
  tiling: SpmmTiling,
  form: "rows" | "sorted" | "nm" | "csr",
): Tensor {
  const xt = dev.tensor(x, [rows, dIn]);
  const w = dev.tensor(hostRandom(dIn * dOut, dIn + dOut), [dIn, dOut]);
  const y = dev.empty([rows, dOut], "f32");
  let bufs, layout: RowLayout, nm;
  if (form === "nm") {
    const s = topkBlocks(xt, 2, 4);
    bufs = [s.values, s.indices];
    layout = "fixed";
    nm = { n: 2, m: 4 };
    k = s.k;
  } else {
    const s = topkRows(xt, k, { sorted: form === "sorted" });
    if (form === "csr") {
      const c = toCsr(s);
      bufs = [c.values, c.colIdx];
      layout = "csr";
      dev.run(
        spmmDispatch(
          { rows, dIn, dOut, k: 0, dtype: "f32" },
          layout,
          [...bufs, w, y, c.rowPtr].map((t) => t.storage("t")),
          kernel,
          undefined,
          tiling,
        ),
      );
      return y;
    }
    bufs = [s.values, s.indices];
    layout = form === "sorted" ? "fixedUnsorted" : "fixed";
  }
  dev.run(
    spmmDispatch(
      { rows, dIn, dOut, k, dtype: "f32" },
      layout,
      [...bufs, w, y].map((t) => t.storage("t")),
      kernel,
      nm,
      tiling,
    ),
  );
  return y;
}

function denseRef(
  x: Float32Array,
  rows: number,
  dIn: number,
  dOut: number,
  k: number,
): Promise<Float32Array> {
  const xt = cpu.tensor(x, [rows, dIn]);
  return matmul(topkMask(xt, k), cpu.tensor(hostRandom(dIn * dOut, dIn + dOut), [dIn, dOut]))
    .data();
}

Deno.test("spmm: every kernel, tiling and layout matches the CPU twin and the dense product", async (t) => {
  const tilings: [SpmmKernel, SpmmTiling, number[]][] = [
    ["rows", { nv: 4, wg: 16, r: 4 }, [16, 64]],
    ["rows", { nv: 1, wg: 32, r: 4 }, [4, 12, 64]],
    ["rows", { nv: 0, wg: 32, r: 1 }, [1, 7, 13]],
    ["merge", { nv: 4, wg: 16, r: 8 }, [16, 48]],
    ["merge", { nv: 1, wg: 32, r: 3 }, [8, 12]],
    ["merge", { nv: 0, wg: 32, r: 2 }, [5]],
    ["nm", { nv: 4, wg: 16, r: 4 }, [16, 32]],
    ["nm", { nv: 0, wg: 32, r: 2 }, [3, 9]],
  ];
  for (const [kernel, tiling, outs] of tilings) {
    await t.step(`${kernel} nv=${tiling.nv} r=${tiling.r}`, async () => {
      for (const [rows, dIn] of [[1, 8], [3, 40], [9, 100], [17, 64]] as const) {
        const dInNm = dIn - (dIn % 4);
        for (const dOut of outs) {
          const forms = kernel === "nm"
            ? ["nm"] as const
            : kernel === "merge"
            ? ["rows", "csr"] as const
            : ["rows", "sorted", "csr"] as const;
          for (const form of forms) {
            const d = form === "nm" ? dInNm : dIn;
            const x = hostRandom(rows * d, rows * d + dOut);
            const k = Math.max(1, Math.floor(d * 0.4));
            const [got] = await onBoth(
              (dev) => runKernel(dev, x, rows, d, dOut, k, kernel, tiling, form),
              TOL,
              `${kernel} ${form} [${rows}, ${d}]x[${d}, ${dOut}]`,
            );
            const ref = form === "nm"
              ? await matmul(
                topkMask(cpu.tensor(x, [rows, d]), { sparsity: 0.5 }, { block: { m: 4 } }),
                cpu.tensor(hostRandom(d * dOut, d + dOut), [d, dOut]),
              ).data()
              : await denseRef(x, rows, d, dOut, k);
            assertClose(got!, ref, TOL, `${kernel} ${form} vs dense`);
          }
        }
      }
    });
  }
});

Deno.test("spmm(topkRows(x, k), w) equals matmul(topkMask(x, k), w) for every kernel choice", async () => {
  const x = hostRandom(2 * 3 * 96, 11), w = hostRandom(96 * 32, 12);
  for (const k of [0, 1, 40, 96]) {
    for (const kernel of ["auto", "rows", "merge", "dense"] as const) {
      const [y] = await onBoth(
        (dev) => spmm(topkRows(dev.tensor(x, [2, 3, 96]), k), dev.tensor(w, [96, 32]), { kernel }),
        TOL,
        `k=${k} ${kernel}`,
      );
      const ref = await matmul(topkMask(cpu.tensor(x, [6, 96]), k), cpu.tensor(w, [96, 32])).data();
      assertClose(y!, ref, TOL, `k=${k} ${kernel} vs matmul(mask)`);
    }
  }
  // N:M operand (nm kernel and auto) and CSR operand built from a dense tensor.
  for (const kernel of ["nm", "auto", "rows"] as const) {
    const [y] = await onBoth(
      (dev) =>
        spmm(topkBlocks(dev.tensor(x, [6, 96]), 16, 32), dev.tensor(w, [96, 32]), { kernel }),
      TOL,
    );
    const ref = await matmul(
      topkMask(cpu.tensor(x, [6, 96]), 48, { block: { m: 32 } }),
      cpu.tensor(w, [96, 32]),
    ).data();
    assertClose(y!, ref, TOL, `nm ${kernel}`);
  }
  const csr = await denseToCsr(topkMask(cpu.tensor(x, [6, 96]), 20));
  const y = await spmm(csr, cpu.tensor(w, [96, 32])).data();
  assertClose(
    y,
    await matmul(topkMask(cpu.tensor(x, [6, 96]), 20), cpu.tensor(w, [96, 32])).data(),
    TOL,
  );
  const sorted = await spmm(
    topkRows(cpu.tensor(x, [6, 96]), 20, { sorted: true }),
    cpu.tensor(w, [96, 32]),
  ).data();
  assertClose(sorted, y, TOL, "rank-ordered rows");
});

Deno.test("spmm: the GEMV path at decoding size (1 x 4096 · 4096 x 64)", async () => {
  const x = hostRandom(4096, 3), w = hostRandom(4096 * 64, 4);
  const [y] = await onBoth(
    (dev) => spmm(topkRows(dev.tensor(x, [1, 4096]), 1638), dev.tensor(w, [4096, 64])),
    TOL,
  );
  assertClose(
    y!,
    await matmul(topkMask(cpu.tensor(x, [1, 4096]), 1638), cpu.tensor(w, [4096, 64])).data(),
    TOL,
  );
});

Deno.test("spmmGradWeight: equals maskᵀ · dY, touches only kept rows with `into`", async () => {
  const x = hostRandom(5 * 40, 21), dy = hostRandom(5 * 24, 22);
  for (const form of ["rows", "sorted", "nm", "csr"] as const) {
    const make = (dev: Device) => {
      const xt = dev.tensor(x, [5, 40]);
      if (form === "nm") return topkBlocks(xt, 1, 4);
      const s = topkRows(xt, 7, { sorted: form === "sorted" });
      return form === "csr" ? toCsr(s) : s;
    };
    const [g] = await onBoth(
      (dev) => spmmGradWeight(make(dev), dev.tensor(dy, [5, 24])),
      TOL,
      `dW ${form}`,
    );
    const dense = make(cpu).toDense();
    const ref = await matmul(dense, cpu.tensor(dy, [5, 24]), { transposeA: true }).data();
    assertClose(g!, ref, TOL, `dW ${form} vs maskᵀ·dY`);
    // Accumulate: kept rows get base + grad; untouched rows keep their (NaN) base bit for bit.
    const base = new Float32Array(40 * 24).fill(NaN);
    const kept = new Set<number>();
    const dd = await dense.data();
    for (let i = 0; i < dd.length; i++) if (dd[i] !== 0) kept.add(i % 40);
    for (const u of kept) for (let c = 0; c < 24; c++) base[u * 24 + c] = 1;
    const [acc] = await onBoth(
      (dev) => {
        const into = dev.tensor(base, [40, 24]);
        const out = spmmGradWeight(make(dev), dev.tensor(dy, [5, 24]), { into });
        assert.equal(out, into);
        return into;
      },
      TOL,
      `dW into ${form}`,
    );
    for (let u = 0; u < 40; u++) {
      for (let c = 0; c < 24; c++) {
        const i = u * 24 + c;
        if (kept.has(u)) assert.ok(Math.abs(acc![i]! - (1 + ref[i]!)) < 1e-4, `row ${u}`);
        else assert.ok(Number.isNaN(acc![i]!), `untouched row ${u} was written`);
      }
    }
  }
});

Deno.test("spmm: autograd reaches w; spmmGradInput is dY · wᵀ (straight-through)", async () => {
  const x = cpu.tensor(hostRandom(3 * 16, 31), [3, 16]);
  const w = cpu.tensor(hostRandom(16 * 8, 32), [16, 8]);
  w.requiresGrad = true;
  const gy = cpu.tensor(hostRandom(3 * 8, 33), [3, 8]);
  backward(sumAll(mul(spmm(topkRows(x, 5), w), gy)));
  const ref = await matmul(topkMask(x, 5), gy, { transposeA: true }).data();
  assertClose(await w.grad!.data(), ref, TOL);
  const dx = await spmmGradInput(gy, w).data();
  assertClose(dx, await matmul(gy, transpose(w)).data(), TOL);
  const dx3 = spmmGradInput(cpu.zeros([2, 3, 8]), w);
  assert.deepEqual(dx3.shape, [2, 3, 16]);
  for (const dev of others) {
    const [a, b] = [cpu, dev].map((d) =>
      spmmGradInput(
        d.tensor(hostRandom(3 * 8, 34), [3, 8]),
        d.tensor(hostRandom(16 * 8, 35), [16, 8]),
      )
    );
    assertClose(await b!.data(), await a!.data(), TOL, dev.kind);
  }
});

Deno.test("spmm: auto policy and bad input", () => {
  assert.equal(spmmAutoKernel(1, 0.9, true), "rows");
  assert.equal(spmmAutoKernel(64, 0.1, true), "rows");
  assert.equal(spmmAutoKernel(8, 0.5, true), "merge");
  assert.equal(spmmAutoKernel(8, 0.5, false), "dense");
  assert.equal(spmmAutoKernel(64, 0.4, true), "dense");
  const s = topkRows(cpu.zeros([2, 8]), 3);
  assert.throws(
    () => spmm(s, cpu.zeros([6, 4])),
    (e: unknown) =>
      e instanceof ShapeError &&
      /^spmm: w must be \[D_in, D_out\].*D_in = 8.*\[2, 8\] and \[6, 4\]/.test(e.message),
  );
  assert.throws(
    () => spmm(s, cpu.zeros([8, 4], "f16") as unknown as Tensor<"f32">),
    (e: unknown) => e instanceof DTypeError && /spmm/.test(e.message),
  );
  assert.throws(() => spmm(s, cpu.zeros([8, 4]), { kernel: "nm" }), ValueError);
  assert.throws(
    () =>
      spmm(topkRows(cpu.zeros([2, 8]), 3, { sorted: true }), cpu.zeros([8, 4]), {
        kernel: "merge",
      }),
    ValueError,
  );
  assert.throws(
    () => spmmGradWeight(s, cpu.zeros([3, 4])),
    (e: unknown) => e instanceof ShapeError && /spmmGradWeight/.test(e.message),
  );
  assert.throws(() => spmmGradInput(cpu.zeros([2, 5]), cpu.zeros([8, 4])), ShapeError);
});

Deno.test("spmm: f16 storage (f32 accumulation) on every kernel", async () => {
  const x = new Float16Array(hostRandom(9 * 64, 41)), w = new Float16Array(hostRandom(64 * 32, 42));
  for (const kernel of ["rows", "merge", "nm", "dense"] as const) {
    const devs = [cpu, ...others].filter((d): d is Device => d !== null && d.backend.hasF16);
    const outs = await Promise.all(devs.map((dev) => {
      const xt = dev.tensor(x, [9, 64]), wt = dev.tensor(w, [64, 32]);
      const a = kernel === "nm" ? topkBlocks(xt, 16, 32) : topkRows(xt, 32);
      return spmm(a, wt, { kernel }).data();
    }));
    const ref = await matmul(
      topkMask(
        cpu.tensor(Float32Array.from(x), [9, 64]),
        { sparsity: 0.5 },
        kernel === "nm" ? { block: { m: 32 } } : {},
      ),
      cpu.tensor(Float32Array.from(w), [64, 32]),
    ).data();
    for (const o of outs) {
      assertClose(Float32Array.from(o), ref, { rtol: 2e-3, atol: 2e-3 }, `f16 ${kernel}`);
    }
  }
});

Deno.test("spmm native: the thread split, the per-token and sgemm paths, and no BLAS", async () => {
  // [rows, dIn, dOut, k]: per-token saxpy (W ≥ 2^19 weights and under one whole-W read: one row
  // split over threads at an odd column count, three rows, more than 4096 columns per thread),
  // then scatter + sgemm (a small W at one row, batches past one W read); fixed, rank-ordered
  // and CSR rows.
  const shapes = [[1, 1024, 600, 300], [3, 800, 700, 90], [1, 100, 9000, 40], [1, 4096, 33, 1638], [
    12,
    96,
    80,
    40,
  ], [
    64,
    128,
    352,
    64,
  ]] as const;
  using plain = new Device(new NativeBackend({ noBlas: true, threads: 2 }));
  await (plain.backend as NativeBackend).ready();
  for (const [rows, dIn, dOut, k] of shapes) {
    const x = hostRandom(rows * dIn, rows + dIn), w = hostRandom(dIn * dOut, dOut);
    for (const form of ["rows", "sorted", "csr"] as const) {
      const run = (dev: Device) => {
        const s = topkRows(dev.tensor(x, [rows, dIn]), k, { sorted: form === "sorted" });
        return spmm(form === "csr" ? toCsr(s) : s, dev.tensor(w, [dIn, dOut]), { kernel: "rows" });
      };
      const what = `${form} [${rows}, ${dIn}]x[${dIn}, ${dOut}] k=${k}`;
      const [y] = await onBoth(run, TOL, what);
      assertClose(await run(plain).data(), y!, TOL, `no BLAS ${what}`);
      const dy = hostRandom(rows * dOut, 7);
      const [g] = await onBoth(
        (dev) => {
          const s = topkRows(dev.tensor(x, [rows, dIn]), k, { sorted: form === "sorted" });
          return spmmGradWeight(form === "csr" ? toCsr(s) : s, dev.tensor(dy, [rows, dOut]));
        },
        TOL,
        `dW ${what}`,
      );
      assert.equal(g!.length, dIn * dOut);
    }
  }
});

Deno.test("sparse conversions on every device: toDense, denseToCsr", async () => {
  // 300 rows × 500, fixed-K, rank-ordered and CSR rows, and a NaN that must count as nonzero.
  // (The native backend runs the twins here: a native scatter and count measured no faster, as
  // both loops are already memory-bound in the twin.)
  const x = hostRandom(300 * 500, 61);
  x[7] = NaN;
  await onBoth((dev) => {
    const xt = dev.tensor(x, [300, 500]);
    const s = topkRows(xt, 123), r = topkRows(xt, 77, { sorted: true });
    return [s.toDense(), r.toDense(), toCsr(s).toDense()];
  }, { rtol: 0, atol: 0 });
  const mask = (dev: Device) => topkMask(dev.tensor(x, [300, 500]), 201);
  for (const dev of others) {
    const [a, b] = await Promise.all([denseToCsr(mask(dev)), denseToCsr(mask(cpu))]);
    assert.deepEqual(await a.rowPtr.data(), await b.rowPtr.data(), `${dev.kind} rowPtr`);
    assertClose(await a.values.data(), await b.values.data(), { rtol: 0, atol: 0 }, dev.kind);
    assertClose(await a.colIdx.data(), await b.colIdx.data(), { rtol: 0, atol: 0 }, dev.kind);
  }
});

Deno.test("native one-row GEMV over partial sums: matches the twin and is the same on 1 and 3 threads", async () => {
  for (const [dIn, dOut, S] of [[1024, 300, 0.5], [700, 5000, 0.6], [64, 2048, 0.9]] as const) {
    const x = hostRandom(dIn, 11), w = hostRandom(dIn * dOut, 12);
    const fn = (dev: Device) => {
      using xt = dev.tensor(x, [1, dIn]);
      using wt = dev.tensor(w, [dIn, dOut]);
      using s = topkRows(xt, Math.floor((1 - S) * dIn));
      return spmm(s, wt);
    };
    await exactOnThreads(fn, `spmm 1×${dIn}·${dIn}×${dOut} S=${S}`, { rtol: 1e-5, atol: 1e-5 });
    await sameOnThreads(fn, `spmm 1×${dIn}·${dIn}×${dOut} S=${S}`);
  }
});
