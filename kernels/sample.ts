/**
 * Next-token sampling on the device: greedy (argmax), or temperature sampling restricted by
 * top-K and top-p (nucleus), one invocation per sequence. Generation keeps token ids on the
 * device and reads them back in chunks, so the sampler must not need the host: its uniform
 * random number is a hash of (seed, step, row), not a host draw.
 *
 * Per row, with `s_i = logit_i / temperature` and `m = max s`:
 *
 * - temperature ≤ 0: the first index of the largest logit (ties go to the lower index).
 * - otherwise the kept set is the prefix of the order "larger s first, ties lower index first"
 *   that stops at K entries (top-K, 0 = off) or as soon as its mass Σ exp(s − m) reaches
 *   `topP · Z` (Z the full mass; top-p, 1 = off), whichever comes first. Unlike Hugging Face's
 *   top-K, ties at the K-th value are broken by index, so exactly K are kept.
 * - the token is the first kept index (in index order) whose running mass exceeds `u · Z_kept`.
 *
 * The kept set is found by repeated extraction of the next entry, O(V · kept) per row: cheap for
 * byte vocabularies and small K; a nucleus over a large vocabulary costs more (serial per row).
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { gridStride } from "./common.ts";
import { defineKernel } from "./spec.ts";
import { STEP_VALUE, STEP_VALUES_BINDING, stepValue } from "./step_values.ts";

/** Parameters of one sampling step. */
export interface SampleParams {
  /** Sequences. */
  rows: number;
  /** Vocabulary size V. */
  vocab: number;
  /** Elements between the logits of consecutive rows (T·V for `[B, T, V]` logits). */
  rowStride: number;
  /** Offset of row 0's logits ((T − 1)·V: the last position). */
  rowOffset: number;
  /** Softmax temperature; ≤ 0 is greedy. */
  temperature: number;
  /** Keep at most K candidates (0 = no limit). */
  topK: number;
  /** Keep the smallest prefix whose probability reaches p (≥ 1 = no limit). */
  topP: number;
  /** Random seed of the whole generation. */
  seed: number;
  /** Decode step (a fresh random number per step). */
  step: number;
  /** Row of the history buffer `[C, rows]` this step writes. */
  slot: number;
}

const WG_SAMPLE = 64;

/**
 * The uniform random number of (seed, step, row): a murmur3 finalizer over the mixed words,
 * top 24 bits as a float in [0, 1). Shared by the WGSL and the CPU twin bit for bit.
 *
 * @param seed Generation seed.
 * @param step Decode step.
 * @param row Sequence.
 * @returns u in [0, 1).
 */
export function sampleUniform(seed: number, step: number, row: number): number {
  let h = (seed >>> 0) ^ Math.imul(step >>> 0, 0x9e3779b9) ^ Math.imul(row >>> 0, 0x85ebca6b);
  h >>>= 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return (h >>> 8) / 16777216;
}

const SAMPLE = defineKernel({
  name: "sample",
  bindings: [
    { name: "logits", type: "f32", access: "read" },
    { name: "next", type: "u32", access: "read_write" },
    { name: "hist", type: "u32", access: "read_write" },
    // With step values (a captured decode loop): step `step + sv[1]`, history row `slot + sv[2]`.
    STEP_VALUES_BINDING,
  ],
  params: {
    rows: "u32",
    v: "u32",
    stride: "u32",
    off: "u32",
    temp: "f32",
    topk: "u32",
    topp: "f32",
    seed: "u32",
    step: "u32",
    slot: "u32",
  },
});

/** WGSL of the sampler: binding 0 logits (f32), 1 next ids `[rows]`, 2 history `[C, rows]`. */
export function sampleWgsl(stepValues = false): string {
  const step = stepValues ? `(p.step + sv[${STEP_VALUE.step}])` : "p.step";
  return `${SAMPLE.header({ omit: stepValues ? [] : ["sv"] })}

fn uniform01(row: u32) -> f32 {
  var h = p.seed ^ (${step} * 0x9e3779b9u) ^ (row * 0x85ebca6bu);
  h = h ^ (h >> 16u);
  h = h * 0x85ebca6bu;
  h = h ^ (h >> 13u);
  h = h * 0xc2b2ae35u;
  h = h ^ (h >> 16u);
  return f32(h >> 8u) / 16777216.0;
}

@compute @workgroup_size(${WG_SAMPLE})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG_SAMPLE}u;
  for (var r = gid.x; r < p.rows; r = r + stride) {
    let base = r * p.stride + p.off;
    var best = logits[base];
    var bi = 0u;
    for (var i = 1u; i < p.v; i = i + 1u) {
      let x = logits[base + i];
      if (x > best) { best = x; bi = i; }
    }
    var tok = bi;
    if (p.temp > 0.0) {
      let inv = 1.0 / p.temp;
      let m = best * inv;
      var kmax = p.v;
      if (p.topk > 0u && p.topk < p.v) { kmax = p.topk; }
      // Kept set = everything ordered at or before (lastV, lastI).
      var lastV = -3.0e38;
      var lastI = p.v;
      if (kmax < p.v || p.topp < 1.0) {
        var z = 0.0;
        if (p.topp < 1.0) {
          for (var i = 0u; i < p.v; i = i + 1u) { z = z + exp(logits[base + i] * inv - m); }
        }
        var pv = 3.0e38;
        var pi = 0u;
        var first = true;
        var mass = 0.0;
        for (var c = 0u; c < kmax; c = c + 1u) {
          var nv = -3.0e38;
          var ni = p.v;
          for (var i = 0u; i < p.v; i = i + 1u) {
            let s = logits[base + i] * inv;
            let after = first || s < pv || (s == pv && i > pi);
            if (after && (ni == p.v || s > nv)) { nv = s; ni = i; }
          }
          if (ni == p.v) { break; }
          first = false;
          pv = nv;
          pi = ni;
          mass = mass + exp(nv - m);
          if (p.topp < 1.0 && mass >= p.topp * z) { break; }
        }
        lastV = pv;
        lastI = pi;
      }
      var zk = 0.0;
      for (var i = 0u; i < p.v; i = i + 1u) {
        let s = logits[base + i] * inv;
        if (s > lastV || (s == lastV && i <= lastI)) { zk = zk + exp(s - m); }
      }
      let goal = uniform01(r) * zk;
      var acc = 0.0;
      var pick = p.v;
      for (var i = 0u; i < p.v; i = i + 1u) {
        let s = logits[base + i] * inv;
        if (s > lastV || (s == lastV && i <= lastI)) {
          acc = acc + exp(s - m);
          pick = i;
          if (acc > goal) { break; }
        }
      }
      if (pick < p.v) { tok = pick; }
    }
    next[r] = tok;
    hist[(p.slot${stepValues ? ` + sv[${STEP_VALUE.slot}]` : ""}) * p.rows + r] = tok;
  }
}`;
}

/** CPU twin of {@link sampleWgsl} (f32 arithmetic through `Math.fround`). */
export function sampleCpu(
  p: SampleParams,
  logitsBuf: ArrayBuffer,
  nextBuf: ArrayBuffer,
  histBuf: ArrayBuffer,
): void {
  const fr = Math.fround;
  const logits = new Float32Array(logitsBuf);
  const next = new Uint32Array(nextBuf), hist = new Uint32Array(histBuf);
  const V = p.vocab;
  const temp = fr(p.temperature), topP = fr(p.topP);
  for (let r = 0; r < p.rows; r++) {
    const base = r * p.rowStride + p.rowOffset;
    let best = logits[base]!, bi = 0;
    for (let i = 1; i < V; i++) {
      if (logits[base + i]! > best) {
        best = logits[base + i]!;
        bi = i;
      }
    }
    let tok = bi;
    if (temp > 0) {
      const inv = fr(1 / temp);
      const m = fr(best * inv);
      const sc = (i: number) => fr(logits[base + i]! * inv);
      const kmax = p.topK > 0 && p.topK < V ? p.topK : V;
      let lastV = -3e38, lastI = V;
      if (kmax < V || topP < 1) {
        let z = 0;
        if (topP < 1) { for (let i = 0; i < V; i++) z = fr(z + fr(Math.exp(sc(i) - m))); }
        let pv = 3e38, pi = 0, first = true, mass = 0;
        for (let c = 0; c < kmax; c++) {
          let nv = -3e38, ni = V;
          for (let i = 0; i < V; i++) {
            const s = sc(i);
            const after = first || s < pv || (s === pv && i > pi);
            if (after && (ni === V || s > nv)) {
              nv = s;
              ni = i;
            }
          }
          if (ni === V) break;
          first = false;
          pv = nv;
          pi = ni;
          mass = fr(mass + fr(Math.exp(fr(nv - m))));
          if (topP < 1 && mass >= fr(topP * z)) break;
        }
        lastV = pv;
        lastI = pi;
      }
      const kept = (s: number, i: number) => s > lastV || (s === lastV && i <= lastI);
      let zk = 0;
      for (let i = 0; i < V; i++) {
        const s = sc(i);
        if (kept(s, i)) zk = fr(zk + fr(Math.exp(fr(s - m))));
      }
      const target = fr(fr(sampleUniform(p.seed, p.step, r)) * zk);
      let acc = 0, pick = V;
      for (let i = 0; i < V; i++) {
        const s = sc(i);
        if (kept(s, i)) {
          acc = fr(acc + fr(Math.exp(fr(s - m))));
          pick = i;
          if (acc > target) break;
        }
      }
      if (pick < V) tok = pick;
    }
    next[r] = tok;
    hist[p.slot * p.rows + r] = tok;
  }
}

/**
 * Dispatch of one sampling step.
 *
 * @param p Sizes and sampling settings.
 * @param bufs Logits (f32), next ids `[rows]` (u32), history `[C, rows]` (u32), and optionally
 *   step values (kernels/step_values.ts: the step and history row then add `sv[1]`, `sv[2]`).
 * @returns The dispatch.
 */
export function sampleDispatch(p: SampleParams, bufs: Storage[]): Dispatch {
  const sv = bufs.length > 3;
  return {
    op: "sampleTokens",
    key: sv ? SAMPLE.key("sv") : SAMPLE.key(),
    wgsl: () => sampleWgsl(sv),
    cpu: ([l, n, h, v]) =>
      sampleCpu(
        v
          ? {
            ...p,
            step: p.step + stepValue(v, STEP_VALUE.step),
            slot: p.slot + stepValue(v, STEP_VALUE.slot),
          }
          : p,
        l!,
        n!,
        h!,
      ),
    buffers: bufs,
    uniforms: SAMPLE.uniforms({
      rows: p.rows,
      v: p.vocab,
      stride: p.rowStride,
      off: p.rowOffset,
      temp: p.temperature,
      topk: p.topK,
      topp: p.topP,
      seed: p.seed >>> 0,
      step: p.step >>> 0,
      slot: p.slot,
    }),
    workgroups: gridStride(p.rows, WG_SAMPLE),
  };
}
