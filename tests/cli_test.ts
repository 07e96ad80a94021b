/**
 * The CLI as a user meets it (issue 14): every error is one line on stderr with exit status 2
 * (kit errors and Deno's own alike; `--debug` adds the stack), errors caused by a flag name it,
 * divergence exits non-zero without a result, and `eval` / `fit` / `train` print text for
 * people by default and JSON with `--json`.
 */
import assert from "node:assert/strict";
import { main } from "../cli.ts";
import { modelConfig, TransformerLM } from "../src/nn/mod.ts";
import { PAPER_SCALING_LAW, saveCheckpoint, scalingLaw } from "../src/train/mod.ts";
import { cpu } from "./helpers.ts";

/** Runs `main` in-process, capturing console output. */
async function cli(...argv: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [], err: string[] = [];
  const log = console.log, error = console.error;
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  try {
    const code = await main(argv);
    return { code, out, err };
  } finally {
    console.log = log;
    console.error = error;
  }
}

/** Asserts exit status 2 and exactly one stderr line matching `re`. */
function oneLine(r: { code: number; err: string[] }, re: RegExp): void {
  assert.equal(r.code, 2, r.err.join("\n"));
  assert.equal(r.err.length, 1, `expected one line, got:\n${r.err.join("\n")}`);
  assert.ok(!r.err[0]!.includes("\n"), r.err[0]);
  assert.match(r.err[0]!, re);
}

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const TINY = ["--model", "xxs", "--seq", "16", "--batch", "2", "--eval-windows", "2"];

Deno.test("cli: Deno errors (missing path, a directory) are one line naming the path", async () => {
  const dir = await Deno.makeTempDir();
  try {
    oneLine(
      await cli("eval", "--checkpoint", `${dir}/nope.safetensors`),
      /nope\.safetensors: no such file/,
    );
    oneLine(await cli("eval", "--checkpoint", dir), /is a directory/);
    oneLine(
      await cli("fit", "--results", `${dir}/typo.jsonl`),
      /typo\.jsonl: no such results file/,
    );
    oneLine(await cli("sweep", "--grid", `${dir}/none.json`), /^error: NotFound: .*none\.json/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: fit on a file of the wrong schema names file:line, not a TypeError", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/other.jsonl`;
    await Deno.writeTextFile(path, `{"step":1,"loss":3}\n`);
    oneLine(await cli("fit", "--results", path), new RegExp(`${path}:1: not a results record`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: errors caused by a flag name the flag", async () => {
  oneLine(await cli("train", "--sparsity", "-0.1"), /--sparsity must be in \[0, 1\), got -0\.1/);
  oneLine(await cli("train", "--sparsity=-0.1"), /--sparsity must be in \[0, 1\)/);
  oneLine(await cli("train", "--sparsity", "qkv=1.5"), /--sparsity qkv must be in \[0, 1\)/);
  oneLine(await cli("train", "--sparsity", "lots"), /--sparsity must be a number/);
  oneLine(await cli("train", "--stpes", "3"), /Unknown option '--stpes'/);
  oneLine(await cli("train", "--steps"), /--steps/);
  oneLine(await cli("train", "--batch", "0"), /--batch: batchSize must be an integer ≥ 1/);
  oneLine(await cli("train", "--device", "gpu"), /--device must be webgpu, native or cpu/);
  oneLine(
    await cli("train", "--model", "xxs", "--block", "48", "--sparsity", "0.5"),
    /from --model, --sparsity, --block/,
  );
  oneLine(await cli("train", "--resume"), /--resume needs --out/);
  // Far beyond what fits: refused before any training, naming --seq and a size that fits.
  oneLine(
    await cli("train", "--model", "xxs", "--seq", "100000", "--device", "cpu"),
    /--seq 100000 with --batch 8: the attention scores need .* GiB.*\(--seq \d+ at most\)/,
  );
  oneLine(
    await cli("fit", "--results", "x.jsonl", "--s", "measured"),
    /--s must be nominal or achieved/,
  );
});

Deno.test("cli: --debug adds the stack to the one-line error", async () => {
  const r = await cli("--debug", "train", "--sparsity", "-0.1");
  assert.equal(r.code, 2);
  assert.match(r.err[0]!, /^error: cli: --sparsity/);
  assert.match(r.err.slice(1).join("\n"), /at .*cli\.ts/);
});

Deno.test("cli: a NaN weight exits non-zero with one line and leaves no result (subprocess)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const model = modelConfig("xxs", { seqLen: 16 });
    const m = new TransformerLM(cpu, model, 0);
    const w = new Float32Array(await m.namedParameters().get("lm_head.weight")!.data());
    w[5] = NaN;
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
    const r = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        CLI,
        "train",
        ...TINY,
        "--steps",
        "4",
        "--device",
        "cpu",
        "--init-from",
        `${dir}/nan.safetensors`,
        "--out",
        `${dir}/run`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(r.code, 2);
    const err = new TextDecoder().decode(r.stderr).trim().split("\n").filter((l) =>
      l.startsWith("error")
    );
    assert.equal(err.length, 1);
    assert.match(
      err[0]!,
      /non-finite training loss NaN at step 1; first non-finite parameter: lm_head\.weight/,
    );
    assert.doesNotMatch(new TextDecoder().decode(r.stdout), /val loss|tokens\/s on/);
    await assert.rejects(() => Deno.stat(`${dir}/run/result.json`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: train prints progress lines for people, JSON lines only with --json; eval text and --json", async () => {
  const dir = await Deno.makeTempDir();
  const run = async (...args: string[]) => {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", CLI, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(r.stdout);
    assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    return { out: text.trim().split("\n"), err: new TextDecoder().decode(r.stderr) };
  };
  try {
    const base = [
      "train",
      ...TINY,
      "--steps",
      "4",
      "--log-every",
      "2",
      "--device",
      "cpu",
      "--chunks",
      "",
    ];
    // stdout is a pipe here: one plain progress line per log record, then the summary.
    const text = await run(...base, "--out", `${dir}/a`);
    assert.match(text.out[0]!, /^step 2\/4 \(50%\) {2}loss \d+\.\d{4}/);
    assert.ok(text.out.some((l) => /^val loss \d/.test(l)));
    assert.ok(text.out.every((l) => !l.startsWith("{")), text.out.join("\n"));
    // Resuming says so; extending to more steps is allowed.
    const more = await run(
      ...base.map((a) => (a === "4" ? "6" : a)),
      "--out",
      `${dir}/a`,
      "--resume",
    );
    assert.match(more.out.join("\n"), /extending .*a from 4 to 6 steps \(resuming from step 4\)/);
    // --force restarts the folder.
    await run(...base, "--out", `${dir}/a`, "--force");
    // --json: every stdout line is JSON; the last is the result.
    const json = await run(...base, "--out", `${dir}/b`, "--json");
    const recs = json.out.map((l) => JSON.parse(l));
    assert.deepEqual(recs.slice(0, -1).map((r) => r.kind), ["train", "train", "done"]);
    assert.equal(typeof recs.at(-1).valLoss, "number");

    const ck = `${dir}/b/checkpoint.safetensors`;
    const ev = await run("eval", "--checkpoint", ck, "--device", "cpu", "--eval-windows", "2");
    const all = ev.out.join("\n");
    assert.match(
      all,
      /val loss \d+\.\d{4} ± \d+\.\d{4} nats\/byte {2}perplexity \d+\.\d{3} {2}bits\/byte \d+\.\d{4}/,
    );
    const evj = JSON.parse(
      (await run("eval", "--checkpoint", ck, "--device", "cpu", "--eval-windows", "2", "--json"))
        .out[0]!,
    );
    assert.ok(Math.abs(evj.bitsPerByte - evj.valLoss / Math.LN2) < 1e-12);
    assert.ok(Math.abs(evj.perplexity - Math.exp(evj.valLoss)) < 1e-9);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cli: fit prints the law with intervals; --json gives the numbers", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/r.jsonl`;
    const lines: string[] = [];
    for (const N of [3e8, 7e8, 1.3e9, 7e9]) {
      for (const S of [0, 0.4, 0.6, 0.8]) {
        const valLoss = scalingLaw(PAPER_SCALING_LAW, N, S);
        lines.push(JSON.stringify({ id: `${N}-${S}`, study: "law", tags: { S }, valLoss, N }));
      }
    }
    await Deno.writeTextFile(path, lines.join("\n") + "\n");
    const text = await cli("fit", "--results", path, "--bootstrap", "8");
    assert.equal(text.code, 0, text.err.join("\n"));
    const all = text.out.join("\n");
    assert.match(all, /fitted to 16 runs \(S nominal\); 95% bootstrap intervals/);
    assert.match(all, /α {2}0\.100 \[\d\.\d{3}, \d\.\d{3}\]/);
    assert.match(all, /S\* 0\.50\d/);
    const json = await cli("fit", "--results", path, "--bootstrap", "0", "--json");
    assert.ok(Math.abs(JSON.parse(json.out.join("\n")).alpha - 0.1) < 1e-3);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
