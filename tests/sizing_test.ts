/**
 * shapeForParams / modelForParams: the named sizes come back as themselves, targets over three
 * decades land within the tolerance with widths the kernels and Block Q-Sparse accept, and an
 * impossible target is a typed error.
 */
import assert from "node:assert/strict";
import { ValueError } from "../mod.ts";
import { modelConfig, NAMED_SIZES, paramCounts } from "../src/nn/mod.ts";
import { modelForParams, shapeForParams } from "../studies/mod.ts";

Deno.test("shapeForParams returns every named size for its own parameter count", () => {
  for (const [name, z] of Object.entries(NAMED_SIZES)) {
    const s = shapeForParams(paramCounts(modelConfig(name)).nonEmbedding);
    assert.deepEqual([s.dModel, s.nLayers, s.nHeads, s.dFF], [
      z.dModel,
      z.nLayers,
      z.nHeads,
      z.dFF,
    ]);
    assert.equal(s.relError, 0);
  }
});

// Below ~100K the family's steps of 32 in width leave gaps wider than 3% (e.g. 38K): callers
// pass a larger tolerance there (the smoke profile uses N_a = 94.5K for that reason).
Deno.test("targets from 100K to 30M land within 3% with head dim 32 and widths % 32 = 0", () => {
  for (let e = 5; e <= Math.log10(3e7); e += 0.02) {
    const target = 10 ** e;
    const s = shapeForParams(target);
    assert.ok(Math.abs(s.N / target - 1) <= 0.03, `${target}: ${s.N}`);
    assert.equal(s.dModel % 32, 0);
    assert.equal(s.dFF % 32, 0);
    assert.equal(s.dModel / s.nHeads, 32);
    assert.ok(s.dFF >= 2 * s.dModel && s.dFF <= 3.5 * s.dModel);
  }
});

Deno.test("the fixed-N_a arms: N = 332,448 / (1 − S) within 3%, a valid config at that S", () => {
  for (const S of [0, 0.3, 0.45, 0.6, 0.75]) {
    const target = 332448 / (1 - S);
    const c = modelForParams(target, { sparsity: S, block: null });
    assert.ok(Math.abs(paramCounts(c).nonEmbedding / target - 1) < 0.03);
    assert.equal(c.sparsity.qkv, S);
    // Block Q-Sparse 16:32 also applies to these widths.
    modelForParams(target, { sparsity: 0.5, block: 32 });
  }
});

Deno.test("a target no shape reaches is a ValueError naming the op", () => {
  assert.throws(
    () => shapeForParams(100),
    (e) => e instanceof ValueError && /shapeForParams/.test(e.message),
  );
  assert.throws(() => shapeForParams(-5), ValueError);
  assert.throws(() => shapeForParams(NaN), ValueError);
  // In a gap of the small sizes: unreachable at 3%, reachable at 10%.
  assert.throws(() => shapeForParams(38109), ValueError);
  assert.ok(Math.abs(shapeForParams(38109, { tolerance: 0.1 }).relError) <= 0.1);
});
