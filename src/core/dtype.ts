/**
 * Element types and the typed arrays that hold them on the host.
 *
 * @module
 */
import { DTypeError } from "./errors.ts";

/** Element type of a tensor. `f16` is storage only: kernels accumulate in f32. */
export type DType = "f32" | "f16" | "i32" | "u32";

/** Float element types. */
export type FloatDType = "f32" | "f16";

/** The host typed array that holds elements of dtype `D`. */
export type TypedArrayFor<D extends DType> = D extends "f32" ? Float32Array
  : D extends "f16" ? Float16Array
  : D extends "i32" ? Int32Array
  : D extends "u32" ? Uint32Array
  : never;

/** Any typed array the kit produces. */
export type AnyTypedArray = Float32Array | Float16Array | Int32Array | Uint32Array;

/**
 * Bytes per element of a dtype.
 *
 * @param dtype The dtype.
 * @returns 2 for f16, 4 otherwise.
 *
 * @example
 * ```ts
 * import { bytesPerElement } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * assert.equal(bytesPerElement("f16"), 2);
 * ```
 */
export function bytesPerElement(dtype: DType): number {
  return dtype === "f16" ? 2 : 4;
}

/**
 * A typed array view of `buffer` for `dtype`.
 *
 * @param dtype The dtype.
 * @param buffer The bytes.
 * @param length Number of elements (defaults to all that fit).
 * @returns The view.
 *
 * @example
 * ```ts
 * import { typedView } from "./dtype.ts";
 * import assert from "node:assert/strict";
 * assert.ok(typedView("i32", new ArrayBuffer(8)) instanceof Int32Array);
 * ```
 */
export function typedView<D extends DType>(
  dtype: D,
  buffer: ArrayBufferLike,
  length?: number,
): TypedArrayFor<D> {
  const n = length ?? buffer.byteLength / bytesPerElement(dtype);
  switch (dtype) {
    case "f32":
      return new Float32Array(buffer, 0, n) as TypedArrayFor<D>;
    case "f16":
      return new Float16Array(buffer, 0, n) as TypedArrayFor<D>;
    case "i32":
      return new Int32Array(buffer, 0, n) as TypedArrayFor<D>;
    case "u32":
      return new Uint32Array(buffer, 0, n) as TypedArrayFor<D>;
  }
  throw new DTypeError("typedView", `unknown dtype ${dtype}`);
}

/**
 * A new zeroed typed array of `n` elements of `dtype`.
 *
 * @param dtype The dtype.
 * @param n Element count.
 * @returns The array.
 *
 * @example
 * ```ts
 * import { allocTyped } from "./dtype.ts";
 * import assert from "node:assert/strict";
 * assert.equal(allocTyped("u32", 3).length, 3);
 * ```
 */
export function allocTyped<D extends DType>(dtype: D, n: number): TypedArrayFor<D> {
  return typedView(dtype, new ArrayBuffer(n * bytesPerElement(dtype)), n);
}

/**
 * The dtype matching a typed array, or undefined for other arrays.
 *
 * @param a Any value.
 * @returns The dtype, or undefined when `a` is not one of the kit's typed arrays.
 *
 * @example
 * ```ts
 * import { dtypeOfArray } from "./dtype.ts";
 * import assert from "node:assert/strict";
 * assert.equal(dtypeOfArray(new Int32Array(2)), "i32");
 * assert.equal(dtypeOfArray([1, 2]), undefined);
 * ```
 */
export function dtypeOfArray(a: unknown): DType | undefined {
  if (a instanceof Float32Array) return "f32";
  if (a instanceof Float16Array) return "f16";
  if (a instanceof Int32Array) return "i32";
  if (a instanceof Uint32Array) return "u32";
  return undefined;
}

/**
 * True for `f32` and `f16`.
 *
 * @param dtype The dtype.
 * @returns Whether it is a float dtype.
 *
 * @example
 * ```ts
 * import { isFloat } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * assert.equal(isFloat("f16"), true);
 * assert.equal(isFloat("u32"), false);
 * ```
 */
export function isFloat(dtype: DType): dtype is FloatDType {
  return dtype === "f32" || dtype === "f16";
}

/**
 * The WGSL scalar type that stores `dtype`.
 *
 * @param dtype The dtype.
 * @returns The WGSL type name (the dtype names match WGSL's).
 *
 * @example
 * ```ts
 * import { wgslType } from "./dtype.ts";
 * import assert from "node:assert/strict";
 * assert.equal(wgslType("f32"), "f32");
 * ```
 */
export function wgslType(dtype: DType): string {
  return dtype;
}
