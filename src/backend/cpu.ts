/**
 * The CPU backend: storage is host memory, and every dispatch runs the kernel's CPU twin
 * immediately. It is the reference every WebGPU and native kernel is tested against.
 *
 * @module
 */
import type { Backend, Dispatch } from "./backend.ts";
import { HostBackend } from "./host.ts";

/** Backend that runs CPU twins on host memory. */
export class CpuBackend extends HostBackend implements Backend {
  readonly kind = "cpu" as const;
  readonly description: string = "cpu (TypeScript reference kernels)";
  protected readonly name = "CPU";

  protected override kernel(d: Dispatch, buffers: ArrayBuffer[]): () => void {
    return () => d.cpu(buffers);
  }
}
