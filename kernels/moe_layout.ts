/**
 * The grouped layout that every mixture-of-experts kernel shares (routing `moe_route.ts`,
 * grouping `moe_grouping.ts`, gather `moe_gather.ts`, the expert matmuls `grouped_matmul.ts`,
 * combine `moe_combine.ts`, counters `moe_counters.ts`, chunk-level sparsity `chunk_union.ts`),
 * and the constants they agree on.
 *
 * Vocabulary. N tokens, E experts, k slots per token; assignment `a = t·k + j` is slot j of
 * token t (slots in rank order: highest router probability first). The grouped layout holds one
 * row per kept assignment, experts one after another, and inside an expert in assignment order
 * (a stable sort by expert), so rows of one expert are also in token order:
 *
 * - `experts` u32 `[N·k]`: the expert of each assignment;
 * - `pos` u32 `[N·k]`: the grouped row of each assignment, or {@link NONE} when dropped;
 * - `perm` u32 `[M]`: the assignment of each grouped row, or NONE for unused tail rows;
 * - `meta` u32 `[2E + 2]`: `offsets[0..E]` (segment starts; `offsets[E]` = live rows), then the
 *   raw load per expert (assignments routed before capacity), then the dropped count.
 *
 * M is static: N·k without a capacity, `min(N·k, E·capacity)` with one, so no readback is ever
 * needed; rows past `offsets[E]` are zero in every grouped tensor and skipped by every reader.
 *
 * Determinism: WGSL has no float atomics, so every output element is written by exactly one
 * invocation that sums in a fixed order (slot order for gathers and combines, row order inside
 * a segment for the weight gradient). Grouping counts in chunks of {@link MOE_CHUNK}
 * assignments, scans the chunk counts per expert, then places each chunk's assignments: all
 * integer work, the same on every run and backend.
 *
 * @module
 */

/** Index meaning "no row / no assignment / dropped". */
export const NONE = 0xffffffff;

/** Assignments per counting chunk of the grouping pass. */
export const MOE_CHUNK = 256;

/** `Math.fround`, for the CPU twins' f32 rounding. */
export const fr = Math.fround;
/** The builtins of a grid-stride kernel. */
export const GRID =
  "@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u";

/** Number of `meta` words for E experts: offsets (E + 1), load (E), dropped (1). */
export function metaWords(e: number): number {
  return 2 * e + 2;
}
