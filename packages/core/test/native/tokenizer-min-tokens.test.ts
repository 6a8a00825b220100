/**
 * `Tokenizer.minTokens(text)` is a lower bound on the encoding's length, for every vocabulary
 * of `../shared/fixtures/vocab`: on the tokenizer corpus, and on texts made to beat it
 * (compositions NFC shrinks, bytes a vocabulary cannot spell, the longest tokens repeated,
 * special-token text parsed as special tokens). The server refuses a prompt on this bound
 * without tokenizing it, so it must never exceed the real count.
 */
import { describe, expect, it } from '@jest/globals';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import { Tokenizer } from '../../src/index.js';
import { tokenizerCorpus } from '../fixtures/tokenizer-corpus.js';

const vocabDir = new URL('../../../../../shared/fixtures/vocab', import.meta.url).pathname;
const vocabs = existsSync(vocabDir)
  ? readdirSync(vocabDir)
      .filter((f) => f.endsWith('.gguf'))
      .sort()
  : [];

/** Texts that pack as many bytes into as few tokens as each trick allows. */
function hostileTexts(tokenizer: Tokenizer): string[] {
  let longest = 0;
  for (let id = 0; id < tokenizer.vocabSize; id++) {
    const piece = tokenizer.tokenToPiece(id);
    if (piece.length > tokenizer.tokenToPiece(longest).length) longest = id;
  }
  const specials = [tokenizer.bosId, ...tokenizer.eosIds].flatMap((id) => (id === undefined ? [] : [tokenizer.tokenText(id)]));
  return [
    tokenizer.tokenToPiece(longest).repeat(200),
    'e\u0301'.repeat(500), // NFC: 3 bytes become 2
    '\u1100\u1161\u11a8'.repeat(300), // Hangul jamo: 9 bytes become one 3-byte syllable
    Array.from({ length: 32 }, (_, i) => String.fromCharCode(i))
      .join('')
      .repeat(50), // controls
    '\u{f1000}\u{100000}'.repeat(200), // planes 15 and 16: lead bytes few vocabularies spell
    ' '.repeat(5000),
    '\n'.repeat(2000),
    specials.join('').repeat(100),
  ];
}

describe('minTokens', () => {
  it('has vocabularies to check', () => {
    expect(vocabs.length).toBeGreaterThan(5);
  });

  it.each(vocabs.map((v) => [v]))('%s: never more than the real count', async (name) => {
    const tokenizer = await Tokenizer.fromGguf(join(vocabDir, name));
    const texts = [...tokenizerCorpus(), ...hostileTexts(tokenizer)];
    const bounded = texts.filter((text) => tokenizer.minTokens(text) !== undefined);
    if (tokenizer.kind === 'bert' || tokenizer.kind === 't5') {
      // WordPiece turns a long word into one [UNK]; Unigram fuses unknown runs: no bound.
      expect(bounded).toHaveLength(0);
      return;
    }
    expect(bounded).toHaveLength(texts.length);
    for (const text of texts) {
      const min = tokenizer.minTokens(text)!;
      for (const parseSpecial of [false, true]) {
        const real = tokenizer.encode(text, { addSpecialTokens: false, parseSpecial }).length;
        if (min > real) throw new Error(`${name}: minTokens ${min} > ${real} tokens for ${JSON.stringify(text.slice(0, 80))}`);
      }
    }
    // And it is a bound worth having: a long plain text gets a good part of its real count.
    const prose = 'The quick brown fox jumps over the lazy dog. '.repeat(2000);
    expect(tokenizer.minTokens(prose)!).toBeGreaterThan(0);
  });
});
