/**
 * Counts the public surface: the symbols each entry point of deno.json "exports" makes public,
 * from `deno doc --json` (what JSR documents), and names exported by more than one entry.
 *
 * Usage: `deno run --allow-read --allow-run scripts/surface.ts [--json]`
 *
 * `--expand <entry.ts>` prints explicit `export { ... } from` / `export type { ... } from` lines
 * for everything the entry exports today (e.g. to turn an `export *` entry into a list to curate).
 *
 * @module
 */

/** Symbols of one entry point. */
export interface EntrySurface {
  /** Subpath as in deno.json ("." or "./nn"...). */
  readonly subpath: string;
  /** The entry file. */
  readonly file: string;
  /** Names of its public symbols, sorted. */
  readonly names: string[];
  /** How many are types (interfaces and type aliases). */
  readonly types: number;
}

interface DocSymbol {
  name: string;
  declarations: { kind: string }[];
}

/**
 * Reads deno.json's exports and asks `deno doc --json` for each entry's symbols.
 *
 * @param root Repository root.
 * @returns One record per entry, in deno.json order.
 */
export async function surface(root = "."): Promise<EntrySurface[]> {
  const config = JSON.parse(await Deno.readTextFile(`${root}/deno.json`));
  const exports: Record<string, string> = typeof config.exports === "string"
    ? { ".": config.exports }
    : config.exports;
  const out: EntrySurface[] = [];
  for (const [subpath, file] of Object.entries(exports)) {
    const res = await new Deno.Command(Deno.execPath(), {
      args: ["doc", "--json", file],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (res.code !== 0) {
      throw new Error(`deno doc ${file} failed: ${new TextDecoder().decode(res.stderr)}`);
    }
    const doc = JSON.parse(new TextDecoder().decode(res.stdout));
    const symbols = (Object.values(doc.nodes)[0] as { symbols: DocSymbol[] }).symbols;
    const names = symbols.map((s) => s.name).sort();
    const types = symbols.filter((s) =>
      s.declarations.every((d) =>
        d.kind === "interface" || d.kind === "typeAlias"
      )
    ).length;
    out.push({ subpath, file, names, types });
  }
  return out;
}

/**
 * Explicit re-export lines for every symbol an entry exports, grouped by declaring file.
 *
 * @param entry The entry file, relative to the cwd.
 * @returns TypeScript source of the export lines.
 */
export async function expand(entry: string): Promise<string> {
  const res = await new Deno.Command(Deno.execPath(), {
    args: ["doc", "--json", entry],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (res.code !== 0) throw new Error(new TextDecoder().decode(res.stderr));
  const doc = JSON.parse(new TextDecoder().decode(res.stdout));
  type Decl = { kind: string; location: { filename: string } };
  const symbols =
    (Object.values(doc.nodes)[0] as { symbols: (DocSymbol & { declarations: Decl[] })[] })
      .symbols;
  const dir = new URL(".", new URL(entry, `file://${Deno.cwd()}/`)).pathname;
  const byFile = new Map<string, { values: string[]; types: string[] }>();
  for (const s of symbols) {
    const d = s.declarations[0]!;
    let rel = d.location.filename.replace("file://", "");
    rel = rel.startsWith(dir) ? `./${rel.slice(dir.length)}` : rel;
    const g = byFile.get(rel) ?? { values: [], types: [] };
    const isType = s.declarations.every((x) => x.kind === "interface" || x.kind === "typeAlias");
    (isType ? g.types : g.values).push(s.name);
    byFile.set(rel, g);
  }
  const lines: string[] = [];
  const sort = (xs: string[]) => xs.sort((a, b) => a.toLowerCase().localeCompare(b.toLowerCase()));
  for (const [file, g] of byFile) {
    if (g.values.length) lines.push(`export { ${sort(g.values).join(", ")} } from "${file}";`);
    if (g.types.length) lines.push(`export type { ${sort(g.types).join(", ")} } from "${file}";`);
  }
  return lines.join("\n") + "\n";
}

if (import.meta.main && Deno.args[0] === "--expand") {
  console.log(await expand(Deno.args[1]!));
} else if (import.meta.main) {
  const entries = await surface();
  if (Deno.args.includes("--json")) {
    console.log(JSON.stringify(entries, null, 2));
  } else {
    let total = 0;
    for (const e of entries) {
      total += e.names.length;
      const values = e.names.length - e.types;
      console.log(
        `${e.subpath.padEnd(10)} ${e.file.padEnd(20)} ${String(e.names.length).padStart(4)} ` +
          `symbols (${values} values, ${e.types} types)`,
      );
    }
    console.log(`${"total".padEnd(31)} ${String(total).padStart(4)}`);
    const owner = new Map<string, string>();
    for (const e of entries) {
      for (const n of e.names) {
        const prev = owner.get(n);
        if (prev) console.log(`exported by both ${prev} and ${e.subpath}: ${n}`);
        else owner.set(n, e.subpath);
      }
    }
  }
}
