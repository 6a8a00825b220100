/**
 * A model whose logits go NaN for one request fails that request, with a typed error, before
 * anything is sampled or emitted from them; the requests that share its steps are not
 * touched. The tiny Llama here has a NaN embedding row for one token (450), so exactly the
 * prompts that contain it go NaN.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Engine, EngineError } from '../../src/index.js';
import { vocabPath, writeTinyGguf } from '../fixtures/tiny-model.js';

const POISON = 450;
/** Long enough to be prefilled over several steps (8 tokens each) while the others run. */
const SICK = [1, ...Array.from({ length: 30 }, (_, i) => 1000 + 37 * i), POISON];
const HEALTHY = [
  [1, 910, 338, 263, 1243, 310, 278],
  [1, 29871, 13, 3166, 12655, 408, 7442, 17354, 1701],
];

let dir: string;
let engine: Engine;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'non-finite-'));
  const path = join(dir, 'tiny-llama-nan.gguf');
  if (!existsSync(vocabPath)) throw new Error(`the tiny models need the vocabulary at ${vocabPath}`);
  await writeTinyGguf(path, { arch: 'llama', nanTokens: [POISON] }, 'F16');
  engine = await Engine.load({ model: path, kvTokens: 256, prefillChunk: 8 });
}, 120_000);
afterAll(() => {
  engine?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function tokensAlone(prompt: number[]): Promise<number[]> {
  return (await engine.complete({ prompt, maxTokens: 12, ignoreEos: true }).result).tokenIds;
}

describe('NaN logits', () => {
  it('fail that request with ModelOutputError and emit nothing, streamed or not', async () => {
    const generation = engine.complete({ prompt: SICK, maxTokens: 12, ignoreEos: true });
    const chunks = [];
    let thrown: unknown;
    try {
      for await (const chunk of generation) chunks.push(chunk);
    } catch (error) {
      thrown = error;
    }
    expect(chunks).toEqual([]);
    expect(thrown).toBeInstanceOf(EngineError);
    expect(thrown).toMatchObject({ code: 'ModelOutputError', message: expect.stringMatching(/not finite \(\d+ NaN/) });
    await expect(generation.result).rejects.toMatchObject({ code: 'ModelOutputError' });
    await expect(engine.nextTokenLogits(SICK)).rejects.toMatchObject({ code: 'ModelOutputError' });
  });

  it('leave the requests batched with it as they are alone', async () => {
    const expected = [];
    for (const prompt of HEALTHY) expected.push(await tokensAlone(prompt));
    // Submitted together: the healthy two prefill and decode while the sick one's prompt goes
    // in, 8 tokens a step, until its last chunk gives NaN logits.
    const generations = [SICK, ...HEALTHY].map((prompt) => engine.complete({ prompt, maxTokens: 12, ignoreEos: true }));
    let peak = 0;
    const poll = setInterval(() => (peak = Math.max(peak, engine.load.running)), 0);
    const [sick, ...healthy] = await Promise.allSettled(generations.map((g) => g.result));
    clearInterval(poll);
    expect(peak).toBe(3);
    expect(sick).toMatchObject({ status: 'rejected', reason: { code: 'ModelOutputError' } });
    expect(healthy.map((h) => (h.status === 'fulfilled' ? h.value.tokenIds : h.reason))).toEqual(expected);
    // Its blocks went back: the engine still serves.
    expect(engine.load.running).toBe(0);
    expect(await tokensAlone(HEALTHY[0]!)).toEqual(expected[0]);
  });
});
