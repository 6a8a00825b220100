/**
 * The same weights through both loaders: each architecture's tiny model (fixtures/tiny-model.ts)
 * written as a GGUF the way llama.cpp's converter lays it out (Llama's Q/K rows permuted,
 * Gemma's norms shifted by 1, Llama 3 scaling as a `rope_freqs` tensor) and as a Hugging Face
 * folder (config.json, sharded safetensors, tokenizer.json) must give the same model: logits
 * within float rounding (the rotation pairs elements in another order) and the same tokens.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { needsFixtures } from '../../../../test-support/fixtures.js';
import { Engine } from '../../src/index.js';
import { hfTokenizerDir, vocabPath, writeTinyGguf, writeTinyHf, type TinySpec } from '../fixtures/tiny-model.js';

const fixtures = needsFixtures('the tiny models', [vocabPath, join(hfTokenizerDir, 'tokenizer.json')]);

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'hf-loader-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CASES: Array<[string, TinySpec, string]> = [
  ['llama', { arch: 'llama' }, 'llama'],
  ['mistral (window 4)', { arch: 'mistral', slidingWindow: 4 }, 'llama'],
  ['qwen2', { arch: 'qwen2' }, 'qwen2'],
  ['qwen3', { arch: 'qwen3' }, 'qwen3'],
  ['mixtral (4 experts, top 2)', { arch: 'mixtral' }, 'mixtral'],
  ['qwen3moe (4 experts, top 2)', { arch: 'qwen3moe' }, 'qwen3moe'],
  ['phi3', { arch: 'phi3' }, 'phi3'],
  ['phi2', { arch: 'phi2' }, 'phi2'],
  ['starcoder2', { arch: 'starcoder2' }, 'starcoder2'],
  ['gemma', { arch: 'gemma' }, 'gemma'],
  ['gemma2 (window 4, soft-caps)', { arch: 'gemma2', slidingWindow: 4 }, 'gemma2'],
  ['gemma3 (window 4)', { arch: 'gemma3', slidingWindow: 4 }, 'gemma3'],
  ['llama, Llama 3 scaling', { arch: 'llama', ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 64 } }, 'llama'],
  ['qwen2, YaRN', { arch: 'qwen2', ropeScaling: { type: 'yarn', factor: 4, originalContext: 64 } }, 'qwen2'],
  ['phi3, LongRoPE', { arch: 'phi3', ropeScaling: { type: 'longrope', originalContext: 64 } }, 'phi3'],
  ['phimoe', { arch: 'phimoe' }, 'phimoe'],
  ['deepseekv2', { arch: 'deepseekv2' }, 'deepseek2'],
  ['deepseekv3', { arch: 'deepseekv3' }, 'deepseek2'],
  ['deepseekv2, YaRN with mscale_all_dim', { arch: 'deepseekv2', ropeScaling: { type: 'yarn', factor: 4, originalContext: 64, mscaleAllDim: 0.707 } }, 'deepseek2'],
];

fixtures.describe.each(CASES)('%s weights through the GGUF and the Hugging Face loaders', (name, spec, arch) => {
  it('give the same logits and tokens', async () => {
    const slug = name.replace(/\W+/g, '-');
    const gguf = join(dir, `${slug}.gguf`);
    const hf = join(dir, slug);
    await writeTinyGguf(gguf, spec, 'F16');
    await writeTinyHf(hf, spec);
    const a = await Engine.load({ model: gguf, kvTokens: 128 });
    const b = await Engine.load({ model: hf, kvTokens: 128 });
    try {
      expect(b.info.architecture).toBe(arch);
      for (const prompt of [
        [1, 450, 4996, 17354, 1701],
        [1, 910, 338, 263, 1243, 310, 278, 11262, 1788],
      ]) {
        const la = await a.nextTokenLogits(prompt);
        const lb = await b.nextTokenLogits(prompt);
        let maxAbs = 0;
        la.forEach((v, i) => (maxAbs = Math.max(maxAbs, Math.abs(v - lb[i]!))));
        expect(maxAbs).toBeLessThan(1e-3);
        const ga = await a.complete({ prompt, maxTokens: 12, ignoreEos: true }).result;
        const gb = await b.complete({ prompt, maxTokens: 12, ignoreEos: true }).result;
        expect(gb.tokenIds).toEqual(ga.tokenIds);
      }
    } finally {
      a.close();
      b.close();
    }
  }, 120_000);
});
