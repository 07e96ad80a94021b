/**
 * The split-K sparse GEMV for discrete GPUs (kernels/spmm_wg.ts), each shape forced on the WebGPU
 * adapter and checked against the dense product of the masked input (fixed-K rows in ascending
 * and rank order, CSR rows, tails of D_out, f16 storage), and the tunable spmm offers an
 * autotuning device. Nothing here depends on speed.
 */
import assert from "node:assert/strict";
import { type Device, matmul, toCsr, topkMask, topkRows } from "../mod.ts";
import { spmmDispatch } from "../kernels/spmm.ts";
import { SPMM_SPLIT_SHAPES, spmmSplitDispatch } from "../kernels/spmm_wg.ts";
import { assertClose, cpu, gpu, hostRandom } from "./helpers.ts";

async function check(
  dev: Device,
  name: keyof typeof SPMM_SPLIT_SHAPES,
  rows: number,
  dIn: number,
  dOut: number,
  k: number,
  form: "fixed" | "fixedUnsorted" | "csr",
  dtype: "f32" | "f16" = "f32",
): Promise<void> {
  const hx = hostRandom(rows * dIn, rows + dIn), hw = hostRandom(dIn * dOut, dIn + dOut);
  const cast = (a: Float32Array) => (dtype === "f16" ? new Float16Array(a) : a);
  const x = dev.tensor(cast(hx), [rows, dIn], dtype);
  const w = dev.tensor(cast(hw), [dIn, dOut], dtype);
  const y = dev.empty([rows, dOut], dtype);
  const s = topkRows(x, k, { sorted: form === "fixedUnsorted" });
  const p = { rows, dIn, dOut, k: form === "csr" ? 0 : k, dtype };
  if (form === "csr") {
    const c = toCsr(s);
    const bufs = [c.values, c.colIdx, w, y, c.rowPtr].map((t) => t.storage("t"));
    dev.run(spmmSplitDispatch(name, SPMM_SPLIT_SHAPES[name], p, true, bufs, () => {}));
  } else {
    const bufs = [s.values, s.indices, w, y].map((t) => t.storage("t"));
    dev.run(spmmSplitDispatch(name, SPMM_SPLIT_SHAPES[name], p, false, bufs, () => {}));
  }
  const want = await matmul(
    topkMask(cpu.tensor(cast(hx), [rows, dIn], dtype), k),
    cpu.tensor(cast(hw), [dIn, dOut], dtype),
  ).data();
  const tol = dtype === "f16" ? { rtol: 2e-3, atol: 2e-3 } : { rtol: 1e-4, atol: 1e-4 };
  assertClose(await y.data(), want, tol, `${name} ${form} ${dtype} ${rows}x${dIn}→${dOut} k=${k}`);
}

Deno.test("split-K sparse GEMV: every shape and row layout matches the dense product", async (t) => {
  if (!gpu) return;
  for (const name of Object.keys(SPMM_SPLIT_SHAPES) as (keyof typeof SPMM_SPLIT_SHAPES)[]) {
    await t.step(name, async () => {
      for (const form of ["fixed", "fixedUnsorted", "csr"] as const) {
        await check(gpu!, name, 1, 4096, 64, 1638, form);
        await check(gpu!, name, 3, 96, 36, 5, form); // D_out not a multiple of 4·WX
        await check(gpu!, name, 5, 40, 8, 1, form);
        await check(gpu!, name, 2, 300, 132, 299, form);
      }
      if (gpu!.backend.hasF16) await check(gpu!, name, 2, 256, 64, 100, "fixed", "f16");
    });
  }
});

Deno.test("spmm offers the split-K kernels to an autotuning device for fixed-K rows only", () => {
  const s = { id: -1, bytes: 0 };
  const p = { rows: 1, dIn: 4096, dOut: 4096, k: 1638, dtype: "f32" as const };
  const d = spmmDispatch(p, "fixed", [s, s, s, s]);
  assert.deepEqual(d.tune!.variants, ["rows", ...Object.keys(SPMM_SPLIT_SHAPES)]);
  // Its default builds the same launch as the plain dispatch.
  assert.equal(d.tune!.build("rows", [s, s, s, s]).key, d.key);
  assert.match(d.tune!.build("spmmSplit8x32", [s, s, s, s]).key, /^spmmSplitK:spmmSplit8x32:/);
  // Its tuning inputs are a valid problem: k distinct ascending columns per row.
  const [, idxs] = d.tune!.sampleInputs() as [Float32Array, Uint32Array];
  assert.ok(idxs.every((v, i) => v < p.dIn && (i === 0 || v > idxs[i - 1]!)));
  assert.equal(spmmDispatch({ ...p, k: 0 }, "csr", [s, s, s, s, s]).tune, undefined);
  assert.equal(spmmDispatch({ ...p, dOut: 30 }, "fixed", [s, s, s, s]).tune, undefined);
});
