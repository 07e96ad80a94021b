/**
 * Picks the peak learning rate per size from the `lr_tuning` results and writes the LR table the
 * v2 grids read (`results/lr_tuning_best.json`; `QSPARSE_LR_TABLE` or `--out` elsewhere). Sizes
 * whose tuning is incomplete are left out (they keep training at the fallback rate) and sizes
 * already in the table keep their entry unless the new results pick them. `--require a,b` exits
 * with status 3 when one of those sizes has no pick, so a run script never starts a size's main
 * grid at an untuned rate.
 *
 * Run: `deno run -A scripts/pick_lr.ts [--profile full] [--results FILE] [--out FILE] [--require xs]`
 */
import { parseArgs } from "node:util";
import { readResults } from "../src/train/runner.ts";
import { lrTablePath, readLrTable, v2LrTable } from "../studies/mod.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    profile: { type: "string" },
    results: { type: "string" },
    out: { type: "string" },
    require: { type: "string" },
  },
});
const profile = values.profile === "smoke" ? "smoke" : "full";
const results = values.results ?? `results/lr_tuning${profile === "smoke" ? ".smoke" : ""}.jsonl`;
const out = values.out ?? lrTablePath(profile);
const records = (await readResults(results)).filter((r) => r.study === "lr_tuning");
// The picks on the profile's tuning grid, over the entries already in the output table.
const previous = readLrTable(out);
const table = v2LrTable(profile, records, { base: previous });
// Rewrite only when a pick changed: the runner calls this at every start, and a new `updated`
// stamp alone would leave a committed table modified for nothing.
const same = (t: typeof table | null) => t && JSON.stringify({ ...t, updated: "" });
if (same(previous) !== same(table)) {
  await Deno.writeTextFile(out, JSON.stringify(table, null, 2) + "\n");
} else console.log(`picks unchanged; ${out} left as it was (updated ${previous!.updated})`);
for (const [size, pick] of Object.entries(table.sizes)) {
  const c = pick.candidates.map((c) => `${c.lr}: ${c.loss.toFixed(4)}`).join(", ");
  console.log(
    `${size}: lr ${pick.lr}${pick.edge ? " (at the edge of the grid)" : ""}  [${c}]`,
  );
}
console.log(`${Object.keys(table.sizes).length} sizes picked → ${out}`);
const missing = (values.require ?? "").split(",").filter((s) => s && !table.sizes[s]);
if (missing.length) {
  console.error(`no tuned learning rate yet for: ${missing.join(", ")}`);
  Deno.exit(3);
}
