import assert from "node:assert/strict";
import { ValueError } from "../mod.ts";
import {
  BatchSampler,
  BROWN_CATEGORIES,
  BROWN_GROUPS,
  ByteTokenizer,
  Corpus,
  detokenizeBrown,
  loadBrownCorpus,
  ValidationSet,
} from "../src/train/mod.ts";

Deno.test("detokenizeBrown: tags dropped, punctuation and quotes spaced like prose", () => {
  const cases: [string, string][] = [
    ["\tThe/at jury/nn said/vbd ``/`` no/at evidence/nn ''/'' ./.", 'The jury said "no evidence".'],
    ["\tHe/pps said/vbd ,/, ``/`` Go/vb !/. !/. ''/''", 'He said, "Go!!"'],
    ["\tA/at (/( small/jj )/) dog/nn ;/. ;/.\nthen/rb more/ap ./.", "A (small) dog; then more."],
    ["\tthe/at '/' Met/np '/' and/cc Allen/np Jr./np ./.", "the 'Met' and Allen Jr."],
    [
      "\tI/ppss didn't/dod* see/vb 1-1/2/cd miles/nns --/-- or/cc more/ap ?/.",
      "I didn't see 1-1/2 miles -- or more?",
    ],
    ["\tOne/cd ./.\nTwo/cd ./.\n\n\n\tThree/cd ./.", "One. Two.\nThree."],
    ["1/cd-hl ./.-hl\nIntroduction/nn-hl\nIt/pps is/bez ./.", "1.\nIntroduction\nIt is."],
  ];
  for (const [tagged, text] of cases) assert.equal(detokenizeBrown(tagged), text, tagged);
});

Deno.test("Brown corpus: 500 documents, 15 categories, deterministic ~10% split by document", async () => {
  const brown = await loadBrownCorpus();
  const stats = brown.stats();
  console.log(
    `Brown: ${stats.documents} docs, ${stats.bytes} bytes; train ${stats.train.documents} docs / ` +
      `${stats.train.bytes} B; validation ${stats.validation.documents} docs / ${stats.validation.bytes} B`,
  );
  assert.equal(stats.documents, 500);
  assert.deepEqual(brown.categories, [...BROWN_CATEGORIES]);
  assert.equal(stats.validation.documents, 51);
  assert.ok(stats.bytes > 5.5e6 && stats.bytes < 6.5e6, `${stats.bytes} bytes`);
  for (const [cat, s] of Object.entries(stats.categories)) {
    assert.ok(s.validation.documents >= 1, `${cat} has validation documents`);
    assert.ok(s.train.documents > s.validation.documents, cat);
  }
  assert.equal(brown.docs("validation")[0]!.id, "ca06");
  assert.ok(
    brown.documents[0]!.text.startsWith(
      "The Fulton County Grand Jury said Friday an investigation",
    ),
  );
  // No tag survives and every document is non-trivial prose.
  for (const d of brown.documents) {
    // The commonest tags; real words like "and/or" or "bd/ft" must survive.
    assert.ok(
      !/\/(at|nn|nns|np|in|jj|vb|vbd|cc|rb|-hl)(\s|$)/.test(d.text),
      `tags left in ${d.id}`,
    );
    assert.ok(d.text.length > 8000, `${d.id} is ${d.text.length} chars`);
  }
  const again = await loadBrownCorpus();
  assert.deepEqual(
    again.docs("validation").map((d) => d.id),
    brown.docs("validation").map((d) => d.id),
  );
  const coarse = await loadBrownCorpus({ validationEvery: 5 });
  assert.ok(coarse.stats().validation.documents > 90);
});

Deno.test("Brown corpus: category filter for fine-tuning", async () => {
  const brown = await loadBrownCorpus();
  const news = brown.filter("news");
  assert.equal(news.documents.length, 44);
  assert.ok(news.documents.every((d) => d.category === "news"));
  const fiction = await loadBrownCorpus({ categories: BROWN_GROUPS.imaginative });
  assert.equal(fiction.documents.length, 29 + 24 + 6 + 29 + 29 + 9);
  assert.ok(fiction.text("train").length > 5 * fiction.text("validation").length);
  assert.throws(() => brown.filter("fction"), ValueError);
  assert.throws(() => brown.filter(["news", "nope"]), /unknown category "nope"/);
});

Deno.test("ByteTokenizer: UTF-8 round trip, vocab 256, bad ids rejected", async () => {
  const tok = new ByteTokenizer();
  assert.equal(tok.vocabSize, 256);
  const brown = await loadBrownCorpus();
  const text = brown.text("validation");
  const ids = tok.encode(text);
  assert.equal(ids.length, new TextEncoder().encode(text).length);
  assert.ok(ids.every((v) => v < 256));
  assert.equal(tok.decode(ids), text);
  assert.equal(tok.decode(tok.encode("π ≈ 3.14 — ok ✓")), "π ≈ 3.14 — ok ✓");
  assert.equal(
    tok.decode(tok.encode("é").subarray(0, 1)),
    "\uFFFD",
    "a cut character decodes, not throws",
  );
  assert.throws(() => tok.decode([65, 256]), ValueError);
  assert.throws(() => tok.decode([-1]), ValueError);
});

function stream(n: number): Uint32Array {
  return Uint32Array.from({ length: n }, (_, i) => i);
}

Deno.test("BatchSampler: [B, T+1] contiguous windows, in range, seeded and resumable", () => {
  const tokens = stream(5000);
  const s = new BatchSampler(tokens, { batchSize: 8, seqLen: 31, seed: 42 });
  const first = [s.next(), s.next(), s.next()];
  assert.deepEqual(s.state, { seed: 42, step: 3 });
  for (const batch of first) {
    assert.equal(batch.length, 8 * 32);
    for (let b = 0; b < 8; b++) {
      const row = batch.subarray(b * 32, (b + 1) * 32);
      assert.ok(row[0]! + 31 < 5000);
      for (let t = 1; t < 32; t++) {
        assert.equal(row[t], row[0]! + t, "window is a contiguous slice");
      }
    }
  }
  // A resumed sampler continues exactly, from a JSON round-tripped state.
  const resumed = new BatchSampler(tokens, {
    batchSize: 8,
    seqLen: 31,
    ...JSON.parse(JSON.stringify(s.state)),
  });
  assert.deepEqual(resumed.next(), s.next());
  assert.deepEqual(
    new BatchSampler(tokens, { batchSize: 8, seqLen: 31, seed: 42 }).batchAt(1),
    first[1],
  );
  // Other seeds give other batches; a stream of exactly T+1 tokens has one possible window.
  assert.notDeepEqual(
    new BatchSampler(tokens, { batchSize: 8, seqLen: 31, seed: 43 }).batchAt(0),
    first[0],
  );
  assert.deepEqual(new BatchSampler(stream(32), { batchSize: 2, seqLen: 31 }).offsets(5), [0, 0]);
  assert.throws(() => new BatchSampler(stream(31), { batchSize: 1, seqLen: 31 }), ValueError);
  assert.throws(() => new BatchSampler(tokens, { batchSize: 0, seqLen: 31 }), ValueError);
  assert.throws(() => new BatchSampler(tokens, { batchSize: 1, seqLen: 31, seed: -1 }), ValueError);
});

Deno.test("BatchSampler: offsets are uniform over the stream (chi-square)", () => {
  const s = new BatchSampler(stream(10_001), { batchSize: 100, seqLen: 1, seed: 3 });
  const bins = new Array(20).fill(0);
  const draws = 200;
  for (let step = 0; step < draws; step++) {
    for (const o of s.offsets(step)) bins[Math.floor(o / 500)]++;
  }
  const expected = (draws * 100) / 20;
  const chi2 = bins.reduce((a, c) => a + (c - expected) ** 2 / expected, 0);
  assert.ok(chi2 < 43.8, `chi2 ${chi2.toFixed(1)} over 19 dof (p = 0.001 cutoff 43.8)`);
});

Deno.test("ValidationSet: fixed, non-overlapping, capped windows spread over the stream", () => {
  const tokens = stream(1000);
  const all = new ValidationSet(tokens, { seqLen: 9 });
  assert.equal(all.count, 100);
  assert.deepEqual([...all.window(99)], [...tokens.subarray(990, 1000)]);
  const capped = new ValidationSet(tokens, { seqLen: 9, maxWindows: 7 });
  assert.equal(capped.count, 7);
  const starts = Array.from({ length: 7 }, (_, i) => capped.window(i)[0]!);
  for (let i = 1; i < 7; i++) assert.ok(starts[i]! - starts[i - 1]! >= 10, "non-overlapping");
  assert.ok(starts[6]! >= 800, "reaches the end of the stream");
  assert.deepEqual(new ValidationSet(tokens, { seqLen: 9, maxWindows: 7 }).windows, capped.windows);
  const batches = [...capped.batches(3)];
  assert.deepEqual(batches.map((b) => b.length), [30, 30, 10]);
  assert.throws(() => new ValidationSet(stream(5), { seqLen: 9 }), ValueError);
});

Deno.test("Corpus: stats count UTF-8 bytes per split and category", () => {
  const c = new Corpus([
    { id: "1", category: "x", split: "train", text: "héllo" },
    { id: "2", category: "y", split: "validation", text: "abc" },
  ]);
  const s = c.stats();
  assert.deepEqual(s.train, { documents: 1, bytes: 6 });
  assert.deepEqual(s.categories.y!.validation, { documents: 1, bytes: 3 });
  assert.equal(s.bytes, 9);
});
