/**
 * A tour of the kit: devices, tensors, ops, autograd, sparsity kernels, the model family.
 *
 * Run: `deno run -A examples/quickstart.ts`
 */
import {
  backward,
  countNonzero,
  matmul,
  openDevice,
  quantizeActivations,
  quantizeWeights,
  scope,
  sparsify,
  spmm,
  spmmTernary,
  sumAll,
  topkBlocks,
  topkMask,
  topkQuantized,
} from "../mod.ts";
import { modelConfig, paramCounts, TransformerLM } from "../src/nn/mod.ts";

// 1. A device: WebGPU when an adapter exists (Mesa's llvmpipe counts), else the CPU backend.
using dev = await openDevice();
console.log(`device: ${dev.kind} — ${dev.description}`);

// 2. Tensors live on the device; reading one back flushes the pending work.
using x = dev.randn([4, 4096], { seed: 1 }); // 4 tokens, hidden size 4096
using w = dev.randn([4096, 1024], { seed: 2, std: 0.02 }); // weights stored input-major [in, out]
console.log(
  "x",
  x.toString(),
  "first values",
  [...(await x.data()).slice(0, 3)].map((v) => v.toFixed(3)),
);

// 3. Q-Sparse's top-K: keep K = ⌊(1 − S)·D⌋ entries per token by magnitude.
using xs = sparsify(x, 0.6); // SparseRows: values + u32 indices, K = 1638 per row
console.log(`sparsify S=0.6: K=${xs.k} of ${xs.width} per row, density ${xs.density.toFixed(3)}`);

// 4. Sparse × dense: only the kept rows of w are read (work ∝ K, not D).
using y = spmm(xs, w);
using yRef = matmul(topkMask(x, { sparsity: 0.6 }), w);
const [a, b] = [await y.data(), await yRef.data()];
console.log("spmm == matmul(mask(x), w):", a.every((v, i) => Math.abs(v - b[i]!) < 1e-3));

// 5. Block Q-Sparse: 16 of every 32 consecutive values.
using nm = topkBlocks(x, 16, 32);
console.log(`N:M 16:32 density ${nm.density}`);

// 6. BitNet b1.58: int8 absmax activations (per token), ternary absmean weights.
using q = topkQuantized(x, { sparsity: 0.6 });
using tw = quantizeWeights(w);
using yq = spmmTernary(q, tw);
console.log("int8 sparse × ternary:", yq.shape);
void quantizeActivations;

// 7. Autograd with the straight-through estimator: the gradient reaches every entry.
const h = dev.randn([2, 8], { seed: 3 });
h.requiresGrad = true;
scope(() => backward(sumAll(topkMask(h, { sparsity: 0.5 }))));
console.log(
  "forward keeps",
  await countNonzero(topkMask(h, { sparsity: 0.5 })).item(),
  "of",
  h.size,
  "— STE gradient reaches",
  await countNonzero(h.grad!).item(),
);

// 8. The model family: a Q-Sparse transformer LM with ReLU²GLU; sizes by name.
const cfg = modelConfig("tiny", { sparsity: 0.5, seqLen: 32 });
using model = new TransformerLM(dev, cfg, 0);
const counts = paramCounts(cfg);
console.log(
  `model ${cfg.name}: N=${counts.nonEmbedding} non-embedding params, total ${counts.total}`,
);
const ids = dev.tensor(new TextEncoder().encode("Q-Sparse keeps only the top-K of").slice(0, 32), [
  1,
  32,
], "u32");
using logits = model.forward(ids);
console.log("logits", logits.shape.join("×"));
console.log("live buffers:", dev.stats().liveBuffers);
