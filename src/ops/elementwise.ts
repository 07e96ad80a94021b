/**
 * Elementwise ops on tensors, with their vector-Jacobian products.
 *
 * @module
 */
import {
  BINARY,
  binaryDispatch,
  type BinaryOp,
  broadcastLayout,
  INT_BINARY,
  MAX_RANK,
  scalarDispatch,
  UNARY,
  unaryDispatch,
  type UnaryOp,
  whereDispatch,
} from "../../kernels/elementwise.ts";
import { castDispatch } from "../../kernels/fill.ts";
import { needsGrad, record } from "../autograd/tape.ts";
import { type DType, isFloat } from "../core/dtype.ts";
import { DeviceError, DTypeError, ShapeError } from "../core/errors.ts";
import { broadcastShapes, sameShape, sizeOf } from "../core/shape.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { sumTo } from "./layout.ts";

export type { BinaryOp, UnaryOp } from "../../kernels/elementwise.ts";

function sameDevice(op: string, a: Tensor, b: Tensor): void {
  if (a.device !== b.device) {
    throw DeviceError.mismatch(op, [a.shape, b.shape], "tensors live on different devices");
  }
}

/**
 * Applies a unary op elementwise (no autograd; see the named wrappers).
 *
 * @param op The op name from the kernel table.
 * @param x The input.
 * @returns A new tensor.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { unaryRaw } from "./elementwise.ts";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using x = dev.tensor([-1, 2]);
 * x.requiresGrad = true;
 * using y = unaryRaw("relu", x);
 * assert.deepEqual([...await y.data()], [0, 2]);
 * assert.equal(y.requiresGrad, false); // nothing recorded
 * ```
 */
export function unaryRaw<D extends DType>(op: UnaryOp, x: Tensor<D>): Tensor<D> {
  const spec = UNARY[op] as { int?: boolean };
  if (!isFloat(x.dtype) && !(spec.int && x.dtype === "i32")) {
    throw new DTypeError(
      op,
      `needs a float tensor${spec.int ? " or i32" : ""}, got ${x.dtype} ${x}`,
    );
  }
  const out = x.device.empty(x.shape, x.dtype, op);
  const fusion = x.device.fusion;
  if (out.size === 0) return out;
  if (fusion) fusion.unary(op, x, out);
  else x.device.run(unaryDispatch(op, x.dtype, x.storage(op), out.storage(op), x.size));
  return out;
}

function unaryWithGrad<D extends DType>(
  op: UnaryOp,
  x: Tensor<D>,
  vjp: (x: Tensor, y: Tensor, g: Tensor) => Tensor,
): Tensor<D> {
  const y = unaryRaw(op, x);
  if (needsGrad(x)) record(y, op, [x], (g) => [vjp(x, y, g)]);
  return y;
}

/**
 * −x.
 * @param x Input.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { neg, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual([...await neg(dev.tensor([1, -2])).data()], [-1, 2]);
 * ```
 */
export function neg<D extends DType>(x: Tensor<D>): Tensor<D> {
  return unaryWithGrad("neg", x, (_x, _y, g) => neg(g));
}

/**
 * |x|.
 * @param x Input.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { abs, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual([...await abs(dev.tensor([1, -2])).data()], [1, 2]);
 * ```
 */
export function abs<D extends DType>(x: Tensor<D>): Tensor<D> {
  return unaryWithGrad("abs", x, (x, _y, g) => mul(g, unaryRaw("sign", x)));
}

/**
 * eˣ.
 * @param x Input.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { exp, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.equal((await exp(dev.tensor([0])).data())[0], 1);
 * ```
 */
export function exp<D extends DType>(x: Tensor<D>): Tensor<D> {
  return unaryWithGrad("exp", x, (_x, y, g) => mul(g, y));
}

/**
 * ln x.
 * @param x Input.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { log, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.equal((await log(dev.tensor([1])).data())[0], 0);
 * ```
 */
export function log<D extends DType>(x: Tensor<D>): Tensor<D> {
  return unaryWithGrad("log", x, (x, _y, g) => div(g, x));
}

/**
 * √x.
 * @param x Input.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { openDevice, sqrt } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.equal((await sqrt(dev.tensor([9])).data())[0], 3);
 * ```
 */
export function sqrt<D extends DType>(x: Tensor<D>): Tensor<D> {
  return unaryWithGrad("sqrt", x, (_x, y, g) => div(mulScalar(g, 0.5), y));
}

/**
 * 1/√x.
 * @param x Input.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { openDevice, rsqrt } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.equal((await rsqrt(dev.tensor([4])).data())[0], 0.5);
 * ```
 */
export function rsqrt<D extends DType>(x: Tensor<D>): Tensor<D> {
  // d/dx x^-1/2 = -1/2 · y³
  return unaryWithGrad("rsqrt", x, (_x, y, g) => mul(g, mulScalar(mul(y, mul(y, y)), -0.5)));
}

/**
 * x².
 * @param x Input.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { openDevice, square } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.equal((await square(dev.tensor([3])).data())[0], 9);
 * ```
 */
export function square<D extends DType>(x: Tensor<D>): Tensor<D> {
  return unaryWithGrad("square", x, (x, _y, g) => mul(g, mulScalar(x, 2)));
}

/**
 * max(x, 0).
 * @param x Input.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { openDevice, relu } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual([...await relu(dev.tensor([-1, 2])).data()], [0, 2]);
 * ```
 */
export function relu<D extends DType>(x: Tensor<D>): Tensor<D> {
  return unaryWithGrad("relu", x, (x, _y, g) => binaryRaw("reluGrad", g, x));
}

/**
 * Squared ReLU, max(x, 0)² (Primer; Q-Sparse's FFN activation).
 * @param x Input.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { openDevice, relu2 } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual([...await relu2(dev.tensor([-1, 3])).data()], [0, 9]);
 * ```
 */
export function relu2<D extends DType>(x: Tensor<D>): Tensor<D> {
  // d/dx relu(x)² = 2·relu(x), fused with the upstream product into one kernel.
  return unaryWithGrad("relu2", x, (x, _y, g) => binaryRaw("relu2Grad", g, x));
}

/**
 * Logistic sigmoid.
 * @param x Input.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { openDevice, sigmoid } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.equal((await sigmoid(dev.tensor([0])).data())[0], 0.5);
 * ```
 */
export function sigmoid<D extends DType>(x: Tensor<D>): Tensor<D> {
  return unaryWithGrad("sigmoid", x, (_x, y, g) => mul(g, mul(y, rsubScalar(y, 1))));
}

/**
 * SiLU, x·σ(x).
 * @param x Input.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { openDevice, silu } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.equal((await silu(dev.tensor([0])).data())[0], 0);
 * ```
 */
export function silu<D extends DType>(x: Tensor<D>): Tensor<D> {
  // d/dx x·σ(x) = σ(x)·(1 + x·(1 − σ(x)))
  return unaryWithGrad("silu", x, (x, _y, g) => {
    const s = unaryRaw("sigmoid", x);
    return mul(g, mul(s, addScalar(mul(x, rsubScalar(s, 1)), 1)));
  });
}

/**
 * tanh.
 * @param x Input.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { openDevice, tanh } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.equal((await tanh(dev.tensor([0])).data())[0], 0);
 * ```
 */
export function tanh<D extends DType>(x: Tensor<D>): Tensor<D> {
  return unaryWithGrad("tanh", x, (_x, y, g) => mul(g, rsubScalar(mul(y, y), 1)));
}

/**
 * sign(x) ∈ {−1, 0, 1} (gradient 0).
 * @param x Input.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { openDevice, sign } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual([...await sign(dev.tensor([-3, 0, 2])).data()], [-1, 0, 1]);
 * ```
 */
export function sign<D extends DType>(x: Tensor<D>): Tensor<D> {
  return unaryRaw("sign", x);
}

// ---------------------------------------------------------------------------------------------
// Binary

/**
 * Applies a broadcasting binary op (no autograd; see the named wrappers).
 *
 * @param op The op name from the kernel table.
 * @param a Left operand.
 * @param b Right operand.
 * @returns A new tensor of the broadcast shape.
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { binaryRaw } from "./elementwise.ts";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using y = binaryRaw("maximum", dev.tensor([[1, 5]]), dev.tensor([3]));
 * assert.deepEqual(await y.toArray(), [[3, 5]]);
 * ```
 */
export function binaryRaw<D extends DType>(op: BinaryOp, a: Tensor<D>, b: Tensor<D>): Tensor<D> {
  sameDevice(op, a, b);
  if (a.dtype !== b.dtype) {
    throw new DTypeError(op, `dtypes differ: ${a.dtype} ${a} and ${b.dtype} ${b}`);
  }
  if (!isFloat(a.dtype) && !INT_BINARY.has(op)) {
    throw new DTypeError(op, `needs float tensors, got ${a.dtype}`);
  }
  if (!(op in BINARY)) throw new DTypeError(op, "unknown binary op");
  const shape = broadcastShapes(op, a.shape, b.shape);
  // Operands of one shape need no layout (the common case, and the one a long fused chain pays
  // for per op); a broadcast is collapsed now so that its rank limit fails at this op.
  const layout = sameShape(a.shape, b.shape) ? null : broadcastLayout(a.shape, b.shape, shape);
  if (layout && layout.shape.length > MAX_RANK) {
    throw ShapeError.mismatch(op, [a.shape, b.shape], `broadcast needs more than ${MAX_RANK} dims`);
  }
  const out = a.device.empty(shape, a.dtype, op);
  const fusion = a.device.fusion;
  if (out.size === 0) return out;
  if (fusion) fusion.binary(op, a, b, out);
  else {
    a.device.run(
      binaryDispatch(
        op,
        a.dtype,
        layout ?? broadcastLayout(a.shape, b.shape, shape),
        a.storage(op),
        b.storage(op),
        out.storage(op),
      ),
    );
  }
  return out;
}

/** Reduces a gradient of the broadcast shape back to an operand's shape. */
function unbroadcast(g: Tensor, shape: readonly number[]): Tensor {
  return sameShape(g.shape, shape) ? g : sumTo(g, shape);
}

function binaryWithGrad<D extends DType>(
  op: BinaryOp,
  a: Tensor<D>,
  b: Tensor<D>,
  vjp: (g: Tensor, a: Tensor, b: Tensor, y: Tensor) => [Tensor | null, Tensor | null],
): Tensor<D> {
  const y = binaryRaw(op, a, b);
  if (needsGrad(a, b)) {
    record(y, op, [a, b], (g) => {
      const [ga, gb] = vjp(g, a, b, y);
      return [
        ga && a.requiresGrad ? unbroadcast(ga, a.shape) : null,
        gb && b.requiresGrad ? unbroadcast(gb, b.shape) : null,
      ];
    });
  }
  return y;
}

/**
 * a + b with broadcasting.
 * @param a Left.
 * @param b Right.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { add, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using y = add(dev.tensor([[1, 2], [3, 4]]), dev.tensor([10, 20]));
 * assert.deepEqual(await y.toArray(), [[11, 22], [13, 24]]);
 * ```
 */
export function add<D extends DType>(a: Tensor<D>, b: Tensor<D>): Tensor<D> {
  return binaryWithGrad("add", a, b, (g) => [g, g]);
}

/**
 * a − b with broadcasting.
 * @param a Left.
 * @param b Right.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { openDevice, sub } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual([...await sub(dev.tensor([5, 7]), dev.tensor([1])).data()], [4, 6]);
 * ```
 */
export function sub<D extends DType>(a: Tensor<D>, b: Tensor<D>): Tensor<D> {
  return binaryWithGrad("sub", a, b, (g) => [g, neg(g)]);
}

/**
 * a · b elementwise with broadcasting.
 * @param a Left.
 * @param b Right.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { mul, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual([...await mul(dev.tensor([2, 3]), dev.tensor([4, 5])).data()], [8, 15]);
 * ```
 */
export function mul<D extends DType>(a: Tensor<D>, b: Tensor<D>): Tensor<D> {
  return binaryWithGrad("mul", a, b, (g, a, b) => [mul(g, b), mul(g, a)]);
}

/**
 * a / b with broadcasting.
 * @param a Left.
 * @param b Right.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { div, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual([...await div(dev.tensor([8, 6]), dev.tensor([2])).data()], [4, 3]);
 * ```
 */
export function div<D extends DType>(a: Tensor<D>, b: Tensor<D>): Tensor<D> {
  return binaryWithGrad("div", a, b, (g, _a, b, y) => [div(g, b), neg(div(mul(g, y), b))]);
}

/**
 * Elementwise max (gradient to the larger; ties to `a`).
 * @param a Left.
 * @param b Right.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { maximum, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual([...await maximum(dev.tensor([1, 5]), dev.tensor([3])).data()], [3, 5]);
 * ```
 */
export function maximum<D extends DType>(a: Tensor<D>, b: Tensor<D>): Tensor<D> {
  return binaryWithGrad("maximum", a, b, (g, a, b) => {
    const m = binaryRaw("ge", a, b);
    return [mul(g, m), mul(g, rsubScalar(m, 1))];
  });
}

/**
 * Elementwise min (gradient to the smaller; ties to `a`).
 * @param a Left.
 * @param b Right.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { minimum, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual([...await minimum(dev.tensor([1, 5]), dev.tensor([3])).data()], [1, 3]);
 * ```
 */
export function minimum<D extends DType>(a: Tensor<D>, b: Tensor<D>): Tensor<D> {
  return binaryWithGrad("minimum", a, b, (g, a, b) => {
    const m = binaryRaw("ge", b, a);
    return [mul(g, m), mul(g, rsubScalar(m, 1))];
  });
}

/**
 * Comparison a > b as 1/0 in the operands' dtype (no gradient).
 * @param a Left.
 * @param b Right.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { greater, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual([...await greater(dev.tensor([1, 5]), dev.tensor([3])).data()], [0, 1]);
 * ```
 */
export function greater<D extends DType>(a: Tensor<D>, b: Tensor<D>): Tensor<D> {
  return binaryRaw("gt", a, b);
}

/**
 * Comparison a == b as 1/0 (no gradient).
 * @param a Left.
 * @param b Right.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { equal, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual([...await equal(dev.tensor([1, 3]), dev.tensor([3])).data()], [0, 1]);
 * ```
 */
export function equal<D extends DType>(a: Tensor<D>, b: Tensor<D>): Tensor<D> {
  return binaryRaw("eq", a, b);
}

// ---------------------------------------------------------------------------------------------
// Scalar forms

function scalarOp<D extends DType>(
  op: BinaryOp,
  x: Tensor<D>,
  s: number,
  reversed: boolean,
): Tensor<D> {
  if (!isFloat(x.dtype)) {
    throw new DTypeError(`${op}Scalar`, `needs a float tensor, got ${x.dtype}`);
  }
  const out = x.device.empty(x.shape, x.dtype, `${op}Scalar`);
  const fusion = x.device.fusion;
  if (out.size === 0) return out;
  if (fusion) fusion.scalar(op, x, s, reversed, out);
  else {
    x.device.run(scalarDispatch(op, x.dtype, reversed, s, x.storage(op), out.storage(op), x.size));
  }
  return out;
}

/**
 * x + s.
 * @param x Tensor.
 * @param s Scalar.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { addScalar, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual([...await addScalar(dev.tensor([1, 2]), 10).data()], [11, 12]);
 * ```
 */
export function addScalar<D extends DType>(x: Tensor<D>, s: number): Tensor<D> {
  const y = scalarOp("add", x, s, false);
  if (needsGrad(x)) record(y, "addScalar", [x], (g) => [g]);
  return y;
}

/**
 * x · s.
 * @param x Tensor.
 * @param s Scalar.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { mulScalar, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual([...await mulScalar(dev.tensor([1, 2]), 3).data()], [3, 6]);
 * ```
 */
export function mulScalar<D extends DType>(x: Tensor<D>, s: number): Tensor<D> {
  const y = scalarOp("mul", x, s, false);
  if (needsGrad(x)) record(y, "mulScalar", [x], (g) => [mulScalar(g, s)]);
  return y;
}

/**
 * s − x.
 * @param x Tensor.
 * @param s Scalar.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { openDevice, rsubScalar } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual([...await rsubScalar(dev.tensor([1, 2]), 1).data()], [0, -1]);
 * ```
 */
export function rsubScalar<D extends DType>(x: Tensor<D>, s: number): Tensor<D> {
  const y = scalarOp("sub", x, s, true);
  if (needsGrad(x)) record(y, "rsubScalar", [x], (g) => [neg(g)]);
  return y;
}

/**
 * s / x.
 * @param x Tensor.
 * @param s Scalar.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { openDevice, rdivScalar } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual([...await rdivScalar(dev.tensor([2, 4]), 1).data()], [0.5, 0.25]);
 * ```
 */
export function rdivScalar<D extends DType>(x: Tensor<D>, s: number): Tensor<D> {
  const y = scalarOp("div", x, s, true);
  if (needsGrad(x)) record(y, "rdivScalar", [x], (g) => [neg(div(mul(g, y), x))]);
  return y;
}

/**
 * xˢ.
 * @param x Tensor.
 * @param s Exponent.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { openDevice, powScalar } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual([...await powScalar(dev.tensor([2, 3]), 2).data()], [4, 9]);
 * ```
 */
export function powScalar<D extends DType>(x: Tensor<D>, s: number): Tensor<D> {
  const y = scalarOp("pow", x, s, false);
  if (needsGrad(x)) {
    record(y, "powScalar", [x], (g) => [mul(g, mulScalar(scalarOp("pow", x, s - 1, false), s))]);
  }
  return y;
}

/**
 * max(x, s) elementwise (gradient where x ≥ s).
 * @param x Tensor.
 * @param s Scalar.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { maxScalar, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual([...await maxScalar(dev.tensor([-2, 3]), 0).data()], [0, 3]);
 * ```
 */
export function maxScalar<D extends DType>(x: Tensor<D>, s: number): Tensor<D> {
  const y = scalarOp("maximum", x, s, false);
  if (needsGrad(x)) record(y, "maxScalar", [x], (g) => [mul(g, scalarOp("ge", x, s, false))]);
  return y;
}

/**
 * x > s as 1/0 (no gradient).
 * @param x Tensor.
 * @param s Scalar.
 * @returns A new tensor.
 * @example
 * ```ts
 * import { greaterScalar, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual([...await greaterScalar(dev.tensor([-2, 3]), 0).data()], [0, 1]);
 * ```
 */
export function greaterScalar<D extends DType>(x: Tensor<D>, s: number): Tensor<D> {
  return scalarOp("gt", x, s, false);
}

// ---------------------------------------------------------------------------------------------
// where / cast

/**
 * `cond ≠ 0 ? a : b`. `a` and `b` have the same shape; `cond` has that shape, or is a suffix of
 * it (broadcast over leading dims), or is that shape with a trailing 1 (one flag per row).
 *
 * @param cond The condition (any dtype).
 * @param a Chosen where cond ≠ 0.
 * @param b Chosen where cond = 0.
 * @returns A new tensor.
 *
 * @example
 * ```ts
 * import { openDevice, where } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using y = where(dev.tensor([1, 0]), dev.tensor([[1, 2], [3, 4]]), dev.zeros([2, 2]));
 * assert.deepEqual(await y.toArray(), [[1, 0], [3, 0]]);
 * ```
 */
export function where<D extends DType>(cond: Tensor, a: Tensor<D>, b: Tensor<D>): Tensor<D> {
  sameDevice("where", a, b);
  sameDevice("where", cond, a);
  if (!sameShape(a.shape, b.shape)) {
    throw ShapeError.mismatch(
      "where",
      [cond.shape, a.shape, b.shape],
      "a and b must have the same shape",
    );
  }
  if (a.dtype !== b.dtype) throw new DTypeError("where", `a is ${a.dtype} but b is ${b.dtype}`);
  const n = a.size;
  const cs = cond.shape, s = a.shape;
  let cstride: number, cmod: number;
  const isSuffix = cs.length <= s.length && cs.every((d, i) => d === s[s.length - cs.length + i]);
  const isRowFlag = cs.length === s.length && cs[cs.length - 1] === 1 &&
    cs.slice(0, -1).every((d, i) => d === s[i]);
  if (isSuffix) {
    cstride = 1;
    cmod = Math.max(1, cond.size);
  } else if (isRowFlag) {
    cstride = s[s.length - 1]!;
    cmod = Math.max(1, cond.size);
  } else {
    throw ShapeError.mismatch(
      "where",
      [cs, s],
      "cond must match a's shape, a suffix of it, or [..., 1]",
    );
  }
  const out = a.device.empty(s, a.dtype, "where");
  const fusion = a.device.fusion;
  if (n > 0 && fusion) fusion.where(cond, a, b, out);
  else if (n > 0) {
    a.device.run(
      whereDispatch(
        cond.dtype,
        a.dtype,
        n,
        cstride,
        cmod,
        cond.storage("where"),
        a.storage("where"),
        b.storage("where"),
        out.storage("where"),
      ),
    );
  }
  if (needsGrad(a, b)) {
    record(out, "where", [a, b], (g) => {
      const z = g.device.zeros(g.shape, g.dtype);
      return [a.requiresGrad ? where(cond, g, z) : null, b.requiresGrad ? where(cond, z, g) : null];
    });
  }
  return out;
}

/**
 * Converts to another dtype (floats to integers truncate toward zero and saturate).
 *
 * @param x The input.
 * @param dtype The target dtype.
 * @returns A new tensor (gradients pass through float-to-float casts).
 *
 * @example
 * ```ts
 * import { cast, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.deepEqual([...await cast(dev.tensor([1.7, -2.5]), "i32").data()], [1, -2]);
 * ```
 */
export function cast<T extends DType>(x: Tensor, dtype: T): Tensor<T> {
  const out = x.device.empty(x.shape, dtype, "cast");
  const fusion = x.device.fusion;
  if (x.size > 0 && fusion) fusion.cast(x, out);
  else if (x.size > 0) {
    x.device.run(castDispatch(x.dtype, dtype, x.storage("cast"), out.storage("cast"), x.size));
  }
  if (isFloat(x.dtype) && isFloat(dtype) && needsGrad(x)) {
    const from = x.dtype;
    record(out, "cast", [x], (g) => [cast(g, from)]);
  }
  return out;
}

/**
 * Number of elements of a broadcast of shapes (used by tests and accounting).
 *
 * @param a First shape.
 * @param b Second shape.
 * @returns The element count of their NumPy broadcast.
 *
 * @example
 * ```ts
 * import { broadcastSize } from "./elementwise.ts";
 * import assert from "node:assert/strict";
 * assert.equal(broadcastSize([4, 1, 3], [2, 1]), 24);
 * ```
 */
export function broadcastSize(a: readonly number[], b: readonly number[]): number {
  return sizeOf(broadcastShapes("broadcast", a, b));
}
