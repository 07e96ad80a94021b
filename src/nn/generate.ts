/**
 * Text generation with a KV cache: a {@link Decoder} runs the prompt once (prefill, the whole
 * prompt in one forward) and then one token per step (decode) against the cached keys and
 * values; {@link streamGenerate} samples on the device and reads token ids back in chunks, so a
 * WebGPU loop never waits for the device per token.
 *
 * Sparse decoding (`sparse: true`): at decode steps each Q-Sparse site keeps its top-K inputs
 * and multiplies with a kernel that reads only the kept rows of W (`spmm`); one selection feeds
 * q/k/v and one feeds gate/up. BitNet b1.58 models multiply int8 codes by packed ternary
 * weights (`topkQuantized` + `spmmTernary`), Block Q-Sparse uses the N:M kernel. `sparsity`
 * overrides the S of every site at inference (TEAL-style post-hoc top-K on a dense model).
 * Prefill always takes the training path (mask, then dense matmul): with many rows per weight,
 * the dense kernel is the faster one, and the result is the same. Sites the sparse kernels do not
 * cover keep the training path at decode too: the ReLU sparsifier, the norm-preserving rescale,
 * BitNet with N:M blocks, and the FFN of MoE models (its experts' grouped matmul; attention
 * still decodes sparse). MoE capacity dropping, if configured, applies per decode step.
 *
 * Prompts of different lengths are left-padded; padded keys are masked out. RoPE scores depend
 * only on position differences, so a padded row matches its unpadded run up to rounding.
 *
 * @module
 */
import { mul, relu2, silu } from "../ops/elementwise.ts";
import { embedding } from "../ops/embedding.ts";
import { concat, slice } from "../ops/layout.ts";
import { matmul } from "../ops/matmul.ts";
import { matmulStrided } from "../ops/matmul_strided.ts";
import { quantizeActivations, quantizeWeights, spmmTernary, topkQuantized } from "../ops/quant.ts";
import { rmsNorm } from "../ops/rmsnorm.ts";
import { ropePair } from "../ops/rope.ts";
import { type SampleOptions, sampleTokens } from "../ops/sample.ts";
import { softmax } from "../ops/softmax.ts";
import { spmm } from "../ops/spmm.ts";
import { keepCount, sparsify, topkBlocks } from "../ops/topk.ts";
import { noGrad } from "../autograd/tape.ts";
import { STEP_VALUES_LENGTH } from "../../kernels/step_values.ts";
import { captureStep } from "../tensor/capture.ts";
import { ShapeError, ValueError } from "../core/errors.ts";
import type { TernaryWeights } from "../tensor/quantized.ts";
import { keep, scope } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { ByteTokenizer, type Tokenizer } from "../core/tokenizer.ts";
import type { Attention } from "./attention.ts";
import { SITES, type SiteSparsity } from "./config.ts";
import type { FeedForward } from "./ffn.ts";
import { KVCache } from "./kv_cache.ts";
import type { Linear } from "./linear.ts";
import { MoeFeedForward } from "./moe.ts";
import { SparseSite } from "./sparsify.ts";
import type { TransformerLM } from "./transformer.ts";

/** A captured decode loop ({@link Decoder.loop}). */
export interface DecodeLoop extends Disposable {
  /**
   * One decode step and its sampling.
   *
   * @param step The sampler's step (its random numbers).
   * @param slot Row of the history buffer that receives the ids.
   */
  run(step: number, slot: number): void;
  /** Whether the step is recorded (later runs replay it). */
  readonly captured: boolean;
  /** Frees the capture's buffers. */
  dispose(): void;
}

/** How a {@link Decoder} computes its projections. */
export interface DecodeOptions {
  /**
   * Decode steps multiply with the sparse-activation kernels (only the kept rows of W are read).
   * Default false: mask, then dense matmul (the training path).
   */
  sparse?: boolean;
  /**
   * Sparsity S used at inference, for every site or per site (missing sites keep the model's).
   * On a dense model this is post-hoc top-K (TEAL-style). Default: the model's own S.
   */
  sparsity?: number | Partial<SiteSparsity>;
  /**
   * Multiply q/k/v (and gate/up) with one weight `[in, Σ out]` built once per decoder (default
   * true): one pass over each kept input row instead of three. Costs a copy of those weights;
   * BitNet models keep separate matrices (each has its own absmean scale).
   */
  fuse?: boolean;
}

const MASKED = -1e30;

/**
 * Incremental forward of a {@link TransformerLM} over a KV cache, for a fixed batch.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { Decoder, modelConfig, TransformerLM } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using model = new TransformerLM(dev, modelConfig("xxs", { seqLen: 8 }), 1);
 * using dec = new Decoder(model, 1, 8);
 * using a = dec.prefill([[72, 105]]); // logits of the last prompt position, [1, 1, 256]
 * using b = dec.step(dev.tensor(new Uint32Array([33]), [1, 1], "u32"));
 * assert.deepEqual(b.shape, [1, 1, 256]);
 * assert.equal(dec.cache.length, 3);
 * ```
 */
export class Decoder implements Disposable {
  /** The model. */
  readonly model: TransformerLM;
  /** Keys and values of every layer. */
  readonly cache: KVCache;
  /** Whether decode steps use the sparse kernels. */
  readonly sparse: boolean;
  /** S per site used at inference. */
  readonly sparsity: SiteSparsity;
  /** Left padding of each row (set by {@link Decoder.prefill}). */
  pads: number[];
  readonly #ternary = new Map<Linear, TernaryWeights>();
  readonly #weights = new Map<Linear, Tensor<"f32">>();
  readonly #sites = new Map<SparseSite, SparseSite>();
  readonly #fused = new Map<SparseSite, Tensor<"f32">>();

  /**
   * Allocates the cache; with BitNet, quantises every weight once (not per step).
   *
   * @param model The model.
   * @param batch Sequences decoded together.
   * @param capacity Positions the cache holds (prompt + new tokens).
   * @param opts Sparse kernels, inference sparsity.
   */
  constructor(model: TransformerLM, batch: number, capacity: number, opts: DecodeOptions = {}) {
    const c = model.config;
    this.model = model;
    this.sparse = opts.sparse ?? false;
    const o = opts.sparsity;
    this.sparsity = typeof o === "number"
      ? { qkv: o, o, gateUp: o, down: o }
      : { ...c.sparsity, ...(o ?? {}) };
    for (const s of SITES) {
      if (!(this.sparsity[s] >= 0 && this.sparsity[s] < 1)) {
        throw new ValueError("Decoder", `sparsity S for ${s} must be in [0, 1), got ${o}`);
      }
    }
    this.pads = new Array(batch).fill(0);
    this.cache = new KVCache(model.device, {
      layers: c.nLayers,
      batch,
      heads: c.nHeads,
      headDim: c.dModel / c.nHeads,
      capacity,
    });
    if (!c.bitnet && (opts.fuse ?? true)) {
      noGrad(() => {
        for (const b of model.layers) {
          const a = b.attn;
          this.#fused.set(a.qkvSite, keep(concat([a.q.weight, a.k.weight, a.v.weight], 1)));
          if (!(b.ffn instanceof MoeFeedForward)) {
            const f = b.ffn;
            this.#fused.set(f.gateUpSite, keep(concat([f.gate.weight, f.up.weight], 1)));
          }
        }
      });
    }
    if (c.bitnet) {
      noGrad(() => {
        for (const l of this.#linears()) {
          // Prefill (and non-sparse decode) multiplies by the dequantised ternary weights.
          this.#weights.set(l, keep(l.effectiveWeight()));
          if (this.sparse && c.sparsifier === "topk" && !c.rescale && c.block === null) {
            this.#ternary.set(l, quantizeWeights(l.weight).keep());
          }
        }
      });
    }
  }

  #linears(): Linear[] {
    return this.model.layers.flatMap((b) => {
      const a = b.attn;
      const out = [a.q, a.k, a.v, a.o];
      if (!(b.ffn instanceof MoeFeedForward)) out.push(b.ffn.gate, b.ffn.up, b.ffn.down);
      return out;
    });
  }

  /**
   * Runs the prompts (left-padded to one length) and fills the cache.
   *
   * @param prompts Token ids per sequence (one per cache row), each non-empty.
   * @returns Logits of the last position, `[B, 1, V]`.
   */
  prefill(prompts: readonly ArrayLike<number>[]): Tensor<"f32"> {
    const b = this.cache.batch;
    if (prompts.length !== b) {
      throw new ValueError("Decoder.prefill", `expects ${b} prompts, got ${prompts.length}`);
    }
    if (this.cache.length !== 0) {
      throw new ValueError("Decoder.prefill", "the cache is not empty (prefill runs once)");
    }
    const t = Math.max(...prompts.map((p) => p.length));
    this.pads = prompts.map((p) => t - p.length);
    const ids = new Uint32Array(b * t);
    prompts.forEach((p, r) => ids.set(Array.from(p), r * t + this.pads[r]!));
    const dev = this.model.device;
    using idt = dev.tensor(ids, [b, t], "u32");
    return this.#forward(idt, false);
  }

  /**
   * One decode step: the next token of every sequence.
   *
   * @param ids `[B, 1]` u32 (may stay on the device, e.g. the sampler's output).
   * @returns Logits `[B, 1, V]`.
   */
  step(ids: Tensor<"u32">): Tensor<"f32"> {
    if (ids.rank !== 2 || ids.shape[0] !== this.cache.batch || ids.shape[1] !== 1) {
      throw ShapeError.mismatch(
        "Decoder.step",
        [ids.shape],
        `ids must be [${this.cache.batch}, 1]`,
      );
    }
    return this.#forward(ids, this.sparse);
  }

  /**
   * A captured decode loop: each `run(step, slot)` is one decode step of the ids in `into.next`
   * plus sampling into `into.next` and row `slot` of `into.history`, recorded once and then
   * replayed (see {@link captureStep}): no op code, allocation or bind-group creation per token.
   * The values that change every step (the cache position, the sampler's step and history row,
   * the attention mask) reach the kernels through buffers written before each run, not through
   * uniforms, which a replay cannot change. The run after the recording is verified (run as
   * ordinary code and compared with it).
   *
   * @param into `next` ids `[B]` u32 (read as the step's input, overwritten with the sampled
   *   ids) and `history` `[C, B]` u32.
   * @param sample How to sample (its `step` is ignored: each run passes its own).
   * @returns The loop; dispose it before the decoder.
   *
   * @example Eight greedy tokens, the decode steps replayed
   * ```ts
   * import { openDevice, sampleTokens } from "@qsparse/kit";
   * import { Decoder, modelConfig, TransformerLM } from "@qsparse/kit/nn";
   * import assert from "node:assert/strict";
   * using dev = await openDevice({ prefer: "cpu" });
   * using model = new TransformerLM(dev, modelConfig("xxs", { seqLen: 16 }), 1);
   * using dec = new Decoder(model, 1, 12);
   * using next = dev.empty([1], "u32");
   * using history = dev.empty([8, 1], "u32");
   * const logits = dec.prefill([[72, 105]]);
   * sampleTokens(logits, {}, { next, history, slot: 0 }); // the first new token
   * logits.dispose();
   * using loop = dec.loop({ next, history });
   * for (let step = 1; step < 8; step++) loop.run(step, step); // recorded at step 2, then replayed
   * assert.ok(loop.captured);
   * assert.equal(dec.cache.length, 2 + 7);
   * assert.equal((await history.data()).length, 8); // the eight new token ids
   * ```
   */
  loop(
    into: { next: Tensor<"u32">; history: Tensor<"u32"> },
    sample: SampleOptions = {},
  ): DecodeLoop {
    const op = "Decoder.loop";
    const { batch: b, capacity: cap } = this.cache;
    const { next, history } = into;
    const captured = captureStep(
      this.model.device,
      {
        sv: { shape: [STEP_VALUES_LENGTH], dtype: "u32" },
        bias: { shape: [b, 1, 1, cap], dtype: "f32" },
      },
      ({ sv, bias }) => {
        using col = next.reshape([b, 1]);
        const logits = this.#forward(col, this.sparse, { sv, bias });
        sampleTokens(logits, { ...sample, step: 0 }, { next, history, slot: 0, stepValues: sv });
        logits.dispose();
        return {};
      },
    );
    let verified = false;
    return {
      run: (step: number, slot: number) => {
        if (this.cache.length + 1 > cap) {
          throw new ValueError(op, `the cache is full (${cap} positions)`);
        }
        const data = {
          sv: Uint32Array.of(this.cache.length, step, slot, 0),
          bias: this.#biasData(1),
        };
        if (captured.captured && !verified) {
          captured.verify(data);
          verified = true;
        } else captured.run(data);
        this.cache.advance(1);
      },
      get captured() {
        return captured.captured;
      },
      dispose: () => captured.dispose(),
      [Symbol.dispose]: () => captured.dispose(),
    };
  }

  #forward(
    ids: Tensor<"u32">,
    sparseNow: boolean,
    captured?: { sv: Tensor<"u32">; bias: Tensor<"f32"> },
  ): Tensor<"f32"> {
    const m = this.model;
    const t = ids.shape[1]!;
    const bias = captured?.bias ?? this.#bias(t);
    const sv = captured?.sv;
    const out = noGrad(() =>
      scope(() => {
        // Each residual add runs fused with the norm after it, as in TransformerLM.forward.
        let x = embedding(m.embed, ids);
        const L = m.layers.length;
        let n = L > 0 ? m.layers[0]!.attnNorm.forward(x) : m.norm.forward(x);
        m.layers.forEach((block, i) => {
          const a = this.#attention(block.attn, i, n, bias, sparseNow, sv);
          const [h, u] = block.ffnNorm.forwardAdd(x, a);
          const f = block.ffn instanceof MoeFeedForward
            ? block.ffn.forward(u)
            : this.#ffn(block.ffn, u, sparseNow);
          [x, n] = (i + 1 < L ? m.layers[i + 1]!.attnNorm : m.norm).forwardAdd(h, f);
        });
        const last = t === 1 ? n : slice(n, t - 1, t, 1);
        return m.lmHead.forward(last);
      })
    );
    // A captured loop owns its mask and advances the cache itself (a replay runs no JS).
    if (!captured) {
      bias.dispose();
      this.cache.advance(t);
    }
    return out;
  }

  /** Additive attention mask `[B, 1, T, Tmax]`: causal, padding and unwritten slots. */
  #bias(t: number): Tensor<"f32"> {
    const { batch: b, capacity: cap } = this.cache;
    return this.model.device.tensor(this.#biasData(t), [b, 1, t, cap]);
  }

  #biasData(t: number): Float32Array {
    const { batch: b, capacity: cap, length: pos } = this.cache;
    const data = new Float32Array(b * t * cap).fill(MASKED);
    for (let r = 0; r < b; r++) {
      for (let q = 0; q < t; q++) {
        const row = (r * t + q) * cap;
        for (let j = this.pads[r]!; j <= pos + q; j++) data[row + j] = 0;
      }
    }
    return data;
  }

  #attention(
    attn: Attention,
    layer: number,
    x: Tensor<"f32">,
    bias: Tensor<"f32">,
    sparseNow: boolean,
    sv?: Tensor<"u32">,
  ): Tensor<"f32"> {
    const [b, t, d] = x.shape as [number, number, number];
    const c = attn.config, h = c.nHeads, hd = d / h;
    const [q, k, v] = this.#project(attn.qkvSite, x, [attn.q, attn.k, attn.v], sparseNow);
    const heads = (y: Tensor<"f32">) => y.reshape([b, t, h, hd]);
    // In a captured loop the position comes from the step values (offset 0 + sv[pos]).
    const offset = sv ? 0 : this.cache.length;
    const [qr, kr] = ropePair(heads(q!), heads(k!), { base: c.ropeTheta, offset, stepValues: sv });
    this.cache.write(layer, kr, heads(v!), sv);
    // Scaled by the product's alpha, as in Attention.forward (same rounding as the training
    // path). q stays [B, T, H, hd] and is read as [B, H, T, hd] against the [B, H, Tmax, hd]
    // cache; the context is written back into [B, T, H, hd] (strided views, no permute copies).
    const headsView = [0, 2, 1, 3];
    const keys = this.cache.keys(layer), values = this.cache.values(layer);
    const scores = matmulStrided(qr, keys, {
      transposeB: true,
      dimsA: headsView,
      alpha: 1 / Math.sqrt(hd),
    });
    const p = softmax(scores, { bias }); // the mask added in the softmax's own launch
    const ctx = matmulStrided(p, values, { dimsOut: headsView }).reshape([b, t, d]);
    return this.#project(attn.oSite, ctx, [attn.o], sparseNow)[0]!;
  }

  #ffn(ffn: FeedForward, x: Tensor<"f32">, sparseNow: boolean): Tensor<"f32"> {
    const [g, u] = this.#project(ffn.gateUpSite, x, [ffn.gate, ffn.up], sparseNow);
    const act = ffn.config.ffn === "relu2glu" ? relu2 : silu;
    const hidden = mul(u!, act(g!));
    return this.#project(ffn.downSite, hidden, [ffn.down], sparseNow)[0]!;
  }

  /** The site's input sparsified once, multiplied by each of its projections. */
  #project(
    site: SparseSite,
    x: Tensor<"f32">,
    linears: Linear[],
    sparseNow: boolean,
  ): Tensor<"f32">[] {
    const c = site.config;
    const s = this.sparsity[site.site];
    const sparseKernels = sparseNow && c.sparsifier === "topk" && !c.rescale &&
      !(c.bitnet && c.block !== null);
    const fused = this.#fused.get(site);
    // Every projection of the site: one product with the fused weight, split by columns.
    const each = (mm: (w: Tensor<"f32">) => Tensor<"f32">): Tensor<"f32">[] => {
      if (!fused) return linears.map((l) => mm(this.#weights.get(l) ?? l.weight));
      const y = mm(fused);
      let off = 0;
      return linears.map((l) => slice(y, off, off += l.outFeatures, y.rank - 1));
    };
    if (!sparseKernels) {
      const h = this.#site(site, s).apply(x);
      return each((w) => dense(h, w));
    }
    if (c.bitnet) {
      const hn = rmsNorm(x, null, c.normEps);
      const a = s > 0 ? topkQuantized(hn, { sparsity: s }) : quantizeActivations(hn);
      return linears.map((l) => spmmTernary(a, this.#ternary.get(l)!));
    }
    if (s === 0) return each((w) => dense(x, w));
    if (c.block !== null) {
      const nm = topkBlocks(x, keepCount(c.block, s), c.block);
      return each((w) => spmm(nm, w, { kernel: "nm" }));
    }
    const rows = sparsify(x, s);
    return each((w) => spmm(rows, w));
  }

  /** The model's site, or a copy at the inference sparsity when it differs. */
  #site(site: SparseSite, s: number): SparseSite {
    if (s === site.sparsity) return site;
    let alt = this.#sites.get(site);
    if (!alt) {
      const cfg = { ...site.config, sparsity: { ...site.config.sparsity, [site.site]: s } };
      alt = new SparseSite(site.device, site.name, site.site, cfg);
      alt.countEnabled = false;
      this.#sites.set(site, alt);
    }
    return alt;
  }

  /** Frees the cache and the quantised and fused weights. */
  dispose(): void {
    this.cache.dispose();
    for (const w of this.#fused.values()) w.dispose();
    for (const w of this.#ternary.values()) w.dispose();
    for (const w of this.#weights.values()) w.dispose();
  }

  /** Frees everything at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** `x · w` for `x [..., in]`, `w [in, out]` as one 2-D product (as `Linear.forward` does). */
function dense(x: Tensor<"f32">, w: Tensor<"f32">): Tensor<"f32"> {
  const lead = x.shape.slice(0, -1);
  return matmul(x.reshape([-1, w.shape[0]!]), w).reshape([...lead, w.shape[1]!]);
}

/** Options of {@link generate} / {@link streamGenerate}. */
export interface GenerateOptions extends SampleOptions, DecodeOptions {
  /** New tokens per prompt at most (default 64). */
  maxNewTokens?: number;
  /**
   * Stop a sequence at a token id (number) or when its text contains a string. The text of the
   * result ends before a stop string; its tokens include the one that completed the stop.
   */
  stop?: readonly (string | number)[];
  /** Text ↔ ids for string prompts and results (default: bytes, for a 256-token vocabulary). */
  tokenizer?: Tokenizer;
  /** Longest sequence (prompt + new tokens); default the model's `seqLen`. */
  context?: number;
  /**
   * Decode steps between readbacks of the sampled ids (default 16 on WebGPU, where each await
   * costs ≥ 10 ms; 1 elsewhere). At least 16 on WebGPU.
   */
  readEvery?: number;
  /**
   * Capture the decode step ({@link Decoder.loop}) and replay it for every token: no op code,
   * allocation or bind-group creation per token. Default: on for WebGPU (where a decode step is
   * bound by the host cost of its launches), off for the host backends. The tokens are the same
   * either way.
   */
  capture?: boolean;
}

/** Why a sequence ended. */
export type FinishReason = "stop" | "length" | "context";

/** New tokens of every sequence since the previous chunk. */
export interface GenerationChunk {
  /** Decode steps done so far. */
  steps: number;
  /** New token ids per sequence (empty for finished ones). */
  tokens: number[][];
  /** New text per sequence (a character split across chunks is held back until complete). */
  text: string[];
  /** Per sequence: why it ended, or null while it runs. */
  finished: (FinishReason | null)[];
}

/** One finished sequence. */
export interface Generation {
  /** The prompt's token ids. */
  prompt: number[];
  /** Generated ids (stop token included). */
  tokens: number[];
  /** Generated text (before any stop string). */
  text: string;
  /** Why it ended. */
  finishReason: FinishReason;
}

/** Prompt(s) as text or token ids. */
export type Prompts = string | readonly string[] | readonly (readonly number[])[];

function encodePrompts(
  model: TransformerLM,
  prompts: Prompts,
  tok: Tokenizer,
  context: number,
): number[][] {
  const op = "generate";
  const list: readonly (string | readonly number[])[] = typeof prompts === "string"
    ? [prompts]
    : prompts;
  if (list.length === 0) throw new ValueError(op, "no prompts given");
  const v = model.config.vocab;
  return list.map((p, i) => {
    const ids = typeof p === "string" ? Array.from(tok.encode(p)) : Array.from(p);
    if (ids.length === 0) throw new ValueError(op, `prompt ${i} is empty`);
    if (ids.length > context) {
      throw new ValueError(
        op,
        `prompt ${i} has ${ids.length} tokens, longer than the context of ${context}`,
      );
    }
    const bad = ids.findIndex((id) => !(Number.isInteger(id) && id >= 0 && id < v));
    if (bad >= 0) {
      throw new ValueError(
        op,
        `prompt ${i}: token ${ids[bad]} at position ${bad} is outside the vocabulary [0, ${v})`,
      );
    }
    return ids;
  });
}

/**
 * Generates continuations, yielding the new tokens and text of every sequence as they are read
 * back (every `readEvery` steps). Sampling runs on the device; see {@link sampleTokens}.
 *
 * @param model The model.
 * @param prompts One prompt or several (text, or token ids).
 * @param opts Length, sampling, stops, sparse decoding.
 * @returns An async iterator of chunks.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { modelConfig, streamGenerate, TransformerLM } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using model = new TransformerLM(dev, modelConfig("xxs", { seqLen: 16 }), 1);
 * let n = 0;
 * for await (const chunk of streamGenerate(model, "Hi", { maxNewTokens: 4 })) {
 *   n += chunk.tokens[0]!.length;
 * }
 * assert.equal(n, 4);
 * ```
 */
export async function* streamGenerate(
  model: TransformerLM,
  prompts: Prompts,
  opts: GenerateOptions = {},
): AsyncGenerator<GenerationChunk> {
  const op = "generate";
  const dev = model.device;
  const tok = opts.tokenizer ?? new ByteTokenizer();
  // Byte ids decode as text whenever the vocabulary is bytes (or a tokenizer was given).
  const textIO = opts.tokenizer !== undefined || model.config.vocab <= tok.vocabSize;
  const context = opts.context ?? model.config.seqLen;
  const ids = encodePrompts(model, prompts, tok, context);
  const maxNew = opts.maxNewTokens ?? 64;
  if (!Number.isInteger(maxNew) || maxNew < 0) {
    throw new ValueError(op, `maxNewTokens must be an integer ≥ 0, got ${maxNew}`);
  }
  const webgpu = dev.kind === "webgpu";
  const readEvery = opts.readEvery ?? (webgpu ? 16 : 1);
  if (!Number.isInteger(readEvery) || readEvery < 1 || (webgpu && readEvery < 16)) {
    throw new ValueError(op, `readEvery must be an integer ≥ ${webgpu ? 16 : 1}, got ${readEvery}`);
  }
  const b = ids.length;
  const plen = Math.max(...ids.map((p) => p.length));
  const steps = Math.min(maxNew, context - plen);
  const stopIds = new Set((opts.stop ?? []).filter((s): s is number => typeof s === "number"));
  const stopText = (opts.stop ?? []).filter((s): s is string => typeof s === "string");
  if (stopText.length > 0 && !textIO) {
    throw new ValueError(
      op,
      `stop strings need a tokenizer for a ${model.config.vocab}-token vocabulary`,
    );
  }
  const out = ids.map(() => [] as number[]);
  const finished: (FinishReason | null)[] = ids.map(() => null);
  const emitted = ids.map(() => 0);
  if (steps <= 0) {
    yield {
      steps: 0,
      tokens: ids.map(() => []),
      text: ids.map(() => ""),
      finished: ids.map(() => (maxNew === 0 ? "length" : "context")),
    };
    return;
  }
  const sample = (step: number) => ({ ...opts, step });
  using dec = new Decoder(model, b, plen + steps, opts);
  const sites = model.sites();
  const counting = sites.map((s) => s.countEnabled);
  const moe = model.layers.map((l) => l.ffn).filter((f) => f instanceof MoeFeedForward);
  const stats = moe.map((f) => f.statsEnabled);
  sites.forEach((s) => (s.countEnabled = false));
  moe.forEach((f) => (f.statsEnabled = false));
  const chunk = Math.min(readEvery, steps);
  const next = dev.empty([b], "u32", op);
  // Chunk i's ids are read back while chunk i + 1 is computed: rows [0, chunk) and [chunk,
  // 2·chunk) of one history buffer take turns (one buffer, so a captured step can bind it).
  const hist = dev.empty([2 * chunk, b], "u32", op);
  const capture = opts.capture ?? webgpu;
  let loop: DecodeLoop | null = null;
  try {
    // Token ids of chunk i are read while chunk i + 1 is computed (two history buffers).
    let pending: Promise<ArrayBuffer> | null = null;
    let pendingRows = 0;
    let pendingSteps = 0;
    const absorb = (buf: ArrayBuffer, rows: number, done: number): GenerationChunk => {
      const all = new Uint32Array(buf);
      const fresh = ids.map(() => [] as number[]);
      for (let s = 0; s < rows; s++) {
        for (let r = 0; r < b; r++) {
          if (finished[r]) continue;
          const id = all[s * b + r]!;
          out[r]!.push(id);
          fresh[r]!.push(id);
          if (stopIds.has(id)) finished[r] = "stop";
          else if (stopText.length > 0 && textIO) {
            const text = tok.decode(out[r]!);
            if (stopText.some((st) => text.includes(st))) finished[r] = "stop";
          }
        }
      }
      if (done >= steps) {
        for (let r = 0; r < b; r++) finished[r] ??= steps < maxNew ? "context" : "length";
      }
      const text = ids.map((_, r) => {
        if (!textIO) return "";
        let full = tok.decode(out[r]!);
        const cut = stopText.map((st) => full.indexOf(st)).filter((i) => i >= 0);
        if (cut.length > 0) full = full.slice(0, Math.min(...cut));
        // A character cut mid-way decodes as U+FFFD: hold it back until its last byte arrives.
        else if (!finished[r] && full.endsWith("\uFFFD")) full = full.slice(0, -1);
        const piece = full.slice(emitted[r]);
        emitted[r] = Math.max(emitted[r]!, full.length);
        return piece;
      });
      return { steps: done, tokens: fresh, text, finished: [...finished] };
    };
    for (let step = 0; step < steps; step++) {
      const inChunk = step % chunk, first = (Math.floor(step / chunk) % 2) * chunk;
      const slot = first + inChunk;
      if (step === 0) {
        const logits = dec.prefill(ids);
        sampleTokens(logits, sample(step), { next, history: hist, slot });
        logits.dispose();
      } else if (capture) {
        loop ??= dec.loop({ next, history: hist }, opts);
        loop.run(step, slot);
      } else {
        using col = next.reshape([b, 1]);
        const logits = dec.step(col);
        sampleTokens(logits, sample(step), { next, history: hist, slot });
        logits.dispose();
      }
      const last = step === steps - 1;
      if (inChunk === chunk - 1 || last) {
        if (pending) {
          const c = absorb(await pending, pendingRows, pendingSteps);
          yield c;
          if (finished.every((f) => f !== null)) return;
        }
        pending = dev.backend.read(hist.storage(op), (inChunk + 1) * b * 4, first * b * 4);
        pendingRows = inChunk + 1;
        pendingSteps = step + 1;
      }
    }
    if (pending) yield absorb(await pending, pendingRows, pendingSteps);
  } finally {
    loop?.dispose();
    next.dispose();
    hist.dispose();
    sites.forEach((s, i) => (s.countEnabled = counting[i]!));
    moe.forEach((f, i) => (f.statsEnabled = stats[i]!));
  }
}

/**
 * Generates continuations of one or several prompts (see {@link streamGenerate} for streaming).
 * Greedy by default (temperature 0), which is deterministic.
 *
 * @param model The model.
 * @param prompts One prompt or several (text, or token ids).
 * @param opts Length, sampling, stops, sparse decoding, `onChunk` for streaming.
 * @returns One result per prompt.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { generate, modelConfig, TransformerLM } from "@qsparse/kit/nn";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using model = new TransformerLM(dev, modelConfig("xxs", { seqLen: 16 }), 1);
 * const [a] = await generate(model, "Hello", { maxNewTokens: 5 });
 * const [b] = await generate(model, "Hello", { maxNewTokens: 5 });
 * assert.equal(a!.tokens.length, 5);
 * assert.deepEqual(a!.tokens, b!.tokens); // greedy is deterministic
 * ```
 */
export async function generate(
  model: TransformerLM,
  prompts: Prompts,
  opts: GenerateOptions & { onChunk?: (chunk: GenerationChunk) => void } = {},
): Promise<Generation[]> {
  const tok = opts.tokenizer ?? new ByteTokenizer();
  const context = opts.context ?? model.config.seqLen;
  const ids = encodePrompts(model, prompts, tok, context);
  const tokens = ids.map(() => [] as number[]);
  const text = ids.map(() => "");
  let finished: (FinishReason | null)[] = ids.map(() => null);
  for await (const c of streamGenerate(model, ids, opts)) {
    c.tokens.forEach((t, r) => tokens[r]!.push(...t));
    c.text.forEach((t, r) => (text[r] += t));
    finished = c.finished;
    opts.onChunk?.(c);
  }
  return ids.map((prompt, r) => ({
    prompt,
    tokens: tokens[r]!,
    text: text[r]!,
    finishReason: finished[r] ?? "length",
  }));
}
