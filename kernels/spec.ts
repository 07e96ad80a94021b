/**
 * Declared kernels: a kernel states its storage bindings and its uniform parameters once, and
 * the WGSL header (`enable f16;`, `struct P`, the `@binding` lines), the packed uniform block and
 * the pipeline-cache key prefix are all derived from that one declaration.
 *
 * Why: with hand-written headers and positional `uniforms(a, b, c)`, adding a field to the struct
 * and not to the call (or in another order) still compiled and ran, reading the wrong words.
 * Here uniforms are packed by name, in the declared order, with the declared WGSL type, and a
 * missing or unknown field throws with the kernel's name.
 *
 * Conventions kept from the hand-written headers: storage bindings are numbered in declaration
 * order (omitted optional ones take no number), the uniform block `p: P` comes last, and the
 * block is rounded up to 16 bytes.
 *
 * @module
 */

/** Scalar WGSL types a uniform parameter can have. */
export type ScalarParamType = "u32" | "i32" | "f32";

/**
 * Fixed-size array of 4-vectors (`array<vec4u, 2>` holds 8 u32). Uniform arrays need a 16-byte
 * element stride, so short lists (shapes, strides, frequencies) travel as vec4 arrays indexed
 * `a[i / 4][i % 4]`.
 */
export type VectorArrayParamType = `array<vec4${"u" | "i" | "f"}, ${number}>`;

/** The WGSL type of one uniform parameter. */
export type ParamType = ScalarParamType | VectorArrayParamType;

/** Declared uniform parameters, in struct order (object key order is preserved). */
export type ParamTypes = Readonly<Record<string, ParamType>>;

/** Values of declared parameters: a number per scalar, a list per vector array. */
export type ParamValues<P extends ParamTypes> = {
  readonly [K in keyof P]: P[K] extends ScalarParamType ? number : ArrayLike<number>;
};

/** One storage binding: `var<storage, access> name: array<type>`. */
export interface BindingSpec {
  /** WGSL variable name. */
  readonly name: string;
  /**
   * Element type, e.g. `"f32"`, `"vec4<f32>"`, or one with type variables (identifiers starting
   * with an upper-case letter, e.g. `"T"`, `"vec4<T>"`) that {@link DeclaredKernel.header}
   * resolves.
   */
  readonly type: string;
  /** Storage access mode. */
  readonly access: "read" | "read_write";
  /** Present only in some specialisations; omit it with `header({ omit: [name] })`. */
  readonly optional?: boolean;
}

/** A kernel's declaration. */
export interface KernelSpec<P extends ParamTypes> {
  /** Kernel name: prefix of its pipeline-cache keys, and named in every error. */
  readonly name: string;
  /** Storage bindings in binding order (the order of the dispatch's `buffers`). */
  readonly bindings: readonly BindingSpec[];
  /** Uniform parameters in struct order; none means no struct and no uniform binding. */
  readonly params?: P;
}

/** Specialisation of a header. */
export interface HeaderOptions {
  /** Values of the type variables used in binding types, e.g. `{ T: "f16" }`. */
  readonly types?: Readonly<Record<string, string>>;
  /** Optional bindings absent from this specialisation; later bindings move down by one. */
  readonly omit?: readonly string[];
}

/** A declared kernel: header generator, uniform packer and key builder. */
export interface DeclaredKernel<P extends ParamTypes> {
  /** The declaration's name. */
  readonly name: string;
  /** The declaration itself. */
  readonly spec: KernelSpec<P>;
  /**
   * The WGSL header: `enable f16;` when a type variable or binding type is f16, `struct P`, the
   * storage bindings numbered in order, then the uniform binding. No trailing newline.
   */
  header(options?: HeaderOptions): string;
  /** The uniform block: each field packed by its declared type, at its WGSL offset. */
  uniforms(values: ParamValues<P>): Uint32Array;
  /** Pipeline-cache key: the name then each specialisation part, `:`-separated. */
  key(...parts: (string | number)[]): string;
}

/** Names already declared: two kernels with one name would share pipeline-cache keys. */
const declared = new Set<string>();

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
const TYPE_VAR = /\b[A-Z][A-Za-z0-9_]*\b/g;
const ARRAY_PARAM = /^array<vec4([uif]), (\d+)>$/;

/** One uniform field with its place in the block. */
interface FieldLayout {
  readonly name: string;
  readonly type: ParamType;
  /** Scalar type of each word. */
  readonly scalar: ScalarParamType;
  /** Offset in 4-byte words. */
  readonly offset: number;
  /** Words it occupies (1 for a scalar, 4·N for `array<vec4*, N>`). */
  readonly words: number;
}

/**
 * Field offsets by the WGSL uniform layout rules: scalars align to 4 bytes, `array<vec4*, N>`
 * to 16 (so the struct WGSL compiles and the words packed here agree without explicit padding).
 */
function layoutOf(kernel: string, params: ParamTypes): { fields: FieldLayout[]; words: number } {
  const fields: FieldLayout[] = [];
  let end = 0;
  for (const [name, type] of Object.entries(params)) {
    if (!IDENT.test(name)) throw new Error(`kernel "${kernel}": bad parameter name "${name}"`);
    if (type === "u32" || type === "i32" || type === "f32") {
      fields.push({ name, type, scalar: type, offset: end, words: 1 });
      end += 1;
      continue;
    }
    const m = ARRAY_PARAM.exec(type);
    const count = m ? Number(m[2]) : 0;
    if (!m || count < 1) {
      throw new Error(`kernel "${kernel}": parameter "${name}" has unsupported type "${type}"`);
    }
    const scalar = ({ u: "u32", i: "i32", f: "f32" } as const)[m[1] as "u" | "i" | "f"];
    const offset = Math.ceil(end / 4) * 4;
    fields.push({ name, type, scalar, offset, words: 4 * count });
    end = offset + 4 * count;
  }
  return { fields, words: Math.max(4, Math.ceil(end / 4) * 4) };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** One word of a uniform: a range-checked integer, or the bits of an f32. */
function wordOf(kernel: string, field: string, scalar: ScalarParamType, v: number): number {
  if (scalar === "f32") {
    if (typeof v !== "number") throw new Error(`kernel "${kernel}": "${field}" must be a number`);
    f32[0] = v;
    return u32[0]!;
  }
  const [lo, hi] = scalar === "u32" ? [0, 2 ** 32] : [-(2 ** 31), 2 ** 31];
  if (!Number.isInteger(v) || v < lo || v >= hi) {
    throw new Error(`kernel "${kernel}": "${field}" = ${v} does not fit ${scalar}`);
  }
  return v >>> 0;
}

/**
 * Declares a kernel. Its name must be unique in the process, since it prefixes every key.
 *
 * @param spec Name, storage bindings in binding order, uniform parameters in struct order.
 * @returns The header generator, uniform packer and key builder.
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { defineKernel } from "./spec.ts";
 * const SCALE = defineKernel({
 *   name: "exampleScale",
 *   bindings: [
 *     { name: "xs", type: "T", access: "read" },
 *     { name: "out", type: "T", access: "read_write" },
 *   ],
 *   params: { n: "u32", s: "f32" },
 * });
 * assert.equal(
 *   SCALE.header({ types: { T: "f16" } }),
 *   `enable f16;
 * struct P { n: u32, s: f32 };
 * @group(0) @binding(0) var<storage, read> xs: array<f16>;
 * @group(0) @binding(1) var<storage, read_write> out: array<f16>;
 * @group(0) @binding(2) var<uniform> p: P;`,
 * );
 * // By name, in declared order, f32 as its bits, rounded up to 16 bytes:
 * assert.deepEqual(Array.from(SCALE.uniforms({ s: 1, n: 3 })), [3, 0x3f800000, 0, 0]);
 * assert.throws(() => SCALE.uniforms({ n: 3 } as never), /"exampleScale": uniform field "s" missing/);
 * assert.equal(SCALE.key("f16", "L32"), "exampleScale:f16:L32");
 * ```
 */
export function defineKernel<const P extends ParamTypes = Record<never, ParamType>>(
  spec: KernelSpec<P>,
): DeclaredKernel<P> {
  const kernel = spec.name;
  if (!IDENT.test(kernel)) throw new Error(`bad kernel name "${kernel}"`);
  if (declared.has(kernel)) throw new Error(`kernel "${kernel}" is declared twice`);
  const names = new Set<string>();
  for (const b of spec.bindings) {
    if (!IDENT.test(b.name) || b.name === "p" || names.has(b.name)) {
      throw new Error(`kernel "${kernel}": bad or repeated binding name "${b.name}"`);
    }
    names.add(b.name);
  }
  const params: ParamTypes = spec.params ?? {};
  const { fields, words } = layoutOf(kernel, params);
  const struct = fields.length > 0
    ? `struct P { ${fields.map((f) => `${f.name}: ${f.type}`).join(", ")} };`
    : "";
  declared.add(kernel);

  function header(options: HeaderOptions = {}): string {
    const types = options.types ?? {}, omit = new Set(options.omit ?? []);
    for (const name of omit) {
      const b = spec.bindings.find((b) => b.name === name);
      if (!b?.optional) {
        throw new Error(`kernel "${kernel}": cannot omit "${name}" (not an optional binding)`);
      }
    }
    const resolve = (type: string) =>
      type.replace(TYPE_VAR, (v) => {
        const t = types[v];
        if (t === undefined) throw new Error(`kernel "${kernel}": type variable ${v} not given`);
        return t;
      });
    const lines: string[] = [];
    for (const b of spec.bindings) {
      if (omit.has(b.name)) continue;
      const type = resolve(b.type);
      lines.push(
        `@group(0) @binding(${lines.length}) var<storage, ${b.access}> ${b.name}: array<${type}>;`,
      );
    }
    if (struct) lines.push(`@group(0) @binding(${lines.length}) var<uniform> p: P;`);
    // f16 can appear in a binding or only in the body through a type variable (`${T}(x)`).
    const usesF16 = [...Object.values(types), ...lines].some((s) =>
      /\bf16\b|\bvec[234]h\b/.test(s)
    );
    return [...(usesF16 ? ["enable f16;"] : []), ...(struct ? [struct] : []), ...lines].join("\n");
  }

  function uniforms(values: ParamValues<P>): Uint32Array {
    if (fields.length === 0) throw new Error(`kernel "${kernel}" has no uniform parameters`);
    const given = values as Readonly<Record<string, number | ArrayLike<number>>>;
    for (const name of Object.keys(given)) {
      if (!(name in params)) throw new Error(`kernel "${kernel}": unknown uniform field "${name}"`);
    }
    const out = new Uint32Array(words);
    for (const f of fields) {
      const v = given[f.name];
      if (v === undefined) throw new Error(`kernel "${kernel}": uniform field "${f.name}" missing`);
      if (f.words === 1) {
        out[f.offset] = wordOf(kernel, f.name, f.scalar, v as number);
        continue;
      }
      const list = v as ArrayLike<number>;
      if (typeof list !== "object" || list.length > f.words) {
        throw new Error(`kernel "${kernel}": "${f.name}" must be a list of at most ${f.words}`);
      }
      // Trailing entries stay 0; a caller that needs another fill (shapes: 1) pads itself.
      for (let i = 0; i < list.length; i++) {
        out[f.offset + i] = wordOf(kernel, `${f.name}[${i}]`, f.scalar, list[i]!);
      }
    }
    return out;
  }

  return {
    name: kernel,
    spec,
    header,
    uniforms,
    key: (...parts) => [kernel, ...parts].join(":"),
  };
}
