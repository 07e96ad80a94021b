/**
 * `addRmsNorm` (a residual add and the RMSNorm after it, one launch each way): the separate ops'
 * values and gradients bit for bit on the host backends and within f32 tolerance on WebGPU,
 * finite differences through either output, fewer launches, typed errors, and a model whose
 * forward chains it giving the unfused block's numbers.
 */
import assert from "node:assert/strict";
import {
  add,
  addRmsNorm,
  backward,
  cast,
  type Device,
  DTypeError,
  embedding,
  mul,
  mulScalar,
  rmsNorm,
  rmsNormStream,
  scope,
  ShapeError,
  sumAll,
  type Tensor,
} from "../mod.ts";
import { modelConfig, TransformerLM } from "../src/nn/mod.ts";
import { assertClose, cpu, gpu, hostRandom, launchesDuring, native, others } from "./helpers.ts";
import { gradCheck, gradOnBoth } from "./gradcheck.ts";

const SHAPES = [[1, 1], [3, 7], [5, 255], [2, 3, 64], [300, 6], [2, 8192], [0, 4]];

/** The fused op's sum and norm against `add` then `rmsNorm`, on one device. */
async function both(d: Device, shape: number[], seed: number, weight: boolean) {
  const n = shape.reduce((a, b) => a * b, 1), cols = shape[shape.length - 1]!;
  return await scope(async () => {
    const x = d.tensor(hostRandom(n, seed, 3), shape), r = d.tensor(hostRandom(n, seed + 1), shape);
    const w = weight ? d.tensor(hostRandom(cols, seed + 2, 2), [cols]) : null;
    const [s, y] = addRmsNorm(x, r, w);
    const s2 = add(x, r), y2 = rmsNorm(s2, w);
    return [await s.data(), await y.data(), await s2.data(), await y2.data()];
  });
}

Deno.test("addRmsNorm: the sum and the norm of add then rmsNorm (bit for bit on the host)", async () => {
  for (const shape of SHAPES) {
    for (const weight of [true, false]) {
      const what = `[${shape}] ${weight ? "with" : "without"} weight`;
      const [s, y, s2, y2] = await both(cpu, shape, shape.length + shape[0]!, weight);
      assert.deepEqual([...s!], [...s2!], `${what}: cpu sum`);
      assert.deepEqual([...y!], [...y2!], `${what}: cpu norm`);
      for (const d of others) {
        const got = await both(d, shape, shape.length + shape[0]!, weight);
        const tol = d.kind === "native" ? { rtol: 0, atol: 0 } : { rtol: 1e-5, atol: 1e-5 };
        assertClose(got[0]!, s!, tol, `${what}: ${d.kind} sum vs cpu`);
        assertClose(got[1]!, y!, tol, `${what}: ${d.kind} norm vs cpu`);
      }
    }
  }
});

Deno.test("addRmsNorm: f16 storage rounds the sum before normalising it", async () => {
  for (const d of [cpu, ...(gpu ? [gpu] : [])]) {
    const [got, want] = await scope(async () => {
      const x = cast(d.tensor(hostRandom(4 * 33, 5, 3), [4, 33]), "f16");
      const r = cast(d.tensor(hostRandom(4 * 33, 6), [4, 33]), "f16");
      const w = cast(d.tensor(hostRandom(33, 7, 2), [33]), "f16");
      const [s, y] = addRmsNorm(x, r, w);
      const y2 = rmsNorm(add(x, r), w);
      return [
        [...await cast(s, "f32").data(), ...await cast(y, "f32").data()],
        [...await cast(add(x, r), "f32").data(), ...await cast(y2, "f32").data()],
      ];
    });
    assertClose(got, want, { rtol: 2e-3, atol: 2e-3 }, d.kind);
  }
});

/** Both outputs feed the loss, so the backward sees both gradients (and the weight's). */
const through = ([x, r, w]: Tensor[]) => {
  const [s, y] = addRmsNorm(x!, r!, w ?? null, 1e-5);
  return add(mulScalar(s, 0.3), y);
};

Deno.test("addRmsNorm: gradients through either output match finite differences and every backend", async (t) => {
  const x = { data: hostRandom(4 * 6, 11, 2), shape: [4, 6] };
  const r = { data: hostRandom(4 * 6, 12, 2), shape: [4, 6] };
  const w = { data: hostRandom(6, 13, 2), shape: [6] };
  const cases: [string, (xs: Tensor[]) => Tensor, typeof x[]][] = [
    ["both outputs", through, [x, r, w]],
    ["both outputs, no weight", ([a, b]) => through([a!, b!]), [x, r]],
    ["only the norm", ([a, b, c]) => addRmsNorm(a!, b!, c!, 1e-5)[1], [x, r, w]],
    ["only the sum", ([a, b, c]) => addRmsNorm(a!, b!, c!, 1e-5)[0], [x, r, w]],
    ["res and weight only", through, [{ ...x, grad: false } as typeof x, r, w]],
    ["x only", through, [x, { ...r, grad: false } as typeof r, { ...w, grad: false } as typeof w]],
    ["weight only", through, [
      { ...x, grad: false } as typeof x,
      { ...r, grad: false } as typeof r,
      w,
    ]],
  ];
  for (const [name, fn, inputs] of cases) {
    await t.step(name, async () => {
      await gradCheck(fn, inputs, { what: name });
      await gradOnBoth(fn, inputs, { rtol: 1e-4, atol: 1e-5 }, name);
    });
  }
});

Deno.test("addRmsNorm: gradients equal add then rmsNorm's, bit for bit on the host", async () => {
  const rows = 70, cols = 33;
  const grads = async (d: Device, fused: boolean) => {
    const x = d.tensor(hostRandom(rows * cols, 1, 2), [rows, cols]);
    const r = d.tensor(hostRandom(rows * cols, 2, 2), [rows, cols]);
    const w = d.tensor(hostRandom(cols, 3, 2), [cols]);
    for (const t of [x, r, w]) t.requiresGrad = true;
    const g1 = d.tensor(hostRandom(rows * cols, 4), [rows, cols]);
    const g2 = d.tensor(hostRandom(rows * cols, 5), [rows, cols]);
    scope(() => {
      const [s, y] = fused ? addRmsNorm(x, r, w) : (() => {
        const s = add(x, r);
        return [s, rmsNorm(s, w)];
      })();
      backward(add(sumAll(mul(s, g1)), sumAll(mul(y, g2))));
    });
    const out = [await x.grad!.data(), await r.grad!.data(), await w.grad!.data()];
    for (const t of [x, r, w, g1, g2]) t.dispose();
    return out.map((a) => [...a]);
  };
  for (const d of [cpu, native]) {
    assert.deepEqual(await grads(d, true), await grads(d, false), d.kind);
  }
  if (gpu) {
    const [a, b] = [await grads(gpu, true), await grads(gpu, false)];
    a.forEach((g, i) => assertClose(g, b[i]!, { rtol: 1e-5, atol: 1e-6 }, `webgpu grad ${i}`));
  }
});

Deno.test("addRmsNorm: one launch forward, one for x's gradient; fewer than add then rmsNorm", () => {
  for (const d of [cpu, ...others]) {
    const launches = (fused: boolean) => {
      const x = d.tensor(hostRandom(40 * 12, 3), [40, 12]);
      const r = d.tensor(hostRandom(40 * 12, 4), [40, 12]);
      const w = d.tensor(hostRandom(12, 5), [12]);
      for (const t of [x, r, w]) t.requiresGrad = true;
      const ops = launchesDuring(d, () =>
        scope(() => {
          const [s, y] = fused ? addRmsNorm(x, r, w) : (() => {
            const s = add(x, r);
            return [s, rmsNorm(s, w)];
          })();
          backward(add(sumAll(s), sumAll(mulScalar(y, 2))));
        }));
      for (const t of [x, r, w]) t.dispose();
      return ops;
    };
    const fused = launches(true), plain = launches(false);
    const count = (ops: string[], op: string) => ops.filter((o) => o === op).length;
    assert.equal(count(fused, "addRmsNorm"), 1, fused.join());
    assert.equal(count(fused, "addRmsNormBackward"), 1, fused.join());
    assert.equal(count(fused, "rmsNorm") + count(fused, "rmsNormBackward"), 0, fused.join());
    assert.ok(fused.length < plain.length, `${d.kind}: ${fused.join()} vs ${plain.join()}`);
  }
});

Deno.test("addRmsNorm: bad input names the op and the shapes", () => {
  const x = cpu.tensor(hostRandom(12, 1), [3, 4]);
  assert.throws(
    () => addRmsNorm(x, cpu.tensor(hostRandom(8, 2), [2, 4]), null),
    (e: Error) =>
      e instanceof ShapeError && /addRmsNorm/.test(e.message) && /\[3, ?4\]/.test(e.message),
  );
  assert.throws(
    () => addRmsNorm(x, cast(cpu.tensor(hostRandom(12, 2), [3, 4]), "f16"), null),
    (e: Error) => e instanceof DTypeError && /addRmsNorm/.test(e.message),
  );
  assert.throws(
    () => addRmsNorm(x, x, cpu.tensor([1, 2, 3], [3])),
    (e: Error) => e instanceof ShapeError && /addRmsNorm/.test(e.message),
  );
  x.dispose();
});

Deno.test("a model chaining addRmsNorm gives the logits of its blocks run one by one", async () => {
  // TransformerLM.forward chains the fused op; Block.forward then the final norm is the same
  // model written with one fused add per block. Both agree with each other bit for bit on the
  // host backends.
  for (const d of [cpu, native]) {
    const m = new TransformerLM(d, modelConfig("tiny", { sparsity: 0.5, seqLen: 8 }), 3);
    const ids = d.tensor(Uint32Array.from({ length: 16 }, (_, i) => (i * 37) % 256), [2, 8], "u32");
    const chained = await scope(async () => [...await m.forward(ids).data()]);
    const blockwise = await scope(async () => {
      let x = embedding(m.embed, ids);
      for (const layer of m.layers) x = layer.forward(x);
      return [...await m.lmHead.forward(m.norm.forward(x)).data()];
    });
    assert.deepEqual(chained, blockwise, d.kind);
    ids.dispose();
    m.dispose();
  }
});

/** x through `rmsNormStream`'s two outputs, as a model's first block uses them. */
const streamed = ([x, w]: Tensor[]) => {
  const [s, y] = rmsNormStream(x!, w ?? null, 1e-5);
  return add(mulScalar(s, 0.3), mul(y, y));
};

Deno.test("rmsNormStream: gradients match finite differences, every backend, and rmsNorm plus an add bit for bit on the host", async (t) => {
  const x = { data: hostRandom(4 * 6, 21, 2), shape: [4, 6] };
  const w = { data: hostRandom(6, 22, 2), shape: [6] };
  const cases: [string, (xs: Tensor[]) => Tensor, typeof x[]][] = [
    ["both outputs", streamed, [x, w]],
    ["no weight", ([a]) => streamed([a!]), [x]],
    ["only the norm", ([a, b]) => rmsNormStream(a!, b!, 1e-5)[1], [x, w]],
    ["only the stream", ([a, b]) => mulScalar(rmsNormStream(a!, b!, 1e-5)[0], 2), [x, w]],
    ["weight only", streamed, [{ ...x, grad: false } as typeof x, w]],
  ];
  for (const [name, fn, inputs] of cases) {
    await t.step(name, async () => {
      await gradCheck(fn, inputs, { what: name });
      await gradOnBoth(fn, inputs, { rtol: 1e-4, atol: 1e-5 }, name);
    });
  }
  const rows = 70, cols = 33;
  const grads = async (d: Device, fused: boolean) => {
    const x = d.tensor(hostRandom(rows * cols, 1, 2), [rows, cols]);
    const w = d.tensor(hostRandom(cols, 3, 2), [cols]);
    for (const t of [x, w]) t.requiresGrad = true;
    const g1 = d.tensor(hostRandom(rows * cols, 4), [rows, cols]);
    const g2 = d.tensor(hostRandom(rows * cols, 5), [rows, cols]);
    const ops = launchesDuring(d, () =>
      scope(() => {
        const [s, y] = fused ? rmsNormStream(x, w) : [x, rmsNorm(x, w)];
        backward(add(sumAll(mul(s, g1)), sumAll(mul(y, g2))));
      }));
    const out = [await x.grad!.data(), await w.grad!.data()];
    for (const t of [x, w, g1, g2]) t.dispose();
    return { grads: out.map((a) => [...a]), ops };
  };
  for (const d of [cpu, ...others]) {
    const a = await grads(d, true), b = await grads(d, false);
    if (d.kind === "webgpu") {
      a.grads.forEach((g, i) =>
        assertClose(g, b.grads[i]!, { rtol: 1e-5, atol: 1e-6 }, `grad ${i}`)
      );
    } else assert.deepEqual(a.grads, b.grads, d.kind);
    // The two gradients meet inside the norm's backward: one add fewer.
    assert.equal(a.ops.length, b.ops.length - 1, `${d.kind}: ${a.ops} vs ${b.ops}`);
    assert.ok(a.ops.includes("addRmsNormBackward"), `${a.ops}`);
  }
});
