/**
 * Typed errors. Every message names the op and the shapes involved, so a failure deep inside a
 * model says which projection and which sizes went wrong.
 *
 * @module
 */

/**
 * Formats a shape as `[2, 3]` for error messages.
 *
 * @param shape The shape.
 * @returns The dims in brackets, comma separated.
 *
 * @example
 * ```ts
 * import { formatShape } from "./errors.ts";
 * import assert from "node:assert/strict";
 * assert.equal(formatShape([2, 3]), "[2, 3]");
 * assert.equal(formatShape([]), "[]");
 * ```
 */
function fmt(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/**
 * Base class of every error the kit throws on purpose.
 *
 * @example Catching any kit error
 * ```ts
 * import { KitError, ShapeError } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * assert.ok(new ShapeError("add", "mismatch") instanceof KitError);
 * ```
 */
export class KitError extends Error {
  /** The op that raised the error, e.g. `"matmul"`. */
  readonly op: string;
  /**
   * Creates an error whose message is prefixed with the op name (`"op: message"`).
   *
   * @param op The op that raised the error.
   * @param message What went wrong.
   */
  constructor(op: string, message: string) {
    super(`${op}: ${message}`);
    this.op = op;
    this.name = new.target.name;
  }
}

/**
 * Shapes that do not fit together (e.g. `matmul` of `[2, 3]` by `[4, 5]`).
 *
 * @example
 * ```ts
 * import { ShapeError } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * const e = ShapeError.mismatch("matmul", [[2, 3], [4, 5]], "inner dims differ");
 * assert.match(e.message, /matmul.*\[2, 3\].*\[4, 5\]/);
 * ```
 */
export class ShapeError extends KitError {
  /**
   * Builds an error that lists the shapes involved.
   *
   * @param op The op name.
   * @param shapes The input shapes.
   * @param why What does not fit.
   * @returns The error.
   */
  static mismatch(op: string, shapes: readonly (readonly number[])[], why: string): ShapeError {
    return new ShapeError(op, `${why} (shapes ${shapes.map(fmt).join(" and ")})`);
  }
}

/**
 * A dtype the op does not accept (e.g. `i32` into `exp`, or `f32` + `u32`).
 *
 * @example
 * ```ts
 * import { DTypeError } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * assert.match(new DTypeError("exp", "needs a float, got i32").message, /^exp: /);
 * ```
 */
export class DTypeError extends KitError {}

/**
 * The device cannot run the request: lost device, buffer over the adapter's binding limit,
 * shader compilation failure, a missing feature, or tensors of two devices in one op.
 *
 * @example
 * ```ts
 * import { DeviceError } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * assert.equal(new DeviceError("alloc", "lost").name, "DeviceError");
 * const e = DeviceError.mismatch("matmul", [[2, 2], [2, 2]], "tensors live on different devices");
 * assert.match(e.message, /matmul: tensors live on different devices \(shapes \[2, 2\]/);
 * ```
 */
export class DeviceError extends KitError {
  /**
   * Builds an error for inputs on different devices, listing their shapes.
   *
   * @param op The op name.
   * @param shapes The input shapes.
   * @param why Which inputs disagree.
   * @returns The error.
   */
  static mismatch(op: string, shapes: readonly (readonly number[])[], why: string): DeviceError {
    return new DeviceError(op, `${why} (shapes ${shapes.map(fmt).join(" and ")})`);
  }
}

/**
 * Training produced a non-finite loss, gradient or weight. Carries the step at which it was seen
 * and the first non-finite tensor in parameter order, so a run stops instead of recording NaN.
 *
 * @example
 * ```ts
 * import { DivergenceError, KitError } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * const e = new DivergenceError("train", "non-finite loss NaN at step 10", 10, "embed.weight");
 * assert.ok(e instanceof KitError);
 * assert.equal(e.step, 10);
 * assert.equal(e.tensor, "embed.weight");
 * ```
 */
export class DivergenceError extends KitError {
  /** The optimizer step at which the non-finite value was detected. */
  readonly step: number;
  /** The first non-finite tensor (a gradient or parameter name), when one was found. */
  readonly tensor: string | null;
  /**
   * Creates the error.
   *
   * @param op The op that detected it (e.g. `"train"`).
   * @param message What was non-finite, where.
   * @param step The step at which it was detected.
   * @param tensor The first non-finite tensor, or null.
   */
  constructor(op: string, message: string, step: number, tensor: string | null) {
    super(op, message);
    this.step = step;
    this.tensor = tensor;
  }
}

/**
 * A tensor used after `dispose()` (or after the scope that owned it ended).
 *
 * @example
 * ```ts
 * import { DisposedError } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * assert.equal(new DisposedError("add", "x").name, "DisposedError");
 * ```
 */
export class DisposedError extends KitError {}

/**
 * An argument outside its valid range (e.g. sparsity S ≥ 1, K > D, a negative size).
 *
 * @example
 * ```ts
 * import { ValueError } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * assert.match(new ValueError("sparsify", "S must be in [0, 1), got 1.2").message, /S must/);
 * ```
 */
export class ValueError extends KitError {}

/**
 * A checkpoint or data file that cannot be read back: truncated, corrupt header, offsets out of
 * range, or an unsupported dtype. The message names the file (when known) and what is wrong.
 *
 * @example
 * ```ts
 * import { CheckpointError } from "@qsparse/kit";
 * import { decodeSafetensors } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * assert.throws(() => decodeSafetensors(new Uint8Array(3)), CheckpointError);
 * ```
 */
export class CheckpointError extends KitError {}

/**
 * A captured step that cannot be replayed faithfully: a host readback or an async function inside
 * the capture, a storage made before the capture and disposed inside it, a step whose kernels,
 * parameters or buffers differ from the recorded ones, or a bound storage released since. The
 * message names the op involved.
 *
 * @example
 * ```ts
 * import { CaptureError, KitError } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * const e = new CaptureError("capture", "host readback of the output of matmul");
 * assert.ok(e instanceof KitError);
 * assert.match(e.message, /^capture: host readback/);
 * ```
 */
export class CaptureError extends KitError {}

export { fmt as formatShape };
