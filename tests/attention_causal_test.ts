/**
 * `attentionCausal` (kernels/attention_causal.ts): forward and gradients of the WebGPU kernels
 * against their CPU twins, against the strided products + causal softmax it replaces, against
 * finite differences; causality; the launch counts; typed errors; and a training step of the
 * attention block with and without it.
 */
import assert from "node:assert/strict";
import {
  backward,
  type Device,
  DTypeError,
  matmulStrided,
  scope,
  ShapeError,
  softmax,
  type Tensor,
} from "../mod.ts";
import { attentionCausal } from "../src/ops/attention_causal.ts";
import {
  attentionBackwardDispatches,
  attentionBackwardKVCpu,
  attentionBackwardQCpu,
  attentionForwardCpu,
  attentionForwardDispatch,
} from "../kernels/attention_causal.ts";
import { Attention, fusedAttention, modelConfig } from "../src/nn/mod.ts";
import { assertClose, cpu, gpu, hostRandom, launchesDuring } from "./helpers.ts";
import { gradCheck, gradsOf } from "./gradcheck.ts";

const HEADS = [0, 2, 1, 3];

/** The unfused path of Attention.forward: strided products around the causal softmax. */
function reference(q: Tensor<"f32">, k: Tensor<"f32">, v: Tensor<"f32">, alpha: number) {
  const scores = matmulStrided(q, k, { transposeB: true, dimsA: HEADS, dimsB: HEADS, alpha });
  const p = softmax(scores, { causal: true });
  return matmulStrided(p, v, { dimsB: HEADS, dimsOut: HEADS });
}

const CASES = [
  { what: "tiny's heads", shape: [2, 32, 2, 32] },
  { what: "one head, hd 4", shape: [1, 5, 1, 4] },
  { what: "T not a multiple of the workgroup", shape: [3, 67, 2, 8] },
  { what: "hd 64", shape: [1, 16, 4, 64] },
  { what: "hd 128", shape: [1, 9, 2, 128] },
  { what: "one token", shape: [2, 1, 2, 8] },
];

function inputs(shape: number[]) {
  const n = shape.reduce((a, b) => a * b, 1);
  return [1, 2, 3].map((s) => ({ data: hostRandom(n, 10 * s + n), shape }));
}

for (const c of CASES) {
  Deno.test(`attentionCausal (${c.what}): forward and gradients, WebGPU vs twin vs the products`, async () => {
    const ins = inputs(c.shape);
    const alpha = 1 / Math.sqrt(c.shape[3]!);
    const fused = (xs: Tensor[]) =>
      attentionCausal(
        xs[0] as Tensor<"f32">,
        xs[1] as Tensor<"f32">,
        xs[2] as Tensor<"f32">,
        alpha,
      );
    const unfused = (xs: Tensor[]) =>
      reference(xs[0] as Tensor<"f32">, xs[1] as Tensor<"f32">, xs[2] as Tensor<"f32">, alpha);
    // The twin against the unfused path on the CPU backend (f64 twins on both sides).
    const ref = await gradsOf(cpu, unfused, ins);
    const twin = await gradsOf(cpu, fused, ins);
    const tol = { rtol: 1e-4, atol: 1e-5 };
    assertClose(twin.y, ref.y, tol, `${c.what}: twin forward vs products`);
    ref.grads.forEach((g, i) => assertClose(twin.grads[i]!, g!, tol, `${c.what}: twin grad ${i}`));
    if (!gpu) return;
    const got = await gradsOf(gpu, fused, ins);
    assertClose(got.y, twin.y, tol, `${c.what}: WebGPU forward vs twin`);
    twin.grads.forEach((g, i) =>
      assertClose(got.grads[i]!, g!, tol, `${c.what}: WebGPU grad ${i}`)
    );
  });
}

Deno.test({
  name: "attentionCausal kernels: every rows-per-invocation block against the twins",
  ignore: gpu === null,
  async fn() {
    const dev = gpu!;
    const [b, t, h, hd] = [2, 13, 2, 16], n = b * t * h * hd, np = b * h * t * t;
    const [hq, hk, hv, hg] = [1, 2, 3, 4].map((s) => Float32Array.from(hostRandom(n, 40 + s)));
    // The twins, on host buffers.
    const ref = { out: new Float32Array(n), dq: new Float32Array(n), dk: new Float32Array(n) };
    const rdv = new Float32Array(n), rp = new Float32Array(np), rds = new Float32Array(np);
    const shape = { b, t, h, hd, alpha: 0.3, rows: 1 };
    attentionForwardCpu(shape, hq.buffer, hk.buffer, hv.buffer, rp.buffer, ref.out.buffer);
    attentionBackwardQCpu(
      shape,
      rp.buffer,
      hk.buffer,
      hv.buffer,
      hg.buffer,
      rds.buffer,
      ref.dq.buffer,
    );
    attentionBackwardKVCpu(
      shape,
      rp.buffer,
      rds.buffer,
      hq.buffer,
      hg.buffer,
      ref.dk.buffer,
      rdv.buffer,
    );
    for (const rows of [1, 2, 3, 4, 8]) {
      const s = { ...shape, rows };
      const [q, k, v, g] = [hq, hk, hv, hg].map((x) => dev.tensor(x, [b, t, h, hd]));
      const probs = dev.empty([b, h, t, t], "f32"), ds = dev.empty([b, h, t, t], "f32");
      const [out, dq, dk, dv] = [0, 1, 2, 3].map(() => dev.empty([b, t, h, hd], "f32"));
      const st = (x: Tensor) => x.storage("test");
      dev.run(attentionForwardDispatch(s, st(q!), st(k!), st(v!), st(probs), st(out!)));
      for (
        const d of attentionBackwardDispatches(
          s,
          { probs: st(probs), q: st(q!), k: st(k!), v: st(v!), g: st(g!) },
          st(ds),
          { dq: st(dq!), dk: st(dk!), dv: st(dv!) },
        )
      ) dev.run(d);
      const tol = { rtol: 1e-4, atol: 1e-5 };
      assertClose(await out!.data(), ref.out, tol, `rows ${rows}: output`);
      assertClose(await dq!.data(), ref.dq, tol, `rows ${rows}: dq`);
      assertClose(await dk!.data(), ref.dk, tol, `rows ${rows}: dk`);
      assertClose(await dv!.data(), rdv, tol, `rows ${rows}: dv`);
      [q, k, v, g, probs, ds, out, dq, dk, dv].forEach((x) => x!.dispose());
    }
  },
});

Deno.test("attentionCausal: gradients match finite differences", async () => {
  await gradCheck(
    (xs) =>
      attentionCausal(xs[0] as Tensor<"f32">, xs[1] as Tensor<"f32">, xs[2] as Tensor<"f32">, 0.7),
    inputs([2, 5, 2, 4]),
    { what: "attentionCausal" },
  );
});

Deno.test("attentionCausal: a query never sees later keys or values", async () => {
  for (const dev of [cpu, ...(gpu ? [gpu] : [])]) {
    const shape = [1, 6, 2, 8], n = 96;
    const [q, k, v] = [1, 2, 3].map((s) => dev.tensor(hostRandom(n, s), shape)) as Tensor<"f32">[];
    // Change keys and values of the last two tokens: the first four outputs must not move.
    const k2h = Float32Array.from(await k!.data()), v2h = Float32Array.from(await v!.data());
    for (let i = 64; i < n; i++) k2h[i] = v2h[i] = 100 + i;
    const k2 = dev.tensor(k2h, shape), v2 = dev.tensor(v2h, shape);
    const a = attentionCausal(q!, k!, v!, 0.5), b = attentionCausal(q!, k2, v2, 0.5);
    const ad = await a.data(), bd = await b.data();
    assert.deepEqual([...ad.slice(0, 64)], [...bd.slice(0, 64)], dev.kind);
    assert.notDeepEqual([...ad.slice(64)], [...bd.slice(64)], dev.kind);
    [q, k, v, k2, v2, a, b].forEach((t) => t!.dispose());
  }
});

Deno.test({
  name: "attentionCausal: one launch forward, two backward (eight unfused)",
  ignore: gpu === null,
  fn() {
    const dev = gpu!;
    const shape = [2, 8, 2, 16];
    const mk = (s: number) => {
      const t = dev.tensor(hostRandom(512, s), shape) as Tensor<"f32">;
      t.requiresGrad = true;
      return t;
    };
    const [q, k, v] = [mk(1), mk(2), mk(3)];
    scope(() => {
      let out!: Tensor;
      const fwd = launchesDuring(dev, () => out = attentionCausal(q, k, v, 0.25));
      assert.deepEqual(fwd, ["attentionCausal"]);
      const bwd = launchesDuring(dev, () => backward(out));
      assert.equal(bwd.filter((op) => op === "attentionCausalBackward").length, 2, bwd.join());
      assert.ok(!bwd.some((op) => /matmul|softmax/i.test(op)), bwd.join());
    });
    [q, k, v].forEach((t) => t.dispose());
  },
});

Deno.test("attentionCausal: bad input is a typed error naming the op and the shapes", () => {
  const q = cpu.zeros([1, 4, 2, 8]);
  assert.throws(
    () => attentionCausal(q, cpu.zeros([1, 4, 2, 4]), q, 1),
    (e) =>
      e instanceof ShapeError && /attentionCausal/.test(e.message) &&
      /\[1, 4, 2, 4\]/.test(e.message),
  );
  const odd = cpu.zeros([1, 4, 1, 6]);
  assert.throws(
    () => attentionCausal(odd, odd, odd, 1),
    (e) => e instanceof ShapeError && /head dim 6/.test(e.message),
  );
  const half = cpu.zeros([1, 4, 2, 8], "f16");
  assert.throws(() => attentionCausal(half as never, half as never, half as never, 1), DTypeError);
  [q, odd, half].forEach((t) => t.dispose());
});

Deno.test({
  name: "Attention on WebGPU: the fused path trains like the strided products",
  ignore: gpu === null,
  async fn() {
    const dev: Device = gpu!;
    const config = modelConfig("tiny", { sparsity: 0.5, seqLen: 16 });
    const run = async (fused: boolean) => {
      fusedAttention.enabled = fused;
      try {
        const attn = new Attention(dev, "attn", config, 5);
        const x = dev.tensor(hostRandom(2 * 16 * 64, 9), [2, 16, 64]);
        const out = scope(() => {
          const y = attn.forward(x);
          backward(y);
          return y;
        });
        const grads = await Promise.all(
          [...attn.namedParameters().values()].map((p) =>
            p.grad!.data().then((d) => Float32Array.from(d))
          ),
        );
        const y = Float32Array.from(await out.data());
        [x, out, attn].forEach((t) => t.dispose());
        return { y, grads };
      } finally {
        fusedAttention.enabled = true;
      }
    };
    const a = await run(true), b = await run(false);
    const tol = { rtol: 1e-4, atol: 1e-5 };
    assertClose(a.y, b.y, tol, "forward");
    b.grads.forEach((g, i) => assertClose(a.grads[i]!, g, tol, `parameter grad ${i}`));
  },
});
