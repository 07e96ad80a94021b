/**
 * The per-row selection under every native top-K kernel, in O(D): order keys from the f32 bits
 * and a histogram of their top 11–12 bits (sign, exponent and 3 mantissa bits) in one pass,
 * then a walk down from the highest occupied bucket to the one holding the K-th key. Every key
 * in a higher bucket is kept and every key in a lower one dropped; only the few keys of that
 * bucket (a few percent of a row for real activations) need ranking, by {@link kthKey}: a short
 * insertion sort, or radix passes over the remaining 20 bits with candidate compaction.
 *
 * Keys are signed int32 so plain `>` compares them: by magnitude `bits & 0x7fffffff` (NaN → the
 * largest, above +Inf); by value the usual sign-flip, −0 folded into +0, NaN largest, stored XOR
 * 0x80000000 (the unsigned key of kernels/topk.ts, shifted into signed range). What is kept is
 * every key above the threshold T plus the first `ties` keys equal to T in index order — exactly
 * top-K by (key desc, index asc), DESIGN.md's tie and NaN rules.
 *
 * Module state is per thread (each worker has its own copy), so scratch arrays are reused across
 * calls without locking, and nothing is allocated per row.
 *
 * @module
 */

/** Bits below the top digit (the histogram has 2¹¹ buckets by magnitude, 2¹² by value). */
export const LOW_BITS = 20;

/** Per-thread scratch: keys of the current row, candidates, histograms. */
let keyBuf = new Int32Array(0), candBuf = new Int32Array(0), idxBuf = new Int32Array(0);
const topHist = new Int32Array(1 << (32 - LOW_BITS));
const lowHist = new Int32Array(1 << 10);

/** Result of the last {@link rowKeysHist} / {@link kthKey} call on this thread. */
export const sel = {
  /** Top digit of the bucket holding the K-th key. */
  bucket: 0,
  /** Keys still to take from that bucket (K minus the keys in higher buckets). */
  rem: 0,
  /** Keys in that bucket. */
  count: 0,
  /** Keys equal to the threshold that are kept (lowest indices first). */
  ties: 0,
};

/**
 * Scratch for a row of `n`: keys, and candidate keys / indices (each of length ≥ n).
 *
 * @param n Row length.
 * @returns The key array.
 */
export function rowScratch(n: number): Int32Array {
  if (keyBuf.length < n) {
    const len = Math.max(n, 2 * keyBuf.length);
    keyBuf = new Int32Array(len);
    candBuf = new Int32Array(len);
    idxBuf = new Int32Array(len);
  }
  return keyBuf;
}

/** Candidate keys scratch (valid after {@link rowScratch}). */
export function candKeys(): Int32Array {
  return candBuf;
}

/** Candidate indices scratch (valid after {@link rowScratch}). */
export function candIdx(): Int32Array {
  return idxBuf;
}

/**
 * Pass 1 of a row: writes the signed order keys of `bits[start .. start + n)` to `keys[0..n)`,
 * histograms their top digits and finds the bucket of the k-th largest (1 ≤ k ≤ n): sets
 * `sel.bucket`, `sel.rem` and `sel.count`. Leaves the histogram cleared.
 *
 * @param bits The f32 data viewed as int32.
 * @param start First element.
 * @param n Row length.
 * @param k Rank, 1..n.
 * @param byValue Rank by x instead of |x|.
 * @param keys Output keys.
 */
export function rowKeysHist(
  bits: Int32Array,
  start: number,
  n: number,
  k: number,
  byValue: boolean,
  keys: Int32Array,
): void {
  const h = topHist;
  let mx = 0, mn = h.length - 1;
  if (!byValue) {
    for (let j = 0; j < n; j++) {
      const m = bits[start + j]! & 0x7fffffff;
      const key = m > 0x7f800000 ? 0x7fffffff : m;
      keys[j] = key;
      const dg = key >>> LOW_BITS;
      h[dg]++;
      mx = Math.max(mx, dg); // branch-free (an if here costs more than the histogram)
      mn = Math.min(mn, dg);
    }
  } else {
    for (let j = 0; j < n; j++) {
      const b = bits[start + j]!;
      const key = (b & 0x7fffffff) > 0x7f800000
        ? 0x7fffffff
        : b === -2147483648
        ? 0
        : b < 0
        ? b ^ 0x7fffffff
        : b;
      keys[j] = key;
      const dg = (key ^ -2147483648) >>> LOW_BITS;
      h[dg]++;
      mx = Math.max(mx, dg); // branch-free (an if here costs more than the histogram)
      mn = Math.min(mn, dg);
    }
  }
  let b = mx, cum = 0;
  while (cum + h[b]! < k) cum += h[b--]!;
  sel.bucket = b;
  sel.rem = k - cum;
  sel.count = h[b]!;
  h.fill(0, mn, mx + 1);
}

/** Top digit of a signed key. */
export function topDigit(key: number, byValue: boolean): number {
  return (byValue ? key ^ -2147483648 : key) >>> LOW_BITS;
}

/**
 * The rem-th largest of `c[0..count)` (1 ≤ rem ≤ count), keys that share their top digit;
 * sets `sel.ties` to how many keys equal to it are kept. Reorders `c`.
 *
 * @param c Candidate keys (signed).
 * @param count How many.
 * @param rem Rank, 1..count.
 * @returns The threshold key T.
 */
export function kthKey(c: Int32Array, count: number, rem: number): number {
  if (count === rem) {
    // The whole bucket is kept: T is its least key, and every copy of it is kept.
    let t = c[0]!, ties = 0;
    for (let i = 1; i < count; i++) if (c[i]! < t) t = c[i]!;
    for (let i = 0; i < count; i++) if (c[i] === t) ties++;
    sel.ties = ties;
    return t;
  }
  if (count <= 32) {
    // Insertion sort, descending.
    for (let i = 1; i < count; i++) {
      const v = c[i]!;
      let j = i - 1;
      while (j >= 0 && c[j]! < v) {
        c[j + 1] = c[j]!;
        j--;
      }
      c[j + 1] = v;
    }
    const t = c[rem - 1]!;
    let ties = 0;
    for (let i = 0; i < rem; i++) if (c[i] === t) ties++;
    sel.ties = ties;
    return t;
  }
  // Radix over the low 20 bits (all candidates share the top digit): 10 + 10, compacting.
  const h = lowHist;
  let n = count, r = rem;
  for (let shift = 10; shift >= 0; shift -= 10) {
    h.fill(0);
    for (let i = 0; i < n; i++) h[(c[i]! >>> shift) & 1023]++;
    let b = 1023, cum = 0;
    while (cum + h[b]! < r) cum += h[b--]!;
    r -= cum;
    let m = 0;
    for (let i = 0; i < n; i++) {
      const v = c[i]!;
      if (((v >>> shift) & 1023) === b) c[m++] = v;
    }
    n = m;
  }
  // Every bit is fixed: the remaining candidates all equal T.
  sel.ties = r;
  return c[0]!;
}

/**
 * The threshold of a whole row after {@link rowKeysHist}: gathers the bucket's keys and ranks
 * them. Sets `sel.ties`.
 *
 * @param keys The row's keys.
 * @param n Row length.
 * @param byValue Value keys.
 * @returns The threshold key T.
 */
export function rowThreshold(keys: Int32Array, n: number, byValue: boolean): number {
  const c = candBuf, b = sel.bucket, flip = byValue ? -2147483648 : 0;
  let m = 0;
  // Branch-free gather: every key is written, only the bucket's advance.
  for (let j = 0; j < n; j++) {
    const key = keys[j]!;
    c[m] = key;
    m += ((((key ^ flip) >>> LOW_BITS) ^ b) - 1) >>> 31;
  }
  return kthKey(c, m, sel.rem);
}

/** Per-thread scratch of the rank-order sort. */
let sortKeys = new Int32Array(0), sortIdx = new Int32Array(0);
let tmpKeys = new Int32Array(0), tmpIdx = new Int32Array(0);
const sortHist = new Int32Array(2048);

/**
 * Scratch arrays (keys, indices) of length ≥ n for {@link sortDescending}.
 *
 * @param n Entries to sort.
 * @returns The key and index arrays to fill.
 */
export function sortScratch(n: number): [Int32Array, Int32Array] {
  if (sortKeys.length < n) {
    const len = Math.max(n, 2 * sortKeys.length);
    sortKeys = new Int32Array(len);
    sortIdx = new Int32Array(len);
    tmpKeys = new Int32Array(len);
    tmpIdx = new Int32Array(len);
  }
  return [sortKeys, sortIdx];
}

/**
 * Sorts the first n (key, index) pairs of {@link sortScratch}'s arrays by key descending, stably
 * (so entries given in index order stay in index order among equal keys): an LSD radix sort in
 * three passes of 11, 11 and 10 bits over the complemented unsigned key. O(n), no comparisons.
 *
 * @param n Entries.
 * @param byValue Value keys (stored XOR 0x80000000) rather than magnitude keys.
 * @returns The sorted (keys, indices) arrays (the scratch or its twin buffer).
 */
export function sortDescending(n: number, byValue: boolean): [Int32Array, Int32Array] {
  const flip = byValue ? -2147483648 : 0, h = sortHist;
  let ka = sortKeys, ia = sortIdx, kb = tmpKeys, ib = tmpIdx;
  for (let shift = 0; shift < 32; shift += 11) {
    const bitsN = shift === 22 ? 10 : 11, mask = (1 << bitsN) - 1;
    h.fill(0, 0, mask + 1);
    for (let i = 0; i < n; i++) h[(~(ka[i]! ^ flip) >>> shift) & mask]++;
    let sum = 0;
    for (let b = 0; b <= mask; b++) {
      const c = h[b]!;
      h[b] = sum;
      sum += c;
    }
    for (let i = 0; i < n; i++) {
      const key = ka[i]!, at = h[(~(key ^ flip) >>> shift) & mask]++;
      kb[at] = key;
      ib[at] = ia[i]!;
    }
    const tk = ka, ti = ia;
    ka = kb;
    ia = ib;
    kb = tk;
    ib = ti;
  }
  return [ka, ia];
}

/**
 * {@link rowKeysHist} for magnitude keys without storing them (the mask kernel recomputes a key
 * from the bits for less than a store and a load cost): sets `sel.bucket`, `sel.rem` and
 * `sel.count`, leaves the histogram cleared.
 *
 * @param bits The f32 data viewed as int32.
 * @param start First element.
 * @param n Row length.
 * @param k Rank, 1..n.
 */
export function magnitudeHist(bits: Int32Array, start: number, n: number, k: number): void {
  const h = topHist;
  let mx = 0, mn = h.length - 1;
  for (let j = start, end = start + n; j < end; j++) {
    const m = bits[j]! & 0x7fffffff;
    const dg = (m > 0x7f800000 ? 0x7fffffff : m) >>> LOW_BITS;
    h[dg]++;
    mx = Math.max(mx, dg);
    mn = Math.min(mn, dg);
  }
  let b = mx, cum = 0;
  while (cum + h[b]! < k) cum += h[b--]!;
  sel.bucket = b;
  sel.rem = k - cum;
  sel.count = h[b]!;
  h.fill(0, mn, mx + 1);
}
