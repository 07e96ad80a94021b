/**
 * Tokenizers: text ↔ token ids. The default is byte-level (UTF-8 bytes, vocab 256): no training,
 * no unknown tokens, and a tiny embedding, which suits small sparsity studies where the
 * embedding should not dominate the parameter count.
 *
 * @module
 */
import { ValueError } from "./errors.ts";

/** Maps text to token ids and back. */
export interface Tokenizer {
  /** Number of distinct ids; every id is in `[0, vocabSize)`. */
  readonly vocabSize: number;
  /** Text → ids. */
  encode(text: string): Uint32Array;
  /** Ids → text. */
  decode(ids: ArrayLike<number>): string;
}

/**
 * Byte-level tokenizer: one token per UTF-8 byte.
 *
 * @example
 * ```ts
 * import { ByteTokenizer } from "@qsparse/kit/train";
 * import assert from "node:assert/strict";
 * const tok = new ByteTokenizer();
 * const ids = tok.encode("naïve");
 * assert.equal(ids.length, 6); // ï is two bytes
 * assert.equal(tok.decode(ids), "naïve");
 * ```
 */
export class ByteTokenizer implements Tokenizer {
  /** 256. */
  readonly vocabSize = 256;

  /**
   * Encodes text as its UTF-8 bytes.
   *
   * @param text Any string.
   * @returns Its UTF-8 bytes as ids.
   */
  encode(text: string): Uint32Array {
    return Uint32Array.from(new TextEncoder().encode(text));
  }

  /**
   * Decodes ids as UTF-8. A window cut mid-character decodes with U+FFFD in place of the partial
   * character rather than throwing, so sampled text can always be printed.
   *
   * @param ids Byte ids.
   * @returns The text.
   * @throws {ValueError} For an id outside `[0, 256)`.
   */
  decode(ids: ArrayLike<number>): string {
    const bytes = new Uint8Array(ids.length);
    for (let i = 0; i < ids.length; i++) {
      const v = ids[i]!;
      if (!(v >= 0 && v < 256 && Number.isInteger(v))) {
        throw new ValueError("ByteTokenizer.decode", `id ${v} at position ${i} is not a byte`);
      }
      bytes[i] = v;
    }
    return new TextDecoder().decode(bytes);
  }
}
