/**
 * Row kernels at one lane per row: on a WebGPU software adapter, softmax, RMSNorm (with and
 * without the residual add) and cross-entropy give each row one invocation once a launch has
 * `ONE_LANE_MIN_ROWS` rows (src/ops/row_lanes.ts). Their values and gradients there against the
 * CPU twins, on batches just below and at the threshold (odd row lengths included), and the
 * choice itself.
 */
import assert from "node:assert/strict";
import {
  addRmsNorm,
  crossEntropy,
  logSoftmax,
  mul,
  rmsNorm,
  scope,
  softmax,
  sumAll,
  type Tensor,
} from "../mod.ts";
import { rowLanes } from "../kernels/reduce.ts";
import { ONE_LANE_MIN_ROWS, rowLanesOn } from "../src/ops/row_lanes.ts";
import { cpu, gpu, hostRandom, native } from "./helpers.ts";
import { gradOnBoth } from "./gradcheck.ts";

const software = gpu !== null && /llvmpipe|lavapipe|swiftshader/i.test(gpu.description);

Deno.test("rowLanesOn: one lane per row on a software adapter from the threshold on", () => {
  for (const d of [cpu, native]) assert.equal(rowLanesOn(d, 8192, 128), rowLanes(128));
  if (!gpu) return;
  assert.equal(rowLanesOn(gpu, ONE_LANE_MIN_ROWS - 1, 128), rowLanes(128));
  assert.equal(rowLanesOn(gpu, ONE_LANE_MIN_ROWS, 128), software ? 1 : rowLanes(128));
});

/** Row counts on either side of the threshold, and row lengths that do not divide evenly. */
const CASES: [number, number][] = [
  [ONE_LANE_MIN_ROWS - 1, 64],
  [ONE_LANE_MIN_ROWS, 96],
  [ONE_LANE_MIN_ROWS + 3, 129],
];

/** A loss that weighs every output differently, so each gradient entry is tested. */
function weighted(y: Tensor): Tensor {
  const w = y.device.tensor(hostRandom(y.size, 99), y.shape);
  return sumAll(mul(y, w));
}

Deno.test("softmax and log-softmax (causal, with a bias) at one lane per row", async () => {
  for (const [rows, cols] of CASES) {
    const x = { data: hostRandom(rows * cols, rows, 3), shape: [rows, cols] };
    await gradOnBoth(([a]) => weighted(softmax(a!)), [x], undefined, `softmax [${rows}, ${cols}]`);
    await gradOnBoth(([a]) => weighted(logSoftmax(a!)), [x], undefined, `log [${rows}, ${cols}]`);
    const bias = { data: hostRandom(cols, 5), shape: [1, cols], grad: false };
    await gradOnBoth(
      ([a, b]) => weighted(softmax(a!, { bias: b! })),
      [x, bias],
      undefined,
      `softmax + bias [${rows}, ${cols}]`,
    );
  }
  // Causal scores [B, T, T] with B·T at the threshold.
  const t = 64, b = ONE_LANE_MIN_ROWS / t;
  const s = { data: hostRandom(b * t * t, 7, 2), shape: [b, t, t] };
  await gradOnBoth(([a]) => weighted(softmax(a!, { causal: true })), [s], undefined, "causal");
});

Deno.test("RMSNorm and addRmsNorm at one lane per row", async () => {
  for (const [rows, cols] of CASES) {
    const x = { data: hostRandom(rows * cols, rows, 3), shape: [rows, cols] };
    const r = { data: hostRandom(rows * cols, rows + 1), shape: [rows, cols] };
    const w = { data: hostRandom(cols, 3, 2), shape: [cols] };
    await gradOnBoth(([a, b]) => weighted(rmsNorm(a!, b!)), [x, w], undefined, `rmsNorm ${rows}`);
    await gradOnBoth(
      ([a, c, b]) =>
        scope(() => {
          const [sum, y] = addRmsNorm(a!, c!, b!);
          return sumAll(mul(weighted(sum), weighted(y)));
        }),
      [x, r, w],
      { rtol: 1e-4, atol: 1e-4 },
      `addRmsNorm ${rows}`,
    );
  }
});

Deno.test("cross-entropy at one lane per row", async () => {
  for (const [rows, cols] of CASES) {
    const x = { data: hostRandom(rows * cols, rows, 4), shape: [rows, cols] };
    const targets = Array.from({ length: rows }, (_, i) => (i * 7919) % cols);
    await gradOnBoth(([a]) => crossEntropy(a!, targets), [x], undefined, `CE [${rows}, ${cols}]`);
  }
});
