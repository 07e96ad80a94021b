/**
 * Provenance helpers: the code version a result was produced with.
 *
 * @module
 */

/**
 * The git revision of the working tree (`abc1234`, with `-dirty` when tracked files changed),
 * or `"unknown"` outside a git checkout or without permission to run git.
 *
 * @returns The version string.
 *
 * @example
 * ```ts
 * import { codeVersion } from "./version.ts";
 * import assert from "node:assert/strict";
 * assert.equal(typeof await codeVersion(), "string");
 * ```
 */
export async function codeVersion(): Promise<string> {
  try {
    const git = (args: string[]) =>
      new Deno.Command("git", { args, stdout: "piped", stderr: "null" }).output();
    const head = await git(["rev-parse", "--short", "HEAD"]);
    if (!head.success) return "unknown";
    const dirty = (await git(["status", "--porcelain", "--untracked-files=no"])).stdout.length > 0;
    return new TextDecoder().decode(head.stdout).trim() + (dirty ? "-dirty" : "");
  } catch {
    return "unknown";
  }
}
