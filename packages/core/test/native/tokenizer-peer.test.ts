/**
 * Our tokenizers against llama.cpp's (through node-llama-cpp), loaded from the same vocabulary
 * GGUF, on a few hundred strings of our own: without and with special-token parsing.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { getLlama, type Llama } from 'node-llama-cpp';

import { needsFixtures, sharedFixture } from '../../../../test-support/fixtures.js';
import { Tokenizer } from '../../src/index.js';
import { tokenizerCorpus } from '../fixtures/tokenizer-corpus.js';
import { PEER_DIFFERENCE_RULES } from '../fixtures/tokenizer-peer-differences.js';

const vocabDir = sharedFixture('vocab');
const fixtures = needsFixtures('the vocabulary GGUFs', [vocabDir]);
const vocabs = fixtures.present
  ? readdirSync(vocabDir)
      .filter((f) => f.endsWith('.gguf'))
      .sort()
  : [];

const corpus = tokenizerCorpus();
let llama: Llama;

beforeAll(async () => {
  llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
}, 120_000);
afterAll(async () => {
  await llama?.dispose();
});

fixtures.it('finds the 13 vocabulary GGUFs', () => expect(vocabs.length).toBe(13));

describe.each(vocabs.map((v) => [v]))('%s: ours vs llama.cpp', (name) => {
  it(`encodes all ${corpus.length} strings the same, or the difference is explained`, async () => {
    const path = join(vocabDir, name);
    const ours = await Tokenizer.fromGguf(path);
    const peer = await llama.loadModel({ modelPath: path, vocabOnly: true });
    const unexplained: string[] = [];
    const rules = PEER_DIFFERENCE_RULES.filter((r) => r.vocab === name);
    const used = new Set<string>();
    let compared = 0;
    try {
      for (const parseSpecial of [false, true]) {
        for (const text of corpus) {
          const a = Array.from(ours.encode(text, { addSpecialTokens: false, parseSpecial }));
          const b = Array.from(peer.tokenize(text, parseSpecial));
          compared++;
          if (a.join(' ') === b.join(' ')) continue;
          const rule = rules.find((r) => r.applies(text, parseSpecial));
          if (rule) {
            used.add(rule.reason);
            continue;
          }
          const key = `${parseSpecial ? 'special' : 'plain'}:${text}`;
          unexplained.push(`${JSON.stringify(key)}\n    ours: ${a.join(' ')}\n    peer: ${b.join(' ')}`);
        }
      }
    } finally {
      await peer.dispose();
    }
    expect(compared).toBe(corpus.length * 2);
    expect(unexplained).toEqual([]);
    // A rule that no longer explains anything is stale.
    expect(rules.filter((r) => !used.has(r.reason)).map((r) => r.reason)).toEqual([]);
  }, 120_000);
});
