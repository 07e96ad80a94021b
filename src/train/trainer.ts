/**
 * The trainer: AdamW with warmup + cosine on the Brown corpus, evaluation on a fixed validation
 * set, the loss read back only every `logEvery` steps, sparsity accounting, and atomic
 * checkpoints that make a killed run resume exactly (bit-exact on the CPU backend).
 *
 * A run directory holds `config.json`, `checkpoint.safetensors`, `log.jsonl` (one line per log
 * or eval) and, when finished, `result.json`.
 *
 * @module
 */
import { backward } from "../autograd/backward.ts";
import { noGrad } from "../autograd/tape.ts";
import { crossEntropy } from "../ops/cross_entropy.ts";
import { add, mulScalar } from "../ops/elementwise.ts";
import { concat } from "../ops/layout.ts";
import { type ModelConfig, validateConfig } from "../nn/config.ts";
import { TransformerLM } from "../nn/transformer.ts";
import { ExpertSite, MoeFeedForward } from "../nn/moe.ts";
import type { Device } from "../tensor/device.ts";
import { DivergenceError, ValueError } from "../core/errors.ts";
import { keep, scope } from "../tensor/scope.ts";
import { captureStep } from "../tensor/capture.ts";
import { isSoftwareAdapter } from "../backend/webgpu.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { appendJsonLine, atomicWriteFile } from "../util/fs.ts";
import { switchedOff } from "../util/env.ts";
import { measureSparsity, type SparsityReport } from "./accounting.ts";
import type { RouterReport } from "./router_stats.ts";
import {
  type ChunkSparsityReport,
  DEFAULT_CHUNK_SIZES,
  measureChunkSparsity,
} from "./chunk_sparsity.ts";
import { BatchSampler, ValidationSet } from "./batches.ts";
import {
  loadCheckpoint,
  loadOptimizer,
  loadWeights,
  saveCheckpoint,
  type TrainState,
} from "./checkpoint.ts";
import { loadBrownCorpus } from "./corpus.ts";
import { AdamW } from "./optimizer.ts";
import { cosineLr } from "./schedule.ts";
import { ByteTokenizer } from "../core/tokenizer.ts";
import { importHf } from "./hf.ts";
import { type ProgressState, type ProgressView, progressView } from "./progress.ts";

// The progress types are part of train()'s options (a caller may pass its own view).
export type { ProgressKind, ProgressState, ProgressView } from "./progress.ts";

/** Everything that defines a training run (JSON-serialisable; stored in `config.json`). */
export interface TrainConfig {
  /** The model. */
  model: ModelConfig;
  /** Optimizer steps (0 with `initFrom`: evaluate a checkpoint on this config's data). */
  steps: number;
  /** Sequences per step. */
  batchSize: number;
  /** Peak learning rate. */
  lr: number;
  /** Warmup steps. */
  warmup: number;
  /** Final learning rate of the cosine (default lr/10). */
  minLr: number;
  /** Decoupled weight decay on matrices. */
  weightDecay: number;
  /** Global gradient-norm clip (≤ 0 disables). */
  clipNorm: number;
  /** Adam β1, β2. */
  betas: [number, number];
  /** Seed of the initialisation and the data sampler. */
  seed: number;
  /** Brown categories to train and validate on (empty = all). */
  categories: string[];
  /** Evaluate every this many steps (0 = only at the end). */
  evalEvery: number;
  /** Validation windows (fixed set, spread over the validation split). */
  evalWindows: number;
  /** Read back and log the loss every this many steps. */
  logEvery: number;
  /** Checkpoint every this many steps (0 = only at the end). */
  checkpointEvery: number;
  /** Initialise weights from this checkpoint (continued training, fine-tuning). */
  initFrom: string | null;
}

/**
 * Defaults for everything but the model.
 *
 * @example
 * ```ts
 * import { modelConfig } from "@qsparse/kit/nn";
 * import { DEFAULT_TRAIN, trainConfig } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * assert.equal(DEFAULT_TRAIN.lr, 3e-3);
 * const c = trainConfig(modelConfig("tiny"), { steps: 10 });
 * assert.equal(c.batchSize, DEFAULT_TRAIN.batchSize); // not overridden
 * ```
 */
export const DEFAULT_TRAIN: Omit<TrainConfig, "model"> = {
  steps: 200,
  batchSize: 8,
  lr: 3e-3,
  warmup: 20,
  minLr: 3e-4,
  weightDecay: 0.1,
  clipNorm: 1,
  betas: [0.9, 0.95],
  seed: 0,
  categories: [],
  evalEvery: 0,
  evalWindows: 64,
  logEvery: 10,
  checkpointEvery: 50,
  initFrom: null,
};

/**
 * A full config from a model config and overrides, validated.
 *
 * @param model The model config.
 * @param overrides Training settings to change.
 * @returns The config.
 *
 * @example
 * ```ts
 * import { modelConfig } from "@qsparse/kit/nn";
 * import { trainConfig } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const c = trainConfig(modelConfig("tiny"), { steps: 10 });
 * assert.equal(c.steps, 10);
 * assert.throws(() => trainConfig(modelConfig("tiny"), { steps: 0 }), /steps/);
 * ```
 */
export function trainConfig(
  model: ModelConfig,
  overrides: Partial<Omit<TrainConfig, "model">> = {},
): TrainConfig {
  const c: TrainConfig = { ...DEFAULT_TRAIN, ...overrides, model };
  validateConfig(model);
  const pos = (k: keyof TrainConfig, min: number) => {
    const v = c[k] as number;
    if (!Number.isInteger(v) || v < min) {
      throw new ValueError("trainConfig", `${k} must be an integer ≥ ${min}, got ${v}`);
    }
  };
  pos("steps", 0);
  if (c.steps === 0 && !c.initFrom) {
    throw new ValueError(
      "trainConfig",
      "steps must be ≥ 1 (0 is an evaluation-only run and needs initFrom)",
    );
  }
  pos("batchSize", 1);
  pos("warmup", 0);
  pos("evalEvery", 0);
  pos("evalWindows", 1);
  pos("logEvery", 1);
  pos("checkpointEvery", 0);
  if (!(c.lr > 0)) throw new ValueError("trainConfig", `lr must be > 0, got ${c.lr}`);
  return c;
}

/** One line of the training log. */
export interface LogRecord {
  /** `"train"` (periodic loss), `"eval"` (validation) or `"done"`. */
  kind: "train" | "eval" | "done";
  /** Steps completed. */
  step: number;
  /** Tokens trained on. */
  tokens: number;
  /** Mean training loss since the previous train record. */
  loss?: number;
  /** Validation loss and its standard error over validation batches. */
  valLoss?: number;
  /** Standard error of `valLoss` over the validation batches (`eval` and `done` records). */
  valStderr?: number;
  /** Learning rate at this step. */
  lr?: number;
  /** Global gradient norm (before clipping) at this step. */
  gradNorm?: number;
  /** L2 norm of each projection weight's gradient at this step (`layers.0.attn.q_proj` → norm). */
  gradNorms?: Record<string, number>;
  /** Training throughput since the previous record. */
  tokensPerSecond?: number;
  /** Wall seconds so far (across resumes). */
  elapsed: number;
  /** Sparsity accounting over the window. */
  sparsity?: { perSite: SparsityReport["perSite"]; overall: number; Na: number };
  /** MoE router statistics over the window: per-layer expert load, mean load entropy, dropped share, collapsed layers. */
  routing?: { load: number[][]; loadEntropy: number; dropped: number; collapsed: string[] };
  /** Chunk-level sparsity (untouched share of the linear weights) on the probe batch, by chunk size. */
  chunkSparsity?: Record<string, number>;
}

/** What a finished run reports (also `result.json`). */
export interface TrainResult {
  /** The full training config the run used (defaults filled in by {@link trainConfig}). */
  config: TrainConfig;
  /** Final validation loss and standard error (over validation batches). */
  valLoss: number;
  /** Standard error of the final `valLoss` over the validation batches. */
  valStderr: number;
  /** Mean training loss over the last log window. */
  trainLoss: number;
  /** Achieved sparsity on the validation set (with router statistics for MoE). */
  sparsity: SparsityReport | null;
  /** Chunk-level sparsity on the probe batch (the first validation batch) at the end. */
  chunkSparsity?: ChunkSparsityReport;
  /** Non-embedding parameters. */
  N: number;
  /** Activated non-embedding parameters per token. */
  Na: number;
  /** Training tokens processed: steps × batchSize × seqLen (across resumes). */
  tokens: number;
  /** Wall-clock seconds of training, summed across resumes (includes evals and logging). */
  wallSeconds: number;
  /** Mean throughput of the run: `tokens / wallSeconds` (compilation and evaluations included). */
  tokensPerSecond: number;
  /**
   * Training throughput of this invocation after its first log window, which pays the one-time
   * pipeline compilation; evaluations are left out. Absent with fewer than two log windows.
   */
  steadyTokensPerSecond?: number;
  /** Wall seconds until this invocation's first loss readback (compilation included). */
  firstWindowSeconds?: number;
  /** The device's adapter description (see {@link Device.description}). */
  adapter: string;
  /** The backend kind, `"webgpu"` or `"cpu"`. */
  backend: string;
  /** When the run finished, as an ISO 8601 timestamp. */
  date: string;
  /** Every log record of the run, in order (the same lines as `log.jsonl`, kept across resumes). */
  log: LogRecord[];
}

/** Hooks and switches that do not change the run itself. */
export interface TrainHooks {
  /** Run directory (config, checkpoint, log, result). Without it nothing is written. */
  out?: string;
  /**
   * Continue from `out/checkpoint.safetensors` when present. The config must match the
   * checkpoint's except `steps`, which may grow: that extends the run (also a finished one).
   */
  resume?: boolean;
  /**
   * Restart the run in `out`: delete its checkpoint, log and result first (never combined with
   * `resume`).
   */
  force?: boolean;
  /** Called with every log record. */
  onLog?: (r: LogRecord) => void;
  /**
   * Show progress for people: an updating line on a terminal, an updating display in Jupyter,
   * a plain line per log record otherwise (see {@link progressView}); or the view to use.
   */
  progress?: boolean | ProgressView;
  /** Print every log record as a JSON line on stdout (machine-readable; off by default). */
  json?: boolean;
  /** Stop after this many steps of this invocation (tests use it to simulate a kill). */
  stopAfter?: number;
  /**
   * Chunk sizes (tokens) of the chunk-level sparsity logged with every train record, measured
   * on the first validation batch (default 8 and 64; empty to skip the extra forward).
   */
  chunkSizes?: readonly number[];
  /**
   * Capture the training step (forward, backward, optimizer update) on its second step and
   * replay it from then on (see `captureStep`): no op code, allocation or bind-group creation
   * per step. The step after the capture is verified (run as ordinary code and compared), so a
   * per-step value that reaches a kernel as a uniform fails with a CaptureError instead of being
   * replayed stale. AdamW's learning rate and bias corrections are written to a device buffer
   * before each step ({@link AdamW.prepareStep}), outside the recording. MoE models too: their
   * per-expert and router counters are zeroed in place at a log point, never replaced. A
   * non-finite loss is then caught at log points on every backend. Default: on for WebGPU
   * (where each launch's host cost is what a replay removes); off for the host backends, where a
   * replay saves little and the loss is checked every step.
   * `QSPARSE_CAPTURE=0` turns the default off (a fallback for an adapter where capture fails;
   * results are bit-identical either way).
   */
  capture?: boolean;
  /**
   * Measure interchangeable kernels (`device.autotune()`, src/backend/autotune.ts) once, after the
   * first step and before the capture, so the rest of the run uses the fastest ones on this
   * adapter. Default: on for WebGPU on a real GPU, where the llvmpipe-tuned default kernels
   * measured up to 112× slower than the best (an H200, 2026-11-30); off for software adapters
   * (their defaults are the tuned ones) and the host backends. Choices are cached per adapter on
   * disk (`QSPARSE_AUTOTUNE=0` turns autotuning off): a run repeats bit for bit with one cache,
   * and may differ in the last bits of its matmuls with another.
   */
  autotune?: boolean;
}

const encodedCache = new Map<string, { train: Uint32Array; validation: Uint32Array }>();

/**
 * Token streams (byte tokenizer) of the Brown corpus' train and validation splits.
 *
 * @param categories Categories to keep (empty = all).
 * @returns The two streams (cached per category set).
 *
 * @example News only (loads the corpus)
 * ```ts ignore
 * import { brownTokens } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const { train, validation } = await brownTokens(["news"]);
 * assert.ok(train.length > validation.length && validation.length > 0);
 * assert.ok(train.every((id) => id < 256)); // byte tokenizer
 * ```
 */
export async function brownTokens(
  categories: readonly string[] = [],
): Promise<{ train: Uint32Array; validation: Uint32Array }> {
  const key = [...categories].sort().join(",");
  const hit = encodedCache.get(key);
  if (hit) return hit;
  let corpus = await loadBrownCorpus();
  if (categories.length) corpus = corpus.filter(categories);
  const tok = new ByteTokenizer();
  const r = {
    train: tok.encode(corpus.text("train")),
    validation: tok.encode(corpus.text("validation")),
  };
  encodedCache.set(key, r);
  return r;
}

function splitWindows(
  windows: Uint32Array,
  b: number,
  t: number,
): { ids: Uint32Array; targets: Uint32Array } {
  const ids = new Uint32Array(b * t), targets = new Uint32Array(b * t);
  for (let i = 0; i < b; i++) {
    const w = windows.subarray(i * (t + 1), (i + 1) * (t + 1));
    ids.set(w.subarray(0, t), i * t);
    targets.set(w.subarray(1), i * t);
  }
  return { ids, targets };
}

function splitBatch(
  dev: Device,
  windows: Uint32Array,
  b: number,
  t: number,
): { ids: Tensor<"u32">; targets: Tensor<"u32"> } {
  const { ids, targets } = splitWindows(windows, b, t);
  return { ids: dev.tensor(ids, [b, t], "u32"), targets: dev.tensor(targets, [b, t], "u32") };
}

/**
 * Validation loss over a fixed set: mean over windows and the standard error over batches.
 *
 * @param model The model.
 * @param val The validation windows.
 * @param batchSize Windows per forward.
 * @returns Mean loss, standard error, batch count.
 *
 * @example An untrained model is near ln 256
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { modelConfig, TransformerLM } from "@qsparse/kit/nn";
 * import { evaluate, ValidationSet } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using model = new TransformerLM(dev, modelConfig("xxs", { seqLen: 8 }), 1);
 * const tokens = new Uint32Array(90).map((_, i) => (i * 7) % 256);
 * const val = new ValidationSet(tokens, { seqLen: 8 }); // 10 windows of 9 tokens
 * const r = await evaluate(model, val, 4);
 * assert.equal(r.batches, 3);
 * assert.ok(Math.abs(r.loss - Math.log(256)) < 0.1);
 * ```
 */
export async function evaluate(
  model: TransformerLM,
  val: ValidationSet,
  batchSize: number,
): Promise<{ loss: number; stderr: number; batches: number }> {
  const dev = model.device;
  const t = val.seqLen;
  const losses: Tensor<"f32">[] = [];
  const sizes: number[] = [];
  noGrad(() => {
    for (const w of val.batches(batchSize)) {
      const b = w.length / (t + 1);
      scope(() => {
        const { ids, targets } = splitBatch(dev, w, b, t);
        const logits = model.forward(ids);
        losses.push(
          keep(
            crossEntropy(logits.reshape([-1, model.config.vocab]), targets.reshape([-1]), {
              reduction: "mean",
            }),
          ),
        );
      });
      sizes.push(b);
    }
  });
  const all = concat(losses.map((l) => l.reshape([1])));
  const xs = Array.from(await all.data());
  all.dispose();
  losses.forEach((l) => l.dispose());
  const n = sizes.reduce((a, b) => a + b, 0);
  const mean = xs.reduce((a, v, i) => a + v * sizes[i]!, 0) / n;
  const nb = xs.length;
  const bm = xs.reduce((a, v) => a + v, 0) / nb;
  const sd = nb > 1 ? Math.sqrt(xs.reduce((a, v) => a + (v - bm) ** 2, 0) / (nb - 1)) : 0;
  return { loss: mean, stderr: sd / Math.sqrt(nb), batches: nb };
}

/**
 * Fields of two configs that differ (dotted paths).
 *
 * @param a One config (any JSON-like value).
 * @param b The other.
 * @param prefix Path prepended to every reported field.
 * @returns The dotted paths whose values differ (`"(root)"` when two scalars differ).
 *
 * @example
 * ```ts
 * import { modelConfig } from "@qsparse/kit/nn";
 * import { configDiff, trainConfig } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const a = trainConfig(modelConfig("tiny"), { steps: 10 });
 * const b = trainConfig(modelConfig("tiny", { sparsity: 0.5 }), { steps: 20 });
 * assert.deepEqual(configDiff(a, b), [
 *   "steps",
 *   "model.sparsity.qkv",
 *   "model.sparsity.o",
 *   "model.sparsity.gateUp",
 *   "model.sparsity.down",
 * ]);
 * assert.deepEqual(configDiff(a, a), []);
 * ```
 */
export function configDiff(a: unknown, b: unknown, prefix = ""): string[] {
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) {
    return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix || "(root)"];
  }
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  const out: string[] = [];
  for (const k of keys) {
    out.push(
      ...configDiff(
        (a as Record<string, unknown>)[k],
        (b as Record<string, unknown>)[k],
        prefix ? `${prefix}.${k}` : k,
      ),
    );
  }
  return out;
}

/**
 * Starts `model` from the weights at `path`: a kit checkpoint (file or run directory) or a
 * Llama-style folder (`config.json` + `model.safetensors`, e.g. one PyTorch wrote). The model's own
 * config decides sparsity and the rest, so a dense folder can seed Q-Sparse continued training.
 */
async function initWeights(model: TransformerLM, path: string): Promise<void> {
  let dir = false;
  try {
    dir = (await Deno.stat(path)).isDirectory;
  } catch {
    dir = false; // a missing path fails below with the checkpoint reader's error naming it
  }
  const has = (f: string) => Deno.stat(`${path}/${f}`).then(() => true, () => false);
  if (dir && !(await has("checkpoint.safetensors")) && (await has("model.safetensors"))) {
    using src = await importHf(model.device, path);
    const theirs = new Map(src.namedParameters());
    for (const [name, p] of model.namedParameters()) {
      const t = theirs.get(name);
      if (!t || t.size !== p.size) {
        throw new ValueError(
          "train",
          `initFrom ${path}: ${name} is ${t ? `[${t.shape}]` : "missing"} there, [${p.shape}] here`,
        );
      }
      model.setParameter(name, (await t.data()) as Float32Array);
    }
    return;
  }
  const file = dir ? `${path}/checkpoint.safetensors` : path;
  loadWeights(model, await loadCheckpoint(file), file);
}

/**
 * Trains a model. Resumable: with `hooks.out` and `hooks.resume`, a run continues from its last
 * checkpoint and ends exactly where an uninterrupted run would.
 *
 * @param device The device.
 * @param config The run (see {@link trainConfig}).
 * @param hooks Output directory, resume, logging.
 * @returns The result (also written to `out/result.json`).
 *
 * @example
 * ```ts ignore
 * import { openDevice } from "@qsparse/kit";
 * import { modelConfig } from "@qsparse/kit/nn";
 * import { train, trainConfig } from "@qsparse/kit/train";
 * const dev = await openDevice();
 * const r = await train(dev, trainConfig(modelConfig("tiny", { sparsity: 0.5 }), { steps: 50 }));
 * console.log(r.valLoss, r.sparsity?.overall, r.Na);
 * ```
 */
export async function train(
  device: Device,
  config: TrainConfig,
  hooks: TrainHooks = {},
): Promise<TrainResult> {
  const c = trainConfig(config.model, config);
  const out = hooks.out;
  const ckptPath = out ? `${out}/checkpoint.safetensors` : null;
  const logPath = out ? `${out}/log.jsonl` : null;
  const log: LogRecord[] = [];
  const view: ProgressView | null = typeof hooks.progress === "object"
    ? hooks.progress
    : hooks.progress
    ? progressView()
    : null;
  // What the progress line shows between log records (the loss is only read every logEvery).
  const shown: ProgressState = { step: 0, total: c.steps };
  const say = (text: string) => {
    if (view) view.message(text);
    else if (hooks.json) console.error(text);
  };
  const emit = async (r: LogRecord) => {
    log.push(r);
    hooks.onLog?.(r);
    if (logPath) await appendJsonLine(logPath, r);
    if (hooks.json) console.log(JSON.stringify(r));
    if (r.loss !== undefined) shown.loss = r.loss;
    if (r.valLoss !== undefined) shown.valLoss = r.valLoss;
    if (r.sparsity) shown.sparsity = r.sparsity.overall;
    if (r.routing) {
      const c = r.routing.collapsed;
      shown.warning = c.length ? `ROUTER COLLAPSE ${c.join(",")}` : undefined;
    }
    shown.step = r.step;
    view?.update(shown, true);
  };

  const useCapture = hooks.capture ??
    (device.kind === "webgpu" && !switchedOff("QSPARSE_CAPTURE"));
  const tuneAfterFirstStep = hooks.autotune ??
    (device.kind === "webgpu" && !isSoftwareAdapter({ description: device.description }));
  const data = await brownTokens(c.categories);
  const model = new TransformerLM(device, c.model, c.seed);
  const opt = new AdamW(device, model.namedParameters(), {
    beta1: c.betas[0],
    beta2: c.betas[1],
    weightDecay: c.weightDecay,
    clipNorm: c.clipNorm,
  });
  const batchSpec = { shape: [c.batchSize, c.model.seqLen], dtype: "u32" as const };
  const captured = useCapture
    ? captureStep(device, { ids: batchSpec, targets: batchSpec }, ({ ids, targets }) => {
      const loss = model.loss(ids, targets);
      backward(loss);
      opt.applyStep();
      model.zeroGrad();
      return { loss };
    })
    : null;
  // Sites count elements on the host; a replay runs no host code, so it adds what the recorded
  // step counted.
  const sites = model.sites();
  const expertSites = sites.filter((s): s is ExpertSite => s instanceof ExpertSite);
  const moes = model.layers.map((l) => l.ffn).filter((f) => f instanceof MoeFeedForward);
  // What counting a step adds on the host (site elements, MoE count launches), which the
  // sparsity report reads with the device counters.
  const hostCounts = () => [
    ...sites.map((s) => s.counter.elements),
    ...expertSites.map((s) => s.expertCounts),
    ...moes.map((f) => f.routerCounts),
  ];
  const addHostCounts = (d: number[]) => {
    sites.forEach((s, i) => (s.counter.elements += d[i]!));
    expertSites.forEach((s, i) => (s.expertCounts += d[sites.length + i]!));
    moes.forEach((f, i) => (f.routerCounts += d[sites.length + expertSites.length + i]!));
  };
  let stepHostCounts: number[] | null = null;
  let verified = false;
  const val = new ValidationSet(data.validation, {
    seqLen: c.model.seqLen,
    maxWindows: c.evalWindows,
  });
  // Chunk-level sparsity probe: the first validation batch, fixed for the whole run.
  const chunkSizes = hooks.chunkSizes ?? DEFAULT_CHUNK_SIZES;
  const probe: { ids: Tensor<"u32"> | null } = { ids: null };
  const probeChunks = async (): Promise<ChunkSparsityReport | null> => {
    if (chunkSizes.length === 0) return null;
    if (!probe.ids) {
      const w = val.batches(c.batchSize).next().value!;
      const b = w.length / (c.model.seqLen + 1);
      const { ids, targets } = splitBatch(device, w, b, c.model.seqLen);
      targets.dispose();
      probe.ids = keep(ids);
    }
    return await measureChunkSparsity(model, probe.ids, chunkSizes);
  };
  let state: TrainState = {
    step: 0,
    sampler: { seed: c.seed, step: 0 },
    generator: { ...device.generator },
    tokens: 0,
    elapsed: 0,
  };

  try {
    let resumed = false;
    if (out) {
      if (hooks.force && hooks.resume) {
        throw new ValueError("train", "force (restart the run) and resume exclude each other");
      }
      await Deno.mkdir(out, { recursive: true });
      if (hooks.force) {
        for (const f of ["checkpoint.safetensors", "log.jsonl", "result.json", "config.json"]) {
          await Deno.remove(`${out}/${f}`).catch((e) => {
            if (!(e instanceof Deno.errors.NotFound)) throw e;
          });
        }
      }
      let exists = false;
      try {
        await Deno.stat(ckptPath!);
        exists = true;
      } catch { /* no checkpoint yet */ }
      if (exists && hooks.resume) {
        const ck = await loadCheckpoint(ckptPath!);
        // More steps than the checkpoint's run is an extension (the cosine schedule is then
        // stretched to the new total); every other difference would silently mix two runs.
        const diff = configDiff(ck.config, c).filter((k) => k !== "steps");
        if (diff.length) {
          throw new ValueError(
            "train",
            `cannot resume ${out}: config differs in ${diff.join(", ")}`,
          );
        }
        if (ck.state.step > c.steps) {
          throw new ValueError(
            "train",
            `cannot resume ${out} with steps ${c.steps}: its checkpoint is at step ${ck.state.step}`,
          );
        }
        const before = (ck.config as { steps?: number } | null)?.steps;
        loadWeights(model, ck, ckptPath!);
        loadOptimizer(opt, ck, ckptPath!);
        state = ck.state;
        device.generator.seed = state.generator.seed;
        device.generator.offset = state.generator.offset;
        resumed = true;
        if (before !== undefined && before !== c.steps) {
          say(
            `extending ${out} from ${before} to ${c.steps} steps (resuming from step ${state.step})`,
          );
          await atomicWriteFile(`${out}/config.json`, JSON.stringify(c, null, 2) + "\n");
          // The old result no longer describes the run; a crash must not leave it as "finished".
          await Deno.remove(`${out}/result.json`).catch(() => {});
        } else say(`resuming ${out} from step ${state.step} of ${c.steps}`);
        // Drop log lines written after this checkpoint (the resumed run writes them again) and
        // the old "done" record of a run being extended.
        if (logPath) {
          try {
            const lines = (await Deno.readTextFile(logPath)).split("\n").filter((l) => l.trim());
            const kept = lines.filter((l) => {
              const r = JSON.parse(l) as LogRecord;
              return r.step <= state.step && r.kind !== "done";
            });
            await atomicWriteFile(logPath, kept.map((l) => l + "\n").join(""));
            for (const l of kept) log.push(JSON.parse(l));
          } catch { /* no log yet */ }
        }
      } else if (exists && !hooks.resume) {
        throw new ValueError(
          "train",
          `${out} already holds a checkpoint; pass resume to continue it (or extend it to more ` +
            `steps), force to restart it, or choose another out`,
        );
      } else {
        await atomicWriteFile(`${out}/config.json`, JSON.stringify(c, null, 2) + "\n");
        if (logPath) await atomicWriteFile(logPath, "");
      }
    }
    if (!resumed && c.initFrom) await initWeights(model, c.initFrom);

    const sampler = new BatchSampler(data.train, {
      batchSize: c.batchSize,
      seqLen: c.model.seqLen,
      seed: state.sampler.seed,
      step: state.sampler.step,
    });
    const tokensPerStep = c.batchSize * c.model.seqLen;
    let lossSum: Tensor<"f32"> | null = null;
    let lossCount = 0;
    let lastLog = performance.now(), lastTokens = state.tokens;
    const startElapsed = state.elapsed, t0 = performance.now();
    let lastTrainLoss = NaN;
    let stepsThisCall = 0;
    const elapsed = () => startElapsed + (performance.now() - t0) / 1000;
    // Speed and ETA leave out this invocation's first step: it pays the one-time pipeline
    // compilation (seconds on WebGPU), which would make a short run look slow.
    let steadyFrom = 0, steadySteps = 0;
    let firstWindowAt: number | null = null;
    let steadyMs = 0, steadyTokens = 0;
    // WebGPU is checked when the loss is read back (every logEvery steps): a per-step readback
    // would stall the queue. A captured step updates the weights inside it, so it is checked
    // at log points too.
    const eagerCheck = device.kind !== "webgpu" && !useCapture;

    // The last log point's record, still reading back (see the log point below).
    let pendingLog: Promise<void> | null = null;
    const settleLog = async () => {
      const p = pendingLog;
      pendingLog = null;
      if (p) await p;
    };

    const checkpoint = async () => {
      if (!ckptPath) return;
      // A checkpoint is written only after the last window's metrics were checked finite.
      await settleLog();
      await saveCheckpoint(ckptPath, model, opt, {
        ...state,
        sampler: sampler.state,
        generator: { ...device.generator },
        elapsed: elapsed(),
      }, c);
    };

    while (state.step < c.steps) {
      if (hooks.stopAfter !== undefined && stepsThisCall >= hooks.stopAfter) break;
      const windows = sampler.next();
      const lr = cosineLr(
        { lr: c.lr, warmup: c.warmup, total: c.steps, minLr: c.minLr },
        state.step + 1,
      );
      if (captured) {
        // Step values go to the device outside the recorded function, so replays see them.
        opt.prepareStep(lr);
        const data = splitWindows(windows, c.batchSize, c.model.seqLen);
        const before = hostCounts();
        let loss: Tensor<"f32">;
        if (!captured.captured) {
          // Warm-up, then the recorded run: both ordinary code.
          loss = captured.run(data).loss;
          if (captured.captured) stepHostCounts = hostCounts().map((n, i) => n - before[i]!);
        } else if (!verified) {
          // Ordinary code once more, compared with the recording: a per-step uniform throws.
          loss = captured.verify(data).loss;
          verified = true;
        } else {
          // A replay runs no op code: the host-side counts it would have made are added here.
          loss = captured.run(data).loss;
          addHostCounts(stepHostCounts!);
        }
        scope(() => {
          const prev: Tensor<"f32"> | null = lossSum;
          lossSum = keep(noGrad(() => (prev ? add(prev, loss) : mulScalar(loss, 1))));
          prev?.dispose();
        });
        loss.dispose();
      } else {
        const loss = scope(() => {
          const { ids, targets } = splitBatch(device, windows, c.batchSize, c.model.seqLen);
          const loss = model.loss(ids, targets);
          backward(loss);
          return keep(loss);
        });
        if (eagerCheck) {
          // On host backends a readback is nearly free, so every step's loss is checked before
          // the update: the weights are then still those that produced the non-finite value.
          const [v] = await loss.data();
          if (!Number.isFinite(v!)) {
            loss.dispose();
            throw await divergence(opt, state.step + 1, v!, { beforeUpdate: true });
          }
        }
        scope(() => {
          opt.step(lr);
          model.zeroGrad();
          const prev: Tensor<"f32"> | null = lossSum;
          lossSum = keep(noGrad(() => (prev ? add(prev, loss) : mulScalar(loss, 1))));
          prev?.dispose();
        });
        loss.dispose();
      }
      lossCount++;
      state.step++;
      stepsThisCall++;
      state.tokens += tokensPerStep;
      if (stepsThisCall === 1) {
        if (tuneAfterFirstStep) await device.autotune();
        steadyFrom = performance.now();
      } else steadySteps++;
      if (view) {
        const secs = (performance.now() - steadyFrom) / 1000;
        shown.step = state.step;
        if (steadySteps > 0 && secs > 0) {
          shown.tokensPerSecond = (steadySteps * tokensPerStep) / secs;
          shown.etaSeconds = ((c.steps - state.step) * secs) / steadySteps;
        }
        view.update(shown);
      }

      if (state.step % c.logEvery === 0 || state.step === c.steps) {
        // The window's metrics are read back without waiting: every read is issued now (one
        // device sync for all) and the record is finished when the next log point, an
        // evaluation, a checkpoint or the end of the run awaits it. An awaited readback costs
        // ≥ 10 ms on Deno's WebGPU whatever the adapter; by the next log point the device has
        // long finished and the await returns at once.
        await settleLog();
        const sum = lossSum as unknown as Tensor<"f32">;
        const reads = Promise.all([sum.data(), opt.gradNorm.data(), opt.sqGradNorms.data()]);
        sum.dispose();
        lossSum = null;
        const sparsityRead = measureSparsity(model);
        const chunkRead = probeChunks();
        const at = { step: state.step, tokens: state.tokens, windowSteps: lossCount };
        lossCount = 0;
        const now = performance.now();
        const tokensPerSecond = ((state.tokens - lastTokens) * 1000) / (now - lastLog);
        // Steady-state speed: windows after the first, whose time includes compilation.
        if (firstWindowAt === null) {
          firstWindowAt = now;
        } else {
          steadyMs += now - lastLog;
          steadyTokens += state.tokens - lastTokens;
        }
        const wall = elapsed();
        pendingLog = (async () => {
          const [[lossTotal], g, sq] = await reads;
          const sp = await sparsityRead;
          const cs = await chunkRead;
          // Gradient L2 norm of every projection weight (the paper's Fig. 2 compares these per
          // layer with and without the STE).
          const gradNorms: Record<string, number> = {};
          [...opt.params.keys()].forEach((name, i) => {
            if (name.endsWith("_proj.weight")) {
              gradNorms[name.slice(0, -".weight".length)] = Math.sqrt(sq[i]!);
            }
          });
          const windowLoss = lossTotal! / at.windowSteps;
          if (!Number.isFinite(windowLoss) || !Number.isFinite(g[0]!)) {
            throw await divergence(opt, at.step, windowLoss, {
              windowStart: at.step - at.windowSteps + 1,
              gradNorm: g[0]!,
              sqGradNorms: sq,
              laterSteps: state.step - at.step,
            });
          }
          lastTrainLoss = windowLoss;
          await emit({
            kind: "train",
            step: at.step,
            tokens: at.tokens,
            loss: windowLoss,
            lr,
            gradNorm: g[0],
            gradNorms,
            tokensPerSecond,
            elapsed: wall,
            ...(sp ? { sparsity: { perSite: sp.perSite, overall: sp.overall, Na: sp.Na } } : {}),
            ...(sp?.routing ? { routing: routingRecord(sp.routing) } : {}),
            ...(cs ? { chunkSparsity: chunkRecord(cs) } : {}),
          });
        })();
        // A rejection is handled where it is awaited; until then it must not count as unhandled.
        pendingLog.catch(() => {});
        // Host backends read back at once: nothing to overlap, and the record is shown now.
        if (eagerCheck) await settleLog();
        lastLog = performance.now();
        lastTokens = state.tokens;
      }
      if (c.evalEvery > 0 && state.step % c.evalEvery === 0 && state.step < c.steps) {
        await settleLog();
        const ev = await evaluate(model, val, c.batchSize);
        await measureSparsity(model); // drop eval counts from the training window
        await emit({
          kind: "eval",
          step: state.step,
          tokens: state.tokens,
          valLoss: ev.loss,
          valStderr: ev.stderr,
          elapsed: elapsed(),
        });
        lastLog = performance.now();
      }
      if (c.checkpointEvery > 0 && state.step % c.checkpointEvery === 0 && state.step < c.steps) {
        await checkpoint();
      }
    }
    await settleLog();
    if (state.step < c.steps) {
      // Stopped early on request: leave a checkpoint to resume from.
      await checkpoint();
      throw new ValueError(
        "train",
        `stopped after ${stepsThisCall} steps at step ${state.step} of ${c.steps} (stopAfter)`,
      );
    }

    await measureSparsity(model);
    const ev = await evaluate(model, val, c.batchSize);
    const sp = await measureSparsity(model);
    if (!Number.isFinite(ev.loss)) {
      throw await divergence(opt, state.step, ev.loss, { what: "validation loss" });
    }
    if (Number.isNaN(lastTrainLoss)) {
      lastTrainLoss = [...log].reverse().find((r) => r.kind === "train")?.loss ?? NaN;
    }
    await emit({
      kind: "done",
      step: state.step,
      tokens: state.tokens,
      valLoss: ev.loss,
      valStderr: ev.stderr,
      elapsed: elapsed(),
    });
    await checkpoint();
    const finalChunks = await probeChunks();
    const counts = model.params();
    const wall = elapsed();
    const result: TrainResult = {
      config: c,
      valLoss: ev.loss,
      valStderr: ev.stderr,
      trainLoss: lastTrainLoss,
      sparsity: sp,
      ...(finalChunks ? { chunkSparsity: finalChunks } : {}),
      N: counts.nonEmbedding,
      Na: sp ? sp.Na : counts.nonEmbedding,
      tokens: state.tokens,
      wallSeconds: wall,
      tokensPerSecond: state.tokens / Math.max(1e-9, wall),
      ...(steadyMs > 0 ? { steadyTokensPerSecond: (steadyTokens * 1000) / steadyMs } : {}),
      ...(firstWindowAt !== null ? { firstWindowSeconds: (firstWindowAt - t0) / 1000 } : {}),
      adapter: device.description,
      backend: device.kind,
      date: new Date().toISOString(),
      log,
    };
    if (out) await atomicWriteFile(`${out}/result.json`, JSON.stringify(result, null, 2) + "\n");
    return result;
  } finally {
    captured?.dispose();
    view?.end();
    probe.ids?.dispose();
    opt.dispose();
    model.dispose();
  }
}

/** The log's compact form of the router statistics. */
function routingRecord(r: RouterReport): NonNullable<LogRecord["routing"]> {
  return {
    load: r.layers.map((l) => l.load),
    loadEntropy: r.loadEntropy,
    dropped: r.dropped,
    collapsed: r.collapsed,
  };
}

/** The log's compact form of chunk-level sparsity: chunk size → overall untouched share. */
function chunkRecord(r: ChunkSparsityReport): Record<string, number> {
  return Object.fromEntries(r.chunkSizes.map((c, i) => [String(c), r.overall[i]!]));
}

/** Where {@link divergence} found the non-finite value. */
interface DivergenceSite {
  /** First step of the window the loss was averaged over (log-time detection). */
  windowStart?: number;
  /** Global gradient norm of the last step. */
  gradNorm?: number;
  /** Per-parameter squared gradient norms of the last step (optimizer order). */
  sqGradNorms?: Float32Array;
  /** Detected before the optimizer update: the parameters are the ones that produced it. */
  beforeUpdate?: boolean;
  /** What was non-finite (default "training loss"). */
  what?: string;
  /** Steps that ran after the window before its readback was checked (pipelined log reads). */
  laterSteps?: number;
}

/**
 * The error for a non-finite loss or gradient: names the step and the first non-finite gradient
 * and parameter in parameter order (read back only here, on the failure path). Parameters are
 * only named before the update: after it, a non-finite gradient has spread to all of them.
 */
async function divergence(
  opt: AdamW,
  step: number,
  loss: number,
  site: DivergenceSite,
): Promise<DivergenceError> {
  const names = [...opt.params.keys()];
  let grad: string | null = null;
  if (site.sqGradNorms) {
    const i = site.sqGradNorms.findIndex((v) => !Number.isFinite(v));
    if (i >= 0) grad = names[i]!;
  }
  let param: string | null = null;
  if (site.beforeUpdate) {
    for (const [name, p] of opt.params) {
      if (!grad && p.grad && (await p.grad.data()).some((v) => !Number.isFinite(v))) grad = name;
      if (!param && (await p.data()).some((v) => !Number.isFinite(v))) param = name;
    }
  }
  const w = site.windowStart;
  const window = w !== undefined && w < step ? ` (mean over steps ${w}–${step})` : "";
  const parts = [`non-finite ${site.what ?? "training loss"} ${loss} at step ${step}${window}`];
  if (site.laterSteps) parts.push(`seen after ${site.laterSteps} further steps`);
  if (site.gradNorm !== undefined && !Number.isFinite(site.gradNorm)) {
    parts.push(`gradient norm ${site.gradNorm}`);
  }
  if (site.beforeUpdate) parts.push(`first non-finite parameter: ${param ?? "none"}`);
  if (site.beforeUpdate || site.sqGradNorms) {
    parts.push(`first non-finite gradient: ${grad ?? "none"}`);
  }
  return new DivergenceError("train", parts.join("; "), step, param ?? grad);
}
