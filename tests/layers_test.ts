/**
 * The import-graph gate (scripts/check_cycles.ts): the repository has no import cycle and no
 * import up the layer order, and the checker itself catches the shapes of mistake it exists for
 * (so a parser that silently saw no imports would fail here, not pass).
 */
import assert from "node:assert/strict";
import { analyze, parseImports, readSources } from "../scripts/check_cycles.ts";

const root = new URL("..", import.meta.url).pathname;

Deno.test("layers: the kit's import graph has no cycle and no upward import", async () => {
  const report = analyze(await readSources(root));
  assert.deepEqual(report.cycles, [], "import cycles");
  assert.deepEqual(report.violations, [], "layer violations");
  // The parser saw the graph: the tensor layer imports the core, kernels import the contract.
  const has = (from: string, to: string) =>
    report.edges.some((e) => e.from === from && e.to === to);
  assert.ok(has("src/tensor/tensor.ts", "src/core/errors.ts"));
  assert.ok(has("kernels/random.ts", "src/backend/backend.ts"));
  assert.ok(report.edges.length > 300, `only ${report.edges.length} imports parsed`);
});

Deno.test("layers: the script exits 1 and names the cycle in a tree that has one", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/src/ops`, { recursive: true });
    await Deno.writeTextFile(`${dir}/mod.ts`, `export { a } from "./src/ops/a.ts";\n`);
    await Deno.writeTextFile(
      `${dir}/src/ops/a.ts`,
      `import { b } from "./b.ts";\nexport const a = 1;\n`,
    );
    await Deno.writeTextFile(
      `${dir}/src/ops/b.ts`,
      `import { a } from "./a.ts";\nexport const b = 2;\n`,
    );
    const script = new URL("../scripts/check_cycles.ts", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", script, dir],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 1, err);
    assert.match(err, /cycle: src\/ops\/a\.ts → src\/ops\/b\.ts → src\/ops\/a\.ts/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("layers: upward imports are reported, kernels see only the core and the contract", () => {
  const sources = new Map([
    ["src/core/errors.ts", `export class E {}\n`],
    ["src/backend/backend.ts", `import type { E } from "../core/errors.ts";\n`],
    ["src/backend/webgpu.ts", `export const w = 1;\n`],
    ["src/tensor/tensor.ts", `import { e } from "../autograd/tape.ts";\n`],
    [
      "src/autograd/tape.ts",
      `import type { T } from "../tensor/tensor.ts";\nexport const e = 1;\n`,
    ],
    [
      "kernels/k.ts",
      `import type { D } from "../src/backend/backend.ts";\nimport { w } from "../src/backend/webgpu.ts";\n`,
    ],
    ["src/ops/x.ts", `import { y } from "../wat/y.ts";\n`],
    ["src/wat/y.ts", `export const y = 1;\n`],
  ]);
  const r = analyze(sources);
  // tensor → autograd is a type-only cycle back: no runtime cycle, but an upward import.
  assert.deepEqual(r.cycles, []);
  assert.deepEqual(r.violations, [
    "src/wat/y.ts: in no layer (add its folder to LAYERS)",
    "kernels/k.ts:2 imports ../src/backend/webgpu.ts: kernels may import only src/core/, " +
    "src/backend/backend.ts",
    "src/tensor/tensor.ts:1 imports ../autograd/tape.ts: tensor (layer 4) imports up into " +
    "autograd (layer 5)",
  ]);
});

Deno.test("layers: the parser reads multi-line, type-only, bare and re-export forms", () => {
  const src = [
    `import {`,
    `  a,`,
    `  type B,`,
    `} from "./a.ts";`,
    `import { type C, type D } from "../c.ts";`,
    `import type * as E from "./e.ts";`,
    `export { f } from "./f.ts";`,
    `export type * from "./g.ts";`,
    `import "./side.ts";`,
    `import x from "npm:y";`,
    ` * import { z } from "./doc_example.ts";`,
    `export function h(s = "from './nope.ts'") {}`,
  ].join("\n");
  const edges = parseImports("src/ops/m.ts", src).map((e) =>
    `${e.to}${e.typeOnly ? " (type)" : ""}@${e.line}`
  );
  assert.deepEqual(edges.sort(), [
    "src/c.ts (type)@5",
    "src/ops/a.ts@1",
    "src/ops/e.ts (type)@6",
    "src/ops/f.ts@7",
    "src/ops/g.ts (type)@8",
    "src/ops/side.ts@9",
  ]);
});
