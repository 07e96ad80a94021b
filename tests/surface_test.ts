/**
 * The public surface stays deliberate: every entry point lists its exports by name (no
 * `export *`), no runtime name is exported by two entries, and internals stay unexported.
 */
import assert from "node:assert/strict";
import * as root from "../mod.ts";
import * as nn from "../src/nn/mod.ts";
import * as train from "../src/train/mod.ts";
import * as plot from "../src/plot/mod.ts";

const ROOT = new URL("..", import.meta.url);
const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));

Deno.test("surface: deno.json exports the five entry points and each lists names explicitly", async () => {
  assert.deepEqual(Object.keys(config.exports), [".", "./nn", "./train", "./plot", "./studies"]);
  for (const [sub, file] of Object.entries(config.exports as Record<string, string>)) {
    const src = await Deno.readTextFile(new URL(file, ROOT));
    assert.doesNotMatch(src, /^export\s+(type\s+)?\*/m, `${sub} (${file}) re-exports with *`);
  }
});

Deno.test("surface: no runtime name is exported by two of ., ./nn, ./train, ./plot", () => {
  const entries = { ".": root, "./nn": nn, "./train": train, "./plot": plot };
  const owner = new Map<string, string>();
  const dup: string[] = [];
  for (const [sub, mod] of Object.entries(entries)) {
    for (const name of Object.keys(mod)) {
      const prev = owner.get(name);
      if (prev) dup.push(`${name} (${prev}, ${sub})`);
      else owner.set(name, sub);
    }
  }
  assert.deepEqual(dup, []);
});

Deno.test("surface: internals are not public", () => {
  const all = new Set([root, nn, train, plot].flatMap((m) => Object.keys(m)));
  // Scope bookkeeping, raw dispatch helpers, reshape plumbing, notebook and browser plumbing, IO.
  for (
    const name of [
      "track",
      "untrack",
      "OWNED_TENSORS",
      "typedView",
      "allocTyped",
      "unaryRaw",
      "binaryRaw",
      "resolveReshape",
      "SharedStorage",
      "spmmGradWeight",
      "uploadIds",
      "paramSeed",
      "findChromium",
      "runHeadlessChromium",
      "resetNotebookPlotly",
      "atomicWriteFile",
      "appendJsonLine",
      "codeVersion",
    ]
  ) {
    assert.ok(!all.has(name), `${name} is public`);
  }
  // ...while the tour's names are where a reader looks for them.
  for (const name of ["openDevice", "Tensor", "matmul", "spmm", "topkRows", "backward", "noGrad"]) {
    assert.ok(name in root, `${name} missing from .`);
  }
  assert.ok("TransformerLM" in nn && "modelConfig" in nn);
  assert.ok("train" in train && "AdamW" in train && "fitScalingLaw" in train);
  assert.ok("lossCurves" in plot && "toHtml" in plot);
});
