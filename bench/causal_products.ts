/**
 * Attention's score products with and without their causal mask, in one run: `q·kᵀ` (mask on the
 * output), `p·v` (mask on the probabilities) and `pᵀ·g` (the value gradient's product, mask on the
 * transposed probabilities), each timed masked and unmasked in alternating rounds. On WebGPU the
 * time is the kernel's (timestamp queries, a device opened with `profile`), elsewhere wall time
 * per launch over `--reps` launches. Probabilities are zero above the diagonal, as attention's are.
 * Writes results/bench/causal_products.json (unless `--no-write`).
 *
 * Run: `deno run -A bench/causal_products.ts [--device webgpu|native] [--shape 32,4,128,32]
 * [--rounds 3] [--reps 10] [--no-write]`
 */
import { parseArgs } from "node:util";
import { matmulStrided, type MatmulStridedOptions, openDevice, type Tensor } from "../mod.ts";
import { codeVersion, median, writeJsonAtomic } from "./timing.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    device: { type: "string", default: "webgpu" },
    shape: { type: "string", default: "32,4,128,32" },
    rounds: { type: "string", default: "3" },
    reps: { type: "string", default: "10" },
    "no-write": { type: "boolean", default: false },
  },
});
const [B, H, T, hd] = args.shape!.split(",").map(Number) as [number, number, number, number];
const rounds = Number(args.rounds), reps = Number(args.reps);
const webgpu = args.device === "webgpu";
const dev = await openDevice({ prefer: args.device as "webgpu" | "native", profile: webgpu });
const HEADS = [0, 2, 1, 3];
const q = dev.randn([B, T, H, hd], { seed: 1 }), kv = dev.randn([B, T, H, hd], { seed: 2 });
let state = 3;
const probs = new Float32Array(B * H * T * T).map((_, i) => {
  state = (state * 1103515245 + 12345) >>> 0;
  return (i % T) <= Math.floor(i / T) % T ? state / 2 ** 32 : 0;
});
const p = dev.tensor(probs, [B, H, T, T]);
const products: { name: string; a: Tensor; b: Tensor; opts: MatmulStridedOptions }[] = [
  {
    name: "q·kᵀ",
    a: q,
    b: kv,
    opts: { transposeB: true, dimsA: HEADS, dimsB: HEADS, causal: { on: "c" } },
  },
  { name: "p·v", a: p, b: kv, opts: { dimsB: HEADS, dimsOut: HEADS, causal: { on: "a" } } },
  {
    name: "pᵀ·g",
    a: p,
    b: q,
    opts: { transposeA: true, dimsB: HEADS, dimsOut: HEADS, causal: { on: "a", transposed: true } },
  },
];

/** Milliseconds per launch of one product, masked or not. */
async function time(x: (typeof products)[number], masked: boolean): Promise<number> {
  const opts = masked ? x.opts : { ...x.opts, causal: undefined };
  matmulStrided(x.a, x.b, opts).dispose();
  await dev.flush();
  if (webgpu) dev.backend.resetProfile();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) matmulStrided(x.a, x.b, opts).dispose();
  await dev.flush();
  if (!webgpu) return (performance.now() - t0) / reps;
  const ns = [...dev.profile()!.values()].reduce((s, k) => s + k.ns, 0);
  return ns / 1e6 / reps;
}

const rows = [];
for (const x of products) {
  const full: number[] = [], causal: number[] = [];
  for (let r = 0; r < rounds; r++) {
    full.push(await time(x, false));
    causal.push(await time(x, true));
  }
  const row = { product: x.name, msFull: median(full), msCausal: median(causal) };
  rows.push({ ...row, ratio: row.msFull / row.msCausal, roundsFull: full, roundsCausal: causal });
  console.log(
    `${x.name}: ${row.msFull.toFixed(2)} → ${row.msCausal.toFixed(2)} ms (${
      (row.msFull / row.msCausal).toFixed(2)
    }×)`,
  );
}
console.log(
  `${dev.description}; B ${B} H ${H} T ${T} hd ${hd}; ${
    webgpu ? "kernel time (timestamps)" : "wall time"
  }, median of ${rounds} rounds of ${reps}`,
);
if (!args["no-write"]) {
  await Deno.mkdir("results/bench", { recursive: true });
  await writeJsonAtomic("results/bench/causal_products.json", {
    date: new Date().toISOString(),
    code: await codeVersion(),
    adapter: dev.description,
    clock: webgpu ? "timestamp-query" : "wall",
    loadavg: Deno.loadavg(),
    shape: { B, H, T, hd },
    rounds,
    reps,
    rows,
  });
}
dev.destroy();
