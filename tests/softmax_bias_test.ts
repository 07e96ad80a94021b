/**
 * `softmax(x, { bias })`: an additive mask fused into the softmax's launch (decoding's attention
 * mask). The values of `softmax(add(x, bias))` — bit for bit on the host backends, within f32
 * tolerance on WebGPU — for every broadcast it accepts, with `-∞` entries masked exactly, the
 * causal mask on top, x's gradient unchanged, and typed errors for the rest.
 */
import assert from "node:assert/strict";
import {
  add,
  backward,
  cast,
  type Device,
  DTypeError,
  mul,
  scope,
  ShapeError,
  softmax,
  sumAll,
  type Tensor,
  ValueError,
} from "../mod.ts";
import { assertClose, cpu, gpu, hostRandom, launchesDuring, native } from "./helpers.ts";

/** x's shape, the bias's shape. */
const CASES: [number[], number[]][] = [
  [[2, 3, 4, 9], [2, 1, 4, 9]], // decoding: [B, 1, T, Tmax] against [B, H, T, Tmax]
  [[2, 3, 4, 9], [2, 3, 4, 9]], // no broadcast
  [[5, 4, 7], [1, 1, 7]], // one bias row for every row
  [[3, 2, 300], [3, 1, 300]], // long rows
  [[6, 8], [1, 8]],
];

async function pair(d: Device, xs: number[], bs: number[], causal = false) {
  return await scope(async () => {
    const n = xs.reduce((a, b) => a * b, 1), m = bs.reduce((a, b) => a * b, 1);
    const mask = hostRandom(m, 3).map((v) => (v > 0.6 ? -Infinity : 2 * v));
    const x = d.tensor(hostRandom(n, 1, 3), xs), b = d.tensor(mask, bs);
    return [
      [...await softmax(x, { bias: b, causal }).data()],
      [...await softmax(add(x, b), { causal }).data()],
    ];
  });
}

Deno.test("softmax bias: the values of softmax(add(x, bias)) for each broadcast", async () => {
  for (const [xs, bs] of CASES) {
    for (const causal of [false, true]) {
      if (causal && xs.at(-1) !== xs.at(-2)) continue;
      const what = `[${xs}] + [${bs}]${causal ? " causal" : ""}`;
      for (const d of [cpu, native]) {
        const [fused, plain] = await pair(d, xs, bs, causal);
        assert.deepEqual(fused, plain, `${what} on ${d.kind}`);
      }
      if (gpu) {
        const [fused, plain] = await pair(gpu, xs, bs, causal);
        assertClose(fused!, plain!, { rtol: 1e-6, atol: 1e-7 }, `${what} on webgpu`);
        const [ref] = await pair(cpu, xs, bs, causal);
        assertClose(fused!, ref!, { rtol: 1e-5, atol: 1e-6 }, `${what}: webgpu vs cpu`);
      }
    }
  }
  // Square causal case with a mask: [2, 2, 5, 5] + [2, 1, 5, 5].
  const [f, p] = await pair(cpu, [2, 2, 5, 5], [2, 1, 5, 5], true);
  assert.deepEqual(f, p);
});

Deno.test("softmax bias: masked keys get probability 0, and it is one launch", async () => {
  for (const d of [cpu, native, ...(gpu ? [gpu] : [])]) {
    const x = d.tensor(hostRandom(2 * 3 * 4, 5), [2, 3, 4]);
    const M = -Infinity;
    const b = d.tensor([0, M, 0, M, 0, 0, M, M], [2, 1, 4]);
    let y: Tensor | null = null;
    const ops = launchesDuring(d, () => (y = softmax(x, { bias: b })));
    assert.deepEqual(ops, ["softmax"], d.kind);
    const v = await y!.data();
    for (let r = 0; r < 6; r++) {
      const masked = r < 3 ? [1, 3] : [2, 3];
      for (const j of masked) assert.equal(v[r * 4 + j], 0, `${d.kind} row ${r} col ${j}`);
      const s = [0, 1, 2, 3].reduce((a, j) => a + v[r * 4 + j]!, 0);
      assert.ok(Math.abs(s - 1) < 1e-6, `${d.kind} row ${r} sums to ${s}`);
    }
    for (const t of [x, b, y!]) t.dispose();
  }
});

Deno.test("softmax bias: x's gradient is the unfused one's; f16 storage", async () => {
  const grad = async (d: Device, fused: boolean) => {
    const x = d.tensor(hostRandom(2 * 3 * 6, 7, 2), [2, 3, 6]);
    const b = d.tensor(hostRandom(2 * 6, 8), [2, 1, 6]);
    const g = d.tensor(hostRandom(2 * 3 * 6, 9), [2, 3, 6]);
    x.requiresGrad = true;
    scope(() => backward(sumAll(mul(fused ? softmax(x, { bias: b }) : softmax(add(x, b)), g))));
    const out = [...await x.grad!.data()];
    for (const t of [x, b, g]) t.dispose();
    return out;
  };
  for (const d of [cpu, native]) {
    assert.deepEqual(await grad(d, true), await grad(d, false), d.kind);
  }
  if (gpu) assertClose(await grad(gpu, true), await grad(cpu, false), { rtol: 1e-5, atol: 1e-6 });
  for (const d of [cpu, ...(gpu ? [gpu] : [])]) {
    const [f, p] = await scope(async () => {
      const x = cast(d.tensor(hostRandom(24, 10, 3), [2, 3, 4]), "f16");
      const b = cast(d.tensor(hostRandom(8, 11), [2, 1, 4]), "f16");
      return [
        [...await cast(softmax(x, { bias: b }), "f32").data()],
        [...await cast(softmax(add(x, b)), "f32").data()],
      ];
    });
    assertClose(f!, p!, { rtol: 2e-3, atol: 2e-3 }, `f16 on ${d.kind}`);
  }
});

Deno.test("softmax bias: bad biases name the op and the shapes", () => {
  using x = cpu.tensor(hostRandom(2 * 3 * 4 * 5, 1), [2, 3, 4, 5]);
  const shape = (s: number[]) => cpu.tensor(new Float32Array(s.reduce((a, b) => a * b, 1)), s);
  const isShape = (e: Error) => e instanceof ShapeError && /softmax/.test(e.message);
  using gaps = shape([1, 3, 1, 5]); // broadcast over two blocks
  assert.throws(() => softmax(x, { bias: gaps }), isShape);
  using wrongLast = shape([2, 1, 4, 4]);
  assert.throws(() => softmax(x, { bias: wrongLast }), isShape);
  using wrongRank = shape([4, 5]);
  assert.throws(() => softmax(x, { bias: wrongRank }), isShape);
  using notOne = shape([2, 2, 4, 5]);
  assert.throws(() => softmax(x, { bias: notOne }), isShape);
  using half = cast(shape([2, 1, 4, 5]), "f16");
  assert.throws(() => softmax(x, { bias: half }), (e: Error) => e instanceof DTypeError);
  using learned = shape([2, 1, 4, 5]);
  learned.requiresGrad = true;
  assert.throws(() => softmax(x, { bias: learned }), (e: Error) => e instanceof ValueError);
});
