/**
 * Gradient checks.
 *
 * `gradCheck` compares the gradients `backward` computes for `L = sumAll(fn(inputs) · W)`
 * (W a fixed random tensor, so every output element matters with a different weight) against
 * central finite differences of the same L. The forward runs in f32 on the CPU backend, but L is
 * summed in f64 on the host from the read-back outputs, so the only f32 noise in a difference
 * quotient is the outputs' own rounding (≈ 6e-8·|y|/eps). The step actually taken is the
 * difference of the two f32-rounded inputs, not the nominal eps.
 *
 * `gradOnBoth` runs forward + backward on the CPU and WebGPU devices and compares the gradients
 * (GPU backward against CPU backward).
 */
import {
  backward,
  type Device,
  type DType,
  mul,
  noGrad,
  scope,
  sumAll,
  type Tensor,
} from "../mod.ts";
import { assertClose, cpu, hostRandom, others, type Tolerance } from "./helpers.ts";

/** One input of the function under test: host data, shape and dtype. */
export interface GradInput {
  /** Host values (row-major). */
  data: ArrayLike<number>;
  /** Dims. */
  shape: number[];
  /** Element type (default f32). Integer inputs (ids, targets) are never differentiated. */
  dtype?: DType;
  /** Whether to differentiate this input (default: true for floats). */
  grad?: boolean;
}

/** Options for {@link gradCheck}. */
export interface GradCheckOptions {
  /** Finite-difference step (default 1e-2; f32 needs 1e-3..1e-2). */
  eps?: number;
  /** Relative tolerance against the finite difference (default 1e-2). */
  rtol?: number;
  /** Absolute tolerance (default 1e-3). */
  atol?: number;
  /** Seed of the output weights W. */
  seed?: number;
  /** Most elements checked per input (a deterministic sample beyond this; default 48). */
  maxPoints?: number;
  /** Device (default the CPU backend). */
  device?: Device;
  /** Name for messages. */
  what?: string;
}

function wantsGrad(inp: GradInput): boolean {
  const dt = inp.dtype ?? "f32";
  return (inp.grad ?? true) && (dt === "f32" || dt === "f16");
}

function build(
  dev: Device,
  inputs: GradInput[],
  values: ArrayLike<number>[],
  leaves: boolean,
): Tensor[] {
  return inputs.map((inp, i) => {
    const t = dev.tensor(values[i]!, inp.shape, inp.dtype ?? "f32");
    if (leaves && wantsGrad(inp)) t.requiresGrad = true;
    return t;
  });
}

/** L = Σ y·w in f64 on the host, with recording off. */
async function lossAt(
  dev: Device,
  fn: (xs: Tensor[]) => Tensor,
  inputs: GradInput[],
  values: ArrayLike<number>[],
  w: Float32Array,
): Promise<number> {
  const y = noGrad(() => scope(() => fn(build(dev, inputs, values, false))));
  const yd = await y.data();
  y.dispose();
  let l = 0;
  for (let i = 0; i < yd.length; i++) l += yd[i]! * w[i]!;
  return l;
}

/** Forward + backward of `sumAll(fn(xs) · W)`; returns the outputs and each input's gradient. */
export async function gradsOf(
  dev: Device,
  fn: (xs: Tensor[]) => Tensor,
  inputs: GradInput[],
  seed = 7,
): Promise<
  { y: Float32Array; shape: readonly number[]; w: Float32Array; grads: (Float32Array | null)[] }
> {
  const ts = build(dev, inputs, inputs.map((x) => x.data), true);
  let w: Float32Array = new Float32Array(0);
  let shape: readonly number[] = [];
  const y = scope(() => {
    const y = fn(ts);
    shape = y.shape;
    w = hostRandom(y.size, seed);
    const loss = sumAll(mul(y, dev.tensor(w, y.shape, y.dtype)));
    backward(loss);
    return y;
  });
  const yd = Float32Array.from(await y.data());
  y.dispose();
  const grads: (Float32Array | null)[] = [];
  for (let i = 0; i < ts.length; i++) {
    const t = ts[i]!;
    if (!wantsGrad(inputs[i]!)) grads.push(null);
    else grads.push(t.grad ? Float32Array.from(await t.grad.data()) : new Float32Array(t.size));
    t.dispose();
  }
  return { y: yd, shape, w, grads };
}

/**
 * Checks `backward` against central finite differences on the CPU backend.
 *
 * @param fn The op under test, from input tensors to one output tensor.
 * @param inputs Host inputs.
 * @param opts Step, tolerances, sampling.
 */
export async function gradCheck(
  fn: (xs: Tensor[]) => Tensor,
  inputs: GradInput[],
  opts: GradCheckOptions = {},
): Promise<void> {
  const dev = opts.device ?? cpu;
  const eps = opts.eps ?? 1e-2, rtol = opts.rtol ?? 1e-2, atol = opts.atol ?? 1e-3;
  const maxPoints = opts.maxPoints ?? 48;
  const what = opts.what ?? "gradCheck";
  const { w, grads } = await gradsOf(dev, fn, inputs, opts.seed ?? 7);
  const base = inputs.map((x) => Float32Array.from(x.data));
  for (let k = 0; k < inputs.length; k++) {
    const g = grads[k];
    if (!g) continue;
    const n = base[k]!.length;
    let points = [...Array(n).keys()];
    if (n > maxPoints) {
      const r = hostRandom(maxPoints, 1234 + k);
      points = [0, n - 1, ...Array.from(r, (v) => Math.floor(((v + 1) / 2) * n) % n)];
    }
    for (const i of points) {
      const orig = base[k]![i]!;
      const vals = base.map((b) => b);
      const plus = Float32Array.from(base[k]!), minus = Float32Array.from(base[k]!);
      plus[i] = orig + eps;
      minus[i] = orig - eps;
      const h = plus[i]! - minus[i]!;
      vals[k] = plus;
      const lp = await lossAt(dev, fn, inputs, vals, w);
      vals[k] = minus;
      const lm = await lossAt(dev, fn, inputs, vals, w);
      const fd = (lp - lm) / h;
      const a = g[i]!;
      if (!(Math.abs(a - fd) <= atol + rtol * Math.abs(fd))) {
        throw new Error(
          `${what}: d/d input${k}[${i}] is ${a} by backward but ${fd} by finite differences ` +
            `(eps ${eps}, rtol ${rtol}, atol ${atol})`,
        );
      }
    }
  }
}

/**
 * Runs forward + backward on the CPU twin and on every other device (native, and WebGPU when an
 * adapter exists) and compares outputs and gradients.
 *
 * @param fn The op under test.
 * @param inputs Host inputs.
 * @param tol Tolerance of the comparison.
 * @param what Name for messages.
 */
export async function gradOnBoth(
  fn: (xs: Tensor[]) => Tensor,
  inputs: GradInput[],
  tol: Tolerance = { rtol: 1e-4, atol: 1e-5 },
  what = "grad",
): Promise<void> {
  const ref = await gradsOf(cpu, fn, inputs);
  for (const dev of others) {
    const got = await gradsOf(dev, fn, inputs);
    assertClose(got.y, ref.y, tol, `${what}: forward (${dev.kind} vs cpu)`);
    ref.grads.forEach((g, i) => {
      if (g) assertClose(got.grads[i]!, g, tol, `${what}: grad of input ${i} (${dev.kind} vs cpu)`);
    });
  }
}
