/**
 * Reading environment settings without a permission prompt: a setting the process may not read
 * counts as unset, so a script run without `--allow-env` behaves as with its defaults.
 *
 * @module
 */

/**
 * The variable's value, or undefined when unset or not readable (no env permission).
 *
 * @param name Variable name.
 * @returns The value.
 * @example
 * ```ts
 * import { readEnv } from "./env.ts";
 * import assert from "node:assert/strict";
 * assert.equal(readEnv("QSPARSE_SURELY_UNSET_VARIABLE"), undefined);
 * ```
 */
export function readEnv(name: string): string | undefined {
  try {
    const desc = { name: "env", variable: name } as const;
    return Deno.permissions.querySync(desc).state === "granted" ? Deno.env.get(name) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Whether a switch is turned off: `0`, `false` or `off` (any case). Unset means on.
 *
 * @param name Variable name, e.g. `QSPARSE_AUTOTUNE`.
 * @returns True when the variable says off.
 * @example
 * ```ts
 * import { switchedOff } from "./env.ts";
 * import assert from "node:assert/strict";
 * assert.equal(switchedOff("QSPARSE_SURELY_UNSET_VARIABLE"), false);
 * ```
 */
export function switchedOff(name: string): boolean {
  const v = readEnv(name)?.toLowerCase();
  return v === "0" || v === "false" || v === "off";
}
