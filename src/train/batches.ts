/**
 * Training batches and the validation set, as host token ids `[B, T + 1]` (inputs are columns
 * `0..T-1`, targets `1..T`), ready for the trainer to upload.
 *
 * Training windows come from a counter-based sampler: the window offsets of step `s` are a pure
 * function of `(seed, s)`. The sampler's whole state is `{ seed, step }`, so a run resumed from a
 * checkpoint sees exactly the batches it would have seen, without replaying earlier steps.
 *
 * @module
 */
import { randomBits } from "../core/random.ts";
import { ValueError } from "../core/errors.ts";

/** The serialisable state of a {@link BatchSampler}. */
export interface SamplerState {
  /** Seed (u32). */
  seed: number;
  /** The next step to draw. */
  step: number;
}

/** Options of {@link BatchSampler}. */
export interface BatchSamplerOptions {
  /** Windows per batch (B). */
  batchSize: number;
  /** Sequence length (T); each window holds T + 1 tokens. */
  seqLen: number;
  /** Seed (u32); default 0. */
  seed?: number;
  /** First step to draw (to resume); default 0. */
  step?: number;
}

function checkCount(op: string, name: string, v: number, min: number): void {
  if (!Number.isSafeInteger(v) || v < min) {
    throw new ValueError(op, `${name} must be an integer ≥ ${min}, got ${v}`);
  }
}

/** Steps are hashed as u32 counters; no run gets near 2³² steps. */
function checkStep(op: string, step: number): void {
  if (!Number.isInteger(step) || step < 0 || step > 0xffffffff) {
    throw new ValueError(op, `step must be an integer in [0, 2^32), got ${step}`);
  }
}

/**
 * Draws fixed-length windows at uniformly random offsets of a token stream.
 *
 * @example Resuming reproduces the same batches
 * ```ts
 * import { BatchSampler } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const tokens = Uint32Array.from({ length: 1000 }, (_, i) => i % 256);
 * const a = new BatchSampler(tokens, { batchSize: 4, seqLen: 16, seed: 7 });
 * a.next();
 * const saved = JSON.stringify(a.state);
 * const b = new BatchSampler(tokens, { batchSize: 4, seqLen: 16, ...JSON.parse(saved) });
 * assert.deepEqual(b.next(), a.next());
 * assert.equal(b.next().length, 4 * 17);
 * ```
 */
export class BatchSampler {
  /** The token stream. */
  readonly tokens: Uint32Array;
  /** Windows per batch (B). */
  readonly batchSize: number;
  /** Sequence length (T). */
  readonly seqLen: number;
  /** Seed. */
  readonly seed: number;
  #step: number;

  /**
   * Creates a sampler over a token stream.
   *
   * @param tokens The training token stream (at least T + 1 tokens).
   * @param opts Batch size, sequence length, seed and starting step.
   * @throws {ValueError} For non-positive sizes, a bad seed or a stream shorter than T + 1.
   */
  constructor(tokens: Uint32Array, opts: BatchSamplerOptions) {
    const op = "BatchSampler";
    checkCount(op, "batchSize", opts.batchSize, 1);
    checkCount(op, "seqLen", opts.seqLen, 1);
    const seed = opts.seed ?? 0;
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new ValueError(op, `seed must be a u32, got ${seed}`);
    }
    const step = opts.step ?? 0;
    checkStep(op, step);
    if (tokens.length < opts.seqLen + 1) {
      throw new ValueError(
        op,
        `${tokens.length} tokens cannot hold one window of seqLen + 1 = ${opts.seqLen + 1}`,
      );
    }
    this.tokens = tokens;
    this.batchSize = opts.batchSize;
    this.seqLen = opts.seqLen;
    this.seed = seed;
    this.#step = step;
  }

  /** `{ seed, step }`: everything needed to continue exactly (JSON-serialisable). */
  get state(): SamplerState {
    return { seed: this.seed, step: this.#step };
  }

  /**
   * The window start offsets of batch `step`, each in `[0, tokens.length − T − 1]`.
   *
   * @param step Any step ≥ 0.
   * @returns B offsets.
   */
  offsets(step: number): number[] {
    checkStep("BatchSampler.offsets", step);
    const range = this.tokens.length - this.seqLen; // number of valid offsets
    // Two hash levels, one keyed by step and then one per window, so counters never collide
    // across steps however large B gets.
    const key = randomBits(this.seed, step);
    const out = new Array<number>(this.batchSize);
    for (let b = 0; b < this.batchSize; b++) {
      // 53 random bits: offsets stay uniform even for streams of billions of tokens.
      const hi = randomBits(key, 2 * b) >>> 5;
      const lo = randomBits(key, 2 * b + 1) >>> 6;
      const u = (hi * 2 ** 26 + lo) / 2 ** 53;
      out[b] = Math.floor(u * range);
    }
    return out;
  }

  /**
   * Batch `step` without changing the sampler's state.
   *
   * @param step Any step ≥ 0.
   * @returns Token ids, row-major `[B, T + 1]`.
   */
  batchAt(step: number): Uint32Array {
    const w = this.seqLen + 1;
    const out = new Uint32Array(this.batchSize * w);
    this.offsets(step).forEach((o, b) => out.set(this.tokens.subarray(o, o + w), b * w));
    return out;
  }

  /**
   * The batch of the current step; advances the step.
   *
   * @returns Token ids, row-major `[B, T + 1]`.
   */
  next(): Uint32Array {
    return this.batchAt(this.#step++);
  }
}

/** Options of {@link ValidationSet}. */
export interface ValidationSetOptions {
  /** Sequence length (T); each window holds T + 1 tokens. */
  seqLen: number;
  /** Keep at most this many windows, spread evenly over the stream; default all. */
  maxWindows?: number;
}

/**
 * A fixed validation set: non-overlapping windows of T + 1 tokens cut from the validation stream.
 * When capped, the kept windows are spread evenly over the whole stream (so every validation
 * document is represented, not only the first ones). The same stream and options always give the
 * same windows, so validation losses of different runs are comparable.
 *
 * @example
 * ```ts
 * import { ValidationSet } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const tokens = Uint32Array.from({ length: 100 }, (_, i) => i);
 * const val = new ValidationSet(tokens, { seqLen: 9, maxWindows: 4 });
 * assert.equal(val.count, 4);
 * assert.deepEqual([...val.window(1)].slice(0, 3), [20, 21, 22]);
 * const sizes = [...val.batches(3)].map((b) => b.length / 10);
 * assert.deepEqual(sizes, [3, 1]);
 * ```
 */
export class ValidationSet {
  /** Sequence length (T). */
  readonly seqLen: number;
  /** Number of windows. */
  readonly count: number;
  /** All windows, row-major `[count, T + 1]`. */
  readonly windows: Uint32Array;

  /**
   * Cuts the windows from a validation token stream.
   *
   * @param tokens The validation token stream.
   * @param opts Sequence length and cap.
   * @throws {ValueError} For bad sizes or a stream shorter than one window.
   */
  constructor(tokens: Uint32Array, opts: ValidationSetOptions) {
    const op = "ValidationSet";
    checkCount(op, "seqLen", opts.seqLen, 1);
    const w = opts.seqLen + 1;
    const available = Math.floor(tokens.length / w);
    if (available === 0) {
      throw new ValueError(
        op,
        `${tokens.length} tokens cannot hold one window of seqLen + 1 = ${w}`,
      );
    }
    const cap = opts.maxWindows ?? available;
    checkCount(op, "maxWindows", cap, 1);
    this.seqLen = opts.seqLen;
    this.count = Math.min(cap, available);
    this.windows = new Uint32Array(this.count * w);
    for (let i = 0; i < this.count; i++) {
      const src = Math.floor((i * available) / this.count) * w;
      this.windows.set(tokens.subarray(src, src + w), i * w);
    }
  }

  /**
   * Window `i` (a view, not a copy).
   *
   * @param i Index in `[0, count)`.
   * @returns T + 1 token ids.
   */
  window(i: number): Uint32Array {
    const w = this.seqLen + 1;
    return this.windows.subarray(i * w, (i + 1) * w);
  }

  /**
   * The windows in order, `batchSize` at a time; the last batch may be smaller.
   *
   * @param batchSize Windows per batch.
   * @returns Views `[b, T + 1]` with b ≤ batchSize.
   */
  *batches(batchSize: number): Generator<Uint32Array> {
    checkCount("ValidationSet.batches", "batchSize", batchSize, 1);
    const w = this.seqLen + 1;
    for (let i = 0; i < this.count; i += batchSize) {
      yield this.windows.subarray(i * w, Math.min(this.count, i + batchSize) * w);
    }
  }
}
