/**
 * The A/B harness of the engine benches that switch one code path in place (bench/projections.ts,
 * bench/attention_views.ts): training steps (forward, backward, AdamW) of one model on one fixed
 * batch, the two paths alternating round by round so a drift in the machine's load hits both,
 * with step times, dispatches per step and, on a second profiled device, kernel ms per op.
 *
 * @module
 */
import { type BackendKind, backward, type Device, openDevice, scope } from "../mod.ts";
import { modelConfig, TransformerLM } from "../src/nn/mod.ts";
import { AdamW } from "../src/train/optimizer.ts";

/**
 * Model cases from `name:S` arguments (`tiny:0.5`; S defaults to 0), or `defaults` when none are
 * given.
 */
export function modelCases(
  args: readonly string[],
  defaults: readonly string[],
): { name: string; sparsity: number }[] {
  return (args.length ? args : defaults).map((s) => {
    const [name, sp] = s.split(":");
    return { name: name!, sparsity: Number(sp ?? 0) };
  });
}

/** One A/B comparison. */
export interface AbOptions<P extends string> {
  /** Backend to open. */
  prefer: BackendKind;
  /** Model size and sparsity. */
  name: string;
  sparsity: number;
  /** Batch shape. */
  batch: number;
  seq: number;
  /** The two paths, and how to switch to one (set before each of its rounds). */
  paths: readonly [P, P];
  use: (path: P) => void;
  /** Rounds (each runs both paths) and steps per path per round. */
  rounds: number;
  steps: number;
  /** Also measure kernel ms per op on a profiled device (timestamp queries: WebGPU only). */
  profile: boolean;
}

/** What an A/B comparison measured, per path. */
export interface AbResult<P extends string> {
  /** The adapter. */
  adapter: string;
  /** Every step's ms (device finished). */
  times: Record<P, number[]>;
  /** Dispatches per step (the last round's). */
  dispatches: Record<P, number>;
  /** Kernel ms per step per op (empty without `profile`). */
  kernels: Partial<Record<P, Record<string, number>>>;
}

/** A model, its optimizer and a fixed batch; `step` runs one training step. */
function setup(dev: Device, o: Pick<AbOptions<string>, "name" | "sparsity" | "batch" | "seq">) {
  const model = new TransformerLM(
    dev,
    modelConfig(o.name, { sparsity: o.sparsity, seqLen: o.seq }),
    1,
  );
  for (const s of model.sites()) s.countEnabled = false;
  const opt = new AdamW(dev, model.namedParameters());
  const ids = (mul: number) =>
    dev.tensor(
      Uint32Array.from({ length: o.batch * o.seq }, (_, i) => (i * mul) % 256),
      [o.batch, o.seq],
      "u32",
    );
  const x = ids(7919), y = ids(104729);
  const step = () =>
    scope(() => {
      backward(model.loss(x, y));
      opt.step(1e-3);
      model.zeroGrad();
    });
  const dispose = () => [x, y, opt, model].forEach((t) => t.dispose());
  return { step, dispose };
}

/**
 * Runs the comparison.
 *
 * @param o What to compare and how long.
 * @returns Step times, dispatches and (with `profile`) kernel ms per op, per path.
 */
export async function abSteps<P extends string>(o: AbOptions<P>): Promise<AbResult<P>> {
  const [a, b] = o.paths;
  const order = (r: number): readonly P[] => (r % 2 ? [b, a] : [a, b]);
  const dev = await openDevice({ prefer: o.prefer });
  const adapter = dev.description;
  const { step, dispose } = setup(dev, o);
  const times = { [a]: [], [b]: [] } as unknown as Record<P, number[]>;
  const dispatches = { [a]: 0, [b]: 0 } as Record<P, number>;
  for (const path of o.paths) {
    o.use(path); // warm-up: pipelines compiled, pools filled
    step();
    await dev.flush();
  }
  for (let r = 0; r < o.rounds; r++) {
    for (const path of order(r)) {
      o.use(path);
      const d0 = dev.stats().dispatches;
      for (let i = 0; i < o.steps; i++) {
        const t0 = performance.now();
        step();
        await dev.flush();
        times[path].push(performance.now() - t0);
      }
      dispatches[path] = (dev.stats().dispatches - d0) / o.steps;
    }
  }
  dispose();
  dev.destroy();
  const kernels: Partial<Record<P, Record<string, number>>> = {};
  if (o.profile && o.prefer === "webgpu") {
    const pdev = await openDevice({ prefer: o.prefer, profile: true });
    const ps = setup(pdev, o);
    for (const path of o.paths) {
      o.use(path);
      ps.step();
      await pdev.flush();
      kernels[path] = {};
    }
    for (let r = 0; r < o.rounds; r++) {
      for (const path of order(r)) {
        o.use(path);
        pdev.backend.resetProfile();
        for (let i = 0; i < o.steps; i++) ps.step();
        await pdev.flush();
        const acc = kernels[path]!;
        for (const [op, k] of pdev.profile()!) {
          acc[op] = (acc[op] ?? 0) + k.ns / 1e6 / (o.steps * o.rounds);
        }
      }
    }
    ps.dispose();
    pdev.destroy();
  }
  return { adapter, times, dispatches, kernels };
}
