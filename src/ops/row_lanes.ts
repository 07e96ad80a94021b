/**
 * How many lanes a row kernel (softmax, RMSNorm, cross-entropy) gives each row on a device.
 *
 * @module
 */
import { rowLanes } from "../../kernels/reduce.ts";
import { isSoftwareAdapter } from "../backend/webgpu.ts";
import type { Device } from "../tensor/device.ts";

/** Rows from which a software adapter runs a row kernel with one invocation per row. */
export const ONE_LANE_MIN_ROWS = 1024;

/**
 * Lanes per row for a row kernel of `rows` rows of `cols` on `device`: {@link rowLanes} (about one
 * lane per 8 elements, merged by a tree in workgroup memory), except on a WebGPU software adapter
 * once there are {@link ONE_LANE_MIN_ROWS} rows, where each row gets one invocation. Why: llvmpipe
 * runs a workgroup on one CPU core and every barrier of the lane tree is a coroutine switch, so
 * with rows enough to fill the cores the tree costs more than it shares (2026-12-01, 8,192 rows ×
 * 128: softmax 16–24 → 5–8 ms, RMSNorm 16–20 → 5–7 ms); with few rows the lanes are what keeps
 * both cores busy (a tiny step at 2 × 32 tokens ran 0.83× with one lane everywhere). A GPU needs
 * the lanes for occupancy. The host backends' kernels do not depend on it.
 *
 * @param device The device the kernel runs on.
 * @param rows Rows of the launch.
 * @param cols Row length.
 * @returns Lanes per row (a power of two).
 *
 * @example
 * ```ts
 * import { openDevice } from "@qsparse/kit";
 * import { rowLanesOn } from "./row_lanes.ts";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * assert.equal(rowLanesOn(dev, 8192, 128), 16); // host device: the kernel's own rule
 * ```
 */
export function rowLanesOn(device: Device, rows: number, cols: number): number {
  const software = device.kind === "webgpu" &&
    isSoftwareAdapter({ description: device.description });
  return software && rows >= ONE_LANE_MIN_ROWS ? 1 : rowLanes(cols);
}
