/**
 * Import-graph gate: fails on a file-level import cycle and on any import that goes up the layer
 * order core → backend contract → kernels/ → tensor → autograd → ops → nn → train → plot →
 * studies → entry points (mod.ts, cli.ts).
 *
 * Usage: `deno run --allow-read scripts/check_cycles.ts [root]` (root defaults to the cwd). It
 * parses the static imports (`import … from "./x.ts"`, `import "./x.ts"`, `export … from "./x.ts"`)
 * of mod.ts, cli.ts, kernels/, src/ and studies/, prints every problem and exits 1 if there is one.
 *
 * Cycles count only imports that survive compilation: `import type` (or a clause whose every name
 * is `type`) is erased, so it cannot change module evaluation order. The layer rule counts every
 * import, types included: a kernel that needs a type from the tensor layer is as misplaced as one
 * that needs a function.
 *
 * @module
 */

/** One static import edge. */
export interface ImportEdge {
  /** Importing file, relative to the root, `/`-separated. */
  readonly from: string;
  /** Imported file, relative to the root. */
  readonly to: string;
  /** The specifier as written. */
  readonly specifier: string;
  /** True when the import is erased at compile time (`import type`, `export type`). */
  readonly typeOnly: boolean;
  /** 1-based line of the statement. */
  readonly line: number;
}

/** A layer: files under `prefix` (a folder ending in `/`, or one file) with a rank. */
export interface Layer {
  /** Display name. */
  readonly name: string;
  /** Files it holds: a folder prefix ending in `/`, or an exact path. */
  readonly prefixes: readonly string[];
  /** Position in the order; a file may import only layers of lower or equal rank. */
  readonly rank: number;
  /**
   * When set, the only paths (prefixes or exact files) this layer may import besides its own
   * files; this makes kernels/ see the backend contract and not the backends.
   */
  readonly onlyImports?: readonly string[];
}

/** The kit's layers, lowest first. A file that matches no layer is itself reported. */
export const LAYERS: readonly Layer[] = [
  { name: "core", prefixes: ["src/core/"], rank: 0, onlyImports: [] },
  { name: "util", prefixes: ["src/util/"], rank: 1 },
  {
    name: "backend contract",
    prefixes: ["src/backend/backend.ts"],
    rank: 2,
    onlyImports: ["src/core/"],
  },
  { name: "backend", prefixes: ["src/backend/"], rank: 2 },
  {
    // A worker thread's entry module, not a kernel: it wires the pool's worker loop to the task
    // registry, so it is the one file of kernels/ that may import the thread pool.
    name: "native worker entry",
    prefixes: ["kernels/native/worker.ts"],
    rank: 3,
    onlyImports: ["src/core/", "src/backend/backend.ts", "src/backend/thread_pool.ts", "kernels/"],
  },
  {
    name: "kernels",
    prefixes: ["kernels/"],
    rank: 3,
    onlyImports: ["src/core/", "src/backend/backend.ts"],
  },
  { name: "tensor", prefixes: ["src/tensor/"], rank: 4 },
  { name: "autograd", prefixes: ["src/autograd/"], rank: 5 },
  { name: "ops", prefixes: ["src/ops/"], rank: 6 },
  { name: "nn", prefixes: ["src/nn/"], rank: 7 },
  { name: "train", prefixes: ["src/train/"], rank: 8 },
  { name: "plot", prefixes: ["src/plot/"], rank: 9 },
  { name: "studies", prefixes: ["studies/"], rank: 10 },
  { name: "entry points", prefixes: ["mod.ts", "cli.ts"], rank: 11 },
];

/** What {@link analyze} found. */
export interface GraphReport {
  /** Files parsed. */
  readonly files: readonly string[];
  /** Every relative static import. */
  readonly edges: readonly ImportEdge[];
  /** Each cycle as a closed path of files (first file repeated at the end). */
  readonly cycles: readonly string[][];
  /** One line per import that breaks the layer order, or per file outside every layer. */
  readonly violations: readonly string[];
}

// A statement starts a line; its clause holds only names, braces, commas, `*` and whitespace,
// so `export function f(...)` and `export const x = ...` never match, nor do JSDoc examples
// (their lines start with ` * `).
const FROM_RE = /^[ \t]*(import|export)\s+(type\s+)?([\w$\s{},*]*?)\s*from\s*(["'])([^"'\n]+)\4/gm;
const BARE_RE = /^[ \t]*import\s*(["'])([^"'\n]+)\1/gm;

function lineAt(src: string, index: number): number {
  let n = 1;
  for (let i = 0; i < index; i++) if (src.charCodeAt(i) === 10) n++;
  return n;
}

function clauseIsTypeOnly(clause: string): boolean {
  const m = clause.match(/^\s*\{([\s\S]*)\}\s*$/);
  if (!m) return false; // a default or namespace import is a value
  const names = m[1]!.split(",").map((s) => s.trim()).filter((s) => s.length > 0);
  return names.length > 0 && names.every((s) => s.startsWith("type "));
}

/** Joins and normalises a relative specifier against the importing file's folder. */
export function resolveRelative(from: string, specifier: string): string {
  const parts = from.split("/").slice(0, -1);
  for (const seg of specifier.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") parts.pop();
    else parts.push(seg);
  }
  return parts.join("/");
}

/**
 * The relative static imports of one source text.
 *
 * @param file The file's path relative to the root.
 * @param src Its text.
 * @returns Its edges (targets resolved, not checked for existence).
 */
export function parseImports(file: string, src: string): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const m of src.matchAll(FROM_RE)) {
    const specifier = m[5]!;
    if (!specifier.startsWith("./") && !specifier.startsWith("../")) continue;
    edges.push({
      from: file,
      to: resolveRelative(file, specifier),
      specifier,
      typeOnly: m[2] !== undefined || clauseIsTypeOnly(m[3]!),
      line: lineAt(src, m.index!),
    });
  }
  for (const m of src.matchAll(BARE_RE)) {
    const specifier = m[2]!;
    if (!specifier.startsWith("./") && !specifier.startsWith("../")) continue;
    edges.push({
      from: file,
      to: resolveRelative(file, specifier),
      specifier,
      typeOnly: false,
      line: lineAt(src, m.index!),
    });
  }
  return edges;
}

function layerOf(file: string, layers: readonly Layer[]): Layer | undefined {
  // Exact files before folders: the contract file sits inside src/backend/.
  let best: Layer | undefined;
  let bestLen = -1;
  for (const layer of layers) {
    for (const p of layer.prefixes) {
      const hit = p.endsWith("/") ? file.startsWith(p) : file === p;
      if (hit && p.length > bestLen) {
        best = layer;
        bestLen = p.length;
      }
    }
  }
  return best;
}

function matchesAny(file: string, prefixes: readonly string[]): boolean {
  return prefixes.some((p) => p.endsWith("/") ? file.startsWith(p) : file === p);
}

/** Strongly connected components with more than one file, or a file importing itself. */
function cyclesOf(files: readonly string[], edges: readonly ImportEdge[]): string[][] {
  const adj = new Map<string, string[]>();
  for (const f of files) adj.set(f, []);
  for (const e of edges) if (!e.typeOnly && adj.has(e.to)) adj.get(e.from)!.push(e.to);
  // Tarjan, iterative so a deep graph cannot overflow the stack.
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const sccs: string[][] = [];
  for (const start of files) {
    if (index.has(start)) continue;
    const work: [string, number][] = [[start, 0]];
    index.set(start, counter);
    low.set(start, counter++);
    stack.push(start);
    onStack.add(start);
    while (work.length) {
      const top = work[work.length - 1]!;
      const [v, i] = top;
      const next = adj.get(v)!;
      if (i < next.length) {
        top[1]++;
        const w = next[i]!;
        if (!index.has(w)) {
          index.set(w, counter);
          low.set(w, counter++);
          stack.push(w);
          onStack.add(w);
          work.push([w, 0]);
        } else if (onStack.has(w)) {
          low.set(v, Math.min(low.get(v)!, index.get(w)!));
        }
        continue;
      }
      work.pop();
      if (work.length) {
        const u = work[work.length - 1]![0];
        low.set(u, Math.min(low.get(u)!, low.get(v)!));
      }
      if (low.get(v) === index.get(v)) {
        const scc: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          scc.push(w);
        } while (w !== v);
        if (scc.length > 1 || adj.get(v)!.includes(v)) sccs.push(scc);
      }
    }
  }
  // Report one concrete closed path per component: BFS from its smallest file back to itself.
  return sccs.map((scc) => {
    const inScc = new Set(scc);
    const first = [...scc].sort()[0]!;
    const prev = new Map<string, string>();
    const queue = [first];
    let end: string | undefined;
    while (queue.length && end === undefined) {
      const v = queue.shift()!;
      for (const w of adj.get(v)!) {
        if (!inScc.has(w)) continue;
        if (w === first) {
          end = v;
          break;
        }
        if (!prev.has(w)) {
          prev.set(w, v);
          queue.push(w);
        }
      }
    }
    const path = [first];
    for (let v = end!; v !== first; v = prev.get(v)!) path.splice(1, 0, v);
    path.push(first);
    return path;
  });
}

/**
 * Builds the graph of `sources` (each file's path and text) and checks it.
 *
 * @param sources Files relative to the root, with their text.
 * @param layers The layer table (default {@link LAYERS}).
 * @returns Cycles and layer violations.
 */
export function analyze(
  sources: ReadonlyMap<string, string>,
  layers: readonly Layer[] = LAYERS,
): GraphReport {
  const files = [...sources.keys()].sort();
  const edges = files.flatMap((f) => parseImports(f, sources.get(f)!));
  const violations: string[] = [];
  for (const f of files) {
    if (!layerOf(f, layers)) violations.push(`${f}: in no layer (add its folder to LAYERS)`);
  }
  for (const e of edges) {
    const where = `${e.from}:${e.line} imports ${e.specifier}`;
    if (!sources.has(e.to)) {
      violations.push(`${where}: ${e.to} is not a parsed source file`);
      continue;
    }
    const a = layerOf(e.from, layers), b = layerOf(e.to, layers);
    if (!a || !b || a === b) continue;
    if (a.onlyImports && !matchesAny(e.to, a.onlyImports)) {
      const allowed = a.onlyImports.length ? a.onlyImports.join(", ") : "nothing outside itself";
      violations.push(`${where}: ${a.name} may import only ${allowed}`);
    } else if (b.rank > a.rank) {
      violations.push(
        `${where}: ${a.name} (layer ${a.rank}) imports up into ${b.name} (layer ${b.rank})`,
      );
    }
  }
  return { files, edges, cycles: cyclesOf(files, edges), violations };
}

/** The entry points and folders whose graph the gate checks. */
export const ROOTS: readonly string[] = ["mod.ts", "cli.ts", "kernels", "src", "studies"];

async function walk(root: string, rel: string, out: Map<string, string>): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(`${root}/${rel}`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return; // studies/ may not exist yet
    throw e;
  }
  if (info.isFile) {
    if (rel.endsWith(".ts") && !rel.endsWith("_test.ts")) {
      out.set(rel, await Deno.readTextFile(`${root}/${rel}`));
    }
    return;
  }
  for await (const entry of Deno.readDir(`${root}/${rel}`)) {
    await walk(root, `${rel}/${entry.name}`, out);
  }
}

/**
 * Reads every .ts file under {@link ROOTS} of `root`.
 *
 * @param root Repository root.
 * @returns Path (relative, `/`-separated) → text.
 */
export async function readSources(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const r of ROOTS) await walk(root, r, out);
  return out;
}

if (import.meta.main) {
  const root = Deno.args[0] ?? ".";
  const report = analyze(await readSources(root));
  for (const c of report.cycles) console.error(`cycle: ${c.join(" → ")}`);
  for (const v of report.violations) console.error(`layer: ${v}`);
  const n = report.cycles.length + report.violations.length;
  console.log(
    `${report.files.length} files, ${report.edges.length} imports: ` +
      `${report.cycles.length} cycles, ${report.violations.length} layer violations`,
  );
  Deno.exit(n === 0 ? 0 : 1);
}
