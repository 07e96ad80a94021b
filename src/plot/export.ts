/**
 * Figure export: a standalone HTML page (plotly.js inlined, works offline) and a PNG rendered by
 * headless Chromium from that page.
 *
 * @module
 */
import { KitError, ValueError } from "../core/errors.ts";
import { atomicWriteFile } from "../util/fs.ts";
import { Figure, plotlySource } from "./figure.ts";

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Options of {@link figurePage} and {@link toHtml}. */
export interface PageOptions {
  /** Page title; defaults to the first figure's title. */
  title?: string;
  /** Plotly config for every figure (default `{ responsive: true }`). */
  config?: Record<string, unknown>;
}

function titleOf(fig: Figure): string | undefined {
  const t = fig.layout.title;
  return typeof t === "string" ? t : (t as { text?: string } | undefined)?.text;
}

/**
 * A standalone HTML page showing one or more figures, plotly.js inlined once. Script errors on
 * the page are written into a `<pre id="plot-errors">`, and each plot's `<div>` gets
 * `data-rendered-traces="N"` once `Plotly.newPlot` has drawn its N traces, so a headless browser
 * can tell a good page from a broken one by its DOM alone.
 *
 * @param figs A figure or several (one below the other).
 * @param opts Title and plotly config.
 * @returns The page.
 *
 * @example
 * ```ts ignore
 * import { Figure, figurePage } from "@qsparse/kit/plot";
 * const html = await figurePage(new Figure([{ type: "bar", x: ["a"], y: [1] }]));
 * ```
 */
export async function figurePage(
  figs: Figure | readonly Figure[],
  opts: PageOptions = {},
): Promise<string> {
  const list = figs instanceof Figure ? [figs] : figs;
  if (list.length === 0) throw new ValueError("figurePage", "no figures");
  const title = opts.title ?? titleOf(list[0]!) ?? "figure";
  const bundle = await plotlySource();
  const body = list.map((f, i) =>
    f.htmlFragment({ bundle: i === 0 ? bundle : undefined, config: opts.config })
  );
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${escapeHtml(title)}</title>
<style>html, body { margin: 0; padding: 0; background: white; } #plot-errors:empty { display: none; }</style>
<script type="text/javascript">
window.addEventListener("error", function (e) {
  var pre = document.getElementById("plot-errors");
  if (pre) pre.textContent += (e.message || String(e.error)) + "\\n";
});
window.addEventListener("unhandledrejection", function (e) {
  var pre = document.getElementById("plot-errors");
  if (pre) pre.textContent += "unhandled rejection: " + String(e.reason) + "\\n";
});
</script>
</head>
<body>
<pre id="plot-errors"></pre>
${body.join("\n")}
</body>
</html>
`;
}

/**
 * Writes one or more figures as a standalone HTML page (atomically), viewable offline.
 *
 * @param figs A figure or several.
 * @param path Output `.html` path.
 * @param opts Page title and plotly config.
 *
 * @example
 * ```ts ignore
 * import { lossCurves, toHtml } from "@qsparse/kit/plot";
 * await toHtml(lossCurves([{ name: "dense", steps: [0, 100], loss: [5.5, 3.1] }]), "results/loss.html");
 * ```
 */
export async function toHtml(
  figs: Figure | readonly Figure[],
  path: string,
  opts: PageOptions = {},
): Promise<void> {
  await atomicWriteFile(path, await figurePage(figs, opts));
}

const CHROMIUM_NAMES = [
  "chromium",
  "chromium-browser",
  "google-chrome",
  "google-chrome-stable",
  "chrome",
];

/**
 * Finds a Chromium or Chrome binary: `$CHROMIUM` (or `$CHROME_PATH`) if set, else the first of
 * chromium, chromium-browser, google-chrome(-stable), chrome on `$PATH`.
 *
 * @returns The absolute path, or null when there is none (Debian: `apt-get install -y chromium`).
 *
 * @example
 * ```ts ignore
 * import { findChromium } from "./export.ts";
 * console.log((await findChromium()) ?? "no chromium");
 * ```
 */
export async function findChromium(): Promise<string | null> {
  const env = Deno.env.get("CHROMIUM") ?? Deno.env.get("CHROME_PATH");
  if (env) return env;
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    for (const name of CHROMIUM_NAMES) {
      const p = `${dir}/${name}`;
      try {
        if ((await Deno.stat(p)).isFile) return p;
      } catch {
        // not here
      }
    }
  }
  return null;
}

/** Options of {@link runHeadlessChromium}. */
export interface HeadlessOptions {
  /** Window width in CSS pixels; default 900. */
  width?: number;
  /** Window height in CSS pixels; default 600. */
  height?: number;
  /** Virtual time (ms) the page may use for scripts and timers before the capture; default 10000. */
  virtualTimeMs?: number;
  /** Wall-clock limit (ms) for the browser process; default 60000. */
  timeoutMs?: number;
  /** Device pixel ratio (2 gives a sharper screenshot at twice the pixels); default 1. */
  scale?: number;
}

/**
 * Loads a local HTML file in headless Chromium and either dumps the DOM (returned as text) or
 * takes a screenshot. The flags keep the browser off the network and out of the user's profile.
 *
 * @param htmlPath The page.
 * @param action `{ dumpDom: true }` or `{ screenshot: pngPath }`.
 * @param opts Window size and time limits.
 * @returns The serialised DOM (`dumpDom`) or "" (screenshot).
 * @throws {KitError} When Chromium is missing, fails or times out.
 *
 * @example
 * ```ts ignore
 * import { runHeadlessChromium } from "./export.ts";
 * const dom = await runHeadlessChromium("results/loss.html", { dumpDom: true });
 * ```
 */
export async function runHeadlessChromium(
  htmlPath: string,
  action: { dumpDom: true } | { screenshot: string },
  opts: HeadlessOptions = {},
): Promise<string> {
  const op = "chromium";
  const bin = await findChromium();
  if (!bin) {
    throw new KitError(op, "no Chromium found (apt-get install -y chromium, or set $CHROMIUM)");
  }
  const width = opts.width ?? 900, height = opts.height ?? 600;
  const profile = await Deno.makeTempDir({ prefix: "qsparse-chromium-" });
  const url = new URL(`file://${await Deno.realPath(htmlPath)}`).href;
  const args = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    `--force-device-scale-factor=${opts.scale ?? 1}`,
    `--user-data-dir=${profile}`,
    `--window-size=${width},${height}`,
    `--virtual-time-budget=${opts.virtualTimeMs ?? 10000}`,
    ..."dumpDom" in action ? ["--dump-dom"] : [`--screenshot=${action.screenshot}`],
    url,
  ];
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), opts.timeoutMs ?? 60000);
  try {
    const out = await new Deno.Command(bin, {
      args,
      stdout: "piped",
      stderr: "piped",
      signal: ac.signal,
    }).output();
    if (ac.signal.aborted) {
      throw new KitError(op, `timed out after ${opts.timeoutMs ?? 60000} ms on ${htmlPath}`);
    }
    if (!out.success) {
      const err = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-5).join("\n");
      throw new KitError(op, `exit code ${out.code} on ${htmlPath}: ${err}`);
    }
    return "dumpDom" in action ? new TextDecoder().decode(out.stdout) : "";
  } finally {
    clearTimeout(timer);
    await Deno.remove(profile, { recursive: true }).catch(() => {});
  }
}

/**
 * Renders a figure to PNG with headless Chromium, the figure sized to the image.
 *
 * @param fig The figure.
 * @param path Output `.png` path.
 * @param opts Size (default 900×600 CSS px), pixel ratio and limits.
 * @throws {KitError} When Chromium is missing or fails; the HTML and PNG are then not written.
 *
 * @example
 * ```ts ignore
 * import { lossCurves, toPng } from "@qsparse/kit/plot";
 * await toPng(lossCurves([{ name: "dense", steps: [0, 100], loss: [5.5, 3.1] }]), "loss.png", { width: 800, height: 500 });
 * ```
 */
export async function toPng(fig: Figure, path: string, opts: HeadlessOptions = {}): Promise<void> {
  const width = opts.width ?? 900, height = opts.height ?? 600;
  if (!(width > 0 && height > 0)) {
    throw new ValueError("toPng", `size must be positive, got ${width}×${height}`);
  }
  // A copy of the figure with the exact size and no animations, so the capture is complete.
  const sized = new Figure(fig.data, {
    ...fig.layout,
    width,
    height,
    autosize: false,
    transition: { duration: 0 },
  });
  const dir = await Deno.makeTempDir({ prefix: "qsparse-png-" });
  try {
    const html = `${dir}/figure.html`;
    await Deno.writeTextFile(html, await figurePage(sized, { config: { staticPlot: true } }));
    const png = `${dir}/figure.png`;
    await runHeadlessChromium(html, { screenshot: png }, { ...opts, width, height });
    await atomicWriteFile(path, await Deno.readFile(png));
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
