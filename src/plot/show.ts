/**
 * Showing figures from notebook code that is not the cell's last expression.
 *
 * @module
 */
import type { Figure } from "./figure.ts";

/**
 * Displays a figure in Jupyter (Deno kernel) and then waits 10 ms. Deno's kernel can send a
 * display after the cell has reported itself idle, and nbconvert/nbclient then drop it; the short
 * wait lets the output arrive first. Outside Jupyter (`deno run`, `deno test`) it does nothing.
 *
 * @param fig The figure (or anything with a `Symbol.for("Jupyter.display")` method).
 * @returns Whether a Jupyter kernel was there to display it.
 *
 * @example
 * ```ts
 * import { Figure, show } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * // Under `deno test` there is no kernel: nothing is shown.
 * assert.equal(await show(new Figure([{ type: "bar", x: ["a"], y: [1] }])), false);
 * ```
 */
export async function show(fig: Figure | object): Promise<boolean> {
  let jupyter: { display(obj: unknown): Promise<void> } | undefined;
  try {
    // Reading Deno.jupyter outside the kernel throws (and "jupyter" in Deno is true anyway).
    jupyter = Deno.jupyter;
  } catch {
    return false;
  }
  await jupyter.display(fig);
  await new Promise((resolve) => setTimeout(resolve, 10));
  return true;
}
