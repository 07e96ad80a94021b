/**
 * scripts/gpu_runs_v2.sh in DRY mode: the order issue 12 and 13 ask of a lent GPU (benches first,
 * then n853k's LR tuning and its pick before any of its main-grid cells, seeds from 3 down, then
 * the fixed-N_a study), every sweep on WebGPU into results/<study>.jsonl, and nothing run or
 * deleted in the working tree.
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

Deno.test("gpu_runs_v2.sh: benches, then tuning and pick, then n853k seeds 3→1, then fixed N_a", async () => {
  const before = [...Deno.readDirSync("results/bench")].length;
  const lines = await dry("scripts/gpu_runs_v2.sh");
  assert.equal([...Deno.readDirSync("results/bench")].length, before, "DRY deleted bench JSON");
  const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
  const benches = ["engine", "decode", "matmul", "sparsity", "train", "capture"].map((b) =>
    at(new RegExp(`^bench-${b}:`))
  );
  assert.ok(benches.every((i) => i >= 0), lines.join("\n"));
  const tune = at(/--study lr_tuning .*--where size=n853k$/);
  const pick = at(/pick_lr\.ts .*--require n853k$/);
  const main = [3, 2, 1].map((s) =>
    at(new RegExp(`--study scaling_v2 .*size=n853k --where seed=${s}$`))
  );
  const fixed = [3, 2, 1].map((s) => at(new RegExp(`--study fixed_na .*--where seed=${s}$`)));
  assert.ok(Math.max(...benches) < tune && tune < pick && pick < main[0]!);
  assert.deepEqual(main, [...main].sort((a, b) => a - b));
  assert.ok(Math.max(...main) < fixed[0]! && fixed[0]! < fixed[2]!);
  for (const l of lines.filter((l) => l.includes("cli.ts sweep"))) {
    const study = /--study (\S+)/.exec(l)![1];
    assert.ok(l.includes("--device webgpu") && l.includes(`--results results/${study}.jsonl`), l);
  }
});

Deno.test("gpu_runs.sh (v1) still parses and runs nothing in DRY mode", async () => {
  const lines = await dry("scripts/gpu_runs.sh");
  assert.ok(lines.some((l) => l.includes("--study sparsity_vs_loss")));
});
