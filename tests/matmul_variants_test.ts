/**
 * The matmul kernels for discrete GPUs (kernels/matmul_smem.ts, kernels/gemv_wg.ts), each forced
 * by name on the WebGPU adapter and checked against the CPU twin: odd and aligned shapes, every
 * transpose, batches with their own and broadcast (stride 0) operands, f16 storage where the
 * adapter has it. Nothing here depends on speed.
 */
import assert from "node:assert/strict";
import { matmul, type Tensor } from "../mod.ts";
import { type MatmulVariant, matmulVariant } from "../kernels/matmul.ts";
import { GEMV_SHAPES, matmulCandidates, SMEM_TILES } from "../kernels/matmul_tuning.ts";
import { smemFits } from "../kernels/matmul_smem.ts";
import { gemvWgFits } from "../kernels/gemv_wg.ts";
import { assertClose, cpu, gpu, hostRandom } from "./helpers.ts";

type Problem = { m: number; k: number; n: number; ta: boolean; tb: boolean; dtype: "f32" | "f16" };

function fits(v: MatmulVariant, p: Problem): boolean {
  const q = {
    m: p.m,
    n: p.n,
    k: p.k,
    batch: 1,
    strideA: p.m * p.k,
    strideB: p.k * p.n,
    transposeA: p.ta,
    transposeB: p.tb,
    dtype: p.dtype,
  };
  if (v in SMEM_TILES) return smemFits(SMEM_TILES[v as keyof typeof SMEM_TILES], q);
  return gemvWgFits(GEMV_SHAPES[v as keyof typeof GEMV_SHAPES], q);
}

function operands(
  dev: NonNullable<typeof gpu>,
  p: Problem,
  batchA: number[],
  batchB: number[],
): [Tensor, Tensor] {
  const sa = [...batchA, ...(p.ta ? [p.k, p.m] : [p.m, p.k])];
  const sb = [...batchB, ...(p.tb ? [p.n, p.k] : [p.k, p.n])];
  const ha = hostRandom(sa.reduce((x, y) => x * y, 1), p.m * 31 + p.k);
  const hb = hostRandom(sb.reduce((x, y) => x * y, 1), p.n * 17 + p.k);
  if (p.dtype === "f16") {
    return [
      dev.tensor(new Float16Array(ha), sa, "f16"),
      dev.tensor(new Float16Array(hb), sb, "f16"),
    ];
  }
  return [dev.tensor(ha, sa), dev.tensor(hb, sb)];
}

async function check(
  variant: MatmulVariant,
  p: Problem,
  batchA: number[] = [],
  batchB: number[] = [],
): Promise<void> {
  const [a, b] = operands(gpu!, p, batchA, batchB);
  const [ca, cb] = operands(cpu, p, batchA, batchB);
  const opts = { transposeA: p.ta, transposeB: p.tb };
  const got = matmul(a, b, { ...opts, variant });
  const want = matmul(ca, cb, opts);
  // f16: inputs are exact in both; the outputs are f32 sums rounded once to f16.
  const tol = p.dtype === "f16" ? { rtol: 2e-3, atol: 2e-3 } : { rtol: 1e-4, atol: 1e-4 };
  assertClose(
    await got.data(),
    await want.data(),
    tol,
    `${variant} ${p.dtype} [${batchA}|${p.m}x${p.k}]·[${batchB}|${p.k}x${p.n}] ta=${p.ta} tb=${p.tb}`,
  );
  for (const t of [a, b, got, ca, cb, want]) t.dispose();
}

const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [3, 5, 7],
  [8, 16, 8],
  [17, 33, 65],
  [64, 64, 64],
  [70, 132, 72],
  [128, 12, 256],
  [129, 40, 131],
];

Deno.test("shared-memory matmul: every tiling and transpose matches the CPU twin", async (t) => {
  if (!gpu) return;
  for (const variant of Object.keys(SMEM_TILES) as MatmulVariant[]) {
    await t.step(variant, async () => {
      let ran = 0;
      for (const ta of [false, true]) {
        for (const tb of [false, true]) {
          for (const [m, k, n] of SHAPES) {
            const p: Problem = { m, k, n, ta, tb, dtype: "f32" };
            if (!fits(variant, p)) continue;
            await check(variant, p);
            ran++;
          }
        }
      }
      // Every tiling must have met aligned shapes in all four layouts.
      assert.ok(ran >= 12, `${variant} ran ${ran} problems`);
    });
  }
});

Deno.test("workgroup GEMV: every shape matches the CPU twin, tails included", async (t) => {
  if (!gpu) return;
  for (const variant of Object.keys(GEMV_SHAPES) as MatmulVariant[]) {
    await t.step(variant, async () => {
      let ran = 0;
      for (const ta of [false, true]) {
        for (const tb of [false, true]) {
          for (const [k, n] of [[1, 4], [4, 4], [7, 12], [64, 200], [4096, 36], [300, 1028]]) {
            const p: Problem = { m: 1, k: k!, n: n!, ta, tb, dtype: "f32" };
            if (!fits(variant, p)) continue;
            await check(variant, p);
            ran++;
          }
        }
      }
      assert.ok(ran >= 4, `${variant} ran ${ran} problems`);
    });
  }
});

Deno.test("tuned variants: batches with their own and with broadcast operands", async () => {
  if (!gpu) return;
  for (
    const variant of ["smem64x64", "smem32x32s", "smem128x64", "smem64x64p"] as MatmulVariant[]
  ) {
    for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
      const p: Problem = { m: 36, k: 20, n: 68, ta: ta!, tb: tb!, dtype: "f32" };
      await check(variant, p, [3], [3]);
      await check(variant, p, [3], []);
      await check(variant, p, [], [2, 2]);
    }
  }
  for (const variant of ["gemvSplitK16x16", "gemvDot32x8"] as MatmulVariant[]) {
    const tb = variant.startsWith("gemvDot");
    const p: Problem = { m: 1, k: 96, n: 72, ta: false, tb, dtype: "f32" };
    await check(variant, p, [4], [4]);
    await check(variant, p, [4], []);
  }
});

Deno.test("tuned variants: f16 storage with f32 accumulation", async () => {
  if (!gpu?.backend.hasF16) return;
  for (
    const variant of ["smem64x64", "smem128x128", "smem64x64s", "smem128x128p"] as MatmulVariant[]
  ) {
    for (const [ta, tb] of [[false, false], [true, true]]) {
      await check(variant, { m: 72, k: 260, n: 40, ta: ta!, tb: tb!, dtype: "f16" });
    }
  }
  await check("gemvSplitK8x32", { m: 1, k: 300, n: 64, ta: false, tb: false, dtype: "f16" });
  await check("gemvDot64x4", { m: 1, k: 300, n: 64, ta: false, tb: true, dtype: "f16" });
  // 256 × f16(0.1) in one output: an f16 accumulator would stall far from 25.59.
  const a = gpu.tensor(new Float16Array(256).fill(0.1), [1, 256]);
  const b = gpu.tensor(new Float16Array(256 * 8).fill(1), [256, 8]);
  for (const variant of ["gemvSplitK16x16", "smem64x64"] as MatmulVariant[]) {
    const c = await matmul(a, b, { variant }).data();
    assert.ok(Math.abs(c[0]! - 256 * new Float16Array([0.1])[0]!) < 0.05, `${variant}: ${c[0]}`);
  }
});

Deno.test("candidates: GEMVs for one row, tilings otherwise, each valid for the problem", () => {
  const base = {
    batch: 1,
    strideA: 0,
    strideB: 0,
    transposeA: false,
    transposeB: false,
    dtype: "f32" as const,
  };
  assert.deepEqual(matmulCandidates({ ...base, m: 1, n: 4096, k: 4096 }), [
    "gemvSplitK16x16",
    "gemvSplitK8x32",
    "gemvSplitK32x8",
    "gemvSplitK4x64",
    "gemvSplitK2x128",
  ]);
  // n = 7: only scalar-load tilings are valid for B [k, n].
  assert.deepEqual(matmulCandidates({ ...base, m: 9, n: 7, k: 8 }), ["smem64x64s", "smem32x32s"]);
  assert.equal(matmulCandidates({ ...base, m: 1, n: 7, k: 8 }).length, 0);
  assert.equal(matmulVariant({ ...base, m: 64, n: 64, k: 64 }), "tiled");
});
