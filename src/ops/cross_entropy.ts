/**
 * `crossEntropy`: softmax cross-entropy from logits and integer class targets, fused.
 *
 * @module
 */
import { crossEntropyBackwardDispatch, crossEntropyDispatch } from "../../kernels/cross_entropy.ts";
import { rowLanesOn } from "./row_lanes.ts";
import { needsGrad, record } from "../autograd/tape.ts";
import { type DType, isFloat } from "../core/dtype.ts";
import { DeviceError, DTypeError, ShapeError, ValueError } from "../core/errors.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { uploadIds } from "./embedding.ts";
import { meanAll, sumAll } from "./reduce.ts";

/** Options for {@link crossEntropy}. */
export interface CrossEntropyOptions {
  /** `"mean"` (default) over rows, `"sum"`, or `"none"` for one loss per row. */
  reduction?: "mean" | "sum" | "none";
}

/**
 * Softmax cross-entropy, `loss_i = log Σ_j exp(logits[i, j]) − logits[i, targets[i]]`, from
 * logits in one fused, max-subtracted kernel (no probabilities are materialised).
 *
 * Gradient (logits only): `(softmax(logits) − onehot(targets)) · g`, fused; with the default
 * `"mean"` reduction g is the loss's gradient times 1/N for every row, taken inside the same
 * launch (one backward launch for the loss and its reduction).
 *
 * Targets out of range: host targets are checked (ValueError naming the position); a device
 * tensor cannot be checked without a readback, so a target ≥ V gives a NaN loss for its row
 * (and a NaN gradient row) — the mean becomes NaN and the next loss readback shows it.
 *
 * @param logits `[N, V]` (or `[..., V]`), float.
 * @param targets Class ids: a u32 tensor of shape `[N]` (the logits' leading dims), or host
 *   numbers.
 * @param opts Reduction.
 * @returns A scalar (`"mean"`, `"sum"`) or the per-row losses (`"none"`), in the logits' dtype.
 *
 * @example
 * ```ts
 * import { crossEntropy, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using logits = dev.tensor([[0, 0, 0, 0], [10, 0, 0, 0]]);
 * using rows = crossEntropy(logits, [3, 0], { reduction: "none" });
 * const l = await rows.data();
 * assert.ok(Math.abs(l[0]! - Math.log(4)) < 1e-6 && l[1]! < 1e-3);
 * using m = crossEntropy(logits, [3, 0]);
 * assert.ok(Math.abs((await m.item()) - (l[0]! + l[1]!) / 2) < 1e-6);
 * ```
 */
export function crossEntropy<D extends DType>(
  logits: Tensor<D>,
  targets: Tensor<"u32"> | ArrayLike<number>,
  opts: CrossEntropyOptions = {},
): Tensor<D> {
  const op = "crossEntropy";
  const reduction = opts.reduction ?? "mean";
  if (reduction !== "mean" && reduction !== "sum" && reduction !== "none") {
    throw new ValueError(op, `reduction must be "mean", "sum" or "none", got ${reduction}`);
  }
  if (!isFloat(logits.dtype)) {
    throw new DTypeError(op, `logits must be float, got ${logits.dtype} ${logits}`);
  }
  if (logits.rank < 1) {
    throw ShapeError.mismatch(op, [logits.shape], "logits need a class dim [..., V]");
  }
  const V = logits.shape[logits.rank - 1]!;
  const lead = logits.shape.slice(0, -1);
  const N = lead.reduce((a, d) => a * d, 1);
  let tt: Tensor<"u32">;
  if ("device" in targets) {
    if (targets.dtype !== "u32") {
      throw new DTypeError(
        op,
        `targets must be u32, got ${targets.dtype} ${targets} (cast it, or pass host numbers)`,
      );
    }
    const same = targets.shape.length === lead.length &&
      targets.shape.every((d, i) => d === lead[i]);
    if (!same && !(targets.rank === 1 && targets.size === N)) {
      throw ShapeError.mismatch(
        op,
        [logits.shape, targets.shape],
        "targets must match the logits' leading dims",
      );
    }
    if (targets.device !== logits.device) {
      throw DeviceError.mismatch(
        op,
        [logits.shape, targets.shape],
        "logits and targets live on different devices",
      );
    }
    tt = targets;
  } else {
    if (targets.length !== N) {
      throw ShapeError.mismatch(
        op,
        [logits.shape, [targets.length]],
        `needs ${N} targets, got ${targets.length}`,
      );
    }
    tt = uploadIds(logits.device, targets, V, op);
  }
  const dev = logits.device;
  const lanes = rowLanesOn(dev, N, V);
  const rows = dev.empty(lead, logits.dtype, op);
  if (N > 0) {
    dev.run(
      crossEntropyDispatch(
        logits.dtype,
        N,
        V,
        logits.storage(op),
        tt.storage(op),
        rows.storage(op),
        lanes,
      ),
    );
  }
  // The logits' gradient; with `scalarScale`, g is the mean's or sum's scalar gradient and the
  // reduction's backward happens in the same launch (no broadcast of g to the rows).
  const gradOf = (g: Tensor, scalarScale?: number): Tensor[] => {
    const bop = "crossEntropyBackward";
    const gx = dev.empty(logits.shape, logits.dtype, bop);
    if (N > 0 && V > 0) {
      dev.run(
        crossEntropyBackwardDispatch(
          logits.dtype,
          N,
          V,
          logits.storage(bop),
          tt.storage(bop),
          g.storage(bop),
          gx.storage(bop),
          lanes,
          scalarScale,
        ),
      );
    }
    return [gx];
  };
  const grad = needsGrad(logits);
  if (!grad && tt !== targets) tt.dispose();
  if (reduction === "none") {
    if (grad) record(rows, op, [logits], (g) => gradOf(g));
    return rows;
  }
  // rows is not recorded, so the reduction records nothing; the loss's node is this op's.
  const out = reduction === "mean" ? meanAll(rows) : sumAll(rows);
  rows.dispose();
  if (grad) record(out, op, [logits], (g) => gradOf(g, reduction === "mean" ? 1 / N : 1));
  return out;
}
