/**
 * Random op sequences run on the CPU twin and on every other device (native, also on 1 and 3
 * threads; WebGPU when an adapter exists) from the same host inputs; every intermediate must
 * agree. Catches ordering bugs (pool reuse, staging writes, uniform ring) that single-op tests miss.
 */
import * as ops from "../mod.ts";
import type { Device, Tensor } from "../mod.ts";
import { assertClose, cpu, hostRandom, others } from "./helpers.ts";
import { threadDevices } from "./native_threads.ts";

type Step = (d: Device, pool: Tensor[], r: () => number) => Tensor | null;

function pick<T>(xs: readonly T[], r: () => number): T {
  return xs[Math.floor(r() * xs.length)]!;
}

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

const sameShape = (pool: Tensor[], t: Tensor) =>
  pool.filter((u) => u.shape.join() === t.shape.join());

const STEPS: Step[] = [
  (_d, p, r) => {
    const a = pick(p, r);
    return ops.add(a, pick(sameShape(p, a), r));
  },
  (_d, p, r) => {
    const a = pick(p, r);
    return ops.mul(a, pick(sameShape(p, a), r));
  },
  (_d, p, r) => ops.tanh(pick(p, r)),
  (_d, p, r) => ops.relu2(pick(p, r)),
  (_d, p, r) => ops.mulScalar(pick(p, r), 0.5),
  (_d, p, r) => {
    const a = pick(p, r);
    return a.rank >= 2 ? ops.transpose(a) : null;
  },
  (_d, p, r) => {
    const a = pick(p, r);
    const b = p.find((t) => t.rank === 2 && a.rank === 2 && t.shape[0] === a.shape[1]);
    return b ? ops.matmul(a, b) : null;
  },
  (_d, p, r) => {
    const a = pick(p, r);
    return a.shape[0]! > 1 ? ops.slice(a, 1) : null;
  },
  (_d, p, r) => {
    const a = pick(p, r);
    return ops.concat([a, a], a.rank - 1);
  },
  (d, p, r) => {
    const a = pick(p, r);
    return ops.add(a, d.ones([a.shape[a.rank - 1]!]));
  },
  (_d, p, r) => {
    const a = pick(p, r);
    p.splice(p.indexOf(a), 1); // dispose mid-sequence: its buffer returns to the pool
    if (p.length === 0) p.push(ops.mulScalar(a, 1));
    a.dispose();
    return null;
  },
];

Deno.test("fuzz: random op sequences agree on the CPU twin and every other device", async () => {
  for (const dev of [...others, ...threadDevices]) {
    for (let seed = 1; seed <= 12; seed++) await fuzzOnce(dev, seed);
  }
});

/** One random sequence of `seed` on the twin and on `dev`; every intermediate must agree. */
async function fuzzOnce(dev: Device, seed: number): Promise<void> {
  const shapes = [[5, 7], [7, 5], [3, 5, 7], [16, 16]];
  const run = (d: Device) => {
    const r = rng(seed);
    const pool: Tensor[] = shapes.map((s, i) =>
      d.tensor(hostRandom(s.reduce((a, b) => a * b, 1), seed * 10 + i), s)
    );
    const trace: Tensor[] = [];
    for (let i = 0; i < 40; i++) {
      const out = pick(STEPS, r)(d, pool, r);
      if (!out) continue;
      if (out.size > 4096) {
        out.dispose();
        continue;
      }
      pool.push(out);
      trace.push(out);
    }
    return trace;
  };
  const a = run(cpu), b = run(dev);
  for (let i = 0; i < a.length; i++) {
    if (a[i]!.disposed || b[i]!.disposed) continue;
    assertClose(
      await b[i]!.data(),
      await a[i]!.data(),
      { rtol: 1e-4, atol: 1e-4 },
      `${dev.kind}: seed ${seed} step ${i}`,
    );
  }
}
