/**
 * Shared by the fusion tests (tests/fusion_test.ts, tests/fused_reduce_test.ts): a fused CPU
 * device and an unfused WebGPU one to compare against, a backend that records its dispatches,
 * and the comparison of one computation across fused and unfused devices.
 */
import assert from "node:assert/strict";
import { type Device, openDevice, scope, type Tensor } from "../mod.ts";
import type { Dispatch } from "../src/backend/backend.ts";
import { CpuBackend } from "../src/backend/cpu.ts";
import { assertClose, cpu, gpu, type Tolerance } from "./helpers.ts";

/** CPU twins, fused. */
export const cpuFused: Device = await openDevice({ prefer: "cpu", fuse: true });
/** WebGPU without fusion: the eager kernels, to compare the fused WebGPU path with. */
export const gpuEager: Device | null = gpu
  ? await openDevice({ prefer: "webgpu", fuse: false })
  : null;

/** A CPU backend that keeps every dispatch it runs, to see what a fused kernel binds. */
export class RecordingBackend extends CpuBackend {
  /** Every dispatch so far, in order. */
  readonly seen: Dispatch[] = [];
  override dispatch(d: Dispatch): void {
    this.seen.push(d);
    super.dispatch(d);
  }
}

/** Runs `build` on a device from the same host data and reads every returned tensor. */
export async function evaluate(
  dev: Device,
  build: (dev: Device) => Tensor[],
): Promise<number[][]> {
  const outs = scope(() => build(dev));
  const values = [];
  for (const t of outs) values.push([...await t.data()]);
  for (const t of outs) t.dispose();
  return values;
}

/** Fused CPU equals unfused CPU bit for bit; WebGPU fused agrees with both within `tol`. */
export async function compareAll(
  what: string,
  build: (dev: Device) => Tensor[],
  tol: Tolerance = { rtol: 2e-5, atol: 1e-5 },
): Promise<void> {
  const ref = await evaluate(cpu, build);
  assert.deepEqual(await evaluate(cpuFused, build), ref, `${what}: fused CPU vs unfused CPU`);
  if (!gpu || !gpuEager) return;
  assert.ok(gpu.fusion, "WebGPU fuses by default");
  const fused = await evaluate(gpu, build), eager = await evaluate(gpuEager, build);
  fused.forEach((v, i) => {
    assertClose(v, ref[i]!, tol, `${what}: output ${i} WebGPU fused vs CPU`);
    assertClose(v, eager[i]!, tol, `${what}: output ${i} WebGPU fused vs WebGPU eager`);
  });
}
