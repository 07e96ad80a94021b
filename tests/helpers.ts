/**
 * Test helpers: one CPU, one native and one WebGPU device per test file, a tolerance check in the
 * style of burn's `Tolerance::rel_abs`, and `onBoth`, which runs the same op on every backend from
 * the same host inputs and compares the results with the CPU twin's (WebGPU kernel vs twin,
 * native kernel vs twin).
 */
import { type Device, openDevice, type Tensor } from "../mod.ts";
import type { Backend } from "../src/backend/backend.ts";

/** The reference device. */
export const cpu: Device = await openDevice({ prefer: "cpu" });

/** The WebGPU device, or null where no adapter exists (the GPU half of each check is skipped). */
export const gpu: Device | null = await (async () => {
  try {
    return await openDevice({ prefer: "webgpu" });
  } catch {
    return null;
  }
})();

if (!gpu) console.warn("tests: no WebGPU adapter; GPU-vs-CPU checks are skipped");

/** The native backend (BLAS through FFI when one loads; its TypeScript fallback otherwise). */
export const native: Device = await openDevice({ prefer: "native" });

/** Every device a kernel is checked on besides the CPU reference. */
export const others: Device[] = gpu ? [gpu, native] : [native];

/** Tolerances: |a − e| ≤ atol + rtol·|e| elementwise. */
export interface Tolerance {
  rtol?: number;
  atol?: number;
}

/** Throws with the worst element when `actual` and `expected` differ beyond tolerance. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: Tolerance = {},
  what = "values",
): void {
  const rtol = tol.rtol ?? 1e-5, atol = tol.atol ?? 1e-5;
  if (actual.length !== expected.length) {
    throw new Error(`${what}: length ${actual.length} vs expected ${expected.length}`);
  }
  let worst = -1, worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!, e = expected[i]!;
    if (Number.isNaN(e) && Number.isNaN(a)) continue;
    if (a === e) continue; // covers ±Infinity
    const excess = Math.abs(a - e) - (atol + rtol * Math.abs(e));
    if (!(excess <= 0) && (worst < 0 || excess > worstExcess || Number.isNaN(excess))) {
      worst = i;
      worstExcess = Number.isNaN(excess) ? Infinity : excess;
    }
  }
  if (worst >= 0) {
    throw new Error(
      `${what}: element ${worst} is ${actual[worst]} but expected ${expected[worst]} ` +
        `(rtol ${rtol}, atol ${atol}, n=${actual.length})`,
    );
  }
}

/** Deterministic pseudo-random host data in [-scale, scale). */
export function hostRandom(n: number, seed = 1, scale = 1): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return out;
}

/**
 * Runs `fn` on the CPU device and (when present) the WebGPU device, and checks that every
 * returned tensor agrees. Returns the CPU results' data for further assertions.
 */
export async function onBoth(
  fn: (dev: Device) => Tensor | Tensor[],
  tol: Tolerance = {},
  what = "result",
): Promise<ArrayLike<number>[]> {
  const asList = (r: Tensor | Tensor[]) => (Array.isArray(r) ? r : [r]);
  const ref = asList(fn(cpu));
  const refData = await Promise.all(ref.map((t) => t.data()));
  for (const dev of others) {
    const got = asList(fn(dev));
    for (let i = 0; i < ref.length; i++) {
      if (got[i]!.shape.join() !== ref[i]!.shape.join()) {
        throw new Error(`${what}[${i}]: shape [${got[i]!.shape}] vs CPU [${ref[i]!.shape}]`);
      }
      assertClose(await got[i]!.data(), refData[i]!, tol, `${what}[${i}] (${dev.kind} vs cpu)`);
      got[i]!.dispose();
    }
  }
  ref.forEach((t) => t.dispose());
  return refData;
}

/**
 * A device's backend, reached without launching its deferred groups (`device.backend` launches
 * them): the first call on a device with pending members launches them, later calls do not.
 */
export function backendOf(d: Device): Backend {
  let b = backends.get(d);
  if (!b) backends.set(d, b = d.backend);
  return b;
}
const backends = new WeakMap<Device, Backend>();

/**
 * Every op name the backend launches while `fn` runs. Pending fused work is emitted before `fn`
 * (so it is not counted) and after it (so what `fn` queued, deferred groups included, is).
 */
export function launchesDuring(d: Device, fn: () => void): string[] {
  d.fusion?.emit();
  const ops: string[] = [];
  const be = backendOf(d) as unknown as { dispatch(k: { op: string }): void };
  const orig = be.dispatch;
  be.dispatch = function (k) {
    ops.push(k.op);
    return orig.call(this, k);
  };
  try {
    fn();
    d.stats();
  } finally {
    be.dispatch = orig;
  }
  return ops;
}
