/**
 * Loads a CBLAS with `Deno.dlopen`: a path given by the caller or `QSPARSE_BLAS`, else the usual
 * OpenBLAS sonames (Debian's `libopenblas0-pthread`), a generic `libblas`/`libcblas`, or
 * Accelerate on macOS. OPENBLAS_* variables are the user's: the kit never sets them.
 *
 * @module
 */
import type { Blas } from "./backend.ts";

const ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112;

const SYMBOLS = {
  cblas_sgemm: {
    parameters: [
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "f32",
      "usize",
      "i32",
      "usize",
      "i32",
      "f32",
      "usize",
      "i32",
    ],
    result: "void",
  },
  cblas_sgemv: {
    parameters: [
      "i32",
      "i32",
      "i32",
      "i32",
      "f32",
      "usize",
      "i32",
      "usize",
      "i32",
      "f32",
      "usize",
      "i32",
    ],
    result: "void",
  },
  cblas_saxpy: {
    parameters: ["i32", "f32", "usize", "i32", "usize", "i32"],
    result: "void",
  },
  // The same symbol with pointer parameters: V8's fast call path, ~10× cheaper per call.
  cblas_saxpy_ptr: {
    name: "cblas_saxpy",
    parameters: ["i32", "f32", "pointer", "i32", "pointer", "i32"],
    result: "void",
  },
  openblas_get_num_threads: { parameters: [], result: "i32", optional: true },
  openblas_get_config: { parameters: [], result: "pointer", optional: true },
} as const;

/** Candidate libraries in probe order for this OS. */
export function blasCandidates(): string[] {
  switch (Deno.build.os) {
    case "darwin":
      return [
        "/System/Library/Frameworks/Accelerate.framework/Accelerate",
        "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
        "/usr/local/opt/openblas/lib/libopenblas.dylib",
      ];
    case "windows":
      return ["libopenblas.dll", "openblas.dll"];
    default:
      return [
        "libopenblas.so.0",
        "libopenblas.so",
        "libopenblasp.so.0",
        "libmkl_rt.so.2",
        "libmkl_rt.so",
        "libcblas.so.3",
        "libblas.so.3",
      ];
  }
}

/** Why no BLAS loaded: each library tried and its error. */
export class BlasLoadError extends Error {
  /** @param tried `[library, error]` pairs. */
  constructor(readonly tried: [string, string][]) {
    super(
      tried.length
        ? `no BLAS could be loaded (tried ${tried.map(([l]) => l).join(", ")}; first error: ${
          tried[0]![1]
        })`
        : "no BLAS candidates",
    );
    this.name = "BlasLoadError";
  }
}

function open(path: string): Blas {
  const lib = Deno.dlopen(path, SYMBOLS as unknown as Deno.ForeignLibraryInterface);
  const sym = lib.symbols as unknown as {
    cblas_sgemm: (...a: number[]) => void;
    cblas_sgemv: (...a: number[]) => void;
    cblas_saxpy: (...a: number[]) => void;
    cblas_saxpy_ptr: (
      n: number,
      a: number,
      x: Deno.PointerValue,
      incx: number,
      y: Deno.PointerValue,
      incy: number,
    ) => void;
    openblas_get_num_threads: null | (() => number);
    openblas_get_config: null | (() => Deno.PointerValue);
  };
  let threads = navigator.hardwareConcurrency ?? 1;
  let name = path;
  if (sym.openblas_get_num_threads) threads = sym.openblas_get_num_threads();
  if (sym.openblas_get_config) {
    const p = sym.openblas_get_config();
    if (p) name = `${path} (${new Deno.UnsafePointerView(p).getCString()})`;
  }
  const sgemm = sym.cblas_sgemm, sgemv = sym.cblas_sgemv;
  const saxpy = sym.cblas_saxpy, saxpyPtr = sym.cblas_saxpy_ptr;
  // Row pointer objects by (base address, stride): a pointer only wraps an address, so a cached
  // one stays right even after the buffer behind it is freed and the address reused.
  const rowPtrs = new Map<string, Deno.PointerValue[]>();
  const ptr = (a: number) => Deno.UnsafePointer.create(BigInt(a));
  return {
    library: name,
    path,
    threads,
    sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
      sgemm(
        ROW_MAJOR,
        ta ? TRANS : NO_TRANS,
        tb ? TRANS : NO_TRANS,
        m,
        n,
        k,
        alpha,
        a,
        lda,
        b,
        ldb,
        beta,
        c,
        ldc,
      );
    },
    sgemv(ta, m, n, alpha, a, lda, x, incx, beta, y, incy) {
      sgemv(ROW_MAJOR, ta ? TRANS : NO_TRANS, m, n, alpha, a, lda, x, incx, beta, y, incy);
    },
    saxpy,
    axpyRows(n, vals, idxs, e0, e1, w, stride, y) {
      const key = `${w}:${stride}`;
      let rows = rowPtrs.get(key);
      if (!rows) {
        if (rowPtrs.size > 4096) rowPtrs.clear();
        rows = [];
        rowPtrs.set(key, rows);
      }
      const py = ptr(y);
      for (let t = e0; t < e1; t++) {
        const i = idxs[t]!;
        const pw = rows[i] ??= ptr(w + i * stride);
        saxpyPtr(n, vals[t]!, pw, 1, py, 1);
      }
    },
  };
}

/**
 * Loads the first BLAS that opens.
 *
 * @param path A library to use instead of probing (also `QSPARSE_BLAS`).
 * @returns The BLAS.
 * @throws {BlasLoadError} When none loads (or FFI is not permitted).
 */
export function loadBlas(path?: string): Blas {
  let env: string | undefined;
  try {
    env = Deno.env.get("QSPARSE_BLAS");
  } catch {
    env = undefined;
  }
  const candidates = path ? [path] : env ? [env] : blasCandidates();
  const tried: [string, string][] = [];
  for (const c of candidates) {
    try {
      return open(c);
    } catch (e) {
      tried.push([c, (e as Error).message]);
    }
  }
  throw new BlasLoadError(tried);
}
