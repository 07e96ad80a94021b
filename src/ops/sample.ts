/**
 * `sampleTokens`: picks the next token of every sequence on the device (greedy, temperature,
 * top-K, top-p), so a generation loop never reads logits back to the host.
 *
 * @module
 */
import { sampleDispatch } from "../../kernels/sample.ts";
import { STEP_VALUES_LENGTH } from "../../kernels/step_values.ts";
import { DTypeError, ShapeError, ValueError } from "../core/errors.ts";
import type { Tensor } from "../tensor/tensor.ts";

/** How {@link sampleTokens} picks a token. */
export interface SampleOptions {
  /** Softmax temperature; 0 (default) is greedy argmax. */
  temperature?: number;
  /** Sample among the K most likely tokens only (0 = all, default). */
  topK?: number;
  /** Sample among the smallest set of most likely tokens whose probability reaches p (default 1 = all). */
  topP?: number;
  /** Seed of the random numbers (default 0). */
  seed?: number;
  /** Step index: with the seed it picks the random number of each row (default 0). */
  step?: number;
}

/** Destination buffers of {@link sampleTokens} inside a generation loop. */
export interface SampleInto {
  /** Receives the ids, `[B]` u32 (fed to the next step). */
  next: Tensor<"u32">;
  /** History `[C, B]` u32 read back in chunks; row `slot` receives the ids too. */
  history: Tensor<"u32">;
  /** Row of `history` to write. */
  slot: number;
  /**
   * In a captured decode loop: u32 step values `[pos, step, slot, 0]` (kernels/step_values.ts),
   * written before each replay; the kernel then uses `step + values[1]` and `slot + values[2]`
   * (pass `step` and `slot` 0), since a replay cannot change a uniform.
   */
  stepValues?: Tensor<"u32">;
}

/**
 * Samples one token per sequence from the logits of the last position.
 *
 * @param logits `[B, V]` or `[B, T, V]` (the last position is used), f32.
 * @param opts Temperature, top-K, top-p, seed and step.
 * @param into Optional destination buffers (the returned tensor is then `into.next`).
 * @returns The ids `[B]` (u32).
 *
 * @example
 * ```ts
 * import { openDevice, sampleTokens } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using logits = dev.tensor([[0, 3, 1], [5, 0, 5]]);
 * using ids = sampleTokens(logits); // greedy; ties go to the lower index
 * assert.deepEqual([...await ids.data()], [1, 0]);
 * using one = sampleTokens(logits, { temperature: 1, topK: 1, seed: 7 });
 * assert.deepEqual([...await one.data()], [1, 0]);
 * ```
 */
export function sampleTokens(
  logits: Tensor<"f32">,
  opts: SampleOptions = {},
  into?: SampleInto,
): Tensor<"u32"> {
  const op = "sampleTokens";
  if (logits.dtype !== "f32") throw new DTypeError(op, `logits must be f32, got ${logits.dtype}`);
  if (logits.rank !== 2 && logits.rank !== 3) {
    throw ShapeError.mismatch(op, [logits.shape], "logits must be [B, V] or [B, T, V]");
  }
  const b = logits.shape[0]!, v = logits.shape[logits.rank - 1]!;
  const t = logits.rank === 3 ? logits.shape[1]! : 1;
  const temperature = opts.temperature ?? 0, topK = opts.topK ?? 0, topP = opts.topP ?? 1;
  if (!(temperature >= 0) || !Number.isFinite(temperature)) {
    throw new ValueError(op, `temperature must be ≥ 0, got ${temperature}`);
  }
  if (!Number.isInteger(topK) || topK < 0) {
    throw new ValueError(op, `topK must be an integer ≥ 0, got ${topK}`);
  }
  if (!(topP > 0 && topP <= 1)) throw new ValueError(op, `topP must be in (0, 1], got ${topP}`);
  if (v < 1 || t < 1) throw ShapeError.mismatch(op, [logits.shape], "needs V ≥ 1 and T ≥ 1");
  const dev = logits.device;
  let next: Tensor<"u32">, history: Tensor<"u32">, slot = 0;
  const sv = into?.stepValues;
  if (sv && (sv.dtype !== "u32" || sv.size !== STEP_VALUES_LENGTH)) {
    throw ShapeError.mismatch(
      op,
      [logits.shape, sv.shape],
      `into.stepValues must be u32 [${STEP_VALUES_LENGTH}], got ${sv.dtype}`,
    );
  }
  if (into) {
    ({ next, history, slot } = into);
    const rows = history.shape[0] ?? 0;
    if (
      next.size !== b || next.dtype !== "u32" || history.dtype !== "u32" ||
      history.rank !== 2 || history.shape[1] !== b || !(slot >= 0 && slot < rows)
    ) {
      throw ShapeError.mismatch(
        op,
        [logits.shape, next.shape, history.shape],
        `into.next must be u32 [${b}], into.history u32 [C, ${b}] with slot ${slot} < C`,
      );
    }
  } else {
    next = dev.empty([b], "u32", op);
    history = dev.empty([1, b], "u32", op);
  }
  if (b > 0) {
    dev.run(
      sampleDispatch(
        {
          rows: b,
          vocab: v,
          rowStride: t * v,
          rowOffset: (t - 1) * v,
          temperature,
          topK,
          topP,
          seed: opts.seed ?? 0,
          step: opts.step ?? 0,
          slot,
        },
        [
          logits.storage(op),
          next.storage(op),
          history.storage(op),
          ...(sv ? [sv.storage(op)] : []),
        ],
      ),
    );
  }
  if (!into) history.dispose();
  return next;
}
