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
  /**
   * Set when the op has several outputs whose gradients one kernel maps back together: every
   * output carries a node with the same `inputs` and `joint`, and `index` says which output
   * this is. `backward` waits until the last of them is reached and calls `joint.backward` once.
   */
  readonly joint?: JointGrad;
  /** This output's position in `joint.outputs`. */
  readonly index?: number;
}

/** The shared backward of a multi-output op (see {@link GradNode.joint}). */
export interface JointGrad {
  /** The op's outputs, in the order `backward` receives their gradients. */
  readonly outputs: readonly Tensor[];
  /**
   * Given dL/d(output) for each output (null for an output no gradient reached), the gradient
   * for each input.
   */
  readonly backward: (grads: (Tensor | null)[]) => (Tensor | null)[];
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
