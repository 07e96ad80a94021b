/**
 * The sweep runner: runs a list of training runs, appending one JSON line per finished run to a
 * results file. Re-running skips finished runs and resumes partial ones from their checkpoints,
 * and `shard` splits a grid across processes or machines (a Slurm array, a CI matrix) with no
 * coordination beyond the shared results file and runs folder. A run whose config is identical
 * to one another study already finished on the same adapter is recorded from that run instead
 * of trained again (training is deterministic per adapter, so it would give the same numbers).
 *
 * @module
 */
import type { ModelConfig } from "../nn/config.ts";
import type { RouterReport } from "./router_stats.ts";
import type { Device } from "../tensor/device.ts";
import { DivergenceError, ValueError } from "../core/errors.ts";
import { train, type TrainConfig, type TrainResult } from "./trainer.ts";
import { appendJsonLine } from "../util/fs.ts";
import { codeVersion } from "../util/version.ts";

/** One run of a sweep. */
export interface RunSpec {
  /** Unique, filesystem-safe id within the study (e.g. `s-S0.5-seed1`). */
  id: string;
  /** The study it belongs to (e.g. `sparsity_vs_loss`). */
  study: string;
  /** The full training config. */
  config: TrainConfig;
  /** Free-form labels for plotting (size, S, variant, seed, arm...). */
  tags: Record<string, string | number | boolean | null>;
  /** Run only after these runs (same study) finished, e.g. fine-tuning after pretraining. */
  after?: string[];
}

/** One line of a results file. */
export interface RunRecord {
  /** The run's id ({@link RunSpec.id}); unique within its study. */
  id: string;
  /** The study the run belongs to ({@link RunSpec.study}). */
  study: string;
  /** The run's plotting labels, copied from its {@link RunSpec.tags}. */
  tags: RunSpec["tags"];
  /** The full training config the run used (defaults filled in). */
  config: TrainConfig;
  /** Final validation loss and its standard error over validation batches. */
  valLoss: number;
  /** Standard error of the final `valLoss` over the validation batches. */
  valStderr: number;
  /** Mean training loss over the last log window. */
  trainLoss: number;
  /** Achieved sparsity per site kind and overall (validation set). */
  sparsity: {
    perSite: Record<string, number>;
    overall: number;
    sites: { name: string; sparsity: number }[];
  } | null;
  /** Non-embedding parameters of the model. */
  N: number;
  /** Activated non-embedding parameters per token, measured on the validation set. */
  Na: number;
  /** Training tokens processed: steps × batchSize × seqLen. */
  tokens: number;
  /** Wall-clock seconds of training, summed across resumes. */
  wallSeconds: number;
  /** Mean throughput of the run: `tokens / wallSeconds`. */
  tokensPerSecond: number;
  /** The adapter description of the device the run trained on. */
  adapter: string;
  /** The backend kind, `"webgpu"` or `"cpu"`. */
  backend: string;
  /** Git revision of the code at sweep start (see {@link codeVersion}), `-dirty` if modified. */
  codeVersion: string;
  /** When the run finished, as an ISO 8601 timestamp. */
  date: string;
  /** Training-loss curve: (step, tokens, loss) per log window. */
  curve: { step: number; tokens: number; loss: number }[];
  /** Periodic validation losses. */
  evals: { step: number; tokens: number; valLoss: number; valStderr: number }[];
  /** Sparsity over training: overall and per site kind per log window. */
  sparsityCurve: { step: number; overall: number; perSite: Record<string, number> }[];
  /**
   * Mean gradient L2 norm of each projection weight over the run's log windows (e.g.
   * `layers.0.attn.q_proj`), when the trainer logged them (older results have none).
   */
  gradNorms?: Record<string, number>;
  /** MoE runs: final router statistics on the validation set (per-layer load, entropy, drops). */
  routing?: RouterReport;
  /** MoE runs: mean load entropy and dropped share per log window (balance over training). */
  routingCurve?: { step: number; loadEntropy: number; dropped: number; collapsed: string[] }[];
  /**
   * Chunk-level sparsity at the end (untouched share of the weights for the union of the masks
   * of consecutive tokens), overall and per site kind, one value per chunk size.
   */
  chunkSparsity?: { chunkSizes: number[]; overall: number[]; perSite: Record<string, number[]> };
  /** Chunk-level sparsity (overall, by chunk size) per log window. */
  chunkCurve?: { step: number; overall: Record<string, number> }[];
  /** `<study>/<id>` of the identical run this record was copied from (see `SweepOptions.reuse`). */
  reusedFrom?: string;
}

/** Which part of a grid this process runs: runs whose index ≡ `index` (mod `count`). */
export interface Shard {
  /** This process's 0-based shard index, in `[0, count)`. */
  index: number;
  /** Total number of shards the grid is split into. */
  count: number;
}

/**
 * Parses `i/n` (1-based `i`, as job arrays number tasks) into a {@link Shard}.
 *
 * @param s E.g. `"2/4"`.
 * @returns The shard (0-based index).
 *
 * @example
 * ```ts
 * import { parseShard } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseShard("2/4"), { index: 1, count: 4 });
 * assert.throws(() => parseShard("5/4"), /shard/);
 * ```
 */
export function parseShard(s: string): Shard {
  const m = /^(\d+)\/(\d+)$/.exec(s.trim());
  const i = m ? Number(m[1]) : NaN, n = m ? Number(m[2]) : NaN;
  if (!m || n < 1 || i < 1 || i > n) {
    throw new ValueError("parseShard", `shard must be i/n with 1 ≤ i ≤ n, got "${s}"`);
  }
  return { index: i - 1, count: n };
}

/**
 * A results line for a run that stopped on a non-finite loss or gradient (a
 * {@link DivergenceError}): recorded so a re-run does not train it again, never mixed with the
 * finished runs that {@link readResults} returns.
 */
export interface DivergedRecord {
  /** The run's id ({@link RunSpec.id}). */
  id: string;
  /** The study the run belongs to. */
  study: string;
  /** The run's plotting labels. */
  tags: RunSpec["tags"];
  /** The full training config. */
  config: TrainConfig;
  /** Where it diverged: the step, the first non-finite tensor, the error message. */
  diverged: { step: number; tensor: string | null; message: string };
  /** The adapter description of the device. */
  adapter: string;
  /** The backend kind. */
  backend: string;
  /** Git revision of the code. */
  codeVersion: string;
  /** When it diverged, ISO 8601. */
  date: string;
}

/** Both kinds of lines of a results file. */
export interface ResultsFile {
  /** Finished runs, in file order. */
  records: RunRecord[];
  /** Runs that diverged, in file order. */
  diverged: DivergedRecord[];
}

/** Options of {@link readResults} and {@link readResultsFile}. */
export interface ReadResultsOptions {
  /** A missing file reads as empty instead of throwing (a sweep that has not started yet). */
  missingOk?: boolean;
}

function badLine(path: string, line: number, why: string): ValueError {
  return new ValueError("readResults", `${path}:${line}: ${why}`);
}

/**
 * Reads a results file, finished and diverged runs apart. Strict: a missing file is an error
 * naming the path (unless `missingOk`), and a line that is not a results record is an error
 * naming `file:line`. Only a torn last line (a writer killed mid-append: no newline after it) is
 * skipped, because that is the one damage a crash can do.
 *
 * @param path The `.jsonl` file.
 * @param opts `missingOk`: a missing file reads as empty.
 * @returns The finished and the diverged records.
 *
 * @example
 * ```ts
 * import { readResultsFile } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * try {
 *   const path = `${dir}/results.jsonl`;
 *   const run = { id: "a", study: "demo", tags: {}, valLoss: 2.5, N: 1000 };
 *   const bad = { id: "b", study: "demo", tags: {}, diverged: { step: 3, tensor: null, message: "NaN" } };
 *   await Deno.writeTextFile(path, JSON.stringify(run) + "\n" + JSON.stringify(bad) + "\n");
 *   const r = await readResultsFile(path);
 *   assert.deepEqual([r.records.length, r.diverged[0]!.diverged.step], [1, 3]);
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function readResultsFile(
  path: string,
  opts: ReadResultsOptions = {},
): Promise<ResultsFile> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      if (opts.missingOk) return { records: [], diverged: [] };
      throw new ValueError("readResults", `${path}: no such results file`);
    }
    if (e instanceof Deno.errors.IsADirectory) {
      throw new ValueError("readResults", `${path} is a directory, not a results file`);
    }
    throw e;
  }
  const out: ResultsFile = { records: [], diverged: [] };
  const lines = text.split("\n");
  // The index of the last line with content, and whether the writer finished it (newline).
  let last = lines.length - 1;
  while (last >= 0 && !lines[last]!.trim()) last--;
  const lastTorn = last === lines.length - 1;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (!line.trim()) continue;
    let rec: unknown;
    try {
      rec = JSON.parse(line);
    } catch (e) {
      if (i === last && lastTorn) continue; // a writer killed mid-line
      throw badLine(path, i + 1, `not JSON (${(e as Error).message})`);
    }
    const r = rec as Record<string, unknown>;
    if (r === null || typeof r !== "object" || Array.isArray(r)) {
      throw badLine(path, i + 1, "not a results record (not a JSON object)");
    }
    for (const k of ["id", "study"]) {
      if (typeof r[k] !== "string") {
        throw badLine(path, i + 1, `not a results record (no string "${k}")`);
      }
    }
    if (r.tags === null || typeof r.tags !== "object") {
      throw badLine(path, i + 1, `not a results record (no "tags" object)`);
    }
    if (r.diverged !== undefined) {
      out.diverged.push(r as unknown as DivergedRecord);
      continue;
    }
    for (const k of ["valLoss", "N"]) {
      if (typeof r[k] !== "number" || !Number.isFinite(r[k])) {
        throw badLine(
          path,
          i + 1,
          `run "${r.id}": "${k}" is ${JSON.stringify(r[k])}, not a finite number`,
        );
      }
    }
    out.records.push(r as unknown as RunRecord);
  }
  return out;
}

/**
 * Reads the finished runs of a results file (see {@link readResultsFile} for what is checked:
 * a missing file or a bad line other than a torn last one is an error naming the file).
 *
 * @param path The `.jsonl` file.
 * @param opts `missingOk`: a missing file reads as empty.
 * @returns The finished runs' records (diverged runs left out).
 *
 * @example A torn last line is skipped; a missing file is an error naming it
 * ```ts
 * import { readResults } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * try {
 *   const path = `${dir}/results.jsonl`;
 *   await assert.rejects(() => readResults(path), /results\.jsonl: no such results file/);
 *   assert.deepEqual(await readResults(path, { missingOk: true }), []);
 *   const a = { id: "a", study: "demo", tags: {}, valLoss: 2.5, N: 1000 };
 *   await Deno.writeTextFile(path, JSON.stringify(a) + '\n{"id":"b","stu');
 *   assert.deepEqual((await readResults(path)).map((r) => r.id), ["a"]);
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function readResults(
  path: string,
  opts: ReadResultsOptions = {},
): Promise<RunRecord[]> {
  return (await readResultsFile(path, opts)).records;
}

/** Per-projection gradient norms averaged over the log windows that recorded them. */
function meanGradNorms(r: TrainResult): { gradNorms?: Record<string, number> } {
  const logs = r.log.filter((l) => l.kind === "train" && l.gradNorms);
  if (!logs.length) return {};
  const sum: Record<string, number> = {};
  for (const l of logs) {
    for (const [k, v] of Object.entries(l.gradNorms!)) sum[k] = (sum[k] ?? 0) + v;
  }
  return {
    gradNorms: Object.fromEntries(Object.entries(sum).map(([k, v]) => [k, v / logs.length])),
  };
}

/**
 * Turns a finished training run into a results line.
 *
 * @param spec The run.
 * @param r What the trainer returned.
 * @param version The code version to stamp (see {@link codeVersion}).
 * @returns The record: the result's numbers plus curves drawn from its log.
 *
 * @example
 * ```ts
 * import { modelConfig } from "@qsparse/kit/nn";
 * import { toRecord, trainConfig, type TrainResult } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const config = trainConfig(modelConfig("tiny"), { steps: 20 });
 * const result: TrainResult = {
 *   config,
 *   valLoss: 2.5,
 *   valStderr: 0.01,
 *   trainLoss: 2.4,
 *   sparsity: null,
 *   N: 1000,
 *   Na: 1000,
 *   tokens: 20480,
 *   wallSeconds: 10,
 *   tokensPerSecond: 2048,
 *   adapter: "cpu",
 *   backend: "cpu",
 *   date: "2026-01-01T00:00:00.000Z",
 *   log: [
 *     { kind: "train", step: 10, tokens: 10240, loss: 3, elapsed: 5 },
 *     { kind: "done", step: 20, tokens: 20480, valLoss: 2.5, valStderr: 0.01, elapsed: 10 },
 *   ],
 * };
 * const spec = { id: "tiny-S0-seed1", study: "demo", config, tags: { S: 0 } };
 * const rec = toRecord(spec, result, "abc123");
 * assert.deepEqual(rec.curve, [{ step: 10, tokens: 10240, loss: 3 }]);
 * assert.deepEqual(rec.evals, [{ step: 20, tokens: 20480, valLoss: 2.5, valStderr: 0.01 }]);
 * assert.equal(rec.codeVersion, "abc123");
 * ```
 */
export function toRecord(spec: RunSpec, r: TrainResult, version: string): RunRecord {
  return {
    id: spec.id,
    study: spec.study,
    tags: spec.tags,
    config: r.config,
    valLoss: r.valLoss,
    valStderr: r.valStderr,
    trainLoss: r.trainLoss,
    sparsity: r.sparsity
      ? {
        perSite: r.sparsity.perSite,
        overall: r.sparsity.overall,
        sites: r.sparsity.sites.map((s) => ({ name: s.name, sparsity: s.sparsity })),
      }
      : null,
    N: r.N,
    Na: r.Na,
    tokens: r.tokens,
    wallSeconds: r.wallSeconds,
    tokensPerSecond: r.tokensPerSecond,
    adapter: r.adapter,
    backend: r.backend,
    codeVersion: version,
    date: r.date,
    curve: r.log.filter((l) => l.kind === "train").map((l) => ({
      step: l.step,
      tokens: l.tokens,
      loss: l.loss!,
    })),
    evals: r.log.filter((l) => l.kind === "eval" || l.kind === "done").map((l) => ({
      step: l.step,
      tokens: l.tokens,
      valLoss: l.valLoss!,
      valStderr: l.valStderr!,
    })),
    sparsityCurve: r.log.filter((l) => l.kind === "train" && l.sparsity).map((l) => ({
      step: l.step,
      overall: l.sparsity!.overall,
      perSite: l.sparsity!.perSite,
    })),
    ...meanGradNorms(r),
    // MoE and chunk-level accounting, when the trainer measured them (optional: older results
    // files and dense runs without chunk probes have none).
    ...(r.sparsity?.routing ? { routing: r.sparsity.routing } : {}),
    ...(r.log.some((l) => l.routing)
      ? {
        routingCurve: r.log.filter((l) => l.kind === "train" && l.routing).map((l) => ({
          step: l.step,
          loadEntropy: l.routing!.loadEntropy,
          dropped: l.routing!.dropped,
          collapsed: l.routing!.collapsed,
        })),
      }
      : {}),
    ...(r.chunkSparsity
      ? {
        chunkSparsity: {
          chunkSizes: r.chunkSparsity.chunkSizes,
          overall: r.chunkSparsity.overall,
          perSite: r.chunkSparsity.perSite,
        },
      }
      : {}),
    ...(r.log.some((l) => l.chunkSparsity)
      ? {
        chunkCurve: r.log.filter((l) => l.kind === "train" && l.chunkSparsity).map((l) => ({
          step: l.step,
          overall: l.chunkSparsity!,
        })),
      }
      : {}),
  };
}

/** Options of {@link runSweep}. */
export interface SweepOptions {
  /** The results file (one JSON line per finished run). */
  results: string;
  /** Folder of run directories (checkpoints, logs); `<runsDir>/<id>`. */
  runsDir: string;
  /** Run only this part of the grid. */
  shard?: Shard;
  /** Stop after this many runs finish in this call (for time-boxed jobs). */
  maxRuns?: number;
  /**
   * Other results files to reuse runs from: a run whose full config equals a finished record's
   * there, trained on the same backend and adapter, is recorded from it (with this run's id,
   * study and tags, and `reusedFrom`) instead of trained. Never for a run that other runs of
   * the grid depend on (`after`): they need its checkpoint in its own folder.
   */
  reuse?: string[];
  /** Only record runs from `reuse`; train nothing (e.g. after another study's sweep finished). */
  reuseOnly?: boolean;
  /**
   * Called before each run starts, after it finishes, for runs skipped or reused, and for a run
   * that diverged (now, or recorded as diverged by an earlier call: it is not trained again).
   */
  onRun?: (
    event: "start" | "done" | "skip" | "reuse" | "diverged",
    spec: RunSpec,
    record?: RunRecord,
    diverged?: DivergedRecord,
  ) => void;
  /** Print training progress. */
  progress?: boolean;
}

/**
 * Runs every unfinished run of `specs` (in this shard), resuming partial ones.
 *
 * @param device The device.
 * @param specs The grid, in a stable order (sharding is by index).
 * @param opts Results file, runs folder, shard.
 * @returns Records of every finished run of the grid (old and new), in grid order.
 *
 * @example
 * ```ts ignore
 * import { openDevice } from "@qsparse/kit";
 * import { runSweep } from "@qsparse/kit/train";
 * import { studyRuns } from "@qsparse/kit/studies";
 * const dev = await openDevice();
 * await runSweep(dev, studyRuns("sparsity_vs_loss", "smoke"), { results: "results/smoke.jsonl", runsDir: "runs" });
 * ```
 */
export async function runSweep(
  device: Device,
  specs: RunSpec[],
  opts: SweepOptions,
): Promise<RunRecord[]> {
  const ids = new Set<string>();
  for (const s of specs) {
    if (!/^[A-Za-z0-9._-]+$/.test(s.id)) {
      throw new ValueError("runSweep", `run id "${s.id}" must be filesystem-safe`);
    }
    if (ids.has(s.id)) throw new ValueError("runSweep", `duplicate run id "${s.id}"`);
    ids.add(s.id);
  }
  const version = await codeVersion();
  const dir = opts.results.includes("/")
    ? opts.results.slice(0, opts.results.lastIndexOf("/"))
    : ".";
  await Deno.mkdir(dir, { recursive: true });
  const key = (r: { study: string; id: string }) => `${r.study}/${r.id}`;
  const needed = new Set(specs.flatMap((s) => s.after ?? []));
  const pool = new Map<string, RunRecord>();
  for (const file of opts.reuse ?? []) {
    for (const r of await readResults(file, { missingOk: true })) {
      if (r.reusedFrom || r.backend !== device.kind || r.adapter !== device.description) continue;
      if (!pool.has(canonicalJson(r.config))) pool.set(canonicalJson(r.config), r);
    }
  }
  let finished = 0;
  for (let i = 0; i < specs.length; i++) {
    if (opts.shard && i % opts.shard.count !== opts.shard.index) continue;
    if (opts.maxRuns !== undefined && finished >= opts.maxRuns) break;
    const spec = specs[i]!;
    const file = await readResultsFile(opts.results, { missingOk: true });
    const done = new Map(file.records.map((r) => [key(r), r]));
    if (done.has(key(spec))) {
      opts.onRun?.("skip", spec, done.get(key(spec)));
      continue;
    }
    // Training is deterministic per adapter: a diverged run would diverge again.
    const failed = file.diverged.find((r) => key(r) === key(spec));
    if (failed) {
      opts.onRun?.("diverged", spec, undefined, failed);
      continue;
    }
    const missing = (spec.after ?? []).filter((a) => !done.has(`${spec.study}/${a}`));
    if (missing.length) {
      // Dependencies run in another shard or later; skip now, a re-run picks this up.
      opts.onRun?.("skip", spec);
      continue;
    }
    const twin = needed.has(spec.id) ? undefined : pool.get(canonicalJson(spec.config));
    if (twin) {
      const rec: RunRecord = {
        ...twin,
        id: spec.id,
        study: spec.study,
        tags: spec.tags,
        reusedFrom: key(twin),
      };
      await appendJsonLine(opts.results, rec);
      opts.onRun?.("reuse", spec, rec);
      continue;
    }
    if (opts.reuseOnly) continue;
    opts.onRun?.("start", spec);
    const out = `${opts.runsDir}/${spec.study}/${spec.id}`;
    let r: TrainResult;
    try {
      r = await train(device, spec.config, {
        out,
        resume: true,
        progress: opts.progress ?? false,
      });
    } catch (e) {
      if (!(e instanceof DivergenceError)) throw e;
      const rec: DivergedRecord = {
        id: spec.id,
        study: spec.study,
        tags: spec.tags,
        config: spec.config,
        diverged: { step: e.step, tensor: e.tensor, message: e.message },
        adapter: device.description,
        backend: device.kind,
        codeVersion: version,
        date: new Date().toISOString(),
      };
      await appendJsonLine(opts.results, rec);
      opts.onRun?.("diverged", spec, undefined, rec);
      continue;
    }
    const rec = toRecord(spec, r, version);
    // Another shard may have finished the same run meanwhile (a retried job); keep one line.
    const again = new Set((await readResults(opts.results, { missingOk: true })).map(key));
    if (!again.has(key(spec))) await appendJsonLine(opts.results, rec);
    finished++;
    opts.onRun?.("done", spec, rec);
  }
  const all = new Map(
    (await readResults(opts.results, { missingOk: true })).map((r) => [key(r), r]),
  );
  return specs.map((s) => all.get(key(s))).filter((r): r is RunRecord => r !== undefined);
}

/** JSON with object keys sorted at every level, so equal configs give equal strings. */
function canonicalJson(x: unknown): string {
  return JSON.stringify(
    x,
    (_k, v) =>
      v && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
        : v,
  );
}

/**
 * A model config's compact label for run ids, e.g. `s` or `s-bitnet`.
 *
 * @param m The model config.
 * @returns Its name, with `-bitnet` appended for BitNet b1.58 models.
 *
 * @example
 * ```ts
 * import { modelConfig } from "@qsparse/kit/nn";
 * import { modelLabel } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * assert.equal(modelLabel(modelConfig("s")), "s");
 * assert.equal(modelLabel(modelConfig("s", { bitnet: true })), "s-bitnet");
 * ```
 */
export function modelLabel(m: ModelConfig): string {
  return m.name + (m.bitnet ? "-bitnet" : "");
}
