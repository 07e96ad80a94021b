/**
 * Every mixture-of-experts kernel, one file per stage; see `moe_layout.ts` for the grouped layout
 * they share.
 *
 * @module
 */
export * from "./moe_layout.ts";
export * from "./moe_route.ts";
export * from "./moe_grouping.ts";
export * from "./moe_gather.ts";
export * from "./grouped_matmul.ts";
export * from "./moe_combine.ts";
export * from "./moe_counters.ts";
export * from "./chunk_union.ts";
