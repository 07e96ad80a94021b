/**
 * Counts the public surface: the symbols each entry point of deno.json "exports" makes public,
 * from `deno doc --json` (what JSR documents), and names exported by more than one entry.
 *
 * Usage: `deno run --allow-read --allow-run scripts/surface.ts [--json]`
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

if (import.meta.main) {
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
