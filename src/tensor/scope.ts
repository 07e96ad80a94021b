/**
 * `scope(fn)`: dispose every tensor created inside `fn` except what `fn` returns.
 *
 * Scopes nest. Returned tensors (found in arrays, plain objects and Maps of the result) move to
 * the enclosing scope. `keep(t)` exempts a tensor from every open scope (e.g. a parameter or an
 * optimizer state created inside a step). Async functions are supported, but scopes are a stack:
 * do not interleave two concurrent async scopes.
 *
 * @module
 */
import type { Tensor } from "./tensor.ts";

const stack: Set<Tensor>[] = [];

/**
 * Registers a new tensor with the innermost open scope (called by the Tensor constructor).
 *
 * @param t The tensor; a no-op when no scope is open.
 *
 * @example A tracked tensor is disposed when the scope closes
 * ```ts
 * import { openDevice, scope } from "@qsparse/kit";
 * import { track } from "./scope.ts";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * const t = dev.ones([2]); // made outside any scope
 * scope(() => track(t));
 * assert.equal(t.disposed, true);
 * ```
 */
export function track(t: Tensor): void {
  stack[stack.length - 1]?.add(t);
}

/**
 * Removes a tensor from every open scope (called on dispose and by {@link keep}).
 *
 * @param t The tensor.
 *
 * @example An untracked tensor outlives its scope
 * ```ts
 * import { openDevice, scope, type Tensor } from "@qsparse/kit";
 * import { untrack } from "./scope.ts";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * const out: Tensor[] = [];
 * scope(() => {
 *   const t = dev.ones([2]);
 *   untrack(t);
 *   out.push(t);
 * });
 * assert.equal(out[0]!.disposed, false);
 * out[0]!.dispose();
 * ```
 */
export function untrack(t: Tensor): void {
  for (const s of stack) s.delete(t);
}

/**
 * Exempts tensors from disposal by any open scope. The caller now owns them.
 *
 * @param t The tensor to keep.
 * @returns The same tensor.
 *
 * @example
 * ```ts
 * import { keep, openDevice, scope } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * let kept;
 * scope(() => { kept = keep(dev.ones([2])); dev.zeros([2]); });
 * assert.equal(kept!.disposed, false);
 * ```
 */
export function keep<T extends Tensor>(t: T): T {
  untrack(t);
  return t;
}

/**
 * Containers that own tensors (sparse formats, quantized tensors) list them under this key, so a
 * scope that returns the container keeps its tensors instead of disposing them.
 *
 * @example
 * ```ts
 * import { openDevice, scope, topkRows } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using s = scope(() => topkRows(dev.tensor([[1, -3, 2]]), 1)); // a SparseRows lists its tensors
 * assert.deepEqual(await s.indices.toArray(), [[1]]);
 * ```
 */
export const OWNED_TENSORS: unique symbol = Symbol("qsparse.ownedTensors");

function collect(value: unknown, out: Set<Tensor>, seen: Set<unknown>): void {
  if (value === null || typeof value !== "object" || seen.has(value)) return;
  seen.add(value);
  if (OWNED_TENSORS in value) {
    for (const t of (value as { [OWNED_TENSORS]: () => Iterable<unknown> })[OWNED_TENSORS]()) {
      collect(t, out, seen);
    }
    return;
  }
  if ("shape" in value && "dtype" in value && "device" in value && "dispose" in value) {
    out.add(value as Tensor);
    return;
  }
  if (value instanceof Map) {
    for (const v of value.values()) collect(v, out, seen);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collect(v, out, seen);
    return;
  }
  if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, out, seen);
  }
}

function close<T>(own: Set<Tensor>, result: T): T {
  stack.pop();
  const returned = new Set<Tensor>();
  collect(result, returned, new Set());
  const parent = stack[stack.length - 1];
  for (const t of own) {
    if (returned.has(t)) parent?.add(t);
    else t.dispose();
  }
  return result;
}

/**
 * Runs `fn` and disposes every tensor it created that is not part of its result.
 *
 * @param fn The work; may be async.
 * @returns What `fn` returns.
 *
 * @example Intermediates are freed
 * ```ts
 * import { add, mul, openDevice, scope } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using x = dev.tensor([1, 2, 3], [3]);
 * const before = dev.stats().liveBuffers;
 * using y = scope(() => add(mul(x, x), x));
 * assert.equal(dev.stats().liveBuffers, before + 1);
 * assert.deepEqual([...await y.data()], [2, 6, 12]);
 * ```
 */
export function scope<T>(fn: () => T): T {
  const own = new Set<Tensor>();
  stack.push(own);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    close(own, undefined);
    throw e;
  }
  if (result instanceof Promise) {
    return result.then(
      (r) => close(own, r),
      (e) => {
        close(own, undefined);
        throw e;
      },
    ) as T;
  }
  return close(own, result);
}
