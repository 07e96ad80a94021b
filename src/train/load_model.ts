/**
 * Loading a trained model from whatever a run or an export left on disk: a kit checkpoint, a run
 * directory that holds one, or a Llama-style folder. It sits in the train layer because it reads
 * checkpoints and the HF interop format, which the model classes (nn) do not know about.
 *
 * @module
 */
import type { ModelConfig } from "../nn/config.ts";
import { TransformerLM } from "../nn/transformer.ts";
import type { Device } from "../tensor/device.ts";
import { CheckpointError } from "../core/errors.ts";
import { loadCheckpoint, loadWeights } from "./checkpoint.ts";
import { importHf } from "./hf.ts";

/**
 * Loads a model from a kit checkpoint (`checkpoint.safetensors` of a training run; its
 * metadata holds the config), a run directory that contains one, or a Llama-style folder
 * (`config.json` + `model.safetensors`, see `importHf`).
 *
 * @param device The device.
 * @param path A `.safetensors` checkpoint, a run directory or a Llama-style folder.
 * @returns The model with the checkpoint's weights.
 * @throws {CheckpointError} For a file that is not a kit checkpoint or lacks a model config.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { modelConfig, TransformerLM } from "@qsparse/kit/nn";
 * import { loadModel, saveCheckpoint } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using a = new TransformerLM(dev, modelConfig("xxs", { seqLen: 8 }), 1);
 * const path = `${await Deno.makeTempDir()}/ckpt.safetensors`;
 * const state = { step: 0, sampler: { seed: 0, step: 0 }, generator: { seed: 0, offset: 0 }, tokens: 0, elapsed: 0 };
 * await saveCheckpoint(path, a, null, state, { model: a.config });
 * using b = await loadModel(dev, path);
 * assert.deepEqual([...await b.embed.data()], [...await a.embed.data()]);
 * ```
 */
export async function loadModel(device: Device, path: string): Promise<TransformerLM> {
  let file = path;
  try {
    if ((await Deno.stat(path)).isDirectory) {
      const has = (f: string) => Deno.stat(`${path}/${f}`).then(() => true, () => false);
      // A Llama-style folder (config.json + model.safetensors) rather than a run directory.
      if (!(await has("checkpoint.safetensors")) && (await has("model.safetensors"))) {
        return await importHf(device, path);
      }
      file = `${path}/checkpoint.safetensors`;
    }
  } catch (e) {
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError("loadModel", `${path}: ${(e as Error).message}`);
  }
  const ckpt = await loadCheckpoint(file);
  const raw = ckpt.config as { model?: ModelConfig; dModel?: number } | null;
  const config = raw && typeof raw === "object" && raw.model ? raw.model : raw;
  if (!config || typeof config !== "object" || typeof config.dModel !== "number") {
    throw new CheckpointError(
      "loadModel",
      `${file} holds no model config (expected metadata config.model)`,
    );
  }
  const model = new TransformerLM(device, config as ModelConfig, 0);
  try {
    loadWeights(model, ckpt, file);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}
