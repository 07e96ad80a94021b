/**
 * BitNet b1.58 integer quantization: int8 absmax codes per row, ternary absmean codes per tensor
 * packed 16 to a u32, their dequantization, and the int8 × ternary product.
 *
 * Conventions match the fake-quant kernels (`quant_ste.ts`) so `dequantize(quantize(x))` equals
 * the fake-quantized value bit for bit:
 * - activations: `s = 127 / (max|x| + ε)`, `q = clamp(round(x·s), −128, 127)`, `x ≈ q / s`;
 * - weights: `α = mean|w| + ε`, `t = clamp(round(w / α), −1, 1)`, `w ≈ t·α`.
 * `round` is half-to-even on both backends.
 *
 * Ternary packing: weights `[D_in, D_out]` become u32 `[D_in, ⌈D_out/16⌉]`; column c of a row is
 * bits `2(c mod 16)..+1` of word `c / 16`, holding `t + 1` ∈ {0, 1, 2} (padding holds 1, i.e. 0).
 *
 * The int8 × ternary kernel is the sparse rows kernel of `spmm.ts` with integer arithmetic: an
 * invocation owns the 16 columns of one packed word, so each kept entry costs one 4-byte weight
 * load (16× less weight traffic than f32) and 16 exact i32 multiply-adds; the row is scaled once at
 * the end, `y = acc / s · α`.
 *
 * @module
 */
import type { Dispatch, Storage } from "../src/backend/backend.ts";
import { gridStride, WG } from "./common.ts";
import { roundHalfEven } from "./quant_ste.ts";
import {
  dequantRowsNative,
  packTernaryNative,
  quantKeptNative,
  quantRowsNative,
  ternaryMatmulNative,
  unpackTernaryNative,
} from "./native/quant.ts";
import { defineKernel } from "./spec.ts";

const f = Math.fround;

const QUANT_ROWS = defineKernel({
  name: "quantRows",
  bindings: [
    { name: "x", type: "f32", access: "read" },
    { name: "codes", type: "i32", access: "read_write" },
    { name: "scale", type: "f32", access: "read_write" },
  ],
  params: { rows: "u32", cols: "u32", eps: "f32" },
});

/** WGSL: per-row int8 codes and multiplier, one invocation per row. */
export function quantRowsWgsl(): string {
  return `${QUANT_ROWS.header()}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * 64u;
  for (var r = gid.x; r < p.rows; r = r + stride) {
    let base = r * p.cols;
    var m = 0.0;
    for (var j = 0u; j < p.cols; j = j + 1u) { m = max(m, abs(x[base + j])); }
    let s = 127.0 / (m + p.eps);
    scale[r] = s;
    for (var j = 0u; j < p.cols; j = j + 1u) {
      codes[base + j] = i32(clamp(round(x[base + j] * s), -128.0, 127.0));
    }
  }
}`;
}

/** CPU twin of {@link quantRowsWgsl}. */
export function quantRowsCpu(rows: number, cols: number, eps: number, bufs: ArrayBuffer[]): void {
  const x = new Float32Array(bufs[0]!),
    q = new Int32Array(bufs[1]!),
    sc = new Float32Array(bufs[2]!);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let m = 0;
    for (let j = 0; j < cols; j++) m = Math.max(m, Math.abs(x[base + j]!));
    const s = f(127 / f(m + f(eps)));
    sc[r] = s;
    for (let j = 0; j < cols; j++) {
      q[base + j] = Math.min(127, Math.max(-128, roundHalfEven(f(x[base + j]! * s))));
    }
  }
}

/** Dispatch quantizing `rows` rows of `cols`. Buffers: x (f32), codes (i32), scale (f32 `[rows]`). */
export function quantRowsDispatch(
  rows: number,
  cols: number,
  eps: number,
  buffers: Storage[],
): Dispatch {
  return {
    op: "quantizeActivations",
    key: QUANT_ROWS.key(),
    wgsl: quantRowsWgsl,
    cpu: (bufs) => quantRowsCpu(rows, cols, eps, bufs),
    native: (bufs, rt) => quantRowsNative(rows, cols, eps, bufs, rt),
    buffers,
    uniforms: QUANT_ROWS.uniforms({ rows, cols, eps }),
    workgroups: gridStride(rows, 64),
  };
}

const QUANT_KEPT = defineKernel({
  name: "quantKept",
  bindings: [
    { name: "x", type: "f32", access: "read" },
    { name: "vals", type: "f32", access: "read" },
    { name: "codes", type: "i32", access: "read_write" },
    { name: "scale", type: "f32", access: "read_write" },
  ],
  params: { rows: "u32", d: "u32", k: "u32", eps: "f32" },
});

/**
 * WGSL: int8 codes of the kept values of fixed-K rows, with the multiplier of the *full* row (so
 * this is quantize-then-mask). Buffers: x `[rows, D]`, vals `[rows, K]`, codes, scale.
 */
export function quantKeptWgsl(): string {
  return `${QUANT_KEPT.header()}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * 64u;
  for (var r = gid.x; r < p.rows; r = r + stride) {
    var m = 0.0;
    for (var j = 0u; j < p.d; j = j + 1u) { m = max(m, abs(x[r * p.d + j])); }
    let s = 127.0 / (m + p.eps);
    scale[r] = s;
    for (var t = 0u; t < p.k; t = t + 1u) {
      codes[r * p.k + t] = i32(clamp(round(vals[r * p.k + t] * s), -128.0, 127.0));
    }
  }
}`;
}

/** CPU twin of {@link quantKeptWgsl}. */
export function quantKeptCpu(
  rows: number,
  d: number,
  k: number,
  eps: number,
  bufs: ArrayBuffer[],
): void {
  const x = new Float32Array(bufs[0]!), v = new Float32Array(bufs[1]!);
  const q = new Int32Array(bufs[2]!), sc = new Float32Array(bufs[3]!);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let j = 0; j < d; j++) m = Math.max(m, Math.abs(x[r * d + j]!));
    const s = f(127 / f(m + f(eps)));
    sc[r] = s;
    for (let t = 0; t < k; t++) {
      q[r * k + t] = Math.min(127, Math.max(-128, roundHalfEven(f(v[r * k + t]! * s))));
    }
  }
}

/** Dispatch of {@link quantKeptWgsl}. */
export function quantKeptDispatch(
  rows: number,
  d: number,
  k: number,
  eps: number,
  buffers: Storage[],
): Dispatch {
  return {
    op: "topkQuantized",
    key: QUANT_KEPT.key(),
    wgsl: quantKeptWgsl,
    cpu: (bufs) => quantKeptCpu(rows, d, k, eps, bufs),
    native: (bufs, rt) => quantKeptNative(rows, d, k, eps, bufs, rt),
    buffers,
    uniforms: QUANT_KEPT.uniforms({ rows, d, k, eps }),
    workgroups: gridStride(rows, 64),
  };
}

const PACK_TERNARY = defineKernel({
  name: "packTernary",
  bindings: [
    { name: "w", type: "f32", access: "read" },
    { name: "meanAbs", type: "f32", access: "read" },
    { name: "packed", type: "u32", access: "read_write" },
    { name: "alpha", type: "f32", access: "read_write" },
  ],
  params: { rows: "u32", cols: "u32", words: "u32", eps: "f32" },
});

/** WGSL: packs ternary codes of `w` `[rows, cols]` given `alpha[0] = mean|w|`; one word per invocation. */
export function packTernaryWgsl(): string {
  return `${PACK_TERNARY.header()}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  let a = meanAbs[0] + p.eps;
  if (gid.x == 0u) { alpha[0] = a; }
  let total = p.rows * p.words;
  for (var i = gid.x; i < total; i = i + stride) {
    let r = i / p.words;
    let c0 = (i - r * p.words) * 16u;
    var word = 0u;
    for (var c = 0u; c < 16u; c = c + 1u) {
      var code = 1u;
      if (c0 + c < p.cols) { code = u32(i32(clamp(round(w[r * p.cols + c0 + c] / a), -1.0, 1.0)) + 1); }
      word = word | (code << (2u * c));
    }
    packed[i] = word;
  }
}`;
}

/** CPU twin of {@link packTernaryWgsl}. */
export function packTernaryCpu(rows: number, cols: number, eps: number, bufs: ArrayBuffer[]): void {
  const w = new Float32Array(bufs[0]!), mean = new Float32Array(bufs[1]!)[0]!;
  const packed = new Uint32Array(bufs[2]!), alpha = new Float32Array(bufs[3]!);
  const words = Math.ceil(cols / 16);
  const a = f(mean + f(eps));
  alpha[0] = a;
  for (let r = 0; r < rows; r++) {
    for (let wi = 0; wi < words; wi++) {
      let word = 0;
      for (let c = 0; c < 16; c++) {
        const col = wi * 16 + c;
        const code = col < cols
          ? Math.min(1, Math.max(-1, roundHalfEven(f(w[r * cols + col]! / a)))) + 1
          : 1;
        word |= code << (2 * c);
      }
      packed[r * words + wi] = word >>> 0;
    }
  }
}

/** Dispatch packing `[rows, cols]` weights. Buffers: w, meanAbs (`[1]`), packed, alpha (`[1]`). */
export function packTernaryDispatch(
  rows: number,
  cols: number,
  eps: number,
  buffers: Storage[],
): Dispatch {
  const words = Math.ceil(cols / 16);
  return {
    op: "quantizeWeights",
    key: PACK_TERNARY.key(),
    wgsl: packTernaryWgsl,
    cpu: (bufs) => packTernaryCpu(rows, cols, eps, bufs),
    native: (bufs, rt) => packTernaryNative(rows, cols, eps, bufs, rt),
    buffers,
    uniforms: PACK_TERNARY.uniforms({ rows, cols, words, eps }),
    workgroups: gridStride(rows * words),
  };
}

const UNPACK_TERNARY = defineKernel({
  name: "unpackTernary",
  bindings: [
    { name: "packed", type: "u32", access: "read" },
    { name: "alpha", type: "f32", access: "read" },
    { name: "w", type: "f32", access: "read_write" },
  ],
  params: { rows: "u32", cols: "u32", words: "u32" },
});

/** WGSL: `w = t·α` from packed codes, one element per invocation. */
export function unpackTernaryWgsl(): string {
  return `${UNPACK_TERNARY.header()}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  let a = alpha[0];
  for (var i = gid.x; i < p.rows * p.cols; i = i + stride) {
    let r = i / p.cols;
    let c = i - r * p.cols;
    let code = (packed[r * p.words + c / 16u] >> (2u * (c % 16u))) & 3u;
    w[i] = f32(i32(code) - 1) * a;
  }
}`;
}

/** CPU twin of {@link unpackTernaryWgsl}. */
export function unpackTernaryCpu(rows: number, cols: number, bufs: ArrayBuffer[]): void {
  const packed = new Uint32Array(bufs[0]!),
    a = new Float32Array(bufs[1]!)[0]!,
    w = new Float32Array(bufs[2]!);
  const words = Math.ceil(cols / 16);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const code = (packed[r * words + (c >> 4)]! >>> (2 * (c & 15))) & 3;
      w[r * cols + c] = f((code - 1) * a);
    }
  }
}

/** Dispatch unpacking `[rows, cols]` ternary weights. Buffers: packed, alpha, w. */
export function unpackTernaryDispatch(rows: number, cols: number, buffers: Storage[]): Dispatch {
  return {
    op: "dequantizeWeights",
    key: UNPACK_TERNARY.key(),
    wgsl: unpackTernaryWgsl,
    cpu: (bufs) => unpackTernaryCpu(rows, cols, bufs),
    native: (bufs, rt) => unpackTernaryNative(rows, cols, bufs, rt),
    buffers,
    uniforms: UNPACK_TERNARY.uniforms({ rows, cols, words: Math.ceil(cols / 16) }),
    workgroups: gridStride(rows * cols),
  };
}

const DEQUANT_ROWS = defineKernel({
  name: "dequantRows",
  bindings: [
    { name: "codes", type: "i32", access: "read" },
    { name: "scale", type: "f32", access: "read" },
    { name: "x", type: "f32", access: "read_write" },
  ],
  params: { n: "u32", cols: "u32" },
});

/** WGSL: `x = q / s` per row. Buffers: codes, scale `[rows]`, x. */
export function dequantRowsWgsl(): string {
  return `${DEQUANT_ROWS.header()}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let stride = nwg.x * ${WG}u;
  for (var i = gid.x; i < p.n; i = i + stride) { x[i] = f32(codes[i]) / scale[i / p.cols]; }
}`;
}

/** CPU twin of {@link dequantRowsWgsl}. */
export function dequantRowsCpu(n: number, cols: number, bufs: ArrayBuffer[]): void {
  const q = new Int32Array(bufs[0]!),
    s = new Float32Array(bufs[1]!),
    x = new Float32Array(bufs[2]!);
  for (let i = 0; i < n; i++) x[i] = f(q[i]! / s[Math.floor(i / cols)]!);
}

/** Dispatch dequantizing `n` codes in rows of `cols`. */
export function dequantRowsDispatch(n: number, cols: number, buffers: Storage[]): Dispatch {
  return {
    op: "dequantizeActivations",
    key: DEQUANT_ROWS.key(),
    wgsl: dequantRowsWgsl,
    cpu: (bufs) => dequantRowsCpu(n, cols, bufs),
    native: (bufs, rt) => dequantRowsNative(n, cols, bufs, rt),
    buffers,
    uniforms: DEQUANT_ROWS.uniforms({ n, cols }),
    workgroups: gridStride(n),
  };
}

const TQ_WG = 32;
const TQ_R = 4;

const TERNARY_MATMUL = defineKernel({
  name: "ternaryMatmul",
  bindings: [
    { name: "codes", type: "i32", access: "read" },
    { name: "idxs", type: "u32", access: "read", optional: true },
    { name: "packed", type: "u32", access: "read" },
    { name: "scale", type: "f32", access: "read" },
    { name: "alpha", type: "f32", access: "read" },
    { name: "Y", type: "f32", access: "read_write" },
  ],
  params: {
    rows: "u32",
    dIn: "u32",
    dOut: "u32",
    k: "u32",
    words: "u32",
    groupsX: "u32",
    perX: "u32",
  },
});

/**
 * WGSL of the int8 × ternary product. `dense`: row r's entries are all D_in codes (`[r·D_in, …)`,
 * column = position); otherwise fixed-K sparse rows with u32 column indices. Buffers: codes,
 * idxs (sparse only), packed, scale `[rows]`, alpha `[1]`, Y.
 */
export function ternaryMatmulWgsl(dense: boolean): string {
  return `${TERNARY_MATMUL.header({ omit: dense ? ["idxs"] : [] })}
const SH0 = vec4u(0u, 2u, 4u, 6u);
fn trits(word: u32, g: u32) -> vec4i {
  return vec4i((vec4u(word >> (8u * g)) >> SH0) & vec4u(3u)) - vec4i(1);
}
@compute @workgroup_size(${TQ_WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let j = (wid.x % p.groupsX) * ${TQ_WG}u + lid;
  let r0 = (wid.x / p.groupsX + wid.y * p.perX) * ${TQ_R}u;
  if (j >= p.words || r0 >= p.rows) { return; }
  let a = alpha[0];
  for (var row = r0; row < min(r0 + ${TQ_R}u, p.rows); row = row + 1u) {
    let lo = row * p.k;
    let hi = lo + p.k;
    var a0 = vec4i(0);
    var a1 = vec4i(0);
    var a2 = vec4i(0);
    var a3 = vec4i(0);
    for (var t = lo; t < hi; t = t + 1u) {
      let q = vec4i(codes[t]);
      let word = packed[${dense ? "(t - lo)" : "idxs[t]"} * p.words + j];
      a0 = a0 + q * trits(word, 0u);
      a1 = a1 + q * trits(word, 1u);
      a2 = a2 + q * trits(word, 2u);
      a3 = a3 + q * trits(word, 3u);
    }
    let s = scale[row];
    let o = row * p.dOut + j * 16u;
    var accs = array<vec4i, 4>(a0, a1, a2, a3);
    for (var c = 0u; c < 16u; c = c + 1u) {
      if (j * 16u + c < p.dOut) { Y[o + c] = f32(accs[c / 4u][c % 4u]) / s * a; }
    }
  }
}`;
}

/** CPU twin of {@link ternaryMatmulWgsl}: exact integer sums, then `acc / s · α` in f32. */
export function ternaryMatmulCpu(
  rows: number,
  dIn: number,
  dOut: number,
  k: number,
  dense: boolean,
  bufs: ArrayBuffer[],
): void {
  const [codesB, idxB, packedB, scaleB, alphaB, yB] = dense
    ? [bufs[0], null, ...bufs.slice(1)]
    : bufs;
  const q = new Int32Array(codesB!), idx = idxB ? new Uint32Array(idxB) : null;
  const packed = new Uint32Array(packedB!),
    s = new Float32Array(scaleB!),
    a = new Float32Array(alphaB!)[0]!;
  const y = new Float32Array(yB!);
  const words = Math.ceil(dOut / 16);
  const acc = new Int32Array(dOut);
  for (let r = 0; r < rows; r++) {
    acc.fill(0);
    for (let t = r * k; t < (r + 1) * k; t++) {
      const u = idx ? idx[t]! : t - r * k;
      const qv = q[t]!;
      for (let c = 0; c < dOut; c++) {
        acc[c] += qv * (((packed[u * words + (c >> 4)]! >>> (2 * (c & 15))) & 3) - 1);
      }
    }
    for (let c = 0; c < dOut; c++) y[r * dOut + c] = f(f(acc[c]! / s[r]!) * a);
  }
  void dIn;
}

/**
 * Dispatch of `Y = (codes ⊙ mask) · T · α / s` (see {@link ternaryMatmulWgsl} for buffers).
 * `k` is entries per row (D_in when `dense`).
 */
export function ternaryMatmulDispatch(
  rows: number,
  dIn: number,
  dOut: number,
  k: number,
  dense: boolean,
  buffers: Storage[],
): Dispatch {
  const words = Math.ceil(dOut / 16);
  const groupsX = Math.ceil(words / TQ_WG);
  const tiles = Math.ceil(rows / TQ_R);
  const perX = Math.max(1, Math.min(tiles, Math.floor(65535 / groupsX)));
  return {
    op: "spmmTernary",
    key: TERNARY_MATMUL.key(dense ? "dense" : "sparse"),
    wgsl: () => ternaryMatmulWgsl(dense),
    cpu: (bufs) => ternaryMatmulCpu(rows, dIn, dOut, k, dense, bufs),
    native: (bufs, rt) => ternaryMatmulNative(rows, dIn, dOut, k, dense, bufs, rt),
    buffers,
    uniforms: TERNARY_MATMUL.uniforms({ rows, dIn, dOut, k, words, groupsX, perX }),
    workgroups: [perX * groupsX, Math.ceil(tiles / perX), 1],
  };
}
