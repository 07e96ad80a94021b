/**
 * Quantized tensors for BitNet b1.58: int8 activations per row ({@link Int8Rows}), their
 * top-K form ({@link Int8SparseRows}) and ternary weights packed 16 per u32
 * ({@link TernaryWeights}). Each owns its tensors (`dispose()`, `using`, scopes keep it whole).
 * Made by `quantizeActivations`, `topkQuantized` and `quantizeWeights`.
 *
 * @module
 */
import { dequantRowsDispatch, unpackTernaryDispatch } from "../../kernels/quant.ts";
import type { Device } from "./device.ts";
import { keep, OWNED_TENSORS } from "./scope.ts";
import type { Shape } from "../core/shape.ts";
import type { SparseRows } from "./sparse.ts";
import type { Tensor } from "./tensor.ts";

/**
 * int8 absmax codes per row: `codes` (int8 values held in i32, the kit has no 8-bit dtype)
 * `[..., D]` and `scale` `[..., 1]` with `x ≈ codes / scale`, `scale = 127 / (max|x| + ε)`
 * (BitNet's naming).
 *
 * @example
 * ```ts
 * import { openDevice, quantizeActivations } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using q = quantizeActivations(dev.tensor([[2, -1, 0.5]]));
 * assert.deepEqual(await q.codes.toArray(), [[127, -63, 32]]); // scale = 127 / (2 + 1e-5)
 * const x = await q.dequantize().data();
 * assert.ok(Math.abs(x[1]! + 1) < 0.01);
 * ```
 */
export class Int8Rows implements Disposable {
  /** int8 codes in [−128, 127], `[..., D]`. */
  readonly codes: Tensor<"i32">;
  /** Per-row multiplier `[..., 1]`: x ≈ codes / scale. */
  readonly scale: Tensor<"f32">;

  /**
   * Wraps existing tensors (ownership passes to the new object).
   *
   * @param codes i32 codes `[..., D]`.
   * @param scale f32 `[..., 1]`.
   */
  constructor(codes: Tensor<"i32">, scale: Tensor<"f32">) {
    this.codes = codes;
    this.scale = scale;
  }

  /** Dense shape. */
  get shape(): Shape {
    return this.codes.shape;
  }
  /** The device holding the tensors. */
  get device(): Device {
    return this.codes.device;
  }

  /** `codes / scale` as f32. @returns A new tensor of `shape`. */
  dequantize(): Tensor<"f32"> {
    const op = "dequantizeActivations";
    const out = this.device.empty(this.shape, "f32", op);
    const cols = this.shape[this.shape.length - 1] ?? 1;
    if (out.size > 0) {
      this.device.run(
        dequantRowsDispatch(out.size, cols, [
          this.codes.storage(op),
          this.scale.storage(op),
          out.storage(op),
        ]),
      );
    }
    return out;
  }

  /** Exempts the tensors from every open scope. @returns this. */
  keep(): this {
    keep(this.codes);
    keep(this.scale);
    return this;
  }
  /** Frees the tensors. */
  dispose(): void {
    this.codes.dispose();
    this.scale.dispose();
  }
  /** Frees the tensors at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.dispose();
  }
  /** The owned tensors. @returns codes, scale. */
  [OWNED_TENSORS](): Tensor[] {
    return [this.codes, this.scale];
  }
}

/**
 * Quantized top-K rows: the kept int8 codes as {@link SparseRows} (i32 values, u32 indices
 * `[..., K]`) and the per-row `scale` `[..., 1]` of the *full* row (quantize-then-mask, which
 * equals mask-then-quantize because the row's max always survives top-K).
 *
 * @example
 * ```ts
 * import { openDevice, topkQuantized } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using q = topkQuantized(dev.tensor([[2, -1, 0.5, 0.1]]), 2);
 * assert.deepEqual(await q.rows.indices.toArray(), [[0, 1]]);
 * assert.deepEqual(await q.rows.values.toArray(), [[127, -63]]);
 * ```
 */
export class Int8SparseRows implements Disposable {
  /** Kept codes (i32 in [−128, 127]) and their column indices. */
  readonly rows: SparseRows<"i32">;
  /** Per-row multiplier `[..., 1]` of the full row: x ≈ codes / scale. */
  readonly scale: Tensor<"f32">;

  /**
   * Wraps existing tensors (ownership passes to the new object).
   *
   * @param rows Sparse rows of codes.
   * @param scale f32 `[..., 1]`.
   */
  constructor(rows: SparseRows<"i32">, scale: Tensor<"f32">) {
    this.rows = rows;
    this.scale = scale;
  }

  /** Dense shape `[..., D]`. */
  get shape(): Shape {
    return this.rows.shape;
  }
  /** The device holding the tensors. */
  get device(): Device {
    return this.scale.device;
  }

  /** Dense f32 `(codes / scale) ⊙ mask`. @returns A new `[..., D]` tensor. */
  dequantize(): Tensor<"f32"> {
    const codes = this.rows.toDense();
    const q = new Int8Rows(codes, this.scale);
    const out = q.dequantize();
    codes.dispose();
    return out;
  }

  /** Exempts the tensors from every open scope. @returns this. */
  keep(): this {
    this.rows.keep();
    keep(this.scale);
    return this;
  }
  /** Frees the tensors. */
  dispose(): void {
    this.rows.dispose();
    this.scale.dispose();
  }
  /** Frees the tensors at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.dispose();
  }
  /** The owned tensors. @returns values, indices, scale. */
  [OWNED_TENSORS](): Tensor[] {
    return [this.rows.values, this.rows.indices, this.scale];
  }
}

/**
 * Ternary absmean weights `[D_in, D_out]` (input-major, as `spmm` wants), packed 16 codes per
 * u32 along D_out: `packed` is u32 `[D_in, ⌈D_out/16⌉]`, column c at bits `2(c mod 16)` of word
 * `c/16`, holding `t + 1` for t ∈ {−1, 0, 1}. `w ≈ t · alpha` with `alpha = mean|w| + ε` (the
 * paper's α, ε-guarded), a `[1]` tensor.
 *
 * @example
 * ```ts
 * import { openDevice, quantizeWeights } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using t = quantizeWeights(dev.tensor([[0.9, -0.1], [-1.2, 0.2]]));
 * const a = await t.alpha.item(); // mean |w| = 0.6
 * assert.ok(Math.abs(a - 0.6) < 1e-4);
 * assert.deepEqual(await t.dequantize().toArray(), [[a, 0], [-a, 0]]);
 * ```
 */
export class TernaryWeights implements Disposable {
  /** Packed codes, u32 `[D_in, ⌈D_out/16⌉]`. */
  readonly packed: Tensor<"u32">;
  /** `mean|w| + ε`, f32 `[1]`. */
  readonly alpha: Tensor<"f32">;
  /** Unpacked shape `[D_in, D_out]`. */
  readonly shape: readonly [number, number];

  /**
   * Wraps existing tensors (ownership passes to the new object).
   *
   * @param packed u32 `[D_in, ⌈D_out/16⌉]`.
   * @param alpha f32 `[1]`.
   * @param shape `[D_in, D_out]`.
   */
  constructor(packed: Tensor<"u32">, alpha: Tensor<"f32">, shape: readonly [number, number]) {
    this.packed = packed;
    this.alpha = alpha;
    this.shape = Object.freeze([shape[0], shape[1]]) as readonly [number, number];
  }

  /** The device holding the tensors. */
  get device(): Device {
    return this.packed.device;
  }

  /** `t · alpha` as f32 `[D_in, D_out]`. @returns A new tensor. */
  dequantize(): Tensor<"f32"> {
    const op = "dequantizeWeights";
    const [r, c] = this.shape;
    const out = this.device.empty([r, c], "f32", op);
    if (out.size > 0) {
      this.device.run(
        unpackTernaryDispatch(r, c, [
          this.packed.storage(op),
          this.alpha.storage(op),
          out.storage(op),
        ]),
      );
    }
    return out;
  }

  /** Exempts the tensors from every open scope. @returns this. */
  keep(): this {
    keep(this.packed);
    keep(this.alpha);
    return this;
  }
  /** Frees the tensors. */
  dispose(): void {
    this.packed.dispose();
    this.alpha.dispose();
  }
  /** Frees the tensors at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.dispose();
  }
  /** The owned tensors. @returns packed, alpha. */
  [OWNED_TENSORS](): Tensor[] {
    return [this.packed, this.alpha];
  }
}
