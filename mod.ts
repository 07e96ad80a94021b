/**
 * # @qsparse/kit
 *
 * A WebGPU research kit for **Q-Sparse** — full activation sparsity for LLMs: typed tensors on a
 * WebGPU device with a CPU twin of every kernel, sparsity kernels (top-K, N:M, sparse × dense
 * matmul, quantization), autograd with the straight-through estimator, the Q-Sparse model family,
 * a trainer, sparsity accounting and a scaling-law fitter.
 *
 * @example Open a device and multiply
 * ```ts
 * import { matmul, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice();
 * console.log(`${dev.kind}: ${dev.description}`);
 * using a = dev.randn([4, 8], { seed: 1 });
 * using b = dev.randn([8, 3], { seed: 2 });
 * using c = matmul(a, b);
 * assert.deepEqual(c.shape, [4, 3]);
 * ```
 *
 * @module
 */
export * from "./src/core/errors.ts";
export * from "./src/core/dtype.ts";
export * from "./src/core/shape.ts";
export * from "./src/tensor/tensor.ts";
export * from "./src/tensor/device.ts";
export * from "./src/tensor/scope.ts";
export type * from "./src/backend/backend.ts";
export * from "./src/autograd/tape.ts";
export * from "./src/autograd/backward.ts";
export * from "./src/ops/elementwise.ts";
export * from "./src/ops/layout.ts";
export * from "./src/ops/matmul.ts";
export * from "./src/util/fs.ts";
export * from "./src/train/safetensors.ts";
export * from "./src/train/corpus.ts";
export * from "./src/train/tokenizer.ts";
export * from "./src/train/batches.ts";
export * from "./src/ops/reduce.ts";
export * from "./src/ops/softmax.ts";
export * from "./src/tensor/sparse.ts";
export * from "./src/ops/topk.ts";
export * from "./src/ops/sparse.ts";
export * from "./src/ops/rmsnorm.ts";
export * from "./src/ops/embedding.ts";
export * from "./src/ops/cross_entropy.ts";
export * from "./src/train/scaling_law.ts";
export * from "./src/ops/rope.ts";
export * from "./src/ops/permute.ts";
export * from "./src/plot/figure.ts";
export * from "./src/plot/show.ts";
export * from "./src/plot/export.ts";
export * from "./src/plot/training.ts";
export * from "./src/plot/scaling.ts";
export * from "./src/plot/sparsity.ts";
export * from "./src/plot/speed.ts";
export * from "./src/ops/quant_ste.ts";
export * from "./src/nn/config.ts";
export * from "./src/nn/module.ts";
export * from "./src/nn/linear.ts";
export * from "./src/nn/rmsnorm.ts";
export * from "./src/nn/sparsify.ts";
export * from "./src/nn/attention.ts";
export * from "./src/nn/ffn.ts";
export * from "./src/nn/transformer.ts";
export * from "./src/train/optimizer.ts";
export * from "./src/train/schedule.ts";
export * from "./src/train/accounting.ts";
export * from "./src/train/checkpoint.ts";
export * from "./src/train/trainer.ts";
export * from "./src/ops/spmm.ts";
export * from "./src/ops/moe.ts";
export * from "./src/util/version.ts";
export * from "./src/train/runner.ts";
export * from "./src/tensor/quantized.ts";
export * from "./src/ops/quant.ts";
export * from "./src/nn/moe.ts";
export * from "./src/train/router_stats.ts";
export * from "./src/train/chunk_sparsity.ts";
export * from "./src/nn/sizing.ts";
export * from "./src/plot/estimates.ts";
export * from "./src/ops/sample.ts";
export * from "./src/nn/kv_cache.ts";
export * from "./src/nn/generate.ts";
export * from "./src/train/hf.ts";
