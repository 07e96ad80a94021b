/**
 * Model shapes for a target parameter count. The fixed-N_a study needs models of
 * N = N_a / (1 − S) non-embedding parameters for several S, and the named sizes are too far
 * apart to hit them; this picks `dModel`, `nLayers` and `dFF` of the named family's shape
 * (head dim 32, GLU width ≈ 8/3·d, one layer per 32 of width but at least two, every width a multiple of
 * 32 so Block Q-Sparse 16:32 still applies) whose N is closest to the target, within a
 * tolerance.
 *
 * @module
 */
import { ValueError } from "../src/core/errors.ts";
import { type ModelConfig, modelConfig, paramCounts } from "../src/nn/config.ts";

/** A shape found by {@link shapeForParams}. */
export interface SizedShape {
  /** Hidden size (a multiple of 32). */
  dModel: number;
  /** Transformer blocks. */
  nLayers: number;
  /** Attention heads (head dim 32). */
  nHeads: number;
  /** GLU width (a multiple of 32). */
  dFF: number;
  /** Its non-embedding parameters. */
  N: number;
  /** `N / target − 1`. */
  relError: number;
}

/** Options of {@link shapeForParams}. */
export interface ShapeOptions {
  /** Largest accepted |N / target − 1|; default 0.03. */
  tolerance?: number;
}

/** Non-embedding parameters of a shape (as `paramCounts` counts them, dense FFN). */
function nonEmbedding(d: number, L: number, f: number): number {
  return L * (4 * d * d + 3 * d * f) + (2 * L + 1) * d;
}

/**
 * The shape of the named family whose non-embedding parameter count is nearest `target`.
 *
 * Candidates: `dModel` a multiple of 32 from 32 to 1024, `nLayers` from 1 to 24, `dFF` a multiple
 * of 32 between 2·d and 3.5·d (around LLaMA's 8/3·d). Among those within `tolerance` of the
 * target, the one closest to the family's aspect ratios wins (|log(L / max(2, d/32))| +
 * |log(f/(8d/3))|),
 * so a model twice as large is wider and deeper, as the named sizes are; ties go to the
 * smaller error. The named sizes come back as themselves (e.g. 332,448 → `xs`: 96, 3, 256).
 *
 * @param target Non-embedding parameters wanted.
 * @param opts Tolerance.
 * @returns The shape, with its exact N and relative error.
 * @throws {ValueError} When no shape is within the tolerance or the target is not positive.
 *
 * @example
 * ```ts
 * import { shapeForParams } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const s = shapeForParams(332448 / (1 - 0.6));
 * assert.ok(Math.abs(s.relError) < 0.03);
 * assert.equal(s.dModel % 32, 0);
 * assert.deepEqual(
 *   [shapeForParams(332448).dModel, shapeForParams(332448).nLayers, shapeForParams(332448).dFF],
 *   [96, 3, 256],
 * );
 * ```
 */
export function shapeForParams(target: number, opts: ShapeOptions = {}): SizedShape {
  const tol = opts.tolerance ?? 0.03;
  if (!(target > 0 && Number.isFinite(target))) {
    throw new ValueError("shapeForParams", `target must be a positive number, got ${target}`);
  }
  let best: (SizedShape & { cost: number }) | null = null;
  for (let d = 32; d <= 1024; d += 32) {
    for (let L = 1; L <= 24; L++) {
      // Solve for f, then try the two multiples of 32 around it.
      const fExact = (target - (2 * L + 1) * d - L * 4 * d * d) / (3 * L * d);
      for (const f of [Math.floor(fExact / 32) * 32, Math.ceil(fExact / 32) * 32]) {
        if (f < 2 * d || f > 3.5 * d) continue;
        const N = nonEmbedding(d, L, f);
        const relError = N / target - 1;
        if (Math.abs(relError) > tol) continue;
        // The named sizes keep two layers below d = 64 and one layer per 32 of width above.
        const depth = Math.max(2, d / 32);
        const cost = Math.abs(Math.log(L / depth)) + Math.abs(Math.log(f / ((8 * d) / 3)));
        if (
          !best || cost < best.cost - 1e-12 ||
          (Math.abs(cost - best.cost) <= 1e-12 && Math.abs(relError) < Math.abs(best.relError))
        ) {
          best = { dModel: d, nLayers: L, nHeads: d / 32, dFF: f, N, relError, cost };
        }
      }
    }
  }
  if (!best) {
    throw new ValueError(
      "shapeForParams",
      `no shape of the family within ${(100 * tol).toFixed(1)}% of ${target} parameters`,
    );
  }
  const { cost: _cost, ...shape } = best;
  return shape;
}

/**
 * A model config of about `target` non-embedding parameters (see {@link shapeForParams}), named
 * `n<thousands>k` (e.g. `n831k`), with any other overrides.
 *
 * @param target Non-embedding parameters wanted.
 * @param overrides Model overrides (sparsity, seqLen, ...); the shape fields are set here.
 * @param opts Tolerance.
 * @returns The config; `paramCounts(config).nonEmbedding` is within the tolerance of `target`.
 *
 * @example
 * ```ts
 * import { paramCounts } from "@qsparse/kit/nn";
 * import { modelForParams } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const c = modelForParams(831120, { sparsity: 0.6 });
 * assert.ok(Math.abs(paramCounts(c).nonEmbedding / 831120 - 1) < 0.03);
 * assert.equal(c.sparsity.down, 0.6);
 * ```
 */
export function modelForParams(
  target: number,
  overrides: Parameters<typeof modelConfig>[1] = {},
  opts: ShapeOptions = {},
): ModelConfig {
  const s = shapeForParams(target, opts);
  const name = `n${Math.round(s.N / 1000)}k`;
  const c = modelConfig(name, {
    ...overrides,
    dModel: s.dModel,
    nLayers: s.nLayers,
    nHeads: s.nHeads,
    dFF: s.dFF,
  });
  // The count above mirrors paramCounts; a mismatch would be a bug in one of them.
  if (paramCounts(c).nonEmbedding !== s.N) {
    throw new ValueError("modelForParams", `parameter count drift for ${name}`);
  }
  return c;
}
