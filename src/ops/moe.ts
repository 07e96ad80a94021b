/**
 * Mixture-of-experts ops: top-k routing ({@link moeRoute}), grouping of token slots by expert
 * ({@link moeGroup}), the gather into the grouped layout ({@link moeGather}), the grouped
 * matmul over the experts ({@link groupedMatmul}), the gate-weighted combine
 * ({@link moeCombine}) and the router's auxiliary losses ({@link loadBalancingLoss},
 * {@link routerZLoss}). Every float op is differentiable; gradients are exact and
 * deterministic (gathers and scatters follow the grouping's permutation, no atomics).
 *
 * The grouped layout (kernels/moe_layout.ts): one row per kept (token, slot) assignment, experts one
 * after another, each expert's rows in token order. Its row count M is static (N·k, or at most
 * E·capacity with a capacity), so nothing is read back; rows past the live ones are zero.
 *
 * @module
 */
import {
  chunkUnionDispatch,
  groupedMatmulDispatch,
  groupedWeightGradDispatch,
  metaWords,
  MOE_CHUNK,
  moeCombineDispatch,
  moeCombineGatesBackwardDispatch,
  moeCombineRowsBackwardDispatch,
  moeCountDispatch,
  moeGatherBackwardDispatch,
  moeGatherDispatch,
  moePlaceDispatch,
  moeRouteBackwardDispatch,
  moeRouteDispatch,
  moeScanDispatch,
  NONE,
} from "../../kernels/moe.ts";
import { needsGrad, record } from "../autograd/tape.ts";
import { DeviceError, DTypeError, ShapeError, ValueError } from "../core/errors.ts";
import { OWNED_TENSORS } from "../tensor/scope.ts";
import type { Tensor } from "../tensor/tensor.ts";
import { cast, mul, mulScalar, square, sub } from "./elementwise.ts";
import { slice } from "./layout.ts";
import { matmul } from "./matmul.ts";
import { mean, meanAll, sumAll } from "./reduce.ts";
import { logSoftmax } from "./softmax.ts";

function checkF32(op: string, x: Tensor, what: string): asserts x is Tensor<"f32"> {
  if (x.dtype !== "f32") throw new DTypeError(op, `${what} must be f32, got ${x.dtype} ${x}`);
}

function checkSameDevice(op: string, a: Tensor, b: Tensor): void {
  if (a.device !== b.device) {
    throw DeviceError.mismatch(op, [a.shape, b.shape], "tensors live on different devices");
  }
}

/** Options of {@link moeRoute}. */
export interface MoeRouteOptions {
  /**
   * Renormalise the gates over the chosen k (`g_j = p_j / Σ_chosen p`), as Mixtral does
   * (default true). With false the gate is the router probability itself (Switch). Note that
   * for k = 1 a renormalised gate is the constant 1, so the router gets no gradient from the
   * model's loss, only from the auxiliary losses.
   */
  normalize?: boolean;
}

/** The routing of N tokens: which k experts each token goes to, and with what weight. */
export interface MoeRouting {
  /** Chosen experts `[N, k]` (u32), highest probability first; ties go to the lower index. */
  experts: Tensor<"u32">;
  /** Gates `[N, k]` (f32), differentiable with respect to the probabilities. */
  gates: Tensor<"f32">;
}

/**
 * Top-k routing per token: the k experts of highest router probability (ties to the lower
 * expert index, NaN above every number, as PyTorch's `topk`) and their gates, renormalised over
 * the chosen k by default.
 *
 * Gradient (gates → probabilities): for renormalised gates `∂L/∂p_i = (∂L/∂g_i − Σ_j ∂L/∂g_j
 * g_j) / S` on the chosen experts (S = Σ_chosen p), 0 elsewhere; for raw gates the identity on
 * the chosen experts.
 *
 * @param probs Router probabilities `[N, E]` (f32), e.g. `softmax(x · W_router)`.
 * @param k Experts per token, 1..E.
 * @param opts Gate normalisation.
 * @returns The chosen experts and their gates.
 *
 * @example
 * ```ts
 * import { moeRoute, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using probs = dev.tensor([[0.1, 0.6, 0.3], [0.25, 0.25, 0.5]]);
 * const { experts, gates } = moeRoute(probs, 2);
 * assert.deepEqual(await experts.toArray(), [[1, 2], [2, 0]]); // tie 0.25/0.25 → lower index
 * const g = await gates.data();
 * assert.ok(Math.abs(g[0]! - 2 / 3) < 1e-6 && Math.abs(g[3]! - 1 / 3) < 1e-6);
 * ```
 */
export function moeRoute(
  probs: Tensor<"f32">,
  k: number,
  opts: MoeRouteOptions = {},
): MoeRouting {
  const op = "moeRoute";
  checkF32(op, probs, "probs");
  if (probs.rank !== 2) throw ShapeError.mismatch(op, [probs.shape], "probs must be [N, E]");
  const [n, e] = probs.shape as [number, number];
  if (!Number.isInteger(k) || k < 1 || k > e) {
    throw ShapeError.mismatch(
      op,
      [probs.shape],
      `k must be an integer in 1..E (E = ${e}), got ${k}`,
    );
  }
  const norm = opts.normalize ?? true;
  const dev = probs.device;
  const experts = dev.empty([n, k], "u32", op);
  const gates = dev.empty([n, k], "f32", op);
  if (n > 0) {
    dev.run(
      moeRouteDispatch(n, e, k, norm, probs.storage(op), experts.storage(op), gates.storage(op)),
    );
  }
  if (needsGrad(probs)) {
    record(gates, op, [probs], (g) => {
      const bop = "moeRouteBackward";
      const gp = dev.empty([n, e], "f32", bop);
      if (n > 0) {
        dev.run(
          moeRouteBackwardDispatch(
            n,
            e,
            k,
            norm,
            probs.storage(bop),
            experts.storage(bop),
            g.storage(bop),
            gp.storage(bop),
          ),
        );
      }
      return [gp];
    });
  }
  return { experts, gates };
}

/**
 * Rows an expert may keep under a capacity factor: `⌈factor · k · N / E⌉` (at least 1), the
 * Switch/GShard definition extended to k slots per token.
 *
 * @param tokens Tokens N in the batch.
 * @param k Slots per token.
 * @param experts Experts E.
 * @param factor Capacity factor (> 0); 1 is exactly the balanced share.
 * @returns The per-expert capacity in rows.
 *
 * @example
 * ```ts
 * import { expertCapacity } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * assert.equal(expertCapacity(64, 2, 8, 1.25), 20);
 * assert.throws(() => expertCapacity(64, 2, 8, 0), /capacity/);
 * ```
 */
export function expertCapacity(tokens: number, k: number, experts: number, factor: number): number {
  if (!(factor > 0) || !Number.isFinite(factor)) {
    throw new ValueError("expertCapacity", `capacity factor must be > 0, got ${factor}`);
  }
  return Math.max(1, Math.ceil((factor * k * tokens) / experts - 1e-9));
}

/** Options of {@link moeGroup}. */
export interface MoeGroupOptions {
  /**
   * Rows each expert keeps (see {@link expertCapacity}); assignments past it, in token order,
   * are dropped (the token keeps only its residual for that slot). Default: no dropping.
   */
  capacity?: number;
}

/**
 * The grouping of N·k assignments by expert (produced by {@link moeGroup}). Owns `pos`,
 * `perm` and `meta`; `experts` is the routing's tensor, referenced.
 *
 * @example
 * ```ts
 * import { moeGroup, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using ex = dev.tensor(new Uint32Array([1, 0, 1, 2]), [2, 2], "u32");
 * using g = moeGroup(ex, 3);
 * assert.equal(g.rows, 4);
 * assert.deepEqual([...await g.perm.data()], [1, 0, 2, 3]); // expert 0: a1; expert 1: a0, a2; expert 2: a3
 * assert.deepEqual((await g.readMeta()).offsets, [0, 1, 3, 4]);
 * ```
 */
export class MoeGrouping implements Disposable {
  /** Tokens N. */
  readonly tokens: number;
  /** Slots per token k. */
  readonly slots: number;
  /** Experts E. */
  readonly numExperts: number;
  /** Rows per expert kept, or null (no dropping). */
  readonly capacity: number | null;
  /** Grouped rows M (static; rows past the live count are zero). */
  readonly rows: number;
  /** Expert of each assignment `[N, k]` (u32, the routing's tensor). */
  readonly experts: Tensor<"u32">;
  /** Grouped row of each assignment `[N·k]`, or 0xffffffff when dropped. */
  readonly pos: Tensor<"u32">;
  /** Assignment of each grouped row `[M]`, or 0xffffffff for unused rows. */
  readonly perm: Tensor<"u32">;
  /** Offsets `[E + 1]`, raw load `[E]` and the dropped count, packed `[2E + 2]` (u32). */
  readonly meta: Tensor<"u32">;

  /**
   * Wraps grouping tensors; use {@link moeGroup}.
   *
   * @param parts Sizes and tensors.
   */
  constructor(parts: {
    tokens: number;
    slots: number;
    numExperts: number;
    capacity: number | null;
    experts: Tensor<"u32">;
    pos: Tensor<"u32">;
    perm: Tensor<"u32">;
    meta: Tensor<"u32">;
  }) {
    this.tokens = parts.tokens;
    this.slots = parts.slots;
    this.numExperts = parts.numExperts;
    this.capacity = parts.capacity;
    this.experts = parts.experts;
    this.pos = parts.pos;
    this.perm = parts.perm;
    this.meta = parts.meta;
    this.rows = parts.perm.shape[0]!;
  }

  /**
   * Reads the offsets, the load per expert and the dropped count (flushes the device).
   *
   * @returns Host copies.
   */
  async readMeta(): Promise<{ offsets: number[]; load: number[]; dropped: number }> {
    const e = this.numExperts;
    const m = await this.meta.data();
    return {
      offsets: Array.from(m.subarray(0, e + 1)),
      load: Array.from(m.subarray(e + 1, 2 * e + 1)),
      dropped: m[2 * e + 1]!,
    };
  }

  /** Frees `pos`, `perm` and `meta` (not the routing's `experts`). */
  dispose(): void {
    this.pos.dispose();
    this.perm.dispose();
    this.meta.dispose();
  }

  /** Frees the tensors at the end of a `using` block. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** The tensors a {@link scope} must keep when this is returned. @returns The tensors. */
  [OWNED_TENSORS](): Tensor[] {
    return [this.experts, this.pos, this.perm, this.meta];
  }

  /** A short description. @returns e.g. `MoeGrouping N=64 k=2 E=8 M=128`. */
  toString(): string {
    const cap = this.capacity === null ? "" : ` capacity=${this.capacity}`;
    return `MoeGrouping N=${this.tokens} k=${this.slots} E=${this.numExperts} M=${this.rows}${cap}`;
  }
}

/**
 * Groups the (token, slot) assignments by expert: counts per expert, prefix sums and a stable
 * permutation (within an expert, rows are in token order), with optional capacity dropping
 * (first come, first served in token order). Three integer passes, no readback, deterministic.
 * Experts ≥ E in `experts` are dropped and not counted.
 *
 * @param experts Expert of each slot `[N, k]` (u32), e.g. `moeRoute(...).experts`.
 * @param numExperts E.
 * @param opts Capacity (rows per expert).
 * @returns The grouping.
 *
 * @example
 * ```ts
 * import { moeGroup, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using ex = dev.tensor(new Uint32Array([0, 0, 0, 1]), [4, 1], "u32");
 * using g = moeGroup(ex, 2, { capacity: 2 });
 * const m = await g.readMeta();
 * assert.deepEqual(m.load, [3, 1]);
 * assert.equal(m.dropped, 1); // the third token to expert 0 is over capacity
 * assert.deepEqual([...await g.pos.data()], [0, 1, 0xffffffff, 2]);
 * ```
 */
export function moeGroup(
  experts: Tensor<"u32">,
  numExperts: number,
  opts: MoeGroupOptions = {},
): MoeGrouping {
  const op = "moeGroup";
  if (experts.dtype !== "u32") {
    throw new DTypeError(op, `experts must be u32, got ${experts.dtype} ${experts}`);
  }
  if (experts.rank !== 2) throw ShapeError.mismatch(op, [experts.shape], "experts must be [N, k]");
  if (!Number.isInteger(numExperts) || numExperts < 1) {
    throw new ValueError(op, `numExperts must be an integer ≥ 1, got ${numExperts}`);
  }
  const [n, k] = experts.shape as [number, number];
  const cap = opts.capacity;
  if (cap !== undefined && (!Number.isInteger(cap) || cap < 1)) {
    throw new ValueError(op, `capacity must be an integer ≥ 1 (rows per expert), got ${cap}`);
  }
  const e = numExperts, nk = n * k;
  const m = cap === undefined ? nk : Math.min(nk, e * cap);
  const chunks = Math.max(1, Math.ceil(nk / MOE_CHUNK));
  const p = { nk, e, chunks, cap: cap ?? NONE, m };
  const dev = experts.device;
  const counts = dev.empty([chunks * e], "u32", op);
  const meta = dev.empty([metaWords(e)], "u32", op);
  const pos = dev.empty([nk], "u32", op);
  const perm = dev.empty([m], "u32", op);
  const ex = experts.storage(op);
  dev.run(moeCountDispatch(p, ex, counts.storage(op)));
  dev.run(moeScanDispatch(p, counts.storage(op), meta.storage(op)));
  dev.run(
    moePlaceDispatch(
      p,
      ex,
      counts.storage(op),
      meta.storage(op),
      pos.storage(op),
      perm.storage(op),
    ),
  );
  counts.dispose();
  return new MoeGrouping({
    tokens: n,
    slots: k,
    numExperts: e,
    capacity: cap ?? null,
    experts,
    pos,
    perm,
    meta,
  });
}

function checkTokens(op: string, x: Tensor, g: MoeGrouping, what: string): void {
  if (x.rank !== 2 || x.shape[0] !== g.tokens) {
    throw ShapeError.mismatch(op, [x.shape], `${what} must be [N, d] with N = ${g.tokens} (${g})`);
  }
  checkSameDevice(op, x, g.experts);
}

function checkRows(op: string, x: Tensor, g: MoeGrouping, what: string): void {
  if (x.rank !== 2 || x.shape[0] !== g.rows) {
    throw ShapeError.mismatch(op, [x.shape], `${what} must be [M, d] with M = ${g.rows} (${g})`);
  }
  checkSameDevice(op, x, g.experts);
}

/**
 * Gathers token rows into the grouped layout: row r is `x[token of perm[r]]` (zero for unused
 * rows). Gradient: each token receives the sum of its rows' gradients, in slot order.
 *
 * @param x Token rows `[N, d]` (f32).
 * @param grouping From {@link moeGroup}.
 * @returns Grouped rows `[M, d]`.
 *
 * @example
 * ```ts
 * import { moeGather, moeGroup, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using ex = dev.tensor(new Uint32Array([1, 0]), [2, 1], "u32");
 * using g = moeGroup(ex, 2);
 * using xg = moeGather(dev.tensor([[1, 2], [3, 4]]), g);
 * assert.deepEqual(await xg.toArray(), [[3, 4], [1, 2]]); // expert 0's row first
 * ```
 */
export function moeGather(x: Tensor<"f32">, grouping: MoeGrouping): Tensor<"f32"> {
  const op = "moeGather";
  checkF32(op, x, "x");
  checkTokens(op, x, grouping, "x");
  const d = x.shape[1]!, m = grouping.rows, n = grouping.tokens, k = grouping.slots;
  const dev = x.device;
  const out = dev.empty([m, d], "f32", op);
  if (out.size > 0) {
    dev.run(moeGatherDispatch(m, d, k, x.storage(op), grouping.perm.storage(op), out.storage(op)));
  }
  if (needsGrad(x)) {
    record(out, op, [x], (g) => {
      const bop = "moeGatherBackward";
      const dx = dev.empty([n, d], "f32", bop);
      if (dx.size > 0) {
        dev.run(
          moeGatherBackwardDispatch(
            n,
            d,
            k,
            g.storage(bop),
            grouping.pos.storage(bop),
            dx.storage(bop),
          ),
        );
      }
      return [dx];
    });
  }
  return out;
}

/** Options of {@link groupedMatmul}. */
export interface GroupedMatmulOptions {
  /** Read each expert matrix transposed: `w` is `[E, n, k]` and rows get `x · w[e]ᵀ`. */
  transposeB?: boolean;
}

/**
 * Grouped matmul over the experts: every grouped row times its own expert's matrix,
 * `out[r, :] = x[r, :] · w[e(r)]` with w stacked `[E, k, n]` (W stored `[in, out]` as in
 * `Linear`). Unused rows stay zero.
 *
 * Gradients: `dx = g · w[e]ᵀ` (the same kernel, transposed) and
 * `dw[e] = Σ_{rows of e} x[r]ᵀ · g[r]`, each element summed over the expert's rows in order.
 *
 * @param x Grouped rows `[M, k]` (f32).
 * @param w Stacked expert matrices `[E, k, n]` (or `[E, n, k]` with `transposeB`).
 * @param grouping From {@link moeGroup}.
 * @param opts Transposed matrices.
 * @returns `[M, n]`.
 *
 * @example
 * ```ts
 * import { groupedMatmul, moeGather, moeGroup, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using ex = dev.tensor(new Uint32Array([1, 0]), [2, 1], "u32");
 * using g = moeGroup(ex, 2);
 * using xg = moeGather(dev.tensor([[1, 2], [3, 4]]), g);
 * using w = dev.tensor([[[1], [0]], [[0], [1]]]); // expert 0 takes column 0, expert 1 column 1
 * using y = groupedMatmul(xg, w, g);
 * assert.deepEqual(await y.toArray(), [[3], [2]]);
 * ```
 */
export function groupedMatmul(
  x: Tensor<"f32">,
  w: Tensor<"f32">,
  grouping: MoeGrouping,
  opts: GroupedMatmulOptions = {},
): Tensor<"f32"> {
  const op = "groupedMatmul";
  checkF32(op, x, "x");
  checkF32(op, w, "w");
  checkRows(op, x, grouping, "x");
  checkSameDevice(op, x, w);
  const tb = opts.transposeB ?? false;
  const e = grouping.numExperts;
  if (w.rank !== 3 || w.shape[0] !== e) {
    throw ShapeError.mismatch(op, [x.shape, w.shape], `w must be [E, k, n] with E = ${e}`);
  }
  const k = x.shape[1]!;
  const [wr, wc] = [w.shape[1]!, w.shape[2]!];
  const inner = tb ? wc : wr, n = tb ? wr : wc;
  if (inner !== k) {
    throw ShapeError.mismatch(
      op,
      [x.shape, w.shape],
      `inner dims differ: x has ${k} columns, each expert matrix ${inner} rows${
        tb ? " (transposeB)" : ""
      }`,
    );
  }
  const m = grouping.rows;
  const dev = x.device;
  const out = dev.empty([m, n], "f32", op);
  if (out.size > 0) {
    dev.run(
      groupedMatmulDispatch(
        { m, k, n, e, transposeB: tb },
        x.storage(op),
        w.storage(op),
        grouping.meta.storage(op),
        out.storage(op),
      ),
    );
  }
  if (needsGrad(x, w)) {
    record(out, op, [x, w], (g) => {
      const bop = "groupedMatmulBackward";
      const gx = x.requiresGrad
        ? groupedMatmul(g as Tensor<"f32">, w, grouping, { transposeB: !tb })
        : null;
      let gw: Tensor | null = null;
      if (w.requiresGrad) {
        // dW[e] = Σ xᵀ·g over the expert's rows; with transposeB the stored matrix is its transpose.
        const [a, b] = tb ? [g, x] : [x, g];
        const ka = a.shape[1]!, nb = b.shape[1]!;
        gw = dev.empty([e, ka, nb], "f32", bop);
        if (gw.size > 0) {
          dev.run(
            groupedWeightGradDispatch(
              e,
              ka,
              nb,
              a.storage(bop),
              b.storage(bop),
              grouping.meta.storage(bop),
              gw.storage(bop),
            ),
          );
        }
      }
      return [gx, gw];
    });
  }
  return out;
}

/**
 * Weighted combine of the experts' outputs: `y[t, :] = Σ_j gates[t, j] · yg[pos[t·k + j], :]`
 * (slot order; dropped slots add nothing).
 *
 * Gradients: `dyg[r] = gate[a] · g[t]` for the row of assignment a = (t, j), and
 * `dgates[t, j] = ⟨g[t], yg[pos[a]]⟩` (0 when dropped).
 *
 * @param yg Expert outputs in the grouped layout `[M, d]` (f32).
 * @param gates `[N, k]` (f32), from {@link moeRoute}.
 * @param grouping From {@link moeGroup}.
 * @returns `[N, d]`.
 *
 * @example
 * ```ts
 * import { moeCombine, moeGroup, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using ex = dev.tensor(new Uint32Array([0, 1]), [1, 2], "u32");
 * using g = moeGroup(ex, 2);
 * using y = moeCombine(dev.tensor([[1, 1], [10, 20]]), dev.tensor([[0.75, 0.25]]), g);
 * assert.deepEqual(await y.toArray(), [[3.25, 5.75]]);
 * ```
 */
export function moeCombine(
  yg: Tensor<"f32">,
  gates: Tensor<"f32">,
  grouping: MoeGrouping,
): Tensor<"f32"> {
  const op = "moeCombine";
  checkF32(op, yg, "yg");
  checkF32(op, gates, "gates");
  checkRows(op, yg, grouping, "yg");
  const n = grouping.tokens, k = grouping.slots, m = grouping.rows, d = yg.shape[1]!;
  if (gates.rank !== 2 || gates.shape[0] !== n || gates.shape[1] !== k) {
    throw ShapeError.mismatch(op, [yg.shape, gates.shape], `gates must be [N, k] = [${n}, ${k}]`);
  }
  checkSameDevice(op, yg, gates);
  const dev = yg.device;
  const out = dev.empty([n, d], "f32", op);
  if (out.size > 0) {
    dev.run(
      moeCombineDispatch(
        n,
        d,
        k,
        yg.storage(op),
        gates.storage(op),
        grouping.pos.storage(op),
        out.storage(op),
      ),
    );
  }
  if (needsGrad(yg, gates)) {
    record(out, op, [yg, gates], (g) => {
      const bop = "moeCombineBackward";
      let gy: Tensor | null = null, gg: Tensor | null = null;
      if (yg.requiresGrad) {
        gy = dev.empty([m, d], "f32", bop);
        if (gy.size > 0) {
          dev.run(
            moeCombineRowsBackwardDispatch(
              m,
              d,
              k,
              g.storage(bop),
              gates.storage(bop),
              grouping.perm.storage(bop),
              gy.storage(bop),
            ),
          );
        }
      }
      if (gates.requiresGrad) {
        gg = dev.empty([n, k], "f32", bop);
        if (gg.size > 0) {
          dev.run(
            moeCombineGatesBackwardDispatch(
              n * k,
              d,
              k,
              g.storage(bop),
              yg.storage(bop),
              grouping.pos.storage(bop),
              gg.storage(bop),
            ),
          );
        }
      }
      return [gy, gg];
    });
  }
  return out;
}

/**
 * The load-balancing auxiliary loss in the Switch/GShard form, `E · Σ_e f_e · P_e`, where
 * `f_e` is the fraction of the N·k assignments routed to expert e (before capacity dropping; a
 * count, not differentiated) and `P_e` the mean router probability of e over the tokens
 * (differentiated). It is 1 for a perfectly balanced router and approaches E/k as the router
 * collapses onto k experts. Multiply by the coefficient yourself.
 *
 * @param probs Router probabilities `[N, E]` (f32).
 * @param grouping The grouping of the same tokens.
 * @returns A scalar.
 *
 * @example
 * ```ts
 * import { loadBalancingLoss, moeGroup, moeRoute, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using probs = dev.tensor([[0.9, 0.1], [0.2, 0.8]]);
 * const r = moeRoute(probs, 1);
 * using l = loadBalancingLoss(probs, moeGroup(r.experts, 2));
 * assert.ok(Math.abs((await l.item()) - 2 * (0.5 * 0.55 + 0.5 * 0.45)) < 1e-6);
 * ```
 */
export function loadBalancingLoss(probs: Tensor<"f32">, grouping: MoeGrouping): Tensor<"f32"> {
  const op = "loadBalancingLoss";
  checkF32(op, probs, "probs");
  const n = grouping.tokens, e = grouping.numExperts, k = grouping.slots;
  if (probs.rank !== 2 || probs.shape[0] !== n || probs.shape[1] !== e) {
    throw ShapeError.mismatch(
      op,
      [probs.shape],
      `probs must be [N, E] = [${n}, ${e}] (${grouping})`,
    );
  }
  const dev = probs.device;
  const load = cast(slice(grouping.meta, e + 1, 2 * e + 1), "f32");
  const f = mulScalar(load, 1 / Math.max(1, n * k));
  // Mean over tokens as a [1, N]·[N, E] product: one dispatch, and its gradient is a broadcast.
  const P = matmul(dev.full([1, n], 1 / Math.max(1, n)), probs);
  return mulScalar(sumAll(mul(P.reshape([e]), f)), e);
}

/**
 * The router z-loss of ST-MoE: the mean over tokens of `(log Σ_e exp(logits[t, e]))²`. It keeps
 * router logits small (numerically safer softmax). Multiply by the coefficient yourself.
 *
 * @param logits Router logits `[N, E]` (f32).
 * @returns A scalar.
 *
 * @example
 * ```ts
 * import { openDevice, routerZLoss } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using z = routerZLoss(dev.tensor([[0, 0], [1, 1]]));
 * const l0 = Math.LN2, l1 = 1 + Math.LN2;
 * assert.ok(Math.abs((await z.item()) - (l0 * l0 + l1 * l1) / 2) < 1e-5);
 * ```
 */
export function routerZLoss(logits: Tensor<"f32">): Tensor<"f32"> {
  const op = "routerZLoss";
  checkF32(op, logits, "logits");
  if (logits.rank !== 2) throw ShapeError.mismatch(op, [logits.shape], "logits must be [N, E]");
  // x − logSoftmax(x) is log Σ exp(x) in every column; the row mean keeps it stable and exact.
  const lse = mean(sub(logits, logSoftmax(logits)));
  return meanAll(square(lse));
}

/** Geometry of {@link chunkUnion}. */
export interface ChunkUnionOptions {
  /** Tokens per chunk (consecutive tokens of one sequence). */
  chunk: number;
  /** Tokens per sequence: chunks never span two sequences (the last one may be short). */
  seqLen: number;
}

/**
 * Chunk-level usage of a site's weight rows: for every chunk of consecutive tokens and every
 * expert, a 0/1 flag per input column saying whether any token of the chunk routed to that
 * expert has a nonzero there (the union of the chunk's masks). `1 − mean(flags)` is BlockFFN's
 * chunk-level sparsity; an expert no token of the chunk reaches contributes a row of zeros.
 *
 * @param h The site's masked input: grouped rows `[M, w]` with their grouping (MoE), or token
 *   rows `[N, w]` with `grouping` null (dense; tokens in sequence order).
 * @param grouping The grouping of `h`'s rows, or null for token rows.
 * @param opts Chunk size and sequence length.
 * @returns f32 `[chunks, E, w]` (E = 1 for a dense site).
 *
 * @example
 * ```ts
 * import { chunkUnion, meanAll, openDevice } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using h = dev.tensor([[1, 0, 0], [0, 2, 0], [0, 0, 3], [0, 0, 4]]);
 * using u = chunkUnion(h, null, { chunk: 2, seqLen: 4 });
 * assert.deepEqual(await u.toArray(), [[[1, 1, 0]], [[0, 0, 1]]]);
 * assert.equal(1 - await meanAll(u).item(), 0.5);
 * ```
 */
export function chunkUnion(
  h: Tensor<"f32">,
  grouping: MoeGrouping | null,
  opts: ChunkUnionOptions,
): Tensor<"f32"> {
  const op = "chunkUnion";
  checkF32(op, h, "h");
  if (h.rank !== 2) throw ShapeError.mismatch(op, [h.shape], "h must be [rows, w]");
  const { chunk, seqLen } = opts;
  if (!Number.isInteger(chunk) || chunk < 1 || !Number.isInteger(seqLen) || seqLen < 1) {
    throw new ValueError(op, `chunk and seqLen must be integers ≥ 1, got ${chunk} and ${seqLen}`);
  }
  const w = h.shape[1]!;
  const dev = h.device;
  let tokens: number, e: number, k: number;
  let perm: Tensor<"u32">, meta: Tensor<"u32">;
  if (grouping) {
    checkRows(op, h, grouping, "h");
    tokens = grouping.tokens;
    e = grouping.numExperts;
    k = grouping.slots;
    perm = grouping.perm;
    meta = grouping.meta;
  } else {
    tokens = h.shape[0]!;
    e = 1;
    k = 1;
    perm = dev.arange(tokens, undefined, 1, "u32");
    meta = dev.tensor(new Uint32Array([0, tokens]), [2], "u32");
  }
  if (tokens % seqLen !== 0) {
    throw ShapeError.mismatch(
      op,
      [h.shape],
      `${tokens} tokens are not whole sequences of ${seqLen}`,
    );
  }
  const perSeq = Math.ceil(seqLen / chunk);
  const chunks = (tokens / seqLen) * perSeq;
  const out = dev.empty([chunks, e, w], "f32", op);
  if (out.size > 0) {
    dev.run(
      chunkUnionDispatch(
        { e, k, seqLen, chunk, perSeq, chunks, w },
        h.storage(op),
        perm.storage(op),
        meta.storage(op),
        out.storage(op),
      ),
    );
  }
  if (!grouping) {
    perm.dispose();
    meta.dispose();
  }
  return out;
}
