/**
 * # @qsparse/kit
 *
 * A WebGPU research kit for **Q-Sparse** — full activation sparsity for LLMs: typed tensors on a
 * WebGPU device with a CPU twin of every kernel, sparsity kernels (top-K, N:M, sparse × dense
 * matmul, quantization), autograd with the straight-through estimator, the Q-Sparse model family,
 * a trainer, sparsity accounting and a scaling-law fitter.
 *
 * This entry point holds the device, tensors, ops, autograd and the backend contract types. The
 * rest lives in subpath exports: `@qsparse/kit/nn` (layers and the transformer family),
 * `@qsparse/kit/train` (corpus, tokenizer, optimizer, trainer, checkpoints, sweeps, the
 * scaling-law fit), `@qsparse/kit/plot` (plotly figures) and `@qsparse/kit/studies` (the paper's
 * studies, used by the notebooks).
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
export {
  CaptureError,
  CheckpointError,
  DeviceError,
  DisposedError,
  DivergenceError,
  DTypeError,
  KitError,
  ShapeError,
  ValueError,
} from "./src/core/errors.ts";
export { bytesPerElement, isFloat } from "./src/core/dtype.ts";
export type { AnyTypedArray, DType, FloatDType, TypedArrayFor } from "./src/core/dtype.ts";
export { broadcastShapes, sizeOf } from "./src/core/shape.ts";
export type { Shape } from "./src/core/shape.ts";
export { Tensor } from "./src/tensor/tensor.ts";
export type { NestedArray, SharedStorage } from "./src/tensor/tensor.ts";
export { Device, openDevice } from "./src/tensor/device.ts";
export type {
  DeviceOptions,
  GeneratorState,
  NestedNumbers,
  OpenDeviceOptions,
  RandomOptions,
} from "./src/tensor/device.ts";
export type { FusionOptions, FusionQueue } from "./src/tensor/fusion.ts";
export type { DeferredKind, DeferredQueue } from "./src/tensor/deferred.ts";
export type { FusedReduce } from "./kernels/fused.ts";
export { keep, scope } from "./src/tensor/scope.ts";
export { CapturedStep, captureStep } from "./src/tensor/capture.ts";
export type {
  CaptureInput,
  CaptureInputs,
  CaptureOptions,
  CaptureOutputs,
  InputData,
  InputTensors,
} from "./src/tensor/capture.ts";
export type { CaptureStats, PlannedInterval } from "./src/backend/capture.ts";
export { CSR, NMSparse, SparseRows } from "./src/tensor/sparse.ts";
export type { AnySparse } from "./src/tensor/sparse.ts";
export { Int8Rows, Int8SparseRows, TernaryWeights } from "./src/tensor/quantized.ts";
export type {
  Backend,
  BackendKind,
  Blas,
  CapturedCommand,
  CaptureRecorder,
  DeviceLimits,
  DeviceStats,
  Dispatch,
  KernelTime,
  NativeKernel,
  NativeRuntime,
  ParallelTask,
  Replay,
  Storage,
  TaskContext,
  Tunable,
} from "./src/backend/backend.ts";
export type { TuneResult } from "./src/backend/autotune.ts";
export { needsGrad, noGrad, record, recordGroup } from "./src/autograd/tape.ts";
export type { GradGroup, GradNode } from "./src/autograd/tape.ts";
export { backward } from "./src/autograd/backward.ts";
export type { BackwardOptions } from "./src/autograd/backward.ts";
export {
  abs,
  add,
  addScalar,
  cast,
  div,
  equal,
  exp,
  greater,
  greaterScalar,
  log,
  maximum,
  maxScalar,
  minimum,
  mul,
  mulScalar,
  neg,
  powScalar,
  rdivScalar,
  relu,
  relu2,
  rsqrt,
  rsubScalar,
  sigmoid,
  sign,
  silu,
  sqrt,
  square,
  sub,
  tanh,
  where,
} from "./src/ops/elementwise.ts";
export type { BinaryOp, UnaryOp } from "./src/ops/elementwise.ts";
export { broadcastTo, concat, slice, sumTo, transpose } from "./src/ops/layout.ts";
export { permute } from "./src/ops/permute.ts";
export { matmul } from "./src/ops/matmul.ts";
export type { MatmulOptions, MatmulVariant } from "./src/ops/matmul.ts";
export { matmulStrided } from "./src/ops/matmul_strided.ts";
export type { MatmulStridedOptions, StridedMatmulVariant } from "./src/ops/matmul_strided.ts";
export { matmulShared } from "./src/ops/linear_group.ts";
export {
  argmax,
  argmaxAll,
  max,
  maxAll,
  mean,
  meanAll,
  sum,
  sumAll,
  sumSquares,
} from "./src/ops/reduce.ts";
export type { ReduceOptions } from "./src/ops/reduce.ts";
export { logSoftmax, softmax } from "./src/ops/softmax.ts";
export type { SoftmaxOptions } from "./src/ops/softmax.ts";
export { addRmsNorm, rmsNorm, rmsNormStream } from "./src/ops/rmsnorm.ts";
export { rope, ropeFrequencies, ropePair } from "./src/ops/rope.ts";
export type { RopeOptions } from "./src/ops/rope.ts";
export { embedding } from "./src/ops/embedding.ts";
export { crossEntropy } from "./src/ops/cross_entropy.ts";
export type { CrossEntropyOptions } from "./src/ops/cross_entropy.ts";
export { keepCount, sparsify, topkBlocks, topkMask, topkRows } from "./src/ops/topk.ts";
export type {
  KeepSpec,
  TopkBlocksOptions,
  TopkMaskOptions,
  TopkOptions,
  TopkOrder,
} from "./src/ops/topk.ts";
export { countNonzero, denseToCsr, toCsr } from "./src/ops/sparse.ts";
export type { CountNonzeroOptions } from "./src/ops/sparse.ts";
export { spmm } from "./src/ops/spmm.ts";
export type { SpmmKernelChoice, SpmmOptions } from "./src/ops/spmm.ts";
export {
  quantizeActivations,
  quantizeWeights,
  spmmTernary,
  topkQuantized,
} from "./src/ops/quant.ts";
export { quantizeActivationsSte, quantizeWeightsSte } from "./src/ops/quant_ste.ts";
export {
  chunkUnion,
  expertCapacity,
  groupedMatmul,
  loadBalancingLoss,
  moeCombine,
  moeGather,
  moeGroup,
  MoeGrouping,
  moeRoute,
  routerZLoss,
} from "./src/ops/moe.ts";
export type {
  ChunkUnionOptions,
  GroupedMatmulOptions,
  MoeGroupOptions,
  MoeRouteOptions,
  MoeRouting,
} from "./src/ops/moe.ts";
export { sampleTokens } from "./src/ops/sample.ts";
export type { SampleInto, SampleOptions } from "./src/ops/sample.ts";
