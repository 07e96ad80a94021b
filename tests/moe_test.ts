/**
 * MoE kernels and ops: routing, grouping (counts, prefix sums, permutation, capacity), gather,
 * grouped matmul, combine, auxiliary losses, chunk union and the device counters — WebGPU
 * against the CPU twins, the twins against plain host references, and every gradient against
 * finite differences (CPU) and CPU backward (GPU).
 */
import assert from "node:assert/strict";
import {
  backward,
  chunkUnion,
  type Device,
  DTypeError,
  expertCapacity,
  groupedMatmul,
  loadBalancingLoss,
  moeCombine,
  moeGather,
  moeGroup,
  type MoeGrouping,
  moeRoute,
  mul,
  routerZLoss,
  ShapeError,
  softmax,
  sumAll,
  type Tensor,
  ValueError,
} from "../mod.ts";
import {
  activeParams,
  matchActiveParams,
  modelConfig,
  type MoeConfig,
  nominalActiveParams,
  nominalSparsity,
  TransformerLM,
} from "../src/nn/mod.ts";
import { measureSparsity, train, trainConfig } from "../src/train/mod.ts";
import { main } from "../cli.ts";
import {
  MOE_CHUNK,
  moeRouterStatsDispatch,
  moeSegmentCountDispatch,
  NONE,
  routerCountWords,
  routerMassWords,
} from "../kernels/moe.ts";
import { assertClose, cpu, hostRandom, onBoth, others } from "./helpers.ts";
import { gradCheck, gradOnBoth } from "./gradcheck.ts";

// ---------------------------------------------------------------------------------------------
// Host references

function refRoute(
  probs: ArrayLike<number>,
  n: number,
  e: number,
  k: number,
  norm: boolean,
): { experts: number[]; gates: number[] } {
  const experts: number[] = [], gates: number[] = [];
  for (let t = 0; t < n; t++) {
    const row = Array.from({ length: e }, (_, i) => probs[t * e + i]!);
    const idx = row.map((_, i) => i);
    idx.sort((a, b) => {
      const na = Number.isNaN(row[a]!), nb = Number.isNaN(row[b]!);
      if (na !== nb) return na ? -1 : 1;
      return (na ? 0 : row[b]! - row[a]!) || a - b;
    });
    const pick = idx.slice(0, k);
    let sum = 0;
    for (const i of pick) sum = Math.fround(sum + row[i]!);
    for (const i of pick) {
      experts.push(i);
      gates.push(norm ? (sum > 0 ? row[i]! / sum : 1 / k) : row[i]!);
    }
  }
  return { experts, gates };
}

interface RefGrouping {
  pos: number[];
  perm: number[];
  offsets: number[];
  load: number[];
  dropped: number;
}

function refGroup(experts: ArrayLike<number>, e: number, cap: number | null): RefGrouping {
  const nk = experts.length;
  const load = new Array(e).fill(0);
  for (let a = 0; a < nk; a++) if (experts[a]! < e) load[experts[a]!]++;
  const kept = load.map((l) => (cap === null ? l : Math.min(l, cap)));
  const offsets = [0];
  for (let x = 0; x < e; x++) offsets.push(offsets[x]! + kept[x]!);
  const m = cap === null ? nk : Math.min(nk, e * cap);
  const perm = new Array(m).fill(NONE), pos = new Array(nk).fill(NONE);
  const rank = new Array(e).fill(0);
  for (let a = 0; a < nk; a++) {
    const x = experts[a]!;
    if (x >= e) continue;
    const r = rank[x]++;
    if (cap === null || r < cap) {
      pos[a] = offsets[x]! + r;
      perm[offsets[x]! + r] = a;
    }
  }
  const dropped = load.reduce((s, l, x) => s + l - kept[x]!, 0);
  return { pos, perm, offsets, load, dropped };
}

/** Random expert ids (skewed toward low experts when `skew`), k distinct per token. */
function randomExperts(n: number, k: number, e: number, seed: number, skew = false): Uint32Array {
  const r = hostRandom(n * e, seed);
  const out = new Uint32Array(n * k);
  for (let t = 0; t < n; t++) {
    const score = Array.from({ length: e }, (_, x) => {
      const u = (r[t * e + x]! + 1) / 2;
      return skew ? u - 0.08 * x : u;
    });
    const idx = score.map((_, x) => x).sort((a, b) => score[b]! - score[a]! || a - b);
    for (let j = 0; j < k; j++) out[t * k + j] = idx[j]!;
  }
  return out;
}

function groupOn(dev: Device, ex: Uint32Array, n: number, k: number, e: number, cap?: number) {
  return moeGroup(dev.tensor(ex, [n, k], "u32"), e, cap === undefined ? {} : { capacity: cap });
}

// ---------------------------------------------------------------------------------------------
// Routing

Deno.test("moeRoute: top-k with ties to the lower expert, gates renormalised or raw", async (t) => {
  const cases: [number, number, number][] = [[1, 1, 1], [7, 4, 1], [33, 8, 2], [300, 5, 3], [
    5,
    16,
    16,
  ]];
  for (const [n, e, k] of cases) {
    for (const norm of [true, false]) {
      await t.step(`N=${n} E=${e} k=${k} normalize=${norm}`, async () => {
        // Quantised logits make exact probability ties common.
        const logits = Float32Array.from(hostRandom(n * e, n + e + k), (v) => Math.round(v * 4));
        const [ex, g] = await onBoth((dev) => {
          const r = moeRoute(softmax(dev.tensor(logits, [n, e])), k, { normalize: norm });
          return [r.experts, r.gates];
        }, { rtol: 1e-6, atol: 1e-7 });
        const probs = await softmax(cpu.tensor(logits, [n, e])).data();
        const ref = refRoute(probs, n, e, k, norm);
        assert.deepEqual(Array.from(ex!), ref.experts);
        assertClose(g!, ref.gates, { rtol: 1e-6, atol: 1e-7 }, "gates");
      });
    }
  }
  await t.step("NaN ranks above every number", async () => {
    const [ex] = await onBoth(
      (dev) => [moeRoute(dev.tensor([[0.2, NaN, 0.5, 0.3]]), 2, { normalize: false }).experts],
      { rtol: 0, atol: 0 },
    );
    assert.deepEqual(Array.from(ex!), [1, 2]);
  });
});

/** Probabilities with well-separated values per row (finite differences never flip a choice). */
function separatedProbs(n: number, e: number, seed: number): Float32Array {
  const r = hostRandom(n * e, seed);
  const out = new Float32Array(n * e);
  for (let t = 0; t < n; t++) {
    const order = Array.from({ length: e }, (_, x) => x).sort((a, b) =>
      r[t * e + a]! - r[t * e + b]!
    );
    order.forEach((x, i) => (out[t * e + x] = 0.05 + 0.1 * i + 0.01 * r[t * e + x]!));
  }
  return out;
}

Deno.test("moeRoute: gradient of the gates (renormalised and raw)", async () => {
  const n = 6, e = 5;
  for (const k of [1, 2, 3]) {
    for (const norm of [true, false]) {
      const inputs = [{ data: separatedProbs(n, e, 10 + k), shape: [n, e] }];
      const fn = (xs: Tensor[]) => moeRoute(xs[0] as Tensor<"f32">, k, { normalize: norm }).gates;
      await gradCheck(fn, inputs, { eps: 1e-3, what: `moeRoute k=${k} norm=${norm}` });
      await gradOnBoth(fn, inputs, { rtol: 1e-5, atol: 1e-6 }, `moeRoute k=${k}`);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Grouping

Deno.test("moeGroup: counts, prefix sums and a stable permutation match the reference", async (t) => {
  const cases: [string, number, number, number, number | undefined, boolean][] = [
    ["one token", 1, 1, 1, undefined, false],
    ["N·k across chunks", 300, 2, 5, undefined, false],
    ["exact chunk multiple", MOE_CHUNK, 2, 3, undefined, false],
    ["capacity drops in token order", 300, 2, 5, 90, true],
    ["capacity 1", 40, 1, 4, 1, true],
    ["capacity larger than needed", 50, 2, 4, 1000, false],
    ["more experts than assignments", 3, 1, 16, undefined, false],
  ];
  for (const [name, n, k, e, cap, skew] of cases) {
    await t.step(name, async () => {
      const ex = randomExperts(n, k, e, n + e, skew);
      const [pos, perm, meta] = await onBoth((dev) => {
        const g = groupOn(dev, ex, n, k, e, cap);
        return [g.pos, g.perm, g.meta];
      }, { rtol: 0, atol: 0 });
      const ref = refGroup(ex, e, cap ?? null);
      assert.deepEqual(Array.from(pos!), ref.pos);
      assert.deepEqual(Array.from(perm!), ref.perm);
      assert.deepEqual(Array.from(meta!), [...ref.offsets, ...ref.load, ref.dropped]);
      if (cap !== undefined && skew) assert.ok(ref.dropped > 0, "the case should drop something");
    });
  }
  await t.step("experts ≥ E are dropped and not counted", async () => {
    const ex = new Uint32Array([0, 7, 1, 1, 9, 0]);
    const [pos, meta] = await onBoth((dev) => {
      const g = groupOn(dev, ex, 3, 2, 2);
      return [g.pos, g.meta];
    }, { rtol: 0, atol: 0 });
    assert.deepEqual(Array.from(pos!), [0, NONE, 2, 3, NONE, 1]);
    assert.deepEqual(Array.from(meta!), [0, 2, 4, 2, 2, 0]);
  });
  await t.step("router collapse: every token to one expert", async () => {
    const ex = new Uint32Array(64).fill(2);
    const g = groupOn(cpu, ex, 64, 1, 4, expertCapacity(64, 1, 4, 1.5));
    const m = await g.readMeta();
    assert.deepEqual(m.load, [0, 0, 64, 0]);
    assert.equal(m.dropped, 64 - 24);
    assert.equal(g.rows, 64);
  });
});

// ---------------------------------------------------------------------------------------------
// Gather, grouped matmul, combine

Deno.test("moeGather / groupedMatmul / moeCombine: a full expert layer matches the direct sum", async (t) => {
  const cases: [number, number, number, number, number, number | undefined][] = [
    [1, 1, 1, 3, 2, undefined],
    [37, 4, 2, 12, 9, undefined],
    [64, 8, 2, 16, 24, 10],
    [130, 3, 3, 5, 7, undefined],
  ];
  for (const [n, e, k, d, f, cap] of cases) {
    await t.step(`N=${n} E=${e} k=${k} d=${d} f=${f} capacity=${cap ?? "none"}`, async () => {
      const ex = randomExperts(n, k, e, n * 3 + e, true);
      const x = hostRandom(n * d, 1), w = hostRandom(e * d * f, 2), w2 = hostRandom(e * f * d, 3);
      const gates = Float32Array.from(hostRandom(n * k, 4), (v) => 0.5 + v / 4);
      const [xg, h, hT, y] = await onBoth((dev) => {
        const g = groupOn(dev, ex, n, k, e, cap);
        const xg = moeGather(dev.tensor(x, [n, d]), g);
        const h = groupedMatmul(xg, dev.tensor(w, [e, d, f]), g);
        // transposeB with w2 stored [E, d, f] read as [E, f, d]ᵀ: h·w2[e]ᵀ maps f → d.
        const hT = groupedMatmul(h, dev.tensor(w2, [e, d, f]), g, { transposeB: true });
        const y = moeCombine(hT, dev.tensor(gates, [n, k]), g);
        return [xg, h, hT, y];
      }, { rtol: 1e-5, atol: 1e-5 });
      const ref = refGroup(ex, e, cap ?? null);
      // xg rows are the token rows (or zero).
      ref.perm.forEach((a, r) => {
        const want = a === NONE
          ? new Array(d).fill(0)
          : Array.from(x.subarray((a / k | 0) * d, (a / k | 0) * d + d));
        assert.deepEqual(Array.from(xg!).slice(r * d, r * d + d), want);
      });
      // y[t] = Σ_j gate · (x_t · W[e]) · W2[e]ᵀ over kept slots, in f64.
      const yRef = new Float64Array(n * d);
      for (let t2 = 0; t2 < n; t2++) {
        for (let j = 0; j < k; j++) {
          const a = t2 * k + j;
          if (ref.pos[a] === NONE) continue;
          const ei = ex[a]!;
          const hr = new Float64Array(f);
          for (let i = 0; i < d; i++) {
            for (let c = 0; c < f; c++) hr[c]! += x[t2 * d + i]! * w[(ei * d + i) * f + c]!;
          }
          for (let o = 0; o < d; o++) {
            let s = 0;
            for (let c = 0; c < f; c++) s += hr[c]! * w2[(ei * d + o) * f + c]!;
            yRef[t2 * d + o]! += gates[a]! * s;
          }
        }
      }
      assertClose(y!, yRef, { rtol: 1e-4, atol: 1e-5 }, "y");
      void h;
      void hT;
    });
  }
});

Deno.test("moeGather / groupedMatmul / moeCombine: gradients", async () => {
  const n = 9, e = 3, k = 2, d = 4, f = 5;
  const ex = randomExperts(n, k, e, 5, true);
  for (const cap of [undefined, 4]) {
    const exIn = { data: ex, shape: [n, k], dtype: "u32" as const };
    const grouping = (xs: Tensor[]): MoeGrouping =>
      moeGroup(xs[xs.length - 1] as Tensor<"u32">, e, cap === undefined ? {} : { capacity: cap });
    const gather = (xs: Tensor[]) => moeGather(xs[0] as Tensor<"f32">, grouping(xs));
    const gIn = [{ data: hostRandom(n * d, 1), shape: [n, d] }, exIn];
    await gradCheck(gather, gIn, { what: `moeGather cap=${cap}` });
    await gradOnBoth(gather, gIn, undefined, "moeGather");

    for (const tb of [false, true]) {
      const mm = (xs: Tensor[]) => {
        const g = grouping(xs);
        const xg = moeGather(xs[0] as Tensor<"f32">, g);
        return groupedMatmul(xg, xs[1] as Tensor<"f32">, g, { transposeB: tb });
      };
      const mIn = [
        { data: hostRandom(n * d, 2), shape: [n, d] },
        { data: hostRandom(e * d * f, 3), shape: tb ? [e, f, d] : [e, d, f] },
        exIn,
      ];
      await gradCheck(mm, mIn, { what: `groupedMatmul tb=${tb} cap=${cap}` });
      await gradOnBoth(mm, mIn, undefined, `groupedMatmul tb=${tb}`);
    }

    const comb = (xs: Tensor[]) => {
      const g = grouping(xs);
      const yg = moeGather(xs[0] as Tensor<"f32">, g);
      return moeCombine(yg, xs[1] as Tensor<"f32">, g);
    };
    const cIn = [
      { data: hostRandom(n * d, 4), shape: [n, d] },
      { data: hostRandom(n * k, 5), shape: [n, k] },
      exIn,
    ];
    await gradCheck(comb, cIn, { what: `moeCombine cap=${cap}` });
    await gradOnBoth(comb, cIn, undefined, "moeCombine");
  }
});

// ---------------------------------------------------------------------------------------------
// Auxiliary losses

Deno.test("loadBalancingLoss and routerZLoss: values and gradients", async () => {
  const n = 12, e = 4;
  const logits = hostRandom(n * e, 9, 2);
  const probs = await softmax(cpu.tensor(logits, [n, e])).data();
  for (const k of [1, 2]) {
    const r = refRoute(probs, n, e, k, true);
    const load = new Array(e).fill(0);
    r.experts.forEach((x) => load[x]++);
    let want = 0;
    for (let x = 0; x < e; x++) {
      let P = 0;
      for (let t = 0; t < n; t++) P += probs[t * e + x]!;
      want += (load[x] / (n * k)) * (P / n);
    }
    want *= e;
    const [l] = await onBoth((dev) => {
      const p = softmax(dev.tensor(logits, [n, e]));
      return loadBalancingLoss(p, moeGroup(moeRoute(p, k).experts, e));
    });
    assert.ok(Math.abs(l![0]! - want) < 1e-5, `aux ${l![0]} vs ${want}`);
    const fn = (xs: Tensor[]) => {
      const p = softmax(xs[0] as Tensor<"f32">);
      return loadBalancingLoss(p, moeGroup(moeRoute(p, k).experts, e));
    };
    // Well-separated logits: finite differences do not change the routing.
    const sep = Float32Array.from(separatedProbs(n, e, 3), (v) => 20 * v);
    await gradCheck(fn, [{ data: sep, shape: [n, e] }], { eps: 1e-3, what: "loadBalancingLoss" });
    await gradOnBoth(fn, [{ data: sep, shape: [n, e] }], undefined, "loadBalancingLoss");
  }
  let zWant = 0;
  for (let t = 0; t < n; t++) {
    let s = 0;
    for (let x = 0; x < e; x++) s += Math.exp(logits[t * e + x]!);
    zWant += Math.log(s) ** 2 / n;
  }
  const [z] = await onBoth((dev) => routerZLoss(dev.tensor(logits, [n, e])));
  assert.ok(Math.abs(z![0]! - zWant) < 1e-5 * zWant, `z ${z![0]} vs ${zWant}`);
  const zIn = [{ data: logits, shape: [n, e] }];
  await gradCheck((xs) => routerZLoss(xs[0] as Tensor<"f32">), zIn, { what: "routerZLoss" });
  await gradOnBoth((xs) => routerZLoss(xs[0] as Tensor<"f32">), zIn, undefined, "routerZLoss");
});

// ---------------------------------------------------------------------------------------------
// Chunk union

/** Token rows with roughly `density` nonzeros. */
function sparseRows(rows: number, w: number, density: number, seed: number): Float32Array {
  const r = hostRandom(rows * w, seed);
  return Float32Array.from(r, (v, i) => ((v + 1) / 2 < density ? r[(i * 7) % r.length]! + 2 : 0));
}

Deno.test("chunkUnion: dense and grouped sites match a direct union", async (t) => {
  for (const [b, T, w, c] of [[2, 16, 10, 4], [3, 10, 7, 4], [1, 64, 33, 8], [2, 8, 5, 64]]) {
    await t.step(`dense B=${b} T=${T} w=${w} chunk=${c}`, async () => {
      const h = sparseRows(b * T, w, 0.15, b + T + w);
      const [u] = await onBoth(
        (dev) => chunkUnion(dev.tensor(h, [b * T, w]), null, { chunk: c, seqLen: T }),
        {
          rtol: 0,
          atol: 0,
        },
      );
      const per = Math.ceil(T / c);
      const want = new Array(b * per * w).fill(0);
      for (let tok = 0; tok < b * T; tok++) {
        const s = Math.floor(tok / T), ch = s * per + Math.floor((tok % T) / c);
        for (let col = 0; col < w; col++) if (h[tok * w + col] !== 0) want[ch * w + col] = 1;
      }
      assert.deepEqual(Array.from(u!), want);
    });
  }
  for (
    const [b, T, e, k, w, c, cap] of [[2, 16, 4, 2, 6, 4, undefined], [3, 40, 8, 2, 5, 8, 12], [
      1,
      64,
      3,
      1,
      4,
      64,
      undefined,
    ]] as [number, number, number, number, number, number, number | undefined][]
  ) {
    await t.step(
      `grouped B=${b} T=${T} E=${e} k=${k} w=${w} chunk=${c} cap=${cap ?? "none"}`,
      async () => {
        const n = b * T;
        const ex = randomExperts(n, k, e, n + w, true);
        const ref = refGroup(ex, e, cap ?? null);
        const m = ref.perm.length;
        const h = sparseRows(m, w, 0.2, m + 1);
        ref.perm.forEach((a, r) => {
          if (a === NONE) h.fill(0, r * w, r * w + w);
        });
        const [u] = await onBoth((dev) => {
          const g = groupOn(dev, ex, n, k, e, cap);
          return chunkUnion(dev.tensor(h, [m, w]), g, { chunk: c, seqLen: T });
        }, { rtol: 0, atol: 0 });
        const per = Math.ceil(T / c);
        const want = new Array(b * per * e * w).fill(0);
        ref.perm.forEach((a, r) => {
          if (a === NONE) return;
          const tok = Math.floor(a / k), s = Math.floor(tok / T);
          const ch = s * per + Math.floor((tok % T) / c), x = ex[a]!;
          for (let col = 0; col < w; col++) {
            if (h[r * w + col] !== 0) want[(ch * e + x) * w + col] = 1;
          }
        });
        assert.deepEqual(Array.from(u!), want);
      },
    );
  }
});

// ---------------------------------------------------------------------------------------------
// Device counters (accumulated in place)

function counters(dev: Device, n: number, e: number, k: number, w: number) {
  const logits = hostRandom(n * e, 21, 3);
  const p = softmax(dev.tensor(logits, [n, e]));
  const g = moeGroup(moeRoute(p, k).experts, e, { capacity: expertCapacity(n, k, e, 1) });
  const h = groupedMatmul(
    moeGather(dev.tensor(sparseRows(n, 6, 0.5, 3), [n, 6]), g),
    dev.tensor(hostRandom(e * 6 * w, 4), [e, 6, w]),
    g,
  );
  const nz = dev.zeros([e], "u32"), el = dev.zeros([e], "u32");
  const cnt = dev.zeros([routerCountWords(e)], "u32"), mass = dev.zeros([routerMassWords(e)]);
  for (let rep = 0; rep < 2; rep++) {
    dev.run(
      moeSegmentCountDispatch(
        e,
        w,
        h.storage("t"),
        g.meta.storage("t"),
        nz.storage("t"),
        el.storage("t"),
      ),
    );
    dev.run(
      moeRouterStatsDispatch(
        n,
        e,
        p.storage("t"),
        g.meta.storage("t"),
        cnt.storage("t"),
        mass.storage("t"),
      ),
    );
  }
  return { nz, el, cnt, mass, g, h, p };
}

Deno.test("device counters: per-expert nonzeros and router statistics accumulate exactly", async () => {
  const n = 150, e = 5, k = 2, w = 7;
  const c = counters(cpu, n, e, k, w);
  const meta = await c.g.readMeta();
  const h = await c.h.data();
  const nzWant = [], elWant = [];
  for (let x = 0; x < e; x++) {
    let z = 0;
    for (let i = meta.offsets[x]! * w; i < meta.offsets[x + 1]! * w; i++) if (h[i] !== 0) z++;
    nzWant.push(2 * z);
    elWant.push(2 * (meta.offsets[x + 1]! - meta.offsets[x]!) * w);
  }
  assert.deepEqual(Array.from(await c.nz.data()), nzWant);
  assert.deepEqual(Array.from(await c.el.data()), elWant);
  const cnt = Array.from(await c.cnt.data());
  assert.deepEqual(cnt.slice(0, e), meta.load.map((l) => 2 * l));
  assert.equal(cnt[2 * e], 2 * meta.dropped);
  assert.equal(cnt[2 * e + 1], 2 * n);
  const p = await c.p.data();
  const mass = await c.mass.data();
  let ent = 0;
  for (let t = 0; t < n; t++) {
    for (let x = 0; x < e; x++) ent -= p[t * e + x]! * Math.log(p[t * e + x]!);
  }
  assertClose([mass[e]!], [2 * ent], { rtol: 1e-5 }, "entropy");
  for (const dev of others) {
    const g2 = counters(dev, n, e, k, w);
    assert.deepEqual(Array.from(await g2.nz.data()), nzWant, dev.kind);
    assert.deepEqual(Array.from(await g2.el.data()), elWant, dev.kind);
    assert.deepEqual(Array.from(await g2.cnt.data()), cnt, dev.kind);
    assertClose(
      await g2.mass.data(),
      mass,
      { rtol: 1e-5, atol: 1e-5 },
      `mass (${dev.kind} vs cpu)`,
    );
  }
});

// ---------------------------------------------------------------------------------------------
// Bad input

Deno.test("MoE ops: bad input names the op and the shapes", () => {
  using p = cpu.tensor([[0.5, 0.5]]);
  assert.throws(
    () => moeRoute(p, 3),
    (e: Error) => e instanceof ShapeError && /moeRoute.*k must.*\[1, 2\]/.test(e.message),
  );
  assert.throws(() => moeRoute(p, 0), ShapeError);
  assert.throws(() => moeRoute(cpu.tensor([0.5, 0.5]), 1), /moeRoute.*\[N, E\]/);
  using ex = cpu.tensor(new Uint32Array([0, 1]), [2, 1], "u32");
  assert.throws(
    () => moeGroup(ex, 0),
    (e: Error) => e instanceof ValueError && /moeGroup.*numExperts/.test(e.message),
  );
  assert.throws(() => moeGroup(ex, 2, { capacity: 0 }), /capacity must be an integer ≥ 1/);
  assert.throws(() => moeGroup(ex, 2, { capacity: 1.5 }), ValueError);
  assert.throws(() => moeGroup(cpu.tensor([[0], [1]]) as unknown as Tensor<"u32">, 2), DTypeError);
  assert.throws(() => expertCapacity(8, 1, 2, -1), /capacity factor must be > 0/);
  using g = moeGroup(ex, 2);
  assert.throws(() => moeGather(cpu.zeros([3, 4]), g), /moeGather.*N = 2.*\[3, 4\]/);
  using xg = moeGather(cpu.zeros([2, 4]), g);
  assert.throws(() => groupedMatmul(xg, cpu.zeros([3, 4, 5]), g), /groupedMatmul.*E = 2/);
  assert.throws(
    () => groupedMatmul(xg, cpu.zeros([2, 5, 5]), g),
    /inner dims differ.*\[2, 4\].*\[2, 5, 5\]/,
  );
  assert.throws(
    () => moeCombine(xg, cpu.zeros([2, 2]), g),
    /moeCombine.*gates must be \[N, k\] = \[2, 1\]/,
  );
  assert.throws(
    () => chunkUnion(cpu.zeros([6, 2]), null, { chunk: 2, seqLen: 4 }),
    /not whole sequences/,
  );
});

// ---------------------------------------------------------------------------------------------
// The MoE layer inside the model: accounting, router statistics, bad configs

Deno.test("MoE model: per-expert sparsity, N_a with experts at k/E, router statistics", async () => {
  const cfg = modelConfig("tiny-moe4x2", { seqLen: 16, sparsity: 0.5 });
  using m = new TransformerLM(cpu, cfg, 2);
  m.forward(cpu.tensor(new Uint32Array(32).map((_, i) => (i * 29) % 256), [2, 16], "u32"));
  const r = (await measureSparsity(m))!;
  const gu = r.sites.filter((s) => /^layers\.0\.ffn\.experts\.\d\.gate_up$/.test(s.name));
  assert.equal(gu.length, 4);
  assert.equal(gu.reduce((a, s) => a + s.elements, 0), 32 * 2 * 64);
  for (const s of gu) if (s.elements > 0) assert.ok(Math.abs(s.sparsity - 0.5) < 1e-12);
  assert.ok(Math.abs(r.perSite.gateUp - 0.5) < 1e-12);
  const d = 64, f = cfg.dFF, L = 2, E = 4, k = 2;
  const want =
    L * (0.5 * 4 * d * d + (k / E) * E * (0.5 * 2 * d * f + (1 - r.perSite.down) * f * d)) +
    L * d * E + (2 * L + 1) * d;
  assert.ok(Math.abs(r.Na - want) < 1e-6 * want, `Na ${r.Na} vs ${want}`);
  assert.ok(Math.abs(r.Na - activeParams(cfg, r.perSite).Na) < 1e-9);
  assert.equal(r.NaAttention + r.NaFfn + (2 * L + 1) * d, r.Na);
  const rt = r.routing!;
  assert.equal(rt.layers.length, 2);
  for (const l of rt.layers) {
    assert.equal(l.tokens, 32);
    assert.ok(Math.abs(l.load.reduce((a, b) => a + b, 0) - 1) < 1e-12);
    assert.ok(Math.abs(l.importance.reduce((a, b) => a + b, 0) - 1) < 1e-6);
    assert.ok(l.loadEntropy > 0 && l.loadEntropy <= 1);
    assert.ok(l.routerEntropy > 0 && l.routerEntropy <= Math.log(4) + 1e-6);
    assert.equal(l.dropped, 0);
  }
  assert.deepEqual(rt.collapsed, []);
  assert.equal(await measureSparsity(m), null, "counters reset after reading");
});

Deno.test("MoE model: a collapsed router and dropped tokens are reported, not hidden", async () => {
  const cfg = modelConfig("tiny", {
    seqLen: 16,
    moe: { experts: 4, topK: 1, capacityFactor: 1, auxLossCoef: 0.5 },
  });
  using m = new TransformerLM(cpu, cfg, 2);
  // Zero router weights: every probability is 1/E and ties go to expert 0.
  for (const [name, p] of m.namedParameters()) {
    if (name.endsWith("router.weight")) m.setParameter(name, new Float32Array(p.size));
  }
  const ids = cpu.tensor(new Uint32Array(32).map((_, i) => (i * 29) % 256), [2, 16], "u32");
  const targets = cpu.tensor(new Uint32Array(32).map((_, i) => (i * 7) % 256), [2, 16], "u32");
  using loss = m.loss(ids, targets);
  const rt = (await measureSparsity(m))!.routing!;
  assert.deepEqual(rt.collapsed, ["layers.0.ffn", "layers.1.ffn"]);
  for (const l of rt.layers) {
    assert.deepEqual(l.load, [1, 0, 0, 0]);
    assert.equal(l.maxLoad, 4);
    assert.equal(l.loadEntropy, 0);
    assert.equal(l.dropped, 0.75); // capacity 8 of 32 tokens
    assert.equal(l.tokens, 32);
  }
  assert.equal(rt.dropped, 0.75);
  // With uniform probabilities the balance term is exactly 1 per layer: loss = CE + 2·0.5.
  using m0 = new TransformerLM(cpu, { ...cfg, moe: { ...cfg.moe!, auxLossCoef: 0 } }, 2);
  for (const [name, p] of m0.namedParameters()) {
    if (name.endsWith("router.weight")) m0.setParameter(name, new Float32Array(p.size));
  }
  using loss0 = m0.loss(ids, targets);
  assert.ok(Math.abs((await loss.item()) - (await loss0.item()) - 1) < 1e-5);
});

Deno.test("MoE config: k > E, E < 1, capacity ≤ 0 and negative coefficients are rejected", () => {
  const bad = (moe: MoeConfig, re: RegExp) =>
    assert.throws(
      () => modelConfig("tiny", { moe }),
      (e: Error) => e instanceof ValueError && /modelConfig/.test(e.message) && re.test(e.message),
    );
  bad({ experts: 2, topK: 3 }, /moe\.topK must be in 1\.\.experts \(2\), got 3/);
  bad({ experts: 0, topK: 1 }, /moe\.experts must be ≥ 1, got 0/);
  bad({ experts: 4, topK: 1, capacityFactor: 0 }, /capacityFactor must be > 0, got 0/);
  bad({ experts: 4, topK: 1, capacityFactor: -1 }, /capacityFactor/);
  bad({ experts: 4, topK: 1, auxLossCoef: -0.1 }, /auxLossCoef must be ≥ 0/);
  assert.throws(() => modelConfig("tiny-moe2x3"), /topK must be in 1\.\.experts/);
  assert.equal(modelConfig("xs-moe8x2").moe!.experts, 8);
});

Deno.test("MoE training: logs load and chunk sparsity, resumes bit-exactly (CPU backend)", async () => {
  const cfg = trainConfig(
    modelConfig("tiny", {
      seqLen: 16,
      sparsity: 0.5,
      moe: { experts: 4, topK: 2, capacityFactor: 1.25, zLossCoef: 1e-3 },
    }),
    { steps: 4, batchSize: 2, logEvery: 2, evalWindows: 4, checkpointEvery: 0, warmup: 1 },
  );
  const full = await train(cpu, cfg, { chunkSizes: [8] });
  const rec = full.log.find((r) => r.kind === "train")!;
  assert.equal(rec.routing!.load.length, 2);
  assert.ok(Math.abs(rec.routing!.load[0]!.reduce((a, b) => a + b, 0) - 1) < 1e-9);
  assert.ok(rec.chunkSparsity!["8"]! > 0 && rec.chunkSparsity!["8"]! < 1);
  assert.ok(rec.sparsity!.Na < full.N);
  assert.equal(full.chunkSparsity!.chunkSizes[0], 8);
  assert.equal(full.sparsity!.routing!.layers.length, 2);
  const dir = await Deno.makeTempDir({ prefix: "moe-resume-" });
  try {
    await assert.rejects(
      () => train(cpu, cfg, { out: dir, stopAfter: 2, chunkSizes: [8] }),
      /stopped/,
    );
    const resumed = await train(cpu, cfg, { out: dir, resume: true, chunkSizes: [8] });
    assert.equal(resumed.valLoss, full.valLoss);
    assert.equal(resumed.trainLoss, full.trainLoss);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CLI: bad MoE options exit with a message naming the field", async () => {
  const errors: string[] = [];
  const orig = console.error;
  console.error = (...a: unknown[]) => void errors.push(a.join(" "));
  try {
    assert.equal(await main(["train", "--moe", "2:3"]), 2);
    assert.equal(await main(["train", "--moe", "0:1"]), 2);
    assert.equal(await main(["train", "--moe", "4:1", "--capacity", "0"]), 2);
    assert.equal(await main(["train", "--capacity", "1.5"]), 2);
  } finally {
    console.error = orig;
  }
  assert.match(errors[0]!, /moe\.topK must be in 1\.\.experts \(2\), got 3/);
  assert.match(errors[1]!, /moe\.experts must be ≥ 1/);
  assert.match(errors[2]!, /capacityFactor must be > 0/);
  assert.match(errors[3]!, /need --moe/);
});

Deno.test("sizing: dense, Q-Sparse and MoE(+Q-Sparse) arms at the same N_a", async () => {
  const base = modelConfig("s");
  const target = nominalActiveParams(base).Na;
  const arms = matchActiveParams(base, {
    dense: {},
    qsparse: { sparsity: 0.5 },
    qsparse70: { sparsity: 0.7 },
    moe: { moe: { experts: 8, topK: 2 } },
    moeQsparse: { sparsity: 0.5, moe: { experts: 8, topK: 2 } },
    block: { sparsity: 0.5, block: 32 },
  });
  for (const [name, a] of Object.entries(arms)) {
    // N:M arms move in steps of the block (32), so their match is coarser.
    const tol = name === "block" ? 0.02 : 0.01;
    assert.ok(Math.abs(a.relError) < tol, `${name}: N_a off by ${a.relError}`);
    assert.ok(Math.abs(a.params.Na - target) / target < tol);
    assert.equal(a.config.dModel / a.config.nHeads, 32);
  }
  assert.equal(arms.dense!.relError, 0);
  assert.ok(arms.qsparse70!.params.N > arms.qsparse!.params.N);
  assert.ok(arms.moeQsparse!.params.N > arms.moe!.params.N);
  assert.equal(arms.block!.config.dFF % 32, 0);
  // Nominal accounting equals the measured one where top-K fixes the count (qkv, o, gate/up).
  using m = new TransformerLM(cpu, { ...arms.moeQsparse!.config, seqLen: 16 }, 1);
  m.forward(cpu.tensor(new Uint32Array(32).map((_, i) => (i * 13) % 256), [2, 16], "u32"));
  const r = (await measureSparsity(m))!;
  const nominal = nominalSparsity(m.config);
  for (const s of ["qkv", "o", "gateUp"] as const) {
    assert.ok(Math.abs(r.perSite[s] - nominal[s]) < 1e-12);
  }
  assert.ok(r.perSite.down >= nominal.down);
});

Deno.test("MoE layer on every device at sizes past the native thread split: forward and gradients", async () => {
  // 3000 tokens (routing splits from 1024), 6000 grouped rows of 32 (gather/combine split from
  // 64K elements), an expert left empty by the capacity-free routing of a skewed router, and a
  // capacity that drops assignments.
  const n = 3000, e = 7, k = 2, d = 32, f = 40;
  const logits = Float32Array.from(hostRandom(n * e, 51, 3), (v, i) => (i % e === 6 ? -40 : v));
  for (const cap of [undefined, 700]) {
    await onBoth(
      (dev) => {
        const lg = dev.tensor(logits, [n, e]);
        const p = softmax(lg);
        p.requiresGrad = true;
        const r = moeRoute(p, k);
        const g = moeGroup(r.experts, e, cap === undefined ? {} : { capacity: cap });
        const x = dev.tensor(hostRandom(n * d, 52), [n, d]);
        x.requiresGrad = true;
        const w1 = dev.tensor(hostRandom(e * d * f, 53), [e, d, f]);
        const w2 = dev.tensor(hostRandom(e * d * f, 54), [e, d, f]);
        w1.requiresGrad = true;
        w2.requiresGrad = true;
        const h = groupedMatmul(moeGather(x, g), w1, g);
        const y = moeCombine(groupedMatmul(h, w2, g, { transposeB: true }), r.gates, g);
        backward(sumAll(mul(y, dev.tensor(hostRandom(n * d, 55), [n, d]))));
        return [r.experts, r.gates, g.meta, h, y, x.grad!, w1.grad!, w2.grad!, p.grad!];
      },
      { rtol: 1e-4, atol: 1e-4 },
      `MoE layer capacity=${cap ?? "none"}`,
    );
  }
});
