/**
 * scripts/gpu_runs_v2.sh in DRY mode: the order issues 12 and 13 ask of a lent GPU (benches first,
 * then one kernel warm-up, then one queue of single-run cells: the fixed-N_a study, seeds 1–6),
 * every sweep on WebGPU into results/<study>.jsonl, and nothing run or deleted in the working
 * tree; and its study phase for real on this machine (LOCAL=1).
 */
import assert from "node:assert/strict";

async function dry(script: string): Promise<string[]> {
  const out = await new Deno.Command("bash", {
    args: [script],
    env: { DRY: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l);
}

Deno.test("gpu_runs_v2.sh: benches, warm-up, then the fixed-N_a study's six seeds", async () => {
  const before = [...Deno.readDirSync("results/bench")].length;
  const lines = await dry("scripts/gpu_runs_v2.sh");
  assert.equal([...Deno.readDirSync("results/bench")].length, before, "DRY deleted bench JSON");
  const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
  const benches = ["engine", "decode", "matmul", "sparsity", "train", "capture"].map((b) =>
    at(new RegExp(`^bench-${b}:`))
  );
  assert.ok(benches.every((i) => i >= 0), lines.join("\n"));
  const warm = at(/warm_autotune\.ts --study fixed_na/);
  const cells = lines.filter((l) => l.startsWith("cell:"));
  const first = lines.findIndex((l) => l.startsWith("cell:"));
  assert.ok(Math.max(...benches) < warm && warm < first);
  // One run per cell, seed by seed; the main grid's sizes are the CPU runner's.
  const key = (l: string) => {
    const study = /--study (\S+)/.exec(l)![1]!;
    const tag = (k: string) => new RegExp(`--where ${k}=(\\S+)`).exec(l)?.[1];
    return { study, seed: tag("seed"), S: tag("S") };
  };
  const keys = cells.map(key);
  assert.ok(keys.every((k) => k.study === "fixed_na"), cells.join("\n"));
  assert.deepEqual(
    keys.map((k) => `${k.seed} ${k.S}`),
    ["1", "2", "3", "4", "5", "6"].flatMap((s) =>
      ["0", "0.3", "0.45", "0.6", "0.75"].map((x) => `${s} ${x}`)
    ),
  );
  // Its sweeps extend the profile's seeds (1–3) to six.
  assert.ok(cells.every((l) => l.endsWith("--seeds 1,2,3,4,5,6")));
  assert.ok(!lines.some((l) => /--study (scaling_v2|lr_tuning)/.test(l)), lines.join("\n"));
  for (const l of lines.filter((l) => l.includes("cli.ts sweep"))) {
    const study = /--study (\S+)/.exec(l)![1];
    assert.ok(l.includes("--device webgpu") && l.includes(`--results results/${study}.jsonl`), l);
  }
});

Deno.test("gpu_runs.sh (v1) still parses and runs nothing in DRY mode", async () => {
  const lines = await dry("scripts/gpu_runs.sh");
  assert.ok(lines.some((l) => l.includes("--study sparsity_vs_loss")));
});

Deno.test("gpu_runs_v2.sh runs here too (LOCAL=1, smoke profile, in a copy of the tree)", async () => {
  // The GPU route is exercised only when a GPU is lent; this runs its study phase for real on
  // this machine's adapter (warm autotune, a worker pool over five cells, packing), so the script cannot rot between leases. In a copy: the script writes results/.
  const tree = await Deno.makeTempDir({ prefix: "qsparse-gpu-script-" });
  const out = await Deno.makeTempDir({ prefix: "qsparse-gpu-out-" });
  try {
    const copy = await new Deno.Command("bash", {
      args: [
        "-c",
        `tar --exclude=./.git --exclude=./runs --exclude=./runs_h200 --exclude=./.gpu ` +
        `--exclude=./node_modules -cf - . | tar -xf - -C "${tree}"`,
      ],
    }).output();
    assert.equal(copy.code, 0, new TextDecoder().decode(copy.stderr));
    const run = await new Deno.Command("bash", {
      args: ["scripts/gpu_runs_v2.sh"],
      cwd: tree,
      env: {
        LOCAL: "1",
        DENO: Deno.execPath(), // CI runs Deno through npx: it may not be on PATH
        BENCHES: "0",
        PROFILE: "smoke",
        DEADLINE: "240",
        WORKERS: "2",
        CELLS: "^fixed_na seed=1 ",
        OUT: out,
        QSPARSE_CACHE_DIR: `${out}/cache`,
        QSPARSE_LR_TABLE: `${tree}/results/lr_tuning_best.smoke.json`,
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const log = new TextDecoder().decode(run.stdout) + new TextDecoder().decode(run.stderr);
    assert.equal(run.code, 0, log);
    assert.match(log, /start warm autotune/);
    assert.match(log, /== .* done$/m);
    const cells = log.split("\n").filter((l) => / cell fixed_na seed=1 S=/.test(l));
    assert.equal(cells.length, 5, log);
    assert.ok(cells.every((l) => l.endsWith("(status 0)")), cells.join("\n"));
    const recs = (await Deno.readTextFile(`${tree}/results/fixed_na.jsonl`)).split("\n")
      .filter((l) => l.trim()).map((l) => JSON.parse(l));
    const fresh = recs.filter((r) => r.config.steps < 100); // the smoke grid's, not the full one's
    assert.equal(new Set(fresh.map((r) => r.tags.S)).size, 5);
    assert.ok((await Deno.stat(`${out}/results.tgz`)).size > 0);
  } finally {
    await Deno.remove(tree, { recursive: true });
    await Deno.remove(out, { recursive: true });
  }
});
