/**
 * Speculative decoding is exact: with proposals (prompt lookup, or a draft model) verified in
 * one pass, greedy outputs are token for token those of the model decoding alone, on the
 * default model (Q4_1), on Qwen2.5-Coder-0.5B (Q4_K_M) and on tiny random models of several
 * architectures and weight types (Q4_K's repacked kernels order a product's rows differently
 * in groups of four, so a verify row must take the single-row order to give a decode step's
 * bits). Also alone and in
 * batches, with grammars (whose forced tokens end a run of kept proposals), through
 * preemption, and with seeded sampling (reproducible; that sampled outputs keep the model's
 * distribution is the χ² test of `speculative/verify.rs`). Work is bounded by token counts.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { needsFixtures } from '../../../../test-support/fixtures.js';
import { Engine, type EngineOptions, fetchRegistryModel } from '../../src/index.js';
import { vocabPath, writeTinyGguf, type TinySpec } from '../fixtures/tiny-model.js';
import { WORK_BOUNDED } from '../support/fidelity.js';

const tiny = needsFixtures('the tiny models', [vocabPath]);
let dir: string;
const path = (name: string) => join(dir, `${name}.gguf`);

const TINY: Array<[string, TinySpec, 'F16' | 'Q8_0' | 'Q4_K']> = [
  ['llama-q4k', { arch: 'llama', untiedOutput: true }, 'Q4_K'],
  ['llama-f16', { arch: 'llama', untiedOutput: true }, 'F16'],
  ['gemma3-q4k', { arch: 'gemma3', slidingWindow: 8, layers: 6, untiedOutput: true }, 'Q4_K'],
  ['qwen3-q80', { arch: 'qwen3', untiedOutput: true }, 'Q8_0'],
  ['mixtral-q4k', { arch: 'mixtral', untiedOutput: true }, 'Q4_K'],
];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'speculative-'));
  if (tiny.present) for (const [name, spec, type] of TINY) await writeTinyGguf(path(name), spec, type);
}, WORK_BOUNDED);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TEXTS = [
  'The capital of France is',
  'def add(a, b):\n    return a + b\n\ndef add(a, b):\n    return',
  'one two three four five one two three four five one two three',
  'Once upon a time, in a small village, there lived an old',
];

/** Each prompt's tokens with the log-probabilities of each (and of the 3 best): those of a kept
 * proposal come from its verify row, so they show a row that is not a decode step's bits even
 * where the greedy choice would not change. */
async function generate(engine: Engine, prompts: number[][], maxTokens: number, together: boolean) {
  const run = async (prompt: number[]) => {
    const generation = engine.complete({ prompt, maxTokens, ignoreEos: true, logprobs: true, topLogprobs: 3 });
    const logprobs = [];
    for await (const chunk of generation) logprobs.push(...(chunk.logprobs ?? []));
    const result = await generation.result;
    return { ...result, logprobs };
  };
  if (together) return Promise.all(prompts.map(run));
  const out = [];
  for (const prompt of prompts) out.push(await run(prompt));
  return out;
}

/** Greedy outputs with `speculative` equal those without, alone and all at once. */
function exactness(name: string, target: () => Promise<string>, speculative: () => EngineOptions['speculative'], maxTokens: number) {
  it(
    `${name}: the same greedy tokens and log-probabilities as decoding alone, alone and in a batch`,
    async () => {
      const model = await target();
      const plain = await Engine.load({ model });
      const prompts = TEXTS.map((t) => plain.encodeChatPrompt(t));
      const expected = (await generate(plain, prompts, maxTokens, false)).map((r) => [r.tokenIds, r.logprobs]);
      plain.close();
      const spec = await Engine.load({ model, speculative: speculative() });
      for (const together of [false, true]) {
        const results = await generate(spec, prompts, maxTokens, together);
        expect(results.map((r) => [r.tokenIds, r.logprobs])).toEqual(expected);
      }
      const counts = spec.load.speculation;
      spec.close();
      expect(counts.proposed).toBeGreaterThan(0);
      return counts;
    },
    WORK_BOUNDED,
  );
}

describe('speculative decoding on the default model (Q4_1)', () => {
  const model = () => fetchRegistryModel('smollm2-135m-instruct-q4_1');
  exactness('prompt lookup', model, () => ({ kind: 'ngram', gamma: 4, minN: 1 }), 24);
  it(
    'a draft that is the model itself: every proposal of a decode-order row is kept',
    async () => {
      const m = await model();
      const plain = await Engine.load({ model: m });
      const prompt = plain.encodeChatPrompt(TEXTS[3]!);
      const expected = (await plain.complete({ prompt, maxTokens: 20, ignoreEos: true }).result).tokenIds;
      plain.close();
      const spec = await Engine.load({ model: m, speculative: { kind: 'draft', draftModel: m, gamma: 3 } });
      const result = await spec.complete({ prompt, maxTokens: 20, ignoreEos: true }).result;
      spec.close();
      expect(result.tokenIds).toEqual(expected);
      // The draft's first guess follows its own whole-prompt pass; every later one is the
      // model's own decode-order token, so all of those are kept.
      const { proposed, accepted } = result.speculation!;
      expect(proposed).toBeGreaterThan(10);
      expect(proposed - accepted).toBeLessThanOrEqual(1);
    },
    WORK_BOUNDED,
  );
});

describe('speculative decoding on Qwen2.5-Coder-0.5B-Instruct (Q4_K_M, qwen2)', () => {
  const model = () => fetchRegistryModel('qwen2.5-coder-0.5b-instruct-q4_k_m');
  exactness('prompt lookup', model, () => ({ kind: 'ngram', gamma: 4 }), 24);
});

tiny.describe('speculative decoding on tiny models', () => {
  // Random models seldom repeat their context, so prompt lookup proposes little there; a draft
  // that is the model itself proposes at every step.
  exactness(
    'llama-q4k, prompt lookup',
    async () => path('llama-q4k'),
    () => ({ kind: 'ngram', gamma: 5, minN: 1 }),
    20,
  );
  for (const [name] of TINY) {
    exactness(
      `${name}, drafted by itself`,
      async () => path(name),
      () => ({ kind: 'draft', draftModel: path(name), gamma: 5 }),
      20,
    );
  }
  // A draft of the same weights in other types: close, so most guesses are kept, not all.
  exactness(
    'llama-q4k drafted by llama-f16',
    async () => path('llama-q4k'),
    () => ({ kind: 'draft', draftModel: path('llama-f16'), gamma: 4 }),
    20,
  );
  exactness(
    'mixtral-q4k drafted by llama-q4k',
    async () => path('mixtral-q4k'),
    () => ({ kind: 'draft', draftModel: path('llama-q4k'), gamma: 2 }),
    16,
  );

  it(
    'with a grammar: the same constrained tokens, forced runs included',
    async () => {
      const grammar = { type: 'regex' as const, value: '(ab|cd|the )+[0-9]{3}' };
      const run = async (speculative?: EngineOptions['speculative']) => {
        const engine = await Engine.load({ model: path('llama-q4k'), ...(speculative ? { speculative } : {}) });
        const prompt = engine.encodeChatPrompt('the the the ab ab cd');
        const out = await Promise.all([0, 1].map(() => engine.complete({ prompt, maxTokens: 24, grammar }).result));
        engine.close();
        return out.map((r) => [r.tokenIds, r.text]);
      };
      const expected = await run();
      expect(await run({ kind: 'ngram', gamma: 4, minN: 1 })).toEqual(expected);
      expect(await run({ kind: 'draft', draftModel: path('llama-f16'), gamma: 4 })).toEqual(expected);
    },
    WORK_BOUNDED,
  );

  it(
    'through preemption: sequences that give their blocks back and recompute end the same',
    async () => {
      const model = path('gemma3-q4k');
      const plain = await Engine.load({ model });
      const prompts = TEXTS.map((t) => plain.encodeChatPrompt(t));
      const expected = (await generate(plain, prompts, 40, false)).map((r) => [r.tokenIds, r.logprobs]);
      plain.close();
      // 6 blocks of 16 for 4 sequences of up to ~60 tokens: someone must be preempted.
      const spec = await Engine.load({ model, kvTokens: 96, blockSize: 16, speculative: { kind: 'draft', draftModel: model, gamma: 4 } });
      const results = await generate(spec, prompts, 40, true);
      const { preemptions } = spec.load;
      spec.close();
      expect(preemptions).toBeGreaterThan(0);
      expect(results.map((r) => [r.tokenIds, r.logprobs])).toEqual(expected);
    },
    WORK_BOUNDED,
  );

  it(
    'seeded sampling is reproducible with proposals verified by rejection sampling',
    async () => {
      const engine = await Engine.load({
        model: path('llama-q4k'),
        speculative: { kind: 'draft', draftModel: path('llama-f16'), gamma: 4 },
      });
      const prompt = engine.encodeChatPrompt(TEXTS[2]!);
      const sample = (seed: number) => engine.complete({ prompt, maxTokens: 24, ignoreEos: true, temperature: 0.8, topK: 40, seed }).result;
      const [a, b, c] = [await sample(7), await sample(7), await sample(8)];
      engine.close();
      expect(b.tokenIds).toEqual(a.tokenIds);
      expect(c.tokenIds).not.toEqual(a.tokenIds);
      expect(a.speculation!.accepted).toBeGreaterThan(0);
    },
    WORK_BOUNDED,
  );

  it('refuses a draft with another vocabulary, a missing draft, and a bad gamma', async () => {
    const other = await fetchRegistryModel('smollm2-135m-instruct-q4_1');
    await expect(Engine.load({ model: path('llama-q4k'), speculative: { kind: 'draft', draftModel: other } })).rejects.toThrow(
      /draft model's tokenizer differs .*49152 tokens against 32000/,
    );
    await expect(
      Engine.load({ model: path('llama-q4k'), speculative: { kind: 'draft', draftModel: join(dir, 'none.gguf') } }),
    ).rejects.toThrow(/^draft model ".*none\.gguf": no such file or folder/);
    await expect(Engine.load({ model: path('llama-q4k'), speculative: { kind: 'ngram', gamma: 0 } })).rejects.toThrow(
      /gamma must be an integer from 1 to 32, got 0/,
    );
  });
});
