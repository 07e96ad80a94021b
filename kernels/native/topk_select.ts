/**
 * The per-row selection under every native top-K kernel: order keys from the f32 bits, then the
 * K-th largest key by an MSB-first radix select that keeps only the candidates of the chosen
 * bucket for the next digit, so a row costs about two passes over D plus a pass over a shrinking
 * candidate list (O(D), no sort).
 *
 * Keys are signed int32 so plain `>` compares them: by magnitude `bits & 0x7fffffff` (NaN → the
 * largest, above +Inf); by value the usual sign-flip, −0 folded into +0, NaN largest, stored XOR
 * 0x80000000 (the unsigned key of kernels/topk.ts, shifted into signed range). The result is the
 * threshold T (the K-th largest key) and how many keys equal to T are kept: walking the row in
 * index order, an entry is kept when its key is above T or it is one of the first `ties` equal
 * to T — exactly top-K by (key desc, index asc), DESIGN.md's tie and NaN rules.
 *
 * Module state is per thread (each worker has its own copy), so scratch arrays are reused across
 * calls without locking.
 *
 * @module
 */

/** Per-thread scratch: keys of the current row, candidates, digit histogram. */
let keyBuf = new Int32Array(0), candBuf = new Int32Array(0);
const hist = new Int32Array(2048);

/** Keys of the current row (length ≥ the row); filled by {@link rowKeys}. */
export function keyScratch(n: number): Int32Array {
  if (keyBuf.length < n) {
    keyBuf = new Int32Array(Math.max(n, 2 * keyBuf.length));
    candBuf = new Int32Array(keyBuf.length);
  }
  return keyBuf;
}

/**
 * Writes the signed order keys of `bits[start .. start + n)` (f32 bit patterns) to `keys[0..n)`.
 *
 * @param bits The f32 data viewed as int32.
 * @param start First element.
 * @param n Row length.
 * @param byValue Rank by x instead of |x|.
 * @param keys Output keys.
 */
export function rowKeys(
  bits: Int32Array,
  start: number,
  n: number,
  byValue: boolean,
  keys: Int32Array,
): void {
  if (!byValue) {
    for (let j = 0; j < n; j++) {
      const m = bits[start + j]! & 0x7fffffff;
      keys[j] = m > 0x7f800000 ? 0x7fffffff : m;
    }
    return;
  }
  for (let j = 0; j < n; j++) {
    const b = bits[start + j]!;
    keys[j] = (b & 0x7fffffff) > 0x7f800000
      ? 0x7fffffff
      : b === -2147483648
      ? 0
      : b < 0
      ? b ^ 0x7fffffff
      : b;
  }
}

/** Ties kept at the threshold found by the last {@link kthKey} call. */
export let selTies = 0;

/** Digit widths, top digit first: 31 key bits by magnitude, 32 by value. */
const WIDE_MAG = [11, 10, 10], WIDE_VAL = [11, 11, 10];
const NARROW_MAG = [7, 8, 8, 8], NARROW_VAL = [8, 8, 8, 8];

/**
 * The k-th largest of `keys[0..n)` (1 ≤ k ≤ n); sets {@link selTies} to how many keys equal to
 * it are kept (the lowest-index ones).
 *
 * @param keys Signed order keys.
 * @param n Count.
 * @param k Rank, 1..n.
 * @param byValue Value keys (32 bits, stored XOR 0x80000000) rather than magnitude keys (31).
 * @returns The threshold key T.
 */
export function kthKey(keys: Int32Array, n: number, k: number, byValue: boolean): number {
  // Short rows get 8-bit digits: clearing a 2048-bin histogram would cost more than the row.
  const widths = n >= 1024 ? (byValue ? WIDE_VAL : WIDE_MAG) : byValue ? NARROW_VAL : NARROW_MAG;
  const flip = byValue ? -2147483648 : 0;
  let shift = byValue ? 32 : 31;
  let src = keys, count = n, rem = k;
  const cand = candBuf;
  for (let p = 0; p < widths.length; p++) {
    const w = widths[p]!;
    shift -= w;
    const mask = (1 << w) - 1;
    hist.fill(0, 0, mask + 1);
    for (let i = 0; i < count; i++) hist[((src[i]! ^ flip) >>> shift) & mask]++;
    let b = mask, cum = 0;
    while (cum + hist[b]! < rem) cum += hist[b--]!;
    rem -= cum;
    let c = 0;
    for (let i = 0; i < count; i++) {
      const v = src[i]!;
      if ((((v ^ flip) >>> shift) & mask) === b) cand[c++] = v;
    }
    src = cand;
    count = c;
    if (count === rem) {
      // The whole bucket is kept: T is its least key, and every copy of it is kept.
      let t = cand[0]!, ties = 0;
      for (let i = 1; i < count; i++) if (cand[i]! < t) t = cand[i]!;
      for (let i = 0; i < count; i++) if (cand[i] === t) ties++;
      selTies = ties;
      return t;
    }
  }
  // Every key bit is fixed: the remaining candidates all equal T.
  selTies = rem;
  return src[0]!;
}
