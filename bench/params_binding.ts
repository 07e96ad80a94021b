/**
 * Kernel parameter blocks as `uniform` against read-only `storage` bindings (`paramsBinding`), in
 * one run on two devices of the same adapter, rounds alternating: ms per launch of small matmuls
 * in each transpose form, and training steps of tiny (separate and grouped projections). Both
 * devices run the default kernels (autotune off), as tests and a fresh cache do.
 *
 * Why (docs/kernels.md): lavapipe inlines uniform values that bound a loop or an `if` and compiles
 * the shader again at every launch when the first try shrank it by half or more; storage reads are
 * never inlined. With `--compiles LIB` (scripts/llvm_compiles.c, also in LD_PRELOAD) it also counts
 * the LLVM modules the driver creates per launch or step.
 *
 * Run: `deno run -A bench/params_binding.ts [--rounds 3] [--compiles /tmp/libllvm_compiles.so]
 * [--no-write]`. Writes results/bench/params_binding.json.
 */
import { parseArgs } from "node:util";
import { backward, type Device, matmul, openDevice, scope, type Tensor } from "../mod.ts";
import { modelConfig, TransformerLM } from "../src/nn/mod.ts";
import { sharedProjections } from "../src/nn/linear.ts";
import { AdamW } from "../src/train/optimizer.ts";
import { codeVersion, median, writeJsonAtomic } from "./timing.ts";

const { values: args } = parseArgs({
  args: Deno.args,
  options: {
    rounds: { type: "string", default: "3" },
    compiles: { type: "string" },
    "no-write": { type: "boolean", default: false },
  },
});
const rounds = Number(args.rounds);
const counter = args.compiles
  ? Deno.dlopen(args.compiles, { llvm_modules_created: { parameters: [], result: "i64" } })
  : null;
const compiles = () => (counter ? Number(counter.symbols.llvm_modules_created()) : NaN);

const BINDINGS = ["uniform", "storage"] as const;
type Binding = (typeof BINDINGS)[number];
const devs: Record<Binding, Device> = {
  uniform: await openDevice({ prefer: "webgpu", autotune: false, paramsBinding: "uniform" }),
  storage: await openDevice({ prefer: "webgpu", autotune: false, paramsBinding: "storage" }),
};

/** One measured case: `setup` on a device returns a unit of work and its teardown. */
interface Case {
  name: string;
  /** Units per timing (launches or steps). */
  units: number;
  setup: (dev: Device) => { run: () => void; dispose: () => void };
}

function matmulCase(form: "NN" | "TN" | "TT", m: number, k: number, n: number): Case {
  const ta = form[0] === "T", tb = form[1] === "T";
  return {
    name: `matmul ${form} ${m}×${k}×${n}`,
    units: 20,
    setup: (dev) => {
      const a = dev.randn(ta ? [k, m] : [m, k], { seed: 1 });
      const b = dev.randn(tb ? [n, k] : [k, n], { seed: 2 });
      return {
        run: () => {
          for (let i = 0; i < 20; i++) {
            scope(() => {
              matmul(a, b, { transposeA: ta, transposeB: tb });
            });
          }
        },
        dispose: () => [a, b].forEach((t) => t.dispose()),
      };
    },
  };
}

function stepCase(batch: number, seq: number, grouped: boolean): Case {
  return {
    name: `tiny S=.5 ${batch}×${seq} step, ${grouped ? "grouped" : "separate"} projections`,
    units: 3,
    setup: (dev) => {
      const model = new TransformerLM(
        dev,
        modelConfig("tiny", { sparsity: 0.5, seqLen: seq }),
        1,
      );
      for (const s of model.sites()) s.countEnabled = false;
      const opt = new AdamW(dev, model.namedParameters());
      const ids = (mul: number): Tensor<"u32"> =>
        dev.tensor(
          Uint32Array.from({ length: batch * seq }, (_, i) => (i * mul) % 256),
          [batch, seq],
          "u32",
        );
      const x = ids(7919), y = ids(104729);
      return {
        run: () => {
          sharedProjections.enabled = grouped;
          for (let i = 0; i < 3; i++) {
            scope(() => {
              backward(model.loss(x, y));
              opt.step(1e-3);
              model.zeroGrad();
            });
          }
          sharedProjections.enabled = true;
        },
        dispose: () => [x, y, opt, model].forEach((t) => t.dispose()),
      };
    },
  };
}

const CASES: Case[] = [
  matmulCase("NN", 64, 64, 64),
  matmulCase("TN", 64, 64, 64),
  matmulCase("TT", 64, 64, 64),
  matmulCase("TN", 256, 64, 256),
  stepCase(2, 32, false),
  stepCase(2, 32, true),
  stepCase(16, 64, true),
];

const rows = [];
for (const c of CASES) {
  const ms: Record<Binding, number[]> = { uniform: [], storage: [] };
  const built: Record<Binding, number> = { uniform: NaN, storage: NaN };
  const work = { uniform: c.setup(devs.uniform), storage: c.setup(devs.storage) };
  for (const b of BINDINGS) {
    work[b].run(); // pipelines built, buffers pooled
    await devs[b].flush();
  }
  for (let r = 0; r < rounds; r++) {
    for (const b of r % 2 ? [...BINDINGS].reverse() : BINDINGS) {
      const c0 = compiles();
      const t0 = performance.now();
      work[b].run();
      await devs[b].flush();
      ms[b].push((performance.now() - t0) / c.units);
      built[b] = (compiles() - c0) / c.units;
    }
  }
  for (const b of BINDINGS) work[b].dispose();
  const u = median(ms.uniform), s = median(ms.storage);
  const row = {
    case: c.name,
    msUniform: u,
    msStorage: s,
    speedup: u / s,
    compilesPerUnitUniform: built.uniform,
    compilesPerUnitStorage: built.storage,
    times: ms,
  };
  rows.push(row);
  const per = c.units === 20 ? "launch" : "step";
  console.log(
    `${c.name}: ms/${per} ${u.toFixed(2)} (uniform) → ${s.toFixed(2)} (storage), ` +
      `${(u / s).toFixed(2)}×` +
      (counter ? `; LLVM compiles/${per} ${built.uniform} → ${built.storage}` : ""),
  );
}
const adapter = devs.storage.description;
for (const d of Object.values(devs)) d.destroy();
console.log(`# ${adapter}; ${rounds} rounds; default kernels (autotune off)`);
if (!args["no-write"]) {
  await writeJsonAtomic("results/bench/params_binding.json", {
    bench: "params_binding",
    finished: new Date().toISOString(),
    adapter,
    code: await codeVersion(),
    loadAverage: Deno.loadavg(),
    rounds,
    rows,
  });
}
