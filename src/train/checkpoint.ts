/**
 * Checkpoints: weights, optimizer moments and the training state (step, data cursor, RNG state,
 * config) in one safetensors file written atomically, so a run killed at any moment resumes from
 * its last complete checkpoint and the previous checkpoint survives a crash mid-write.
 *
 * Keys: parameters by their dotted names; optimizer moments as `optim.m.<name>` / `optim.v.<name>`.
 * Metadata: `state` (JSON of {@link TrainState}) and `config` (JSON of the run config).
 * Every tensor carries a CRC-32 (see `safetensors.ts`), checked on load: flipped bytes are a
 * {@link CheckpointError} naming the tensor, never a model that silently evaluates worse.
 *
 * @module
 */
import type { TransformerLM } from "../nn/transformer.ts";
import { CheckpointError } from "../core/errors.ts";
import type { AdamW } from "./optimizer.ts";
import { type HostTensor, loadSafetensors, saveSafetensors } from "./safetensors.ts";

/** Everything besides tensors that a resumed run needs. */
export interface TrainState {
  /** Optimizer steps completed. */
  step: number;
  /** The batch sampler's `{seed, step}`. */
  sampler: { seed: number; step: number };
  /** The device generator's `{seed, offset}`. */
  generator: { seed: number; offset: number };
  /** Tokens trained on so far. */
  tokens: number;
  /** Wall-clock seconds spent so far (across resumes). */
  elapsed: number;
}

/**
 * Saves model, optimizer and state atomically.
 *
 * @param path The `.safetensors` file.
 * @param model The model.
 * @param opt The optimizer (or null to save weights only).
 * @param state The training state.
 * @param config The run config (stored to detect a resume with different settings).
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { modelConfig, TransformerLM } from "@qsparse/kit/nn";
 * import { loadCheckpoint, saveCheckpoint } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using model = new TransformerLM(dev, modelConfig("xxs"), 1);
 * const state = {
 *   step: 0,
 *   sampler: { seed: 1, step: 0 },
 *   generator: { seed: 0, offset: 0 },
 *   tokens: 0,
 *   elapsed: 0,
 * };
 * const dir = await Deno.makeTempDir();
 * try {
 *   await saveCheckpoint(`${dir}/ckpt.safetensors`, model, null, state, { lr: 1e-3 });
 *   const ck = await loadCheckpoint(`${dir}/ckpt.safetensors`);
 *   assert.ok(ck.tensors.has("embed.weight"));
 *   assert.ok(![...ck.tensors.keys()].some((k) => k.startsWith("optim."))); // weights only
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function saveCheckpoint(
  path: string,
  model: TransformerLM,
  opt: AdamW | null,
  state: TrainState,
  config: unknown,
): Promise<void> {
  const tensors = new Map<string, HostTensor>();
  // Every readback is issued before any is awaited: on WebGPU each awaited map costs at least one
  // 10 ms device poll, so reading ~40 tensors one by one took ~0.4 s per checkpoint.
  const params = [...model.namedParameters()];
  const [weights, s] = await Promise.all([
    Promise.all(params.map(([, p]) => p.data())),
    opt ? opt.state() : null,
  ]);
  params.forEach(([name, p], i) => {
    tensors.set(name, { dtype: "f32", shape: [...p.shape], data: weights[i]! });
  });
  if (opt && s) {
    for (const [name, p] of model.namedParameters()) {
      tensors.set(`optim.m.${name}`, { dtype: "f32", shape: [...p.shape], data: s.m.get(name)! });
      tensors.set(`optim.v.${name}`, { dtype: "f32", shape: [...p.shape], data: s.v.get(name)! });
    }
    state = { ...state, step: s.t };
  }
  await saveSafetensors(path, tensors, {
    format: "qsparse-kit-checkpoint-v1",
    state: JSON.stringify(state),
    config: JSON.stringify(config),
  });
}

/** A checkpoint read back from disk. */
export interface LoadedCheckpoint {
  /** Tensors by key. */
  tensors: Map<string, HostTensor>;
  /** Training state. */
  state: TrainState;
  /** The run config that wrote it. */
  config: unknown;
}

/**
 * Reads a checkpoint (typed {@link CheckpointError} when missing pieces or corrupt).
 *
 * @param path The `.safetensors` file.
 * @returns Tensors, state and config.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { modelConfig, TransformerLM } from "@qsparse/kit/nn";
 * import { loadCheckpoint, saveCheckpoint } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using model = new TransformerLM(dev, modelConfig("xxs"), 1);
 * const state = {
 *   step: 0,
 *   sampler: { seed: 1, step: 0 },
 *   generator: { seed: 0, offset: 0 },
 *   tokens: 4096,
 *   elapsed: 0,
 * };
 * const dir = await Deno.makeTempDir();
 * try {
 *   await saveCheckpoint(`${dir}/ckpt.safetensors`, model, null, state, { lr: 1e-3 });
 *   const ck = await loadCheckpoint(`${dir}/ckpt.safetensors`);
 *   assert.equal(ck.state.tokens, 4096);
 *   assert.deepEqual(ck.config, { lr: 1e-3 });
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export async function loadCheckpoint(path: string): Promise<LoadedCheckpoint> {
  const { tensors, metadata } = await loadSafetensors(path);
  if (metadata.format !== "qsparse-kit-checkpoint-v1" || !metadata.state) {
    throw new CheckpointError(
      "loadCheckpoint",
      `${path} is not a kit checkpoint (no state metadata)`,
    );
  }
  try {
    return {
      tensors,
      state: JSON.parse(metadata.state),
      config: JSON.parse(metadata.config ?? "null"),
    };
  } catch (e) {
    throw new CheckpointError(
      "loadCheckpoint",
      `${path}: corrupt metadata: ${(e as Error).message}`,
    );
  }
}

/**
 * Copies checkpoint weights into a model. Every model parameter must be present with its shape.
 *
 * @param model The model.
 * @param ckpt The checkpoint.
 * @param path For error messages.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { modelConfig, TransformerLM } from "@qsparse/kit/nn";
 * import { loadCheckpoint, loadWeights, saveCheckpoint } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using a = new TransformerLM(dev, modelConfig("xxs"), 1);
 * using b = new TransformerLM(dev, modelConfig("xxs"), 2);
 * const state = {
 *   step: 0,
 *   sampler: { seed: 1, step: 0 },
 *   generator: { seed: 0, offset: 0 },
 *   tokens: 0,
 *   elapsed: 0,
 * };
 * const dir = await Deno.makeTempDir();
 * try {
 *   const path = `${dir}/ckpt.safetensors`;
 *   await saveCheckpoint(path, a, null, state, {});
 *   loadWeights(b, await loadCheckpoint(path), path);
 *   const w = (m: TransformerLM) => m.namedParameters().get("lm_head.weight")!.data();
 *   assert.deepEqual(await w(b), await w(a));
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export function loadWeights(model: TransformerLM, ckpt: LoadedCheckpoint, path: string): void {
  for (const [name, p] of model.namedParameters()) {
    const t = ckpt.tensors.get(name);
    if (!t) throw new CheckpointError("loadWeights", `${path} has no tensor ${name}`);
    if (t.shape.join() !== p.shape.join()) {
      throw new CheckpointError(
        "loadWeights",
        `${path}: ${name} is [${t.shape}] but the model needs [${p.shape}]`,
      );
    }
    model.setParameter(name, t.data as Float32Array);
  }
}

/**
 * Restores optimizer moments from a checkpoint.
 *
 * @param opt The optimizer.
 * @param ckpt The checkpoint.
 * @param path For error messages.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { modelConfig, TransformerLM } from "@qsparse/kit/nn";
 * import { AdamW, loadCheckpoint, loadOptimizer, saveCheckpoint } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using model = new TransformerLM(dev, modelConfig("xxs"), 1);
 * using opt = new AdamW(dev, model.namedParameters());
 * opt.step(1e-3); // no gradients yet: only the step count moves
 * const state = {
 *   step: 0,
 *   sampler: { seed: 1, step: 0 },
 *   generator: { seed: 0, offset: 0 },
 *   tokens: 0,
 *   elapsed: 0,
 * };
 * const dir = await Deno.makeTempDir();
 * try {
 *   const path = `${dir}/ckpt.safetensors`;
 *   await saveCheckpoint(path, model, opt, state, {});
 *   using fresh = new AdamW(dev, model.namedParameters());
 *   loadOptimizer(fresh, await loadCheckpoint(path), path);
 *   assert.equal(fresh.steps, 1);
 * } finally {
 *   await Deno.remove(dir, { recursive: true });
 * }
 * ```
 */
export function loadOptimizer(opt: AdamW, ckpt: LoadedCheckpoint, path: string): void {
  const m = new Map<string, Float32Array>(), v = new Map<string, Float32Array>();
  for (const name of opt.params.keys()) {
    const tm = ckpt.tensors.get(`optim.m.${name}`), tv = ckpt.tensors.get(`optim.v.${name}`);
    if (!tm || !tv) {
      throw new CheckpointError("loadOptimizer", `${path} has no optimizer state for ${name}`);
    }
    m.set(name, tm.data as Float32Array);
    v.set(name, tv.data as Float32Array);
  }
  opt.load({ t: ckpt.state.step, m, v });
}
