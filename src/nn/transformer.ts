/**
 * `TransformerLM`: a decoder-only language model in the LLaMA style (pre-RMSNorm, RoPE, gated
 * FFN, no biases) with Q-Sparse at every projection site. Embedding and LM head stay dense, as
 * in the paper and the official code.
 *
 * Parameter names (checkpoint keys, PyTorch reference): `embed.weight [V, d]`,
 * `layers.{i}.attn_norm.weight`, `layers.{i}.attn.{q,k,v,o}_proj.weight [in, out]`,
 * `layers.{i}.ffn_norm.weight`, `layers.{i}.ffn.{gate,up,down}_proj.weight [in, out]` (with MoE:
 * `layers.{i}.ffn.router.weight [d, E]`, `layers.{i}.ffn.experts.{gate,up}_proj.weight [E, d, f]`,
 * `layers.{i}.ffn.experts.down_proj.weight [E, f, d]`),
 * `norm.weight`, `lm_head.weight [d, V]`.
 *
 * @module
 */
import { add } from "../ops/elementwise.ts";
import { crossEntropy } from "../ops/cross_entropy.ts";
import { embedding } from "../ops/embedding.ts";
import type { Device } from "../tensor/device.ts";
import { DTypeError, ShapeError } from "../core/errors.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { Attention } from "./attention.ts";
import { type ModelConfig, type ParamCounts, paramCounts, validateConfig } from "./config.ts";
import { FeedForward } from "./ffn.ts";
import {
  generate,
  type GenerateOptions,
  type Generation,
  type GenerationChunk,
  type Prompts,
  streamGenerate,
} from "./generate.ts";
import { Linear } from "./linear.ts";
import { Module } from "./module.ts";
import { MoeFeedForward } from "./moe.ts";
import { RMSNorm } from "./rmsnorm.ts";
import type { SparseSite } from "./sparsify.ts";

/**
 * One pre-norm transformer block.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { Block, modelConfig } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using block = new Block(dev, "layers.0", modelConfig("xxs", { seqLen: 4 }), 1);
 * assert.ok(block.namedParameters().has("layers.0.attn.q_proj.weight"));
 * using x = dev.randn([1, 4, 32], { seed: 2 });
 * using y = block.forward(x);
 * assert.deepEqual(y.shape, [1, 4, 32]);
 * ```
 */
export class Block extends Module {
  /** Pre-norm of the attention branch (`attn_norm`). */
  readonly attnNorm: RMSNorm;
  /** Causal self-attention (`attn`). */
  readonly attn: Attention;
  /** Pre-norm of the FFN branch (`ffn_norm`). */
  readonly ffnNorm: RMSNorm;
  /** The dense FFN, or the mixture of experts when `config.moe` is set. */
  readonly ffn: FeedForward | MoeFeedForward;

  /**
   * Creates the block's norms, attention and FFN (a mixture of experts when `config.moe` is set).
   *
   * @param device The device.
   * @param path Dotted name (`layers.{i}`).
   * @param config The model config.
   * @param seed Init seed.
   */
  constructor(device: Device, path: string, config: ModelConfig, seed: number) {
    super(device, path);
    this.attnNorm = this.child(
      "attn_norm",
      new RMSNorm(device, this.qualify("attn_norm"), config.dModel, config.normEps),
    );
    this.attn = this.child("attn", new Attention(device, this.qualify("attn"), config, seed));
    this.ffnNorm = this.child(
      "ffn_norm",
      new RMSNorm(device, this.qualify("ffn_norm"), config.dModel, config.normEps),
    );
    const ffnPath = this.qualify("ffn");
    this.ffn = this.child(
      "ffn",
      config.moe
        ? new MoeFeedForward(device, ffnPath, config, seed)
        : new FeedForward(device, ffnPath, config, seed),
    );
  }

  /**
   * `h = x + attn(attnNorm(x))`, then `h + ffn(ffnNorm(h))` (residual around each branch).
   *
   * @param x `[B, T, d]`.
   * @returns `[B, T, d]`.
   */
  forward(x: Tensor<"f32">): Tensor<"f32"> {
    const [h, u] = this.ffnNorm.forwardAdd(x, this.attn.forward(this.attnNorm.forward(x)));
    return add(h, this.ffn.forward(u));
  }

  /**
   * The block as the model chains it: the residual stream `x` and its `attnNorm` output `n` in,
   * and out the next stream and `next`'s norm of it, each residual add fused with the norm
   * after it (`RMSNorm.forwardAdd`). The same values as {@link Block.forward} then `next`.
   *
   * @param x The residual stream `[B, T, d]`.
   * @param n `attnNorm.forward(x)`.
   * @param next The norm after this block: the next block's `attnNorm`, or the model's final one.
   * @returns The new stream and its normalised form.
   */
  forwardChained(
    x: Tensor<"f32">,
    n: Tensor<"f32">,
    next: RMSNorm,
  ): { x: Tensor<"f32">; n: Tensor<"f32"> } {
    const [h, u] = this.ffnNorm.forwardAdd(x, this.attn.forward(n));
    const [y, m] = next.forwardAdd(h, this.ffn.forward(u));
    return { x: y, n: m };
  }
}

/**
 * The language model.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { modelConfig, TransformerLM } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using model = new TransformerLM(dev, modelConfig("tiny", { sparsity: 0.4, seqLen: 8 }), 1);
 * const ids = dev.tensor(new Uint32Array(2 * 8).map((_, i) => i % 256), [2, 8], "u32");
 * using logits = model.forward(ids);
 * assert.deepEqual(logits.shape, [2, 8, 256]);
 * ```
 */
export class TransformerLM extends Module {
  /** The validated model config. */
  readonly config: ModelConfig;
  /** Token embedding table `embed.weight`, `[vocab, d]` (dense, never sparsified). */
  readonly embed: Tensor<"f32">;
  /** The `nLayers` transformer blocks, `layers.{i}`, in forward order. */
  readonly layers: Block[];
  /** Final RMSNorm before the LM head (`norm`). */
  readonly norm: RMSNorm;
  /** Output projection to logits, `lm_head`, `[d, vocab]` (dense; never BitNet-quantised). */
  readonly lmHead: Linear;

  /**
   * Validates the config and creates every parameter (throws a ValueError on a bad config).
   *
   * @param device The device.
   * @param config A validated config (see `modelConfig`).
   * @param seed Initialisation seed.
   */
  constructor(device: Device, config: ModelConfig, seed = 0) {
    super(device, "");
    validateConfig(config);
    this.config = config;
    this.embed = this.normalParam(
      "embed.weight",
      [config.vocab, config.dModel],
      config.initStd,
      seed,
    );
    this.layers = [];
    for (let i = 0; i < config.nLayers; i++) {
      this.layers.push(this.child(`layers.${i}`, new Block(device, `layers.${i}`, config, seed)));
    }
    this.norm = this.child("norm", new RMSNorm(device, "norm", config.dModel, config.normEps));
    this.lmHead = this.child(
      "lm_head",
      new Linear(device, "lm_head", config.dModel, config.vocab, { seed, std: config.initStd }),
    );
  }

  /**
   * Logits for every position.
   *
   * @param ids Token ids `[B, T]` (u32), T ≤ any length (RoPE has no maximum).
   * @returns `[B, T, vocab]`.
   */
  forward(ids: Tensor<"u32">): Tensor<"f32"> {
    if (ids.dtype !== "u32") {
      throw new DTypeError("TransformerLM.forward", `token ids must be u32, got ${ids.dtype}`);
    }
    if (ids.rank !== 2) {
      throw ShapeError.mismatch("TransformerLM.forward", [ids.shape], "ids must be [B, T]");
    }
    const x = embedding(this.embed, ids);
    return this.lmHead.forward(this.#normalisedStream(x));
  }

  /**
   * The blocks over embeddings `x` and the final norm: the lm head's input. Each residual add
   * runs fused with the norm after it (`Block.forwardChained`).
   */
  #normalisedStream(x: Tensor<"f32">): Tensor<"f32"> {
    const L = this.layers.length;
    if (L === 0) return this.norm.forward(x);
    let n: Tensor<"f32">;
    [x, n] = this.layers[0]!.attnNorm.forwardStream(x);
    this.layers.forEach((layer, i) => {
      ({ x, n } = layer.forwardChained(x, n, i + 1 < L ? this.layers[i + 1]!.attnNorm : this.norm));
    });
    return n;
  }

  /**
   * Mean next-token cross-entropy (plus the MoE auxiliary losses when the model has experts).
   *
   * @param ids Inputs `[B, T]` (u32).
   * @param targets Next tokens `[B, T]` (u32).
   * @returns A scalar loss tensor (differentiable).
   */
  loss(ids: Tensor<"u32">, targets: Tensor<"u32">): Tensor<"f32"> {
    if (targets.shape.join() !== ids.shape.join()) {
      throw ShapeError.mismatch(
        "TransformerLM.loss",
        [ids.shape, targets.shape],
        "targets must match ids",
      );
    }
    const logits = this.forward(ids);
    const v = this.config.vocab;
    let loss = crossEntropy(logits.reshape([-1, v]), targets.reshape([-1]), { reduction: "mean" });
    for (const layer of this.layers) {
      const aux = layer.ffn instanceof MoeFeedForward ? layer.ffn.takeAuxLoss() : null;
      if (aux) loss = add(loss, aux);
    }
    return loss;
  }

  /** Every sparsification site, in forward order. @returns The sites. */
  sites(): SparseSite[] {
    return this.layers.flatMap((l) => [...l.attn.sites(), ...l.ffn.sites()]);
  }

  /** Frees the parameters and the sparsity counters. */
  override dispose(): void {
    for (const s of this.sites()) s.freeCounter();
    super.dispose();
  }

  /** Parameter counts. @returns Total, embedding, non-embedding, per site. */
  params(): ParamCounts {
    return paramCounts(this.config);
  }

  /**
   * Loads a model from a kit checkpoint (a file or a run directory) or a Llama-style folder
   * (`config.json` + `model.safetensors`); the same as `loadModel` of `@qsparse/kit/train`.
   *
   * @param device Where the model lives.
   * @param path The checkpoint file, run directory or Llama-style folder.
   * @returns The model, weights loaded.
   * @throws {CheckpointError} For a file or folder of another format.
   *
   * @example
   * ```ts
   * import { openDevice } from "@qsparse/kit";
   * import { modelConfig, TransformerLM } from "@qsparse/kit/nn";
   * import { exportHf } from "@qsparse/kit/train";
   * import assert from "node:assert/strict";
   * using dev = await openDevice({ prefer: "cpu" });
   * using a = new TransformerLM(dev, modelConfig("xxs", { seqLen: 8 }), 1);
   * const dir = await Deno.makeTempDir();
   * await exportHf(a, dir);
   * using b = await TransformerLM.fromCheckpoint(dev, dir);
   * assert.deepEqual([...await b.embed.data()], [...await a.embed.data()]);
   * ```
   */
  static async fromCheckpoint(device: Device, path: string): Promise<TransformerLM> {
    // File formats live in the train layer, above nn: imported when called, so the layer order
    // (nn never imports train statically) holds and models load with one call.
    const { loadModel } = await import("../train/load_model.ts");
    return await loadModel(device, path);
  }

  /**
   * Generates continuations with a KV cache (greedy by default; see {@link generate}).
   *
   * @param prompts One prompt or several (text, or token ids).
   * @param opts `maxNewTokens`, `temperature`, `topK`, `topP`, `seed`, `stop`, `sparse`,
   *   `sparsity`, `onChunk`.
   * @returns One result per prompt.
   *
   * @example
   * ```ts
   * import { openDevice } from "@qsparse/kit";
   * import { modelConfig, TransformerLM } from "@qsparse/kit/nn";
   * import assert from "node:assert/strict";
   * using dev = await openDevice({ prefer: "cpu" });
   * using model = new TransformerLM(dev, modelConfig("xxs", { seqLen: 16, sparsity: 0.5 }), 1);
   * const [g] = await model.generate("The ", { maxNewTokens: 3, sparse: true });
   * assert.equal(g!.tokens.length, 3);
   * ```
   */
  generate(
    prompts: Prompts,
    opts: GenerateOptions & { onChunk?: (chunk: GenerationChunk) => void } = {},
  ): Promise<Generation[]> {
    return generate(this, prompts, opts);
  }

  /**
   * Streams continuations chunk by chunk (see {@link streamGenerate}).
   *
   * @param prompts One prompt or several.
   * @param opts As for {@link TransformerLM.generate}.
   * @returns An async iterator of chunks.
   *
   * @example
   * ```ts
   * import { openDevice } from "@qsparse/kit";
   * import { modelConfig, TransformerLM } from "@qsparse/kit/nn";
   * import assert from "node:assert/strict";
   * using dev = await openDevice({ prefer: "cpu" });
   * using model = new TransformerLM(dev, modelConfig("xxs", { seqLen: 16 }), 1);
   * let text = "";
   * for await (const c of model.stream("Hi", { maxNewTokens: 4 })) text += c.text[0];
   * assert.ok(typeof text === "string");
   * ```
   */
  stream(prompts: Prompts, opts: GenerateOptions = {}): AsyncGenerator<GenerationChunk> {
    return streamGenerate(this, prompts, opts);
  }
}
