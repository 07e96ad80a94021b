/**
 * `captureStep`: run a step (a training step, a decode step) as ordinary tensor code a few times,
 * record one execution, then replay it. The replay writes the step's inputs, encodes the recorded
 * launches on buffers planned by liveness with pre-built bind groups and pre-written uniforms
 * (WebGPU) or calls the recorded kernels on fixed host buffers (native, cpu), and runs none of the
 * step's JavaScript.
 *
 * A step can be captured when, given the same inputs, it would launch the same kernels with the
 * same parameters on the same buffers every time: state it carries (parameters, optimizer
 * moments, counters) is updated in place by its kernels, and anything that changes per step
 * arrives through an input or a device buffer, never through a uniform or a host readback.
 * `verify` re-records a step and compares, so a violation fails with a CaptureError instead of
 * replaying stale values.
 *
 * @module
 */
import type { Replay, Storage } from "../backend/backend.ts";
import {
  type CapturePlan,
  type CaptureStats,
  compareRecordings,
  planCapture,
  type PlannedInterval,
  StepRecording,
} from "../backend/capture.ts";
import { type DType, dtypeOfArray, type TypedArrayFor } from "../core/dtype.ts";
import { CaptureError, DTypeError, ShapeError } from "../core/errors.ts";
import { type Shape, sizeOf } from "../core/shape.ts";
import type { Device } from "./device.ts";
import { pauseRecording, resumeRecording } from "./grad_node.ts";
import { keep, scope } from "./scope.ts";
import { Tensor } from "./tensor.ts";

/** Shape and dtype of one input of a captured step. */
export interface CaptureInput<D extends DType = DType> {
  /** Dims. */
  readonly shape: Shape;
  /** Element type. */
  readonly dtype: D;
}

/** The inputs of a captured step, by name. */
export type CaptureInputs = Record<string, CaptureInput>;

/** The input tensors a captured function receives. */
export type InputTensors<I extends CaptureInputs> = {
  readonly [K in keyof I]: Tensor<I[K]["dtype"]>;
};

/** Host data for each input of a run. */
export type InputData<I extends CaptureInputs> = {
  readonly [K in keyof I]: TypedArrayFor<I[K]["dtype"]>;
};

/** What a captured function returns: its outputs, by name. */
export type CaptureOutputs = Record<string, Tensor>;

/** Options of {@link captureStep}. */
export interface CaptureOptions {
  /**
   * Runs executed as ordinary code before the one that is recorded (default 1): the first run
   * of a step creates lazily made state (caches, counters) and compiles pipelines, which a
   * replay must find made.
   */
  warmup?: number;
  /** Share buffers between intermediates whose lifetimes do not overlap (default true). */
  plan?: boolean;
  /** Overwrite each intermediate's buffer with NaN after its last use, in every replay (tests). */
  poison?: boolean;
  /**
   * Verify every run after the capture instead of replaying it: run the function again as
   * ordinary code, record it and compare with the capture (slow; for finding what breaks a
   * capture). See {@link CapturedStep.verify}.
   */
  verify?: boolean;
}

/**
 * A captured step. `run(data)` writes the inputs and executes the step (ordinary code during
 * warm-up and for the recorded run, a replay after), returning its outputs: views of the
 * capture's output storages, valid until the next run. Disposing a view is harmless; disposing
 * the capture frees its buffers.
 *
 * @typeParam I The inputs.
 * @typeParam O The outputs.
 */
export class CapturedStep<I extends CaptureInputs, O extends CaptureOutputs> implements Disposable {
  /** The device the step runs on. */
  readonly device: Device;
  /** The input tensors the function reads (written by each run). */
  readonly inputs: InputTensors<I>;
  readonly #specs: I;
  readonly #fn: (inputs: InputTensors<I>) => O;
  readonly #opts: CaptureOptions;
  #runs = 0;
  #held: O | null = null;
  #recording: StepRecording | null = null;
  #buffers: Storage[] = [];
  #intervals: PlannedInterval[] = [];
  #stats: CaptureStats | null = null;
  #replay: Replay | null = null;
  #disposed = false;

  /**
   * Allocates the inputs; nothing runs until {@link CapturedStep.run}. Use {@link captureStep}.
   *
   * @param device The device.
   * @param inputs Shape and dtype of each input.
   * @param fn The step.
   * @param opts Warm-up, planning, poisoning, verification.
   */
  constructor(
    device: Device,
    inputs: I,
    fn: (inputs: InputTensors<I>) => O,
    opts: CaptureOptions = {},
  ) {
    const warmup = opts.warmup ?? 1;
    if (!Number.isInteger(warmup) || warmup < 0) {
      throw new CaptureError("captureStep", `warmup must be an integer ≥ 0, got ${warmup}`);
    }
    this.device = device;
    this.#specs = inputs;
    this.#fn = fn;
    this.#opts = opts;
    const tensors: Record<string, Tensor> = {};
    for (const [name, spec] of Object.entries(inputs)) {
      tensors[name] = keep(device.empty(spec.shape, spec.dtype, `captureStep input ${name}`));
    }
    this.inputs = tensors as InputTensors<I>;
  }

  /** Whether the step has been recorded (later runs replay it). */
  get captured(): boolean {
    return this.#replay !== null;
  }

  /** Commands, launches and buffers of the capture (null before it is recorded). */
  get stats(): CaptureStats | null {
    return this.#stats && { ...this.#stats };
  }

  /** Live range and planned buffer of every intermediate (empty before the capture). */
  get intervals(): readonly PlannedInterval[] {
    return this.#intervals;
  }

  /**
   * Writes the inputs and runs the step once.
   *
   * @param data Host data for every input (its dtype's typed array, of the input's size).
   * @returns The outputs, as views valid until the next run.
   * @throws {CaptureError} When the step cannot be captured (a readback or an async function
   * inside it, state freed inside it) or a bound storage was freed since.
   */
  run(data: InputData<I>): O {
    this.#writeInputs(data);
    if (this.#replay && this.#opts.verify) return this.#verify();
    if (this.#replay) {
      this.#replay.run();
      return this.#views();
    }
    const warmup = this.#opts.warmup ?? 1;
    if (this.#runs < warmup) {
      this.#runs++;
      this.#hold(this.#execute(null));
      return this.#views();
    }
    const rec = new StepRecording();
    this.#hold(null);
    const out = this.#execute(rec);
    let plan: CapturePlan | null = null;
    try {
      plan = planCapture(this.device.backend, rec, this.#opts);
      this.#replay = this.device.backend.compileReplay(plan.commands);
    } catch (e) {
      // The step ran (its state is updated) but cannot be replayed: the next run records again.
      plan?.buffers.forEach((b) => this.device.backend.release(b));
      for (const t of Object.values(out)) t.dispose();
      throw e;
    }
    this.#runs++;
    this.#recording = rec;
    this.#buffers = plan.buffers;
    this.#intervals = plan.intervals;
    this.#stats = plan.stats;
    this.#hold(out);
    return this.#views();
  }

  /**
   * Runs the step as ordinary code once more, records it and compares with the capture: the
   * same kernels, uniform words, workgroup counts, written bytes and buffers. The run counts as
   * a step (its outputs are copied into the capture's). Use it on the second step of a loop to
   * catch a per-step value passed as a uniform (a learning rate, a step count).
   *
   * @param data Host data for every input.
   * @returns The outputs, as after {@link CapturedStep.run}.
   * @throws {CaptureError} Naming the first command that differs, and its op.
   */
  verify(data: InputData<I>): O {
    if (!this.#replay) return this.run(data);
    this.#writeInputs(data);
    return this.#verify();
  }

  #verify(): O {
    const rec = new StepRecording();
    const out = this.#execute(rec);
    const diff = compareRecordings(this.#recording!, rec);
    const held = this.#held!;
    for (const [name, t] of Object.entries(out)) {
      const h = held[name];
      if (!diff && h && h.size === t.size && h.dtype === t.dtype) {
        const bytes = t.storage("verify").bytes;
        this.device.backend.copy(t.storage("verify"), 0, h.storage("verify"), 0, bytes);
      }
      t.dispose();
    }
    if (diff) {
      throw new CaptureError(
        "captureStep.verify",
        `the step no longer matches its capture: ${diff}`,
      );
    }
    return this.#views();
  }

  #writeInputs(data: InputData<I>): void {
    if (this.#disposed) throw new CaptureError("captureStep.run", "the captured step was disposed");
    for (const [name, spec] of Object.entries(this.#specs)) {
      const d = (data as Record<string, ArrayLike<number>>)[name];
      const op = `captureStep.run input ${name}`;
      if (d === undefined) throw new ShapeError(op, "no data given for this input");
      const dt = dtypeOfArray(d);
      if (dt !== spec.dtype) {
        throw new DTypeError(op, `needs ${spec.dtype} data, got ${dt ?? "a non-typed array"}`);
      }
      if (d.length !== sizeOf(spec.shape)) {
        throw ShapeError.mismatch(op, [spec.shape], `has ${d.length} elements for this shape`);
      }
      const storage = this.inputs[name]!.storage(op);
      const view = d as unknown as ArrayBufferView;
      if (this.#replay) this.#replay.write(storage, view);
      else this.device.backend.write(storage, view);
    }
  }

  /** Runs the function as ordinary code (recording it when `rec` is given). */
  #execute(rec: StepRecording | null): O {
    const backend = this.device.backend;
    if (rec) {
      if (backend.recorder) {
        throw new CaptureError("captureStep", "another step is being captured on this device");
      }
      backend.recorder = rec;
    }
    let out: O;
    try {
      // Outputs become detached views inside the scope, so whatever their originals free
      // (a loss's gradient) is freed while the recorder watches.
      out = scope(() => detach(this.#fn(this.inputs)));
      // Elementwise ops still pending in the fusion queue belong to this step: emit them while
      // the recorder watches (after the scope, so intermediates it disposed are not written).
      this.device.fusion?.emit();
    } finally {
      if (rec) backend.recorder = null;
    }
    if ((out as unknown) instanceof Promise) {
      (out as unknown as Promise<unknown>).catch(() => {});
      throw new CaptureError(
        "captureStep",
        (rec?.failure ? `${rec.failure.message}; and ` : "") +
          "the step returned a Promise: a captured step must be synchronous (awaiting the " +
          "device inside it cannot be replayed)",
      );
    }
    for (const t of Object.values(out)) keep(t);
    if (rec?.failure) {
      for (const t of Object.values(out)) t.dispose();
      throw rec.failure;
    }
    return out;
  }

  #hold(out: O | null): void {
    if (this.#held) { for (const t of Object.values(this.#held)) t.dispose(); }
    this.#held = out;
  }

  #views(): O {
    const views: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(this.#held!)) views[name] = t.reshape(t.shape);
    return views as O;
  }

  /** Frees the capture's buffers, outputs and inputs (the state the step updates is not its). */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#replay?.dispose();
    this.#replay = null;
    for (const b of this.#buffers) this.device.backend.release(b);
    this.#buffers = [];
    this.#hold(null);
    for (const t of Object.values(this.inputs)) t.dispose();
    this.#recording = null;
  }

  /** Disposes the capture at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/** Outputs as views without gradient history (the originals are freed; the views keep storage). */
function detach<O extends CaptureOutputs>(out: O): O {
  if (out === null || typeof out !== "object" || out instanceof Promise) return out;
  const views: Record<string, Tensor> = {};
  pauseRecording();
  try {
    for (const [name, t] of Object.entries(out)) {
      if (!(t instanceof Tensor)) {
        throw new CaptureError("captureStep", `output ${name} is not a Tensor`);
      }
      views[name] = t.reshape(t.shape);
    }
  } finally {
    resumeRecording();
  }
  for (const t of Object.values(out)) t.dispose();
  return views as O;
}

/**
 * Captures a step: `fn` receives input tensors and returns its outputs by name; each
 * `run(data)` writes the inputs and runs it. The first `warmup` runs (default 1) execute `fn`
 * as ordinary code, the next one executes it while recording, and every later run replays the
 * recording. Works on every backend; on WebGPU a replay encodes pre-built launches with no
 * allocation and no bind-group creation.
 *
 * @param device The device.
 * @param inputs Shape and dtype of each input, by name.
 * @param fn The step: synchronous, no host readbacks, state updated in place.
 * @param opts Warm-up runs, buffer planning, poisoning, verification.
 * @returns The captured step (dispose it to free its buffers).
 *
 * @example Gradient descent on a least-squares fit, replayed
 * ```ts
 * import { backward, captureStep, matmul, mulScalar, noGrad, openDevice } from "@qsparse/kit";
 * import { square, sub, sumAll } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using w = dev.zeros([2, 1]);
 * w.requiresGrad = true;
 * using step = captureStep(dev, { x: { shape: [4, 2], dtype: "f32" } }, ({ x }) => {
 *   const loss = sumAll(square(sub(matmul(x, w), dev.ones([4, 1]))));
 *   backward(loss);
 *   noGrad(() => {
 *     using next = sub(w, mulScalar(w.grad!, 0.05));
 *     dev.backend.copy(next.storage("sgd"), 0, w.storage("sgd"), 0, 8); // in place
 *   });
 *   w.grad!.dispose();
 *   w.grad = null;
 *   return { loss };
 * });
 * const x = new Float32Array([1, 0, 0, 1, 1, 1, 1, 0]);
 * let first = 0, last = 0;
 * for (let i = 0; i < 20; i++) {
 *   const { loss } = step.run({ x });
 *   last = await loss.item();
 *   loss.dispose();
 *   if (i === 0) first = last;
 * }
 * assert.ok(step.captured && last < first / 5);
 * ```
 */
export function captureStep<I extends CaptureInputs, O extends CaptureOutputs>(
  device: Device,
  inputs: I,
  fn: (inputs: InputTensors<I>) => O,
  opts: CaptureOptions = {},
): CapturedStep<I, O> {
  return new CapturedStep(device, inputs, fn, opts);
}
