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
   * Set on each output of an op with several outputs: `backward` then runs the group's
   * vector-Jacobian product once, with every output's gradient, instead of this node's own.
   */
  readonly group?: { readonly shared: GradGroup; readonly index: number };
}

/** The shared part of the nodes of a multi-output op (see {@link GradNode.group}). */
export interface GradGroup {
  /** Number of outputs. */
  readonly count: number;
  /**
   * Given dL/d(output_i) for each output (null where none reached it), the gradient for each
   * input of the op (null for inputs that need none).
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
