/**
 * Continuous batching: concurrent requests share steps, and a sequence's tokens must not
 * depend on what else runs with it. Greedy results of requests run together (prompts of
 * different lengths, so prefill chunks and decode tokens share steps) must equal each one run
 * alone, on the default model (Q4_1), on a tiny Gemma 3 in Q4_K (whose kernels group rows
 * in fours, per sequence; six layers with an 8-token window on five of them) and on a tiny
 * Mixtral in Q4_K (whose experts take rows of every sequence); the tiny models have their own
 * output heads, so that their greedy paths do not just repeat a token. Also: preemption when
 * the KV cache runs out, cancellation freeing blocks at once, and a full queue refusing at
 * once. The work is fixed by token counts, with no wall-clock limit (`WORK_BOUNDED`); the
 * logits of sequences sharing steps against llama.cpp's are in tiny-models.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { needsFixtures } from '../../../../test-support/fixtures.js';
import { Engine, EngineError, fetchRegistryModel } from '../../src/index.js';
import { vocabPath, writeTinyGguf } from '../fixtures/tiny-model.js';
import { WORK_BOUNDED } from '../support/fidelity.js';
import { alone, BATCH_TEXTS as TEXTS, together } from '../support/together.js';

const tiny = needsFixtures('the tiny models', [vocabPath]);
let dir: string;
let tinyGemma: string;
let tinyMixtral: string;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'batching-'));
  tinyGemma = join(dir, 'tiny-gemma3-q4k.gguf');
  tinyMixtral = join(dir, 'tiny-mixtral-q4k.gguf');
  if (tiny.present) {
    await writeTinyGguf(tinyGemma, { arch: 'gemma3', slidingWindow: 8, layers: 6, untiedOutput: true }, 'Q4_K');
    await writeTinyGguf(tinyMixtral, { arch: 'mixtral', untiedOutput: true }, 'Q4_K');
  }
}, WORK_BOUNDED);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const MODELS = [
  ['the default model (Q4_1)', async () => fetchRegistryModel('smollm2-135m-instruct-q4_1'), describe],
  ['a tiny Gemma 3 (Q4_K, window 8)', async () => tinyGemma, tiny.describe],
  // Experts see rows of several sequences in one product: each row must still be on its own.
  ['a tiny Mixtral (Q4_K, 4 experts)', async () => tinyMixtral, tiny.describe],
] as const;

for (const [name, modelPath, gated] of MODELS) {
  gated(name, () => {
    let engine: Engine;
    beforeAll(async () => {
      engine = await Engine.load({ model: await modelPath(), kvTokens: 2048, prefillChunk: 64 });
    }, WORK_BOUNDED);
    afterAll(() => engine?.close());

    it(
      'gives each request the same greedy tokens alone and among 9 others',
      async () => {
        const prompts = TEXTS.map((t) => Array.from(engine.tokenizer.encode(t)));
        const expected = await alone(engine, prompts, 12);
        const { results, peak } = await together(engine, prompts, 12);
        expect(peak).toBeGreaterThan(1);
        expect(results).toEqual(expected);
        expect(engine.load).toMatchObject({ running: 0, waiting: 0, freeBlocks: engine.info.nBlocks });
      },
      WORK_BOUNDED,
    );
  });
}

describe('the prefix cache', () => {
  const models = [
    ['the default model (Q4_1)', () => fetchRegistryModel('smollm2-135m-instruct-q4_1'), it],
    ['a tiny Gemma 3 (Q4_K, window 8)', async () => tinyGemma, tiny.it],
  ] as const;
  for (const [name, modelPath, gated] of models)
    gated(
      `gives the same bits on and off, on ${name}`,
      async () => {
        const path = await modelPath();
        const on = await Engine.load({ model: path, kvTokens: 2048, prefixCaching: true });
        const off = await Engine.load({ model: path, kvTokens: 2048, prefixCaching: false });
        try {
          // A shared system prompt of several blocks, then different questions; the penalties
          // check that the sampler sees the cached prefix too.
          const system = 'You are a careful assistant. Answer in one short sentence, and never make things up. '.repeat(4);
          const questions = ['What is the capital of France?', 'Name a prime number.', 'What colour is the sky?'];
          const options = { maxTokens: 16, ignoreEos: true, repetitionPenalty: 1.3 };
          for (const q of questions) {
            const prompt = Array.from(on.tokenizer.encode(system + q));
            const [a, b] = [await on.complete({ prompt, ...options }).result, await off.complete({ prompt, ...options }).result];
            expect(a.tokenIds).toEqual(b.tokenIds);
            // Logits too, bit for bit.
            expect(Array.from(await on.nextTokenLogits(prompt))).toEqual(Array.from(await off.nextTokenLogits(prompt)));
          }
          const stats = on.load.prefixCache;
          expect(stats.hitBlocks).toBeGreaterThan(0);
          expect(off.load.prefixCache.hitBlocks).toBe(0);
          // Concurrent requests with the same prefix: the same tokens as one at a time.
          const prompts = questions.map((q) => Array.from(on.tokenizer.encode(system + q)));
          const together = await Promise.all(prompts.map((prompt) => on.complete({ prompt, ...options }).result));
          const alone = [];
          for (const prompt of prompts) alone.push(await off.complete({ prompt, ...options }).result);
          expect(together.map((r) => r.tokenIds)).toEqual(alone.map((r) => r.tokenIds));
          expect(on.load.freeBlocks).toBe(on.info.nBlocks);
        } finally {
          on.close();
          off.close();
        }
      },
      WORK_BOUNDED,
    );
});

describe('the scheduler', () => {
  it(
    'preempts when the KV cache runs out, and the outputs stay the same',
    async () => {
      const path = await fetchRegistryModel('smollm2-135m-instruct-q4_1');
      // 8 blocks of 16 tokens: four sequences of ~10 + 40 tokens cannot all fit.
      const engine = await Engine.load({ model: path, kvTokens: 128, blockSize: 16 });
      try {
        const prompts = TEXTS.slice(0, 4).map((t) => Array.from(engine.tokenizer.encode(t)));
        const expected = await alone(engine, prompts, 40);
        const { results } = await together(engine, prompts, 40);
        expect(engine.load.preemptions).toBeGreaterThan(0);
        expect(results).toEqual(expected);
        expect(engine.load.freeBlocks).toBe(engine.info.nBlocks);
      } finally {
        engine.close();
      }
    },
    WORK_BOUNDED,
  );

  it('continues a seeded sampler where it was after a preemption', async () => {
    const path = await fetchRegistryModel('smollm2-135m-instruct-q4_1');
    const engine = await Engine.load({ model: path, kvTokens: 128, blockSize: 16 });
    try {
      const prompts = TEXTS.slice(0, 4).map((t) => Array.from(engine.tokenizer.encode(t)));
      const sampled = (prompt: number[], i: number) =>
        engine.complete({ prompt, maxTokens: 40, ignoreEos: true, temperature: 0.9, topP: 0.95, seed: 100 + i }).result;
      const expected = [];
      for (const [i, prompt] of prompts.entries()) expected.push((await sampled(prompt, i)).tokenIds);
      const before = engine.load.preemptions;
      const results = await Promise.all(prompts.map(async (prompt, i) => (await sampled(prompt, i)).tokenIds));
      expect(engine.load.preemptions).toBeGreaterThan(before);
      expect(results).toEqual(expected);
    } finally {
      engine.close();
    }
  }, 300_000);

  it(
    'frees a cancelled sequence at once and keeps the others going',
    async () => {
      const path = await fetchRegistryModel('smollm2-135m-instruct-q4_1');
      const engine = await Engine.load({ model: path, kvTokens: 1024 });
      try {
        const prompt = Array.from(engine.tokenizer.encode(TEXTS[0]!));
        const expected = (await engine.complete({ prompt, maxTokens: 24, ignoreEos: true }).result).tokenIds;
        const controller = new AbortController();
        const cancelled = engine.complete({ prompt, maxTokens: 500, ignoreEos: true, signal: controller.signal });
        const other = engine.complete({ prompt, maxTokens: 24, ignoreEos: true });
        let seen = 0;
        for await (const _ of cancelled) if (++seen === 3) controller.abort();
        const result = await cancelled.result;
        expect(result.finishReason).toBe('cancelled');
        expect(result.tokenIds.length).toBeLessThan(10);
        expect((await other.result).tokenIds).toEqual(expected);
        expect(engine.load).toMatchObject({ running: 0, freeBlocks: engine.info.nBlocks });
        // A request cancelled before it starts never runs.
        const gone = new AbortController();
        gone.abort();
        expect((await engine.complete({ prompt, maxTokens: 5, signal: gone.signal }).result).tokenIds).toEqual([]);
      } finally {
        engine.close();
      }
    },
    WORK_BOUNDED,
  );

  it(
    'sizes the KV cache from a memory budget',
    async () => {
      const path = await fetchRegistryModel('smollm2-135m-instruct-q4_1');
      const engine = await Engine.load({ model: path, kvCacheMb: 8, blockSize: 16 });
      try {
        const { nLayers, nKvHeads, headDim, blockSize, nBlocks, kvCacheBytes } = engine.info;
        const perBlock = 2 * nLayers * nKvHeads * blockSize * headDim * 2; // K and V, f16
        expect(nBlocks).toBe(Math.floor((8 * 2 ** 20) / perBlock));
        expect(kvCacheBytes).toBe(nBlocks * perBlock);
      } finally {
        engine.close();
      }
      await expect(Engine.load({ model: path, kvCacheFraction: 1.5 })).rejects.toMatchObject({ code: 'InvalidArgumentError' });
    },
    WORK_BOUNDED,
  );

  it(
    'keeps the cache in Q8_0 on request: about half the memory per token, close logits',
    async () => {
      const path = await fetchRegistryModel('smollm2-135m-instruct-q4_1');
      const f16 = await Engine.load({ model: path, kvCacheMb: 32 });
      const q8 = await Engine.load({ model: path, kvCacheMb: 32, kvCacheType: 'q8_0' });
      try {
        // 34 bytes per 32 values instead of 64.
        const perBlock = (bytesPerValue: number) =>
          2 * f16.info.nLayers * f16.info.nKvHeads * f16.info.blockSize * f16.info.headDim * bytesPerValue;
        expect(q8.info.nBlocks).toBe(Math.floor((32 * 2 ** 20) / perBlock(34 / 32)));
        expect(q8.info.nBlocks / f16.info.nBlocks).toBeGreaterThan(1.8);
        for (const text of TEXTS.slice(0, 3)) {
          const prompt = Array.from(f16.tokenizer.encode(text));
          const [a, b] = [await f16.nextTokenLogits(prompt), await q8.nextTokenLogits(prompt)];
          let sum = 0;
          let argA = 0;
          let argB = 0;
          a.forEach((v, i) => {
            sum += Math.abs(v - b[i]!);
            if (v > a[argA]!) argA = i;
            if (b[i]! > b[argB]!) argB = i;
          });
          console.log(`Q8_0 KV cache, ${JSON.stringify(text)}: mean |Δ logit| ${(sum / a.length).toFixed(4)}`);
          expect(sum / a.length).toBeLessThan(0.5);
          expect(argB).toBe(argA);
        }
        const out = await q8.complete({ prompt: Array.from(q8.tokenizer.encode(TEXTS[0]!)), maxTokens: 8 }).result;
        expect(out.tokenIds.length).toBeGreaterThan(0);
      } finally {
        f16.close();
        q8.close();
      }
      await expect(Engine.load({ model: path, kvCacheType: 'q4' as never })).rejects.toMatchObject({ code: 'InvalidArgumentError' });
    },
    WORK_BOUNDED,
  );

  it(
    'refuses at once when the queue is full',
    async () => {
      const path = await fetchRegistryModel('smollm2-135m-instruct-q4_1');
      const engine = await Engine.load({ model: path, kvTokens: 1024, maxRunning: 1, maxWaiting: 1 });
      try {
        const prompt = Array.from(engine.tokenizer.encode(TEXTS[0]!));
        const first = engine.complete({ prompt, maxTokens: 20, ignoreEos: true });
        const second = engine.complete({ prompt, maxTokens: 20, ignoreEos: true });
        // Let the first be admitted and the second queue.
        await new Promise((resolve) => setTimeout(resolve, 50));
        const third = engine.complete({ prompt, maxTokens: 20, ignoreEos: true });
        await expect(third.result).rejects.toMatchObject({ code: 'OverloadedError' });
        await expect(third.result).rejects.toBeInstanceOf(EngineError);
        expect((await first.result).tokenIds).toHaveLength(20);
        expect((await second.result).tokenIds).toHaveLength(20);
      } finally {
        engine.close();
      }
    },
    WORK_BOUNDED,
  );

  it(
    'lets running requests finish on close, refuses new ones, then frees the native model',
    async () => {
      const path = await fetchRegistryModel('smollm2-135m-instruct-q4_1');
      const engine = await Engine.load({ model: path, kvTokens: 512 });
      const prompt = Array.from(engine.tokenizer.encode(TEXTS[0]!));
      const running = engine.complete({ prompt, maxTokens: 12, ignoreEos: true });
      await new Promise((resolve) => setTimeout(resolve, 20));
      engine.close();
      await expect(engine.complete({ prompt, maxTokens: 4 }).result).rejects.toMatchObject({ code: 'EngineClosedError' });
      await expect(engine.nextTokenLogits(prompt)).rejects.toMatchObject({ code: 'EngineClosedError' });
      expect((await running.result).tokenIds).toHaveLength(12);
      // The handle is private; reaching it here checks that the weights and cache are gone.
      const native = (engine as unknown as { model: { info(): unknown } }).model;
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(() => native.info()).toThrow(/released/);
    },
    WORK_BOUNDED,
  );
});
