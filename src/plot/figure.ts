/**
 * Plotly figures as plain `{ data, layout }` objects, wrapped in a {@link Figure} that renders
 * itself in Jupyter (Deno kernel) and exports to HTML or PNG.
 *
 * In a notebook, a figure shows as a MIME bundle with both `application/vnd.plotly.v1+json` (VS
 * Code, nteract) and `text/html` (JupyterLab without the plotly extension, nbconvert HTML, classic
 * Notebook). The HTML carries the plotly.js bundle inline, once per kernel session: the first
 * figure shown defines `window.Plotly`, later ones only call `Plotly.newPlot`.
 *
 * @module
 */

/** One plotly trace (`{ type: "scatter", x, y, ... }`); see plotly.js's reference. */
export type PlotlyTrace = Record<string, unknown>;
/** A plotly layout (`{ title, xaxis, yaxis, ... }`). */
export type PlotlyLayout = Record<string, unknown>;
/** The JSON form of a figure, as the `application/vnd.plotly.v1+json` MIME type expects. */
export interface PlotlyFigure {
  /** Traces. */
  data: PlotlyTrace[];
  /** Layout. */
  layout: PlotlyLayout;
}

/** A Jupyter MIME bundle: MIME type → content. */
export type MediaBundle = Record<string, unknown>;

/** The symbol Deno's Jupyter kernel looks for; the same as `Deno.jupyter.$display`. */
const JUPYTER_DISPLAY: unique symbol = Symbol.for("Jupyter.display") as never;

let plotlyText: Promise<string> | undefined;
let notebookHasPlotly = false;

/**
 * The plotly.js bundle (minified, ~4.8 MB) as text, loaded on first use and cached.
 *
 * @returns The JavaScript source; it defines `window.Plotly`.
 *
 * @example
 * ```ts ignore
 * import { plotlySource } from "./figure.ts";
 * console.log((await plotlySource()).length);
 * ```
 */
export function plotlySource(): Promise<string> {
  // Read as text: importing the bundle as a module fails (it expects `window`). A literal,
  // full npm specifier, so publishing can analyse it and users need no import map.
  return plotlyText ??= import("npm:plotly.js-dist-min@^4.1.2/plotly.min.js", {
    with: { type: "text" },
  }).then(
    (m) => m.default as string,
    (e) => {
      plotlyText = undefined; // let a later call retry, e.g. after `deno install`
      throw e;
    },
  );
}

/**
 * Makes the next figure displayed in the notebook carry the plotly.js bundle again. Call it after
 * clearing the outputs of the cell that showed the first figure (that output defined
 * `window.Plotly` for the page). A kernel restart does this by itself.
 *
 * @example
 * ```ts
 * import { resetNotebookPlotly } from "./figure.ts";
 * resetNotebookPlotly();
 * ```
 */
export function resetNotebookPlotly(): void {
  notebookHasPlotly = false;
}

/** JSON that is safe inside a `<script>` element. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/</g, "\\u003c");
}

/** Script text that defines `window.Plotly` from the inline bundle unless the page has it. */
function plotlyLoaderScript(source: string): string {
  // Classic Notebook loads require.js; a UMD build that sees an AMD `define` registers an
  // anonymous module (and fails with "Mismatched anonymous define()") instead of setting
  // window.Plotly. Hide `define` while the bundle runs.
  return `(function () {
if (window.Plotly) return;
var amdDefine = window.define;
if (amdDefine && amdDefine.amd) window.define = undefined;
try {
${source.replace(/<\/(script)/gi, "<\\/$1")}
} finally {
  if (amdDefine) window.define = amdDefine;
}
})();`;
}

let plotCounter = 0;

/**
 * A plotly figure: plain `data` and `layout`, displayable in Jupyter and exportable.
 *
 * @example Build, inspect and serialise
 * ```ts
 * import { Figure } from "@qsparse/kit/plot";
 * import assert from "node:assert/strict";
 * const fig = new Figure([{ type: "scatter", x: [1, 2], y: [3, 4], name: "run" }], { title: { text: "loss" } });
 * assert.equal(fig.toJSON().data.length, 1);
 * assert.equal(String(fig), "Figure(1 trace: loss)");
 * ```
 */
export class Figure {
  /** Traces. */
  data: PlotlyTrace[];
  /** Layout. */
  layout: PlotlyLayout;

  /**
   * Wraps traces and a layout.
   *
   * @param data Traces.
   * @param layout Layout.
   */
  constructor(data: PlotlyTrace[], layout: PlotlyLayout = {}) {
    this.data = data;
    this.layout = layout;
  }

  /** The plain `{ data, layout }` object (what `JSON.stringify` writes). */
  toJSON(): PlotlyFigure {
    return { data: this.data, layout: this.layout };
  }

  /** A one-line summary, e.g. `Figure(3 traces: Loss vs S)`. */
  toString(): string {
    const t = this.layout.title;
    const title = typeof t === "string" ? t : (t as { text?: string } | undefined)?.text;
    const n = this.data.length;
    return `Figure(${n} trace${n === 1 ? "" : "s"}${title ? `: ${title}` : ""})`;
  }

  /**
   * An HTML fragment: a `<div>` and a script that draws into it with `Plotly.newPlot`. When
   * `window.Plotly` is not there yet, the script waits up to 5 s for it (another output may still
   * be loading the bundle) and then says so in the div rather than failing silently.
   *
   * @param opts `bundle`: prepend the plotly.js loader (pass the {@link plotlySource} text);
   *   `config`: plotly config (default `{ responsive: true }`; `{ staticPlot: true }` for images).
   * @returns HTML.
   */
  htmlFragment(opts: { bundle?: string; config?: Record<string, unknown> } = {}): string {
    const id = `qsparse-plot-${++plotCounter}-${crypto.randomUUID().slice(0, 8)}`;
    const height = typeof this.layout.height === "number" ? `${this.layout.height}px` : "450px";
    const loader = opts.bundle === undefined
      ? ""
      : `<script type="text/javascript">${plotlyLoaderScript(opts.bundle)}</script>\n`;
    return `${loader}<div id="${id}" class="qsparse-plot" style="width:100%;height:${height};"></div>
<script type="text/javascript">
(function () {
  var el = document.getElementById(${JSON.stringify(id)});
  var fig = ${scriptJson(this.toJSON())};
  var config = ${scriptJson(opts.config ?? { responsive: true })};
  function draw() {
    window.Plotly.newPlot(el, fig.data, fig.layout, config).then(function (gd) {
      el.setAttribute("data-rendered-traces", String(gd.data.length));
    });
  }
  if (window.Plotly) return draw();
  var tries = 0;
  var timer = setInterval(function () {
    if (window.Plotly) { clearInterval(timer); draw(); }
    else if (++tries > 100) {
      clearInterval(timer);
      el.textContent = "plotly.js is not loaded on this page: re-run the cell of the first figure, " +
        "or call resetNotebookPlotly() and show this figure again.";
    }
  }, 50);
})();
</script>`;
  }

  /**
   * The Jupyter MIME bundle (called by Deno's kernel when a figure is a cell's value or passed to
   * `Deno.jupyter.display`). The first figure of a session inlines plotly.js.
   *
   * @returns `application/vnd.plotly.v1+json`, `text/html` and `text/plain`.
   */
  async [JUPYTER_DISPLAY](): Promise<MediaBundle> {
    const bundle = notebookHasPlotly ? undefined : await plotlySource();
    notebookHasPlotly = true;
    return {
      "application/vnd.plotly.v1+json": this.toJSON(),
      "text/html": this.htmlFragment({ bundle }),
      "text/plain": this.toString(),
    };
  }
}
