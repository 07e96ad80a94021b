/**
 * Timing helpers for bench scripts: medians of repeated runs with a warm-up, measured in one
 * process so ratios between kernels are meaningful on a shared, noisy machine.
 */

/** Median of a list of numbers. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Runs `fn` `warmup` times, then `reps` times, and returns the median wall time in ms. */
export async function timeMs(fn: () => Promise<void>, reps = 5, warmup = 1): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    ts.push(performance.now() - t0);
  }
  return median(ts);
}

/** Writes JSON atomically (tmp file + rename) so a killed bench never leaves half a file. */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(value, null, 2) + "\n");
  await Deno.rename(tmp, path);
}

export { codeVersion } from "../src/util/version.ts";
