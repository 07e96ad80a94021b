/**
 * The v2 grids: the experiments that can identify the inference-optimal sparsity S* (issue 13).
 * Three studies, each a `StudyName` of `studyRuns`, each writing `results/<study>.jsonl`:
 *
 * - **`lr_tuning`**: per size, peak LR ∈ {1, 2, 4, 8}·10⁻³ at S = 0 and S = 0.8, seed 1; the
 *   best rate per size goes to `results/lr_tuning_best.json` (`scripts/pick_lr.ts`), which the
 *   two grids below read when they are built.
 * - **`scaling_v2`**: sizes xxs (26.8K), tiny (94.5K), xs (332K), n853k (853K, built by
 *   `shapeForParams` so the sizes span 31.9× = 1.50 decades of N), S ∈ {0, .2, …, .9}, seeds 1–3,
 *   each size trained to 20 tokens per parameter capped at 6.65M tokens (the cap binds only for
 *   n853k: 7.8 tokens per parameter), LR tuned per size, warmup 5% of the steps.
 * - **`fixed_na`**: N_a = 332,448 (xs) held fixed, N = N_a / (1 − S) for S ∈ {0, .3, .45, .6, .75}
 *   (332K to 1.36M parameters, shapes from `shapeForParams`), seeds 1–3, every arm trained on the
 *   same 6.65M tokens: is there an interior optimum (`studies/fixed_na.ts`)?
 *
 * **Why these budgets (measured; docs/studies-v2.md has the full table).** Native backend with
 * the fast host kernels (main 455604a), batch 32 × 128, 2 cores shared with other agents (load
 * average 12–19), `bench/native_throughput.ts` (results/bench/native_throughput.json): training
 * runs at about 13K (xxs), 12K (tiny), 4.5K (xs), 2.0K (n853k) and 1.2K (n1359k) tokens per
 * CPU-second (median step, mean of S = 0 and S = .8). Planning with one CPU-second per wall
 * second (a 2-core machine given to the sweep, before any parallel speed-up; the wall rate under
 * today's load was 2–4× lower), one run of xxs takes 0.7 min (536K tokens), tiny 2.6 min (1.89M),
 * xs 24 min (6.65M), n853k 55 min (6.65M). A size's 27 cells (9 S × 3 seeds): xxs 0.3 h, tiny
 * 1.2 h, xs 9.7 h, n853k 22 h; fixed_na 12.5 h (its S = 0 and S = .6 arms are the xs S = 0 and
 * n853k S = .6 cells: identical configs, trained once); lr_tuning 3.1 h (xs and n853k tune on a
 * quarter of their budget). About 49 h in all (40 h at the least disturbed step's rate), which
 * is why n853k stops at 6.65M tokens, 7.8 per parameter (above the floor of 5 for cells that
 * enter the fit and the ~7 the simulation asks for at the largest size), instead of 20 per
 * parameter (17M tokens: 64 h more). `scripts/v2_arithmetic.ts` recomputes these numbers from a
 * fresh measurement.
 *
 * @module
 */
import { type ModelConfig, modelConfig, NAMED_SIZES, paramCounts } from "../src/nn/config.ts";
import { ValueError } from "../src/core/errors.ts";
import { type TrainConfig, trainConfig } from "../src/train/trainer.ts";
import type { RunRecord, RunSpec } from "../src/train/runner.ts";
import {
  bestLearningRates,
  lrFor,
  type LrTable,
  lrTablePath,
  type LrTuningGrid,
  readLrTable,
} from "./lr_tuning.ts";
import { modelForParams } from "./sizing.ts";

/** The v2 studies. */
export const V2_STUDIES = ["lr_tuning", "scaling_v2", "fixed_na"] as const;

/** A v2 study name. */
export type V2Study = typeof V2_STUDIES[number];

/** Settings of a v2 profile. */
export interface V2Settings {
  /** Sizes of the main grid and of LR tuning, smallest first: named sizes or `n<K>k`. */
  sizes: string[];
  /** Sparsities of the main grid. */
  sparsities: number[];
  /** Seeds of the main grid and of the fixed-N_a study (tuning uses the first). */
  seeds: number[];
  /** Sequence length. */
  seqLen: number;
  /** Sequences per step. */
  batchSize: number;
  /** Validation windows. */
  evalWindows: number;
  /** Target training tokens per non-embedding parameter. */
  tokensPerParam: number;
  /** Never fewer tokens per parameter than this (cells below it would not enter the fit). */
  minTokensPerParam: number;
  /** Largest budget in tokens (compute); the floor above wins over it. */
  maxTokens: number;
  /** Fixed optimizer steps for every run instead of the token rule (the smoke profile). */
  steps?: number;
  /** Warmup as a fraction of the steps. */
  warmupFraction: number;
  /** Peak learning rates tried for every size. */
  lrGrid: number[];
  /**
   * Further rates for some sizes: where a size's pick landed on the edge of `lrGrid`, the grid
   * is extended past it for that size (see {@link lrGridFor}).
   */
  lrGridExtra?: Record<string, number[]>;
  /** Sparsities the tuning runs at. */
  lrTuneSparsities: number[];
  /** Sizes whose budget is longer than this many steps tune on `lrTuneFraction` of it. */
  lrTuneMaxSteps: number;
  /** Fraction of the budget the tuning of long-budget sizes trains for. */
  lrTuneFraction: number;
  /** The fixed-N_a study: activated parameters and sparsities (N = N_a / (1 − S)). */
  fixedNa: { Na: number; sparsities: number[] };
}

/**
 * The v2 profiles. `full` is the grid of the module doc; `smoke` runs the same pipeline on
 * tiny settings in minutes (its numbers are not evidence).
 *
 * @example
 * ```ts
 * import { V2_PROFILES } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.deepEqual(V2_PROFILES.full.sparsities, [0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]);
 * assert.ok(V2_PROFILES.full.seeds.length >= 3);
 * ```
 */
export const V2_PROFILES: Record<"smoke" | "full", V2Settings> = {
  full: {
    sizes: ["xxs", "tiny", "xs", "n853k"],
    sparsities: [0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
    seeds: [1, 2, 3],
    seqLen: 128,
    batchSize: 32,
    evalWindows: 1024,
    tokensPerParam: 20,
    minTokensPerParam: 5,
    // 20 tokens per activated parameter of the fixed-N_a study (20 × 332,448): the largest
    // CPU budget the grid affords (module doc), and the same for every fixed-N_a arm.
    maxTokens: 6_648_960,
    warmupFraction: 0.05,
    lrGrid: [1e-3, 2e-3, 4e-3, 8e-3],
    // xxs picked 8e-3, the top of the grid, with the loss still falling from 4e-3 (2.547) to
    // 8e-3 (2.483) (results/lr_tuning_best.json, 2026-11-30): its optimum may lie above.
    lrGridExtra: { xxs: [1.6e-2, 3.2e-2] },
    lrTuneSparsities: [0, 0.8],
    lrTuneMaxSteps: 512,
    lrTuneFraction: 0.25,
    fixedNa: { Na: 332_448, sparsities: [0, 0.3, 0.45, 0.6, 0.75] },
  },
  smoke: {
    sizes: ["xxs", "tiny"],
    sparsities: [0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
    seeds: [1],
    seqLen: 32,
    batchSize: 4,
    evalWindows: 8,
    tokensPerParam: 20,
    minTokensPerParam: 5,
    maxTokens: 6_648_960,
    steps: 6,
    warmupFraction: 0.05,
    lrGrid: [1e-3, 2e-3, 4e-3, 8e-3],
    lrTuneSparsities: [0, 0.8],
    lrTuneMaxSteps: 512,
    lrTuneFraction: 0.25,
    fixedNa: { Na: 94_528, sparsities: [0, 0.3, 0.45, 0.6, 0.75] },
  },
};

/**
 * A v2 size's model: a named size (`xs`) or `n<K>k`, a shape of about K thousand non-embedding
 * parameters (see `shapeForParams`).
 *
 * @param size The size.
 * @param overrides Model overrides (sparsity, seqLen).
 * @returns The model config.
 * @throws {ValueError} For a size that is neither.
 *
 * @example
 * ```ts
 * import { v2Model } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.equal(v2Model("xs").dModel, 96);
 * assert.deepEqual([v2Model("n853k").dModel, v2Model("n853k").nLayers], [128, 4]);
 * ```
 */
export function v2Model(
  size: string,
  overrides: Parameters<typeof modelConfig>[1] = {},
): ModelConfig {
  if (NAMED_SIZES[size]) return modelConfig(size, overrides);
  const m = /^n(\d+)k$/.exec(size);
  if (!m) {
    throw new ValueError("v2Model", `size "${size}" is neither a named size nor n<thousands>k`);
  }
  const c = modelForParams(Number(m[1]) * 1000, overrides);
  return { ...c, name: size };
}

/** A run's token budget. */
export interface Budget {
  /** Optimizer steps. */
  steps: number;
  /** Training tokens: steps × batch × seqLen. */
  tokens: number;
  /** Tokens per non-embedding parameter. */
  tokensPerParam: number;
}

/**
 * The token budget of a model of N non-embedding parameters: `tokensPerParam`·N tokens, capped
 * at `maxTokens` but never below `minTokensPerParam`·N, rounded to whole steps (or the profile's
 * fixed steps).
 *
 * @param N Non-embedding parameters.
 * @param s The profile settings.
 * @returns Steps, tokens, tokens per parameter.
 *
 * @example
 * ```ts
 * import { budgetFor, V2_PROFILES } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const p = V2_PROFILES.full;
 * assert.equal(budgetFor(26784, p).steps, 131); // 20 × 26,784 tokens / 4,096 per step
 * assert.equal(budgetFor(853120, p).steps, 1623); // the cap: 7.8 tokens per parameter
 * assert.ok(budgetFor(2656704, p).tokensPerParam >= 5); // the floor beats the cap
 * ```
 */
export function budgetFor(N: number, s: V2Settings): Budget {
  const perStep = s.batchSize * s.seqLen;
  const want = Math.max(s.minTokensPerParam * N, Math.min(s.tokensPerParam * N, s.maxTokens));
  // Rounded to whole steps, but never rounded below the floor.
  const steps = s.steps ??
    Math.max(1, Math.round(want / perStep), Math.ceil((s.minTokensPerParam * N) / perStep));
  return { steps, tokens: steps * perStep, tokensPerParam: (steps * perStep) / N };
}

/**
 * The training config of a v2 run. Everything but the model, steps, LR and seed is shared by
 * every v2 run, so runs of two studies with the same model, budget, LR and seed have identical
 * configs and the runner trains them once (the second is recorded from the first).
 */
function v2Config(
  s: V2Settings,
  model: ModelConfig,
  steps: number,
  lr: number,
  seed: number,
): TrainConfig {
  const every = (n: number) => Math.max(1, Math.round(steps / n));
  return trainConfig(model, {
    steps,
    batchSize: s.batchSize,
    lr,
    minLr: lr / 10,
    // Warmup scales with the run: 5% of the steps, at least one.
    warmup: Math.max(1, Math.round(s.warmupFraction * steps)),
    seed,
    evalWindows: s.evalWindows,
    evalEvery: every(2),
    logEvery: every(32),
    // A long CPU run (an hour or more) loses at most 1/16 of itself to a kill.
    checkpointEvery: every(16),
  });
}

function sLabel(s: number): string {
  return `S${s.toFixed(2).replace(/0$/, "")}`;
}

function lrLabel(lr: number): string {
  return `lr${lr.toExponential()}`; // 1.6e-2, not "2e-2"; single-digit rates keep their old ids
}

/**
 * The `lr_tuning` grid of a profile: its sizes, each size's rates ({@link lrGridFor}) and the
 * tuning sparsities; what a size must have finished before it is picked.
 *
 * @param s The v2 settings.
 * @returns The tuning grid.
 *
 * @example
 * ```ts
 * import { lrTuningGrid, V2_PROFILES } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const g = lrTuningGrid(V2_PROFILES.full);
 * assert.deepEqual(g.sizes, ["xxs", "tiny", "xs", "n853k"]);
 * assert.equal(g.lrs("xxs").length * g.sparsities.length, 12);
 * ```
 */
export function lrTuningGrid(s: V2Settings): LrTuningGrid {
  return { sizes: s.sizes, lrs: (size) => lrGridFor(s, size), sparsities: s.lrTuneSparsities };
}

/** Options of {@link v2LrTable}. */
export interface V2LrTableOptions {
  /**
   * The table the fresh picks are merged over (sizes the results do not pick keep their entry).
   * Default: the committed table (`lrTablePath("full")`) for `full`; none for `smoke`, whose
   * picks come only from the runs just trained, never from a file in the repository.
   */
  base?: LrTable | null;
}

/**
 * The LR table the v2 grids are built from: the picks of {@link bestLearningRates} on the
 * profile's tuning grid (a size is picked once all its tuning runs have finished), merged over
 * the base table. `scripts/pick_lr.ts` writes this table; a notebook builds the grids with it,
 * so its grid is the one the results were (or will be) trained on.
 *
 * @param profile `smoke` or `full`.
 * @param tuning Results of the profile's `lr_tuning` study.
 * @param opts The base table.
 * @returns The table.
 *
 * @example A smoke table from its own tuning runs
 * ```ts
 * import type { RunRecord } from "@qsparse/kit/train";
 * import { lrTuningGrid, v2LrTable, V2_PROFILES } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const g = lrTuningGrid(V2_PROFILES.smoke);
 * const runs = g.lrs("xxs").flatMap((lr) =>
 *   g.sparsities.map((S) =>
 *     ({ tags: { size: "xxs", S, lr, seed: 1 }, valLoss: 3 + Math.abs(Math.log2(lr / 4e-3)), N: 26784, tokens: 768 }) as unknown as RunRecord
 *   )
 * );
 * const t = v2LrTable("smoke", runs);
 * assert.equal(t.sizes.xxs!.lr, 4e-3);
 * assert.equal(t.sizes.tiny, undefined); // not tuned: its runs will say "nearest"
 * ```
 */
export function v2LrTable(
  profile: "smoke" | "full",
  tuning: readonly RunRecord[],
  opts: V2LrTableOptions = {},
): LrTable {
  const base = opts.base !== undefined
    ? opts.base
    : profile === "full"
    ? readLrTable(lrTablePath("full"))
    : null;
  const fresh = bestLearningRates(tuning, { expect: lrTuningGrid(V2_PROFILES[profile]) });
  return { ...fresh, sizes: { ...(base?.sizes ?? {}), ...fresh.sizes } };
}

/** Options of {@link v2StudyRuns}. */
export interface V2RunOptions {
  /** Override profile settings (e.g. `sizes` and `seeds` from the CLI). */
  settings?: Partial<V2Settings>;
  /** The LR table; default: read from {@link lrTablePath} of the profile (null: none). */
  lrTable?: LrTable | null;
}

/**
 * The peak learning rates tuned for `size`: the common grid plus that size's extension, sorted.
 *
 * @param s The v2 settings.
 * @param size A size name.
 * @returns The rates.
 * @example
 * ```ts
 * import { lrGridFor, V2_PROFILES } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.deepEqual(lrGridFor(V2_PROFILES.full, "tiny"), [1e-3, 2e-3, 4e-3, 8e-3]);
 * assert.equal(lrGridFor(V2_PROFILES.full, "xxs").at(-1), 3.2e-2);
 * ```
 */
export function lrGridFor(s: V2Settings, size: string): number[] {
  return [...new Set([...s.lrGrid, ...(s.lrGridExtra?.[size] ?? [])])].sort((a, b) => a - b);
}

/**
 * The runs of a v2 study, in execution order (smallest size first; within a size seed-major, so
 * an interrupted sweep already holds one complete seed).
 *
 * Tags: `size`, `S`, `seed`, `variant` (`topk`), `tokensPerParam`, `lr` and `lrSource` (see
 * `LrChoice`); `lr_tuning` runs have no `lrSource`; `fixed_na` runs add `Na` and `N`.
 *
 * @param study The study.
 * @param profile `smoke` or `full`.
 * @param opts Settings overrides and the LR table.
 * @returns The runs.
 *
 * @example
 * ```ts
 * import { v2StudyRuns } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const main = v2StudyRuns("scaling_v2", "full", { lrTable: null });
 * assert.equal(main.length, 4 * 9 * 3);
 * assert.ok(main.every((r) => r.tags.lrSource === "fallback")); // nothing tuned in this call
 * const tune = v2StudyRuns("lr_tuning", "full", { lrTable: null });
 * assert.equal(tune.length, 4 * 4 * 2 + 2 * 2); // xxs also tries 1.6e-2 and 3.2e-2
 * assert.equal(v2StudyRuns("fixed_na", "full", { lrTable: null }).length, 5 * 3);
 * ```
 */
export function v2StudyRuns(
  study: V2Study,
  profile: "smoke" | "full",
  opts: V2RunOptions = {},
): RunSpec[] {
  const s: V2Settings = { ...V2_PROFILES[profile], ...opts.settings };
  const table = opts.lrTable !== undefined ? opts.lrTable : readLrTable(lrTablePath(profile));
  const runs: RunSpec[] = [];
  const mainCell = (size: string, S: number) => {
    const m = v2Model(size, { sparsity: S, seqLen: s.seqLen });
    const N = paramCounts(m).nonEmbedding;
    return { m, N, budget: budgetFor(N, s) };
  };
  switch (study) {
    case "lr_tuning": {
      const seed = s.seeds[0]!;
      for (const size of s.sizes) {
        for (const lr of lrGridFor(s, size)) {
          for (const S of s.lrTuneSparsities) {
            const { m, budget } = mainCell(size, S);
            // Cheap sizes tune on their full budget (the winning runs are then the main grid's
            // seed-1 cells at S = 0 and .8, reused); long ones on a fraction of it.
            const steps = budget.steps > s.lrTuneMaxSteps
              ? Math.max(1, Math.round(budget.steps * s.lrTuneFraction))
              : budget.steps;
            const tokens = steps * s.batchSize * s.seqLen;
            runs.push({
              id: `${size}-${sLabel(S)}-${lrLabel(lr)}-seed${seed}`,
              study,
              config: v2Config(s, m, steps, lr, seed),
              tags: {
                size,
                S,
                seed,
                lr,
                variant: "topk",
                tokensPerParam: round2(tokens / paramCounts(m).nonEmbedding),
              },
            });
          }
        }
      }
      break;
    }
    case "scaling_v2": {
      for (const size of s.sizes) {
        for (const seed of s.seeds) {
          for (const S of s.sparsities) {
            const { m, N, budget } = mainCell(size, S);
            const lr = lrFor(N, table);
            runs.push({
              id: `${size}-${sLabel(S)}-seed${seed}`,
              study,
              config: v2Config(s, m, budget.steps, lr.lr, seed),
              tags: {
                size,
                S,
                seed,
                variant: "topk",
                tokensPerParam: round2(budget.tokensPerParam),
                lr: lr.lr,
                lrSource: lr.source,
              },
            });
          }
        }
      }
      break;
    }
    case "fixed_na": {
      const { Na, sparsities } = s.fixedNa;
      // Every arm trains on the budget of the dense arm (N = N_a): equal tokens.
      const budget = budgetFor(Na, s);
      for (const seed of s.seeds) {
        for (const S of sparsities) {
          const m = S === 0
            ? v2Model(sizeOfParams(Na), { sparsity: 0, seqLen: s.seqLen })
            : modelForParams(Na / (1 - S), { sparsity: S, seqLen: s.seqLen });
          const N = paramCounts(m).nonEmbedding;
          const lr = lrFor(N, table);
          const size = NAMED_SIZES[m.name] ? m.name : `n${Math.round(N / 1000)}k`;
          runs.push({
            id: `na${Math.round(Na / 1000)}k-${sLabel(S)}-seed${seed}`,
            study,
            config: v2Config(s, { ...m, name: size }, budget.steps, lr.lr, seed),
            tags: {
              size,
              S,
              seed,
              variant: "topk",
              Na,
              N,
              tokensPerParam: round2(budget.tokens / N),
              lr: lr.lr,
              lrSource: lr.source,
            },
          });
        }
      }
      break;
    }
    default:
      throw new ValueError("v2StudyRuns", `unknown v2 study "${study}"`);
  }
  return runs;
}

/** The named size with exactly N non-embedding parameters, else `n<K>k`. */
function sizeOfParams(N: number): string {
  const named = Object.keys(NAMED_SIZES).find((k) =>
    paramCounts(modelConfig(k)).nonEmbedding === N
  );
  return named ?? `n${Math.round(N / 1000)}k`;
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
