/**
 * `embedding`: token-id lookup into a `[V, D]` table, with a deterministic scatter-add gradient.
 *
 * @module
 */
import {
  embeddingAccumulateDispatch,
  embeddingDispatch,
  embeddingLinksDispatch,
} from "../../kernels/embedding.ts";
import { needsGrad, record } from "../autograd/tape.ts";
import { type DType, isFloat } from "../core/dtype.ts";
import { DeviceError, DTypeError, ShapeError, ValueError } from "../core/errors.ts";
import type { Device } from "../tensor/device.ts";
import type { Tensor } from "../tensor/tensor.ts";

/**
 * Uploads host token ids as a u32 tensor after checking that each is an integer in `[0, limit)`.
 * Used by ops that take ids or class targets from host data, where a bad value can still be
 * reported with its position (a kernel cannot).
 *
 * @param device Where the tensor goes.
 * @param ids Host ids.
 * @param limit Exclusive upper bound (vocabulary or class count).
 * @param op Op name for the error.
 * @returns A 1-D u32 tensor.
 *
 * @example
 * ```ts
 * import { openDevice, ValueError } from "@qsparse/kit";
 * import { uploadIds } from "./embedding.ts";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using ids = uploadIds(dev, [3, 0, 2], 4, "demo");
 * assert.equal(ids.dtype, "u32");
 * assert.throws(() => uploadIds(dev, [1, 4], 4, "demo"), ValueError);
 * ```
 */
export function uploadIds(
  device: Device,
  ids: ArrayLike<number>,
  limit: number,
  op: string,
): Tensor<"u32"> {
  const host = new Uint32Array(ids.length);
  for (let i = 0; i < ids.length; i++) {
    const v = ids[i]!;
    if (!Number.isInteger(v) || v < 0 || v >= limit) {
      throw new ValueError(op, `id ${v} at position ${i} is outside [0, ${limit})`);
    }
    host[i] = v;
  }
  return device.tensor(host, [host.length], "u32");
}

/**
 * Looks up rows of `table` by token id: `out[..., :] = table[ids[...], :]`.
 *
 * Gradient (table only): the output gradient rows are added into a `[V, D]` zero tensor at
 * their ids — exactly and deterministically (per-id lists summed in token order, no float
 * atomics), so repeated ids accumulate and GPU and CPU agree bit for bit.
 *
 * Out-of-range ids: ids given as host data are checked (ValueError naming the position). Ids
 * already on the device cannot be checked without a readback; an id ≥ V reads as a zero row
 * and receives no gradient.
 *
 * @param table Embedding table `[V, D]`, float.
 * @param ids Token ids: a u32 tensor of any shape, or host numbers (1-D).
 * @returns `[...ids.shape, D]`, the table's dtype.
 *
 * @example
 * ```ts
 * import { embedding, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using table = dev.tensor([[0, 1], [10, 11], [20, 21]]);
 * using ids = dev.tensor(new Uint32Array([2, 0, 2, 1]), [2, 2], "u32");
 * using e = embedding(table, ids);
 * assert.deepEqual(await e.toArray(), [[[20, 21], [0, 1]], [[20, 21], [10, 11]]]);
 * assert.deepEqual(await embedding(table, [1]).toArray(), [[10, 11]]);
 * ```
 */
export function embedding<D extends DType>(
  table: Tensor<D>,
  ids: Tensor<"u32"> | ArrayLike<number>,
): Tensor<D> {
  const op = "embedding";
  if (table.rank !== 2) throw ShapeError.mismatch(op, [table.shape], "table must be [V, D]");
  if (!isFloat(table.dtype)) throw new DTypeError(op, `table must be float, got ${table.dtype}`);
  const [V, D] = table.shape as [number, number];
  let idt: Tensor<"u32">;
  if ("device" in ids) {
    if (ids.dtype !== "u32") {
      throw new DTypeError(
        op,
        `ids must be u32, got ${ids.dtype} ${ids} (cast it, or pass host numbers)`,
      );
    }
    if (ids.device !== table.device) {
      throw DeviceError.mismatch(
        op,
        [table.shape, ids.shape],
        "table and ids live on different devices",
      );
    }
    idt = ids;
  } else {
    idt = uploadIds(table.device, ids, V, op);
  }
  const n = idt.size;
  const out = table.device.empty([...idt.shape, D], table.dtype, op);
  if (out.size > 0) {
    table.device.run(
      embeddingDispatch(table.dtype, n, D, V, table.storage(op), idt.storage(op), out.storage(op)),
    );
  }
  const host = idt !== ids;
  if (needsGrad(table)) {
    record(out, op, [table], (g) => {
      const bop = "embeddingBackward";
      const dev = table.device;
      let gt: Tensor;
      if (n > 0 && D > 0) {
        gt = dev.empty([V, D], table.dtype, bop);
        const links = dev.empty([n], "u32", bop);
        // One launch links the ids and zeroes the table gradient.
        dev.run(
          embeddingLinksDispatch(
            n,
            V,
            idt.storage(bop),
            links.storage(bop),
            table.dtype,
            gt.storage(bop),
            V * D,
          ),
        );
        dev.run(
          embeddingAccumulateDispatch(
            table.dtype,
            n,
            D,
            g.storage(bop),
            idt.storage(bop),
            links.storage(bop),
            gt.storage(bop),
          ),
        );
        links.dispose();
      } else {
        gt = dev.zeros([V, D], table.dtype);
      }
      return [gt];
    });
  } else if (host) {
    idt.dispose();
  }
  return out;
}
