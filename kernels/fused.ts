/**
 * Fused elementwise kernels: a small expression IR over the elementwise op tables (`UNARY`,
 * `BINARY`, `where`, casts) and the one kernel generated from a group of its nodes. Each thread
 * loads its inputs once (an input broadcast over the output has its own collapsed strides),
 * evaluates the DAG — a shared subexpression is one node, computed once — and writes the
 * requested outputs. The WGSL and the CPU twin both come from the tables' `wgsl` and `cpu`
 * columns, so fusion cannot change what an op means.
 *
 * Every node's value is rounded to its storage dtype (f16 included) before later nodes use it,
 * so a fused chain computes on the same numbers as the unfused one, which stores and reloads
 * each intermediate. Scalar constants travel in the uniform block: a pipeline serves every value.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { bytesPerElement, type DType, typedView } from "../src/core/dtype.ts";
import { gridStride, WG } from "./common.ts";
import {
  binaryExpr,
  binaryFn,
  type BinaryOp,
  computeType,
  roundTo,
  UNARY,
  unaryExpr,
  type UnaryOp,
} from "./elementwise.ts";
import { convertScalar } from "./fill.ts";
import {
  laneSum,
  maxLaneTree,
  ROW_ARGS,
  ROW_WG,
  rowGroups,
  rowLoopOpen,
  rowReduceCpu,
  type RowReduceParams,
  WGSL_FLOAT_HELPERS,
} from "./reduce.ts";
import { type DeclaredKernel, defineKernel, type ParamType } from "./spec.ts";

/** Where a node's operand comes from: a group input, an earlier node, or a scalar constant. */
export interface FusedRef {
  /** `"input"` (a loaded storage), `"node"` (an earlier node's value) or `"const"` (uniform). */
  readonly from: "input" | "node" | "const";
  /** Index into the program's inputs, nodes or constants. */
  readonly index: number;
}

/** Broadcast of an input over the output: collapsed dims and the input's stride on each. */
export interface FusedLayout {
  /** Collapsed output dims (their product is the program's `n`). */
  readonly shape: readonly number[];
  /** The input's element stride along each dim (0 where it is broadcast). */
  readonly strides: readonly number[];
}

/** One storage the program reads. */
export interface FusedInput {
  /** Its storage dtype. */
  readonly dtype: DType;
  /** `null` when element `i` of the input is element `i` of the output; else its broadcast. */
  readonly layout: FusedLayout | null;
}

/** One operation of the DAG; its value has `dtype` (rounded to it). */
export type FusedNode =
  | {
    readonly kind: "unary";
    readonly op: UnaryOp;
    readonly dtype: DType;
    readonly args: readonly [FusedRef];
  }
  | {
    readonly kind: "binary";
    readonly op: BinaryOp;
    readonly dtype: DType;
    readonly args: readonly [FusedRef, FusedRef];
  }
  | {
    /** `args[0] ≠ 0 ? args[1] : args[2]`. */
    readonly kind: "where";
    readonly dtype: DType;
    readonly args: readonly [FusedRef, FusedRef, FusedRef];
  }
  | {
    /** Conversion of `args[0]` to `dtype` (floats to integers truncate and saturate). */
    readonly kind: "cast";
    readonly dtype: DType;
    readonly args: readonly [FusedRef];
  };

/** A group of nodes over `n` elements, compiled to one kernel. */
export interface FusedProgram {
  /** Elements of every node (the output size). */
  readonly n: number;
  /** Storages read, in binding order. */
  readonly inputs: readonly FusedInput[];
  /** Scalar constants (f32), passed as uniforms. */
  readonly consts: readonly number[];
  /** The DAG in topological order: a node refers only to earlier ones. */
  readonly nodes: readonly FusedNode[];
  /** Nodes written, each to its own storage bound after the inputs, in this order. */
  readonly outputs: readonly number[];
  /**
   * A reduction that ends the group: rows of one node's values reduced in the same kernel, so
   * the node need not be written (it is only when it is also in `outputs`).
   */
  readonly reduce?: FusedReduce;
}

/**
 * The reduction ending a fused group, with the semantics of kernels/reduce.ts's row reduction
 * (`rowReduceWgsl`): row `r` covers elements `[r·cols, min(r·cols + cols, n))` of the node
 * (`rows · cols ≥ n`), every element is visited by exactly one row, sums are multiplied by
 * `scale`. Its outputs bind after the element outputs: the values, then the indices.
 */
export interface FusedReduce {
  /** The node reduced (its values rounded to its dtype, as a stored input would be). */
  readonly node: number;
  /** `sum` (of squares when `square`) or `max` (NaN-first, lowest index on ties). */
  readonly kind: "sum" | "max";
  /** `sum`: add the squares of the values. */
  readonly square: boolean;
  /** Storage dtype of the values output. */
  readonly outType: DType;
  /** Write the values (always for `sum`). */
  readonly values: boolean;
  /** `max`: write the u32 index within the row. */
  readonly indices: boolean;
  /** Lanes per row (`rowLanes(cols)`): part of the kernel's structure. */
  readonly lanes: number;
  /** Rows reduced (one output each). */
  readonly rows: number;
  /** Elements per row (the last row may be short: it ends at the node's `n`). */
  readonly cols: number;
  /** Factor on each sum (1/cols for a mean). */
  readonly scale: number;
}

/** What a program compiles to: the canonical structure and the kernel declared for it. */
interface Compiled {
  readonly kernel: DeclaredKernel<Record<string, ParamType>>;
  /** Broadcast slot of each input (`-1`: identity); inputs with equal layouts share one. */
  readonly slotOf: readonly number[];
  /** One layout per slot. */
  readonly slots: readonly FusedLayout[];
}

/** One declared kernel per canonical structure (a declaration's name may not repeat). */
const kernels = new Map<string, DeclaredKernel<Record<string, ParamType>>>();

function sameLayout(a: FusedLayout, b: FusedLayout): boolean {
  return a.shape.length === b.shape.length &&
    a.shape.every((d, i) => d === b.shape[i] && a.strides[i] === b.strides[i]);
}

/** dtype of an operand (constants are f32: scalar forms exist only on floats). */
function refType(p: FusedProgram, r: FusedRef): DType {
  if (r.from === "input") return p.inputs[r.index]!.dtype;
  if (r.from === "node") return p.nodes[r.index]!.dtype;
  return "f32";
}

/**
 * The canonical structure of a program: ops, dtypes, operand wiring, which inputs are broadcast
 * (and which share a broadcast), ranks, the constant count and which nodes are written. Never
 * the sizes, strides, constant values or buffers, which are uniforms and bindings.
 *
 * @param p The program.
 * @returns The structure string (the pipeline cache identifies a kernel by it).
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fusedStructure } from "./fused.ts";
 * const chain = (s: number, n: number) => ({
 *   n,
 *   inputs: [{ dtype: "f32" as const, layout: null }],
 *   consts: [s],
 *   nodes: [{
 *     kind: "binary" as const,
 *     op: "mul" as const,
 *     dtype: "f32" as const,
 *     args: [{ from: "input", index: 0 }, { from: "const", index: 0 }] as const,
 *   }],
 *   outputs: [0],
 * });
 * assert.equal(fusedStructure(chain(0.5, 8)), fusedStructure(chain(3, 4096)));
 * ```
 */
export function fusedStructure(p: FusedProgram): string {
  const { slotOf, slots } = slotsOf(p);
  const ins = p.inputs.map((x, i) =>
    slotOf[i]! < 0 ? x.dtype : `${x.dtype}@${slotOf[i]}r${slots[slotOf[i]!]!.shape.length}`
  );
  // Built by concatenation: a long chain's key is made at every emission, so this is per op.
  let nodes = "";
  for (const nd of p.nodes) {
    nodes += nd.kind === "unary" || nd.kind === "binary"
      ? `${nd.kind}.${nd.op}.${nd.dtype}(`
      : `${nd.kind}.${nd.dtype}(`;
    for (let i = 0; i < nd.args.length; i++) {
      const r = nd.args[i]!;
      nodes += (i > 0 ? "," : "") + r.from[0] + r.index;
    }
    nodes += ");";
  }
  const r = p.reduce;
  const red = r
    ? `|${r.kind}${r.square ? "2" : ""}(v${r.node}):${r.outType}:L${r.lanes}:` +
      `${r.values ? "v" : ""}${r.indices ? "i" : ""}`
    : "";
  return `${ins.join(",")}|${p.consts.length}|${nodes}|${p.outputs.join(",")}${red}`;
}

function slotsOf(p: FusedProgram): { slotOf: number[]; slots: FusedLayout[] } {
  const slots: FusedLayout[] = [];
  const slotOf = p.inputs.map((x) => {
    if (!x.layout) return -1;
    const k = slots.findIndex((s) => sameLayout(s, x.layout!));
    if (k >= 0) return k;
    slots.push(x.layout);
    return slots.length - 1;
  });
  return { slotOf, slots };
}

function compile(p: FusedProgram): Compiled {
  const { slotOf, slots } = slotsOf(p);
  const structure = fusedStructure(p);
  let kernel = kernels.get(structure);
  if (!kernel) {
    const params: Record<string, ParamType> = { n: "u32" };
    slots.forEach((s, k) => {
      const v = Math.ceil(s.shape.length / 4);
      params[`sh${k}`] = `array<vec4u, ${v}>`;
      params[`st${k}`] = `array<vec4u, ${v}>`;
    });
    if (p.consts.length > 0) params.c = `array<vec4f, ${Math.ceil(p.consts.length / 4)}>`;
    const r = p.reduce;
    if (r) Object.assign(params, { rows: "u32", cols: "u32", scale: "f32" });
    kernel = defineKernel({
      name: `fused${kernels.size}`,
      bindings: [
        ...p.inputs.map((x, i) => ({ name: `in${i}`, type: x.dtype, access: "read" as const })),
        ...p.outputs.map((j, i) => ({
          name: `out${i}`,
          type: p.nodes[j]!.dtype,
          access: "read_write" as const,
        })),
        ...(r?.values ? [{ name: "rv", type: r.outType, access: "read_write" as const }] : []),
        ...(r?.indices
          ? [{ name: "ri", type: "u32" as const, access: "read_write" as const }]
          : []),
      ],
      params,
    });
    kernels.set(structure, kernel);
  }
  return { kernel, slotOf, slots };
}

/** A typed zero of a compute type, for `where`'s test. */
function zeroOf(ct: string): string {
  return ct === "f32" ? "0.0" : `${ct}(0)`;
}

/**
 * The WGSL of a program: per-op helper functions holding the tables' expressions verbatim, then
 * a grid-stride loop that loads, evaluates and stores.
 *
 * @param p The program.
 * @returns WGSL source.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fusedWgsl } from "./fused.ts";
 * const wgsl = fusedWgsl({
 *   n: 4,
 *   inputs: [{ dtype: "f32", layout: null }],
 *   consts: [],
 *   nodes: [{ kind: "unary", op: "exp", dtype: "f32", args: [{ from: "input", index: 0 }] }],
 *   outputs: [0],
 * });
 * assert.match(wgsl, /return exp\(x\);/);
 * assert.match(wgsl, /out0\[i\] = f32\(v0\);/);
 * ```
 */
export function fusedWgsl(p: FusedProgram): string {
  const { kernel, slotOf, slots } = compile(p);
  const helpers = new Map<string, string>();
  const operand = (r: FusedRef): string =>
    r.from === "input"
      ? `x${r.index}`
      : r.from === "node"
      ? `v${r.index}`
      : `p.c[${r.index >> 2}][${r.index & 3}]`;
  // f16 values are rounded as a store would round them; f32 and integers already are.
  const rounded = (dtype: DType, e: string) => dtype === "f16" ? `f32(f16(${e}))` : e;
  const body: string[] = [];
  slots.forEach((s, k) => {
    const rank = s.shape.length;
    body.push(`var r${k} = i; var j${k} = 0u;`);
    for (let d = rank - 1; d >= 1; d--) {
      const at = `[${d >> 2}][${d & 3}]`;
      body.push(
        `{ let q = r${k} / p.sh${k}${at}; j${k} = j${k} + (r${k} - q * p.sh${k}${at}) * p.st${k}${at}; r${k} = q; }`,
      );
    }
    body.push(`j${k} = j${k} + r${k} * p.st${k}[0][0];`);
  });
  p.inputs.forEach((x, i) => {
    const idx = slotOf[i]! < 0 ? "i" : `j${slotOf[i]}`;
    body.push(`let x${i} = ${computeType(x.dtype)}(in${i}[${idx}]);`);
  });
  p.nodes.forEach((nd, j) => {
    const ct = computeType(nd.dtype);
    const args = nd.args.map(operand);
    let e: string;
    if (nd.kind === "unary") {
      const fn = `u_${nd.op}_${ct}`;
      helpers.set(fn, `fn ${fn}(x: ${ct}) -> ${ct} { return ${unaryExpr(nd.op, nd.dtype)}; }`);
      e = rounded(nd.dtype, `${fn}(${args[0]})`);
    } else if (nd.kind === "binary") {
      const fn = `b_${nd.op}_${ct}`;
      helpers.set(
        fn,
        `fn ${fn}(a: ${ct}, b: ${ct}) -> ${ct} { return ${binaryExpr(nd.op, nd.dtype)}; }`,
      );
      e = rounded(nd.dtype, `${fn}(${args[0]}, ${args[1]})`);
    } else if (nd.kind === "where") {
      const cz = zeroOf(computeType(refType(p, nd.args[0])));
      e = `select(${args[2]}, ${args[1]}, ${args[0]} != ${cz})`;
    } else {
      e = nd.dtype === "f16" ? `f32(f16(${args[0]}))` : `${ct}(${args[0]})`;
    }
    body.push(`let v${j} = ${e};`);
  });
  p.outputs.forEach((j, o) => body.push(`out${o}[i] = ${p.nodes[j]!.dtype}(v${j});`));
  // A cast through f16 may use f16 with no f16 binding, which the header would not enable.
  const header = kernel.header();
  const f16 = !header.startsWith("enable f16;") && p.nodes.some((nd) => nd.dtype === "f16");
  const head = `${f16 ? "enable f16;\n" : ""}${header}
${[...helpers.values()].join("\n")}`;
  if (p.reduce) return `${head}\n${reduceMain(p.reduce, body)}`;
  return `${head}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < p.n; i = i + stride) {
    ${body.join("\n    ")}
  }
}`;
}

/**
 * The entry point of a program ending in a reduction: the row loop of kernels/reduce.ts, each
 * lane evaluating the DAG at the elements it visits and folding the reduced node into its
 * accumulator, then the same lane tree, so the result is what the unfused reduction gives.
 */
function reduceMain(r: FusedReduce, body: readonly string[]): string {
  const L = r.lanes;
  const loop = (fold: string) =>
    `if (live) {
      let start = row * p.cols;
      let end = min(start + p.cols, p.n);
      for (var i = start + lane; i < end; i = i + ${L}u) {
        ${body.join("\n        ")}
        let rx = f32(v${r.node});
        ${fold}
      }
    }`;
  if (r.kind === "sum") {
    return `${WGSL_FLOAT_HELPERS}
var<workgroup> sv: array<f32, ${ROW_WG}>;
@compute @workgroup_size(${ROW_WG})
fn main(${ROW_ARGS}) {
  ${rowLoopOpen(L)}
    var acc = 0.0;
    ${loop(`acc = acc + ${r.square ? "rx * rx" : "rx"};`)}
    ${laneSum(L, "sv", "acc", "total")}
    if (live && lane == 0u) { rv[row] = ${r.outType}(total * p.scale); }
  }
}`;
  }
  const tree = maxLaneTree(L);
  const store = (r.values ? `rv[row] = ${r.outType}(bv); ` : "") +
    (r.indices ? "ri[row] = bi;" : "");
  return `${WGSL_FLOAT_HELPERS}
var<workgroup> sv: array<f32, ${ROW_WG}>;
var<workgroup> si: array<u32, ${ROW_WG}>;
@compute @workgroup_size(${ROW_WG})
fn main(${ROW_ARGS}) {
  ${rowLoopOpen(L)}
    var bv = neg_inf();
    var bi = 0xffffffffu;
    ${loop("let jx = i - start;\n        if (beats(bv, bi, rx, jx)) { bv = rx; bi = jx; }")}
    ${tree}
    if (live && lane == 0u) { ${store} }
  }
}`;
}

/** Values of one input over the `n` output elements (a copy, so every loop sees one type). */
function loadInput(x: FusedInput, buf: ArrayBuffer, n: number, out: Float64Array): void {
  const src = typedView(x.dtype, buf);
  if (!x.layout) {
    for (let i = 0; i < n; i++) out[i] = src[i]!;
    return;
  }
  const { shape, strides } = x.layout;
  const rank = shape.length;
  for (let i = 0; i < n; i++) {
    let rem = i, j = 0;
    for (let d = rank - 1; d >= 1; d--) {
      const dim = shape[d]!;
      const c = rem % dim;
      rem = (rem - c) / dim;
      j += c * strides[d]!;
    }
    out[i] = src[j + rem * strides[0]!]!;
  }
}

/**
 * CPU twin of {@link fusedWgsl}: evaluates the DAG node by node over all elements (each element
 * is independent, so the order of evaluation cannot change a value) with the tables' `cpu`
 * functions, rounding each node to its dtype as the WGSL does. A temporary goes back to a free
 * list after its last use, so a long chain cycles through a few arrays.
 *
 * @param p The program.
 * @param buffers The inputs' bytes, then the outputs', in binding order.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { fusedCpu } from "./fused.ts";
 * const x = Float32Array.of(1, -2, 3), out = new Float32Array(3);
 * fusedCpu({
 *   n: 3,
 *   inputs: [{ dtype: "f32", layout: null }],
 *   consts: [10],
 *   nodes: [
 *     { kind: "unary", op: "relu", dtype: "f32", args: [{ from: "input", index: 0 }] },
 *     { kind: "binary", op: "add", dtype: "f32", args: [{ from: "node", index: 0 }, { from: "const", index: 0 }] },
 *   ],
 *   outputs: [1],
 * }, [x.buffer, out.buffer]);
 * assert.deepEqual([...out], [11, 10, 13]);
 * ```
 */
export function fusedCpu(p: FusedProgram, buffers: ArrayBuffer[]): void {
  const n = p.n;
  const free: Float64Array[] = [];
  const take = () => free.pop() ?? new Float64Array(n);
  const inputs = p.inputs.map((x, i) => {
    const v = new Float64Array(n);
    loadInput(x, buffers[i]!, n, v);
    return v;
  });
  const lastUse = new Int32Array(p.nodes.length).fill(-1);
  p.nodes.forEach((nd, j) => {
    for (const r of nd.args) if (r.from === "node") lastUse[r.index] = j;
  });
  for (const o of p.outputs) lastUse[o] = p.nodes.length;
  if (p.reduce) lastUse[p.reduce.node] = p.nodes.length;
  const values: (Float64Array | null)[] = new Array(p.nodes.length).fill(null);
  const get = (r: FusedRef): Float64Array =>
    r.from === "input" ? inputs[r.index]! : values[r.index]!;
  p.nodes.forEach((nd, j) => {
    const v = take();
    const round = roundTo(nd.dtype);
    if (nd.kind === "unary") {
      const x = get(nd.args[0]), f = UNARY[nd.op].cpu;
      for (let i = 0; i < n; i++) v[i] = round(f(x[i]!));
    } else if (nd.kind === "binary") {
      const [ra, rb] = nd.args, f = binaryFn(nd.op, nd.dtype);
      if (ra.from === "const") {
        const a = Math.fround(p.consts[ra.index]!), b = get(rb);
        for (let i = 0; i < n; i++) v[i] = round(f(a, b[i]!));
      } else if (rb.from === "const") {
        const a = get(ra), b = Math.fround(p.consts[rb.index]!);
        for (let i = 0; i < n; i++) v[i] = round(f(a[i]!, b));
      } else {
        const a = get(ra), b = get(rb);
        for (let i = 0; i < n; i++) v[i] = round(f(a[i]!, b[i]!));
      }
    } else if (nd.kind === "where") {
      const c = get(nd.args[0]), a = get(nd.args[1]), b = get(nd.args[2]);
      for (let i = 0; i < n; i++) v[i] = c[i] !== 0 ? a[i]! : b[i]!;
    } else {
      const x = get(nd.args[0]), from = refType(p, nd.args[0]), to = nd.dtype;
      const floatSrc = from === "f32" || from === "f16";
      for (let i = 0; i < n; i++) v[i] = round(floatSrc ? convertScalar(x[i]!, to) : x[i]!);
    }
    values[j] = v;
    for (const r of nd.args) {
      if (r.from === "node" && lastUse[r.index] === j && values[r.index]) {
        free.push(values[r.index]!);
        values[r.index] = null;
      }
    }
  });
  p.outputs.forEach((j, o) => {
    const out = typedView(p.nodes[j]!.dtype, buffers[p.inputs.length + o]!, n);
    out.set(values[j]!);
  });
  const r = p.reduce;
  if (!r) return;
  // The reduced node as the unfused reduction would read it: stored in its dtype (its values
  // are already rounded to it, so this is exact), then the row reduction's own twin.
  const dtype = p.nodes[r.node]!.dtype;
  const stored = typedView(dtype, new ArrayBuffer(n * bytesPerElement(dtype)), n);
  stored.set(values[r.node]!);
  const params: RowReduceParams = { rows: r.rows, cols: r.cols, n, scale: r.scale, istride: 0 };
  rowReduceCpu(
    { ...r, inType: dtype, indexIn: false },
    params,
    [stored.buffer as ArrayBuffer, ...buffers.slice(p.inputs.length + p.outputs.length)],
  );
}

/**
 * The launch of a program: bindings are `inputs` then `outputs` (one storage per entry of
 * `p.outputs`); broadcast shapes and strides and the constants go in the uniform block.
 *
 * @param p The program.
 * @param inputs Storages read, one per `p.inputs`.
 * @param outputs Storages written, one per `p.outputs`.
 * @param op The name errors and profiles give the launch (default `fused`).
 * @returns The dispatch.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { CpuBackend } from "../src/backend/cpu.ts";
 * import { fusedDispatch } from "./fused.ts";
 * const be = new CpuBackend();
 * const x = be.allocate(8, "x"), y = be.allocate(8, "y");
 * be.write(x, Float32Array.of(4, 9));
 * be.dispatch(fusedDispatch({
 *   n: 2,
 *   inputs: [{ dtype: "f32", layout: null }],
 *   consts: [],
 *   nodes: [{ kind: "unary", op: "sqrt", dtype: "f32", args: [{ from: "input", index: 0 }] }],
 *   outputs: [0],
 * }, [x], [y]));
 * assert.deepEqual([...new Float32Array(await be.read(y, 8))], [2, 3]);
 * ```
 */
export function fusedDispatch(
  p: FusedProgram,
  inputs: Storage[],
  outputs: Storage[],
  op = "fused",
): Dispatch {
  const { kernel, slots } = compile(p);
  const values: Record<string, number | number[]> = { n: p.n };
  slots.forEach((s, k) => {
    values[`sh${k}`] = [...s.shape];
    values[`st${k}`] = [...s.strides];
  });
  if (p.consts.length > 0) values.c = [...p.consts];
  const r = p.reduce;
  if (r) Object.assign(values, { rows: r.rows, cols: r.cols, scale: r.scale });
  return {
    op,
    key: kernel.key(),
    wgsl: () => fusedWgsl(p),
    cpu: (buffers) => fusedCpu(p, buffers),
    buffers: [...inputs, ...outputs],
    uniforms: kernel.uniforms(values as never),
    workgroups: r ? rowGroups(r.rows, r.lanes) : gridStride(p.n),
    launches: p.nodes.length,
  };
}
