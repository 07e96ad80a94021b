/**
 * Sweep runner: finished runs are skipped on a re-run, shards partition the grid, a run waits for
 * the runs it depends on, and an identical run another study finished is reused, not retrained.
 */
import assert from "node:assert/strict";
import { ValueError } from "../mod.ts";
import { modelConfig, TransformerLM } from "../src/nn/mod.ts";
import {
  readResults,
  readResultsFile,
  type RunRecord,
  type RunSpec,
  runSweep,
  saveCheckpoint,
  trainConfig,
} from "../src/train/mod.ts";
import { cpu } from "./helpers.ts";

function spec(id: string, study: string, sparsity: number, extra: Partial<RunSpec> = {}): RunSpec {
  const model = modelConfig("xxs", {
    sparsity,
    seqLen: 16,
    dModel: 16,
    nHeads: 1,
    nLayers: 1,
    dFF: 32,
  });
  const config = trainConfig(model, {
    steps: 2,
    batchSize: 2,
    lr: 3e-3,
    warmup: 1,
    evalWindows: 2,
    logEvery: 1,
    checkpointEvery: 1,
    evalEvery: 2,
  });
  return { id, study, config, tags: { S: sparsity }, ...extra };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

type Event = [string, string];

function recorder(events: Event[]) {
  return (ev: string, s: RunSpec) => events.push([ev, s.id]);
}

Deno.test("runSweep: one line per run; a re-run skips finished runs and trains nothing", async () => {
  await withDir(async (dir) => {
    const dev = cpu;
    const grid = [spec("a", "demo", 0), spec("b", "demo", 0.5)];
    const opts = { results: `${dir}/demo.jsonl`, runsDir: `${dir}/runs` };
    const first: Event[] = [];
    const recs = await runSweep(dev, grid, { ...opts, onRun: recorder(first) });
    assert.deepEqual(first, [["start", "a"], ["done", "a"], ["start", "b"], ["done", "b"]]);
    assert.deepEqual(recs.map((r) => r.id), ["a", "b"]);
    assert.ok(recs.every((r) => Number.isFinite(r.valLoss) && r.tokens === 2 * 2 * 16));
    const again: Event[] = [];
    await runSweep(dev, grid, { ...opts, onRun: recorder(again) });
    assert.deepEqual(again, [["skip", "a"], ["skip", "b"]]);
    assert.equal((await readResults(opts.results)).length, 2);
  });
});

Deno.test("runSweep: shards partition the grid; a dependent run waits for its dependency", async () => {
  await withDir(async (dir) => {
    const dev = cpu;
    const grid = [
      spec("ft", "demo", 0, { after: ["pre"] }),
      spec("pre", "demo", 0.25),
      spec("x", "demo", 0.5),
    ];
    const opts = { results: `${dir}/demo.jsonl`, runsDir: `${dir}/runs` };
    const e1: Event[] = [];
    await runSweep(dev, grid, { ...opts, shard: { index: 1, count: 2 }, onRun: recorder(e1) });
    assert.deepEqual(e1, [["start", "pre"], ["done", "pre"]]);
    const e0: Event[] = [];
    await runSweep(dev, grid, { ...opts, shard: { index: 0, count: 2 }, onRun: recorder(e0) });
    assert.deepEqual(e0.filter(([ev]) => ev === "done").map(([, id]) => id), ["ft", "x"]);
    const ids = (await readResults(opts.results)).map((r) => r.id).sort();
    assert.deepEqual(ids, ["ft", "pre", "x"]);
  });
});

Deno.test("runSweep: an identical finished run of another study is reused, a different one is not", async () => {
  await withDir(async (dir) => {
    const dev = cpu;
    const main = `${dir}/main.jsonl`;
    await runSweep(dev, [spec("m-dense", "main", 0)], { results: main, runsDir: `${dir}/runs` });
    const [source] = await readResults(main) as [RunRecord];
    const grid = [
      spec("twin", "other", 0),
      spec("sparse", "other", 0.5),
      spec("needed", "other", 0),
      spec("child", "other", 0.5, { after: ["needed"] }),
    ];
    grid[0]!.tags = { arm: "dense" };
    const events: Event[] = [];
    const recs = await runSweep(dev, grid, {
      results: `${dir}/other.jsonl`,
      runsDir: `${dir}/runs`,
      reuse: [main],
      onRun: recorder(events),
    });
    // "needed" has a dependent that loads its checkpoint, so it trains even though it has a twin.
    assert.deepEqual(events.filter(([ev]) => ev !== "done"), [
      ["reuse", "twin"],
      ["start", "sparse"],
      ["start", "needed"],
      ["start", "child"],
    ]);
    const twin = recs[0]!;
    assert.equal(twin.reusedFrom, "main/m-dense");
    assert.equal(twin.study, "other");
    assert.deepEqual(twin.tags, { arm: "dense" });
    assert.equal(twin.valLoss, source.valLoss);
    // Training is deterministic: the retrained twin of the reused run gives the same loss.
    assert.equal(recs[2]!.valLoss, source.valLoss);
    assert.equal(recs[1]!.reusedFrom, undefined);
  });
});

Deno.test("runSweep: reuseOnly records the reusable runs and trains none", async () => {
  await withDir(async (dir) => {
    const dev = cpu;
    const main = `${dir}/main.jsonl`;
    await runSweep(dev, [spec("m", "main", 0)], { results: main, runsDir: `${dir}/runs` });
    const events: Event[] = [];
    const recs = await runSweep(dev, [spec("t", "other", 0), spec("u", "other", 0.5)], {
      results: `${dir}/other.jsonl`,
      runsDir: `${dir}/runs`,
      reuse: [main],
      reuseOnly: true,
      onRun: recorder(events),
    });
    assert.deepEqual(events, [["reuse", "t"]]);
    assert.deepEqual(recs.map((r) => [r.id, r.reusedFrom]), [["t", "main/m"]]);
  });
});

Deno.test("runSweep: runs from another adapter are not reused", async () => {
  await withDir(async (dir) => {
    const dev = cpu;
    const main = `${dir}/main.jsonl`;
    await runSweep(dev, [spec("m", "main", 0)], { results: main, runsDir: `${dir}/runs` });
    const [rec] = await readResults(main) as [RunRecord];
    await Deno.writeTextFile(main, JSON.stringify({ ...rec, adapter: "another GPU" }) + "\n");
    const events: Event[] = [];
    await runSweep(dev, [spec("t", "other", 0)], {
      results: `${dir}/other.jsonl`,
      runsDir: `${dir}/runs`,
      reuse: [main],
      onRun: recorder(events),
    });
    assert.deepEqual(events, [["start", "t"], ["done", "t"]]);
  });
});

Deno.test("CLI sweep: --sizes and --seeds replace the profile's grid axes; bad lists are refused", async () => {
  const { main } = await import("../cli.ts");
  const dir = await Deno.makeTempDir({ prefix: "qsparse-cli-sweep-" });
  const errors: string[] = [];
  const orig = console.error;
  console.error = (...a: unknown[]) => void errors.push(a.join(" "));
  try {
    const base = [
      "sweep",
      "--study",
      "sparsity_vs_loss",
      "--device",
      "cpu",
      "--runs",
      `${dir}/runs`,
    ];
    const results = `${dir}/r.jsonl`;
    assert.equal(
      await main([
        ...base,
        "--results",
        results,
        "--sizes",
        "xxs",
        "--seeds",
        "7",
        "--where",
        "S=0",
      ]),
      0,
    );
    assert.deepEqual((await readResults(results)).map((r) => r.id), ["xxs-S0.0-seed7"]);
    assert.equal(await main([...base, "--seeds", "1.5"]), 2);
    assert.equal(await main([...base, "--sizes", ","]), 2);
    assert.equal(await main([...base, "--sizes", "huge", "--results", `${dir}/x.jsonl`]), 2);
  } finally {
    console.error = orig;
    await Deno.remove(dir, { recursive: true });
  }
  const bad = errors.filter((e) => e.startsWith("error:"));
  assert.match(bad[0]!, /--seeds must be a comma-separated list, got "1\.5"/);
  assert.match(bad[1]!, /--sizes must be a comma-separated list/);
  assert.match(bad[2]!, /unknown model "huge"/);
});

Deno.test("readResults: only a torn last line is tolerated; other bad lines name file:line (issue 14)", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/r.jsonl`;
    const ok = (id: string) => JSON.stringify({ id, study: "demo", tags: {}, valLoss: 3, N: 10 });
    // A mistyped path is an error naming it, not "no records".
    await assert.rejects(
      () => readResults(`${dir}/typo.jsonl`),
      (e: unknown) => e instanceof ValueError && e.message.includes(`${dir}/typo.jsonl`),
    );
    await assert.rejects(() => readResults(dir), /is a directory/);
    await Deno.writeTextFile(path, `${ok("a")}\n${ok("b")}\n{"id":"c","stu`);
    assert.deepEqual((await readResults(path)).map((r) => r.id), ["a", "b"]);
    // The same damage in the middle of the file is reported with its line number.
    await Deno.writeTextFile(path, `${ok("a")}\n{"id":"c","stu\n${ok("b")}\n`);
    await assert.rejects(() => readResults(path), new RegExp(`${path}:2: not JSON`));
    // A complete last line that is not JSON was not torn by a crash: reported too.
    await Deno.writeTextFile(path, `${ok("a")}\nnot json\n`);
    await assert.rejects(() => readResults(path), new RegExp(`${path}:2: not JSON`));
    // Wrong schema (another tool's JSON lines) and a loss that JSON-encoded a NaN as null.
    await Deno.writeTextFile(path, `{"name":"x"}\n`);
    await assert.rejects(() => readResults(path), new RegExp(`${path}:1: not a results record`));
    await Deno.writeTextFile(
      path,
      `${ok("a")}\n${ok("b").replace('"valLoss":3', '"valLoss":null')}\n`,
    );
    await assert.rejects(() => readResults(path), /:2: run "b": "valLoss" is null/);
  });
});

Deno.test("runSweep records a diverged run as diverged and does not retrain it (issue 14)", async () => {
  await withDir(async (dir) => {
    const bad = spec("bad", "demo", 0);
    // Weights with a NaN in the LM head: the first step's loss is NaN.
    const m = new TransformerLM(cpu, bad.config.model, 0);
    const w = new Float32Array(await m.namedParameters().get("lm_head.weight")!.data());
    w[0] = NaN;
    m.setParameter("lm_head.weight", w);
    const state = { step: 0, sampler: { seed: 0, step: 0 }, generator: { seed: 0, offset: 0 } };
    await saveCheckpoint(
      `${dir}/nan.safetensors`,
      m,
      null,
      { ...state, tokens: 0, elapsed: 0 },
      {},
    );
    m.dispose();
    bad.config = { ...bad.config, initFrom: `${dir}/nan.safetensors` };
    const grid = [bad, spec("good", "demo", 0.5)];
    const opts = { results: `${dir}/demo.jsonl`, runsDir: `${dir}/runs` };
    const events: Event[] = [];
    const recs = await runSweep(cpu, grid, { ...opts, onRun: recorder(events) });
    assert.deepEqual(events, [["start", "bad"], ["diverged", "bad"], ["start", "good"], [
      "done",
      "good",
    ]]);
    assert.deepEqual(recs.map((r) => r.id), ["good"]);
    const file = await readResultsFile(opts.results);
    assert.deepEqual(file.records.map((r) => r.id), ["good"]);
    assert.equal(file.diverged[0]!.id, "bad");
    assert.equal(file.diverged[0]!.diverged.step, 1);
    assert.equal(file.diverged[0]!.diverged.tensor, "lm_head.weight");
    const again: Event[] = [];
    await runSweep(cpu, grid, { ...opts, onRun: recorder(again) });
    assert.deepEqual(again, [["diverged", "bad"], ["skip", "good"]]);
  });
});
