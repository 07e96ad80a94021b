/**
 * The sum that finishes a split-K product (weight gradients `Xᵀ·dY`, whose K is the tokens): on a
 * device that defers launches it waits and joins every other pending split sum in one launch
 * (kernels/split_sum_group.ts), since nothing reads a weight gradient before the optimizer;
 * elsewhere it runs at once as the op's own kernel.
 *
 * @module
 */
import { splitSumGroupCapacity, splitSumGroupDispatch } from "../../kernels/split_sum_group.ts";
import type { SplitSumMember } from "../../kernels/split_sum_group.ts";
import type { DType } from "../core/dtype.ts";
import type { DeferredKind } from "../tensor/deferred.ts";
import type { Device } from "../tensor/device.ts";
import type { Tensor } from "../tensor/tensor.ts";

function splitSumKind(dev: Device, dtype: DType): DeferredKind<SplitSumMember> {
  const capacity = splitSumGroupCapacity(dev.limits.maxStorageBuffersPerShaderStage);
  return {
    key: `splitSumGroup:${dtype}`,
    capacity,
    dispatch: (members) => splitSumGroupDispatch(dtype, members, capacity),
  };
}

/**
 * Sums `splits` chunks of partial products into each of `outs` (output i's chunks start at
 * element `i · splits · mn` of `parts`), deferred when the device defers, else by `now()`.
 *
 * @param parts The partials `[outs · splits, …]`.
 * @param outs The outputs, `mn` elements each, of the partials' dtype.
 * @param splits Chunks per output.
 * @param op The op, named in errors.
 * @param now Runs the sums at once (the op's own launch).
 */
export function sumSplits(
  parts: Tensor,
  outs: readonly Tensor[],
  splits: number,
  op: string,
  now: () => void,
): void {
  const dev = parts.device;
  if (!dev.deferred) return now();
  const kind = splitSumKind(dev, parts.dtype);
  outs.forEach((out, i) => {
    const mn = out.size;
    dev.deferred!.add(
      kind,
      {
        splits,
        mn,
        parts: parts.storage(op),
        offset: i * splits * mn,
        out: out.storage(op),
      },
      [parts],
      out,
      op,
    );
  });
}
