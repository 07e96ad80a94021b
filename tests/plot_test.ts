import assert from "node:assert/strict";
import { ValueError } from "../mod.ts";
import {
  isoLossGrid,
  optimalSparsity,
  PAPER_SCALING_LAW as PAPER,
  scalingLaw,
} from "../src/train/mod.ts";
import {
  chunkSparsity,
  expertLoad,
  Figure,
  figurePage,
  isoLossContours,
  lossCurves,
  lossVsN,
  lossVsSparsity,
  projectionSparsity,
  show,
  sparsityCurves,
  speedupVsBatch,
  speedupVsSparsity,
  toHtml,
  toPng,
} from "../src/plot/mod.ts";
import { findChromium, runHeadlessChromium } from "../src/plot/export.ts";
import { resetNotebookPlotly } from "../src/plot/figure.ts";

const chromium = await findChromium();
if (!chromium) {
  console.warn(
    "plot_test: no Chromium (apt-get install -y chromium); browser rendering checks are skipped",
  );
}

const law = (N: number, S: number) => scalingLaw(PAPER, N, S);
const sweep = [3e8, 7e8, 1.3e9].flatMap((N) =>
  [0, 0.4, 0.6, 0.8].map((S) => ({ N, S, loss: law(N, S) }))
);

/** One figure from every builder, with the trace count each should render. */
function everyFigure(): Figure[] {
  return [
    lossCurves(
      [
        { name: "dense", steps: [0, 100, 200, 300], loss: [5.5, 3.4, 3.0, 2.9] },
        { name: "S=0.5", steps: [0, 100, 200, 300], loss: [5.5, 3.5, 3.1, 3.0] },
      ],
      {
        title: "Loss curves",
        smoothing: 0.5,
        validation: [{ name: "dense", steps: [300], loss: [3.05] }],
      },
    ),
    lossVsSparsity(sweep, { law, title: "Loss vs S" }),
    lossVsN(sweep, { law, title: "Loss vs N" }),
    isoLossContours(isoLossGrid(PAPER, [3e8, 1e9, 3e9, 7e9], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]), {
      sStar: optimalSparsity(PAPER),
    }),
    projectionSparsity([
      {
        name: "top-K 70%",
        projections: ["qkv", "o", "gate/up", "down"],
        sparsity: [0.3, 0.3, 0.3, 0.78],
      },
      { name: "ReLU only", projections: ["qkv", "o", "gate/up", "down"], sparsity: [0, 0, 0, 0.6] },
    ], { target: 0.3, title: "Per-projection sparsity" }),
    sparsityCurves([{ name: "down", steps: [0, 10, 20], sparsity: [0.5, 0.6, 0.62] }], {
      target: 0.3,
    }),
    expertLoad([[10, 20, 30, 40], [25, 25, 25, 25]], { layers: ["attn 0", "attn 1"] }),
    chunkSparsity([{
      name: "top-K",
      chunkSizes: [1, 2, 4, 8, 64],
      sparsity: [0.5, 0.3, 0.15, 0.05, 0],
    }]),
    speedupVsSparsity([{ name: "spmm", sparsity: [0.5, 0.7, 0.9], speedup: [1.5, 2.2, 4.0] }], {
      title: "Speed-up",
      subtitle: "llvmpipe <LLVM>",
    }),
    speedupVsBatch([{ name: "S=0.7", batchSizes: [1, 4, 16, 64], speedup: [2.5, 2.0, 1.3, 1.0] }]),
  ];
}

Deno.test("figures: builders produce plain {data, layout} with the expected traces", () => {
  const figs = everyFigure();
  assert.deepEqual(figs.map((f) => f.data.length), [5, 6, 8, 2, 2, 1, 1, 1, 2, 1]);
  for (const f of figs) {
    const json = JSON.parse(JSON.stringify(f));
    assert.deepEqual(Object.keys(json).sort(), ["data", "layout"]);
    assert.ok(json.data.every((t: { type?: string }) => typeof t.type === "string"));
  }
  // Validation runs share the training run's colour; the smoothed curve is the legend entry.
  const [loss] = figs;
  const colours = loss!.data.map((t) => (t.line as { color: string }).color);
  assert.equal(colours[0], colours[4]);
  assert.deepEqual(loss!.data.map((t) => t.showlegend !== false), [false, true, false, true, true]);
  // Expert counts are normalised per layer; the colour scale is centred on the uniform share.
  const load = figs[6]!.data[0]!;
  assert.deepEqual((load.z as number[][])[0], [0.1, 0.2, 0.3, 0.4]);
  assert.equal(load.zmid, 0.25);
  assert.equal(String(figs[1]), "Figure(6 traces: Loss vs S)");
});

Deno.test("figures: smoothing is a debiased EMA", () => {
  const fig = lossCurves([{ name: "flat", steps: [0, 1, 2, 3], loss: [2, 2, 2, 2] }], {
    smoothing: 0.9,
  });
  for (const v of fig.data[1]!.y as number[]) assert.ok(Math.abs(v - 2) < 1e-12);
});

Deno.test("figures: builders reject mismatched inputs with ValueError", () => {
  assert.throws(() => lossCurves([{ name: "a", steps: [1, 2], loss: [1] }]), ValueError);
  assert.throws(
    () => projectionSparsity([{ name: "a", projections: ["q"], sparsity: [0.1, 0.2] }]),
    /1 projections/,
  );
  assert.throws(() => expertLoad([[1, 2], [1]]), ValueError);
  assert.throws(() => expertLoad([[1, -2]]), ValueError);
  assert.throws(() => lossVsSparsity([{ N: 1e8, S: 1, loss: 3 }]), ValueError);
  assert.throws(
    () => isoLossContours({ activated: [1, 2], sparsity: [0.1], loss: [[1]] }),
    ValueError,
  );
  assert.throws(() => speedupVsBatch([{ name: "a", batchSizes: [1], speedup: [] }]), ValueError);
});

Deno.test("Jupyter bundle: plotly JSON + HTML + text; plotly.js inlined once per session", async () => {
  const display = Symbol.for("Jupyter.display");
  const evil = new Figure([{ type: "bar", x: ["</script><script>alert(1)</script>"], y: [1] }]);
  type Displayable = { [display](): Promise<Record<string, unknown>> };
  resetNotebookPlotly();
  const first = await (evil as unknown as Displayable)[display]();
  const second = await (evil as unknown as Displayable)[display]();
  assert.deepEqual(Object.keys(first).sort(), [
    "application/vnd.plotly.v1+json",
    "text/html",
    "text/plain",
  ]);
  assert.deepEqual(first["application/vnd.plotly.v1+json"], evil.toJSON());
  assert.equal(first["text/plain"], "Figure(1 trace)");
  const html1 = first["text/html"] as string, html2 = second["text/html"] as string;
  assert.ok(
    html1.length > 1e6 && html1.includes("if (window.Plotly) return;"),
    "first output carries the bundle",
  );
  assert.ok(html2.length < 1e4 && !html2.includes("amdDefine"), "later outputs only draw");
  assert.ok(html2.includes("Plotly.newPlot"));
  assert.ok(!html2.includes("</script><script>alert"), "data cannot close the script element");
  assert.equal((html2.match(/<\/script>/g) ?? []).length, 1);
  resetNotebookPlotly();
  assert.ok(
    ((await (evil as unknown as Displayable)[display]())["text/html"] as string).length > 1e6,
  );
  // No kernel under `deno test`: show() reports that instead of throwing.
  assert.equal(await show(evil), false);
});

Deno.test({
  name: "browser: every builder renders in headless Chromium without a JavaScript error",
  ignore: !chromium,
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      const figs = everyFigure();
      await toHtml(figs, `${dir}/all.html`, { title: "all figures" });
      // Classic Notebook has require.js: an AMD `define` on the page must not capture the bundle,
      // and must be left in place afterwards.
      const page = (await Deno.readTextFile(`${dir}/all.html`))
        .replace(
          "<body>",
          `<body><script>window.define = function () { throw new Error("AMD define called"); };
window.define.amd = {};</script>`,
        )
        .replace(
          "</body>",
          `<script>document.body.setAttribute("data-amd-kept", String(!!(window.define && window.define.amd)));
</script></body>`,
        );
      await Deno.writeTextFile(`${dir}/all.html`, page);
      const dom = await runHeadlessChromium(`${dir}/all.html`, { dumpDom: true }, {
        width: 1000,
        height: 800,
      });
      assert.match(dom, /data-amd-kept="true"/);
      const errors = dom.match(/<pre id="plot-errors">([\s\S]*?)<\/pre>/)?.[1] ??
        "<no error element>";
      assert.equal(errors, "", `JavaScript errors on the page:\n${errors}`);
      const rendered = [...dom.matchAll(/data-rendered-traces="(\d+)"/g)].map((m) => Number(m[1]));
      assert.deepEqual(rendered, figs.map((f) => f.data.length), "each plot drew all its traces");
      const svgs = (dom.match(/class="main-svg"/g) ?? []).length;
      assert.ok(svgs >= figs.length, `${svgs} main-svg elements for ${figs.length} figures`);
      assert.ok(dom.includes('class="contourlayer'), "the contour trace drew contours");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "browser: the page's error hook reports a script error (the check above can fail)",
  ignore: !chromium,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      // The real page without its plotly.js loader (also keeps this run short), plus a script error.
      const page = (await figurePage(new Figure([{ type: "scatter", x: [1], y: [1] }])))
        .replace(
          /<script type="text\/javascript">\(function \(\) \{\nif \(window\.Plotly\) return;[\s\S]*?<\/script>/,
          "",
        )
        .replace("</body>", "<script>undefinedFunction();</script></body>");
      assert.ok(page.length < 1e4, "loader stripped");
      await Deno.writeTextFile(`${dir}/bad.html`, page);
      const dom = await runHeadlessChromium(`${dir}/bad.html`, { dumpDom: true });
      assert.match(dom, /<pre id="plot-errors">[^<]*undefinedFunction is not defined/);
      // The plot says why it is empty instead of failing silently.
      assert.match(dom, /plotly\.js is not loaded on this page/);
      assert.doesNotMatch(dom, /data-rendered-traces="/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "browser: toPng writes a PNG of the requested size",
  ignore: !chromium,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    try {
      await toPng(lossVsN(sweep, { law }), `${dir}/fig.png`, { width: 640, height: 400 });
      const png = await Deno.readFile(`${dir}/fig.png`);
      assert.deepEqual([...png.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10]);
      const view = new DataView(png.buffer);
      assert.deepEqual([view.getUint32(16), view.getUint32(20)], [640, 400]);
      assert.ok(png.length > 10_000, `${png.length} bytes: not a blank image`);
      assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["fig.png"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
