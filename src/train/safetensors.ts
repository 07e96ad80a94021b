/**
 * The safetensors checkpoint format (huggingface/safetensors), host side.
 *
 * Layout: an 8-byte little-endian header length `n`, `n` bytes of JSON
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__": { key: string } }`, then
 * the raw little-endian tensor bytes, offsets relative to the end of the header. The header is
 * padded with spaces so the data starts 8-byte aligned, as the reference writer does.
 *
 * Tensors are exchanged as a `Map` of host typed arrays using the kit's dtypes (`f32`, `f16`,
 * `i32`, `u32`), so a trainer can write `{ dtype: t.dtype, shape: t.shape, data: await t.data() }`.
 *
 * Integrity: the writer stores a CRC-32 of every tensor's bytes in the metadata key
 * {@link CHECKSUM_KEY} (a JSON map name → 8 hex digits); the reader verifies them and names the
 * first tensor that does not match. Files without that key (older kit files, other writers) load
 * unverified. Other readers ignore the extra metadata key.
 *
 * @module
 */
import { bytesPerElement, type DType, dtypeOfArray, typedView } from "../core/dtype.ts";
import { CheckpointError } from "../core/errors.ts";
import { atomicWriteFile } from "../util/fs.ts";

/** One tensor on the host, as stored in a safetensors file. */
export interface HostTensor {
  /** Element type. */
  dtype: DType;
  /** Dimensions; `[]` is a scalar. */
  shape: number[];
  /** Row-major elements; its typed array class must match `dtype`. */
  data: Float32Array | Float16Array | Int32Array | Uint32Array;
}

/** Named tensors plus the free-form string metadata of a safetensors file. */
export interface Safetensors {
  /** Tensors by name, in file order. */
  tensors: Map<string, HostTensor>;
  /** The `__metadata__` string map (empty when absent). */
  metadata: Record<string, string>;
}

const TO_FILE: Record<DType, string> = { f32: "F32", f16: "F16", i32: "I32", u32: "U32" };
const FROM_FILE: Record<string, DType> = { F32: "f32", F16: "f16", I32: "i32", U32: "u32" };
/** The reference implementation's cap; a larger value means a corrupt length field. */
const MAX_HEADER = 100_000_000;
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The `__metadata__` key holding the per-tensor CRC-32 checksums (JSON: name → hex). */
export const CHECKSUM_KEY = "qsparse.crc32";

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/**
 * CRC-32 (IEEE 802.3, the polynomial of zlib and PNG) of some bytes.
 *
 * @param bytes The bytes.
 * @returns The checksum as an unsigned 32-bit integer.
 *
 * @example
 * ```ts
 * import { crc32 } from "./safetensors.ts";
 * import assert from "node:assert/strict";
 * // The standard check value: CRC-32 of the ASCII digits 1..9 (matches Python's zlib.crc32).
 * assert.equal(crc32(new TextEncoder().encode("123456789")), 0xcbf43926);
 * ```
 */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function hex32(x: number): string {
  return x.toString(16).padStart(8, "0");
}

function bytesOf(t: HostTensor): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/**
 * Serialises tensors (and optional string metadata) to safetensors bytes.
 *
 * @param tensors Tensors by name; names must not be `__metadata__`.
 * @param metadata Free-form string map stored under `__metadata__`.
 * @param options `checksums: false` leaves out the per-tensor CRC-32s (default: stored).
 * @returns The file bytes.
 * @throws {CheckpointError} When a tensor's data does not match its dtype or shape.
 *
 * @example Round trip in memory
 * ```ts
 * import { decodeSafetensors, encodeSafetensors } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const bytes = encodeSafetensors(
 *   new Map([["w", { dtype: "f32", shape: [2], data: new Float32Array([1, 2]) }]]),
 *   { step: "10" },
 * );
 * const back = decodeSafetensors(bytes);
 * assert.deepEqual([...back.tensors.get("w")!.data], [1, 2]);
 * assert.equal(back.metadata.step, "10");
 * ```
 */
export function encodeSafetensors(
  tensors: ReadonlyMap<string, HostTensor>,
  metadata: Readonly<Record<string, string>> = {},
  options: { checksums?: boolean } = {},
): Uint8Array {
  if (!LITTLE_ENDIAN) throw new CheckpointError("safetensors", "big-endian hosts are unsupported");
  const header: Record<string, unknown> = {};
  const meta: Record<string, string> = { ...metadata };
  if (options.checksums ?? true) {
    const sums: Record<string, string> = {};
    for (const [name, t] of tensors) {
      if (t.data?.buffer) sums[name] = hex32(crc32(bytesOf(t)));
    }
    meta[CHECKSUM_KEY] = JSON.stringify(sums);
  }
  if (Object.keys(meta).length > 0) {
    for (const [k, v] of Object.entries(meta)) {
      if (typeof v !== "string") {
        throw new CheckpointError("safetensors", `metadata "${k}" must be a string`);
      }
    }
    header.__metadata__ = meta;
  }
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === "__metadata__") {
      throw new CheckpointError("safetensors", `"__metadata__" is reserved as a tensor name`);
    }
    if (dtypeOfArray(t.data) !== t.dtype) {
      throw new CheckpointError(
        "safetensors",
        `tensor "${name}": data is ${t.data.constructor.name}, dtype says ${t.dtype}`,
      );
    }
    if (numel(t.shape) !== t.data.length) {
      throw new CheckpointError(
        "safetensors",
        `tensor "${name}": shape [${t.shape.join(", ")}] holds ${numel(t.shape)} elements, ` +
          `data has ${t.data.length}`,
      );
    }
    const end = offset + t.data.byteLength;
    header[name] = { dtype: TO_FILE[t.dtype], shape: t.shape, data_offsets: [offset, end] };
    offset = end;
  }
  let json = JSON.stringify(header);
  const jsonLen = new TextEncoder().encode(json).length;
  json += " ".repeat((8 - ((8 + jsonLen) % 8)) % 8);
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.length;
  for (const t of tensors.values()) {
    out.set(bytesOf(t), pos);
    pos += t.data.byteLength;
  }
  return out;
}

/**
 * Parses safetensors bytes, checking every offset against the buffer.
 *
 * @param bytes The whole file.
 * @param source A name for error messages (e.g. the path).
 * @returns The tensors (each copied into its own aligned buffer) and the metadata.
 * @throws {CheckpointError} On a truncated file, a corrupt header, overlapping or out-of-range
 *   offsets, a dtype other than F32/F16/I32/U32, or a tensor whose bytes fail its stored
 *   checksum (the message names the tensor).
 *
 * @example A truncated file is reported, not misread
 * ```ts
 * import { CheckpointError } from "@qsparse/kit";
 * import { decodeSafetensors, encodeSafetensors } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const ok = encodeSafetensors(new Map([["b", { dtype: "i32", shape: [3], data: new Int32Array(3) }]]));
 * assert.throws(() => decodeSafetensors(ok.subarray(0, ok.length - 1)), CheckpointError);
 * // A flipped data byte fails the tensor's checksum.
 * const bad = ok.slice();
 * bad[bad.length - 1] ^= 0xff;
 * assert.throws(() => decodeSafetensors(bad), /tensor "b" fails its CRC-32/);
 * ```
 */
export function decodeSafetensors(bytes: Uint8Array, source = "<bytes>"): Safetensors {
  const fail = (why: string): CheckpointError =>
    new CheckpointError("safetensors", `${source}: ${why}`);
  if (!LITTLE_ENDIAN) throw fail("big-endian hosts are unsupported");
  if (bytes.length < 8) throw fail(`truncated: ${bytes.length} bytes, no header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER)) throw fail(`corrupt header length ${n}`);
  const headerLen = Number(n);
  if (8 + headerLen > bytes.length) {
    throw fail(`truncated: header needs ${headerLen} bytes, file has ${bytes.length - 8} after 8`);
  }
  let header: unknown;
  try {
    header = JSON.parse(
      new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + headerLen)),
    );
  } catch (e) {
    throw fail(`corrupt header: ${(e as Error).message}`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw fail("corrupt header: not a JSON object");
  }
  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  const metadata: Record<string, string> = {};
  const entries: [string, DType, number[], number, number][] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
        throw fail("corrupt header: __metadata__ is not an object");
      }
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== "string") throw fail(`corrupt header: metadata "${k}" is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (e === null || typeof e !== "object") throw fail(`tensor "${name}": entry is not an object`);
    const dtype = typeof e.dtype === "string" ? FROM_FILE[e.dtype] : undefined;
    if (!dtype) throw fail(`tensor "${name}": unsupported dtype ${JSON.stringify(e.dtype)}`);
    const shape = e.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw fail(`tensor "${name}": bad shape ${JSON.stringify(shape)}`);
    }
    const off = e.data_offsets;
    if (
      !Array.isArray(off) || off.length !== 2 || !off.every((o) =>
        Number.isSafeInteger(o) && o >= 0
      ) ||
      off[1] < off[0]
    ) {
      throw fail(`tensor "${name}": bad data_offsets ${JSON.stringify(off)}`);
    }
    const [begin, end] = off as [number, number];
    const want = numel(shape) * bytesPerElement(dtype);
    if (end - begin !== want) {
      throw fail(
        `tensor "${name}": data_offsets span ${end - begin} bytes, ${dtype}[${
          shape.join(", ")
        }] needs ${want}`,
      );
    }
    if (end > dataLen) {
      throw fail(`truncated: tensor "${name}" ends at byte ${end}, data section has ${dataLen}`);
    }
    entries.push([name, dtype, shape as number[], begin, end]);
  }
  // The reference reader requires the tensors to tile the data section exactly; a gap or an
  // overlap means the header and the data disagree.
  const sorted = [...entries].sort((a, b) => a[3] - b[3]);
  let cursor = 0;
  for (const [name, , , begin, end] of sorted) {
    if (begin !== cursor) {
      throw fail(`corrupt header: tensor "${name}" starts at ${begin}, expected ${cursor}`);
    }
    cursor = end;
  }
  if (cursor !== dataLen) {
    throw fail(`corrupt: tensors cover ${cursor} data bytes, file has ${dataLen}`);
  }
  let sums: Record<string, unknown> | null = null;
  if (metadata[CHECKSUM_KEY] !== undefined) {
    try {
      sums = JSON.parse(metadata[CHECKSUM_KEY]);
    } catch (e) {
      throw fail(`corrupt checksum metadata: ${(e as Error).message}`);
    }
    if (sums === null || typeof sums !== "object" || Array.isArray(sums)) {
      throw fail("corrupt checksum metadata: not a JSON object");
    }
    // The checksums belong to the format, not to the caller's metadata (round trips stay equal).
    delete metadata[CHECKSUM_KEY];
  }
  const tensors = new Map<string, HostTensor>();
  for (const [name, dtype, shape, begin, end] of entries) {
    if (sums) {
      const want = sums[name];
      if (typeof want !== "string") throw fail(`tensor "${name}" has no stored checksum`);
      const got = hex32(crc32(bytes.subarray(dataStart + begin, dataStart + end)));
      if (got !== want) {
        throw fail(
          `tensor "${name}" fails its CRC-32 (stored ${want}, computed ${got}): the file is corrupt`,
        );
      }
    }
    // slice() copies into a fresh ArrayBuffer, so the view is aligned whatever the file offset.
    const buf = bytes.buffer.slice(
      bytes.byteOffset + dataStart + begin,
      bytes.byteOffset + dataStart + end,
    );
    tensors.set(name, { dtype, shape, data: typedView(dtype, buf as ArrayBuffer) });
  }
  return { tensors, metadata };
}

/**
 * Writes a safetensors file atomically (temporary file, fsync, rename).
 *
 * @param path Destination path.
 * @param tensors Tensors by name.
 * @param metadata String metadata (config, step, code version, ...).
 * @param options `checksums: false` leaves out the per-tensor CRC-32s (default: stored).
 *
 * @example Save and load a checkpoint
 * ```ts
 * import { loadSafetensors, saveSafetensors } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * const w = { dtype: "f32" as const, shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) };
 * await saveSafetensors(`${dir}/ckpt.safetensors`, new Map([["w", w]]), { step: "100" });
 * const { tensors, metadata } = await loadSafetensors(`${dir}/ckpt.safetensors`);
 * assert.deepEqual(tensors.get("w")!.shape, [2, 2]);
 * assert.equal(metadata.step, "100");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function saveSafetensors(
  path: string,
  tensors: ReadonlyMap<string, HostTensor>,
  metadata: Readonly<Record<string, string>> = {},
  options: { checksums?: boolean } = {},
): Promise<void> {
  await atomicWriteFile(path, encodeSafetensors(tensors, metadata, options));
}

/**
 * Reads a safetensors file.
 *
 * @param path The file.
 * @returns Its tensors and metadata.
 * @throws {CheckpointError} When the file is missing, a directory, truncated or corrupt (the
 *   message names the path).
 *
 * @example
 * ```ts ignore
 * import { loadSafetensors } from "@qsparse/kit/train";
 * const { tensors } = await loadSafetensors("results/run1/ckpt.safetensors");
 * for (const [name, t] of tensors) console.log(name, t.dtype, t.shape);
 * ```
 */
export async function loadSafetensors(path: string): Promise<Safetensors> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new CheckpointError("safetensors", `${path}: no such file`);
    }
    if (e instanceof Deno.errors.IsADirectory) {
      throw new CheckpointError("safetensors", `${path} is a directory, not a safetensors file`);
    }
    throw e;
  }
  return decodeSafetensors(bytes, path);
}
