/**
 * The v2 grid's arithmetic: tokens per run, run minutes and grid hours per study and size, from
 * a throughput measurement (`bench/native_throughput.ts` writes results/bench/native_throughput.json).
 * Runs whose config equals an earlier one's (lr_tuning winners, the fixed-N_a arms that are main
 * grid cells) are counted once, in run-script order. Prints a markdown table for
 * docs/studies-v2.md.
 *
 * Run: `deno run -A scripts/v2_arithmetic.ts [--throughput FILE] [--rate cpu|best|wall]
 * [--speedup X]`
 *   `--rate cpu` (default) plans with tokens per CPU-second of the median step (robust to a
 *   loaded machine: the wall rate measures the neighbours too), `best` with the least disturbed
 *   step's; `--speedup X` multiplies the rate (e.g. 1.6 for two cores' parallel speed-up on an
 *   idle machine).
 */
import { parseArgs } from "node:util";
import { gridCost, studyRuns, type ThroughputPoint, V2_PROFILES } from "../studies/mod.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    throughput: { type: "string" },
    rate: { type: "string" },
    speedup: { type: "string" },
  },
});
const file = values.throughput ?? "results/bench/native_throughput.json";
const bench = JSON.parse(await Deno.readTextFile(file)) as {
  adapter: string;
  date: string;
  loadAverage?: { before: number[]; after: number[] };
  rows: {
    size: string;
    S: number;
    N: number;
    tokensPerSecond: number;
    tokensPerCpuSecond?: number;
    tokensPerCpuSecondBest?: number;
  }[];
};
const rateKind = values.rate ?? "cpu";
if (!["cpu", "best", "wall"].includes(rateKind)) {
  throw new Error(`--rate must be cpu, best or wall`);
}
const useCpu = rateKind !== "wall";
const speedup = Number(values.speedup ?? 1);
// The mean over the measured sparsities of each size (top-K adds work at high S on small
// widths and removes matmul work at large ones; the grid spans S from 0 to .9).
const byN = new Map<number, number[]>();
for (const r of bench.rows) {
  const rate = rateKind === "best"
    ? r.tokensPerCpuSecondBest ?? r.tokensPerCpuSecond ?? r.tokensPerSecond
    : useCpu
    ? r.tokensPerCpuSecond ?? r.tokensPerSecond
    : r.tokensPerSecond;
  byN.set(r.N, [...(byN.get(r.N) ?? []), rate * speedup]);
}
const points: ThroughputPoint[] = [...byN].map(([N, rates]) => ({
  N,
  tokensPerSecond: rates.reduce((a, b) => a + b, 0) / rates.length,
}));
// Run-script order: tuning, then the fixed-N_a study, then the main grid (reuse goes forward).
const specs = [
  ...studyRuns("lr_tuning", "full"),
  ...studyRuns("fixed_na", "full"),
  ...studyRuns("scaling_v2", "full"),
];
const costs = gridCost(specs, points);
console.log(
  `throughput: ${file} (${bench.adapter}; ${bench.date}; load ${
    bench.loadAverage?.before.join(", ") ?? "?"
  }); rate ${
    rateKind === "best"
      ? "tokens per CPU-second of the least disturbed step"
      : useCpu
      ? "tokens per CPU-second (median step)"
      : "wall tokens/s"
  } × ${speedup}`,
);
console.log(`v2 profile full: batch ${V2_PROFILES.full.batchSize} × ${V2_PROFILES.full.seqLen}\n`);
console.log(
  "| study | size | N | runs (reused) | tokens / run | tokens / param | tok/s | min / run | hours |",
);
console.log("|---|---|---|---|---|---|---|---|---|");
const groups = new Map<string, typeof costs>();
for (const c of costs) {
  const k = `${c.study}|${c.tags.size}`;
  groups.set(k, [...(groups.get(k) ?? []), c]);
}
let total = 0;
const perStudy = new Map<string, number>();
for (const [k, cs] of groups) {
  const [study, size] = k.split("|");
  const paid = cs.filter((c) => c.minutes > 0);
  const hours = paid.reduce((a, c) => a + c.minutes, 0) / 60;
  total += hours;
  perStudy.set(study!, (perStudy.get(study!) ?? 0) + hours);
  const c = cs[0]!;
  const rate = c.tokens / (paid[0]?.minutes ?? c.minutes) / 60;
  console.log(
    `| ${study} | ${size} | ${(c.N / 1e3).toFixed(0)}K | ${cs.length} (${
      cs.length - paid.length
    }) | ` +
      `${(c.tokens / 1e6).toFixed(2)}M | ${(c.tokens / c.N).toFixed(1)} | ${
        Number.isFinite(rate) ? rate.toFixed(0) : "-"
      } | ${(paid[0]?.minutes ?? 0).toFixed(1)} | ${hours.toFixed(1)} |`,
  );
}
console.log();
for (const [s, h] of perStudy) console.log(`${s}: ${h.toFixed(1)} h`);
console.log(`total: ${total.toFixed(1)} h (${(total / 24).toFixed(1)} days)`);
