/**
 * # @qsparse/kit/nn
 *
 * Layers and the Q-Sparse transformer family: model configs and named sizes, dense / Q-Sparse /
 * BitLinear projections, RMSNorm, attention, the ReLU² FFN, MoE, the transformer, the
 * sparsification sites and activated-parameter sizing.
 *
 * @example A tiny Q-Sparse model's forward pass
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { modelConfig, TransformerLM } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using model = new TransformerLM(dev, modelConfig("xxs", { sparsity: 0.5, seqLen: 4 }), 1);
 * using ids = dev.tensor(new Uint32Array([1, 2, 3, 4]), [1, 4], "u32");
 * using logits = model.forward(ids);
 * assert.deepEqual(logits.shape, [1, 4, model.config.vocab]);
 * ```
 *
 * @module
 */
export {
  modelConfig,
  NAMED_MOE_VARIANTS,
  NAMED_SIZES,
  paramCounts,
  SITES,
  uniformSparsity,
  validateConfig,
} from "./config.ts";
export type {
  ModelConfig,
  ModelOverrides,
  MoeConfig,
  ParamCounts,
  Site,
  SiteSparsity,
} from "./config.ts";
export { Module } from "./module.ts";
export { Linear, projectShared } from "./linear.ts";
export type { LinearOptions } from "./linear.ts";
export { RMSNorm } from "./rmsnorm.ts";
export { SparseSite } from "./sparsify.ts";
export type { SiteCounter } from "./sparsify.ts";
export { Attention, fusedAttention } from "./attention.ts";
export { FeedForward } from "./ffn.ts";
export { ExpertSite, MoeFeedForward } from "./moe.ts";
export type { ResolvedMoe, RouterCounters } from "./moe.ts";
export { Block, TransformerLM } from "./transformer.ts";
export { activeParams, matchActiveParams, nominalActiveParams, nominalSparsity } from "./sizing.ts";
export type { ActiveParams, MatchedArm, MatchOptions } from "./sizing.ts";
export { KVCache } from "./kv_cache.ts";
export { Decoder, generate, streamGenerate } from "./generate.ts";
export type {
  DecodeLoop,
  DecodeOptions,
  FinishReason,
  GenerateOptions,
  Generation,
  GenerationChunk,
  Prompts,
} from "./generate.ts";
