import assert from "node:assert/strict";
import { CheckpointError } from "../mod.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  type HostTensor,
  loadSafetensors,
  saveSafetensors,
} from "../src/train/mod.ts";
import { appendJsonLine, atomicWriteFile } from "../src/util/fs.ts";
import { CHECKSUM_KEY, crc32 } from "../src/train/safetensors.ts";

function sample(): Map<string, HostTensor> {
  return new Map<string, HostTensor>([
    ["layers.0.w", {
      dtype: "f32",
      shape: [2, 3],
      data: new Float32Array([1, -2, 3.5, 0, 1e-8, -0]),
    }],
    ["layers.0.h", { dtype: "f16", shape: [3], data: new Float16Array([0.5, -65504, 1 / 3]) }],
    ["step", { dtype: "i32", shape: [], data: new Int32Array([-7]) }],
    ["ids", { dtype: "u32", shape: [2, 2], data: new Uint32Array([0, 1, 2 ** 32 - 1, 5]) }],
    ["empty", { dtype: "f32", shape: [0, 4], data: new Float32Array(0) }],
  ]);
}

/** Builds a file from a hand-written header, to exercise the reader's checks. */
function withHeader(header: unknown, dataBytes: number): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataBytes);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

Deno.test("safetensors: round trip keeps names, order, dtypes, shapes, bits and metadata", () => {
  const src = sample();
  const bytes = encodeSafetensors(src, { format: "pt", step: "12" });
  const headerLen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.equal((8 + headerLen) % 8, 0, "data section is 8-byte aligned");
  const back = decodeSafetensors(bytes);
  assert.deepEqual([...back.tensors.keys()], [...src.keys()]);
  for (const [name, t] of src) {
    const b = back.tensors.get(name)!;
    assert.equal(b.dtype, t.dtype, name);
    assert.deepEqual(b.shape, t.shape, name);
    assert.equal(b.data.constructor, t.data.constructor, name);
    assert.deepEqual(
      new Uint8Array(b.data.buffer, b.data.byteOffset, b.data.byteLength),
      new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength),
      name,
    );
  }
  assert.deepEqual(back.metadata, { format: "pt", step: "12" });
});

Deno.test("safetensors: header matches the reference layout", () => {
  const bytes = encodeSafetensors(
    new Map([["a", { dtype: "f32", shape: [2], data: new Float32Array([1, 2]) }]]),
    {},
    { checksums: false },
  );
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  assert.deepEqual(header, { a: { dtype: "F32", shape: [2], data_offsets: [0, 8] } });
  assert.equal(bytes.length, 8 + n + 8);
});

Deno.test("safetensors: per-tensor CRC-32 in the metadata, checked on read (issue 14)", () => {
  const tensors = new Map<string, HostTensor>([
    ["a", { dtype: "f32", shape: [4], data: new Float32Array([1, 2, 3, 4]) }],
    ["b", { dtype: "i32", shape: [2], data: new Int32Array([5, 6]) }],
  ]);
  const bytes = encodeSafetensors(tensors, { step: "3" });
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  // Stored as hex per tensor, the same value Python's zlib.crc32 gives for the tensor's bytes.
  const sums = JSON.parse(header.__metadata__[CHECKSUM_KEY]);
  assert.equal(
    sums.a,
    crc32(new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer)).toString(16).padStart(8, "0"),
  );
  // Callers see their own metadata only.
  assert.deepEqual(decodeSafetensors(bytes).metadata, { step: "3" });
  // One flipped bit in b's data: the error names b, not a.
  const bad = bytes.slice();
  bad[8 + n + 16 + 1] ^= 0x01;
  assert.throws(
    () => decodeSafetensors(bad, "x.safetensors"),
    (e: unknown) =>
      e instanceof CheckpointError && /x\.safetensors: tensor "b" fails its CRC-32/.test(e.message),
  );
  // A file without checksums (an older kit file, another writer) still loads.
  const old = encodeSafetensors(tensors, {}, { checksums: false });
  assert.deepEqual([...decodeSafetensors(old).tensors.get("b")!.data], [5, 6]);
});

Deno.test("safetensors: reads a file with a subarray view and unaligned offsets", () => {
  const inner = encodeSafetensors(
    new Map<string, HostTensor>([
      ["h", { dtype: "f16", shape: [1], data: new Float16Array([2]) }],
      ["w", { dtype: "f32", shape: [1], data: new Float32Array([3]) }],
    ]),
  );
  const padded = new Uint8Array(inner.length + 3);
  padded.set(inner, 3);
  const back = decodeSafetensors(padded.subarray(3));
  assert.equal(back.tensors.get("w")!.data[0], 3); // starts at data offset 2: not 4-aligned
});

Deno.test("safetensors: truncated files raise CheckpointError", () => {
  const bytes = encodeSafetensors(sample());
  for (const cut of [0, 5, 8, 20, bytes.length - 1]) {
    assert.throws(
      () => decodeSafetensors(bytes.subarray(0, cut), "ckpt.safetensors"),
      (e: unknown) =>
        e instanceof CheckpointError && /ckpt\.safetensors: .*truncated/.test(e.message),
      `cut at ${cut}`,
    );
  }
});

Deno.test("safetensors: corrupt headers raise CheckpointError naming the problem", () => {
  const cases: [Uint8Array, RegExp][] = [
    [
      (() => {
        const b = new Uint8Array(16);
        new DataView(b.buffer).setBigUint64(0, 2n ** 40n, true);
        return b;
      })(),
      /corrupt header length/,
    ],
    [
      (() => {
        const b = withHeader({}, 0);
        b[8] = 0x7b;
        b[9] = 0x22; // '{"' then garbage
        return b;
      })(),
      /corrupt header/,
    ],
    [withHeader([1, 2], 0), /not a JSON object/],
    [
      withHeader({ a: { dtype: "BF16", shape: [1], data_offsets: [0, 2] } }, 2),
      /unsupported dtype/,
    ],
    [withHeader({ a: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, 4), /bad shape/],
    [withHeader({ a: { dtype: "F32", shape: [2], data_offsets: [0, 4] } }, 4), /needs 8/],
    [withHeader({ a: { dtype: "F32", shape: [1], data_offsets: [4, 0] } }, 4), /bad data_offsets/],
    [withHeader({ a: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, 8), /starts at 4/],
    [
      withHeader({ a: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, 12),
      /cover 4 data bytes/,
    ],
    [withHeader({ __metadata__: { a: 1 } }, 0), /metadata "a" is not a string/],
  ];
  for (const [bytes, re] of cases) {
    assert.throws(
      () => decodeSafetensors(bytes),
      (e: unknown) => e instanceof CheckpointError && re.test(e.message),
      String(re),
    );
  }
});

Deno.test("safetensors: writer rejects data that disagrees with dtype or shape", () => {
  assert.throws(
    () =>
      encodeSafetensors(new Map([["a", { dtype: "f32", shape: [2], data: new Int32Array(2) }]])),
    CheckpointError,
  );
  assert.throws(
    () =>
      encodeSafetensors(new Map([["a", { dtype: "f32", shape: [3], data: new Float32Array(2) }]])),
    CheckpointError,
  );
});

Deno.test("safetensors: save is atomic and load names the path on corruption", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/ckpt.safetensors`;
    await saveSafetensors(path, sample(), { step: "1" });
    await saveSafetensors(path, sample(), { step: "2" });
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name),
      ["ckpt.safetensors"],
      "no temp files left",
    );
    assert.equal((await loadSafetensors(path)).metadata.step, "2");
    const bytes = await Deno.readFile(path);
    await Deno.writeFile(path, bytes.subarray(0, bytes.length - 3));
    await assert.rejects(
      loadSafetensors(path),
      (e: unknown) => e instanceof CheckpointError && e.message.includes(path),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fs: atomicWriteFile replaces content; a failed write leaves the old file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/a.json`;
    await atomicWriteFile(path, "old");
    await atomicWriteFile(path, new TextEncoder().encode("new"));
    assert.equal(await Deno.readTextFile(path), "new");
    await assert.rejects(atomicWriteFile(`${dir}/missing/b.json`, "x"), Deno.errors.NotFound);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["a.json"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("fs: appendJsonLine writes whole lines, concurrently too", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/log.jsonl`;
    await Promise.all(
      Array.from(
        { length: 50 },
        (_, i) => appendJsonLine(path, { i, pad: "x".repeat(100 * (i % 7)) }),
      ),
    );
    const lines = (await Deno.readTextFile(path)).split("\n");
    assert.equal(lines.pop(), "", "ends with a newline");
    assert.deepEqual(lines.map((l) => JSON.parse(l).i).sort((a, b) => a - b), [
      ...Array(50).keys(),
    ]);
    await assert.rejects(appendJsonLine(path, undefined), /not JSON-serialisable/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
