/**
 * What the tensor layer knows of autograd: the node a recorded tensor carries and whether
 * recording is on. The recording API (`needsGrad`, `record`, `noGrad`) and `backward` live in
 * src/autograd/, which builds on this; keeping the state here lets `Tensor.reshape` record its
 * gradient without the tensor layer importing the autograd layer above it.
 *
 * @module
 */
import type { Tensor } from "./tensor.ts";

/** How an op's output maps an upstream gradient back to its inputs. */
export interface GradNode {
  /** Op name, for debugging. */
  readonly op: string;
  /** The op's inputs, in the order `backward` returns their gradients. */
  readonly inputs: readonly Tensor[];
  /**
   * The vector-Jacobian product: given dL/d(output), the gradient for each input
   * (null for inputs that need none).
   */
  readonly backward: (grad: Tensor) => (Tensor | null)[];
}

// Depth of nested `noGrad` scopes; recording is on at depth 0.
let pauseDepth = 0;

/**
 * True unless some `noGrad` scope is active.
 *
 * @returns Whether ops should record gradient nodes.
 */
export function recordingEnabled(): boolean {
  return pauseDepth === 0;
}

/** Enters a scope without recording; pair with {@link resumeRecording}. */
export function pauseRecording(): void {
  pauseDepth++;
}

/** Leaves a scope entered with {@link pauseRecording}. */
export function resumeRecording(): void {
  pauseDepth--;
}
