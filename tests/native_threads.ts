/**
 * Test helper for the native kernels: runs an op on native devices with 1 and 3 threads (3 puts
 * chunk boundaries where 2 does not, and 1 takes the calling-thread path) and checks each result
 * against the CPU twin's, by default bit for bit (the native kernels of the elementwise,
 * reduction, layout, embedding, cross-entropy and optimizer families repeat the twins'
 * arithmetic in the same order).
 */
import type { Tensor } from "../mod.ts";
import { NativeBackend } from "../src/backend/native.ts";
import { Device } from "../src/tensor/device.ts";
import { assertClose, cpu, type Tolerance } from "./helpers.ts";

/** Thread counts checked. */
export const THREAD_COUNTS = [1, 3] as const;

/**
 * One native device per thread count, opened once per test file (like helpers.ts's devices, so
 * the worker threads belong to no single test).
 */
export const threadDevices: Device[] = await Promise.all(THREAD_COUNTS.map(async (threads) => {
  const backend = new NativeBackend({ threads });
  await backend.ready();
  return new Device(backend);
}));

/**
 * Runs `fn` on the CPU twin and on native devices with {@link THREAD_COUNTS} threads; throws
 * when any result differs from the twin's beyond `tol` (default: exact, NaN equal to NaN).
 */
export async function exactOnThreads(
  fn: (dev: Device) => Tensor | Tensor[],
  what: string,
  tol: Tolerance = { rtol: 0, atol: 0 },
): Promise<void> {
  const asList = (r: Tensor | Tensor[]) => (Array.isArray(r) ? r : [r]);
  const ref = asList(fn(cpu));
  const refData = await Promise.all(ref.map((t) => t.data()));
  for (let k = 0; k < THREAD_COUNTS.length; k++) {
    const got = asList(fn(threadDevices[k]!));
    for (let i = 0; i < ref.length; i++) {
      if (got[i]!.shape.join() !== ref[i]!.shape.join()) {
        throw new Error(`${what}[${i}]: shape [${got[i]!.shape}] vs CPU [${ref[i]!.shape}]`);
      }
      const label = `${what}[${i}] (${THREAD_COUNTS[k]} threads)`;
      assertClose(await got[i]!.data(), refData[i]!, tol, label);
      got[i]!.dispose();
    }
  }
  ref.forEach((t) => t.dispose());
}
