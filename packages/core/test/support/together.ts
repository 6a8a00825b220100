/**
 * Greedy generations one request at a time and all at once, for the tests that check a
 * sequence's tokens do not depend on what else runs in its steps.
 */
import type { Engine } from '../../src/index.js';

/** Prompts a batch test runs: short and long, the last prefilled in several chunks while the
 * others decode. */
export const BATCH_TEXTS = [
  'The capital of France is',
  'Write a haiku about the sea. The waves',
  'def fibonacci(n):',
  'Once upon a time, in a small village, there lived an old',
  'The three primary colors are',
  'Water boils at',
  'List three fruits: apple,',
  'In 1492, Columbus',
  'A recursive function is one that',
  'Tell me about the history of the printing press and why it mattered. '.repeat(10),
];

/** Each prompt's greedy tokens, one request after another. */
export async function alone(engine: Engine, prompts: number[][], maxTokens: number): Promise<number[][]> {
  const out = [];
  for (const prompt of prompts) out.push((await engine.complete({ prompt, maxTokens, ignoreEos: true }).result).tokenIds);
  return out;
}

/** All at once; records how many sequences ran together at most. */
export async function together(engine: Engine, prompts: number[][], maxTokens: number) {
  let peak = 0;
  const results = await Promise.all(
    prompts.map(async (prompt) => {
      const generation = engine.complete({ prompt, maxTokens, ignoreEos: true });
      for await (const _ of generation) peak = Math.max(peak, engine.load.running);
      return (await generation.result).tokenIds;
    }),
  );
  return { results, peak };
}
