import assert from "node:assert/strict";
import { ValueError } from "../mod.ts";
import {
  denseLaw,
  fitDenseLaw,
  fitScalingLaw,
  isoLossGrid,
  optimalSparsity,
  PAPER_SCALING_LAW as PAPER,
  profileScalingLaw,
  scalingLaw,
  type ScalingLawParams,
  type ScalingPoint,
  sparsityFactor,
} from "../src/train/mod.ts";

const SIZES = [3e8, 7e8, 1.3e9, 3e9, 7e9];
const SPARSITIES = [0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8];

function sweep(p: ScalingLawParams, noise = 0, seed = 1): ScalingPoint[] {
  // Box–Muller on a small LCG: the test's noise must not depend on the code under test.
  let state = seed;
  const uniform = () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  const gauss = () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
  return SIZES.flatMap((N) =>
    SPARSITIES.map((S) => ({ N, S, loss: scalingLaw(p, N, S) * Math.exp(noise * gauss()) }))
  );
}

function relErr(a: number, b: number): number {
  return Math.abs(a - b) / Math.abs(b);
}

Deno.test("scaling law: the paper's constants reproduce its anchors (N in 1e8 units)", () => {
  // The paper's non-embedding sizes (its config table): 301.9M, 679.5M, 1.208B, 6.48B.
  const dense = [3.019e8, 6.795e8, 1.208e9, 6.48e9].map((N) => scalingLaw(PAPER, N, 0).toFixed(2));
  assert.deepEqual(dense, ["3.65", "3.51", "3.42", "3.18"]);
  // The note's A(S)/A(0) table, to its 3 printed decimals (±1 in the last digit for rounding).
  const expected = [1.013, 1.034, 1.051, 1.078, 1.123, 1.22, 1.566];
  [0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9].forEach((S, i) => {
    const ratio = sparsityFactor(PAPER, S) / sparsityFactor(PAPER, 0);
    assert.ok(Math.abs(ratio - expected[i]!) <= 1.01e-3, `A(${S})/A(0) = ${ratio}`);
  });
  const gap = (N: number, S: number) => scalingLaw(PAPER, N, S) - scalingLaw(PAPER, N, 0);
  assert.deepEqual([0.4, 0.5, 0.7].map((S) => gap(3.019e8, S).toFixed(3)), [
    "0.060",
    "0.091",
    "0.220",
  ]);
  assert.deepEqual([0.4, 0.5, 0.7].map((S) => gap(6.48e9, S).toFixed(3)), [
    "0.044",
    "0.067",
    "0.162",
  ]);
});

Deno.test("optimalSparsity: 50.2% for the paper's rounded constants, equal to a brute-force grid", () => {
  const sStar = optimalSparsity(PAPER);
  assert.equal((100 * sStar).toFixed(1), "50.2");
  const f = (p: ScalingLawParams, S: number) => sparsityFactor(p, S) * (1 - S) ** p.alpha;
  const brute = (p: ScalingLawParams) => {
    let best = 0;
    for (let i = 0; i <= 990_000; i++) if (f(p, i / 1e6) < f(p, best)) best = i / 1e6;
    return best;
  };
  for (
    const p of [PAPER, { ...PAPER, beta: 0.0547 }, { ...PAPER, alpha: 0.3, B: 0.5 }, {
      ...PAPER,
      beta: 0.2,
    }]
  ) {
    assert.ok(
      Math.abs(optimalSparsity(p) - brute(p)) <= 2e-6,
      `${JSON.stringify(p)}: ${optimalSparsity(p)} vs ${brute(p)}`,
    );
  }
  // β/α ≈ 0.547 gives the paper's quoted 45.58% (note §2); β > α puts the optimum at S = 0.
  assert.ok(Math.abs(optimalSparsity({ ...PAPER, beta: 0.0547 }) - 0.4558) < 0.003);
  assert.equal(optimalSparsity({ ...PAPER, beta: 0.2 }), 0);
  // S* does not depend on E or on the N unit: iso-loss minima sit at S* for every N_a.
  assert.equal(optimalSparsity({ ...PAPER, E: 0.5, nScale: 1 }), sStar);
});

Deno.test("isoLossGrid: L(N_a/(1−S), S), minimal along S at S* for every N_a", () => {
  const activated = [3e8, 1e9, 7e9];
  const sparsity = Array.from({ length: 61 }, (_, i) => 0.1 + i * 0.01);
  const g = isoLossGrid(PAPER, activated, sparsity);
  assert.equal(g.loss.length, sparsity.length);
  assert.equal(g.loss[0]!.length, activated.length);
  assert.equal(g.loss[10]![1], scalingLaw(PAPER, 1e9 / (1 - sparsity[10]!), sparsity[10]!));
  for (let j = 0; j < activated.length; j++) {
    const column = g.loss.map((row) => row[j]!);
    const argmin = sparsity[column.indexOf(Math.min(...column))]!;
    assert.ok(Math.abs(argmin - 0.502) <= 0.005, `N_a=${activated[j]}: argmin ${argmin}`);
  }
  assert.throws(() => isoLossGrid(PAPER, [1e9], [1]), ValueError);
});

Deno.test("fitScalingLaw: recovers the paper's constants from noise-free data", async () => {
  const fit = await fitScalingLaw(sweep(PAPER), { bootstrap: 0 });
  console.log(
    `recovered E=${fit.E} B=${fit.B} C=${fit.C} alpha=${fit.alpha} beta=${fit.beta} S*=${fit.sStar} ` +
      `rmse=${fit.rmse.toExponential(1)}`,
  );
  assert.ok(fit.converged);
  assert.equal(fit.starts, 36);
  assert.equal(fit.nScale, 1e8);
  // Tolerances: 1e-6 relative on E, C, α, β; B (0.5% of A) is the weakest direction: 1e-4.
  for (const k of ["E", "C", "alpha", "beta"] as const) {
    assert.ok(relErr(fit[k], PAPER[k]) < 1e-6, `${k}=${fit[k]}`);
  }
  assert.ok(relErr(fit.B, PAPER.B) < 1e-4, `B=${fit.B}`);
  assert.ok(Math.abs(fit.sStar - optimalSparsity(PAPER)) < 1e-6);
  assert.ok(fit.rmse < 1e-9);
  assert.equal(fit.ci, null);
});

Deno.test("fitScalingLaw: other constants and another N unit are recovered too", async () => {
  // A small-model sweep: 15M–250M parameters, strong sparsity penalty, steeper α.
  const truth = { E: 1.2, B: 0.3, C: 2.5, alpha: 0.3, beta: 0.12, nScale: 1e8 };
  const points = [1.5e7, 4e7, 1e8, 2.5e8].flatMap((N) =>
    SPARSITIES.map((S) => ({ N, S, loss: scalingLaw(truth, N, S) }))
  );
  const fit = await fitScalingLaw(points, { bootstrap: 0 });
  for (const k of ["E", "B", "C", "alpha", "beta"] as const) {
    assert.ok(relErr(fit[k], truth[k]) < 1e-5, `${k}=${fit[k]}`);
  }
  // N in raw parameters (nScale 1): E, α, β unchanged; B and C absorb 1e8^α.
  const raw = await fitScalingLaw(points, { bootstrap: 0, nScale: 1 });
  assert.ok(relErr(raw.alpha, truth.alpha) < 1e-5 && relErr(raw.E, truth.E) < 1e-5);
  assert.ok(relErr(raw.C, truth.C * 1e8 ** truth.alpha) < 1e-4, `C=${raw.C}`);
  assert.ok(Math.abs(scalingLaw(raw, 5e7, 0.3) - scalingLaw(truth, 5e7, 0.3)) < 1e-9);
});

Deno.test("fitScalingLaw: with noise, bootstrap intervals cover the truth", async () => {
  // 0.3% log-loss noise (~0.01 nats), six independent sweeps, 100 resamples each.
  const keys = ["E", "C", "alpha", "beta", "B", "sStar"] as const;
  const truth = { ...PAPER, sStar: optimalSparsity(PAPER) };
  const covered = Object.fromEntries(keys.map((k) => [k, 0])) as Record<
    typeof keys[number],
    number
  >;
  const trials = 6;
  for (let t = 0; t < trials; t++) {
    const fit = await fitScalingLaw(sweep(PAPER, 0.003, 100 + t), { bootstrap: 100, seed: t });
    assert.ok(fit.ci && fit.ci.samples === 100 && fit.ci.level === 0.95);
    for (const k of keys) {
      const [lo, hi] = fit.ci[k];
      assert.ok(
        lo <= fit[k] + 1e-12 || k === "B",
        `${k}: estimate ${fit[k]} below its interval [${lo}, ${hi}]`,
      );
      if (lo <= truth[k] && truth[k] <= hi) covered[k]++;
    }
    assert.ok(Math.abs(fit.sStar - truth.sStar) < 0.1, `S*=${fit.sStar}`);
  }
  console.log(`coverage of 95% intervals over ${trials} sweeps: ${JSON.stringify(covered)}`);
  for (const k of keys) {
    assert.ok(covered[k] >= trials - 1, `${k} covered in ${covered[k]}/${trials}`);
  }
});

Deno.test("fitScalingLaw: the bootstrap is seeded", async () => {
  const points = sweep(PAPER, 0.003, 7);
  const a = await fitScalingLaw(points, { bootstrap: 20, seed: 5 });
  const b = await fitScalingLaw(points, { bootstrap: 20, seed: 5 });
  const c = await fitScalingLaw(points, { bootstrap: 20, seed: 6 });
  assert.deepEqual(a.ci, b.ci);
  assert.notDeepEqual(a.ci, c.ci);
});

Deno.test("fitScalingLaw: rejects bad input with ValueError", async () => {
  const ok = sweep(PAPER);
  await assert.rejects(fitScalingLaw(ok.slice(0, 5)), ValueError);
  await assert.rejects(fitScalingLaw(ok.filter((p) => p.S <= 0.2)), /3 distinct S/);
  await assert.rejects(fitScalingLaw([...ok, { N: 1e9, S: 1, loss: 3 }]), /S must be in \[0, 1\)/);
  await assert.rejects(fitScalingLaw([...ok, { N: -1, S: 0, loss: 3 }]), /N must be > 0/);
  await assert.rejects(fitScalingLaw([...ok, { N: 1e9, S: 0, loss: NaN }]), /loss must be > 0/);
  await assert.rejects(fitScalingLaw(ok, { level: 1.5 }), ValueError);
});

Deno.test("fitDenseLaw: recovers E, A, α; intervals cover them under noise", async () => {
  const truth = { E: 1.7, A: 2.2, alpha: 0.28, nScale: 1e8 };
  const Ns = [1e7, 2e7, 5e7, 1e8, 2e8, 5e8, 1e9];
  const fit = await fitDenseLaw(Ns.map((N) => ({ N, loss: denseLaw(truth, N) })), { bootstrap: 0 });
  for (const k of ["E", "A", "alpha"] as const) {
    assert.ok(relErr(fit[k], truth[k]) < 1e-6, `${k}=${fit[k]}`);
  }
  let state = 9;
  const noise = () =>
    ((state = (Math.imul(state, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5) * 0.004;
  const noisy = Ns.flatMap((N) =>
    [0, 1, 2].map(() => ({ N, loss: denseLaw(truth, N) * Math.exp(noise()) }))
  );
  const nf = await fitDenseLaw(noisy, { bootstrap: 100, seed: 1 });
  for (const k of ["E", "A", "alpha"] as const) {
    assert.ok(
      nf.ci![k][0] <= truth[k] && truth[k] <= nf.ci![k][1],
      `${k}: ${truth[k]} outside ${nf.ci![k]}`,
    );
  }
  await assert.rejects(fitDenseLaw([{ N: 1e8, loss: 3 }]), ValueError);
});

Deno.test("profileScalingLaw: intervals hold the truth under noise and bracket the estimate", async () => {
  const truth = { ...PAPER, sStar: optimalSparsity(PAPER) };
  const keys = ["E", "alpha", "beta", "sStar"] as const;
  let covered = 0, total = 0;
  for (let t = 0; t < 3; t++) {
    const prof = await profileScalingLaw(sweep(PAPER, 0.003, 200 + t));
    assert.equal(prof.dfResidual, SIZES.length * SPARSITIES.length - 5);
    assert.ok(prof.threshold > 0);
    for (const k of keys) {
      const i = prof.intervals[k];
      assert.ok(i.lo <= i.estimate && i.estimate <= i.hi, `${k}: ${JSON.stringify(i)}`);
      total++;
      if (i.lo <= truth[k] && truth[k] <= i.hi) covered++;
    }
    // The S* profile is a real constraint: its ends are strictly inside (0, 0.99) here.
    const s = prof.intervals.sStar;
    assert.ok(!s.lowerOpen && !s.upperOpen && s.hi - s.lo < 0.3, JSON.stringify(s));
  }
  assert.ok(covered >= total - 1, `covered ${covered}/${total}`);
});

Deno.test("profileScalingLaw: a grid with no effect of S leaves β unbounded, S* at the top", async () => {
  // Loss depends on N only: nothing bounds β from below, and at equal N_a more sparsity (a larger
  // N for free) always wins, so S* is pushed towards the top of its range.
  const points = SIZES.flatMap((N, i) =>
    SPARSITIES.map((S, j) => ({
      N,
      S,
      loss: denseLaw({ E: 1.9, A: 1.7, alpha: 0.1 }, N) * (1 + 0.002 * Math.sin(7 * i + j)),
    }))
  );
  const prof = await profileScalingLaw(points);
  const b = prof.intervals.beta, s = prof.intervals.sStar;
  assert.ok(b.lowerOpen, `β ${JSON.stringify(b)}`);
  assert.ok(s.estimate > 0.7 && s.hi > 0.9, `S* ${JSON.stringify(s)}`);
  await assert.rejects(() => profileScalingLaw(points.slice(0, 6)), ValueError);
});
