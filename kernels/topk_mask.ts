/**
 * The top-K mask of many short rows as one tunable launch: the per-invocation kernel
 * (kernels/topk_small.ts, the default: best on llvmpipe) offered together with the
 * workgroup-per-row one (kernels/topk_coop.ts, for discrete GPUs). Both select exactly the same
 * entries, so an autotuning device (src/backend/autotune.ts) may run either; host backends run
 * the shared twin.
 *
 * @module
 */
import type { Dispatch, Storage, Tunable } from "../src/backend/backend.ts";
import { bytesPerElement } from "../src/core/dtype.ts";
import { topkCoopDispatch } from "./topk_coop.ts";
import { topkSmallDispatch, type TopkSmallSpec } from "./topk_small.ts";
import { sampleOperand } from "./matmul_tuning.ts";

/** Bumped whenever either kernel changes, so cached choices are measured again. */
const TOPK_MASK_KERNELS_VERSION = 2;

/** The interchangeable kernels, the default first. */
export const TOPK_MASK_VARIANTS = ["topkSmall", "topkCoop"] as const;

/** One of {@link TOPK_MASK_VARIANTS}. */
export type TopkMaskVariant = (typeof TOPK_MASK_VARIANTS)[number];

/** A problem's class: widths and row counts in powers of two (the kernels' costs scale so). */
function pow2(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)));
}

class TopkMaskTunable implements Tunable {
  readonly variants = TOPK_MASK_VARIANTS;
  readonly key: string;

  constructor(
    readonly spec: TopkSmallSpec,
    readonly segs: number,
    readonly d: number,
    readonly k: number,
    readonly op: string,
  ) {
    const s = spec;
    // Keep fraction to a tenth: the bit search costs the same, the tie pass a little more.
    this.key = `topkMask.v${TOPK_MASK_KERNELS_VERSION}:${s.dtype}:${s.order}:` +
      `${s.mask ? "m" : ""}${s.rescale ? "r" : ""}:segs${pow2(segs)}:d${pow2(d)}:` +
      `keep${Math.round((10 * k) / d)}`;
  }

  build(variant: string, buffers: readonly Storage[]): Dispatch {
    return variantDispatch(
      variant as TopkMaskVariant,
      this.spec,
      this.segs,
      this.d,
      this.k,
      [...buffers],
      this.op,
    );
  }

  sampleInputs(): ArrayBufferView[] {
    return [sampleOperand(this.spec.dtype as "f32" | "f16", this.segs * this.d, 3)];
  }

  get outputBytes(): number[] {
    const b = this.segs * this.d * bytesPerElement(this.spec.dtype);
    return this.spec.mask ? [b, b] : [b];
  }

  get outputDType(): "f32" | "f16" {
    return this.spec.dtype === "f16" ? "f16" : "f32";
  }

  get tolerance(): number {
    // The same entries are kept; only the rescale factor's summation order differs.
    return this.spec.rescale ? 1e-5 : 0;
  }
}

// One variant's dispatch (without a `tune`), for the tunable's `build`.
function variantDispatch(
  v: TopkMaskVariant,
  s: TopkSmallSpec,
  segs: number,
  d: number,
  k: number,
  bufs: Storage[],
  op: string,
): Dispatch {
  return v === "topkCoop"
    ? topkCoopDispatch(s, segs, d, k, bufs, op)
    : topkSmallDispatch(s, segs, d, k, bufs, op);
}

/**
 * The top-K mask launch: the default kernel, carrying the alternatives for an autotuning device
 * (f32 and f16 only; other dtypes keep the default).
 *
 * @param s Specialisation.
 * @param segs Segments (rows, or N:M blocks).
 * @param d Segment length.
 * @param k Entries kept per segment.
 * @param bufs x, out, then the mask when `s.mask`.
 * @param op Op name.
 * @returns The dispatch.
 */
export function topkMaskDispatch(
  s: TopkSmallSpec,
  segs: number,
  d: number,
  k: number,
  bufs: Storage[],
  op: string,
): Dispatch {
  const d0 = topkSmallDispatch(s, segs, d, k, bufs, op);
  if (s.dtype === "f32" || s.dtype === "f16") d0.tune = new TopkMaskTunable(s, segs, d, k, op);
  return d0;
}
