/**
 * Checked native mode (`QSPARSE_CHECK_NATIVE=1`): a BLAS operand or worker view that runs past
 * its buffer throws a DeviceError at the call, naming the op, instead of corrupting the C heap.
 */
import assert from "node:assert/strict";
import { DeviceError } from "../mod.ts";
import type { ParallelTask } from "../src/backend/backend.ts";
import { NativeBackend } from "../src/backend/native.ts";

function backend(): NativeBackend {
  return new NativeBackend({ checked: true, threads: 2 });
}

Deno.test("native checked: an sgemm whose operand runs past its buffer throws, naming the op", () => {
  const be = backend();
  try {
    if (!be.blas) {
      assert.ok(!Deno.env.get("QSPARSE_REQUIRE_BLAS"), "no BLAS loaded");
      return; // no BLAS on this machine: no sgemm to check
    }
    const a = be.allocate(4 * 4, "t"), c = be.allocate(2 * 2 * 4, "t");
    const run = (m: number) =>
      be.dispatch({
        op: "bad_matmul",
        key: "bad_matmul",
        wgsl: () => "",
        cpu: () => {},
        native: ([ab, cb], rt) => {
          const pa = rt.address(ab!), pc = rt.address(cb!);
          rt.blas!.sgemm(false, false, m, 2, 2, 1, pa, 2, pa, 2, 0, pc, 2);
        },
        buffers: [a, c],
        workgroups: [1, 1, 1],
      });
    run(2); // in bounds
    assert.throws(
      () => run(3),
      (e: unknown) =>
        e instanceof DeviceError && /bad_matmul/.test(e.message) &&
        /sgemm A: 24 bytes at offset 0 run 8 bytes past the end of a 16-byte buffer/.test(
          e.message,
        ),
    );
  } finally {
    be.destroy();
  }
});

Deno.test("native checked: a worker view past its buffer throws, for every chunk", () => {
  const be = backend();
  try {
    const out = be.allocate(1000 * 4, "t");
    // Views `hi` floats: in bounds for n = 1000, past the end for n = 1001 (the last chunk).
    const task: ParallelTask = {
      name: "test_fill_checked",
      run(ctx, args, lo, hi) {
        const v = new Float32Array(ctx.view(args[0]!, hi * 4));
        for (let i = lo; i < hi; i++) v[i] = i;
      },
    };
    const run = (n: number) =>
      be.dispatch({
        op: "bad_fill",
        key: "bad_fill",
        wgsl: () => "",
        cpu: () => {},
        native: ([ob], rt) => rt.parallel(task, n, [rt.address(ob!)]),
        buffers: [out],
        workgroups: [1, 1, 1],
      });
    run(1000);
    assert.throws(
      () => run(1001),
      (e: unknown) =>
        e instanceof DeviceError && /bad_fill/.test(e.message) &&
        /test_fill_checked view: 4004 bytes .* 4 bytes past the end of a 4000-byte buffer/.test(
          e.message,
        ),
    );
  } finally {
    be.destroy();
  }
});

Deno.test("native checked: the description says so", () => {
  const be = backend();
  try {
    assert.match(be.description, /\[checked\]$/);
  } finally {
    be.destroy();
  }
});
