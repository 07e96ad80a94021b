/**
 * Tunes the kernels of a study grid's training steps once, before parallel sweep processes start
 * (scripts/gpu_runs_v2.sh). The trainer autotunes after its first step on a real GPU; workers
 * that each did so at the same moment would time kernels against each other's load and could
 * choose differently, so runs of one grid would round differently. Here one process trains one
 * step of every distinct model shape in the grid and tunes what it met; the choices land in the
 * disk cache (`$QSPARSE_CACHE_DIR/autotune.json`), which every later process on this adapter
 * applies from its first launch, so their own tuning finds nothing left to measure.
 *
 * Run: `deno run -A scripts/warm_autotune.ts --study fixed_na --study scaling_v2 [--profile full]
 * [--where size=n853k]` (`--where` as in `cli.ts sweep`, applied to every study).
 */
import { parseArgs } from "node:util";
import { backward, openDevice, scope } from "../mod.ts";
import { TransformerLM } from "../src/nn/mod.ts";
import { AdamW } from "../src/train/optimizer.ts";
import type { RunSpec } from "../src/train/runner.ts";
import { type Profile, STUDIES, type StudyName, studyRuns } from "../studies/studies.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    study: { type: "string", multiple: true },
    profile: { type: "string", default: "full" },
    where: { type: "string", multiple: true },
  },
});
const studies = (values.study ?? []) as StudyName[];
for (const s of studies) {
  if (!STUDIES.includes(s)) throw new Error(`unknown study ${s} (${STUDIES.join(", ")})`);
}
const where = (values.where ?? []).map((w) => w.split("=", 2) as [string, string]);
const specs: RunSpec[] = studies.flatMap((s) => studyRuns(s, values.profile as Profile))
  .filter((r) => where.every(([k, v]) => String(r.tags[k]) === v));

// One step per distinct (model, batch): what decides the launches' shapes and their classes.
const distinct = new Map<string, RunSpec>();
for (const r of specs) {
  const key = JSON.stringify([r.config.model, r.config.batchSize]);
  if (!distinct.has(key)) distinct.set(key, r);
}
const dev = await openDevice({ prefer: "webgpu" });
console.log(`${dev.description}: ${distinct.size} model shapes from ${specs.length} runs`);
for (const r of distinct.values()) {
  const { model: m, batchSize: b } = r.config;
  const t0 = performance.now();
  const model = new TransformerLM(dev, m, 1);
  const opt = new AdamW(dev, model.namedParameters());
  const n = b * m.seqLen;
  using ids = dev.tensor(Uint32Array.from({ length: n }, (_, i) => (i * 31) % m.vocab), [
    b,
    m.seqLen,
  ], "u32");
  using tg = dev.tensor(
    Uint32Array.from({ length: n }, (_, i) => (i * 7) % m.vocab),
    [b, m.seqLen],
    "u32",
  );
  scope(() => {
    backward(model.loss(ids, tg));
    opt.step(1e-3);
    model.zeroGrad();
  });
  await dev.flush();
  const tuned = await dev.autotune();
  const changed = tuned.filter((x) => x.choice !== Object.keys(x.ns)[0]).length;
  console.log(
    `${r.id} (${m.name}, batch ${b}): ${tuned.length} classes tuned, ${changed} off the default, ` +
      `${((performance.now() - t0) / 1000).toFixed(1)} s`,
  );
  opt.dispose();
  model.dispose();
}
dev.destroy();
