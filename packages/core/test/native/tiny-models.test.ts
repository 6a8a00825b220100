/**
 * Every architecture we implement (llama, qwen2, qwen3, mixtral, qwen3moe, phi2, phi3, starcoder2, gemma, gemma2, gemma3,
 * phimoe, deepseekv2, deepseekv3), as a small random-weight model
 * written by our own GGUF writer (see fixtures/tiny-model.ts), against llama.cpp
 * (node-llama-cpp) on the same file: F16, Q8_0 and Q4_K weights, plus the RoPE scalings
 * (linear, YaRN, Llama 3 frequency factors) and a 4-token sliding window on Gemma 3.
 *
 * Tolerance: with F16 weights llama.cpp rounds activations to f16 (we keep f32), which moves
 * logits by ~3e-3 on these tiny models; quantized weights give bit-identical logits (measured
 * max |Δ| = 0: we reproduce its kernels' summation orders, including those of the Q4_0 and
 * Q4_K kernels it uses on weights it repacks at load). So first-step logits must agree within 0.02
 * and greedy tokens must agree until llama.cpp's own margin between its token and ours is
 * below 0.05 (another CPU makes llama.cpp pick other kernels).
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getLlama, type Llama } from 'node-llama-cpp';

import type { GgmlTypeName } from '@mistralrs/quant';

import { Engine } from '../../src/index.js';
import { vocabPath, writeTinyGguf, type TinySpec } from '../fixtures/tiny-model.js';

const LOGIT_MAX_ABS = 0.02;
const TIE_MARGIN = 0.05;
const haveVocab = existsSync(vocabPath);
if (!haveVocab) console.warn(`SKIPPED tiny-model comparison: no vocabulary at ${vocabPath}`);

let dir: string;
let llama: Llama;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tiny-models-'));
  llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
}, 120_000);
afterAll(async () => {
  await llama?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const PROMPTS = [
  [1, 450, 4996, 17354, 1701, 432],
  [1, 910, 338, 263, 1243, 310, 278, 11262, 1788, 29889, 306],
  [1, 29871, 13, 3166, 12655, 408, 7442],
];

const TYPES = ['F16', 'Q8_0', 'Q4_K'] as const;
type Case = [name: string, type: GgmlTypeName, spec: TinySpec];
const CASES: Case[] = [
  ...TYPES.map((type): Case => ['llama', type, { arch: 'llama' }]),
  ...TYPES.map((type): Case => ['qwen2', type, { arch: 'qwen2' }]),
  ...TYPES.map((type): Case => ['qwen3', type, { arch: 'qwen3' }]),
  ...TYPES.map((type): Case => ['mixtral (4 experts, top 2)', type, { arch: 'mixtral' }]),
  ...TYPES.map((type): Case => ['qwen3moe (4 experts, top 2)', type, { arch: 'qwen3moe' }]),
  ...TYPES.map((type): Case => ['phi3', type, { arch: 'phi3' }]),
  ...TYPES.map((type): Case => ['phi2 (parallel block, partial rotary)', type, { arch: 'phi2' }]),
  ...TYPES.map((type): Case => ['starcoder2', type, { arch: 'starcoder2' }]),
  ...TYPES.map((type): Case => ['gemma', type, { arch: 'gemma' }]),
  ...TYPES.map((type): Case => ['gemma2 (window 4, soft-caps)', type, { arch: 'gemma2', slidingWindow: 4 }]),
  ...TYPES.map((type): Case => ['gemma3 (window 4)', type, { arch: 'gemma3', slidingWindow: 4 }]),
  ...TYPES.map((type): Case => ['phimoe (4 experts, top 2, biased norms)', type, { arch: 'phimoe' }]),
  ...TYPES.map((type): Case => ['deepseekv2 (MLA, dense + 4 experts, shared expert)', type, { arch: 'deepseekv2' }]),
  ...TYPES.map((type): Case => ['deepseekv3 (MLA, low-rank Q, sigmoid router, 4 groups)', type, { arch: 'deepseekv3' }]),
  // The other types of the real models' files (Gemma 3's Q4_K_M mixes in Q5_0 and Q6_K), and
  // Q4_0, which llama.cpp repacks like Q4_K (its own order of summation).
  ...(['Q4_0', 'Q4_1', 'Q5_0', 'Q6_K'] as const).map((type): Case => ['llama', type, { arch: 'llama' }]),
  ['llama, linear RoPE scaling ×2', 'F16', { arch: 'llama', ropeScaling: { type: 'linear', factor: 2 } }],
  [
    'llama, Llama 3 RoPE frequency factors',
    'F16',
    { arch: 'llama', ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 64 } },
  ],
  ['qwen2, YaRN ×4 over 64 tokens', 'F16', { arch: 'qwen2', ropeScaling: { type: 'yarn', factor: 4, originalContext: 64 } }],
  [
    'deepseekv3, YaRN ×4 with mscale_all_dim',
    'Q8_0',
    { arch: 'deepseekv3', ropeScaling: { type: 'yarn', factor: 4, originalContext: 64, mscaleAllDim: 1 } },
  ],
  // The context (256) is past the original 64: the long factors; within 384: the short ones.
  ['phi3, LongRoPE long factors', 'F16', { arch: 'phi3', ropeScaling: { type: 'longrope', originalContext: 64 } }],
  ['phi3, LongRoPE long factors', 'Q8_0', { arch: 'phi3', ropeScaling: { type: 'longrope', originalContext: 64 } }],
  ['phi3, LongRoPE short factors', 'Q8_0', { arch: 'phi3', ropeScaling: { type: 'longrope', originalContext: 384 } }],
];

describe.each(haveVocab ? CASES : [])('tiny %s, %s weights', (name, type, spec) => {
  it('matches llama.cpp: first-step logits and greedy tokens', async () => {
    const path = join(dir, `tiny-${name.replace(/\W+/g, '-')}-${type}.gguf`);
    await writeTinyGguf(path, spec, type);
    const engine = await Engine.load({ model: path, kvTokens: 256 });
    const model = await llama.loadModel({ modelPath: path });
    const context = await model.createContext({ contextSize: 256, threads: 2, flashAttention: false });
    try {
      for (const prompt of PROMPTS) {
        const ours = await engine.complete({ prompt, maxTokens: 16, ignoreEos: true }).result;
        const oursFirst = await engine.nextTokenLogits(prompt);
        const seq = context.getSequence();
        try {
          let input = prompt;
          for (let step = 0; step < ours.tokenIds.length; step++) {
            const last = input.length - 1;
            const out = await seq.controlledEvaluate(
              input.map((t, i) => (i === last ? [t, { generateNext: { logits: true } }] : t)),
            );
            const logits = out[last]!.next!.logits as Map<number, number>;
            if (step === 0) {
              let maxAbs = 0;
              for (const [t, l] of logits) maxAbs = Math.max(maxAbs, Math.abs(oursFirst[t]! - l));
              console.log(`${name} ${type} prompt of ${prompt.length}: first-step logits max |Δ| ${maxAbs.toExponential(2)}`);
              expect(maxAbs).toBeLessThan(LOGIT_MAX_ABS);
            }
            let best = -1;
            let bestLogit = -Infinity;
            for (const [t, l] of logits) if (l > bestLogit) [best, bestLogit] = [t, l];
            const ourToken = ours.tokenIds[step]!;
            if (best !== ourToken) {
              console.log(`${name} ${type}: greedy diverges at token ${step} (margin ${(bestLogit - logits.get(ourToken)!).toFixed(4)})`);
              expect(bestLogit - logits.get(ourToken)!).toBeLessThan(TIE_MARGIN);
              break;
            }
            input = [best];
          }
        } finally {
          seq.dispose();
        }
      }
    } finally {
      engine.close();
      await context.dispose();
      await model.dispose();
    }
  }, 180_000);
});
