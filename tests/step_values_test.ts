/**
 * The kernels that read per-step values from a buffer (kernels/step_values.ts: the KV-cache
 * append, the paired RoPE rotation and the sampler), each launched with the `sv` binding on every
 * backend against its CPU twin given the same values as uniforms: the buffer's entries must land
 * exactly where the uniforms would have put them.
 */
import assert from "node:assert/strict";
import type { Device } from "../mod.ts";
import { kvWriteCpu, kvWriteDispatch, type KvWriteParams } from "../kernels/kv_write.ts";
import { ropeCpu, ropeInvFreq, ropePairDispatch, type RopeParams } from "../kernels/rope.ts";
import { sampleCpu, sampleDispatch, type SampleParams } from "../kernels/sample.ts";
import { assertClose, cpu, gpu, hostRandom, native } from "./helpers.ts";

const devices: Device[] = [cpu, native, ...(gpu ? [gpu] : [])];

for (const dev of devices) {
  Deno.test(`step values: kvWrite, ropePair and the sampler read them as their uniforms would (${dev.kind})`, async () => {
    const sv = dev.tensor(Uint32Array.of(5, 9, 2, 0), [4], "u32");
    try {
      // KV append of T = 2 positions at pos 0 + sv[0] = 5.
      const kp: KvWriteParams = { b: 2, t: 2, h: 3, hd: 4, tMax: 10, pos: 0 };
      const src = hostRandom(2 * 2 * 3 * 4, 1);
      const want = new Float32Array(2 * 3 * 10 * 4);
      kvWriteCpu({ ...kp, pos: 5 }, src.buffer as ArrayBuffer, want.buffer);
      using s = dev.tensor(src, [2, 2, 3, 4]);
      using cache = dev.zeros([2, 3, 10, 4]);
      dev.run(kvWriteDispatch(kp, s.storage("t"), cache.storage("t"), sv.storage("t")));
      assertClose(await cache.data(), want, { atol: 0, rtol: 0 }, "kvWrite");
      // Keys and values in one launch: the same writes as two appends.
      const src2 = hostRandom(2 * 2 * 3 * 4, 2);
      const want2 = new Float32Array(2 * 3 * 10 * 4);
      kvWriteCpu({ ...kp, pos: 5 }, src2.buffer as ArrayBuffer, want2.buffer);
      using s2 = dev.tensor(src2, [2, 2, 3, 4]);
      using ck = dev.zeros([2, 3, 10, 4]), cv = dev.zeros([2, 3, 10, 4]);
      const pair = { src: s2.storage("t"), cache: cv.storage("t") };
      dev.run(kvWriteDispatch(kp, s.storage("t"), ck.storage("t"), sv.storage("t"), pair));
      assertClose(await ck.data(), want, { atol: 0, rtol: 0 }, "kvWrite pair: keys");
      assertClose(await cv.data(), want2, { atol: 0, rtol: 0 }, "kvWrite pair: values");

      // RoPE of q and k at offset 1 + sv[0] = 6.
      const rp: RopeParams = {
        vectors: 2 * 3 * 2,
        t: 3,
        h: 2,
        half: 4,
        offset: 1,
        sign: 1,
        invFreq: ropeInvFreq(8, 10000),
      };
      const q = hostRandom(2 * 3 * 2 * 8, 2), k = hostRandom(2 * 3 * 2 * 8, 3);
      const wq = new Float32Array(q.length), wk = new Float32Array(k.length);
      ropeCpu("f32", { ...rp, offset: 6 }, q.buffer as ArrayBuffer, wq.buffer);
      ropeCpu("f32", { ...rp, offset: 6 }, k.buffer as ArrayBuffer, wk.buffer);
      using tq = dev.tensor(q, [2, 3, 2, 8]), tk = dev.tensor(k, [2, 3, 2, 8]);
      using oq = dev.empty([2, 3, 2, 8], "f32"), ok = dev.empty([2, 3, 2, 8], "f32");
      dev.run(
        ropePairDispatch(
          "f32",
          rp,
          tq.storage("t"),
          oq.storage("t"),
          tk.storage("t"),
          ok.storage("t"),
          sv.storage("t"),
        ),
      );
      // The WGSL angle is f32 like the twin's; sin/cos differ in the last bits on a GPU.
      assertClose(await oq.data(), wq, { atol: 2e-6, rtol: 2e-6 }, "rope q");
      assertClose(await ok.data(), wk, { atol: 2e-6, rtol: 2e-6 }, "rope k");

      // Sampling at step 1 + sv[1] = 10 into history row 0 + sv[2] = 2.
      const sp: SampleParams = {
        rows: 3,
        vocab: 16,
        rowStride: 16,
        rowOffset: 0,
        temperature: 0.9,
        topK: 0,
        topP: 1,
        seed: 7,
        step: 1,
        slot: 0,
      };
      const logits = hostRandom(3 * 16, 4, 3);
      const wantNext = new Uint32Array(3), wantHist = new Uint32Array(4 * 3);
      sampleCpu(
        { ...sp, step: 10, slot: 2 },
        logits.buffer as ArrayBuffer,
        wantNext.buffer,
        wantHist.buffer,
      );
      using tl = dev.tensor(logits, [3, 16]);
      using next = dev.zeros([3], "u32");
      using hist = dev.zeros([4, 3], "u32");
      dev.run(
        sampleDispatch(sp, [
          tl.storage("t"),
          next.storage("t"),
          hist.storage("t"),
          sv.storage("t"),
        ]),
      );
      assert.deepEqual([...await next.data()], [...wantNext]);
      assert.deepEqual([...await hist.data()], [...wantHist]);
    } finally {
      sv.dispose();
    }
  });
}
