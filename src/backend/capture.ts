/**
 * Captured steps at the backend level: a {@link StepRecording} watches one execution of a step
 * (every allocation, release, write, copy and launch, on any backend), {@link planCapture} gives
 * the step's intermediates buffers planned by liveness, and the backend compiles the result into a
 * {@link Replay} that runs the step again with no allocation, no op code and (on WebGPU) no
 * bind-group creation. {@link compareRecordings} checks that a later execution of the step would
 * have recorded the same commands, so a replay never runs stale parameters.
 *
 * What a captured step may do: launch kernels, write constant bytes, copy, allocate and free
 * intermediates, and update storages made before the capture in place. What it may not: read the
 * device back to the host (the recorder throws), or free a storage made before the capture that
 * it used (the replay would bind freed memory).
 *
 * @module
 */
import type { Backend, CapturedCommand, CaptureRecorder, Storage } from "./backend.ts";
import { CaptureError } from "../core/errors.ts";

/** What one storage went through during a recording. */
export interface StorageUse {
  /** The storage. */
  readonly storage: Storage;
  /** Allocation order within the recording, or −1 for a storage made before it. */
  readonly born: number;
  /** Whether it was released during the recording. */
  released: boolean;
  /** Index of the first command that binds it (−1: none). */
  first: number;
  /** Index of the last command that binds it (−1: none). */
  last: number;
  /** Op of the last command that bound it (named in errors). */
  op: string;
}

function commandOp(c: CapturedCommand): string {
  return c.kind === "dispatch" ? c.dispatch.op : c.kind;
}

function commandStorages(c: CapturedCommand): readonly Storage[] {
  return c.kind === "dispatch" ? c.buffers : c.kind === "write" ? [c.dst] : [c.src, c.dst];
}

/**
 * The recorder a backend reports to while a step is captured: the commands in order and, per
 * storage, when it was made, first and last bound, and whether it was freed.
 *
 * @example Recording two launches on the CPU backend
 * ```ts
 * import { openDevice, add, mulScalar, scope } from "@qsparse/kit";
 * import { StepRecording } from "./capture.ts";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using x = dev.tensor([1, 2]);
 * const rec = new StepRecording();
 * dev.backend.recorder = rec;
 * const y = scope(() => add(mulScalar(x, 2), x));
 * dev.backend.recorder = null;
 * assert.equal(rec.commands.length, 2);
 * assert.equal(rec.uses.get(x.storage("example"))!.born, -1); // made before the recording
 * assert.deepEqual([...await y.data()], [3, 6]);
 * y.dispose();
 * ```
 */
export class StepRecording implements CaptureRecorder {
  /** The commands, in execution order. */
  readonly commands: CapturedCommand[] = [];
  /** Every storage allocated, released or bound during the recording. */
  readonly uses: Map<Storage, StorageUse> = new Map();
  /** The first readback attempted during the recording (the capture fails with it). */
  failure: CaptureError | null = null;
  #born = 0;

  allocated(storage: Storage): void {
    this.uses.set(storage, {
      storage,
      born: this.#born++,
      released: false,
      first: -1,
      last: -1,
      op: "",
    });
  }

  released(storage: Storage): void {
    const u = this.uses.get(storage);
    if (u) u.released = true;
    else this.uses.set(storage, { storage, born: -1, released: true, first: -1, last: -1, op: "" });
  }

  command(c: CapturedCommand): void {
    const i = this.commands.length;
    this.commands.push(c);
    const op = commandOp(c);
    for (const storage of commandStorages(c)) {
      let u = this.uses.get(storage);
      if (!u) {
        u = { storage, born: -1, released: false, first: -1, last: -1, op: "" };
        this.uses.set(storage, u);
      }
      if (u.first < 0) u.first = i;
      u.last = i;
      u.op = op;
    }
  }

  readback(storage: Storage, bytes: number): Error {
    const u = this.uses.get(storage);
    const what = u?.op
      ? `the output of ${u.op}`
      : u && u.born >= 0
      ? "a storage made inside the step"
      : "a storage made before the capture";
    const e = new CaptureError(
      "capture",
      `a host readback of ${what} (storage #${storage.id}, ${bytes} bytes) inside a captured ` +
        "step: a replay runs without the host, so the step cannot depend on device values " +
        "(read the step's outputs after run() instead)",
    );
    this.failure ??= e;
    return e;
  }
}

/** Sizes of a planned capture (see {@link planCapture}). */
export interface CaptureStats {
  /** Commands replayed per step (launches, writes, copies). */
  commands: number;
  /** Kernel launches per step. */
  dispatches: number;
  /** Storages made and freed inside the step (planned by liveness). */
  intermediates: number;
  /** Buffers the intermediates were given (equal to `intermediates` without planning). */
  buffers: number;
  /** Bytes of those buffers. */
  plannedBytes: number;
  /** Bytes the intermediates would take with one buffer each. */
  unplannedBytes: number;
  /** Storages bound as they are: made before the step, or kept past it (outputs, state). */
  fixed: number;
}

/** One intermediate of a plan: its live range in commands and the buffer it was given. */
export interface PlannedInterval {
  /** First command that binds it. */
  first: number;
  /** Last command that binds it. */
  last: number;
  /** Index of its buffer in {@link CapturePlan.buffers}. */
  buffer: number;
  /** Its capacity (the size class it shares a buffer within). */
  capacity: number;
}

/** Options of {@link planCapture}. */
export interface PlanOptions {
  /**
   * Share buffers between intermediates whose live ranges do not overlap (default true); false
   * gives every intermediate its own buffer (the baseline planning is measured against).
   */
  plan?: boolean;
  /**
   * After each intermediate's last use, overwrite its buffer with 0xFF bytes (NaN in f32): a
   * kernel that read a value it did not write, or a buffer shared too early, then shows up as
   * NaN or a changed result instead of a plausible one. For tests.
   */
  poison?: boolean;
}

/** A recording rebound to planned buffers, ready for {@link Backend.compileReplay}. */
export interface CapturePlan {
  /** The commands on the buffers they run on. */
  commands: CapturedCommand[];
  /** The capture's own buffers (release them with the capture). */
  buffers: Storage[];
  /** Live range and buffer of each intermediate, in order of first use. */
  intervals: PlannedInterval[];
  /** Sizes. */
  stats: CaptureStats;
}

/**
 * Plans a recording: every intermediate (made and freed inside the step) gets a buffer of its
 * size class, shared with intermediates whose live ranges (first to last command that binds
 * them) do not overlap; everything else is bound as it is. Allocates the buffers on `backend`
 * (its recorder must be off).
 *
 * @param backend The backend that recorded.
 * @param rec The recording.
 * @param opts Planning and poisoning.
 * @returns The plan.
 * @throws {CaptureError} After a readback in the step, or when the step freed a storage made
 * before it that it had used.
 *
 * @example Two temporaries of one size take turns in one buffer
 * ```ts
 * import { openDevice, mulScalar, scope } from "@qsparse/kit";
 * import { planCapture, StepRecording } from "./capture.ts";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using x = dev.tensor([1, 2, 3, 4]);
 * const rec = new StepRecording();
 * dev.backend.recorder = rec;
 * const y = scope(() => mulScalar(mulScalar(mulScalar(x, 2), 3), 4));
 * dev.backend.recorder = null;
 * const plan = planCapture(dev.backend, rec);
 * assert.equal(plan.stats.intermediates, 2); // x·2 and x·6; y outlives the step
 * assert.equal(plan.stats.buffers, 2); // x·2 is still read when x·6 is written
 * const replay = dev.backend.compileReplay(plan.commands);
 * replay.run();
 * assert.deepEqual([...await y.data()], [24, 48, 72, 96]);
 * replay.dispose();
 * plan.buffers.forEach((b) => dev.backend.release(b));
 * y.dispose();
 * ```
 */
export function planCapture(
  backend: Backend,
  rec: StepRecording,
  opts: PlanOptions = {},
): CapturePlan {
  if (rec.failure) throw rec.failure;
  const intermediates: StorageUse[] = [];
  let fixed = 0;
  for (const u of rec.uses.values()) {
    if (u.first < 0) continue;
    if (u.born < 0 && u.released) {
      throw new CaptureError(
        "capture",
        `storage #${u.storage.id} (${u.storage.bytes} bytes), made before the capture and bound ` +
          `by ${u.op} inside it, was freed inside the step: a replay would bind freed memory. ` +
          "State a captured step carries across steps must be updated in place",
      );
    }
    if (u.born >= 0 && u.released) intermediates.push(u);
    else fixed++;
  }
  intermediates.sort((a, b) => a.first - b.first);
  const plan = opts.plan ?? true;
  // Interval partitioning per size class, greedy in order of first use: a buffer is reused once
  // the last command of its previous tenant has run (strictly before: a launch must never get
  // one buffer as input and output).
  const buffers: { capacity: number; freeAfter: number }[] = [];
  const byClass = new Map<number, number[]>();
  const intervals: PlannedInterval[] = [];
  for (const u of intermediates) {
    const capacity = backend.capacity(u.storage.bytes);
    const list = byClass.get(capacity) ?? [];
    byClass.set(capacity, list);
    let buffer = plan ? list.find((b) => buffers[b]!.freeAfter < u.first) : undefined;
    if (buffer === undefined) {
      buffer = buffers.length;
      buffers.push({ capacity, freeAfter: -1 });
      list.push(buffer);
    }
    buffers[buffer]!.freeAfter = u.last;
    intervals.push({ first: u.first, last: u.last, buffer, capacity });
  }
  const storages = buffers.map((b) => backend.allocate(b.capacity, "capture"));
  const bound = new Map<Storage, Storage>();
  intermediates.forEach((u, i) => bound.set(u.storage, storages[intervals[i]!.buffer]!));
  const to = (s: Storage) => bound.get(s) ?? s;
  const poisonAfter = new Map<number, Storage[]>();
  const poisonBytes = new Map<number, Uint8Array>();
  if (opts.poison) {
    intermediates.forEach((u, i) => {
      const list = poisonAfter.get(u.last) ?? [];
      list.push(storages[intervals[i]!.buffer]!);
      poisonAfter.set(u.last, list);
    });
  }
  const commands: CapturedCommand[] = [];
  rec.commands.forEach((c, i) => {
    if (c.kind === "dispatch") commands.push({ ...c, buffers: c.buffers.map(to) });
    else if (c.kind === "write") commands.push({ ...c, dst: to(c.dst) });
    else commands.push({ ...c, src: to(c.src), dst: to(c.dst) });
    for (const s of poisonAfter.get(i) ?? []) {
      const n = backend.capacity(s.bytes);
      let data = poisonBytes.get(n);
      if (!data) poisonBytes.set(n, data = new Uint8Array(n).fill(0xff));
      commands.push({ kind: "write", dst: s, offset: 0, data });
    }
  });
  return {
    commands,
    buffers: storages,
    intervals,
    stats: {
      commands: rec.commands.length,
      dispatches: rec.commands.filter((c) => c.kind === "dispatch").length,
      intermediates: intermediates.length,
      buffers: buffers.length,
      plannedBytes: buffers.reduce((a, b) => a + b.capacity, 0),
      unplannedBytes: intervals.reduce((a, v) => a + v.capacity, 0),
      fixed,
    },
  };
}

function hex(w: number): string {
  const f = new Float32Array(new Uint32Array([w]).buffer)[0]!;
  return `0x${w.toString(16).padStart(8, "0")} (f32 ${f})`;
}

/**
 * Why two recordings of one step differ, or null when a replay of the first does exactly what
 * the second execution did: the same kernels with the same uniform words and workgroup counts,
 * the same written bytes, on the same storages (storages made inside the step are matched by
 * allocation order).
 *
 * @param captured The recording the replay was built from.
 * @param again A later execution of the step, recorded.
 * @returns The first difference, naming the command and its op, or null.
 *
 * @example A parameter that changes from step to step is caught
 * ```ts
 * import { openDevice, mulScalar, scope } from "@qsparse/kit";
 * import { compareRecordings, StepRecording } from "./capture.ts";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu" });
 * using x = dev.tensor([1, 2]);
 * const record = (s: number) => {
 *   const rec = new StepRecording();
 *   dev.backend.recorder = rec;
 *   scope(() => { mulScalar(x, s); });
 *   dev.backend.recorder = null;
 *   return rec;
 * };
 * assert.equal(compareRecordings(record(2), record(2)), null);
 * assert.match(compareRecordings(record(2), record(3))!, /command 0 \(mulScalar\).*uniform word/);
 * ```
 */
export function compareRecordings(captured: StepRecording, again: StepRecording): string | null {
  const name = (rec: StepRecording, s: Storage) => {
    const b = rec.uses.get(s)?.born ?? -1;
    return b >= 0 ? `the step's storage ${b}` : `storage #${s.id}`;
  };
  const same = (s: Storage, t: Storage) => name(captured, s) === name(again, t);
  const n = Math.min(captured.commands.length, again.commands.length);
  for (let i = 0; i < n; i++) {
    const a = captured.commands[i]!, b = again.commands[i]!;
    const at = `command ${i} (${commandOp(a)})`;
    if (a.kind !== b.kind || commandOp(a) !== commandOp(b)) {
      return `${at} is now ${b.kind} ${commandOp(b)}: the step runs other commands`;
    }
    if (a.kind === "dispatch" && b.kind === "dispatch") {
      const da = a.dispatch, db = b.dispatch;
      if (da.key !== db.key) return `${at}: kernel ${db.key} now, ${da.key} when captured`;
      if (da.workgroups.some((w, k) => w !== db.workgroups[k])) {
        return `${at}: workgroups [${db.workgroups}] now, [${da.workgroups}] when captured`;
      }
      const ua = da.uniforms ?? new Uint32Array(), ub = db.uniforms ?? new Uint32Array();
      if (ua.length !== ub.length) return `${at}: ${ub.length} uniform words now, ${ua.length}`;
      for (let k = 0; k < ua.length; k++) {
        if (ua[k] !== ub[k]) {
          return `${at}: uniform word ${k} is ${hex(ub[k]!)} now, ${hex(ua[k]!)} when ` +
            "captured: a per-step value must come from a device buffer, not a uniform";
        }
      }
      for (let k = 0; k < a.buffers.length; k++) {
        if (!same(a.buffers[k]!, b.buffers[k]!)) {
          return `${at}: binding ${k} is ${name(again, b.buffers[k]!)} now, ` +
            `${name(captured, a.buffers[k]!)} when captured`;
        }
      }
    } else if (a.kind === "write" && b.kind === "write") {
      if (!same(a.dst, b.dst) || a.offset !== b.offset) return `${at}: writes elsewhere now`;
      const k = a.data.findIndex((v, j) => v !== b.data[j]);
      if (a.data.length !== b.data.length || k >= 0) {
        return `${at}: writes other bytes now (from byte ${k < 0 ? a.data.length : k}): ` +
          "per-step data must be a capture input";
      }
    } else if (a.kind === "copy" && b.kind === "copy") {
      if (
        !same(a.src, b.src) || !same(a.dst, b.dst) || a.srcOffset !== b.srcOffset ||
        a.dstOffset !== b.dstOffset || a.bytes !== b.bytes
      ) return `${at}: copies other bytes now`;
    }
  }
  if (captured.commands.length !== again.commands.length) {
    return `the step runs ${again.commands.length} commands now, ${captured.commands.length} ` +
      "when captured";
  }
  return null;
}
