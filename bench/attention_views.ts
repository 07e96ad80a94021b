/**
 * Attention through strided views against the permute copies it replaced, in one run: training
 * steps (forward, backward, AdamW) of the same model on the same batch, alternating the two
 * attention paths round by round, with dispatches per step and, on a second (profiled) device,
 * the kernel time per op, also in alternating rounds. "before" is the old `Attention.forward` (permute q, k, v to `[B, H, T, hd]`,
 * contiguous matmuls, permute the context back), swapped in on the prototype for its rounds.
 * Writes results/bench/attention_views.json (unless `--no-write`).
 *
 * On WebGPU it then times each of attention's six products alone (forward q·kᵀ and p·v, the four
 * of the backward), the contiguous kernel on permuted copies against the strided kernel on the
 * views, kernel time only, for `--products B,H,T,hd` (default tiny's: 32,2,128,32).
 *
 * Run: `deno run -A bench/attention_views.ts [--device webgpu|native] [--rounds 3] [--steps 3]
 * [--products 32,2,128,32] [tiny:0 s:0 ...]`
 */
import { parseArgs } from "node:util";
import {
  matmul,
  matmulStrided,
  type MatmulStridedOptions,
  mulScalar,
  openDevice,
  permute,
  rope,
  softmax,
  type Tensor,
} from "../mod.ts";
import { Attention } from "../src/nn/mod.ts";
import { abSteps, modelCases } from "./ab_steps.ts";
import { codeVersion, median, writeJsonAtomic } from "./timing.ts";

const { values: flags, positionals } = parseArgs({
  args: Deno.args,
  options: {
    device: { type: "string", default: "webgpu" },
    rounds: { type: "string", default: "3" },
    steps: { type: "string", default: "3" },
    "no-write": { type: "boolean", default: false },
    products: { type: "string", default: "32,2,128,32" },
  },
  allowPositionals: true,
});
const prefer = flags.device as "webgpu" | "native";
const rounds = Number(flags.rounds), steps = Number(flags.steps);
const cases = modelCases(positionals, ["tiny:0", "s:0"]);
const batch = 32, seq = 128;

/** The attention forward before strided views (as in tests/attention_test.ts). */
function permuteForward(attn: Attention, x: Tensor<"f32">): Tensor<"f32"> {
  const [b, t, d] = x.shape as [number, number, number];
  const h = attn.config.nHeads, hd = d / h, base = attn.config.ropeTheta;
  const xs = attn.qkvSite.apply(x);
  const heads = (y: Tensor<"f32">) => y.reshape([b, t, h, hd]);
  const q = permute(rope(heads(attn.q.forward(xs)), { base }), [0, 2, 1, 3]);
  const k = permute(rope(heads(attn.k.forward(xs)), { base }), [0, 2, 1, 3]);
  const v = permute(heads(attn.v.forward(xs)), [0, 2, 1, 3]);
  const scores = matmul(mulScalar(q, 1 / Math.sqrt(hd)), k, { transposeB: true });
  const p = softmax(scores, { causal: true });
  const ctx = permute(matmul(p, v), [0, 2, 1, 3]).reshape([b, t, d]);
  return attn.o.forward(attn.oSite.apply(ctx));
}

const viewsForward = Attention.prototype.forward;
type Path = "before" | "after";
function usePath(path: Path): void {
  Attention.prototype.forward = path === "after" ? viewsForward : function (this: Attention, x) {
    return permuteForward(this, x);
  };
}

const rows: Record<string, unknown>[] = [];
let adapter = "";
for (const c of cases) {
  const r = await abSteps<Path>({
    prefer,
    ...c,
    batch,
    seq,
    paths: ["before", "after"],
    use: usePath,
    rounds,
    steps,
    profile: true, // kernel ms per op (WebGPU only)
  });
  adapter = r.adapter;
  const { times, dispatches, kernels } = r;
  usePath("after");
  const before = median(times.before), after = median(times.after);
  const sum = (k?: Record<string, number>) => Object.values(k ?? {}).reduce((a, b) => a + b, 0);
  rows.push({
    model: c.name,
    sparsity: c.sparsity,
    stepMsBefore: before,
    stepMsAfter: after,
    speedup: before / after,
    tokensPerSecondBefore: (batch * seq) / (before / 1000),
    tokensPerSecondAfter: (batch * seq) / (after / 1000),
    dispatchesBefore: dispatches.before,
    dispatchesAfter: dispatches.after,
    stepTimesMs: times,
    kernelMsBefore: sum(kernels.before),
    kernelMsAfter: sum(kernels.after),
    kernelMsPerOp: kernels,
  });
}

/** Kernel ms of each attention product: contiguous (operands permuted beforehand) vs strided. */
async function timeProducts(): Promise<Record<string, unknown>[]> {
  const dev = await openDevice({ prefer: "webgpu", profile: true });
  const [b, h, t, hd] = flags.products!.split(",").map(Number) as [number, number, number, number];
  const H = [0, 2, 1, 3];
  const x = () => dev.randn([b, t, h, hd], { seed: 1 }), sq = () => dev.randn([b, h, t, t]);
  const cases: [string, () => Tensor, () => Tensor, MatmulStridedOptions][] = [
    ["q·kᵀ", x, x, { transposeB: true, dimsA: H, dimsB: H }],
    ["p·v", sq, x, { dimsB: H, dimsOut: H }],
    ["g·k (dq)", sq, x, { dimsB: H, dimsOut: H }],
    ["gᵀ·q (dk)", sq, x, { transposeA: true, dimsB: H, dimsOut: H }],
    ["g·vᵀ (dp)", x, x, { transposeB: true, dimsA: H, dimsB: H }],
    ["pᵀ·g (dv)", sq, x, { transposeA: true, dimsB: H, dimsOut: H }],
  ];
  const out: Record<string, unknown>[] = [];
  for (const [name, fa, fb, o] of cases) {
    const a = fa(), bb = fb();
    const ap = o.dimsA ? permute(a, o.dimsA) : a, bp = o.dimsB ? permute(bb, o.dimsB) : bb;
    const ms = { contiguous: [] as number[], strided: [] as number[] };
    for (let r = 0; r <= 2 * rounds; r++) {
      for (
        const k of r % 2 ? ["strided", "contiguous"] as const : ["contiguous", "strided"] as const
      ) {
        await dev.flush();
        dev.backend.resetProfile();
        const y = k === "contiguous"
          ? matmul(ap, bp, { transposeA: o.transposeA, transposeB: o.transposeB })
          : matmulStrided(a, bb, o);
        await dev.flush();
        // Round 0 compiles the pipelines.
        if (r > 0) ms[k].push([...dev.profile()!.values()].reduce((s, v) => s + v.ns, 0) / 1e6);
        y.dispose();
      }
    }
    const c = median(ms.contiguous), st = median(ms.strided);
    out.push({ product: name, contiguousMs: c, stridedMs: st, ratio: st / c });
    [a, bb, ap, bp].forEach((t) => t.dispose());
  }
  dev.destroy();
  return out;
}
const products = prefer === "webgpu" ? await timeProducts() : [];

const load = Deno.loadavg();
console.log(
  `adapter: ${adapter}; batch ${batch} × seq ${seq}; ${rounds} rounds × ${steps} steps per path; ` +
    `load average ${load.map((l) => l.toFixed(2)).join(" ")}`,
);
console.log(
  "| model | S | step ms before | after | speed-up | dispatches before | after | Σ kernels ms before | after |",
);
console.log("|---|---|---|---|---|---|---|---|---|");
for (const r of rows) {
  const f = (k: string, d = 1) => (r[k] as number).toFixed(d);
  console.log(
    `| ${r.model} | ${r.sparsity} | ${f("stepMsBefore")} | ${f("stepMsAfter")} | ${
      f("speedup", 2)
    }× | ${f("dispatchesBefore", 0)} | ${f("dispatchesAfter", 0)} | ${f("kernelMsBefore")} | ${
      f("kernelMsAfter")
    } |`,
  );
  const k = r.kernelMsPerOp as Record<string, Record<string, number>>;
  if (k.before) {
    const ms = (p: string, op: string) => (k[p]![op] ?? 0).toFixed(1);
    console.log(
      `  ${r.model}: permute ${ms("before", "permute")} → ${ms("after", "permute")} ms, ` +
        `matmul ${ms("before", "matmul")} → ${ms("after", "matmul")} ms, ` +
        `matmulStrided ${ms("before", "matmulStrided")} → ${ms("after", "matmulStrided")} ms`,
    );
  }
}
if (products.length) {
  console.log(`attention products alone, [B, T, H, hd] = [${flags.products}] (kernel ms):`);
  for (const p of products) {
    const f = (k: string, d = 2) => (p[k] as number).toFixed(d);
    console.log(
      `  ${p.product}: contiguous ${f("contiguousMs")}, strided ${f("stridedMs")} (×${f("ratio")})`,
    );
  }
}
if (!flags["no-write"]) {
  await Deno.mkdir("results/bench", { recursive: true });
  await writeJsonAtomic("results/bench/attention_views.json", {
    adapter,
    date: new Date().toISOString(),
    code: await codeVersion(),
    loadAverage: load,
    batch,
    seq,
    rounds,
    steps,
    rows,
    products,
  });
}
