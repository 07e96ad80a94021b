/**
 * Command-line interface of the kit.
 *
 * ```sh
 * deno run -A cli.ts train --model s --sparsity 0.5 --steps 300 --out runs/s50
 * deno run -A cli.ts train --model s --sparsity 0.5 --steps 300 --out runs/s50 --resume
 * deno run -A cli.ts eval --checkpoint runs/s50/checkpoint.safetensors
 * ```
 *
 * Run `deno run -A cli.ts help` for every option.
 *
 * @module
 */
import { exportHf } from "./src/train/hf.ts";
import { parseArgs, type ParseArgsConfig } from "node:util";
import { type Device, openDevice } from "./src/tensor/device.ts";
import { KitError, ValueError } from "./src/core/errors.ts";
import {
  type ModelConfig,
  modelConfig,
  type ModelOverrides,
  SITES,
  type SiteSparsity,
} from "./src/nn/config.ts";
import {
  brownTokens,
  evaluate,
  train,
  trainConfig,
  type TrainResult,
} from "./src/train/trainer.ts";
import { loadCheckpoint, loadWeights } from "./src/train/checkpoint.ts";
import { loadModel } from "./src/train/load_model.ts";
import { TransformerLM } from "./src/nn/transformer.ts";
import { ValidationSet } from "./src/train/batches.ts";
import { measureSparsity } from "./src/train/accounting.ts";
import { parseShard, readResults, type RunSpec, runSweep } from "./src/train/runner.ts";
import { type Profile, STUDIES, type StudyName, studyRuns } from "./studies/studies.ts";
import { fitScalingLaw, type ScalingLawFit } from "./src/train/scaling_law.ts";

const HELP = `qsparse — train and evaluate Q-Sparse models on WebGPU

Usage:
  cli.ts [--debug] COMMAND [options]   (--debug: show the stack of an error)

  cli.ts train [options]     train a model on the Brown corpus
  cli.ts eval  [options]     evaluate a checkpoint on the validation split
  cli.ts sweep [options]     run (or resume) a study's grid, one JSON line per finished run
  cli.ts fit   [options]     fit the Q-Sparse scaling law to a results file
  cli.ts help                this text

train options:
  --model NAME          named size: xxs, tiny, xs, s, m, l, xl (default tiny)
  --sparsity S          top-K sparsity S (fraction zeroed) at every site, or per site:
                        qkv=0.5,o=0.5,gateUp=0.5,down=0.5   (default 0 = dense)
  --block M             Block Q-Sparse: N:M with block M (N = round((1-S)·M)), e.g. 32
  --sparsifier KIND     topk (default) or relu (the paper's ablation)
  --no-ste              mask the gradient too (the paper's "without STE" ablation)
  --rescale             norm-preserving rescale after the mask
  --bitnet              BitNet b1.58 (ternary weights, int8 activations)
  --ffn KIND            relu2glu (default) or swiglu
  --moe E:k             mixture of experts: E experts, top-k routing (Q-Sparse applies inside
                        the experts); also as a model name suffix, e.g. --model s-moe8x2
  --capacity F          MoE capacity factor (tokens per expert = F·k·N/E; default: no dropping)
  --aux-loss C          MoE load-balancing loss coefficient (default 0.01)
  --z-loss C            MoE router z-loss coefficient (default 0)
  --chunks LIST         chunk sizes of the logged chunk-level sparsity (default 8,64; "" = off)
  --steps N             optimizer steps (default 200)
  --tokens T            train for T tokens instead (steps = T / (batch·seq))
  --batch B             sequences per step (default 8)
  --seq T               context length (default 128)
  --lr LR               peak learning rate (default 3e-3)
  --warmup N            warmup steps (default 20)
  --seed N              init and data seed (default 0)
  --category C          Brown category to use (repeatable; default all)
  --init-from PATH      start from a checkpoint's weights (continued training, fine-tuning)
  --eval-every N        evaluate every N steps (default: only at the end)
  --eval-windows N      validation windows (default 64)
  --log-every N         read the loss back every N steps (default 10)
  --checkpoint-every N  checkpoint every N steps (default 50)
  --out DIR             run directory (config.json, checkpoint, log.jsonl, result.json)
  --resume              continue the run in --out from its checkpoint (with more --steps:
                        extend a finished run)
  --force               restart the run in --out from scratch (deletes its checkpoint and log)
  --device KIND         webgpu, native or cpu (default: webgpu on a real GPU, else native)
  --json                JSON lines on stdout (every log record, then the result) instead of
                        the progress line and the summary

sweep options:
  --study NAME          one of: ${STUDIES.join(", ")}
  --grid FILE           a JSON array of run specs instead of a named study
  --profile P           smoke or full (default smoke)
  --results FILE        results file (default results/<study>.jsonl)
  --runs DIR            run directories (default runs)
  --shard i/n           run only runs i, i+n, ... (1-based), e.g. one task of a job array
  --max-runs N          stop after N runs finish
  --reuse-only          record the runs another study already finished here, train nothing
  --where k=v           only runs whose tag k equals v (repeatable), e.g. seed=1
  --device KIND         webgpu, native or cpu
  --sizes LIST          the profile's model sizes replaced by these, e.g. m,l (larger runs on a GPU)
  --seeds LIST          the profile's seeds replaced by these, e.g. 1,2,3
  --fresh               train every run, even one whose identical config another study in the
                        results folder already finished on this adapter (reused by default)

fit options:
  --results FILE        a results file (repeatable)
  --where k=v           keep records whose tag k equals v (repeatable), e.g. variant=topk
  --bootstrap N         bootstrap resamples for the intervals (default 200)
  --s KIND              nominal (default: the run's top-K S) or achieved (measured overall)
  --json                print the fit as JSON

eval options:
  --checkpoint PATH     a checkpoint written by train
  --category C          Brown category (repeatable)
  --eval-windows N      validation windows (default 64)
  --batch B             windows per forward (default 8)
  --device KIND         webgpu, native or cpu
  --json                print the evaluation as JSON

Errors are one line on stderr and exit with status 2.
`;

function parseSparsity(v: string | undefined): number | Partial<SiteSparsity> | undefined {
  if (v === undefined) return undefined;
  const inRange = (x: number, what: string): number => {
    if (!(x >= 0 && x < 1)) {
      throw new ValueError("cli", `--sparsity ${what}must be in [0, 1), got ${x}`);
    }
    return x;
  };
  if (!v.includes("=")) {
    const s = Number(v);
    if (v.trim() === "" || !Number.isFinite(s)) {
      throw new ValueError("cli", `--sparsity must be a number or site=value list, got "${v}"`);
    }
    return inRange(s, "");
  }
  const out: Partial<SiteSparsity> = {};
  for (const part of v.split(",")) {
    const [k, x] = part.split("=");
    if (!SITES.includes(k as never)) {
      throw new ValueError("cli", `unknown site "${k}" in --sparsity (sites: ${SITES.join(", ")})`);
    }
    const n = Number(x);
    if (x === undefined || x.trim() === "" || !Number.isFinite(n)) {
      throw new ValueError("cli", `--sparsity ${k}= must be a number, got "${x ?? ""}"`);
    }
    out[k as keyof SiteSparsity] = inRange(n, `${k} `);
  }
  return out;
}

function num(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (!Number.isFinite(x)) throw new ValueError("cli", `--${name} must be a number, got "${v}"`);
  return x;
}

/** Builds the model config from train options. */
function modelFrom(values: Record<string, unknown>): ModelConfig {
  const o: ModelOverrides = {};
  const sp = parseSparsity(values.sparsity as string | undefined);
  if (sp !== undefined) o.sparsity = sp;
  if (values.block !== undefined) o.block = num("block", values.block as string)!;
  if (values.sparsifier !== undefined) {
    if (values.sparsifier !== "topk" && values.sparsifier !== "relu") {
      throw new ValueError("cli", `--sparsifier must be topk or relu, got "${values.sparsifier}"`);
    }
    o.sparsifier = values.sparsifier;
  }
  if (values["no-ste"]) o.ste = false;
  if (values.rescale) o.rescale = true;
  if (values.bitnet) o.bitnet = true;
  if (values.ffn !== undefined) {
    if (values.ffn !== "relu2glu" && values.ffn !== "swiglu") {
      throw new ValueError("cli", `--ffn must be relu2glu or swiglu, got "${values.ffn}"`);
    }
    o.ffn = values.ffn;
  }
  if (values.seq !== undefined) o.seqLen = num("seq", values.seq as string)!;
  if (values.moe !== undefined) {
    const m = /^(\d+):(\d+)$/.exec(values.moe as string);
    if (!m) throw new ValueError("cli", `--moe must be E:k (e.g. 8:2), got "${values.moe}"`);
    o.moe = { experts: Number(m[1]), topK: Number(m[2]) };
  }
  const moeOpts = {
    capacityFactor: num("capacity", values.capacity as string | undefined),
    auxLossCoef: num("aux-loss", values["aux-loss"] as string | undefined),
    zLossCoef: num("z-loss", values["z-loss"] as string | undefined),
  };
  if (Object.values(moeOpts).some((v) => v !== undefined)) {
    const name = (values.model as string | undefined) ?? "tiny";
    const base = o.moe ?? modelConfig(name).moe;
    if (!base) {
      throw new ValueError(
        "cli",
        "--capacity, --aux-loss and --z-loss need --moe E:k (or an MoE model)",
      );
    }
    o.moe = { ...base };
    for (const [k, v] of Object.entries(moeOpts)) {
      if (v !== undefined) (o.moe as unknown as Record<string, number>)[k] = v;
    }
  }
  try {
    return modelConfig((values.model as string | undefined) ?? "tiny", o);
  } catch (e) {
    if (!(e instanceof ValueError)) throw e;
    const given = MODEL_FLAGS.filter((f) => values[f] !== undefined).map((f) => `--${f}`);
    throw new ValueError("cli", `${e.message} (from ${given.join(", ") || "--model"})`);
  }
}

/** Flags that shape the model, named in errors the model config raises. */
const MODEL_FLAGS = [
  "model",
  "sparsity",
  "block",
  "sparsifier",
  "ffn",
  "seq",
  "moe",
  "capacity",
  "aux-loss",
  "z-loss",
] as const;

async function cmdTrain(args: string[]): Promise<void> {
  const values = flags(args, {
    model: { type: "string" },
    sparsity: { type: "string" },
    block: { type: "string" },
    sparsifier: { type: "string" },
    "no-ste": { type: "boolean" },
    rescale: { type: "boolean" },
    bitnet: { type: "boolean" },
    ffn: { type: "string" },
    moe: { type: "string" },
    capacity: { type: "string" },
    "aux-loss": { type: "string" },
    "z-loss": { type: "string" },
    chunks: { type: "string" },
    steps: { type: "string" },
    tokens: { type: "string" },
    batch: { type: "string" },
    seq: { type: "string" },
    lr: { type: "string" },
    warmup: { type: "string" },
    seed: { type: "string" },
    category: { type: "string", multiple: true },
    "init-from": { type: "string" },
    "eval-every": { type: "string" },
    "eval-windows": { type: "string" },
    "log-every": { type: "string" },
    "checkpoint-every": { type: "string" },
    out: { type: "string" },
    resume: { type: "boolean" },
    force: { type: "boolean" },
    device: { type: "string" },
    json: { type: "boolean" },
  });
  if (values.seq !== undefined) {
    const seq = num("seq", values.seq)!;
    if (!Number.isInteger(seq) || seq < 1) {
      throw new ValueError("cli", `--seq must be a positive integer, got ${values.seq}`);
    }
  }
  if (values.resume && values.force) {
    throw new ValueError("cli", "--resume and --force exclude each other");
  }
  if ((values.resume || values.force) && !values.out) {
    throw new ValueError("cli", `--${values.resume ? "resume" : "force"} needs --out DIR`);
  }
  const model = modelFrom(values);
  const batch = num("batch", values.batch) ?? 8;
  let steps = num("steps", values.steps);
  const tokens = num("tokens", values.tokens);
  if (tokens !== undefined) steps = Math.max(1, Math.round(tokens / (batch * model.seqLen)));
  const o: Record<string, unknown> = { batchSize: batch };
  if (steps !== undefined) o.steps = steps;
  for (
    const [flag, key] of [
      ["lr", "lr"],
      ["warmup", "warmup"],
      ["seed", "seed"],
      ["eval-every", "evalEvery"],
      ["eval-windows", "evalWindows"],
      ["log-every", "logEvery"],
      ["checkpoint-every", "checkpointEvery"],
    ] as const
  ) {
    const v = num(flag, values[flag] as string | undefined);
    if (v !== undefined) o[key] = v;
  }
  if (o.lr !== undefined) o.minLr = (o.lr as number) / 10;
  if (values.category) o.categories = values.category;
  if (values["init-from"]) o.initFrom = values["init-from"];
  const cfg = withTrainFlags(() => trainConfig(model, o));
  const dev = await deviceFrom(values.device);
  try {
    checkFits(dev, cfg.model, batch);
    if (!values.json) console.error(`device: ${dev.kind} — ${dev.description}`);
    const chunks = values.chunks === undefined ? undefined : values.chunks.split(",")
      .filter((x) => x.trim() !== "").map((x) => num("chunks", x)!);
    const r = await train(dev, cfg, {
      out: values.out,
      resume: values.resume ?? false,
      force: values.force ?? false,
      progress: !values.json,
      json: values.json ?? false,
      ...(chunks ? { chunkSizes: chunks } : {}),
    });
    if (values.json) console.log(JSON.stringify({ ...r, log: undefined }));
    else printResult(r);
  } finally {
    dev.destroy();
  }
}

/** Prints a run's summary. */
export function printResult(r: TrainResult): void {
  const s = r.sparsity;
  console.log(
    `model ${r.config.model.name}  N=${r.N}  N_a=${Math.round(r.Na)}  tokens=${r.tokens}`,
  );
  console.log(
    `val loss ${r.valLoss.toFixed(4)} ± ${r.valStderr.toFixed(4)}  train loss ${
      r.trainLoss.toFixed(4)
    }`,
  );
  if (s) {
    const p = s.perSite;
    console.log(
      `sparsity  qkv ${(100 * p.qkv).toFixed(1)}%  o ${(100 * p.o).toFixed(1)}%  gate/up ${
        (100 * p.gateUp).toFixed(1)
      }%  down ${(100 * p.down).toFixed(1)}%  overall ${(100 * s.overall).toFixed(1)}%`,
    );
    console.log(
      `params  N_total=${s.Ntotal}  N_a attention=${Math.round(s.NaAttention)}  N_a FFN=${
        Math.round(s.NaFfn)
      }  FLOPs/token=${Math.round(s.flopsPerToken)}`,
    );
  }
  printMoe(r);
  // Speed without the one-time pipeline compilation, which the first log window pays.
  const steady = r.steadyTokensPerSecond !== undefined
    ? `${r.steadyTokensPerSecond.toFixed(0)} tokens/s after the first log window (${
      r.firstWindowSeconds!.toFixed(1)
    } s, compilation included)`
    : `${r.tokensPerSecond.toFixed(0)} tokens/s overall (compilation included)`;
  console.log(`${steady} on ${r.backend} (${r.adapter}); ${r.wallSeconds.toFixed(1)} s in all`);
}

/** Prints the MoE router statistics and chunk-level sparsity of a run, if any. */
function printMoe(r: TrainResult): void {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const rt = r.sparsity?.routing;
  if (rt) {
    for (const l of rt.layers) {
      console.log(
        `router ${l.layer}  load ${l.load.map(pct).join(" ")}  entropy ${
          l.loadEntropy.toFixed(3)
        }  max/balanced ${l.maxLoad.toFixed(2)}  dropped ${pct(l.dropped)}${
          l.collapsed ? "  COLLAPSED" : ""
        }`,
      );
    }
    if (rt.collapsed.length) {
      console.log(
        `warning: router collapse in ${
          rt.collapsed.join(", ")
        } (the top-k experts take ≥ 90% of the load)`,
      );
    }
  }
  const cs = r.chunkSparsity;
  if (cs) {
    const per = cs.chunkSizes.map((c, i) => `${c} tokens ${pct(cs.overall[i]!)}`).join("  ");
    console.log(`chunk-level sparsity (untouched weights)  ${per}`);
  }
}

/** The other `.jsonl` results files in `folder` (none when it does not exist). */
async function siblingResults(folder: string, except: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(folder)) {
      const path = `${folder}/${e.name}`;
      if (e.isFile && e.name.endsWith(".jsonl") && path !== except) out.push(path);
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return out.sort();
}

/** A comma-separated flag value, each item parsed and checked (numbers must be integers). */
function listOf<T>(flag: string, v: string, parse: (x: string) => T): T[] {
  const items = v.split(",").map((x) => x.trim()).filter((x) => x.length > 0).map(parse);
  if (!items.length || items.some((x) => typeof x === "number" && !Number.isInteger(x))) {
    throw new ValueError("cli", `--${flag} must be a comma-separated list, got "${v}"`);
  }
  return items;
}

async function cmdSweep(args: string[]): Promise<void> {
  const values = flags(args, {
    study: { type: "string" },
    grid: { type: "string" },
    profile: { type: "string" },
    results: { type: "string" },
    runs: { type: "string" },
    shard: { type: "string" },
    "max-runs": { type: "string" },
    where: { type: "string", multiple: true },
    device: { type: "string" },
    fresh: { type: "boolean" },
    "reuse-only": { type: "boolean" },
    sizes: { type: "string" },
    seeds: { type: "string" },
  });
  const profile = (values.profile ?? "smoke") as Profile;
  if (profile !== "smoke" && profile !== "full") {
    throw new ValueError("cli", `--profile must be smoke or full, got "${profile}"`);
  }
  const runsDir = values.runs ?? "runs";
  let specs: RunSpec[];
  let name: string;
  if (values.grid) {
    try {
      specs = JSON.parse(await Deno.readTextFile(values.grid));
    } catch (e) {
      if (!(e instanceof SyntaxError)) throw e;
      throw new ValueError("cli", `--grid ${values.grid}: not JSON (${e.message})`);
    }
    if (!Array.isArray(specs)) {
      throw new ValueError("cli", `--grid ${values.grid}: must be a JSON array of run specs`);
    }
    name = values.grid.replace(/^.*\//, "").replace(/\.json$/, "");
  } else {
    if (!values.study || !STUDIES.includes(values.study as StudyName)) {
      throw new ValueError("cli", `sweep needs --study (${STUDIES.join(", ")}) or --grid FILE`);
    }
    specs = studyRuns(values.study as StudyName, profile, {
      runsDir,
      settings: {
        ...(values.sizes ? { sizes: listOf("sizes", values.sizes, (v) => v) } : {}),
        ...(values.seeds ? { seeds: listOf("seeds", values.seeds, Number) } : {}),
      },
    });
    name = values.study;
  }
  const where = (values.where ?? []).map((w) => {
    const i = w.indexOf("=");
    if (i < 1) throw new ValueError("cli", `--where must be key=value, got "${w}"`);
    return [w.slice(0, i), w.slice(i + 1)] as const;
  });
  // Filtering keeps grid order, so sharding a filtered grid stays stable.
  specs = specs.filter((r) => where.every(([k, v]) => String(r.tags[k]) === v));
  const results = values.results ?? `results/${name}${profile === "smoke" ? ".smoke" : ""}.jsonl`;
  const dev = await deviceFrom(values.device);
  console.error(
    `device: ${dev.kind} — ${dev.description}; ${specs.length} runs; results → ${results}`,
  );
  try {
    const t0 = performance.now();
    // Identical runs other studies already finished (in the same results folder) are reused.
    const folder = results.includes("/") ? results.slice(0, results.lastIndexOf("/")) : ".";
    const others = values.fresh ? [] : await siblingResults(folder, results);
    const diverged: string[] = [];
    await runSweep(dev, specs, {
      results,
      runsDir,
      reuse: others,
      ...(values.shard ? { shard: parseShard(values.shard) } : {}),
      ...(values["max-runs"] ? { maxRuns: num("max-runs", values["max-runs"])! } : {}),
      ...(values["reuse-only"] ? { reuseOnly: true } : {}),
      onRun: (ev, spec, rec, failed) => {
        const el = ((performance.now() - t0) / 1000).toFixed(0);
        if (ev === "start") console.error(`[${el}s] start ${spec.id}`);
        if (ev === "reuse") console.error(`[${el}s] reuse ${spec.id}  (= ${rec?.reusedFrom})`);
        if (ev === "diverged") {
          diverged.push(spec.id);
          console.error(`[${el}s] DIVERGED ${spec.id}: ${failed?.diverged.message}`);
        }
        if (ev === "done" && rec) {
          console.error(
            `[${el}s] done  ${spec.id}  val ${rec.valLoss.toFixed(4)} ± ${
              rec.valStderr.toFixed(4)
            }  S ${(100 * (rec.sparsity?.overall ?? 0)).toFixed(1)}%  ${
              rec.tokensPerSecond.toFixed(0)
            } tok/s`,
          );
        }
      },
    });
    if (diverged.length) {
      console.error(
        `${diverged.length} run(s) diverged and are recorded as diverged in ${results}, ` +
          `not as finished: ${diverged.join(", ")}`,
      );
    }
  } finally {
    dev.destroy();
  }
}

async function cmdFit(args: string[]): Promise<void> {
  const values = flags(args, {
    results: { type: "string", multiple: true },
    where: { type: "string", multiple: true },
    bootstrap: { type: "string" },
    s: { type: "string" },
    json: { type: "boolean" },
  });
  if (values.s !== undefined && values.s !== "nominal" && values.s !== "achieved") {
    throw new ValueError("cli", `--s must be nominal or achieved, got "${values.s}"`);
  }
  if (!values.results?.length) throw new ValueError("cli", "fit needs --results FILE");
  const filters = (values.where ?? []).map((w) => {
    const i = w.indexOf("=");
    if (i < 1) throw new ValueError("cli", `--where must be key=value, got "${w}"`);
    return [w.slice(0, i), w.slice(i + 1)] as const;
  });
  const records = (await Promise.all(values.results.map((p) => readResults(p)))).flat()
    .filter((r) => filters.every(([k, v]) => String(r.tags[k]) === v));
  if (records.length === 0) {
    throw new ValueError(
      "cli",
      `no records in ${values.results.join(", ")} match ${
        (values.where ?? []).map((w) => `--where ${w}`).join(" ")
      }`,
    );
  }
  // S is the nominal top-K sparsity of the run (its tag), as in the paper's law; --s achieved
  // uses the measured overall sparsity instead (which counts ReLU²'s natural zeros too).
  const achieved = values.s === "achieved";
  const points = records.map((r) => ({
    N: r.N,
    S: achieved || typeof r.tags.S !== "number" ? r.sparsity?.overall ?? 0 : r.tags.S,
    loss: r.valLoss,
  }));
  const fit = await fitScalingLaw(points, {
    nScale: 1e6,
    bootstrap: num("bootstrap", values.bootstrap) ?? 200,
  });
  if (values.json) {
    console.log(JSON.stringify({ points: points.length, ...fit, residuals: undefined }, null, 2));
  } else printFit(fit, points.length, achieved);
}

/** The fitted law in words, each constant with its bootstrap interval. */
function printFit(fit: ScalingLawFit, points: number, achieved: boolean): void {
  const ci = fit.ci;
  const f = (k: "E" | "B" | "C" | "alpha" | "beta" | "sStar", digits = 3) => {
    const v = fit[k].toFixed(digits);
    if (!ci) return v;
    const [lo, hi] = ci[k];
    return `${v} [${lo.toFixed(digits)}, ${hi.toFixed(digits)}]`;
  };
  console.log(
    `L(N, S) = E + A(S) / (N / ${fit.nScale.toExponential(0)})^α,  A(S) = B + C·exp(β / (1 − S))`,
  );
  console.log(
    `fitted to ${points} runs (S ${achieved ? "achieved" : "nominal"})${
      ci ? `; ${Math.round(100 * ci.level)}% bootstrap intervals over ${ci.samples} refits` : ""
    }`,
  );
  console.log(`  E  ${f("E")}`);
  console.log(`  B  ${f("B")}`);
  console.log(`  C  ${f("C")}`);
  console.log(`  α  ${f("alpha")}`);
  console.log(`  β  ${f("beta")}`);
  console.log(`  S* ${f("sStar")}   (inference-optimal sparsity)`);
  console.log(
    `rmse of log-loss ${fit.rmse.toFixed(4)}${fit.converged ? "" : "  (did not converge)"}`,
  );
}

async function cmdEval(args: string[]): Promise<void> {
  const values = flags(args, {
    checkpoint: { type: "string" },
    category: { type: "string", multiple: true },
    "eval-windows": { type: "string" },
    batch: { type: "string" },
    device: { type: "string" },
    json: { type: "boolean" },
  });
  if (!values.checkpoint) throw new ValueError("cli", "eval needs --checkpoint PATH");
  const ck = await loadCheckpoint(values.checkpoint);
  const cfg = ck.config as { model: ModelConfig; categories?: string[] } | null;
  if (!cfg?.model) {
    throw new ValueError("cli", `--checkpoint ${values.checkpoint} has no model config`);
  }
  const dev = await deviceFrom(values.device);
  try {
    const model = new TransformerLM(dev, cfg.model, 0);
    loadWeights(model, ck, values.checkpoint);
    const data = await brownTokens(values.category ?? cfg.categories ?? []);
    const val = new ValidationSet(data.validation, {
      seqLen: cfg.model.seqLen,
      maxWindows: num("eval-windows", values["eval-windows"]) ?? 64,
    });
    const ev = await evaluate(model, val, num("batch", values.batch) ?? 8);
    const sp = await measureSparsity(model);
    // The byte tokenizer makes the loss nats per byte: bits per byte is loss / ln 2.
    const summary = {
      checkpoint: values.checkpoint,
      step: ck.state.step,
      valLoss: ev.loss,
      valStderr: ev.stderr,
      perplexity: Math.exp(ev.loss),
      bitsPerByte: ev.loss / Math.LN2,
      sparsity: sp?.perSite,
      overall: sp?.overall,
      N: sp?.N,
      Na: sp?.Na,
    };
    if (values.json) console.log(JSON.stringify(summary));
    else {
      console.log(`checkpoint ${values.checkpoint} (step ${ck.state.step}, ${ev.batches} batches)`);
      console.log(
        `val loss ${ev.loss.toFixed(4)} ± ${ev.stderr.toFixed(4)} nats/byte  perplexity ${
          summary.perplexity.toFixed(3)
        }  bits/byte ${summary.bitsPerByte.toFixed(4)}`,
      );
      if (sp) {
        const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
        const p = sp.perSite;
        console.log(
          `sparsity  qkv ${pct(p.qkv)}  o ${pct(p.o)}  gate/up ${pct(p.gateUp)}  down ${
            pct(p.down)
          }  overall ${pct(sp.overall)}   N=${sp.N}  N_a=${Math.round(sp.Na)}`,
        );
      }
    }
    model.dispose();
  } finally {
    dev.destroy();
  }
}

// ---- Errors, flags and devices (issue 14): every failure is one line naming its cause ----------

/**
 * One line for any error: kit errors carry their op; Deno's (NotFound, IsADirectory,
 * PermissionDenied...) and JavaScript's (TypeError...) their class name.
 */
function errorLine(e: unknown): string {
  if (!(e instanceof Error)) return `error: ${String(e)}`;
  const msg = e.message.replace(/\s*\n\s*/g, " ").trim();
  return e instanceof KitError ? `error: ${msg}` : `error: ${e.name}: ${msg}`;
}

/**
 * `parseArgs` with a negative number accepted as a value (`--sparsity -0.1` would otherwise be
 * "ambiguous") and its errors turned into ValueErrors naming the flag.
 */
function flags<T extends NonNullable<ParseArgsConfig["options"]>>(
  args: string[],
  options: T,
): ReturnType<typeof parseArgs<{ args: string[]; options: T }>>["values"] {
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!, next = args[i + 1];
    const opt = a.startsWith("--") ? options[a.slice(2)] : undefined;
    if (opt?.type === "string" && next !== undefined && /^-[\d.]/.test(next)) {
      joined.push(`${a}=${next}`);
      i++;
    } else joined.push(a);
  }
  try {
    return parseArgs({ args: joined, options }).values;
  } catch (e) {
    if (!(e instanceof TypeError)) throw e;
    // Node's messages name the flag already ("Unknown option '--stpes'"); drop its hints.
    throw new ValueError("cli", e.message.replace(/\. To specify .*$/s, ""));
  }
}

/** The device a `--device` flag asks for (auto without the flag). */
async function deviceFrom(kind: string | undefined): Promise<Device> {
  if (kind === undefined) return await openDevice();
  if (kind !== "webgpu" && kind !== "native" && kind !== "cpu") {
    throw new ValueError("cli", `--device must be webgpu, native or cpu, got "${kind}"`);
  }
  return await openDevice({ prefer: kind });
}

/** Names the training flag behind a trainConfig error (its messages use the config keys). */
function withTrainFlags<T>(fn: () => T): T {
  const byKey: Record<string, string> = {
    steps: "--steps (or --tokens)",
    batchSize: "--batch",
    warmup: "--warmup",
    evalEvery: "--eval-every",
    evalWindows: "--eval-windows",
    logEvery: "--log-every",
    checkpointEvery: "--checkpoint-every",
    lr: "--lr",
    seed: "--seed",
  };
  try {
    return fn();
  } catch (e) {
    if (!(e instanceof ValueError)) throw e;
    const key = /^trainConfig: (\w+)/.exec(e.message)?.[1];
    const flag = key ? byKey[key] : undefined;
    throw flag ? new ValueError("cli", `${flag}: ${e.message.replace(/^trainConfig: /, "")}`) : e;
  }
}

/**
 * Refuses a context length whose attention scores (batch × heads × seq² floats, the largest
 * activation of a step) cannot be allocated on the device, naming `--seq` and `--batch`.
 */
function checkFits(dev: Device, model: ModelConfig, batch: number): void {
  const bytes = batch * model.nHeads * model.seqLen * model.seqLen * 4;
  const limit = dev.backend.limits.maxBufferSize;
  if (bytes > limit) {
    const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
    const seq = Math.floor(Math.sqrt(limit / (batch * model.nHeads * 4)));
    throw new ValueError(
      "cli",
      `--seq ${model.seqLen} with --batch ${batch}: the attention scores need ${gib(bytes)}, ` +
        `over the ${dev.kind} device's ${gib(limit)} buffer limit (--seq ${seq} at most)`,
    );
  }
}

// ---- generate and export (inference from a checkpoint; interop) ----

const GENERATE_HELP = `generate options (cli.ts generate):
  --checkpoint PATH     a checkpoint written by train, its run directory, or a Llama-style folder
  --prompt TEXT         the prompt (default "The ")
  --max-tokens N        new tokens at most (default 200; stops earlier at the model's context)
  --temperature T       sampling temperature (default 0.8; 0 = greedy)
  --top-k K             sample among the K most likely tokens (default 0 = all)
  --top-p P             nucleus sampling (default 1 = off)
  --seed N              sampling seed (default 0)
  --sparse-decode       decode with the sparse-activation kernels (top-K rows of W only)
  --sparsity S          inference sparsity at every site (post-hoc top-K on a dense model)
  --device KIND         auto (default), webgpu, native or cpu
  --stats               print tokens/s to stderr at the end

export options (cli.ts export: a checkpoint as a Llama-style folder for PyTorch / transformers):
  --checkpoint PATH     a checkpoint written by train (or its run directory)
  --out DIR             the folder to write (config.json + model.safetensors)
`;

async function cmdExport(args: string[]): Promise<void> {
  const values = flags(args, { checkpoint: { type: "string" }, out: { type: "string" } });
  if (!values.checkpoint || !values.out) {
    throw new ValueError("export", "--checkpoint PATH and --out DIR are required");
  }
  const dev = await openDevice({ prefer: "cpu" });
  const model = await TransformerLM.fromCheckpoint(dev, values.checkpoint);
  await exportHf(model, values.out);
  console.log(`wrote ${values.out}/config.json and ${values.out}/model.safetensors`);
  model.dispose();
  dev.destroy();
}

async function cmdGenerate(args: string[]): Promise<void> {
  const values = flags(args, {
    checkpoint: { type: "string" },
    prompt: { type: "string", default: "The " },
    "max-tokens": { type: "string" },
    temperature: { type: "string" },
    "top-k": { type: "string" },
    "top-p": { type: "string" },
    seed: { type: "string" },
    "sparse-decode": { type: "boolean", default: false },
    sparsity: { type: "string" },
    device: { type: "string", default: "auto" },
    stats: { type: "boolean", default: false },
  });
  if (!values.checkpoint) throw new ValueError("generate", "--checkpoint PATH is required");
  const kinds = ["auto", "webgpu", "native", "cpu"] as const;
  const kind = values.device as (typeof kinds)[number];
  if (!kinds.includes(kind)) {
    throw new ValueError("generate", `--device must be one of ${kinds.join(", ")}, got ${kind}`);
  }
  const dev = await openDevice(kind === "auto" ? {} : { prefer: kind });
  const model = await loadModel(dev, values.checkpoint);
  const out = (t: string) => Deno.stdout.writeSync(new TextEncoder().encode(t));
  out(values.prompt);
  const t0 = performance.now();
  let n = 0;
  for await (
    const c of model.stream(values.prompt, {
      maxNewTokens: num("max-tokens", values["max-tokens"]) ?? 200,
      temperature: num("temperature", values.temperature) ?? 0.8,
      topK: num("top-k", values["top-k"]) ?? 0,
      topP: num("top-p", values["top-p"]) ?? 1,
      seed: num("seed", values.seed) ?? 0,
      sparse: values["sparse-decode"],
      sparsity: num("sparsity", values.sparsity),
    })
  ) {
    out(c.text[0]!);
    n += c.tokens[0]!.length;
  }
  out("\n");
  if (values.stats) {
    const s = (performance.now() - t0) / 1000;
    console.error(`${n} tokens in ${s.toFixed(2)} s (${(n / s).toFixed(1)} tokens/s, ${dev.kind})`);
  }
  model.dispose();
  dev.destroy();
}

/**
 * Runs the CLI on an argument list.
 *
 * @param argv Arguments (without the program name).
 * @returns The exit code.
 */
export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes("--debug");
  const [cmd, ...rest] = argv.filter((a) => a !== "--debug");
  try {
    switch (cmd) {
      case "train":
        await cmdTrain(rest);
        return 0;
      case "eval":
        await cmdEval(rest);
        return 0;
      case "sweep":
        await cmdSweep(rest);
        return 0;
      case "fit":
        await cmdFit(rest);
        return 0;
      case "generate":
        await cmdGenerate(rest);
        return 0;
      case "export":
        await cmdExport(rest);
        return 0;
      case undefined:
      case "help":
      case "--help":
      case "-h":
        console.log(HELP + "\n" + GENERATE_HELP);
        return 0;
      default:
        console.error(`unknown command "${cmd}"\n\n${HELP}`);
        return 2;
    }
  } catch (e) {
    console.error(errorLine(e));
    if (debug && e instanceof Error && e.stack) console.error(e.stack);
    return 2;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
