/**
 * Shared pieces of the strided-matmul tests: attention's head permutation, a case (stored shapes
 * of both operands and the views), the inverse of a permutation, a case's random inputs, and the
 * run of cases on native and WebGPU against the twin.
 */
import { matmulStrided, type MatmulStridedOptions, ValueError } from "../mod.ts";
import { hostRandom, onBoth } from "./helpers.ts";

/** `[B, T, H, hd]` read as `[B, H, T, hd]`. */
export const HEADS = [0, 2, 1, 3];

/** One case: stored shapes of a and b and the views. */
export interface Case {
  what: string;
  a: number[];
  b: number[];
  opts: MatmulStridedOptions;
}

/** The inverse permutation of `dims`. */
export function inverse(dims: readonly number[]): number[] {
  const inv = new Array<number>(dims.length);
  dims.forEach((d, i) => (inv[d] = i));
  return inv;
}

/** Random host data for a case's operands; `salt` varies the seeds between test files. */
export function caseInputs(c: Case, salt: [number, number]): [Float32Array, Float32Array] {
  const size = (s: number[]) => s.reduce((x, y) => x * y, 1);
  return [hostRandom(size(c.a), size(c.a) + salt[0]), hostRandom(size(c.b), size(c.b) + salt[1])];
}

/** Kernels a strided test may force (`auto` forces none). */
export type ForcedVariant = "auto" | "tiled" | "general" | "gemv";

/**
 * Runs every case with the kernel `variant` forced, on native and WebGPU against the CPU twin
 * (f32 tolerance). A forced vec4 kernel (tiled, GEMV) may refuse a problem it cannot run with a
 * `ValueError`; any other failure throws.
 *
 * @returns How many cases ran.
 */
export async function againstTwin(
  cases: readonly Case[],
  variant: ForcedVariant,
  inputs: (c: Case) => [Float32Array, Float32Array],
): Promise<number> {
  let ran = 0;
  for (const c of cases) {
    const [ha, hb] = inputs(c);
    const opts = { ...c.opts, ...(variant === "auto" ? {} : { variant }) };
    try {
      await onBoth(
        (d) => matmulStrided(d.tensor(ha, c.a), d.tensor(hb, c.b), opts),
        { rtol: 1e-4, atol: 1e-4 },
        `${c.what} (${variant})`,
      );
      ran++;
    } catch (e) {
      if (!((variant === "tiled" || variant === "gemv") && e instanceof ValueError)) throw e;
    }
  }
  return ran;
}
