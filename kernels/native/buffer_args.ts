/**
 * Task arguments for whole buffers: each buffer as `(address, byteLength)`, so a task can alias
 * every buffer in full with `ctx.view` without re-deriving sizes from the shapes.
 *
 * @module
 */
import type { NativeRuntime, TaskContext } from "../../src/backend/backend.ts";

/**
 * `[address₀, bytes₀, address₁, bytes₁, …, ...extra]` for a parallel task.
 *
 * @param bufs The buffers.
 * @param rt The runtime (addresses).
 * @param extra Numeric parameters appended after the buffers.
 * @returns The args.
 *
 * @example
 * ```ts
 * import { bufferArgs } from "./buffer_args.ts";
 * const rt = { address: () => 4096 } as unknown as Parameters<typeof bufferArgs>[1];
 * console.log(bufferArgs([new ArrayBuffer(8)], rt, 3)); // [4096, 8, 3]
 * ```
 */
export function bufferArgs(bufs: ArrayBuffer[], rt: NativeRuntime, ...extra: number[]): number[] {
  const out: number[] = [];
  for (const b of bufs) out.push(b.byteLength ? rt.address(b) : 0, b.byteLength);
  return out.concat(extra);
}

/**
 * The i-th buffer of {@link bufferArgs}, aliased in full.
 *
 * @param ctx The task context.
 * @param args The task's args.
 * @param i Buffer index.
 * @returns The buffer.
 *
 * @example
 * ```ts
 * import { argBuffer } from "./buffer_args.ts";
 * const ctx = { view: (_a: number, n: number) => new ArrayBuffer(n), blas: null };
 * console.log(argBuffer(ctx, new Float64Array([0, 8]), 0).byteLength); // 8
 * ```
 */
export function argBuffer(ctx: TaskContext, args: Float64Array, i: number): ArrayBuffer {
  return ctx.view(args[2 * i]!, args[2 * i + 1]!);
}
