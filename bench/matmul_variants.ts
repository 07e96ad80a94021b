/**
 * Every matmul kernel valid for a shape, timed on the WebGPU adapter in one run (GFLOP/s, and
 * GB/s of W for GEMVs), and the variant the device's own autotune then picks; the same for the
 * sparse-activation GEMV of decoding (top-K rows × W, the kept weight rows' GB/s). Timing is the
 * autotuner's clock (timestamp queries when the adapter has them, else wall time over enough
 * launches to beat Deno's 10 ms polling), with a larger budget than autotune's default.
 * Writes results/bench/matmul_variants.json.
 *
 * Run: `deno run -A bench/matmul_variants.ts [--big] [--f16] [--budget MS] [--cache DIR]
 * [--only TEXT]` (`--only` keeps the cases whose name contains TEXT)
 * (`--big` adds 2048³ and 4096³ for a real GPU; the autotune cache goes to a temporary folder
 * unless `--cache` names one, so a bench never changes what later runs on this machine pick).
 */
import { parseArgs } from "node:util";
import { openDevice } from "../mod.ts";
import { Autotuner } from "../src/backend/autotune.ts";
import type { WebGpuBackend } from "../src/backend/webgpu.ts";
import { matmulDispatch, type MatmulProblem } from "../kernels/matmul.ts";
import { spmmDispatch } from "../kernels/spmm.ts";
import type { Tunable } from "../src/backend/backend.ts";
import { codeVersion, writeJsonAtomic } from "./timing.ts";

const { values: args } = parseArgs({
  options: {
    big: { type: "boolean", default: false },
    f16: { type: "boolean", default: false },
    budget: { type: "string", default: "2000" },
    cache: { type: "string" },
    only: { type: "string" },
  },
});
const cacheDir = args.cache ?? await Deno.makeTempDir({ prefix: "qsparse-autotune-" });
Deno.env.set("QSPARSE_CACHE_DIR", cacheDir);
const dev = await openDevice({ prefer: "webgpu", autotune: true });
const be = dev.backend as WebGpuBackend;
const timer = be.tuningTimer();
console.log(
  `device: ${dev.kind} — ${dev.description}; clock: ${timer.precise ? "timestamps" : "wall"}`,
);

type Case = { name: string; m: number; n: number; k: number; tb?: boolean; ta?: boolean };
const cases: Case[] = [
  { name: "256³", m: 256, n: 256, k: 256 },
  { name: "512³", m: 512, n: 512, k: 512 },
  { name: "1024³", m: 1024, n: 1024, k: 1024 },
  // A training step's shapes: X·Wᵀ (tokens × d_ff), and the weight gradient Xᵀ·dY.
  { name: "4096×1024·1024×256 (X·W)", m: 4096, n: 256, k: 1024 },
  { name: "256×4096ᵀ·4096×1024 (Xᵀ·dY)", m: 256, n: 1024, k: 4096, ta: true },
  { name: "GEMV 1×4096·4096² W[K,N]", m: 1, n: 4096, k: 4096 },
  { name: "GEMV 1×4096·4096² W[N,K]", m: 1, n: 4096, k: 4096, tb: true },
];
if (!args.big) {
  // Model s at 32 × 128 tokens (d 128, d_ff 352): forward, input gradient, weight gradient. Not in
  // the GPU run (`--big`), whose time cap must leave room for 2048³ and 4096³.
  cases.push(
    { name: "s step 4096×128·128×352 (X·W)", m: 4096, n: 352, k: 128 },
    { name: "s step 4096×352·(128×352)ᵀ (dY·Wᵀ)", m: 4096, n: 128, k: 352, tb: true },
    { name: "s step 128×4096ᵀ·4096×352 (Xᵀ·dY)", m: 128, n: 352, k: 4096, ta: true },
  );
}
if (args.big) {
  cases.push({ name: "2048³", m: 2048, n: 2048, k: 2048 });
  cases.push({ name: "4096³", m: 4096, n: 4096, k: 4096 });
}
const dtypes: ("f32" | "f16")[] = args.f16 && be.hasF16 ? ["f32", "f16"] : ["f32"];

const rows: Record<string, unknown>[] = [];
const dummy = { id: -1, bytes: 0 };

/** Times every variant of `tune` and asks the device's autotune (default budget) for its pick. */
async function measure(
  label: string,
  dtype: string,
  tune: Tunable,
  flops: number,
  bytes?: number,
): Promise<void> {
  if (args.only && !label.includes(args.only)) return;
  // A fresh tuner per case: classes bucket shapes, and the bench wants every case measured.
  const bench = new Autotuner(be, {
    adapterKey: "bench",
    cacheDir: null,
    timer,
    budgetMs: Number(args.budget),
  });
  const [measured] = await bench.tune([tune]);
  // The device's own tuning of this class, kept whole (its times and rejections, at its default
  // budget), so a pick that disagrees with the bench's table can be traced (on the H200 on
  // 2026-11-30 autotune kept `tiled` for f16 4096³ although this table put it 2.55× behind).
  const own = (await dev.autotune([tune])).find((r) => r.key === tune.key) ?? null;
  const picked = { choice: own?.choice ?? be.autotuner!.choices.get(tune.key)! };
  const variants = Object.entries(measured!.ns).map(([variant, ns]) => ({
    variant,
    us: ns / 1e3,
    gflops: flops / ns,
    ...(bytes !== undefined ? { gbps: bytes / ns } : {}),
  }));
  const base = measured!.ns[tune.variants[0]!]!;
  const [fastest, best] = Object.entries(measured!.ns).sort((x, y) => x[1] - y[1])[0]!;
  console.log(
    `\n${dtype} ${label}: autotune picks ${picked!.choice}` +
      ` (fastest here ${fastest}, ${(base / best).toFixed(2)}× the default ${tune.variants[0]})`,
  );
  for (const v of variants) {
    console.log(
      `  ${v.variant.padEnd(16)} ${v.us.toFixed(1).padStart(10)} µs ` +
        `${v.gflops.toFixed(1).padStart(8)} GFLOP/s` +
        (v.gbps !== undefined ? ` ${v.gbps.toFixed(1).padStart(7)} GB/s` : ""),
    );
  }
  if (measured!.rejected.length) console.log(`  rejected (wrong output): ${measured!.rejected}`);
  rows.push({
    case: label,
    dtype,
    default: tune.variants[0],
    autotunePick: picked!.choice,
    // null: the class was chosen earlier in this process (the pick is that choice).
    autotuneOwn: own
      ? {
        us: Object.fromEntries(Object.entries(own.ns).map(([v, ns]) => [v, ns / 1e3])),
        rejected: own.rejected,
      }
      : null,
    fastest,
    speedupOverDefault: base / best,
    rejected: measured!.rejected,
    variants,
  });
}

for (const dtype of dtypes) {
  const size = dtype === "f16" ? 2 : 4;
  for (const c of cases) {
    const p: MatmulProblem = {
      m: c.m,
      n: c.n,
      k: c.k,
      batch: 1,
      strideA: 0,
      strideB: 0,
      transposeA: c.ta ?? false,
      transposeB: c.tb ?? false,
      dtype,
    };
    const tune = matmulDispatch(p, dummy, dummy, dummy).tune;
    if (!tune) continue;
    await measure(
      c.name,
      dtype,
      tune,
      2 * c.m * c.n * c.k,
      c.m === 1 ? c.k * c.n * size : undefined,
    );
  }
  // Decoding's sparse GEMV: K = (1 − S)·4096 kept entries of one token, W [4096, 4096].
  for (const sparsity of [0.5, 0.6, 0.9]) {
    const k = Math.floor((1 - sparsity) * 4096);
    const p = { rows: 1, dIn: 4096, dOut: 4096, k, dtype };
    const tune = spmmDispatch(p, "fixed", [dummy, dummy, dummy, dummy]).tune;
    if (!tune) continue;
    await measure(
      `sparse GEMV 1×4096·4096², S = ${sparsity}`,
      dtype,
      tune,
      2 * k * 4096,
      k * 4096 * size,
    );
  }
}

await Deno.mkdir("results/bench", { recursive: true });
await writeJsonAtomic("results/bench/matmul_variants.json", {
  adapter: dev.description,
  kind: dev.kind,
  clock: timer.precise ? "timestamp-query" : "wall",
  date: new Date().toISOString(),
  code: await codeVersion(),
  loadavg: Deno.loadavg(),
  rows,
});
if (!args.cache) await Deno.remove(cacheDir, { recursive: true });
dev.destroy();
