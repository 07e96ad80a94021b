/**
 * Training progress for people: one line (step/total, loss, tokens/s, ETA) that updates in place
 * on a terminal, an updating display in Jupyter (Deno kernel), and a plain line per log record
 * when the output goes to a file or a pipe. Machine-readable JSON lines are the trainer's `json`
 * hook and the run folder's `log.jsonl`, not this view.
 *
 * @module
 */

/** What the progress line shows. */
export interface ProgressState {
  /** Steps completed. */
  step: number;
  /** Steps of the run. */
  total: number;
  /** The latest training loss read back (it is read every `logEvery` steps). */
  loss?: number;
  /** The latest validation loss. */
  valLoss?: number;
  /** Overall achieved sparsity (0..1). */
  sparsity?: number;
  /** Training tokens per second over this invocation, first step (compilation) excluded. */
  tokensPerSecond?: number;
  /** Estimated seconds to the end of training. */
  etaSeconds?: number;
  /** Something to flag on the line (e.g. a collapsed MoE router). */
  warning?: string;
}

/**
 * Formats seconds as `42s`, `3m05s` or `1h02m`.
 *
 * @param s Seconds.
 * @returns A short duration.
 *
 * @example
 * ```ts
 * import { formatDuration } from "./progress.ts";
 * import assert from "node:assert/strict";
 * assert.equal(formatDuration(42.4), "42s");
 * assert.equal(formatDuration(185), "3m05s");
 * assert.equal(formatDuration(3720), "1h02m");
 * ```
 */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s) || s < 0) return "?";
  const r = Math.round(s);
  if (r < 60) return `${r}s`;
  if (r < 3600) return `${Math.floor(r / 60)}m${String(r % 60).padStart(2, "0")}s`;
  return `${Math.floor(r / 3600)}h${String(Math.floor((r % 3600) / 60)).padStart(2, "0")}m`;
}

/**
 * The progress line: `step 40/200 (20%)  loss 2.4312  val 2.5101  S 49.8%  1,234 tok/s  ETA 2m10s`.
 *
 * @param p The state.
 * @returns One line of text.
 *
 * @example
 * ```ts
 * import { formatProgress } from "./progress.ts";
 * import assert from "node:assert/strict";
 * const line = formatProgress({ step: 40, total: 200, loss: 2.43126, tokensPerSecond: 1234.5, etaSeconds: 130 });
 * assert.equal(line, "step 40/200 (20%)  loss 2.4313  1,235 tok/s  ETA 2m10s");
 * ```
 */
export function formatProgress(p: ProgressState): string {
  const pct = Math.floor((100 * p.step) / Math.max(1, p.total));
  const parts = [`step ${p.step}/${p.total} (${pct}%)`];
  if (p.loss !== undefined) parts.push(`loss ${p.loss.toFixed(4)}`);
  if (p.valLoss !== undefined) parts.push(`val ${p.valLoss.toFixed(4)}`);
  if (p.sparsity !== undefined) parts.push(`S ${(100 * p.sparsity).toFixed(1)}%`);
  if (p.tokensPerSecond !== undefined && Number.isFinite(p.tokensPerSecond)) {
    parts.push(`${Math.round(p.tokensPerSecond).toLocaleString("en-US")} tok/s`);
  }
  if (p.etaSeconds !== undefined && p.step < p.total) {
    parts.push(`ETA ${formatDuration(p.etaSeconds)}`);
  }
  if (p.warning) parts.push(p.warning);
  return parts.join("  ");
}

/** Where the progress goes. */
export type ProgressKind = "tty" | "jupyter" | "lines";

/** A progress display; `update` is cheap to call every step (it throttles itself). */
export interface ProgressView {
  /** The kind of output it writes. */
  readonly kind: ProgressKind;
  /**
   * Shows the state. `milestone` marks a log record (always shown; the only updates a
   * `lines` view prints); other updates are throttled to a few per second.
   */
  update(p: ProgressState, milestone?: boolean): void;
  /** A one-off line (e.g. "resuming from step N"), printed above the progress line. */
  message(text: string): void;
  /** Ends the display (the last state stays visible). */
  end(): void;
}

/** The Jupyter API when this process is a Deno Jupyter kernel, else null. */
function jupyterApi(): typeof Deno.jupyter | null {
  try {
    // Reading Deno.jupyter outside the kernel throws (and "jupyter" in Deno is true anyway).
    return Deno.jupyter;
  } catch {
    return null;
  }
}

/**
 * Which view fits this process: Jupyter inside a Deno kernel, `tty` when stdout is a terminal,
 * else `lines`.
 *
 * @returns The kind.
 *
 * @example
 * ```ts
 * import { detectProgressKind } from "./progress.ts";
 * import assert from "node:assert/strict";
 * assert.ok(["tty", "jupyter", "lines"].includes(detectProgressKind()));
 * ```
 */
export function detectProgressKind(): ProgressKind {
  if (jupyterApi()) return "jupyter";
  return Deno.stdout.isTerminal() ? "tty" : "lines";
}

let displayCounter = 0;

/**
 * A progress view of the given kind (detected by default).
 *
 * @param kind Where to write; see {@link detectProgressKind}.
 * @param write Line sink of the `lines` view (default `console.log`; tests capture it).
 * @returns The view.
 *
 * @example A `lines` view prints milestones only
 * ```ts
 * import { progressView } from "./progress.ts";
 * import assert from "node:assert/strict";
 * const out: string[] = [];
 * const view = progressView("lines", (l) => out.push(l));
 * view.update({ step: 1, total: 10 });
 * view.update({ step: 2, total: 10, loss: 5 }, true);
 * view.end();
 * assert.deepEqual(out, ["step 2/10 (20%)  loss 5.0000"]);
 * ```
 */
export function progressView(
  kind: ProgressKind = detectProgressKind(),
  write: (line: string) => void = console.log,
): ProgressView {
  let last = 0;
  let shown = "";
  const due = (milestone: boolean): boolean => {
    const now = performance.now();
    if (!milestone && now - last < 250) return false;
    last = now;
    return true;
  };
  if (kind === "tty") {
    const enc = new TextEncoder();
    const put = (s: string) => Deno.stdout.writeSync(enc.encode(s));
    return {
      kind,
      update(p, milestone = false) {
        if (!due(milestone)) return;
        shown = formatProgress(p);
        put(`\r${shown}\x1b[K`);
      },
      message(text) {
        put(`\r\x1b[K${text}\n${shown}`);
      },
      end() {
        if (shown) put("\n");
        shown = "";
      },
    };
  }
  if (kind === "jupyter") {
    const jupyter = jupyterApi()!;
    const id = `qsparse-progress-${Date.now()}-${displayCounter++}`;
    let started = false;
    const show = (text: string) => {
      const bundle = { "text/plain": text };
      const first = !started;
      started = true;
      // Fire and forget: the training loop must not wait on the kernel's IOPub channel.
      jupyter.display(bundle, { raw: true, display_id: id, update: !first }).catch(() => {});
    };
    return {
      kind,
      update(p, milestone = false) {
        if (!due(milestone)) return;
        shown = formatProgress(p);
        show(shown);
      },
      message(text) {
        console.log(text);
      },
      end() {
        if (shown) show(shown);
      },
    };
  }
  return {
    kind,
    update(p, milestone = false) {
      if (milestone) write(formatProgress(p));
    },
    message(text) {
      write(text);
    },
    end() {},
  };
}
