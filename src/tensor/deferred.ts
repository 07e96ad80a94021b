/**
 * Deferred group launches: a launch whose output nothing reads soon (a norm's weight gradient,
 * read first by the optimizer) can wait, and several such launches of one kind become one
 * launch of a group kernel that takes them all as members. An op hands the device the member
 * (its reads and its one output) instead of dispatching; the queue holds a reference on every
 * read, so none is released and reused, and marks the output as pending.
 *
 * A group is launched when anything asks for one of its outputs' storage (`Tensor.storage`, the
 * one way kernels, fused groups, reads and views reach a tensor's memory), before a launch that
 * binds one of its reads (which might write it in place), when the device's backend is reached
 * for anything but a launch (reads, writes, copies, flushes, stats), and when it is full (the
 * kind's capacity, or {@link MAX_HELD_BYTES} of reads held). Reads are realised when a member
 * is added (the pending fused group is emitted first), so launching a group late never reorders
 * it against what wrote its inputs. An output disposed while pending drops its member: it is
 * never computed.
 *
 * @module
 */
import type { Backend, Dispatch, Storage } from "../backend/backend.ts";
import type { FusionQueue } from "./fusion.ts";
import type { SharedStorage, Tensor } from "./tensor.ts";

/**
 * Bytes of reads pending members may hold before their group is launched: the wait keeps
 * activations and gradients alive past their last ordinary use, which for a small model is
 * nothing and for a large one would be memory better spent elsewhere (the launch saved matters
 * least there).
 */
export const MAX_HELD_BYTES = 64 << 20;

/** A launch several independent members can share. */
export interface DeferredKind<M> {
  /** Members with equal keys share a launch (the kernel and its specialisation). */
  readonly key: string;
  /** Most members one launch takes on this device. */
  readonly capacity: number;
  /** The launch of `members` (1 to `capacity` of them, in the order they were added). */
  dispatch(members: readonly M[]): Dispatch;
}

interface Member {
  readonly data: unknown;
  readonly reads: readonly SharedStorage[];
  readonly out: SharedStorage;
}

interface Group {
  readonly kind: DeferredKind<unknown>;
  members: Member[];
}

/**
 * A device's deferred group launches.
 *
 * @example Two norms' weight gradients wait for their first reader, then launch together
 * ```ts
 * import { backward, mul, openDevice, rmsNorm, sumAll } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * const grads = async (fuse: boolean) => {
 *   using dev = await openDevice({ prefer: "cpu", fuse });
 *   const w1 = dev.tensor([1, 2, 3, 4]), w2 = dev.tensor([2, 1, 1, 2]);
 *   w1.requiresGrad = w2.requiresGrad = true;
 *   const x = dev.randn([3, 4], { seed: 1 });
 *   backward(sumAll(mul(rmsNorm(rmsNorm(x, w1), w2), x)));
 *   if (fuse) assert.equal(dev.deferred!.pending, 2);
 *   return [...await w1.grad!.data(), ...await w2.grad!.data()];
 * };
 * assert.deepEqual(await grads(true), await grads(false)); // the same bits
 * ```
 */
export class DeferredQueue {
  readonly #backend: Backend;
  readonly #fusion: FusionQueue | null;
  #groups = new Map<string, Group>();
  #outputs = new Map<Storage, Group>();
  /** Pending members reading each held storage. */
  #readers = new Map<Storage, number>();
  #held = 0;

  /**
   * A queue launching on `backend`.
   *
   * @param backend Where group launches go (the device's own, reached without emitting).
   * @param fusion The device's pending fused group, emitted before a member is added.
   */
  constructor(backend: Backend, fusion: FusionQueue | null) {
    this.#backend = backend;
    this.#fusion = fusion;
  }

  /** Members waiting, over every group. */
  get pending(): number {
    let n = 0;
    for (const g of this.#groups.values()) n += g.members.length;
    return n;
  }

  /**
   * Adds a member: `out` is written when its group is launched.
   *
   * @param kind The group kernel.
   * @param data What `kind.dispatch` needs of this member.
   * @param reads Tensors the member reads (held until the launch).
   * @param out The member's output (freshly allocated, written by nothing else).
   * @param op The op adding, named in errors.
   */
  add<M>(kind: DeferredKind<M>, data: M, reads: readonly Tensor[], out: Tensor, op: string): void {
    this.#fusion?.emit();
    const held = reads.map((t) => t.sharedStorage(op));
    for (const s of held) {
      s.refs++;
      this.#held += s.storage.bytes;
      this.#readers.set(s.storage, (this.#readers.get(s.storage) ?? 0) + 1);
    }
    const shared = out.sharedStorage(op);
    let g = this.#groups.get(kind.key);
    if (!g) this.#groups.set(kind.key, g = { kind: kind as DeferredKind<unknown>, members: [] });
    g.members.push({ data, reads: held, out: shared });
    shared.deferred = this;
    this.#outputs.set(shared.storage, g);
    if (g.members.length >= kind.capacity) this.#launch(g);
    else if (this.#held > MAX_HELD_BYTES) this.emit();
  }

  /** Launches every pending group, oldest kind first. */
  emit(): void {
    for (const g of [...this.#groups.values()]) this.#launch(g);
  }

  /**
   * Called before a launch: launches the pending groups when it binds a storage a member reads.
   *
   * @param buffers The launch's storages.
   */
  before(buffers: readonly Storage[]): void {
    if (this.#readers.size === 0) return;
    for (const b of buffers) {
      if (this.#readers.has(b)) return this.emit();
    }
  }

  /**
   * Drops the member whose output is `storage` (its last reference is gone: nothing will read
   * it).
   *
   * @param storage A storage being released.
   */
  forget(storage: Storage): void {
    const g = this.#outputs.get(storage);
    if (!g) return;
    this.#outputs.delete(storage);
    const i = g.members.findIndex((m) => m.out.storage === storage);
    const [m] = g.members.splice(i, 1);
    m!.out.deferred = null;
    this.#release(m!);
    if (g.members.length === 0) this.#groups.delete(g.kind.key);
  }

  /** Drops every pending member without launching (the device is being destroyed). */
  discard(): void {
    for (const g of this.#groups.values()) {
      for (const m of g.members) m.out.deferred = null;
    }
    this.#groups = new Map();
    this.#outputs = new Map();
    this.#readers = new Map();
    this.#held = 0;
  }

  #launch(g: Group): void {
    this.#groups.delete(g.kind.key);
    const members = g.members;
    g.members = [];
    if (members.length === 0) return;
    for (const m of members) {
      m.out.deferred = null;
      this.#outputs.delete(m.out.storage);
    }
    this.#backend.dispatch(g.kind.dispatch(members.map((m) => m.data)));
    for (const m of members) this.#release(m);
  }

  #release(m: Member): void {
    for (const s of m.reads) {
      this.#held -= s.storage.bytes;
      const n = this.#readers.get(s.storage)! - 1;
      if (n > 0) this.#readers.set(s.storage, n);
      else this.#readers.delete(s.storage);
      s.release();
    }
  }
}
