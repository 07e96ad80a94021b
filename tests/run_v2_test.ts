/**
 * scripts/run_v2.sh in --dry-run: the order the issue asks for (each size's LR tuning, then its
 * pick with --require, before any main-grid or fixed-N_a sweep; the smallest sizes' full seeds
 * and the fixed-N_a study before the larger sizes, xs before n853k), every sweep
 * niced, on the native device, into results/<study>.jsonl. (The smoke pipeline itself, `scripts/run_v2.sh --smoke`, trains.)
 */
import assert from "node:assert/strict";

async function dryRun(...args: string[]): Promise<string[]> {
  const out = await new Deno.Command("bash", {
    args: ["scripts/run_v2.sh", "--dry-run", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => !l.startsWith("==") && l);
}

Deno.test("run_v2.sh: tuning and picks first, small sizes, fixed N_a, then xs and n853k", async () => {
  const lines = await dryRun();
  const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
  const sweeps = lines.filter((l) => l.includes("cli.ts sweep"));
  assert.ok(sweeps.every((l) => l.startsWith("nice -n 19 deno run -A cli.ts sweep")));
  assert.ok(sweeps.every((l) => l.includes("--device native") && l.includes("--profile full")));
  for (const s of sweeps) {
    const study = /--study (\S+)/.exec(s)![1];
    assert.ok(s.includes(`--results results/${study}.jsonl`), s);
  }
  const sizes = ["xxs", "tiny", "xs", "n853k"];
  for (const z of sizes) {
    const tune = at(new RegExp(`--study lr_tuning .*--where size=${z}$`));
    const pick = at(new RegExp(`pick_lr.ts .*--require ${z}$`));
    assert.ok(tune >= 0 && pick === tune + 1, `${z}: tune ${tune}, pick ${pick}`);
  }
  const lastPick = Math.max(...sizes.map((z) => at(new RegExp(`--require ${z}$`))));
  const firstMain = at(/--study (scaling_v2|fixed_na)/);
  assert.ok(lastPick < firstMain);
  const small = Math.max(at(/scaling_v2 .*size=xxs$/), at(/scaling_v2 .*size=tiny$/));
  const fixed = [1, 2, 3].map((s) => at(new RegExp(`fixed_na .*seed=${s}$`)));
  const large = ["xs", "n853k"].flatMap((z) =>
    [1, 2, 3].map((s) => at(new RegExp(`size=${z} --where seed=${s} `)))
  );
  assert.ok(fixed.every((i) => i > small), "fixed_na after the small sizes");
  assert.ok(large.every((i) => i > Math.max(...fixed)), "large sizes last");
  assert.deepEqual(large, [...large].sort((a, b) => a - b)); // xs before n853k, seed order
});

Deno.test("run_v2.sh: the large sizes as single-run cells for parallel workers, or per seed", async () => {
  const cells = (await dryRun("--workers", "2")).filter((l) =>
    /--study scaling_v2 .*size=xs/.test(l)
  );
  const sparsities = ["0", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"];
  assert.deepEqual(
    cells.map((l) => /seed=(\d) --where S=(\S+)$/.exec(l)!.slice(1).join(" ")),
    [1, 2, 3].flatMap((seed) => sparsities.map((s) => `${seed} ${s}`)),
  );
  const perSeed = (await dryRun("--workers", "1")).filter((l) => /scaling_v2 .*size=xs/.test(l));
  assert.deepEqual(perSeed.map((l) => /seed=(\d)$/.exec(l)![1]), ["1", "2", "3"]);
});

Deno.test("run_v2.sh --smoke --device cpu: the smoke profile on the asked device", async () => {
  const lines = await dryRun("--smoke", "--device", "cpu");
  const sweeps = lines.filter((l) => l.includes("cli.ts sweep"));
  assert.ok(sweeps.length > 0);
  assert.ok(sweeps.every((l) => l.includes("--profile smoke") && l.includes("--device cpu")));
  assert.ok(sweeps.every((l) => /--results \/tmp\/|--results \S*qsparse-v2-smoke/.test(l)));
});
