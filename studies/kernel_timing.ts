/**
 * Quick kernel timings for notebooks: top-K and N:M selection, sparse-activation × dense-weight
 * matmul against the dense matmul at several sparsities (one token: the decoding GEMV) and
 * against batch size. Every ratio is measured in one process, back to back, so it means
 * something on a shared, noisy machine; absolute times depend on the adapter, which the report
 * names. The bench scripts under bench/ are the careful version of the same measurements.
 *
 * @module
 */
import { matmul } from "../src/ops/matmul.ts";
import { spmm } from "../src/ops/spmm.ts";
import { keepCount, topkBlocks, topkRows } from "../src/ops/topk.ts";
import type { Device } from "../src/tensor/device.ts";
import { ValueError } from "../src/core/errors.ts";
import type { Tensor } from "../src/tensor/tensor.ts";

/** One timed case. */
export interface KernelTiming {
  /** What ran, e.g. `"spmm rows (top-K)"`, `"top-K select"`, `"spmm nm (16:32-style)"`. */
  kernel: string;
  /** Sparsity of the activations. */
  S: number;
  /** Rows (tokens) per multiply. */
  batch: number;
  /** Median milliseconds per call. */
  ms: number;
  /** Median milliseconds of the dense matmul of the same shape, in rounds interleaved with it. */
  denseMs: number;
  /** Median over rounds of dense time / this time (> 1: faster than dense). */
  speedup: number;
}

/** What {@link timeSparseKernels} measured, and where. */
export interface KernelTimingReport {
  /** Adapter description. */
  adapter: string;
  /** `webgpu` or `cpu`. */
  backend: string;
  /** Input width (rows of the weight `[dIn, dOut]`). */
  dIn: number;
  /** Output width. */
  dOut: number;
  /** ISO date. */
  date: string;
  /** The cases. */
  timings: KernelTiming[];
}

/** Options of {@link timeSparseKernels}. */
export interface KernelTimingOptions {
  /** Input width (a multiple of 32); default 1024. */
  dIn?: number;
  /** Output width; default 1024. */
  dOut?: number;
  /** Sparsities of the single-token sweep; default [0.5, 0.7, 0.8, 0.9]. */
  sparsities?: readonly number[];
  /** Batch sizes of the batch sweep; default [1, 4, 16, 64]. */
  batches?: readonly number[];
  /** Sparsity of the batch sweep; default 0.5 (Block Q-Sparse's 16:32). */
  batchSparsity?: number;
  /** Calls per submit (amortises the submit and readback); default 10. */
  iters?: number;
  /** Timed rounds, each dense then the case (medians taken), after one warm-up; default 5. */
  reps?: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Milliseconds per call of one round: `iters` calls encoded, one flush. */
async function roundMs(dev: Device, fn: () => Tensor[], iters: number): Promise<number> {
  const outs: Tensor[] = [];
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) outs.push(...fn());
  await dev.flush();
  const t = (performance.now() - t0) / iters;
  // Outputs are freed after the flush so no buffer is recycled while queued work still uses it.
  for (const o of outs) o.dispose();
  return t;
}

/**
 * A case against its dense baseline in interleaved rounds (dense, case, dense, case, ...), so
 * load from other processes hits both alike; the ratio is the median of per-round ratios, which
 * a slow spell during one round cannot bias. The first round only warms up.
 */
async function paired(
  dev: Device,
  dense: () => Tensor[],
  fn: () => Tensor[],
  iters: number,
  reps: number,
): Promise<{ ms: number; denseMs: number; speedup: number }> {
  const ms: number[] = [], dms: number[] = [], ratios: number[] = [];
  for (let r = 0; r <= reps; r++) {
    const d = await roundMs(dev, dense, iters);
    const t = await roundMs(dev, fn, iters);
    if (r === 0) continue;
    dms.push(d);
    ms.push(t);
    ratios.push(d / t);
  }
  return { ms: median(ms), denseMs: median(dms), speedup: median(ratios) };
}

/**
 * Times top-K selection, N:M selection and `spmm` against the dense `matmul` on `dev`: a
 * single-token sweep over sparsity (the decoding GEMV, where skipping weight rows pays) and a
 * batch sweep at one sparsity (where per-token top-K touches nearly every row somewhere in the
 * batch, and N:M keeps its fixed work per row).
 *
 * @param dev The device (its description goes into the report).
 * @param opts Shapes, sparsities, batch sizes, repetitions.
 * @returns The timings.
 * @throws {ValueError} For a `dIn` that is not a multiple of 32 or sparsities outside [0, 1).
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { timeSparseKernels } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * const r = await timeSparseKernels(dev, { dIn: 64, dOut: 32, sparsities: [0.5], batches: [1, 2], iters: 1, reps: 1 });
 * assert.ok(r.timings.every((t) => t.ms > 0 && t.speedup > 0));
 * ```
 */
export async function timeSparseKernels(
  dev: Device,
  opts: KernelTimingOptions = {},
): Promise<KernelTimingReport> {
  const op = "timeSparseKernels";
  const dIn = opts.dIn ?? 1024, dOut = opts.dOut ?? 1024;
  const sparsities = opts.sparsities ?? [0.5, 0.7, 0.8, 0.9];
  const batches = opts.batches ?? [1, 4, 16, 64];
  const batchS = opts.batchSparsity ?? 0.5;
  const iters = opts.iters ?? 10, reps = opts.reps ?? 5;
  if (dIn % 32 !== 0 || dIn <= 0 || dOut <= 0) {
    throw new ValueError(
      op,
      `dIn must be a positive multiple of 32 (N:M blocks of 32), got ${dIn}`,
    );
  }
  for (const S of [...sparsities, batchS]) {
    if (!(S >= 0 && S < 1)) throw new ValueError(op, `sparsities must be in [0, 1), got ${S}`);
  }
  const timings: KernelTiming[] = [];
  const w = dev.randn([dIn, dOut], { seed: 2, std: 0.05 });
  try {
    const rows = new Set([1, ...batches]);
    for (const batch of [...rows].sort((a, b) => a - b)) {
      const x = dev.randn([batch, dIn], { seed: 1 });
      const dense = (): Tensor[] => [matmul(x, w)];
      const time = async (kernel: string, S: number, fn: () => Tensor[]): Promise<void> => {
        const p = await paired(dev, dense, fn, iters, reps);
        timings.push({ kernel, S, batch, ...p });
      };
      try {
        for (const S of batch === 1 ? sparsities : []) {
          const k = keepCount(dIn, S), n = Math.round((1 - S) * 32);
          await time("top-K select", S, () => {
            const t = topkRows(x, k);
            return [t.values, t.indices];
          });
          await time(`N:M select (${n}:32)`, S, () => {
            const t = topkBlocks(x, n, 32);
            return [t.values, t.indices];
          });
          using a = topkRows(x, k);
          await time("spmm rows (top-K)", S, () => [spmm(a, w, { kernel: "rows" })]);
          using b = topkBlocks(x, n, 32);
          await time("spmm N:M", S, () => [spmm(b, w, { kernel: "nm" })]);
          await time("top-K + spmm", S, () => {
            const t = topkRows(x, k);
            return [t.values, t.indices, spmm(t, w, { kernel: "rows" })];
          });
        }
        if (batches.includes(batch)) {
          // Selection included, as a layer would run it: per-token top-K then the auto kernel,
          // and N:M selection then the N:M kernel.
          const k = keepCount(dIn, batchS), n = Math.round((1 - batchS) * 32);
          await time("top-K + spmm auto, batch", batchS, () => {
            const t = topkRows(x, k);
            return [t.values, t.indices, spmm(t, w)];
          });
          await time(`N:M ${n}:32 + spmm, batch`, batchS, () => {
            const t = topkBlocks(x, n, 32);
            return [t.values, t.indices, spmm(t, w, { kernel: "nm" })];
          });
        }
      } finally {
        x.dispose();
      }
    }
  } finally {
    w.dispose();
  }
  return {
    adapter: dev.description,
    backend: dev.kind,
    dIn,
    dOut,
    date: new Date().toISOString(),
    timings,
  };
}

/** Speed-up series for the plot builders (`speedupVsSparsity`, `speedupVsBatch`). */
export interface SpeedupSeries {
  /** Single-token cases per kernel: sparsity → dense/sparse time. */
  vsSparsity: { name: string; sparsity: number[]; speedup: number[] }[];
  /** Batch cases per kernel: batch size → dense/sparse time. */
  vsBatch: { name: string; batchSizes: number[]; speedup: number[] }[];
}

/**
 * Groups a report's multiply timings into speed-up series (selection-only cases are left out:
 * they have no dense counterpart).
 *
 * @param report From {@link timeSparseKernels} (or a bench file in the same format).
 * @returns Series by kernel.
 *
 * @example
 * ```ts
 * import { speedupSeries } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const t = (kernel: string, S: number, batch: number) => ({ kernel, S, batch, ms: 1, denseMs: 2, speedup: 2 });
 * const s = speedupSeries({ adapter: "x", backend: "cpu", dIn: 64, dOut: 64, date: "", timings: [t("spmm rows (top-K)", 0.5, 1), t("spmm N:M, batch", 0.5, 4)] });
 * assert.deepEqual(s.vsSparsity[0], { name: "spmm rows (top-K)", sparsity: [0.5], speedup: [2] });
 * assert.equal(s.vsBatch[0]!.name, "spmm N:M, batch (S = 50%)");
 * ```
 */
export function speedupSeries(report: KernelTimingReport): SpeedupSeries {
  const vsSparsity = new Map<string, { sparsity: number[]; speedup: number[] }>();
  const vsBatch = new Map<string, { batchSizes: number[]; speedup: number[] }>();
  for (const t of report.timings) {
    if (t.kernel.endsWith("select") || /select \(/.test(t.kernel)) continue;
    if (t.kernel.endsWith(", batch")) {
      const name = `${t.kernel} (S = ${Math.round(100 * t.S)}%)`;
      const s = vsBatch.get(name) ?? { batchSizes: [], speedup: [] };
      s.batchSizes.push(t.batch);
      s.speedup.push(t.speedup);
      vsBatch.set(name, s);
    } else {
      const s = vsSparsity.get(t.kernel) ?? { sparsity: [], speedup: [] };
      s.sparsity.push(t.S);
      s.speedup.push(t.speedup);
      vsSparsity.set(t.kernel, s);
    }
  }
  return {
    vsSparsity: [...vsSparsity].map(([name, s]) => ({ name, ...s })),
    vsBatch: [...vsBatch].map(([name, s]) => ({ name, ...s })),
  };
}

/** A JSON file of a bench folder. */
export interface BenchFile {
  /** File name (without folder). */
  file: string;
  /** The parsed content. */
  data: unknown;
  /** The content as a {@link KernelTimingReport} when it has that shape, else null. */
  report: KernelTimingReport | null;
}

/**
 * Reads every `*.json` file of a bench results folder (missing folder: none). Files in the
 * {@link KernelTimingReport} shape (an object with a `timings` array) are recognised, so a
 * notebook can plot them; others are returned parsed, to be shown as tables.
 *
 * @param dir E.g. `../results/bench` from the notebooks folder.
 * @returns The files, sorted by name.
 *
 * @example
 * ```ts
 * import { readBenchFiles } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.deepEqual(await readBenchFiles("/nonexistent-bench-dir"), []);
 * ```
 */
export async function readBenchFiles(dir: string): Promise<BenchFile[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && e.name.endsWith(".json")) names.push(e.name);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  names.sort();
  const out: BenchFile[] = [];
  for (const file of names) {
    let data: unknown;
    try {
      data = JSON.parse(await Deno.readTextFile(`${dir}/${file}`));
    } catch {
      continue; // a file being rewritten by a running bench; the next read sees it whole
    }
    const timings = (data as { timings?: unknown } | null)?.timings;
    const report = Array.isArray(timings) &&
        timings.every((t) =>
          t && typeof t.kernel === "string" && typeof t.speedup === "number" &&
          typeof t.S === "number" && typeof t.batch === "number"
        )
      ? data as KernelTimingReport
      : null;
    out.push({ file, data, report });
  }
  return out;
}
