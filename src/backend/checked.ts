/**
 * Bounds checks for the native backend's raw-address paths (`QSPARSE_CHECK_NATIVE=1`).
 *
 * Why: a typed-array write in TypeScript is bounds-checked, but a BLAS call or a worker's view
 * made from a raw address is not. A wrong leading dimension or element count there writes past
 * the end of an ArrayBuffer's backing store into the C heap, and glibc notices only much later,
 * at some unrelated `free` (often at process exit). In checked mode every BLAS call and every
 * view is checked against the extents of the buffers the backend handed out, and a violation
 * throws at the offending call, naming the op.
 *
 * @module
 */
import type { Blas } from "./backend.ts";
import { DeviceError } from "../core/errors.ts";

/**
 * True when `QSPARSE_CHECK_NATIVE` is set to `1` (and the environment is readable).
 *
 * @returns Whether native devices run checked.
 * @example
 * ```ts
 * import { checkNativeFromEnv } from "./checked.ts";
 * import assert from "node:assert/strict";
 * assert.equal(checkNativeFromEnv(), Deno.env.get("QSPARSE_CHECK_NATIVE") === "1");
 * ```
 */
export function checkNativeFromEnv(): boolean {
  try {
    return Deno.env.get("QSPARSE_CHECK_NATIVE") === "1";
  } catch {
    return false;
  }
}

/**
 * The host buffers a backend handed out or was asked the address of, by start address. Entries
 * are weak: a buffer that was collected no longer counts (its memory may hold another buffer).
 *
 * @example
 * ```ts
 * import { ExtentRegistry } from "./checked.ts";
 * import { DeviceError } from "../core/errors.ts";
 * import assert from "node:assert/strict";
 * const reg = new ExtentRegistry();
 * const buf = new ArrayBuffer(64);
 * reg.add(1000, buf); // a made-up address: the registry only compares numbers
 * reg.check("x", 1016, 48); // bytes 16..63: inside
 * assert.throws(() => reg.check("x", 1016, 52), DeviceError); // 4 bytes past the end
 * assert.throws(() => reg.check("x", 900, 4), /in no buffer/);
 * ```
 */
export class ExtentRegistry {
  #byStart = new Map<number, WeakRef<ArrayBuffer>>();
  #starts: number[] = [];
  #dirty = false;
  /** The op being dispatched, named in errors. */
  op = "native";

  /** Records `buffer`, which starts at `address`. */
  add(address: number, buffer: ArrayBuffer): void {
    if (buffer.byteLength === 0) return;
    this.#byStart.set(address, new WeakRef(buffer));
    this.#dirty = true;
  }

  /** Forgets the buffer at `address` (its memory may be reused). */
  remove(address: number): void {
    if (this.#byStart.delete(address)) this.#dirty = true;
  }

  /** Forgets every buffer. */
  clear(): void {
    this.#byStart.clear();
    this.#starts = [];
    this.#dirty = false;
  }

  /** The live buffer starting at or before `address` nearest to it: [start, bytes], or null. */
  #containing(address: number): [number, number] | null {
    for (;;) {
      if (this.#dirty) {
        this.#starts = [...this.#byStart.keys()].sort((a, b) => a - b);
        this.#dirty = false;
      }
      const s = this.#starts;
      let lo = 0, hi = s.length - 1, at = -1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (s[mid]! <= address) {
          at = mid;
          lo = mid + 1;
        } else hi = mid - 1;
      }
      if (at < 0) return null;
      const bytes = this.#byStart.get(s[at]!)?.deref()?.byteLength ?? 0;
      if (bytes > 0) return [s[at]!, bytes];
      this.remove(s[at]!); // collected (or detached): look again without it
    }
  }

  /**
   * Throws unless `[address, address + bytes)` lies inside one recorded buffer.
   *
   * @param what Which operand, for the message (e.g. "sgemm C").
   */
  check(what: string, address: number, bytes: number): void {
    if (bytes <= 0) return;
    const hit = this.#containing(address);
    if (!hit) {
      throw new DeviceError(this.op, `${what}: address ${address} is in no buffer of the device`);
    }
    const [start, size] = hit;
    if (address + bytes > start + size) {
      throw new DeviceError(
        this.op,
        `${what}: ${bytes} bytes at offset ${address - start} run ${
          address + bytes - start - size
        } bytes past the end of a ${size}-byte buffer`,
      );
    }
  }
}

/** Bytes a row-major `rows × cols` matrix with leading dimension `ld` spans. */
function matrixBytes(what: string, reg: ExtentRegistry, rows: number, cols: number, ld: number) {
  if (rows <= 0 || cols <= 0) return 0;
  if (ld < cols) {
    throw new DeviceError(reg.op, `${what}: leading dimension ${ld} < ${cols} columns`);
  }
  return ((rows - 1) * ld + cols) * 4;
}

/** Bytes a strided vector of `n` floats spans. */
function vectorBytes(n: number, inc: number): number {
  return n <= 0 ? 0 : ((n - 1) * Math.abs(inc) + 1) * 4;
}

/**
 * A BLAS that checks every operand's extent before calling `blas`.
 *
 * @param blas The real BLAS.
 * @param reg The buffers operands must lie in.
 * @returns The checking BLAS.
 * @example
 * ```ts
 * import { checkedBlas, ExtentRegistry } from "./checked.ts";
 * import type { Blas } from "./backend.ts";
 * import assert from "node:assert/strict";
 * let calls = 0;
 * const count = () => void calls++;
 * const fake: Blas = {
 *   library: "fake", path: "fake", threads: 1,
 *   sgemm: count, sgemv: count, saxpy: count, axpyRows: count,
 * };
 * const reg = new ExtentRegistry();
 * const buf = new ArrayBuffer(4 * 4);
 * reg.add(4096, buf);
 * const blas = checkedBlas(fake, reg);
 * blas.saxpy(4, 1, 4096, 1, 4096, 1); // 4 floats: fits
 * assert.throws(() => blas.saxpy(5, 1, 4096, 1, 4096, 1), /past the end/);
 * assert.equal(calls, 1); // the bad call never reached the library
 * ```
 */
export function checkedBlas(blas: Blas, reg: ExtentRegistry): Blas {
  return {
    library: blas.library,
    path: blas.path,
    threads: blas.threads,
    sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
      if (m > 0 && n > 0) {
        reg.check("sgemm A", a, matrixBytes("sgemm A", reg, ta ? k : m, ta ? m : k, lda));
        reg.check("sgemm B", b, matrixBytes("sgemm B", reg, tb ? n : k, tb ? k : n, ldb));
        reg.check("sgemm C", c, matrixBytes("sgemm C", reg, m, n, ldc));
      }
      blas.sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    },
    sgemv(ta, m, n, alpha, a, lda, x, incx, beta, y, incy) {
      if (m > 0 && n > 0) {
        reg.check("sgemv A", a, matrixBytes("sgemv A", reg, m, n, lda));
        reg.check("sgemv x", x, vectorBytes(ta ? m : n, incx));
        reg.check("sgemv y", y, vectorBytes(ta ? n : m, incy));
      }
      blas.sgemv(ta, m, n, alpha, a, lda, x, incx, beta, y, incy);
    },
    saxpy(n, alpha, x, incx, y, incy) {
      reg.check("saxpy x", x, vectorBytes(n, incx));
      reg.check("saxpy y", y, vectorBytes(n, incy));
      blas.saxpy(n, alpha, x, incx, y, incy);
    },
    axpyRows(n, vals, idxs, e0, e1, w, stride, y) {
      if (e1 > vals.length || e1 > idxs.length) {
        throw new DeviceError(reg.op, `axpyRows: entries up to ${e1} of ${vals.length}`);
      }
      reg.check("axpyRows y", y, n * 4);
      for (let t = e0; t < e1; t++) reg.check("axpyRows W row", w + idxs[t]! * stride, n * 4);
      blas.axpyRows(n, vals, idxs, e0, e1, w, stride, y);
    },
  };
}
