/**
 * Native embedding gather and its deterministic backward (kernels/embedding.ts): the same
 * per-id linked lists in token order and the same summation order as the CPU twin, so the table
 * gradient has the twin's bits.
 *
 * The link pass is a single backward sweep over the ids with a per-id "next occurrence" array
 * (O(N + V), on one thread: each step depends on the previous ones). The accumulation runs over
 * head tokens in parallel: each head owns its id's row, adds its list's gradient rows into it
 * one whole row at a time (a Float32Array store rounds each add, as the twin's `fround` does),
 * and only reads the rows of other tokens.
 *
 * @module
 */
import type { NativeRuntime } from "../../src/backend/backend.ts";
import { launch, type Launchable, launchable, SET_MIN } from "./host_job.ts";

/** `links` value flag: this token is the first occurrence of its id. */
export const LEADER_BIT = 0x80000000;
/** `links` next-pointer meaning "no later occurrence". */
export const NO_NEXT = 0x7fffffff;

/** Gather job over tokens: buffers `[table, ids, out]`, params `[bytesPerElement, d, v]`. */
const gatherJob: Launchable = launchable({
  name: "embeddingGather",
  buffers: 3,
  run(bufs, p, lo, hi) {
    const two = p[0] === 2, d = p[1]!, v = p[2]!;
    const tb = two ? new Uint16Array(bufs[0]!) : new Int32Array(bufs[0]!);
    const o = two ? new Uint16Array(bufs[2]!) : new Int32Array(bufs[2]!);
    const id = new Uint32Array(bufs[1]!);
    for (let t = lo; t < hi; t++) {
      const row = id[t]!, ot = t * d;
      if (row >= v) o.fill(0, ot, ot + d);
      else if (d >= SET_MIN) o.set(tb.subarray(row * d, row * d + d), ot);
      else {
        const src = row * d;
        for (let c = 0; c < d; c++) o[ot + c] = tb[src + c]!;
      }
    }
  },
});

/**
 * Accumulation job over tokens: buffers `[g, ids, links, gtable]`, params `[d]`. Token t does
 * work only when it heads its id's list.
 */
const accumulateJob: Launchable = launchable({
  name: "embeddingAccumulateF32",
  buffers: 4,
  run(bufs, p, lo, hi) {
    const d = p[0]!;
    const g = new Float32Array(bufs[0]!), id = new Uint32Array(bufs[1]!);
    const l = new Uint32Array(bufs[2]!), out = new Float32Array(bufs[3]!);
    for (let t = lo; t < hi; t++) {
      const lt = l[t]!;
      if ((lt & LEADER_BIT) === 0) continue;
      const row = id[t]! * d;
      const gt = t * d;
      for (let c = 0; c < d; c++) out[row + c] = g[gt + c]!;
      for (let u = lt & NO_NEXT; u !== NO_NEXT; u = l[u]! & NO_NEXT) {
        const gu = u * d;
        for (let c = 0; c < d; c++) out[row + c] = out[row + c]! + g[gu + c]!;
      }
    }
  },
});

/** Tasks of this file, for kernels/native/tasks.ts. */
export const EMBEDDING_TASKS = [gatherJob.task, accumulateJob.task];

/**
 * Native embedding gather.
 *
 * @param bytesPerElement Table element size (2 or 4).
 * @param tokens Ids.
 * @param d Width.
 * @param v Vocabulary size.
 * @param bufs `[table, ids, out]`.
 * @param rt The runtime.
 * @example
 * ```ts ignore
 * native: (bufs, rt) => embeddingNative(4, tokens, d, v, bufs, rt)
 * ```
 */
export function embeddingNative(
  bytesPerElement: number,
  tokens: number,
  d: number,
  v: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  if (d <= 0) return;
  launch(rt, gatherJob, tokens, bufs, [bytesPerElement, d, v], {
    align: 1,
    minParallel: Math.max(2, Math.ceil((1 << 16) / d)),
  });
}

/** Per-id next occurrence during the link sweep (grown to the vocabulary). */
let nextOf = new Int32Array(0);

/**
 * Native link pass (same output as the twin): `links[t]` = next token with the same id or
 * `NO_NEXT`, with `LEADER_BIT` on each id's first token; out-of-range ids get `NO_NEXT`.
 *
 * @param n Ids.
 * @param v Vocabulary size.
 * @param ids u32 ids.
 * @param links u32 output.
 * @example
 * ```ts ignore
 * native: ([a, b]) => embeddingLinksNative(n, v, a!, b!)
 * ```
 */
export function embeddingLinksNative(
  n: number,
  v: number,
  ids: ArrayBuffer,
  links: ArrayBuffer,
): void {
  const id = new Uint32Array(ids, 0, n), l = new Uint32Array(links, 0, n);
  // Marking only the ids that occur keeps this O(N) when V ≫ N.
  if (nextOf.length < v) nextOf = new Int32Array(Math.max(v, nextOf.length * 2)).fill(-1);
  for (let t = n - 1; t >= 0; t--) {
    const k = id[t]!;
    if (k >= v) {
      l[t] = NO_NEXT;
      continue;
    }
    const nx = nextOf[k]!;
    l[t] = nx < 0 ? NO_NEXT : nx;
    nextOf[k] = t;
  }
  // After the sweep nextOf[k] is the first occurrence of k: flag it, and reset for the next call.
  for (let t = 0; t < n; t++) {
    const k = id[t]!;
    if (k < v && nextOf[k] === t) l[t] = (l[t]! | LEADER_BIT) >>> 0;
  }
  for (let t = 0; t < n; t++) {
    const k = id[t]!;
    if (k < v) nextOf[k] = -1;
  }
}

/**
 * Native accumulation of the table gradient (f32).
 *
 * @param n Tokens.
 * @param d Width.
 * @param bufs `[g, ids, links, gtable]`.
 * @param rt The runtime.
 * @example
 * ```ts ignore
 * native: dtype === "f32" ? (bufs, rt) => embeddingAccumulateNative(n, d, bufs, rt) : undefined
 * ```
 */
export function embeddingAccumulateNative(
  n: number,
  d: number,
  bufs: ArrayBuffer[],
  rt: NativeRuntime,
): void {
  if (d <= 0) return;
  launch(rt, accumulateJob, n, bufs, [d], {
    align: 1,
    minParallel: Math.max(2, Math.ceil((1 << 16) / d)),
  });
}
