/**
 * Crash-safe file writes for checkpoints, results and run logs.
 *
 * A sweep or a training run can be killed at any moment (OOM, a lost device, Ctrl-C). A reader
 * must then see either the old file or the new one, never half of each, and a log must never hold
 * a torn line in the middle.
 *
 * @module
 */
import { dirname } from "node:path";
import { ValueError } from "../core/errors.ts";

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await file.write(bytes.subarray(off));
}

/** Makes a rename durable; some platforms (Windows) cannot open a directory, which is fine. */
async function syncDir(dir: string): Promise<void> {
  let d: Deno.FsFile | undefined;
  try {
    d = await Deno.open(dir, { read: true });
    await d.sync();
  } catch {
    // Durability of the rename is best effort; atomicity does not depend on it.
  } finally {
    d?.close();
  }
}

/**
 * Writes `data` to `path` atomically: the bytes go to a temporary file in the same directory,
 * which is fsynced and then renamed over `path`. Readers see the old content or the new one.
 *
 * @param path Destination file. Its directory must exist.
 * @param data Bytes, or a string written as UTF-8.
 *
 * @example Write, then read back
 * ```ts
 * import { atomicWriteFile } from "./fs.ts";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await atomicWriteFile(`${dir}/config.json`, JSON.stringify({ seed: 1 }));
 * assert.equal(await Deno.readTextFile(`${dir}/config.json`), '{"seed":1}');
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function atomicWriteFile(path: string, data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  // Same directory as the target: rename(2) is only atomic within one filesystem.
  const tmp = `${path}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  try {
    try {
      await writeAll(file, bytes);
      await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  await syncDir(dirname(path));
}

/**
 * Appends `obj` as one JSON line to `path` (created if missing), then fsyncs.
 *
 * The line is encoded first and handed to the OS in one append, so concurrent appenders on a
 * local filesystem do not interleave bytes, and a crash leaves at most a missing last line.
 * Readers should still skip a final line that does not parse.
 *
 * @param path The JSONL file.
 * @param obj Any JSON-serialisable value.
 *
 * @example Two records, two lines
 * ```ts
 * import { appendJsonLine } from "./fs.ts";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * await appendJsonLine(`${dir}/log.jsonl`, { step: 1, loss: 3.2 });
 * await appendJsonLine(`${dir}/log.jsonl`, { step: 2, loss: 3.1 });
 * const lines = (await Deno.readTextFile(`${dir}/log.jsonl`)).trim().split("\n");
 * assert.deepEqual(lines.map((l) => JSON.parse(l).step), [1, 2]);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function appendJsonLine(path: string, obj: unknown): Promise<void> {
  const json = JSON.stringify(obj);
  if (json === undefined) {
    throw new ValueError("appendJsonLine", `value is not JSON-serialisable (${typeof obj})`);
  }
  const bytes = new TextEncoder().encode(json + "\n");
  const file = await Deno.open(path, { append: true, create: true });
  try {
    await writeAll(file, bytes);
    await file.sync();
  } finally {
    file.close();
  }
}
