/**
 * `rope`: rotary position embedding for attention heads, with its gradient.
 *
 * @module
 */
import {
  ROPE_MAX_HEAD_DIM,
  ropeDispatch,
  ropeInvFreq,
  ropePairDispatch,
  type RopeParams,
} from "../../kernels/rope.ts";
import { STEP_VALUES_LENGTH } from "../../kernels/step_values.ts";
import { needsGrad, record, recordGroup } from "../autograd/tape.ts";
import type { Shape } from "../core/shape.ts";
import { type DType, isFloat } from "../core/dtype.ts";
import { DeviceError, DTypeError, ShapeError, ValueError } from "../core/errors.ts";
import type { Tensor } from "../tensor/tensor.ts";

/** Options for {@link rope}. */
export interface RopeOptions {
  /** Position of the first token (default 0), e.g. the cache length when decoding. */
  offset?: number;
  /** θ base of the frequencies (default 10000). */
  base?: number;
  /**
   * Step values (u32 `[4]`, kernels/step_values.ts) whose position entry is added to `offset` on
   * the device: a captured decode loop's position, which changes every step (`ropePair` only,
   * no gradient).
   */
  stepValues?: Tensor<"u32">;
}

/**
 * Inverse frequencies of {@link rope}: `invFreq[i] = 1 / base^(2i/hd)` for i in [0, hd/2),
 * each step rounded to f32 exactly as Hugging Face computes
 * `1.0 / (base ** (torch.arange(0, hd, 2).float() / hd))`.
 *
 * @param headDim Head width hd (even).
 * @param base θ base (default 10000).
 * @returns The hd/2 frequencies.
 *
 * @example
 * ```ts
 * import { ropeFrequencies } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * const f = ropeFrequencies(4);
 * assert.deepEqual([...f], [1, Math.fround(0.01)]);
 * ```
 */
export function ropeFrequencies(headDim: number, base = 10000): Float32Array {
  if (!Number.isInteger(headDim) || headDim <= 0 || headDim % 2 !== 0) {
    throw new ValueError("rope", `head dim must be a positive even integer, got ${headDim}`);
  }
  return ropeInvFreq(headDim, base);
}

/**
 * Rotary position embedding, "rotate-half" convention (GPT-NeoX; LLaMA as implemented in
 * Hugging Face transformers, `apply_rotary_pos_emb` with `rotate_half`).
 *
 * For `x` of shape `[B, T, H, hd]` (any leading dims before `[T, H, hd]`), token t of every
 * batch and head has position `p = t + offset`, and with `h = hd/2`, for each i in [0, h):
 *
 * ```text
 * angle    = f32(p) · invFreq[i]          invFreq[i] = 1 / base^(2i/hd)   (ropeFrequencies)
 * y[i]     = x[i]·cos(angle) − x[i + h]·sin(angle)
 * y[i + h] = x[i + h]·cos(angle) + x[i]·sin(angle)
 * ```
 *
 * i.e. `y = x·cos + rotate_half(x)·sin` with `cos = cat(cos(angles), cos(angles))` and
 * `rotate_half(x) = cat(−x[h:], x[:h])`. Pairs are (i, i + h), not the interleaved
 * (2i, 2i + 1) of the original RoFormer / Meta LLaMA code. The angle is the f32 product, as in HF.
 *
 * Gradient: rotation by −angle.
 *
 * @param x Heads `[..., T, H, hd]`, float, hd even and ≤ 512.
 * @param opts Position offset and θ base.
 * @returns The rotated tensor, same shape and dtype.
 *
 * @example
 * ```ts
 * import { openDevice, rope } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * // T = 2 positions, 1 head, hd = 2: position 1 rotates (1, 0) by 1 radian.
 * using y = rope(dev.tensor([1, 0, 1, 0], [1, 2, 1, 2]));
 * const v = await y.data();
 * assert.deepEqual([v[0], v[1]], [1, 0]);
 * assert.ok(Math.abs(v[2]! - Math.cos(1)) < 1e-6 && Math.abs(v[3]! - Math.sin(1)) < 1e-6);
 * ```
 */
export function rope<D extends DType>(x: Tensor<D>, opts: RopeOptions = {}): Tensor<D> {
  if (opts.stepValues) throw new ValueError("rope", "stepValues is supported by ropePair only");
  const op = "rope";
  const params = ropeParams(op, x, opts);
  const out = x.device.empty(x.shape, x.dtype, op);
  if (x.size === 0) return out;
  x.device.run(ropeDispatch(x.dtype, params, x.storage(op), out.storage(op)));
  if (needsGrad(x)) {
    record(out, op, [x], (g) => {
      const gx = x.device.empty(x.shape, x.dtype, "ropeBackward");
      x.device.run(
        ropeDispatch(
          x.dtype,
          { ...params, sign: -1 },
          g.storage("ropeBackward"),
          gx.storage("ropeBackward"),
        ),
      );
      return [gx];
    });
  }
  return out;
}

/**
 * {@link rope} of two tensors of the same shape and dtype — attention's q and k — in one launch
 * forward and one backward (when both gradients arrive): the same numbers as two `rope` calls,
 * bit for bit.
 *
 * @param a First tensor `[..., T, H, hd]`, float, hd even and ≤ 512.
 * @param b Second tensor, same shape, dtype and device.
 * @param opts Position offset and θ base (shared).
 * @returns The two rotated tensors.
 *
 * @example
 * ```ts
 * import { openDevice, rope, ropePair } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using q = dev.randn([1, 4, 2, 8], { seed: 1 });
 * using k = dev.randn([1, 4, 2, 8], { seed: 2 });
 * const [qr, kr] = ropePair(q, k);
 * using rq = rope(q);
 * assert.deepEqual(await qr.data(), await rq.data());
 * qr.dispose();
 * kr.dispose();
 * ```
 */
export function ropePair<D extends DType>(
  a: Tensor<D>,
  b: Tensor<D>,
  opts: RopeOptions = {},
): [Tensor<D>, Tensor<D>] {
  const op = "ropePair";
  const params = ropeParams(op, a, opts);
  if (b.dtype !== a.dtype) {
    throw new DTypeError(op, `second tensor is ${b.dtype} but first is ${a.dtype}`);
  }
  if (b.shape.length !== a.shape.length || b.shape.some((n, i) => n !== a.shape[i])) {
    throw ShapeError.mismatch(op, [a.shape, b.shape], "both tensors must have one shape");
  }
  if (b.device !== a.device) {
    throw DeviceError.mismatch(op, [a.shape, b.shape], "the tensors live on different devices");
  }
  const dev = a.device;
  const sv = opts.stepValues;
  if (sv) checkStepValues(op, sv, [a.shape, b.shape], needsGrad(a, b));
  const outA = dev.empty(a.shape, a.dtype, op), outB = dev.empty(b.shape, b.dtype, op);
  if (a.size === 0) return [outA, outB];
  dev.run(
    ropePairDispatch(
      a.dtype,
      params,
      a.storage(op),
      outA.storage(op),
      b.storage(op),
      outB.storage(op),
      sv?.storage(op),
    ),
  );
  if (needsGrad(a, b)) {
    const bop = "ropePairBackward";
    const back = { ...params, sign: -1 as const };
    recordGroup([outA, outB], op, [a, b], ([ga, gb]) => {
      const gxa = ga ? dev.empty(a.shape, a.dtype, bop) : null;
      const gxb = gb ? dev.empty(b.shape, b.dtype, bop) : null;
      if (ga && gb) {
        dev.run(
          ropePairDispatch(
            a.dtype,
            back,
            ga.storage(bop),
            gxa!.storage(bop),
            gb.storage(bop),
            gxb!.storage(bop),
          ),
        );
      } else if (ga) {
        dev.run(ropeDispatch(a.dtype, back, ga.storage(bop), gxa!.storage(bop)));
      } else if (gb) {
        dev.run(ropeDispatch(b.dtype, back, gb.storage(bop), gxb!.storage(bop)));
      }
      return [gxa, gxb];
    });
  }
  return [outA, outB];
}

/** Step values must be u32 `[4]` on the tensors' device, and carry no gradient path. */
function checkStepValues(op: string, sv: Tensor, shapes: Shape[], grad: boolean): void {
  if (sv.dtype !== "u32" || sv.size !== STEP_VALUES_LENGTH) {
    throw ShapeError.mismatch(
      op,
      [...shapes, sv.shape],
      `stepValues must be u32 [${STEP_VALUES_LENGTH}], got ${sv.dtype} [${sv.shape}]`,
    );
  }
  if (grad) {
    throw new ValueError(op, "stepValues is for decoding (no gradient); got inputs needing one");
  }
}

/** Checks a rope input and options; returns the kernel's parameters. */
function ropeParams(op: string, x: Tensor, opts: RopeOptions): RopeParams {
  if (!isFloat(x.dtype)) throw new DTypeError(op, `needs a float tensor, got ${x.dtype} ${x}`);
  if (x.rank < 3) {
    throw ShapeError.mismatch(op, [x.shape], "x must be [..., T, H, hd] (e.g. [B, T, H, hd])");
  }
  const [T, H, hd] = x.shape.slice(-3) as [number, number, number];
  if (hd % 2 !== 0 || hd > ROPE_MAX_HEAD_DIM) {
    throw ShapeError.mismatch(
      op,
      [x.shape],
      `head dim must be even and ≤ ${ROPE_MAX_HEAD_DIM}, got ${hd}`,
    );
  }
  const offset = opts.offset ?? 0, base = opts.base ?? 10000;
  if (!Number.isInteger(offset) || offset < 0 || offset >= 2 ** 24) {
    throw new ValueError(op, `offset must be an integer in [0, 2^24), got ${offset}`);
  }
  if (!(base > 0) || !Number.isFinite(base)) {
    throw new ValueError(op, `base must be > 0, got ${base}`);
  }
  return {
    vectors: hd === 0 ? 0 : x.size / hd,
    t: T,
    h: H,
    half: hd / 2,
    offset,
    sign: 1,
    invFreq: ropeInvFreq(hd, base),
  };
}
