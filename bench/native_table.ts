/**
 * The native CPU backend against the same machine's other paths, measured in one run: the kit on
 * the native backend, the kit on WebGPU through llvmpipe (when Mesa is installed), and PyTorch
 * CPU (Debian's python3-torch, same thread count; bench/peers/torch_peer.py) on the same kernels
 * and on the same model (the parity reference model of tests/parity, same weights and batch).
 * Writes results/bench/native.json and prints the README table.
 *
 * Run: `deno run -A bench/native_table.ts [--quick] [--no-llvmpipe] [--no-torch]`
 * OPENBLAS_* variables are left as the environment has them (both the kit and PyTorch load the
 * same OpenBLAS, so they see the same kernels); the JSON records them.
 */
import { backward, type Device, matmul, openDevice, scope, spmm, topkRows } from "../mod.ts";
import { modelConfig, TransformerLM } from "../src/nn/mod.ts";
import { AdamW } from "../src/train/optimizer.ts";
import { saveSafetensors } from "../src/train/safetensors.ts";
import type { HostTensor } from "../src/train/safetensors.ts";
import { codeVersion, median, writeJsonAtomic } from "./timing.ts";

const quick = Deno.args.includes("--quick");
const BATCH = quick ? 4 : 32, SEQ = 128;
const SIZES = quick ? ["tiny"] : ["tiny", "xs", "s", "m"];
const SPARSITIES = [0, 0.5];

async function timeOp(dev: Device, fn: () => void, reps: number, warmup = 2): Promise<number> {
  for (let i = 0; i < warmup; i++) {
    fn();
    await dev.flush();
  }
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    fn();
    await dev.flush();
    ts.push(performance.now() - t0);
  }
  return median(ts);
}

type Row = Record<string, number | string>;

async function kernels(dev: Device): Promise<Record<string, Row>> {
  const out: Record<string, Row> = {};
  for (const n of [256, 1024]) {
    using a = dev.randn([n, n], { seed: 1 }), b = dev.randn([n, n], { seed: 2 });
    const ms = await timeOp(dev, () => matmul(a, b).dispose(), n === 1024 ? 5 : 15);
    out[`matmul ${n}^3`] = { ms, gflops: (2 * n ** 3) / ms / 1e6 };
  }
  using w = dev.randn([4096, 4096], { seed: 3 });
  using x1 = dev.randn([1, 4096], { seed: 4 });
  const dense = await timeOp(dev, () => matmul(x1, w).dispose(), 15);
  out["gemv 4096^2"] = { ms: dense, gbps: (4096 * 4096 * 4) / dense / 1e6 };
  using xt = dev.randn([256, 4096], { seed: 5 });
  out["topk 256x4096 k=1638"] = { ms: await timeOp(dev, () => topkRows(xt, 1638).dispose(), 7) };
  for (const S of [0.5, 0.6, 0.9]) {
    const k = Math.floor((1 - S) * 4096);
    const ms = await timeOp(dev, () => {
      using s = topkRows(x1, k);
      spmm(s, w).dispose();
    }, 15);
    out[`sparse gemv S=${S}`] = { ms, speedup: dense / ms };
  }
  return out;
}

/** Writes the model's initial weights and a batch as the parity test does, for the peer. */
async function exportForPeer(model: TransformerLM, ids: Uint32Array, tg: Uint32Array, dir: string) {
  const tensors = new Map<string, HostTensor>();
  for (const [n, p] of model.namedParameters()) {
    tensors.set(n, { dtype: "f32", shape: [...p.shape], data: await p.data() });
  }
  tensors.set("batch.ids", { dtype: "u32", shape: [BATCH, SEQ], data: ids });
  tensors.set("batch.targets", { dtype: "u32", shape: [BATCH, SEQ], data: tg });
  await saveSafetensors(`${dir}/weights.safetensors`, tensors);
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify({ model: model.config }));
}

async function training(
  dev: Device,
  name: string,
  sparsity: number,
  peerDir: string | null,
): Promise<Row> {
  const model = new TransformerLM(dev, modelConfig(name, { sparsity, seqLen: SEQ }), 1);
  for (const s of model.sites()) s.countEnabled = false;
  const opt = new AdamW(dev, model.namedParameters());
  const idsHost = Uint32Array.from({ length: BATCH * SEQ }, (_, i) => (i * 7919) % 256);
  const tgHost = Uint32Array.from({ length: BATCH * SEQ }, (_, i) => (i * 104729) % 256);
  if (peerDir) await exportForPeer(model, idsHost, tgHost, peerDir);
  using ids = dev.tensor(idsHost, [BATCH, SEQ], "u32");
  using tg = dev.tensor(tgHost, [BATCH, SEQ], "u32");
  const step = () =>
    scope(() => {
      const loss = model.loss(ids, tg);
      backward(loss);
      opt.step(1e-3);
      model.zeroGrad();
    });
  const big = name === "m" || name === "s";
  const ms = await timeOp(dev, step, dev.kind === "webgpu" && big ? 2 : 4, 1);
  opt.dispose();
  model.dispose();
  return { name, sparsity, stepMs: ms, tokensPerSecond: (BATCH * SEQ) / (ms / 1000) };
}

const result: Record<string, unknown> = {
  date: new Date().toISOString(),
  code: await codeVersion(),
  machine: {
    cores: navigator.hardwareConcurrency,
    loadavg: Deno.loadavg(),
    env: { OPENBLAS_CORETYPE: Deno.env.get("OPENBLAS_CORETYPE") ?? null },
  },
  batch: BATCH,
  seq: SEQ,
};

const devices: Device[] = [await openDevice({ prefer: "native" })];
if (!Deno.args.includes("--no-llvmpipe")) {
  try {
    devices.push(await openDevice({ prefer: "webgpu" }));
  } catch (e) {
    console.warn(`no WebGPU adapter: ${(e as Error).message}`);
  }
}
const peerDirs: Record<string, string> = {};
for (const dev of devices) {
  console.error(`== ${dev.kind}: ${dev.description}`);
  const k = await kernels(dev);
  const train: Row[] = [];
  for (const name of SIZES) {
    for (const S of SPARSITIES) {
      let dir: string | null = null;
      if (dev.kind === "native") {
        dir = await Deno.makeTempDir({ prefix: `peer-${name}-${S}-` });
        peerDirs[`${name}:${S}`] = dir;
      }
      train.push(await training(dev, name, S, dir));
      console.error(
        `  ${name} S=${S}: ${(train.at(-1)!.tokensPerSecond as number).toFixed(0)} tok/s`,
      );
    }
  }
  result[dev.kind] = { description: dev.description, kernels: k, train };
}

if (!Deno.args.includes("--no-torch")) {
  const specPath = await Deno.makeTempFile({ suffix: ".json" });
  const outPath = await Deno.makeTempFile({ suffix: ".json" });
  const threads = (devices[0]!.backend as unknown as { threads: number }).threads;
  await Deno.writeTextFile(
    specPath,
    JSON.stringify({
      threads,
      kernels: true,
      train: Object.entries(peerDirs).map(([key, dir]) => {
        const [name, s] = key.split(":");
        return { name, sparsity: Number(s), dir, steps: 4 };
      }),
    }),
  );
  const peer = new URL("./peers/torch_peer.py", import.meta.url).pathname;
  const r = await new Deno.Command("/usr/bin/python3", { args: [peer, specPath, outPath] })
    .output();
  if (r.success) result.torch = JSON.parse(await Deno.readTextFile(outPath));
  else console.warn(`PyTorch peer failed:\n${new TextDecoder().decode(r.stderr)}`);
}
for (const d of Object.values(peerDirs)) await Deno.remove(d, { recursive: true });

// The table: one row per case, a column per path, ratios against the native backend.
type Side = { kernels: Record<string, Row>; train: Row[] };
const nat = result.native as Side;
const gpu = result.webgpu as Side | undefined;
const torch = result.torch as { kernels: Record<string, Row>; train: Row[] } | undefined;
const fmt = (v: unknown, d = 1) => (typeof v === "number" ? v.toFixed(d) : "–");
console.log(
  `native: ${(result.native as { description: string }).description}` +
    (gpu ? `\nllvmpipe: ${(result.webgpu as { description: string }).description}` : "") +
    (torch
      ? `\nPyTorch ${(torch as unknown as { torch: string }).torch}, ${
        (torch as unknown as { threads: number }).threads
      } threads, ${(torch as unknown as { blas: string }).blas}`
      : ""),
);
console.log("| case | native | llvmpipe | PyTorch | native vs llvmpipe | native vs PyTorch |");
console.log("|---|---|---|---|---|---|");
for (const [key, row] of Object.entries(nat.kernels)) {
  const g = gpu?.kernels[key], t = torch?.kernels?.[key];
  const ms = row.ms as number;
  console.log(
    `| ${key} | ${fmt(ms, 2)} ms | ${fmt(g?.ms, 2)} ms | ${fmt(t?.ms, 2)} ms | ${
      g ? `${fmt((g.ms as number) / ms, 1)}×` : "–"
    } | ${t ? `${fmt((t.ms as number) / ms, 2)}×` : "–"} |`,
  );
}
for (const row of nat.train) {
  const g = gpu?.train.find((r) => r.name === row.name && r.sparsity === row.sparsity);
  const t = torch?.train.find((r) => r.name === row.name && r.sparsity === row.sparsity);
  const tps = row.tokensPerSecond as number;
  console.log(
    `| train ${row.name} S=${row.sparsity} (tok/s) | ${fmt(tps, 0)} | ${
      fmt(g?.tokensPerSecond, 0)
    } | ${fmt(t?.tokensPerSecond, 0)} | ${
      g ? `${fmt(tps / (g.tokensPerSecond as number), 1)}×` : "–"
    } | ${t ? `${fmt(tps / (t.tokensPerSecond as number), 2)}×` : "–"} |`,
  );
}
if (!quick && !Deno.args.includes("--no-write")) {
  await Deno.mkdir("results/bench", { recursive: true });
  await writeJsonAtomic("results/bench/native.json", result);
}
for (const d of devices) d.destroy();
