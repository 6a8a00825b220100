/**
 * The split GGUFs our fixture writes (test/fixtures/split-gguf.ts, gguf-split's naming and keys)
 * are what llama.cpp reads: node-llama-cpp, given the first part, computes the same logits as
 * from the whole file, and so does our loader (max |Δ| = 0 on both sides).
 */
import { afterAll, beforeAll, expect } from '@jest/globals';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { Llama } from 'node-llama-cpp';

import { needsFixtures } from '../../../../test-support/fixtures.js';
import { Engine } from '../../src/index.js';
import { splitGguf } from '../fixtures/split-gguf.js';
import { hfTokenizerDir, vocabPath, writeTinyGguf } from '../fixtures/tiny-model.js';
import { loadPeer, maxAbsDiff, peerSteps } from '../support/fidelity.js';

const fixtures = needsFixtures('the tiny models', [vocabPath, join(hfTokenizerDir, 'tokenizer.json')]);
const PROMPT = [1, 450, 4996, 17354, 1701, 910, 338];
const STEPS = 6;
let dir: string;
let llama: Llama;

beforeAll(async () => {
  if (!fixtures.present) return;
  dir = mkdtempSync(join(tmpdir(), 'split-gguf-'));
  mkdirSync(join(dir, 'split'));
  await writeTinyGguf(join(dir, 'tiny-Q8_0.gguf'), { arch: 'llama' }, 'Q8_0');
  llama = await loadPeer();
});
afterAll(async () => {
  await llama?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function peerLogits(path: string, vocab: number): Promise<Float32Array[]> {
  const model = await llama.loadModel({ modelPath: path });
  const context = await model.createContext({ contextSize: 64, threads: 2, flashAttention: false });
  try {
    return (await peerSteps(context.getSequence(), PROMPT, { steps: STEPS, vocab })).logits;
  } finally {
    await context.dispose();
    await model.dispose();
  }
}

fixtures.it('llama.cpp and our loader read the parts as the whole file', async () => {
  const parts = await splitGguf(join(dir, 'tiny-Q8_0.gguf'), join(dir, 'split'), 'tiny-Q8_0', 5);
  expect(parts.length).toBeGreaterThan(2);
  const first = join(dir, 'split', parts[0]!);
  const whole = await Engine.load({ model: join(dir, 'tiny-Q8_0.gguf'), kvTokens: 64 });
  const split = await Engine.load({ model: first, kvTokens: 64 });
  try {
    const vocab = whole.info.vocabSize;
    const [peerWhole, peerSplit] = [await peerLogits(join(dir, 'tiny-Q8_0.gguf'), vocab), await peerLogits(first, vocab)];
    expect(peerSplit.length).toBe(STEPS);
    for (const [i, row] of peerWhole.entries()) expect(maxAbsDiff(row, peerSplit[i]!)).toBe(0);
    expect(maxAbsDiff(await whole.nextTokenLogits(PROMPT), await split.nextTokenLogits(PROMPT))).toBe(0);
  } finally {
    whole.close();
    split.close();
  }
});
