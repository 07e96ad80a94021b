/**
 * Autotuning: which of several interchangeable kernels (a dispatch's `tune`, see
 * {@link Tunable}) runs fastest on this adapter, measured once per problem class and remembered
 * in memory and on disk per adapter.
 *
 * **When it runs.** Dispatch is synchronous and a measurement needs the device to finish, so
 * tuning cannot happen inside the dispatch that first meets a class. Nor does the kit tune in the
 * background: a later dispatch would then switch kernels at a moment that depends on timing,
 * and a training run's accumulation order would change mid-run. Instead the first uses of a
 * class run the default kernel and record the class; `await device.autotune()` (called by a
 * trainer or bench before its loop, after a warm-up step) measures every recorded class and
 * later dispatches of those classes run the chosen kernel. The loop itself never waits for the
 * tuner. Choices cached on disk apply from the first dispatch of a process.
 *
 * **Results.** Every variant computes the same product; they differ in f32 accumulation order,
 * so a choice can change the last bits of a result per adapter. Each candidate is compared once
 * with the default's output on the class's tuning inputs and is never chosen when it differs by
 * more than the class's tolerance; another kernel than the default is chosen only when it is at
 * least 5% faster. Once a choice is cached (memory, then disk) it is fixed, so
 * runs on one adapter with one cache repeat bit for bit.
 *
 * **Measuring.** With `timestamp-query` the device time of back-to-back launches in one compute
 * pass; otherwise wall time around submit and `onSubmittedWorkDone`, which Deno polls every
 * 10 ms, so launches are repeated until a measurement spans ≥ 50 ms. The time spent per class is
 * bounded by `budgetMs` (default 500) except that every valid candidate gets one measurement.
 *
 * **Cache.** `$QSPARSE_CACHE_DIR/autotune.json` (default `$XDG_CACHE_HOME/qsparse`, else
 * `~/.cache/qsparse`), keyed by adapter (vendor, architecture, device, description, Deno version)
 * and class (whose key carries the kernels' version). A cache that cannot be read or written is
 * ignored. `openDevice({ autotune: false })` or `QSPARSE_AUTOTUNE=0` turns all of this off.
 *
 * @module
 */
import type { Backend, Dispatch, Tunable } from "./backend.ts";
import { readEnv, switchedOff } from "../util/env.ts";

/** Measures device time of repeated launches. */
export interface DispatchTimer {
  /**
   * True when a measurement is device time (timestamp queries); false for wall time, which
   * needs long measurements to beat Deno's 10 ms polling.
   */
  readonly precise: boolean;
  /**
   * Total nanoseconds of `reps` back-to-back launches of `d`.
   *
   * @param d The launch.
   * @param reps Launches (< 256, so they share one submit).
   */
  time(d: Dispatch, reps: number): Promise<number>;
}

/** Options of an {@link Autotuner}. */
export interface AutotuneOptions {
  /** Identifies the adapter and its driver in the disk cache. */
  readonly adapterKey: string;
  /** Folder of the disk cache; null for none. Default {@link defaultCacheDir}. */
  readonly cacheDir?: string | null;
  /** Clock; default: wall time around `flush`. */
  readonly timer?: DispatchTimer;
  /** Soft bound on the measuring time of one class, in ms (default 500). */
  readonly budgetMs?: number;
}

/** What tuning one class found. */
export interface TuneResult {
  /** The class key. */
  readonly key: string;
  /** The chosen variant. */
  readonly choice: string;
  /** Nanoseconds per launch of each measured variant. */
  readonly ns: Readonly<Record<string, number>>;
  /** Variants rejected because their output differed from the default's. */
  readonly rejected: readonly string[];
}

const CACHE_FILE = "autotune.json";
const CACHE_FORMAT = 1;
/** A wall-clock measurement shorter than this is dominated by Deno's 10 ms polling. */
const WALL_TARGET_NS = 50e6;
/** A variant replaces the default only when at least this much faster. */
const MIN_GAIN = 1.05;
/** Launches per measurement stay below the backend's auto-submit threshold (256). */
const MAX_REPS = 200;

/**
 * Whether a permission is granted, asked without prompting: every WebGPU device reads these
 * settings at open, and a script that never tunes must not stop at a permission prompt.
 */
function granted(desc: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(desc).state === "granted";
  } catch {
    return false;
  }
}

/**
 * Whether autotuning is on: the option when given, else unless `QSPARSE_AUTOTUNE=0`.
 *
 * @param option `openDevice`'s `autotune` option.
 * @returns True when the device should autotune.
 * @example
 * ```ts
 * import { autotuneEnabled } from "./autotune.ts";
 * import assert from "node:assert/strict";
 * assert.equal(autotuneEnabled(false), false);
 * ```
 */
export function autotuneEnabled(option?: boolean): boolean {
  if (option !== undefined) return option;
  return !switchedOff("QSPARSE_AUTOTUNE");
}

/**
 * The cache folder: `$QSPARSE_CACHE_DIR`, else `$XDG_CACHE_HOME/qsparse`, else
 * `$HOME/.cache/qsparse`; null when none can be named.
 *
 * @returns The folder, or null.
 * @example
 * ```ts
 * import { defaultCacheDir } from "./autotune.ts";
 * const dir = defaultCacheDir();
 * console.log(dir ?? "no cache folder");
 * ```
 */
export function defaultCacheDir(): string | null {
  const own = readEnv("QSPARSE_CACHE_DIR");
  if (own) return own;
  const xdg = readEnv("XDG_CACHE_HOME");
  if (xdg) return `${xdg}/qsparse`;
  const home = readEnv("HOME") ?? readEnv("USERPROFILE");
  return home ? `${home}/.cache/qsparse` : null;
}

type CacheFile = { format: number; adapters: Record<string, Record<string, string>> };

function readCache(dir: string): CacheFile {
  try {
    if (!granted({ name: "read", path: `${dir}/${CACHE_FILE}` })) throw new Error("no read");
    const parsed = JSON.parse(Deno.readTextFileSync(`${dir}/${CACHE_FILE}`)) as CacheFile;
    if (parsed.format === CACHE_FORMAT && typeof parsed.adapters === "object") return parsed;
  } catch {
    // Missing, unreadable or not ours: start empty (the cache is only an optimisation).
  }
  return { format: CACHE_FORMAT, adapters: {} };
}

/**
 * Wall-clock timer: `reps` launches, then `flush` (submit + `onSubmittedWorkDone`).
 *
 * @param backend The backend to time on.
 * @returns The timer.
 * @example
 * ```ts
 * import { wallClockTimer } from "./autotune.ts";
 * import { CpuBackend } from "./cpu.ts";
 * import assert from "node:assert/strict";
 * assert.equal(wallClockTimer(new CpuBackend()).precise, false);
 * ```
 */
export function wallClockTimer(backend: Backend): DispatchTimer {
  return {
    precise: false,
    async time(d, reps) {
      await backend.flush();
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) backend.dispatch(d);
      await backend.flush();
      return (performance.now() - t0) * 1e6;
    },
  };
}

/**
 * Chooses among a dispatch's interchangeable kernels per problem class, by measurement (see the
 * module doc for when it measures and what that means for results).
 *
 * @example
 * ```ts
 * import { Autotuner } from "./autotune.ts";
 * import { CpuBackend } from "./cpu.ts";
 * import assert from "node:assert/strict";
 * const tuner = new Autotuner(new CpuBackend(), { adapterKey: "example", cacheDir: null });
 * const d = { op: "x", key: "x", wgsl: () => "", cpu: () => {}, buffers: [], workgroups: [1, 1, 1] as const };
 * assert.equal(tuner.resolve(d), d); // no tune: runs as is
 * assert.deepEqual(await tuner.tune(), []);
 * ```
 */
export class Autotuner {
  readonly #backend: Backend;
  readonly #adapterKey: string;
  readonly #cacheDir: string | null;
  readonly #timer: DispatchTimer;
  readonly #budgetNs: number;
  readonly #choices = new Map<string, string>();
  readonly #pending = new Map<string, Tunable>();

  /**
   * @param backend Where candidates are run and timed.
   * @param opts Adapter key, cache folder, clock, budget.
   */
  constructor(backend: Backend, opts: AutotuneOptions) {
    this.#backend = backend;
    this.#adapterKey = opts.adapterKey;
    this.#cacheDir = opts.cacheDir === undefined ? defaultCacheDir() : opts.cacheDir;
    this.#timer = opts.timer ?? wallClockTimer(backend);
    this.#budgetNs = (opts.budgetMs ?? 500) * 1e6;
    if (this.#cacheDir !== null) {
      const cached = readCache(this.#cacheDir).adapters[this.#adapterKey] ?? {};
      for (const [k, v] of Object.entries(cached)) this.#choices.set(k, v);
    }
  }

  /** Choices known so far, by class key. */
  get choices(): ReadonlyMap<string, string> {
    return this.#choices;
  }

  /** Classes met without a choice, waiting for {@link Autotuner.tune}. */
  get pending(): readonly string[] {
    return [...this.#pending.keys()];
  }

  /**
   * The dispatch to run: the chosen variant when the class has a choice, else `d` itself (the
   * default), recording the class for the next {@link Autotuner.tune}.
   *
   * @param d A dispatch, possibly with a `tune`.
   * @returns The dispatch to encode.
   */
  resolve(d: Dispatch): Dispatch {
    const t = d.tune;
    if (!t || t.variants.length < 2) return d;
    const choice = this.#choices.get(t.key);
    if (choice === undefined) {
      if (!this.#pending.has(t.key)) this.#pending.set(t.key, t);
      return d;
    }
    if (choice === t.variants[0] || !t.variants.includes(choice)) return d;
    return t.build(choice, d.buffers);
  }

  /**
   * Measures every recorded class (and `extra` ones) and remembers the choices, on disk too.
   * Call it outside loops: it waits for the device many times.
   *
   * @param extra Tunables to measure besides the recorded ones (e.g. a bench's problems).
   * @returns One result per class measured now.
   */
  async tune(extra: readonly Tunable[] = []): Promise<TuneResult[]> {
    for (const t of extra) if (!this.#choices.has(t.key)) this.#pending.set(t.key, t);
    const results: TuneResult[] = [];
    for (const [key, t] of [...this.#pending]) {
      this.#pending.delete(key);
      if (this.#choices.has(key)) continue;
      const r = await this.#tuneOne(t);
      this.#choices.set(key, r.choice);
      results.push(r);
    }
    if (results.length) this.#save();
    return results;
  }

  async #tuneOne(t: Tunable): Promise<TuneResult> {
    const be = this.#backend;
    const inputs = t.sampleInputs().map((data) => {
      const s = be.allocate(Math.max(4, data.byteLength), "autotune");
      be.write(s, data);
      return s;
    });
    // One set of outputs per variant, so every checking run is read back after one wait.
    const outs = t.variants.map(() =>
      t.outputBytes.map((b) => be.allocate(Math.max(4, b), "autotune"))
    );
    const rejected: string[] = [];
    const ns: Record<string, number> = {};
    try {
      // One run each on the tuning inputs, compared with the default's output; this also
      // compiles the pipelines, so the timings below exclude compilation.
      const run = (i: number) => {
        be.dispatch(t.build(t.variants[i]!, [...inputs, ...outs[i]!]));
        return Promise.all(outs[i]!.map((s, j) => be.read(s, t.outputBytes[j]!)));
      };
      let got: (ArrayBuffer[] | null)[];
      try {
        got = await Promise.all(t.variants.map((_, i) => run(i)));
      } catch {
        // A variant this adapter cannot compile or validate (the device reports it at the next
        // wait): find it by running them one at a time, and never choose it.
        await settleErrors(be);
        got = [await run(0)];
        for (let i = 1; i < t.variants.length; i++) {
          try {
            got.push(await run(i));
          } catch {
            await settleErrors(be);
            got.push(null);
          }
        }
      }
      const valid: string[] = [t.variants[0]!];
      t.variants.forEach((v, i) => {
        if (i === 0) return;
        const g = got[i];
        if (g && g.every((x, j) => outputsAgree(x, got[0]![j]!, t))) valid.push(v);
        else rejected.push(v);
      });
      const out = outs[0]!;
      const budget = this.#budgetNs / valid.length;
      for (const v of valid) {
        ns[v] = await this.#measure(t.build(v, [...inputs, ...out]), budget);
      }
      // Ties keep the earlier variant; and another kernel than the default must win by more
      // than the noise of a shared machine (MIN_GAIN) to be worth a change of accumulation order.
      let choice = valid[0]!;
      for (const v of valid) if (ns[v]! < ns[choice]!) choice = v;
      if (ns[choice]! * MIN_GAIN > ns[valid[0]!]!) choice = valid[0]!;
      return { key: t.key, choice, ns, rejected };
    } finally {
      for (const s of [...inputs, ...outs.flat()]) be.release(s);
    }
  }

  /**
   * Nanoseconds per launch: measurements grow until they are long enough to trust, then one more
   * at that length when the budget allows, keeping the faster (a shared machine's load only ever
   * adds time; each measurement waits for the device once, ≥ 10 ms in Deno).
   */
  async #measure(d: Dispatch, budgetNs: number): Promise<number> {
    const target = this.#timer.precise ? 1e6 : WALL_TARGET_NS;
    let reps = 1, spent = 0;
    for (;;) {
      const total = await this.#timer.time(d, reps);
      spent += total;
      let best = total / reps;
      if (total >= target || reps >= MAX_REPS || spent + 2 * total > budgetNs) {
        if (spent + total <= budgetNs) {
          const t = await this.#timer.time(d, reps);
          spent += t;
          best = Math.min(best, t / reps);
        }
        return best;
      }
      const want = Math.ceil(target / Math.max(best, 1));
      reps = Math.min(MAX_REPS, Math.max(2 * reps, want));
    }
  }

  #save(): void {
    if (this.#cacheDir === null || !granted({ name: "write", path: this.#cacheDir })) return;
    try {
      Deno.mkdirSync(this.#cacheDir, { recursive: true });
      // Read again before writing: another process may have added other adapters or classes.
      const file = readCache(this.#cacheDir);
      const mine = file.adapters[this.#adapterKey] ?? {};
      for (const [k, v] of this.#choices) mine[k] = v;
      file.adapters[this.#adapterKey] = mine;
      const tmp = `${this.#cacheDir}/${CACHE_FILE}.${Deno.pid}.tmp`;
      Deno.writeTextFileSync(tmp, JSON.stringify(file, null, 1));
      Deno.renameSync(tmp, `${this.#cacheDir}/${CACHE_FILE}`);
    } catch {
      // A read-only or missing home, or no --allow-write: choices stay in memory.
    }
  }
}

/**
 * Waits until the device reports no more errors from earlier commands (a failed pipeline is
 * reported once at compilation and again when a launch uses it), so the caller's next operation
 * does not inherit them.
 */
async function settleErrors(be: Backend): Promise<void> {
  for (let i = 0; i < 4; i++) {
    try {
      await be.flush();
      return;
    } catch {
      // Consumed; wait again in case another report is on its way.
    }
  }
}

/** Whether a candidate's output is within the class's tolerance of the default's. */
function outputsAgree(got: ArrayBuffer, want: ArrayBuffer, t: Tunable): boolean {
  const G = t.outputDType === "f16" ? new Float16Array(got) : new Float32Array(got);
  const W = t.outputDType === "f16" ? new Float16Array(want) : new Float32Array(want);
  let scale = 0;
  for (let i = 0; i < W.length; i++) scale = Math.max(scale, Math.abs(W[i]!));
  const bound = t.tolerance * Math.max(scale, 1e-30);
  for (let i = 0; i < W.length; i++) {
    // Written as a negated ≤ so NaN in either fails.
    if (!(Math.abs(G[i]! - W[i]!) <= bound)) return false;
  }
  return true;
}
