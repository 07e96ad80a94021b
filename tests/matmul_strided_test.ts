/**
 * `matmulStrided`: products of permuted views against the same product through explicit permute
 * copies (the CPU twin, bit for bit), every backend against the twin, each kernel variant, the
 * gradients by finite differences and across backends, and typed errors.
 */
import assert from "node:assert/strict";
import {
  DTypeError,
  matmul,
  matmulStrided,
  type MatmulStridedOptions,
  permute,
  ShapeError,
  type Tensor,
  ValueError,
} from "../mod.ts";
import { assertClose, cpu, gpu, onBoth, others } from "./helpers.ts";
import { gradCheck, gradOnBoth } from "./gradcheck.ts";
import { againstTwin, type Case, caseInputs, HEADS, inverse } from "./strided_cases.ts";

/** The same product through permute copies and the contiguous matmul. */
function viaPermute(a: Tensor, b: Tensor, o: MatmulStridedOptions): Tensor {
  const id = [...Array(a.rank).keys()];
  const c = matmul(permute(a, o.dimsA ?? id), permute(b, o.dimsB ?? id), {
    transposeA: o.transposeA,
    transposeB: o.transposeB,
  });
  return permute(c, inverse(o.dimsOut ?? id));
}

/** Stored shape of the operand whose view is `view` under `dims`. */
function stored(view: number[], dims: readonly number[]): number[] {
  const s = new Array<number>(view.length);
  dims.forEach((d, i) => (s[d] = view[i]!));
  return s;
}

/** Attention-like cases for heads view sizes (b, h, t, hd), with every transpose. */
function casesFor(b: number, h: number, t: number, hd: number): Case[] {
  const x = [b, t, h, hd]; // [B, T, H, hd] storage
  const tag = `b${b} h${h} t${t} hd${hd}`;
  return [
    // scores = q·kᵀ from [B, T, H, hd]
    { what: `q·kᵀ ${tag}`, a: x, b: x, opts: { transposeB: true, dimsA: HEADS, dimsB: HEADS } },
    // context = p·v, written back into [B, T, H, hd]
    {
      what: `p·v ${tag}`,
      a: [b, h, t, t],
      b: x,
      opts: { dimsB: HEADS, dimsOut: HEADS },
    },
    // backward shapes: Gᵀ·q (transposed A contiguous), G·k, Gcᵀ-style reads
    {
      what: `Gᵀ·q ${tag}`,
      a: [b, h, t, t],
      b: x,
      opts: { transposeA: true, dimsB: HEADS, dimsOut: HEADS },
    },
    {
      what: `qᵀ·G ${tag}`,
      a: x,
      b: [b, h, t, t],
      opts: { transposeA: true, dimsA: HEADS, dimsOut: [0, 1, 2, 3] },
    },
    {
      what: `gc·vᵀ ${tag}`,
      a: x,
      b: x,
      opts: { transposeB: true, dimsA: HEADS, dimsB: HEADS },
    },
    {
      what: `pᵀ·gc ${tag}`,
      a: [b, h, t, t],
      b: x,
      opts: { transposeA: true, dimsB: HEADS, dimsOut: HEADS },
    },
  ];
}

/** Decoding: one new position's q against a `[B, H, Tmax, hd]` cache, and p·V back into q's layout. */
function decodeCases(b: number, h: number, tMax: number, hd: number): Case[] {
  const tag = `b${b} h${h} Tmax${tMax} hd${hd}`;
  return [
    {
      what: `decode q·Kᵀ ${tag}`,
      a: [b, 1, h, hd],
      b: [b, h, tMax, hd],
      opts: { transposeB: true, dimsA: HEADS },
    },
    {
      what: `decode p·V ${tag}`,
      a: [b, h, 1, tMax],
      b: [b, h, tMax, hd],
      opts: { dimsOut: HEADS },
    },
  ];
}

const CASES: Case[] = [
  ...casesFor(2, 3, 16, 8), // aligned: the tiled kernel
  ...casesFor(2, 2, 7, 5), // odd: the general kernel
  ...casesFor(1, 1, 9, 4), // one head, odd T
  ...casesFor(3, 2, 1, 8), // one position (decode-like)
  ...casesFor(1, 2, 70, 32), // several 64-wide tiles and clamped edges
  ...decodeCases(2, 3, 12, 8), // the GEMV, 4 outputs per invocation
  ...decodeCases(1, 2, 20, 32), // the GEMV, 16 outputs per invocation
  ...decodeCases(2, 2, 7, 6), // misaligned: tiled/general
  // One row against strided B rows (the GEMV with ldb ≠ n), narrow and wide.
  { what: "row · heads view", a: [2, 3, 1, 12], b: [2, 12, 3, 8], opts: { dimsB: HEADS } },
  { what: "row · heads view, wide", a: [1, 2, 1, 8], b: [1, 8, 2, 16], opts: { dimsB: HEADS } },
  // Batch levels swapped and a transposed view of both operands.
  {
    what: "swapped batch levels",
    a: stored([3, 2, 8, 12], [1, 0, 2, 3]),
    b: stored([3, 2, 12, 16], HEADS),
    opts: { dimsA: [1, 0, 2, 3], dimsB: HEADS, dimsOut: [2, 0, 1, 3] },
  },
  {
    what: "both transposed through views",
    a: stored([2, 3, 12, 8], HEADS),
    b: stored([2, 3, 16, 12], HEADS),
    opts: { transposeA: true, transposeB: true, dimsA: HEADS, dimsB: HEADS, dimsOut: HEADS },
  },
  // Rank 3 and rank 2 (identity and a transposed view of a matrix's rows).
  { what: "rank 3 [T, B, d]", a: [5, 4, 12], b: [4, 12, 6], opts: { dimsA: [1, 0, 2] } },
  { what: "rank 2", a: [13, 11], b: [11, 9], opts: {} },
  { what: "rank 2 ᵀᵀ", a: [11, 13], b: [9, 11], opts: { transposeA: true, transposeB: true } },
  { what: "k = 0", a: [2, 3, 0], b: [2, 0, 5], opts: {} },
];

function inputs(c: Case): [Float32Array, Float32Array] {
  return caseInputs(c, [3, 7]);
}

Deno.test("matmulStrided: the CPU twin equals permute → matmul → permute, bit for bit", async () => {
  for (const c of CASES) {
    const [ha, hb] = inputs(c);
    const a = cpu.tensor(ha, c.a), b = cpu.tensor(hb, c.b);
    const got = matmulStrided(a, b, c.opts), want = viaPermute(a, b, c.opts);
    assert.deepEqual(got.shape, want.shape, c.what);
    assert.deepEqual(await got.data(), await want.data(), c.what);
    [a, b, got, want].forEach((t) => t.dispose());
  }
});

Deno.test("matmulStrided: native and WebGPU match the twin for every layout and variant", async (t) => {
  const least = { auto: CASES.length, general: CASES.length, tiled: 12, gemv: 7 };
  for (const variant of ["auto", "tiled", "general", "gemv"] as const) {
    await t.step(variant, async () => {
      const ran = await againstTwin(CASES, variant, inputs);
      assert.ok(ran >= least[variant], `${variant}: ${ran} ran`);
    });
  }
});

Deno.test("matmulStrided: on WebGPU the tiled, general and GEMV kernels give the permute path's bits", async () => {
  if (!gpu) return;
  // Same FMA order as the contiguous kernels: a view changes addresses, not arithmetic.
  const cases = [casesFor(2, 3, 16, 8), casesFor(2, 2, 7, 5), decodeCases(2, 3, 12, 8)].flat();
  for (const c of cases.concat(decodeCases(1, 2, 20, 32))) {
    const [ha, hb] = inputs(c);
    const a: Tensor = gpu.tensor(ha, c.a), b: Tensor = gpu.tensor(hb, c.b);
    const got: Tensor = matmulStrided(a, b, c.opts), want = viaPermute(a, b, c.opts);
    assert.deepEqual(await got.data(), await want.data(), c.what);
    [a, b, got, want].forEach((x) => x.dispose());
  }
});

Deno.test("matmulStrided: f16 storage through every kernel equals the f32 product of the f16 values", async () => {
  const cases = [casesFor(2, 3, 16, 8), casesFor(2, 2, 7, 5), decodeCases(2, 3, 12, 8)].flat();
  const devices = [cpu, ...others].filter((d) => d.backend.hasF16);
  assert.ok(devices.length > 0 || !gpu?.backend.hasF16, "no device ran f16");
  for (const dev of devices) {
    for (const c of cases) {
      const [ha, hb] = inputs(c).map((h) => Float16Array.from(h));
      const got = await matmulStrided(
        dev.tensor(ha!, c.a, "f16"),
        dev.tensor(hb!, c.b, "f16"),
        c.opts,
      )
        .data();
      const want = await viaPermute(
        cpu.tensor(Float32Array.from(ha!), c.a),
        cpu.tensor(Float32Array.from(hb!), c.b),
        c.opts,
      )
        .data();
      // f32 accumulation, one f16 rounding at the store.
      assertClose(got, want, { rtol: 1e-3, atol: 1e-3 }, `${c.what} (f16 on ${dev.kind})`);
    }
  }
});

Deno.test("matmulStrided: gradients by finite differences, in each operand's own layout", async () => {
  const small: Case[] = [
    ...casesFor(1, 2, 3, 2),
    {
      what: "both transposed through views",
      a: stored([2, 2, 3, 2], HEADS),
      b: stored([2, 2, 4, 3], HEADS),
      opts: { transposeA: true, transposeB: true, dimsA: HEADS, dimsB: HEADS, dimsOut: HEADS },
    },
    { what: "rank 3", a: [3, 2, 4], b: [2, 4, 3], opts: { dimsA: [1, 0, 2], dimsOut: [1, 0, 2] } },
  ];
  for (const c of small) {
    const [ha, hb] = inputs(c);
    await gradCheck(
      ([a, b]) => matmulStrided(a!, b!, c.opts),
      [{ data: ha, shape: c.a }, { data: hb, shape: c.b }],
      { what: c.what },
    );
  }
});

Deno.test("matmulStrided: backward on native and WebGPU matches the CPU backward", async () => {
  for (const c of casesFor(2, 2, 8, 8).concat(casesFor(1, 3, 5, 6))) {
    const [ha, hb] = inputs(c);
    await gradOnBoth(
      ([a, b]) => matmulStrided(a!, b!, c.opts),
      [{ data: ha, shape: c.a }, { data: hb, shape: c.b }],
      { rtol: 1e-4, atol: 1e-4 },
      c.what,
    );
  }
});

Deno.test("matmulStrided: bad input names the op and the shapes", () => {
  const x = cpu.zeros([2, 4, 3, 8]);
  const is = (re: RegExp) => (e: unknown) => e instanceof ShapeError && re.test(e.message);
  assert.throws(
    () => matmulStrided(x, x, { dimsA: HEADS, dimsB: HEADS }),
    is(/^matmulStrided: inner dims differ: 8 vs 4 .*\[2, 4, 3, 8\]/),
  );
  assert.throws(
    () => matmulStrided(x, x, { dimsA: [0, 1, 3, 2], transposeB: true }),
    is(/dimsA \[0, 1, 3, 2\] must keep the last dim last/),
  );
  assert.throws(() => matmulStrided(x, x, { dimsB: [0, 1, 1, 3] }), is(/not a permutation/));
  assert.throws(
    () => matmulStrided(x, cpu.zeros([2, 3, 8, 5]), { dimsA: [1, 0, 2, 3] }),
    is(/batch dims of the views \[4, 2, 3, 8\] and \[2, 3, 8, 5\] differ/),
  );
  assert.throws(() => matmulStrided(x, cpu.zeros([3, 8, 5])), is(/same rank/));
  assert.throws(() => matmulStrided(cpu.zeros([2]), cpu.zeros([2])), ShapeError);
  // hd = 6: a head starts off a vec4 boundary, so the tiled kernel refuses rather than misread.
  const odd = cpu.zeros([1, 4, 2, 6]);
  assert.throws(
    () =>
      matmulStrided(odd, odd, { transposeB: true, dimsA: HEADS, dimsB: HEADS, variant: "tiled" }),
    (e: unknown) =>
      e instanceof ValueError && /^matmulStrided: the tiled kernel cannot run/.test(e.message),
  );
  assert.throws(
    () => matmulStrided(cpu.zeros([2, 2], "i32"), cpu.zeros([2, 2], "i32")),
    DTypeError,
  );
});

Deno.test("matmulStrided alpha: every kernel scales the accumulated sum once, on every backend", async (t) => {
  const alpha = 1 / Math.sqrt(12), a32 = Math.fround(alpha);
  for (const variant of ["auto", "tiled", "general", "gemv"] as const) {
    await t.step(variant, async () => {
      for (const c of CASES) {
        const [ha, hb] = inputs(c);
        const opts = { ...c.opts, ...(variant === "auto" ? {} : { variant }) };
        for (const d of [cpu, ...others]) {
          let plain: Tensor, scaled: Tensor;
          try {
            plain = matmulStrided(d.tensor(ha, c.a), d.tensor(hb, c.b), opts);
            scaled = matmulStrided(d.tensor(ha, c.a), d.tensor(hb, c.b), { ...opts, alpha });
          } catch (e) {
            if (!((variant === "tiled" || variant === "gemv") && e instanceof ValueError)) throw e;
            continue;
          }
          const p = await plain.data(), s = await scaled.data();
          const what = `${c.what} (${variant}, ${d.kind})`;
          if (d.kind === "webgpu") {
            // The f32 sum the kernel stores without alpha, times alpha, rounded once.
            assert.deepEqual(s, Float32Array.from(p, (v) => v * a32), what);
          } else if (d.kind === "cpu") {
            // The twin scales its f64 sum, then rounds: one rounding from the scaled f32 sum.
            assertClose(s, Float32Array.from(p, (v) => v * a32), { rtol: 2e-7, atol: 1e-12 }, what);
          } else {
            // BLAS applies alpha where it likes (OpenBLAS scales while packing): sums that cancel
            // differ by a few ulps of their terms.
            assertClose(s, Float32Array.from(p, (v) => v * a32), { rtol: 1e-5, atol: 1e-6 }, what);
          }
        }
        if (variant === "auto") {
          await onBoth(
            (d) => matmulStrided(d.tensor(ha, c.a), d.tensor(hb, c.b), { ...c.opts, alpha }),
            { rtol: 1e-4, atol: 1e-4 },
            `${c.what} (alpha)`,
          );
        }
      }
    });
  }
});

Deno.test("matmulStrided alpha: gradients by finite differences and across backends", async () => {
  const cases: Case[] = [
    ...casesFor(1, 2, 3, 2),
    { what: "rank 3", a: [3, 2, 4], b: [2, 4, 3], opts: { dimsA: [1, 0, 2], dimsOut: [1, 0, 2] } },
  ];
  for (const c of cases) {
    const [ha, hb] = inputs(c);
    const fn = ([a, b]: Tensor[]) => matmulStrided(a!, b!, { ...c.opts, alpha: -0.37 });
    const xs = [{ data: ha, shape: c.a }, { data: hb, shape: c.b }];
    await gradCheck(fn, xs, { what: `${c.what} alpha` });
    await gradOnBoth(fn, xs, { rtol: 1e-4, atol: 1e-4 }, `${c.what} alpha`);
  }
  const bad = cpu.zeros([2, 3]);
  assert.throws(
    () => matmulStrided(bad, cpu.zeros([3, 2]), { alpha: NaN }),
    (e: unknown) =>
      e instanceof ValueError && /^matmulStrided: alpha must be finite.*\[2, 3\]/.test(e.message),
  );
});
