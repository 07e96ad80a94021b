/**
 * The studies' grids, in two profiles: `smoke` (the whole pipeline on tiny settings, minutes)
 * and `full` (the runs committed under results/, sized for about 8 hours on a 2-core CPU
 * WebGPU adapter; see the README for why these sizes).
 *
 * Every study trains on the Brown corpus with the byte tokenizer and a fixed token budget D per
 * run (as the paper fixes D), evaluates on the same fixed validation windows, and orders its
 * runs so that a partially finished sweep already holds one complete seed.
 *
 * @module
 */
import { type ModelConfig, modelConfig, type ModelOverrides } from "../src/nn/config.ts";
import { ValueError } from "../src/core/errors.ts";
import { type TrainConfig, trainConfig } from "../src/train/trainer.ts";
import { moeStudyArms } from "./moe_study.ts";
import type { RunSpec } from "../src/train/runner.ts";
import { v2StudyRuns } from "./v2_grid.ts";

/**
 * Names of the studies.
 *
 * @example Every study has a smoke grid
 * ```ts
 * import { STUDIES, studyRuns } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.ok(STUDIES.includes("sparsity_vs_loss"));
 * assert.ok(STUDIES.every((s) => studyRuns(s, "smoke").length > 0));
 * ```
 */
export const STUDIES = [
  "sparsity_vs_loss",
  "ablation",
  "bitnet",
  "block",
  "moe",
  "continue_finetune",
  "posthoc",
  "token_budget",
  // v2 (issue 13): compute-matched budgets, tuned LR, fixed N_a; grids in v2_grid.ts.
  "lr_tuning",
  "scaling_v2",
  "fixed_na",
] as const;

/** A study name. */
export type StudyName = typeof STUDIES[number];

/** `smoke` or `full`. */
export type Profile = "smoke" | "full";

/**
 * The sparsity grid of the paper's scaling study (docs/paper-notes.md §9).
 *
 * @example
 * ```ts
 * import { SPARSITIES, studyRuns } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.equal(SPARSITIES[0], 0); // the dense baseline
 * const runs = studyRuns("sparsity_vs_loss", "smoke");
 * assert.deepEqual([...new Set(runs.map((r) => r.tags.S))], [...SPARSITIES]);
 * ```
 */
export const SPARSITIES: readonly number[] = [0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8];

/** Training settings shared by a profile's runs. */
export interface ProfileSettings {
  /** Model sizes of the main grid (named configs). */
  sizes: string[];
  /** Sequence length. */
  seqLen: number;
  /** Sequences per step. */
  batchSize: number;
  /** Optimizer steps per run (D = steps · batch · seq tokens). */
  steps: number;
  /** Seeds. */
  seeds: number[];
  /** Validation windows. */
  evalWindows: number;
  /** Peak learning rate. */
  lr: number;
}

/**
 * The two profiles.
 *
 * @example
 * ```ts
 * import { PROFILES, SPARSITIES, studyRuns } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const p = PROFILES.smoke;
 * const runs = studyRuns("sparsity_vs_loss", "smoke");
 * assert.equal(runs.length, p.sizes.length * SPARSITIES.length * p.seeds.length);
 * assert.equal(runs[0]!.config.steps, p.steps);
 * assert.equal(runs[0]!.config.model.seqLen, p.seqLen);
 * ```
 */
export const PROFILES: Record<Profile, ProfileSettings> = {
  smoke: {
    sizes: ["xxs", "tiny"],
    seqLen: 32,
    batchSize: 4,
    steps: 6,
    seeds: [1],
    evalWindows: 8,
    lr: 3e-3,
  },
  full: {
    sizes: ["xxs", "tiny", "xs", "s"],
    seqLen: 128,
    batchSize: 32,
    steps: 128,
    seeds: [1, 2],
    evalWindows: 512,
    lr: 3e-3,
  },
};

function sLabel(s: number): string {
  return `S${s.toFixed(2).replace(/0$/, "")}`;
}

function config(
  p: ProfileSettings,
  size: string,
  model: ModelOverrides,
  seed: number,
  extra: Partial<Omit<TrainConfig, "model">> = {},
  full?: ModelConfig,
): TrainConfig {
  const steps = extra.steps ?? p.steps;
  const every = (n: number) => Math.max(1, Math.round(Math.max(1, steps) / n));
  return trainConfig(full ?? modelConfig(size, { seqLen: p.seqLen, ...model }), {
    steps,
    batchSize: p.batchSize,
    lr: p.lr,
    minLr: p.lr / 10,
    warmup: Math.round(steps / 10),
    seed,
    evalWindows: p.evalWindows,
    evalEvery: every(2),
    logEvery: every(16),
    checkpointEvery: every(4),
    ...extra,
  });
}

/**
 * The runs of a study.
 *
 * @param study The study.
 * @param profile `smoke` or `full`.
 * @param opts `runsDir` (where checkpoints live; runs that start from another run's checkpoint
 *   point into it, default `runs`) and `settings` to override the profile.
 * @returns The runs, in execution order.
 *
 * @example
 * ```ts
 * import { studyRuns } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const runs = studyRuns("sparsity_vs_loss", "full");
 * assert.equal(runs.length, 4 * 7 * 2);
 * assert.equal(new Set(runs.map((r) => r.tags.size)).size, 4);
 * ```
 */
export function studyRuns(
  study: StudyName,
  profile: Profile,
  opts: { runsDir?: string; settings?: Partial<ProfileSettings> } = {},
): RunSpec[] {
  const p = { ...PROFILES[profile], ...opts.settings };
  const runsDir = opts.runsDir ?? "runs";
  const runs: RunSpec[] = [];
  const add = (id: string, cfg: TrainConfig, tags: RunSpec["tags"], after?: string[]) =>
    runs.push({ id, study, config: cfg, tags, ...(after ? { after } : {}) });

  switch (study) {
    case "lr_tuning":
    case "scaling_v2":
    case "fixed_na":
      return v2StudyRuns(study, profile, {
        settings: {
          ...(opts.settings?.sizes ? { sizes: opts.settings.sizes } : {}),
          ...(opts.settings?.seeds ? { seeds: opts.settings.seeds } : {}),
        },
      });
    case "sparsity_vs_loss":
      // Seed-major order: an interrupted sweep already holds one complete seed of the grid.
      for (const seed of p.seeds) {
        for (const size of p.sizes) {
          for (const s of SPARSITIES) {
            add(`${size}-${sLabel(s)}-seed${seed}`, config(p, size, { sparsity: s }, seed), {
              size,
              S: s,
              seed,
              variant: "topk",
            });
          }
        }
      }
      break;
    case "posthoc": {
      // Training-free sparsification (as TEAL does): each size's dense run of the main grid,
      // evaluated with top-K applied at inference. Evaluation-only runs (steps 0, initFrom).
      for (const size of p.sizes) {
        const dense = `${size}-${sLabel(0)}-seed${p.seeds[0]}`;
        const ck = `${runsDir}/sparsity_vs_loss/${dense}/checkpoint.safetensors`;
        for (const s of SPARSITIES) {
          add(
            `${size}-posthoc-${sLabel(s)}`,
            config(p, size, { sparsity: s }, p.seeds[0]!, { steps: 0, initFrom: ck }),
            {
              size,
              S: s,
              seed: p.seeds[0]!,
              variant: "posthoc",
              from: dense,
            },
          );
        }
      }
      break;
    }
    case "token_budget": {
      // Does the gap to dense open when a model trains 4x longer (closer to its capacity)?
      // The 1x runs are the main grid's; these are the 4x ones.
      const size = profile === "full" ? "tiny" : p.sizes[0]!;
      for (const s of [0, 0.5, 0.8]) {
        add(
          `${size}-${sLabel(s)}-x4-seed${p.seeds[0]}`,
          config(p, size, { sparsity: s }, p.seeds[0]!, { steps: 4 * p.steps }),
          {
            size,
            S: s,
            seed: p.seeds[0]!,
            variant: "topk",
            budget: 4,
          },
        );
      }
      break;
    }
    case "ablation": {
      // STE vs no STE vs a ReLU sparsifier at S = 0.5 (the paper's Fig. 8-9), plus the dense twin.
      const size = profile === "full" ? "xs" : p.sizes[0]!;
      for (const seed of p.seeds) {
        add(`${size}-dense-seed${seed}`, config(p, size, { sparsity: 0 }, seed), {
          size,
          variant: "dense",
          seed,
          S: 0,
        });
        add(`${size}-topk-ste-seed${seed}`, config(p, size, { sparsity: 0.5 }, seed), {
          size,
          variant: "topk-ste",
          seed,
          S: 0.5,
        });
        add(
          `${size}-topk-noste-seed${seed}`,
          config(p, size, { sparsity: 0.5, ste: false }, seed),
          { size, variant: "topk-noste", seed, S: 0.5 },
        );
        add(
          `${size}-relu-seed${seed}`,
          config(p, size, { sparsity: 0.5, sparsifier: "relu" }, seed),
          { size, variant: "relu", seed, S: null },
        );
      }
      break;
    }
    case "bitnet": {
      // The 1.58-bit grid for its own scaling fit and S*. One seed in full (compute budget).
      const sizes = profile === "full" ? p.sizes.slice(0, 3) : p.sizes;
      for (const size of sizes) {
        for (const s of SPARSITIES) {
          add(
            `${size}-bitnet-${sLabel(s)}-seed${p.seeds[0]}`,
            config(p, size, { sparsity: s, bitnet: true }, p.seeds[0]!),
            {
              size,
              S: s,
              seed: p.seeds[0]!,
              variant: "bitnet",
            },
          );
        }
      }
      break;
    }
    case "block": {
      // Block Q-Sparse 16:32 against per-token top-K at the same S = 0.5 (the paper's Fig. 7).
      const sizes = profile === "full" ? ["tiny", "xs"] : [p.sizes[p.sizes.length - 1]!];
      for (const seed of p.seeds) {
        for (const size of sizes) {
          add(`${size}-topk-${sLabel(0.5)}-seed${seed}`, config(p, size, { sparsity: 0.5 }, seed), {
            size,
            variant: "topk",
            S: 0.5,
            seed,
          });
          add(
            `${size}-block32-${sLabel(0.5)}-seed${seed}`,
            config(p, size, { sparsity: 0.5, block: 32 }, seed),
            { size, variant: "block16:32", S: 0.5, seed },
          );
        }
      }
      break;
    }
    case "moe": {
      // Dense, Q-Sparse, MoE and MoE + Q-Sparse at equal N_a, and the equal-total-parameter pair.
      const base = profile === "full" ? "tiny" : p.sizes[0]!;
      for (const seed of p.seeds) {
        for (const arm of moeStudyArms(base, { seqLen: p.seqLen })) {
          add(`${arm.name}-seed${seed}`, config(p, base, {}, seed, {}, arm.config), {
            arm: arm.name,
            group: arm.group,
            seed,
            S: arm.config.sparsity.qkv,
            experts: arm.config.moe?.experts ?? null,
            topK: arm.config.moe?.topK ?? null,
            nominalN: arm.N,
            nominalNa: arm.Na,
          });
        }
      }
      break;
    }
    case "continue_finetune": {
      // Dense pretraining on press + informative prose, then (a) Q-Sparse continued training,
      // (b) dense continued training, (c) Q-Sparse from scratch with the same total tokens, and
      // fine-tuning on imaginative prose (fiction) dense vs Q-Sparse.
      const size = profile === "full" ? "xs" : p.sizes[0]!;
      const pre = [
        "news",
        "editorial",
        "reviews",
        "religion",
        "hobbies",
        "lore",
        "belles_lettres",
        "government",
        "learned",
      ];
      const fiction = ["fiction", "mystery", "science_fiction", "adventure", "romance", "humor"];
      const d = p.steps, half = Math.max(1, Math.round(p.steps / 2));
      for (const seed of p.seeds.slice(0, 1)) {
        const preId = `${size}-dense-pretrain-seed${seed}`;
        const ck = `${runsDir}/${study}/${preId}/checkpoint.safetensors`;
        add(preId, config(p, size, { sparsity: 0 }, seed, { categories: pre }), {
          size,
          arm: "pretrain-dense",
          seed,
          S: 0,
        });
        add(
          `${size}-continue-qsparse-seed${seed}`,
          config(p, size, { sparsity: 0.5 }, seed, { categories: pre, steps: half, initFrom: ck }),
          { size, arm: "continue-qsparse", seed, S: 0.5 },
          [preId],
        );
        add(
          `${size}-continue-dense-seed${seed}`,
          config(p, size, { sparsity: 0 }, seed, { categories: pre, steps: half, initFrom: ck }),
          { size, arm: "continue-dense", seed, S: 0 },
          [preId],
        );
        add(
          `${size}-scratch-qsparse-seed${seed}`,
          config(p, size, { sparsity: 0.5 }, seed, { categories: pre, steps: d + half }),
          { size, arm: "scratch-qsparse", seed, S: 0.5 },
        );
        const ftSteps = Math.max(1, Math.round(p.steps / 4));
        add(
          `${size}-finetune-dense-seed${seed}`,
          config(p, size, { sparsity: 0 }, seed, {
            categories: fiction,
            steps: ftSteps,
            lr: p.lr / 3,
            minLr: p.lr / 30,
            initFrom: ck,
          }),
          { size, arm: "finetune-dense", seed, S: 0 },
          [preId],
        );
        add(
          `${size}-finetune-qsparse-seed${seed}`,
          config(p, size, { sparsity: 0.5 }, seed, {
            categories: fiction,
            steps: ftSteps,
            lr: p.lr / 3,
            minLr: p.lr / 30,
            initFrom: ck,
          }),
          { size, arm: "finetune-qsparse", seed, S: 0.5 },
          [preId],
        );
        add(
          `${size}-pretrain-zeroshot-fiction-seed${seed}`,
          config(p, size, { sparsity: 0 }, seed, { categories: fiction, steps: 0, initFrom: ck }),
          { size, arm: "pretrained-on-fiction", seed, S: 0 },
          [preId],
        );
      }
      break;
    }
    default:
      throw new ValueError(
        "studyRuns",
        `unknown study "${study}" (studies: ${STUDIES.join(", ")})`,
      );
  }
  return runs;
}
