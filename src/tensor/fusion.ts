/**
 * Lazy elementwise groups: an elementwise op does not dispatch; it appends a node to its device's
 * pending group and returns a tensor whose storage is allocated but not yet written. The group
 * becomes one fused kernel (kernels/fused.ts) when anything else is about to reach the backend —
 * a dispatch, write, copy, read, flush or stats (every path goes through `device.backend`, which
 * emits first, so the order against every other kernel is the eager one) — when the next op has
 * another element count, or when the group reaches a node or binding limit.
 *
 * While pending, the group holds one reference on every storage it reads, so none can be
 * released and handed out again. It holds none on its outputs: when the last tensor holding a
 * pending output is disposed, the device tells the group (`forget`) and the storage goes back to
 * the pool at once, so a chain that disposes as it goes reuses its buffers as the eager engine
 * did. At emission a node is written only if its storage is still held (by a tensor, a reshape
 * of it, autograd keeping it for a backward); a chain whose intermediates were disposed writes
 * only its result, and a node that no written node needs is not computed at all.
 *
 * @module
 */
import type { Backend, Storage } from "../backend/backend.ts";
import { bytesPerElement } from "../core/dtype.ts";
import { broadcastStrides, type Shape } from "../core/shape.ts";
import type { BinaryOp, UnaryOp } from "../../kernels/elementwise.ts";
import {
  fusedDispatch,
  type FusedInput,
  type FusedLayout,
  type FusedNode,
  type FusedProgram,
  type FusedReduce,
  type FusedRef,
} from "../../kernels/fused.ts";
import type { SharedStorage, Tensor } from "./tensor.ts";

/** Limits of a pending group. */
export interface FusionOptions {
  /**
   * Nodes after which the group is emitted (default 4096). A chain longer than this whose
   * intermediates are still held must write them all at the cut, so it should be generous; it
   * bounds the size of the generated WGSL.
   */
  maxNodes?: number;
  /**
   * Storage buffers one fused kernel may bind (inputs + outputs); default the adapter's
   * `maxStorageBuffersPerShaderStage` (unbounded on the host backends). A group needing more is
   * split into several kernels at emission.
   */
  maxBindings?: number;
}

/**
 * Scalar constants one group may carry: they are uniforms, and 2,048 f32 (8 KiB) stay well inside
 * the 64 KiB a uniform binding may have, with room for the broadcast strides.
 */
const MAX_CONSTS = 2048;

interface PendingInput {
  readonly input: FusedInput;
  readonly shared: SharedStorage;
  readonly storage: Storage;
}

/** A reduction ending a pending group (see {@link FusionQueue.reduce}). */
interface GroupEnd {
  /** The group's node it reduces. */
  readonly node: number;
  readonly reduce: Omit<FusedReduce, "node">;
  /** Its output storages, each with a reference held until the group is emitted. */
  readonly outputs: readonly SharedStorage[];
  readonly op: string;
}

/** An operand of the op being appended, looked up once (see `FusionQueue.#operand`). */
interface Operand {
  readonly t: Tensor;
  /** Its pending node, when a node of the group computes it. */
  readonly node: number | undefined;
  /** Otherwise its input key (storage, dtype, broadcast layout) and layout. */
  readonly key: string;
  readonly layout: FusedLayout | null;
}

interface PendingNode {
  readonly node: FusedNode;
  /** Its output storage; null once every tensor holding it was disposed (it went back then). */
  storage: Storage | null;
  /** The op that made it (`mulScalar`, `add`, …), for the fused kernel's name in errors and profiles. */
  readonly label: string;
}

/** Collapses an input's broadcast over `out` (dims contiguous in both merge into one). */
function layoutOf(shape: Shape, out: Shape): FusedLayout {
  const st = broadcastStrides(shape, out);
  const dims: number[] = [], strides: number[] = [];
  for (let i = 0; i < out.length; i++) {
    const d = out[i]!;
    if (d === 1) continue;
    const k = dims.length - 1;
    if (k >= 0 && strides[k] === st[i]! * d) {
      dims[k] = dims[k]! * d;
      strides[k] = st[i]!;
    } else {
      dims.push(d);
      strides.push(st[i]!);
    }
  }
  return dims.length === 0 ? { shape: [1], strides: [0] } : { shape: dims, strides };
}

/**
 * A device's pending group of elementwise nodes. The elementwise ops append to it (when the
 * device fuses); the device emits it before anything else reaches the backend.
 *
 * @example A chain whose intermediates are disposed is one dispatch that writes only its result
 * ```ts
 * import { addScalar, mulScalar, neg, openDevice, scope } from "@qsparse/kit";
 * import assert from "node:assert/strict";
 * using dev = await openDevice({ prefer: "cpu", fuse: true });
 * using x = dev.tensor([0, 1]);
 * const before = dev.stats().dispatches;
 * using y = scope(() => neg(mulScalar(addScalar(x, 1), 2)));
 * assert.equal(dev.fusion!.pending, 3);
 * assert.deepEqual([...await y.data()], [-2, -4]);
 * assert.equal(dev.stats().dispatches - before, 1);
 * ```
 */
export class FusionQueue {
  readonly #backend: Backend;
  readonly #maxNodes: number;
  readonly #maxBindings: number;
  #n = -1;
  #nodes: PendingNode[] = [];
  #inputs: PendingInput[] = [];
  #consts: number[] = [];
  #inputIndex = new Map<string, number>();
  #nodeOf = new Map<Storage, number>();
  /** The reduction ending the group, if one was taken: the group then takes no more nodes. */
  #end: GroupEnd | null = null;

  /**
   * A queue emitting to `backend` (the device's own, reached without emitting).
   *
   * @param backend Where fused kernels are dispatched.
   * @param opts Limits.
   */
  constructor(backend: Backend, opts: FusionOptions = {}) {
    this.#backend = backend;
    this.#maxNodes = Math.max(1, opts.maxNodes ?? 4096);
    const adapter = backend.limits.maxStorageBuffersPerShaderStage;
    // A node reads at most three operands and writes one: below 4 no node could be emitted.
    this.#maxBindings = Math.max(4, opts.maxBindings ?? adapter);
  }

  /** Nodes waiting to be emitted. */
  get pending(): number {
    return this.#nodes.length;
  }

  /**
   * Appends `out = op(x)`.
   *
   * @param op The unary op.
   * @param x The input.
   * @param out Its freshly allocated output (same shape).
   */
  unary(op: UnaryOp, x: Tensor, out: Tensor): void {
    this.#append(out, [x], (r) => ({ kind: "unary", op, dtype: out.dtype, args: [r[0]!] }), op);
  }

  /**
   * Appends `out = op(a, b)` with broadcasting.
   *
   * @param op The binary op.
   * @param a Left operand.
   * @param b Right operand.
   * @param out The output, of the broadcast shape.
   */
  binary(op: BinaryOp, a: Tensor, b: Tensor, out: Tensor): void {
    this.#append(
      out,
      [a, b],
      (r) => ({ kind: "binary", op, dtype: out.dtype, args: [r[0]!, r[1]!] }),
      op,
    );
  }

  /**
   * Appends `out = op(x, s)`, or `op(s, x)` when `reversed`; `s` is a uniform.
   *
   * @param op The binary op.
   * @param x The tensor operand.
   * @param s The scalar (rounded to f32).
   * @param reversed Whether the scalar is the left operand.
   * @param out The output.
   */
  scalar(op: BinaryOp, x: Tensor, s: number, reversed: boolean, out: Tensor): void {
    this.#append(out, [x], (r) => {
      const c: FusedRef = { from: "const", index: this.#consts.length };
      this.#consts.push(s);
      return {
        kind: "binary",
        op,
        dtype: out.dtype,
        args: reversed ? [c, r[0]!] : [r[0]!, c],
      };
    }, `${op}Scalar`);
  }

  /**
   * Appends `out = cond ≠ 0 ? a : b`; `cond` broadcasts over the output.
   *
   * @param cond The condition.
   * @param a Chosen where cond ≠ 0.
   * @param b Chosen elsewhere.
   * @param out The output.
   */
  where(cond: Tensor, a: Tensor, b: Tensor, out: Tensor): void {
    this.#append(
      out,
      [cond, a, b],
      (r) => ({ kind: "where", dtype: out.dtype, args: [r[0]!, r[1]!, r[2]!] }),
      "where",
    );
  }

  /**
   * Appends `out = x` broadcast to `out`'s shape (a cast to the same dtype is a copy).
   *
   * @param x The input.
   * @param out The output, of a shape `x` broadcasts to, with `x`'s dtype.
   */
  broadcast(x: Tensor, out: Tensor): void {
    this.#append(
      out,
      [x],
      (r) => ({ kind: "cast", dtype: out.dtype, args: [r[0]!] }),
      "broadcastTo",
    );
  }

  /**
   * Appends `out = cast(x)` to `out.dtype`.
   *
   * @param x The input.
   * @param out The output.
   */
  cast(x: Tensor, out: Tensor): void {
    this.#append(out, [x], (r) => ({ kind: "cast", dtype: out.dtype, args: [r[0]!] }), "cast");
  }

  #append(
    out: Tensor,
    args: Tensor[],
    make: (refs: FusedRef[]) => FusedNode,
    op: string,
  ): void {
    const n = out.size;
    const full = this.#nodes.length >= this.#maxNodes || this.#consts.length >= MAX_CONSTS;
    if (this.#nodes.length > 0 && (n !== this.#n || full || this.#end)) this.emit();
    // Each operand is looked up once: a long chain pays this per op.
    let operands = args.map((t) => this.#operand(t, out, op));
    // An operand pending with another size would need its values by index: realise it first.
    if (operands.some((o) => o.node !== undefined && o.t.size !== n)) {
      this.emit();
      operands = args.map((t) => this.#operand(t, out, op));
    }
    if (this.#inputs.length + this.#newInputs(operands) + 1 > this.#maxBindings) {
      this.emit();
      operands = args.map((t) => this.#operand(t, out, op));
    }
    this.#n = n;
    const refs = operands.map((o) => this.#ref(o, op));
    const storage = out.storage(op);
    this.#nodeOf.set(storage, this.#nodes.length);
    this.#nodes.push({ node: make(refs), storage, label: op });
  }

  /**
   * Called when the last reference to `storage` is dropped, before it goes back to the backend:
   * if a pending node was to write it, the node is now written nowhere (the storage may be
   * handed out again at once, even to a later node of this group).
   *
   * @param storage The storage being released.
   */
  forget(storage: Storage): void {
    const j = this.#nodeOf.get(storage);
    if (j === undefined) return;
    this.#nodes[j]!.storage = null;
    this.#nodeOf.delete(storage);
  }

  /** What `#ref` needs of an operand: its pending node, or else its input key and layout. */
  #operand(t: Tensor, out: Tensor, op: string): Operand {
    const node = this.#nodeOf.get(t.storage(op));
    if (node !== undefined) return { t, node, key: "", layout: null };
    const layout = t.size === out.size ? null : layoutOf(t.shape, out.shape);
    const lk = layout ? `${layout.shape.join("x")}/${layout.strides.join("x")}` : "";
    return { t, node, key: `${t.storage(op).id}:${t.dtype}:${lk}`, layout };
  }

  #newInputs(operands: readonly Operand[]): number {
    let fresh = 0;
    operands.forEach((o, i) => {
      if (o.node !== undefined || this.#inputIndex.has(o.key)) return;
      // An operand repeated within this op binds once.
      if (operands.findIndex((p) => p.node === undefined && p.key === o.key) === i) fresh++;
    });
    return fresh;
  }

  #ref(o: Operand, op: string): FusedRef {
    if (o.node !== undefined) return { from: "node", index: o.node };
    let index = this.#inputIndex.get(o.key);
    if (index === undefined) {
      const shared = o.t.sharedStorage(op);
      shared.refs++;
      index = this.#inputs.length;
      this.#inputs.push({
        input: { dtype: o.t.dtype, layout: o.layout },
        shared,
        storage: shared.storage,
      });
      this.#inputIndex.set(o.key, index);
    }
    return { from: "input", index };
  }

  /** Dispatches the pending group (one kernel, or several when its bindings need it). */
  emit(): void {
    if (this.#nodes.length === 0) return;
    const nodes = this.#nodes, inputs = this.#inputs, consts = this.#consts, n = this.#n;
    const end = this.#end;
    this.#reset();
    const temps: Storage[] = [];
    try {
      const bindings = this.#maxBindings - (end?.outputs.length ?? 0);
      const segments = plan(nodes, inputs.length, bindings, end?.node ?? -1);
      // A node no tensor holds but a later kernel of the group reads needs a storage of its own.
      for (const seg of segments) {
        for (const j of seg.writes) {
          const x = nodes[j]!;
          if (x.storage) continue;
          x.storage = this.#backend.allocate(n * bytesPerElement(x.node.dtype), "fused");
          temps.push(x.storage);
        }
      }
      for (const seg of segments) {
        const { program, reads, writes, local } = segmentProgram(n, nodes, inputs, consts, seg);
        if (end && local[end.node]! >= 0) {
          this.#backend.dispatch(fusedDispatch(
            { ...program, reduce: { ...end.reduce, node: local[end.node]! } },
            reads,
            [...writes, ...end.outputs.map((o) => o.storage)],
            `${segmentName(nodes, seg)}+${end.op}`,
          ));
        } else {
          this.#backend.dispatch(fusedDispatch(program, reads, writes, segmentName(nodes, seg)));
        }
      }
    } finally {
      for (const x of inputs) x.shared.release();
      for (const o of end?.outputs ?? []) o.release();
      for (const t of temps) this.#backend.release(t);
    }
  }
  /**
   * Ends the pending group with a reduction of `x` when `x` is one of its nodes: the kernel that
   * computes `x` also reduces it (kernels/fused.ts, `FusedReduce`). The group stays pending —
   * so intermediates disposed before it is emitted (a scope's) are still not written — but is
   * closed: the next op emits it, as does anything that reaches the backend. Otherwise nothing
   * happens and the caller dispatches the reduction as usual.
   *
   * @param x The tensor reduced.
   * @param reduce The reduction (its `node` is filled in here).
   * @param outputs Its outputs: the values, then the indices (as `reduce` asks). The group holds
   *   a reference on each until it is emitted.
   * @param op The reduction's op name (the fused kernel is named after its ops and this).
   * @returns Whether the reduction was taken into the group.
   */
  reduce(
    x: Tensor,
    reduce: Omit<FusedReduce, "node">,
    outputs: readonly Tensor[],
    op: string,
  ): boolean {
    const node = this.#nodeOf.get(x.storage(op));
    if (node === undefined || x.size !== this.#n || this.#end) return false;
    if (this.#maxBindings - outputs.length < 4) return false;
    const shared = outputs.map((t) => t.sharedStorage(op));
    for (const o of shared) o.refs++;
    this.#end = { node, reduce, outputs: shared, op };
    return true;
  }

  /** Drops the pending group without running it (the device is being destroyed). */
  discard(): void {
    this.#reset();
  }

  #reset(): void {
    this.#nodes = [];
    this.#inputs = [];
    this.#consts = [];
    this.#inputIndex = new Map();
    this.#nodeOf = new Map();
    this.#n = -1;
    this.#end = null;
  }
}

/** One kernel of an emitted group: the nodes it computes and those it writes. */
interface Segment {
  readonly nodes: number[];
  readonly writes: number[];
}

/**
 * Splits the needed nodes of a group into kernels of at most `maxBindings` storages. A node is
 * needed when its storage is held outside the group, it is the `reduced` one (-1: none), or a
 * needed node reads it; a kernel writes the held ones and those a later kernel reads.
 */
function plan(
  nodes: readonly PendingNode[],
  inputCount: number,
  maxBindings: number,
  reduced: number,
): Segment[] {
  const count = nodes.length;
  const held = new Uint8Array(count), needed = new Uint8Array(count);
  for (let j = 0; j < count; j++) {
    held[j] = nodes[j]!.storage !== null ? 1 : 0;
    // The reduced node is computed (its kernel reduces it) but written only if held.
    needed[j] = held[j] || j === reduced ? 1 : 0;
  }
  const lastUse = new Int32Array(count).fill(-1);
  for (let j = count - 1; j >= 0; j--) {
    if (!needed[j]) continue;
    for (const r of nodes[j]!.node.args) {
      if (r.from !== "node") continue;
      needed[r.index] = 1;
      if (lastUse[r.index]! < j) lastUse[r.index] = j;
    }
  }
  // Typed arrays stamped with the number of the kernel being filled (from 1), not sets: this is
  // per node of every emitted group. A kernel's storages are the inputs and earlier kernels'
  // nodes it reads (`inputRead`, `nodeRead`) and the nodes it writes (`written`).
  const segments: Segment[] = [];
  const inputRead = new Int32Array(inputCount), nodeRead = new Int32Array(count);
  const inSeg = new Int32Array(count), written = new Int32Array(count);
  let k = 1, reads = 0, writes = 0, seg: number[] = [], writeOrder: number[] = [];
  const close = () => {
    if (seg.length > 0) {
      segments.push({ nodes: seg, writes: writeOrder.filter((j) => written[j] === k) });
    }
    k++;
    reads = writes = 0;
    seg = [];
    writeOrder = [];
  };
  const newReads: FusedRef[] = [], dropped: number[] = [];
  for (let j = 0; j < count; j++) {
    if (!needed[j]) continue;
    newReads.length = 0;
    dropped.length = 0;
    for (const r of nodes[j]!.node.args) {
      if (r.from === "const") continue;
      if (r.from === "node" && inSeg[r.index] === k) {
        // Its last reader is this node: inside the kernel it needs no storage any more.
        if (!held[r.index] && lastUse[r.index] === j && !dropped.includes(r.index)) {
          dropped.push(r.index);
        }
        continue;
      }
      const stamp = r.from === "input" ? inputRead : nodeRead;
      if (stamp[r.index] !== k && !newReads.some((q) => q.from === r.from && q.index === r.index)) {
        newReads.push(r);
      }
    }
    const writesSelf = held[j] || lastUse[j]! > j ? 1 : 0;
    const bindings = reads + newReads.length + writes - dropped.length + writesSelf;
    if (seg.length > 0 && bindings > maxBindings) {
      close();
      j--; // retry this node as the first of a new kernel
      continue;
    }
    for (const r of newReads) (r.from === "input" ? inputRead : nodeRead)[r.index] = k;
    reads += newReads.length;
    for (const d of dropped) {
      if (written[d] === k) {
        written[d] = 0;
        writes--;
      }
    }
    seg.push(j);
    inSeg[j] = k;
    if (writesSelf) {
      written[j] = k;
      writes++;
      writeOrder.push(j);
    }
  }
  close();
  return segments;
}

/**
 * The fused kernel's op name: the ops it computes, in order, without repeats (`mulScalar+add`),
 * so errors, captures and profiles still name what ran; one op keeps its plain name.
 */
function segmentName(nodes: readonly PendingNode[], seg: Segment): string {
  const names = new Set<string>();
  for (const j of seg.nodes) names.add(nodes[j]!.label);
  const MAX = 6;
  const list = [...names];
  return list.length <= MAX
    ? list.join("+")
    : `${list.slice(0, MAX).join("+")}+${list.length - MAX} more`;
}

/**
 * The program of one segment, with its operands renumbered, the storages it binds, and where
 * each of the group's nodes it computes landed in it (`local`).
 */
function segmentProgram(
  n: number,
  nodes: readonly PendingNode[],
  inputs: readonly PendingInput[],
  consts: readonly number[],
  seg: Segment,
): { program: FusedProgram; reads: Storage[]; writes: Storage[]; local: Int32Array } {
  // Where each of the group's nodes landed in this kernel (-1: not in it).
  const local = new Int32Array(nodes.length).fill(-1);
  if (seg.nodes.length === nodes.length) {
    // The whole group in one kernel (a chain, most often): nodes, inputs and constants keep
    // their numbers, since the group numbered inputs and constants by first use too.
    for (let j = 0; j < nodes.length; j++) local[j] = j;
    return {
      program: {
        n,
        inputs: inputs.map((x) => x.input),
        consts: [...consts],
        nodes: nodes.map((x) => x.node),
        outputs: seg.writes,
      },
      reads: inputs.map((x) => x.storage),
      writes: seg.writes.map((j) => nodes[j]!.storage!),
      local,
    };
  }
  const inputOf = new Map<string, number>();
  const constOf = new Map<number, number>();
  const progInputs: FusedInput[] = [], reads: Storage[] = [], progConsts: number[] = [];
  const progNodes: FusedNode[] = [];
  const mapRef = (r: FusedRef): FusedRef => {
    if (r.from === "const") {
      let c = constOf.get(r.index);
      if (c === undefined) {
        c = progConsts.length;
        progConsts.push(consts[r.index]!);
        constOf.set(r.index, c);
      }
      return { from: "const", index: c };
    }
    if (r.from === "node" && local[r.index]! >= 0) {
      return { from: "node", index: local[r.index]! };
    }
    const key = `${r.from[0]}${r.index}`;
    let i = inputOf.get(key);
    if (i === undefined) {
      i = progInputs.length;
      if (r.from === "input") {
        progInputs.push(inputs[r.index]!.input);
        reads.push(inputs[r.index]!.storage);
      } else {
        // Written by an earlier kernel of this group.
        progInputs.push({ dtype: nodes[r.index]!.node.dtype, layout: null });
        reads.push(nodes[r.index]!.storage!);
      }
      inputOf.set(key, i);
    }
    return { from: "input", index: i };
  };
  for (const j of seg.nodes) {
    const nd = nodes[j]!.node;
    const args = nd.args.map(mapRef);
    progNodes.push({ ...nd, args } as unknown as FusedNode);
    local[j] = progNodes.length - 1;
  }
  return {
    program: {
      n,
      inputs: progInputs,
      consts: progConsts,
      nodes: progNodes,
      outputs: seg.writes.map((j) => local[j]!),
    },
    reads,
    writes: seg.writes.map((j) => nodes[j]!.storage!),
    local,
  };
}
