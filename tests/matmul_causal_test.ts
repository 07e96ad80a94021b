/**
 * `matmulStrided` with a causal mask: each mask slot (op(a), op(b), c), orientation and transpose
 * against the product of explicitly masked matrices (the CPU twin bit for bit, native and WebGPU
 * within f32 tolerance, each WebGPU kernel variant), attention's products giving the unmasked
 * product's bits where the masked triangle holds zeros, gradients, and typed errors.
 */
import assert from "node:assert/strict";
import {
  type Device,
  matmul,
  matmulStrided,
  type MatmulStridedOptions,
  mul,
  permute,
  type Tensor,
  ValueError,
} from "../mod.ts";
import { assertClose, cpu, gpu, hostRandom, native, others } from "./helpers.ts";
import { gradCheck, gradOnBoth } from "./gradcheck.ts";
import { againstTwin, type Case, caseInputs, HEADS, inverse } from "./strided_cases.ts";

type Mask = NonNullable<MatmulStridedOptions["causal"]>;

/** 1 where a causal mask on an `[X, Y]` matrix keeps the entry, else 0. */
function keepMatrix(x: number, y: number, transposed: boolean): Float32Array {
  const off = y - x;
  return Float32Array.from(
    { length: x * y },
    (_, i) => {
      const d = (i % y) - Math.floor(i / y);
      return (transposed ? d >= off : d <= off) ? 1 : 0;
    },
  );
}

/** The product of the masked logical matrices through permutes, a mask multiply and matmul. */
function reference(d: Device, a: Tensor, b: Tensor, o: MatmulStridedOptions): Tensor {
  const r = a.rank, id = [...Array(r).keys()];
  const swap = [...id.slice(0, -2), r - 1, r - 2];
  let la = permute(a, o.dimsA ?? id), lb = permute(b, o.dimsB ?? id);
  if (o.transposeA) la = permute(la, swap);
  if (o.transposeB) lb = permute(lb, swap);
  const masked = (t: Tensor) => {
    const [x, y] = t.shape.slice(-2) as [number, number];
    return mul(t, d.tensor(keepMatrix(x, y, o.causal!.transposed ?? false), [x, y]));
  };
  if (o.causal?.on === "a") la = masked(la);
  if (o.causal?.on === "b") lb = masked(lb);
  let c = matmul(la, lb);
  if (o.causal?.on === "c") c = masked(c);
  return permute(c, inverse(o.dimsOut ?? id));
}

/** Plain rank-3 problems `[2, m, k]·[2, k, n]` with every transpose and mask. */
function plainCases(m: number, k: number, n: number): Case[] {
  const out: Case[] = [];
  for (const ta of [false, true]) {
    for (const tb of [false, true]) {
      for (const on of ["a", "b", "c"] as const) {
        for (const transposed of [false, true]) {
          out.push({
            what: `${m}×${k}·${k}×${n} ta=${ta} tb=${tb} mask ${on}${transposed ? "ᵀ" : ""}`,
            a: ta ? [2, k, m] : [2, m, k],
            b: tb ? [2, n, k] : [2, k, n],
            opts: { transposeA: ta, transposeB: tb, causal: { on, transposed } },
          });
        }
      }
    }
  }
  return out;
}

/** Attention's products on `[B, T, H, hd]` storage, queries `tq` against keys `tk`. */
function attentionCases(b: number, h: number, tq: number, tk: number, hd: number): Case[] {
  const tag = `b${b} h${h} tq${tq} tk${tk} hd${hd}`;
  const q = [b, tq, h, hd], kv = [b, tk, h, hd], p = [b, h, tq, tk];
  const mask = (on: Mask["on"], transposed = false): Mask => ({ on, transposed });
  return [
    {
      what: `q·kᵀ ${tag}`,
      a: q,
      b: kv,
      opts: { transposeB: true, dimsA: HEADS, dimsB: HEADS, causal: mask("c") },
    },
    { what: `p·v ${tag}`, a: p, b: kv, opts: { dimsB: HEADS, dimsOut: HEADS, causal: mask("a") } },
    {
      what: `pᵀ·g ${tag}`,
      a: p,
      b: q,
      opts: { transposeA: true, dimsB: HEADS, dimsOut: HEADS, causal: mask("a", true) },
    },
    {
      what: `g·vᵀ ${tag}`,
      a: q,
      b: kv,
      opts: { transposeB: true, dimsA: HEADS, dimsB: HEADS, causal: mask("c") },
    },
  ];
}

const CASES: Case[] = [
  ...plainCases(9, 6, 13), // the general kernel (odd shapes)
  ...plainCases(16, 24, 16), // the tiled kernel, one 8×8 block per row of lanes
  ...plainCases(72, 72, 72).filter((_, i) => i % 3 === 0), // several workgroups and blocks
  ...attentionCases(2, 3, 16, 16, 8),
  ...attentionCases(1, 2, 5, 9, 4), // queries at the end of a longer key cache
  ...attentionCases(1, 2, 70, 70, 32),
  // Every causal offset modulo the 8×8 register block and the vec4 step, on the tiled kernel.
  ...[9, 10, 11, 12, 13, 14, 15].flatMap((tq) => attentionCases(1, 1, tq, 16, 4)),
  ...plainCases(14, 20, 24), // offsets 6 (a), 4 (b), 10 (c)
  ...plainCases(22, 16, 18), // offsets −6 (a), 2 (b), −4 (c)
  ...plainCases(15, 16, 16).filter((c) => c.opts.causal!.on !== "a"), // offset 1 (c)
  ...plainCases(9, 8, 16).filter((c) => c.opts.causal!.on === "c"), // offset 7 (c)
];

function inputs(c: Case): [Float32Array, Float32Array] {
  return caseInputs(c, [5, 11]);
}

Deno.test("matmulStrided causal: the CPU twin equals the product of the masked matrices, bit for bit", async () => {
  for (const c of CASES) {
    const [ha, hb] = inputs(c);
    const a = cpu.tensor(ha, c.a), b = cpu.tensor(hb, c.b);
    const got = matmulStrided(a, b, c.opts), want = reference(cpu, a, b, c.opts);
    assert.deepEqual(got.shape, want.shape, c.what);
    // The reference's mask multiply turns masked negatives into −0; the kernels write +0.
    const unsigned = async (t: Tensor) => (await t.data()).map((v) => v === 0 ? 0 : v);
    assert.deepEqual(await unsigned(got), await unsigned(want), c.what);
  }
});

Deno.test("matmulStrided causal: native and every WebGPU kernel match the twin", async (t) => {
  for (const variant of ["auto", "tiled", "general"] as const) {
    await t.step(variant, async () => {
      const ran = await againstTwin(CASES, variant, inputs);
      assert.ok(ran >= (variant === "tiled" ? 75 : CASES.length), `${variant}: ${ran} ran`);
    });
  }
});

Deno.test("matmulStrided causal: attention's products keep the unmasked product's bits", async () => {
  // Scores above the diagonal are never read (the causal softmax masks them) and probabilities
  // there are exact zeros, so skipping that work changes no bit of what attention uses.
  for (const dev of [cpu, ...others]) {
    const shapes = [[2, 3, 16, 16, 8], [1, 2, 70, 70, 32], [1, 2, 5, 9, 4], [2, 2, 128, 128, 32]];
    // A training shape, and queries at the end of a longer cache, split into row blocks by native.
    shapes.push([1, 2, 96, 160, 16]);
    for (const [b, h, tq, tk, hd] of shapes) {
      const q = dev.tensor(hostRandom(b! * tq! * h! * hd!, 3), [b!, tq!, h!, hd!]);
      const kv = dev.tensor(hostRandom(b! * tk! * h! * hd!, 4), [b!, tk!, h!, hd!]);
      const what = `${dev.kind} b${b} h${h} tq${tq} tk${tk} hd${hd}`;
      const scoresOpts = { transposeB: true, dimsA: HEADS, dimsB: HEADS, alpha: 0.35 };
      const full = await matmulStrided(q, kv, scoresOpts).data();
      const masked = await matmulStrided(q, kv, { ...scoresOpts, causal: { on: "c" } }).data();
      const keep = keepMatrix(tq!, tk!, false);
      // Native: BLAS promises no bit equality between a product and its row blocks (OpenBLAS
      // 0.3.21 gave it on an Intel machine and not on an AMD EPYC, same library and core type,
      // 2026-12-01), so there the kept entries agree to rounding; the masked ones are exact 0.
      for (let i = 0; i < full.length; i++) {
        const kept = keep[i % (tq! * tk!)] === 1;
        if (dev.kind === "native" && kept) {
          assert.ok(Math.abs(masked[i]! - full[i]!) <= 1e-6 * (1 + Math.abs(full[i]!)), what);
        } else assert.equal(masked[i], kept ? full[i] : 0, `${what}: scores entry ${i}`);
      }
      // Probabilities with exact zeros above the diagonal.
      const pHost = hostRandom(b! * h! * tq! * tk!, 5).map((v, i) =>
        keep[i % (tq! * tk!)] ? Math.abs(v) : 0
      );
      const p = dev.tensor(pHost, [b!, h!, tq!, tk!]);
      // Native drops the zero terms by shortening each row block's BLAS call, which keeps the
      // bits only where BLAS happens to sum alike (see above): there the sums agree to rounding.
      const same = (x: Float32Array, y: Float32Array, m: string) =>
        dev.kind === "native"
          ? assertClose(x, y, { rtol: 1e-5, atol: 1e-5 }, m)
          : assert.deepEqual(x, y, m);
      const ctx = { dimsB: HEADS, dimsOut: HEADS };
      same(
        await matmulStrided(p, kv, { ...ctx, causal: { on: "a" } }).data(),
        await matmulStrided(p, kv, ctx).data(),
        `${what}: p·v`,
      );
      const dv = { transposeA: true, dimsB: HEADS, dimsOut: HEADS };
      same(
        await matmulStrided(p, q, { ...dv, causal: { on: "a", transposed: true } }).data(),
        await matmulStrided(p, q, dv).data(),
        `${what}: pᵀ·g`,
      );
    }
  }
});

Deno.test("matmulStrided causal: gradients by finite differences and across backends", async () => {
  const cases = [
    ...plainCases(3, 4, 5).filter((_, i) => i % 2 === 0),
    ...plainCases(4, 3, 2).filter((_, i) => i % 2 === 1),
    ...attentionCases(1, 2, 3, 4, 2),
  ];
  for (const c of cases) {
    const [ha, hb] = inputs(c);
    const fn = ([a, b]: Tensor[]) => matmulStrided(a!, b!, { ...c.opts, alpha: 0.7 });
    const xs = [{ data: ha, shape: c.a }, { data: hb, shape: c.b }];
    await gradCheck(fn, xs, { what: c.what });
    await gradOnBoth(fn, xs, { rtol: 1e-4, atol: 1e-4 }, c.what);
  }
});

Deno.test("matmulStrided causal: native runs BLAS only where the masked triangle is zero", async () => {
  // Nonzeros where op(a) is masked: native must not let BLAS multiply them.
  const a = hostRandom(2 * 8 * 8, 9), b = hostRandom(2 * 8 * 4, 10);
  const opts: MatmulStridedOptions = { causal: { on: "a" } };
  const want = await matmulStrided(cpu.tensor(a, [2, 8, 8]), cpu.tensor(b, [2, 8, 4]), opts).data();
  const got = await matmulStrided(native.tensor(a, [2, 8, 8]), native.tensor(b, [2, 8, 4]), opts)
    .data();
  assertClose(got, want, { rtol: 1e-5, atol: 1e-6 }, "native, nonzero masked triangle");
  // Split into row blocks (m ≥ 64): a nonzero in a block's diagonal triangle (read by BLAS) and
  // nonzeros only beyond every block's k range (never read), each against the twin.
  const m = 96, n = 8;
  const far = hostRandom(m * m, 12).map((v, i) => {
    const r = Math.floor(i / m), c = i % m;
    return c <= r || c >= r - (r % 32) + 32 ? v : 0;
  });
  // One masked nonzero at (0, 31): inside block 0's k range [0, 32), so BLAS would read it.
  const edge = far.map((v, i) => (i % m) > Math.floor(i / m) ? 0 : v);
  edge[31] = 0.5;
  for (const [what, av] of [["block 0's k range", edge], ["beyond the blocks", far]] as const) {
    const bv = hostRandom(m * n, 14);
    const w = await matmulStrided(
      cpu.tensor(av, [m, m]),
      cpu.tensor(bv, [m, n]),
      opts,
    )
      .data();
    const g = await matmulStrided(
      native.tensor(av, [m, m]),
      native.tensor(bv, [m, n]),
      opts,
    ).data();
    assertClose(g, w, { rtol: 1e-5, atol: 1e-6 }, `native, split, nonzeros in ${what}`);
  }
});

Deno.test("matmulStrided causal: bad masks are typed errors naming the op", () => {
  const x = cpu.zeros([2, 1, 8]), w = cpu.zeros([2, 8, 8]);
  assert.throws(
    () => matmulStrided(x, w, { causal: { on: "a" }, variant: "gemv" }),
    (e: unknown) =>
      e instanceof ValueError &&
      /^matmulStrided: the gemv kernel takes no causal mask/.test(e.message),
  );
  assert.throws(
    () => matmulStrided(x, w, { causal: { on: "x" as "a" } }),
    (e: unknown) => e instanceof ValueError && /causal.on must be "a", "b" or "c"/.test(e.message),
  );
  if (gpu) {
    // One row with a mask runs the tiled or general kernel, never the GEMV.
    const y = matmulStrided(gpu.zeros([2, 1, 8]), gpu.zeros([2, 8, 8]), { causal: { on: "a" } });
    assert.deepEqual(y.shape, [2, 1, 8]);
  }
});

Deno.test("matmulStrided causal: f16 storage through the tiled and general kernels", async () => {
  const devices = [cpu, ...others].filter((d) => d.backend.hasF16);
  for (const dev of devices) {
    for (const c of [...attentionCases(2, 3, 16, 16, 8), ...attentionCases(1, 2, 5, 9, 4)]) {
      const [ha, hb] = inputs(c).map((h) => Float16Array.from(h));
      const got = await matmulStrided(
        dev.tensor(ha!, c.a, "f16"),
        dev.tensor(hb!, c.b, "f16"),
        c.opts,
      ).data();
      const want = await matmulStrided(
        cpu.tensor(Float32Array.from(ha!), c.a),
        cpu.tensor(Float32Array.from(hb!), c.b),
        c.opts,
      ).data();
      // f32 accumulation, one f16 rounding at the store.
      assertClose(got, want, { rtol: 1e-3, atol: 1e-3 }, `${c.what} (f16 on ${dev.kind})`);
    }
  }
});
