/**
 * What the study notebooks share: the profile parameter, loading a study's results (smoke: train
 * the tiny grid now into a temporary folder; full: read the committed results file, or say
 * clearly that it is not there yet), displaying markdown and figures from the Deno kernel
 * without losing outputs, and saving figures and findings for the README.
 *
 * Notebook cells are scripts (no `import.meta`) run with the notebook's folder as working
 * directory, so paths here default to `../results`, relative to `notebooks/`.
 *
 * @module
 */
import { toPng } from "../src/plot/export.ts";
import { Figure } from "../src/plot/figure.ts";
import { type Device, openDevice } from "../src/tensor/device.ts";
import { KitError, ValueError } from "../src/core/errors.ts";
import { atomicWriteFile } from "../src/util/fs.ts";
import { readResults, type RunRecord, type RunSpec, runSweep } from "../src/train/runner.ts";
import { type Profile, type StudyName, studyRuns } from "./studies.ts";
import { V2_STUDIES } from "./v2_grid.ts";

/**
 * Checks a notebook's `profile` parameter (cells are not type-checked, and a runner may inject
 * any string).
 *
 * @param value The parameter.
 * @returns `"smoke"` or `"full"`.
 * @throws {ValueError} For anything else.
 *
 * @example
 * ```ts
 * import { parseProfile } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.equal(parseProfile("full"), "full");
 * assert.throws(() => parseProfile("fast"), /smoke/);
 * ```
 */
export function parseProfile(value: unknown): Profile {
  if (value === "smoke" || value === "full") return value;
  throw new ValueError(
    "parseProfile",
    `profile must be "smoke" or "full", got ${JSON.stringify(value)}`,
  );
}

/**
 * Markdown that displays as rendered text in Jupyter (its MIME bundle is `text/markdown`).
 *
 * @example
 * ```ts
 * import { Markdown } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const md = new Markdown("**S\\*** = 45.6%");
 * assert.equal(String(md), "**S\\*** = 45.6%");
 * ```
 */
export class Markdown {
  /** The markdown source. */
  readonly text: string;
  /**
   * Wraps markdown source.
   *
   * @param text Markdown source.
   */
  constructor(text: string) {
    this.text = text;
  }
  /** The source. @returns Markdown. */
  toString(): string {
    return this.text;
  }
  /** The Jupyter MIME bundle. @returns `text/markdown` and `text/plain`. */
  [Symbol.for("Jupyter.display")](): Record<string, string> {
    return { "text/markdown": this.text, "text/plain": this.text };
  }
}

/**
 * Wraps markdown for display (a tagged template or a plain call).
 *
 * @param text Markdown, or template strings.
 * @param values Template values.
 * @returns A displayable {@link Markdown}.
 *
 * @example
 * ```ts
 * import { markdown } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.equal(markdown`S* = ${45.6}%`.text, "S* = 45.6%");
 * assert.equal(markdown("**bold**").text, "**bold**");
 * ```
 */
export function markdown(text: string | TemplateStringsArray, ...values: unknown[]): Markdown {
  if (typeof text === "string") return new Markdown(text);
  return new Markdown(
    text.reduce((s, part, i) => s + part + (i < values.length ? String(values[i]) : ""), ""),
  );
}

/** Throughput assumed for the kernel's output channel; measured ≈ 5 MB/s on a busy 2-core box. */
const OUTPUT_BYTES_PER_MS = 2000;

/**
 * Displays figures and markdown in order from a notebook cell, waiting after each until the
 * kernel has had time to send it. Deno's kernel can send outputs after reporting the cell idle,
 * and nbclient then drops them; a fixed 10 ms wait covers small outputs, but the first figure of
 * a notebook carries the 4.8 MB plotly.js bundle, which needed about a second here. So the wait
 * grows with the output's size (10 ms + 1 ms per 2 kB).
 *
 * Strings are shown as markdown (empty ones are skipped). Returns nothing, so a cell ending with `await display(...)`
 * adds no stray value to its outputs. Outside Jupyter, each item is printed as text.
 *
 * With the environment variable `QSPARSE_STATIC_FIGURES=1` (set by `scripts/render_full.sh`),
 * figures are shown as static PNG images (rendered by headless Chromium) instead of interactive
 * plotly, so a committed notebook carries no 4.8 MB plotly bundle and renders on any viewer.
 *
 * @param items Figures, markdown, strings, or anything with a Jupyter display method.
 * @returns When displayed.
 *
 * @example
 * ```ts
 * import { Figure } from "@qsparse/kit/plot";
 * import { display } from "@qsparse/kit/studies";
 * await display("**under deno test this prints**", new Figure([{ type: "bar", x: ["a"], y: [1] }]));
 * ```
 */
export async function display(...items: (Figure | Markdown | string | object)[]): Promise<void> {
  let jupyter: typeof Deno.jupyter | undefined;
  try {
    // Reading Deno.jupyter outside the kernel throws (and "jupyter" in Deno is true anyway).
    jupyter = Deno.jupyter;
  } catch {
    jupyter = undefined;
  }
  for (const item of items) {
    if (item === "") continue; // lets cells write `cond ? table : ""`
    const obj = typeof item === "string" ? new Markdown(item) : item;
    if (!jupyter) {
      console.log(String(obj));
      continue;
    }
    const bundle = obj instanceof Figure && staticFigures()
      ? await pngBundle(obj)
      : await jupyter.format(obj);
    await jupyter.display(bundle, { raw: true });
    await sleep(10 + JSON.stringify(bundle).length / OUTPUT_BYTES_PER_MS);
  }
  // Console output written before this call needs the same grace.
  await sleep(10);
}

function staticFigures(): boolean {
  try {
    return Deno.env.get("QSPARSE_STATIC_FIGURES") === "1";
  } catch {
    return false; // no --allow-env: interactive figures
  }
}

/** A figure as a Jupyter bundle holding only a PNG and its title as text. */
async function pngBundle(fig: Figure): Promise<Record<string, string>> {
  const dir = await Deno.makeTempDir({ prefix: "qsparse-display-" });
  try {
    const path = `${dir}/figure.png`;
    // Headless Chromium can time out on a loaded machine; one retry before failing the cell.
    await toPng(fig, path, { width: 900, height: 560 })
      .catch(() => toPng(fig, path, { width: 900, height: 560 }));
    const bytes = await Deno.readFile(path);
    let bin = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    }
    const title = (fig.layout.title as { text?: string } | undefined)?.text ?? "figure";
    return { "image/png": btoa(bin), "text/plain": `[figure: ${title}]` };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A study's runs as a notebook sees them. */
export interface StudyData {
  /** The study. */
  study: string;
  /** The profile. */
  profile: Profile;
  /** Finished runs (empty when the full results are not there yet). */
  records: RunRecord[];
  /** Whether there is anything to analyse. */
  available: boolean;
  /** The results file read or written. */
  resultsFile: string;
  /** One markdown paragraph: what was run or read, on which adapter, or why nothing is there. */
  message: string;
}

/** Options of {@link loadStudy}. */
export interface LoadStudyOptions {
  /** Device for smoke runs (and full re-runs); opened and closed here when omitted. */
  device?: Device;
  /** Folder of the committed results; default `../results` (relative to `notebooks/`). */
  resultsDir?: string;
  /** Full profile: train the grid's missing runs into the results file first. */
  rerun?: boolean;
  /** Full profile: where re-runs keep checkpoints; default `../runs`. */
  runsDir?: string;
  /**
   * The grid, when it does not come from `studyRuns(study, profile)` (e.g. a study defined
   * elsewhere); a function of the runs folder, since dependent runs start from checkpoints in it.
   */
  specs?: (runsDir: string) => RunSpec[];
  /** Print training progress. */
  progress?: boolean;
}

/**
 * Loads a study's runs for a notebook. **Smoke:** trains the study's smoke grid now, into a new
 * temporary folder (nothing in the repository changes; the checkpoints are deleted afterwards,
 * the results file stays). **Full:** reads
 * `<resultsDir>/<study>.jsonl`; when it is missing or empty the returned `message` says so and
 * how to produce it, and `available` is false (a notebook then skips its analysis instead of
 * failing); with `rerun` it first trains whatever runs of the full grid are missing.
 *
 * @param study The study.
 * @param profile `smoke` or `full`.
 * @param opts Device, folders, re-run, a custom grid.
 * @returns Records and a message.
 *
 * @example Full results that are not there yet
 * ```ts
 * import { loadStudy } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * const data = await loadStudy("sparsity_vs_loss", "full", { resultsDir: "/nonexistent" });
 * assert.equal(data.available, false);
 * assert.match(data.message, /not committed yet/);
 * ```
 */
export async function loadStudy(
  study: StudyName,
  profile: Profile,
  opts: LoadStudyOptions = {},
): Promise<StudyData> {
  const grid = (runsDir: string): RunSpec[] =>
    opts.specs ? opts.specs(runsDir) : studyRuns(study, profile, { runsDir });
  if (profile === "smoke") {
    const dir = await Deno.makeTempDir({ prefix: `qsparse-${study}-` });
    const resultsFile = `${dir}/${study}.jsonl`;
    const runsDir = `${dir}/runs`;
    const t0 = performance.now();
    const { records, adapter } = await withDevice(opts.device, async (dev) => ({
      records: await runSweep(dev, grid(runsDir), {
        results: resultsFile,
        runsDir,
        progress: opts.progress,
      }),
      adapter: dev.description,
    }));
    // The records are in hand; the checkpoints (megabytes per run) would only pile up in /tmp.
    await Deno.remove(runsDir, { recursive: true }).catch(() => {});
    const s = ((performance.now() - t0) / 1000).toFixed(0);
    return {
      study,
      profile,
      records,
      available: records.length > 0,
      resultsFile,
      message:
        `**Smoke profile:** trained the ${records.length} runs of the \`${study}\` smoke grid ` +
        `(tiny models, a few steps) in ${s} s on ${adapter} (results in \`${resultsFile}\`). ` +
        `The numbers test the pipeline, not the paper: read verdicts from the full profile.`,
    };
  }
  const resultsDir = opts.resultsDir ?? "../results";
  const resultsFile = `${resultsDir}/${study}.jsonl`;
  if (opts.rerun) {
    const runsDir = opts.runsDir ?? "../runs";
    await withDevice(
      opts.device,
      (dev) =>
        runSweep(dev, grid(runsDir), { results: resultsFile, runsDir, progress: opts.progress }),
    );
  }
  const records = (await readResults(resultsFile, { missingOk: true })).filter((r) =>
    r.study === study
  );
  const gridIds = new Set(grid(opts.runsDir ?? "../runs").map((r) => r.id));
  const expected = gridIds.size;
  // Runs beyond the grid (larger sizes or more seeds, e.g. from a GPU session) are analysed too.
  const inGrid = records.filter((r) => gridIds.has(r.id)).length;
  const extra = records.length - inGrid;
  if (!records.length) {
    return {
      study,
      profile,
      records,
      available: false,
      resultsFile,
      message: `**Full profile: results not committed yet.** \`${resultsFile}\` has no ` +
        `\`${study}\` runs. ` +
        // The v2 grids are built from the LR table, which each size's tuning must fill first:
        // their run script keeps that order, a bare sweep would train at the fallback rate.
        ((V2_STUDIES as readonly string[]).includes(study)
          ? `Produce them with \`scripts/run_v2.sh\` from the repository root (it tunes and ` +
            `picks each size's learning rate before its grid; docs/studies-v2.md), then re-run ` +
            `this notebook. The analyses below say what is missing.`
          : `Produce them with \`deno run -A cli.ts sweep --study ${study} --profile full ` +
            `--results results/${study}.jsonl\` from the repository root (or set ` +
            `\`rerun = true\` in the parameters cell), then re-run this notebook. The analysis ` +
            `cells below are skipped.`),
    };
  }
  const adapters = [...new Set(records.map((r) => r.adapter))].join(", ");
  const versions = [...new Set(records.map((r) => r.codeVersion))].join(", ");
  const dates = records.map((r) => r.date).sort();
  return {
    study,
    profile,
    records,
    available: true,
    resultsFile,
    message: `**Full profile:** ${inGrid} of the grid's ${expected} runs` +
      (extra > 0 ? ` and ${extra} beyond it (more sizes or seeds)` : "") +
      ` from \`${resultsFile}\` ` +
      `(${adapters}; code ${versions}; ${dates[0]?.slice(0, 10)} to ${
        dates.at(-1)?.slice(0, 10)
      }).` +
      (inGrid < expected ? " The sweep is not complete: results are partial." : ""),
  };
}

async function withDevice<T>(given: Device | undefined, fn: (d: Device) => Promise<T>): Promise<T> {
  if (given) return await fn(given);
  const dev = await openDevice();
  try {
    return await fn(dev);
  } finally {
    dev.destroy();
  }
}

/** Options of {@link saveFigure}. */
export interface SaveFigureOptions {
  /** Results folder; the figure goes to its `figures/`. Default `../results` (from `notebooks/`). */
  resultsDir?: string;
  /** Width in CSS pixels; default 900. */
  width?: number;
  /** Height in CSS pixels; default 560. */
  height?: number;
}

/**
 * Writes a figure as `<resultsDir>/figures/<name>.png` (headless Chromium) for the README. Only the full profile
 * writes (smoke figures come from tiny runs and would overwrite the real ones); when Chromium is
 * missing or fails, this reports it and returns null rather than stopping the notebook.
 *
 * @param fig The figure.
 * @param name File name without extension, e.g. `02_loss_vs_sparsity`.
 * @param profile The notebook's profile.
 * @param opts Folder and size.
 * @returns The path written, or null.
 *
 * @example
 * ```ts
 * import { Figure } from "@qsparse/kit/plot";
 * import { saveFigure } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.equal(await saveFigure(new Figure([]), "x", "smoke"), null);
 * ```
 */
export async function saveFigure(
  fig: Figure,
  name: string,
  profile: Profile,
  opts: SaveFigureOptions = {},
): Promise<string | null> {
  if (profile !== "full") return null;
  const dir = `${opts.resultsDir ?? "../results"}/figures`;
  const path = `${dir}/${name}.png`;
  try {
    await Deno.mkdir(dir, { recursive: true });
    await toPng(fig, path, { width: opts.width ?? 900, height: opts.height ?? 560 });
    return path;
  } catch (e) {
    if (e instanceof KitError) {
      console.warn(`saveFigure: ${name}.png not written: ${e.message}`);
      return null;
    }
    throw e;
  }
}

/**
 * Writes markdown (e.g. a findings table) to `<resultsDir>/findings/<name>.md` in the full
 * profile, for the README; does nothing in smoke.
 *
 * @param text The markdown.
 * @param name File name without extension.
 * @param profile The notebook's profile.
 * @param resultsDir Results folder; default `../results` (from `notebooks/`).
 * @returns The path written, or null.
 *
 * @example
 * ```ts
 * import { saveMarkdown } from "@qsparse/kit/studies";
 * import assert from "node:assert/strict";
 * assert.equal(await saveMarkdown("| a |", "x", "smoke"), null);
 * ```
 */
export async function saveMarkdown(
  text: string,
  name: string,
  profile: Profile,
  resultsDir = "../results",
): Promise<string | null> {
  if (profile !== "full") return null;
  const dir = `${resultsDir}/findings`;
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/${name}.md`;
  await atomicWriteFile(path, text.endsWith("\n") ? text : text + "\n");
  return path;
}
