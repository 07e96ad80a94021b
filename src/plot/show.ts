/**
 * Showing figures from notebook code that is not the cell's last expression.
 *
 * @module
 */
import type { Figure } from "./figure.ts";

/**
 * Displays a figure in Jupyter (Deno kernel) and then waits until the output has had time to
 * leave. Deno's kernel can send a display after the cell has reported itself idle, and
 * nbconvert/nbclient then drop it; the first figure of a notebook carries the ~4.8 MB plotly
 * bundle, so the wait grows with the output size (10 ms plus 1 ms per 2 kB — a fixed 10 ms lost
 * that figure most of the time). Outside Jupyter (`deno run`, `deno test`) it does nothing.
 *
 * @param fig The figure (or anything with a `Symbol.for("Jupyter.display")` method).
 * @returns Whether a Jupyter kernel was there to display it.
 *
 * @example
 * ```ts
 * import { Figure, show } from "@qsparse/kit/plot";
 * import assert from "node:assert/strict";
 * // Under `deno test` there is no kernel: nothing is shown.
 * assert.equal(await show(new Figure([{ type: "bar", x: ["a"], y: [1] }])), false);
 * ```
 */
export async function show(fig: Figure | object): Promise<boolean> {
  let jupyter: typeof Deno.jupyter;
  try {
    // Reading Deno.jupyter outside the kernel throws (and "jupyter" in Deno is true anyway).
    jupyter = Deno.jupyter;
  } catch {
    return false;
  }
  const bundle = await jupyter.format(fig);
  await jupyter.display(bundle, { raw: true });
  await new Promise((resolve) => setTimeout(resolve, 10 + JSON.stringify(bundle).length / 2048));
  return true;
}
