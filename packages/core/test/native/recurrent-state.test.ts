/**
 * Models with a recurrent state per sequence (LFM2's short convolutions, Granite 4 H's Mamba-2
 * layers, Qwen3-Next's gated delta nets): the runner carries each sequence's state from step to
 * step, beside its KV blocks. On a tiny LFM2, Granite 4 H and Qwen3-Next in Q4_K (own output
 * heads, so that greedy paths wander): requests run together give the tokens each gives alone,
 * with long prompts prefilled in chunks while others decode; preemption (the state rebuilt
 * from the recomputed prompt) and cancellation leave the others' tokens unchanged; a prompt
 * prefilled in chunks gives the logits of one prefilled at once; prefix caching is off (a
 * cached block holds no state) and gives the same bits as asking for it off; speculative
 * decoding, and drafting for another model, are refused; a native step that does not start
 * where the state is fails clearly. The logits themselves are checked against llama.cpp in tiny-models.test.ts
 * (several sequences in the same steps). Work is fixed by token counts (`WORK_BOUNDED`). */
import { afterAll, beforeAll, expect } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { needsFixtures } from '../../../../test-support/fixtures.js';
import { Engine } from '../../src/index.js';
import { binding } from '../../src/native.js';
import { vocabPath, writeTinyGguf } from '../fixtures/tiny-model.js';
import { maxAbsDiff, WORK_BOUNDED } from '../support/fidelity.js';
import { alone, BATCH_TEXTS as TEXTS, together } from '../support/together.js';

const tiny = needsFixtures('the tiny models', [vocabPath]);
const dir = mkdtempSync(join(tmpdir(), 'recurrent-'));
/** Each model, and the state it keeps per sequence: four recurrent layers of six. */
const MODELS = [
  // Two 256-wide rows of f32 per convolution.
  { arch: 'lfm2', stateBytes: 4 * 2 * 256 * 4 },
  // Per Mamba layer: three rows of the convolution's 768 channels, and the scan's 512 × 64.
  { arch: 'granite', stateBytes: 4 * (3 * 768 + 512 * 64) * 4 },
  // Per delta net: three rows of the convolution's 512 channels (q, k, v), and 4 value heads'
  // 64 × 64 states.
  { arch: 'qwen3next', stateBytes: 4 * (3 * 512 + 4 * 64 * 64) * 4 },
] as const;
const pathOf = (arch: string) => join(dir, `tiny-${arch}-q4k.gguf`);
beforeAll(async () => {
  if (!tiny.present) return;
  for (const { arch } of MODELS) await writeTinyGguf(pathOf(arch), { arch, layers: 6, untiedOutput: true }, 'Q4_K');
}, WORK_BOUNDED);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

for (const { arch, stateBytes } of MODELS) {
  tiny.describe(`a model with a recurrent state per sequence (tiny ${arch}, Q4_K)`, () => {
    const model = pathOf(arch);
    const encode = (engine: Engine, texts: string[]) => texts.map((t) => Array.from(engine.tokenizer.encode(t)));

    tiny.it(
      'reports its state and gives each request the same tokens alone and among others',
      async () => {
        const engine = await Engine.load({ model, kvTokens: 2048, prefillChunk: 32 });
        try {
          expect(engine.info.recurrentStateBytes).toBe(stateBytes);
          const prompts = encode(engine, TEXTS);
          expect(prompts.at(-1)!.length).toBeGreaterThan(64);
          const expected = await alone(engine, prompts, 16);
          const { results, peak } = await together(engine, prompts, 16);
          expect(peak).toBeGreaterThan(1);
          expect(results).toEqual(expected);
          expect(engine.load).toMatchObject({ running: 0, waiting: 0, freeBlocks: engine.info.nBlocks });
        } finally {
          engine.close();
        }
      },
      WORK_BOUNDED,
    );

    tiny.it(
      'carries the state across prefill chunks: the logits of a prompt in chunks of 8 and in one',
      async () => {
        const chunked = await Engine.load({ model, kvTokens: 512, prefillChunk: 8 });
        const whole = await Engine.load({ model, kvTokens: 512, prefillChunk: 512 });
        try {
          const [prompt] = encode(chunked, [TEXTS.at(-1)!]);
          const diff = maxAbsDiff(await chunked.nextTokenLogits(prompt!), await whole.nextTokenLogits(prompt!));
          // Only the products' grouping of rows differs (Q8_K activations per row either way).
          console.log(`${arch}, ${prompt!.length} tokens in chunks of 8 vs one: max |Δ logit| ${diff.toExponential(2)}`);
          expect(diff).toBeLessThan(1e-3);
        } finally {
          chunked.close();
          whole.close();
        }
      },
      WORK_BOUNDED,
    );

    tiny.it(
      'rebuilds a preempted sequence’s state from its recomputed tokens: the outputs stay the same',
      async () => {
        // 8 blocks of 16 tokens: four sequences of ~10 + 40 tokens cannot all fit.
        const engine = await Engine.load({ model, kvTokens: 128, blockSize: 16 });
        try {
          const prompts = encode(engine, TEXTS.slice(0, 4));
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

    tiny.it(
      'frees a cancelled sequence and keeps the others going; a new request starts from a fresh state',
      async () => {
        const engine = await Engine.load({ model, kvTokens: 1024 });
        try {
          const [prompt] = encode(engine, [TEXTS[0]!]);
          const expected = (await engine.complete({ prompt: prompt!, maxTokens: 24, ignoreEos: true }).result).tokenIds;
          const controller = new AbortController();
          const cancelled = engine.complete({ prompt: prompt!, maxTokens: 500, ignoreEos: true, signal: controller.signal });
          const other = engine.complete({ prompt: prompt!, maxTokens: 24, ignoreEos: true });
          let seen = 0;
          for await (const _ of cancelled) if (++seen === 3) controller.abort();
          expect((await cancelled.result).finishReason).toBe('cancelled');
          expect((await other.result).tokenIds).toEqual(expected);
          expect(engine.load).toMatchObject({ running: 0, freeBlocks: engine.info.nBlocks });
          expect((await engine.complete({ prompt: prompt!, maxTokens: 24, ignoreEos: true }).result).tokenIds).toEqual(expected);
        } finally {
          engine.close();
        }
      },
      WORK_BOUNDED,
    );

    tiny.it(
      'runs without prefix caching (a cached block holds no state): the same bits as with it off',
      async () => {
        const on = await Engine.load({ model, kvTokens: 1024, prefixCaching: true });
        const off = await Engine.load({ model, kvTokens: 1024, prefixCaching: false });
        try {
          const system = 'You are a careful assistant. Answer in one short sentence, and never make things up. '.repeat(3);
          for (const q of ['What is the capital of France?', 'Name a prime number.']) {
            const [prompt] = encode(on, [system + q]);
            const options = { prompt: prompt!, maxTokens: 12, ignoreEos: true };
            expect((await on.complete(options).result).tokenIds).toEqual((await off.complete(options).result).tokenIds);
            expect(Array.from(await on.nextTokenLogits(prompt!))).toEqual(Array.from(await off.nextTokenLogits(prompt!)));
          }
          expect(on.load.prefixCache).toMatchObject({ queriedBlocks: 0, hitBlocks: 0, cachedBlocks: 0 });
        } finally {
          on.close();
          off.close();
        }
      },
      WORK_BOUNDED,
    );

    tiny.it('refuses speculative decoding, and refuses to draft for another model, naming the reason', async () => {
      await expect(Engine.load({ model, kvTokens: 256, speculative: { kind: 'ngram' } })).rejects.toMatchObject({
        code: 'InvalidArgumentError',
        message: expect.stringContaining('recurrent state'),
      });
      // An attention-only target (the same vocabulary) with this model as its draft.
      const target = join(dir, 'tiny-llama-target.gguf');
      await writeTinyGguf(target, { arch: 'llama' }, 'Q8_0');
      await expect(
        Engine.load({ model: target, kvTokens: 256, speculative: { kind: 'draft', draftModel: model, gamma: 2 } }),
      ).rejects.toMatchObject({ message: expect.stringContaining('a draft model must be attention-only') });
    });

    tiny.it('fails a native step that does not start where the sequence’s state is, and the sequence goes on from there', async () => {
      const native = await binding.loadModel(model, { kvTokens: 64, blockSize: 16 });
      try {
        const table = Uint32Array.from([0, 1, 2, 3]);
        native.addSequence(1, { temperature: 0 });
        const step = (tokens: number[], startPos: number) =>
          native.step([{ seqId: 1, tokens: Uint32Array.from(tokens), startPos, blockTable: table, sample: true }]);
        await step([1, 450, 4996], 0);
        await expect(step([1701], 5)).rejects.toThrow(/recurrent state holds 3 tokens, but the step starts at 5/);
        const [out] = await step([1701], 3);
        expect(out!.token).toBeGreaterThanOrEqual(0);
      } finally {
        native.release();
      }
    });
  });
}
