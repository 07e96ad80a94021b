/**
 * Shape arithmetic: sizes, strides, broadcasting.
 *
 * @module
 */
import { ShapeError, ValueError } from "./errors.ts";

/** A tensor shape, outermost dim first. */
export type Shape = readonly number[];

/**
 * Number of elements of a shape (1 for a scalar `[]`).
 *
 * @param shape The shape.
 * @returns The product of its dims.
 *
 * @example
 * ```ts
 * import { sizeOf } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * assert.equal(sizeOf([2, 3, 4]), 24);
 * ```
 */
export function sizeOf(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Row-major strides of a shape.
 *
 * @param shape The shape.
 * @returns Elements to skip per step along each dim (the last dim's stride is 1).
 *
 * @example
 * ```ts
 * import { stridesOf } from "./shape.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(stridesOf([2, 3, 4]), [12, 4, 1]);
 * ```
 */
export function stridesOf(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/**
 * Throws a ValueError unless every dim is a non-negative integer.
 *
 * @param op Op name for the error.
 * @param shape The shape to check.
 *
 * @example
 * ```ts
 * import { ValueError } from "@qsparse/kit";
 * import { checkShape } from "./shape.ts";
 * import assert from "node:assert/strict";
 * checkShape("zeros", [2, 0, 3]);
 * assert.throws(() => checkShape("zeros", [2, 1.5]), ValueError);
 * ```
 */
export function checkShape(op: string, shape: Shape): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new ValueError(op, `invalid shape [${shape.join(", ")}]: dims must be integers ≥ 0`);
    }
  }
}

/**
 * The NumPy broadcast of two shapes.
 *
 * @param op Op name for the error.
 * @param a First shape.
 * @param b Second shape.
 * @returns The broadcast shape.
 *
 * @example
 * ```ts
 * import { broadcastShapes } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * assert.deepEqual(broadcastShapes("add", [4, 1, 3], [2, 1]), [4, 2, 3]);
 * ```
 */
export function broadcastShapes(op: string, a: Shape, b: Shape): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw ShapeError.mismatch(op, [a, b], "shapes do not broadcast");
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/**
 * Strides of `shape` read as if broadcast to `out` (0 on broadcast dims).
 *
 * @param shape The operand's shape.
 * @param out The broadcast shape (at least as many dims as `shape`).
 * @returns One stride per dim of `out`.
 *
 * @example
 * ```ts
 * import { broadcastStrides } from "./shape.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(broadcastStrides([3, 1], [2, 3, 4]), [0, 1, 0]);
 * ```
 */
export function broadcastStrides(shape: Shape, out: Shape): number[] {
  const st = stridesOf(shape);
  const res = new Array<number>(out.length).fill(0);
  for (let i = 0; i < shape.length; i++) {
    const j = out.length - shape.length + i;
    res[j] = shape[i] === 1 ? 0 : st[i]!;
  }
  return res;
}

/**
 * True when two shapes are equal.
 *
 * @param a First shape.
 * @param b Second shape.
 * @returns Whether they have the same dims in the same order.
 *
 * @example
 * ```ts
 * import { sameShape } from "./shape.ts";
 * import assert from "node:assert/strict";
 * assert.equal(sameShape([2, 3], [2, 3]), true);
 * assert.equal(sameShape([2, 3], [3, 2]), false);
 * ```
 */
export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
