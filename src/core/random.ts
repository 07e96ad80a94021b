/**
 * The host PRNG: a counter-based generator whose element i under (seed, offset) is a pure function
 * of (seed, offset + i). It lives in the core so every layer (model init, batch sampling,
 * bootstrap resampling) can draw host-side numbers without importing a kernel; kernels/random.ts
 * builds the WGSL draw and its CPU twin on the same functions, so both agree bit for bit.
 *
 * The mixer is two rounds of the "lowbias32" integer hash (Chris Wellons' hash-prospector),
 * seeded through a third round.
 *
 * @module
 */

/** JS twin of the WGSL `lowbias32`. */
export function lowbias32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  return x;
}

/** The random u32 for counter `c` under `seed`. */
export function randomBits(seed: number, c: number): number {
  return lowbias32((lowbias32((c ^ lowbias32(seed >>> 0)) >>> 0) + (seed >>> 0)) >>> 0);
}

/** Uniform in [0, 1) with 24 random bits (exact in f32). */
export function uniform01(seed: number, c: number): number {
  return (randomBits(seed, c) >>> 8) * (1 / 16777216);
}
