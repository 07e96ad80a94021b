import assert from "node:assert/strict";
import { add, backward, mul, mulScalar, noGrad, recordGroup, sumAll, type Tensor } from "../mod.ts";
import { cpu } from "./helpers.ts";

/** y = (2x, 3x) recorded as one op whose backward counts its calls and what it received. */
function twoOutputs(x: Tensor, seen: (Tensor | null)[][]): readonly Tensor[] {
  const outs = noGrad(() => [mulScalar(x, 2), mulScalar(x, 3)]);
  return recordGroup(outs, "twoOutputs", [x], (gs) => {
    seen.push(gs.map((g) => (g ? mulScalar(g, 1) : null))); // copies: the tape frees gs
    const [ga, gb] = gs;
    const parts = [ga ? mulScalar(ga, 2) : null, gb ? mulScalar(gb, 3) : null];
    return [parts[0] && parts[1] ? add(parts[0], parts[1]) : parts[0] ?? parts[1]];
  });
}

Deno.test("recordGroup: backward runs once, after every consumer of every output", async () => {
  const x = cpu.tensor([1, -2, 3]);
  x.requiresGrad = true;
  const seen: (Tensor | null)[][] = [];
  const [a, b] = twoOutputs(x, seen);
  // a feeds the loss twice (its gradient is a sum), b once, through a later op.
  const w = cpu.tensor([1, 2, 3]);
  const loss = add(add(sumAll(a!), sumAll(mul(a!, w))), sumAll(mulScalar(b!, 5)));
  backward(loss);
  assert.equal(seen.length, 1);
  assert.deepEqual(await seen[0]![0]!.toArray(), [2, 3, 4]); // 1 + w
  assert.deepEqual(await seen[0]![1]!.toArray(), [5, 5, 5]);
  // d/dx = 2·(1 + w) + 3·5
  assert.deepEqual(await x.grad!.toArray(), [19, 21, 23]);
});

Deno.test("recordGroup: an output that no gradient reaches gets null", async () => {
  const x = cpu.tensor([1, 2]);
  x.requiresGrad = true;
  const seen: (Tensor | null)[][] = [];
  const [, b] = twoOutputs(x, seen);
  backward(sumAll(b!));
  assert.equal(seen.length, 1);
  assert.equal(seen[0]![0], null);
  assert.deepEqual(await x.grad!.toArray(), [3, 3]);
});
