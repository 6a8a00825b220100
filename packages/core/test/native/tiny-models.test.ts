/**
 * Every architecture we implement (see fixtures/tiny-model.ts), as a small random-weight model
 * written by our own GGUF writer, against llama.cpp (node-llama-cpp) on the same file: F16,
 * Q8_0 and Q4_K weights (and Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q5_K, Q6_K, IQ4_NL, TQ1_0, TQ2_0 on
 * llama; gpt-oss's MXFP4 experts), the RoPE scalings (linear, YaRN, Llama 3 frequency factors, LongRoPE), sliding
 * windows much shorter than the prompt and the generation (Gemma 3 with its global layer,
 * Gemma 2), long generations and several sequences decoded in the same steps.
 *
 * At every step of every generation (the prompt in one step, then one token per step, as the
 * engine runs) our logits are compared with llama.cpp's, fed the same tokens (llama.cpp's
 * greedy path), and the engine's greedy tokens with llama.cpp's:
 *
 * - quantized weights: max |Δ logit| = 0 at every step and every greedy token equal (we
 *   reproduce llama.cpp's kernels' summation orders, including those of the Q4_0 and Q4_K
 *   kernels it uses on weights it repacks at load);
 * - F16 weights: llama.cpp rounds activations to f16 before each F16 matrix product (we keep
 *   f32), so logits may differ by up to F16_MAX_ABS at any step; where that makes our greedy
 *   token differ from llama.cpp's, llama.cpp's own margin between the two must be within twice
 *   that, and the engine's tokens equal llama.cpp's up to that step.
 *
 * These claims hold where both run the AVX2 kernel tier (see support/fidelity.ts); elsewhere
 * the comparisons are reported skipped. The work is fixed by token counts, with no wall-clock
 * limit. The models have an output head of their own (untied) where llama.cpp allows one, and
 * Gemma's scaled embeddings are shrunk, so that greedy paths wander over the vocabulary
 * instead of repeating the prompt's last token.
 */
import { afterAll, describe, expect } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { GgmlTypeName } from '@mistralrs/quant';

import { needsFixtures } from '../../../../test-support/fixtures.js';
import { Engine } from '../../src/index.js';
import { vocabPath, writeTinyGguf, type TinySpec } from '../fixtures/tiny-model.js';
import { kernelTiers, loadPeer, ourSteps, peerSteps, StepComparer, WORK_BOUNDED, type PeerRun } from '../support/fidelity.js';

/** F16 weights: llama.cpp's f16 activations against our f32 ones. Measured max 7.8e-3 over the
 * 60 F16 generations here (phi3 with LongRoPE's long factors); see docs/testing.md. */
const F16_MAX_ABS = 1e-2;
/** Qwen3-Next's F16 bound (measured max 1.25e-2 over its 3 generations). */
const QWEN3_NEXT_F16_MAX_ABS = 1.5e-2;
const VOCAB = 32000;
/** Tokens of context on both sides (a prompt of 70 and 96 generated fit). */
const CONTEXT = 256;

const tiny = needsFixtures('the tiny models', [vocabPath]);
const llama = await loadPeer();
const tiers = kernelTiers(llama);
const gate = tiers.claimed ? tiny : { ...tiny, it: tiny.it.skip as typeof tiny.it };
const tierNote = tiers.claimed ? '' : ` [skipped: our tier ${tiers.ours}, llama.cpp's ${tiers.peer}; the claims are made on avx2]`;

const dir = mkdtempSync(join(tmpdir(), 'tiny-models-'));
afterAll(async () => {
  await llama.dispose();
  rmSync(dir, { recursive: true, force: true });
});

// Lengths 6, 11 and 8: kernels that tile tokens in fours leave the last prompt token alone or
// in a tile, and only llama.cpp's single-row order for it matches then (it computes the last
// layer after attention for the logit rows only).
const PROMPTS = [
  [1, 450, 4996, 17354, 1701, 432],
  [1, 910, 338, 263, 1243, 310, 278, 11262, 1788, 29889, 306],
  [1, 29871, 13, 3166, 12655, 408, 7442, 29889],
];
/** A prompt of `n` tokens (ids spread over the vocabulary). */
const longPrompt = (n: number) => [1, ...Array.from({ length: n - 1 }, (_, i) => 300 + ((i * 7919) % 31000))];

interface Case {
  name: string;
  type: GgmlTypeName;
  spec: TinySpec;
  prompts?: number[][];
  /** Greedy tokens generated per prompt (default 32). */
  tokens?: number;
  /** The F16 bound where an architecture's own differs from F16_MAX_ABS (see its case). */
  f16MaxAbs?: number;
}

/** The greedy paths of tied-embedding models repeat one token: untie where llama.cpp allows. */
const varied = (spec: TinySpec): TinySpec =>
  spec.arch === 'gemma' || spec.arch === 'gemma2' ? { embeddingScale: 0.3, ...spec } : { untiedOutput: true, ...spec };

const TYPES = ['F16', 'Q8_0', 'Q4_K'] as const;
const perType = (name: string, spec: TinySpec): Case[] => TYPES.map((type) => ({ name, type, spec: varied(spec) }));
const CASES: Case[] = [
  ...perType('llama', { arch: 'llama' }),
  ...perType('qwen2', { arch: 'qwen2' }),
  ...perType('qwen3', { arch: 'qwen3' }),
  ...perType('mixtral (4 experts, top 2)', { arch: 'mixtral' }),
  ...perType('qwen3moe (4 experts, top 2)', { arch: 'qwen3moe' }),
  ...perType('phi3', { arch: 'phi3' }),
  ...perType('phi2 (parallel block, partial rotary)', { arch: 'phi2' }),
  ...perType('starcoder2', { arch: 'starcoder2' }),
  ...perType('gemma', { arch: 'gemma' }),
  ...perType('gemma2 (window 4, soft-caps)', { arch: 'gemma2', slidingWindow: 4 }),
  ...perType('gemma3 (window 4)', { arch: 'gemma3', slidingWindow: 4 }),
  ...perType('phimoe (4 experts, top 2, biased norms)', { arch: 'phimoe' }),
  ...perType('deepseekv2 (MLA, dense + 4 experts, shared expert)', { arch: 'deepseekv2' }),
  ...perType('deepseekv3 (MLA, low-rank Q, sigmoid router, 4 groups)', { arch: 'deepseekv3' }),
  ...perType('smollm3 (4 layers, the 4th without RoPE)', { arch: 'smollm3' }),
  ...perType('glm4 (post norms, biases, half of each head rotated in pairs)', { arch: 'glm4' }),
  ...perType('hunyuan dense (QK norms after RoPE, NTK alpha 1000)', { arch: 'hunyuan' }),
  ...perType('hunyuan moe (4 experts, top 2, a shared expert)', { arch: 'hunyuanmoe' }),
  ...perType('glm4moelite (MLA, low-rank Q, sigmoid router with bias)', { arch: 'glm4moelite' }),
  ...perType('gpt-oss (sinks, window 4 on even layers, YaRN, biased experts, clamped SwiGLU)', {
    arch: 'gptoss',
    slidingWindow: 4,
    ropeScaling: { type: 'yarn', factor: 4, originalContext: 64 },
  }),
  // gpt-oss as released: MXFP4 experts (llama.cpp repacks them 8 rows at a time and sums each
  // row's blocks in one fused accumulator), the rest in the file's type. (Over F16 weights the
  // f16 activations' differences reach the experts' Q8_0 activations and flip roundings there,
  // so that pairing is not a bound worth stating.)
  ...(['Q8_0', 'Q4_K'] as const).map(
    (type): Case => ({
      name: 'gpt-oss with MXFP4 experts',
      type,
      spec: varied({
        arch: 'gptoss',
        slidingWindow: 4,
        ropeScaling: { type: 'yarn', factor: 4, originalContext: 64 },
        expertType: 'MXFP4',
      }),
    }),
  ),
  ...perType('glm4moe (dense layer, then sigmoid router with bias over 4 experts, shared expert)', { arch: 'glm4moe' }),
  ...perType('lfm2 (short convolutions around an attention layer)', { arch: 'lfm2' }),
  ...perType('lfm2moe (convolutions and attention, dense layer then sigmoid router with bias)', { arch: 'lfm2moe' }),
  ...perType('granitemoehybrid (Mamba-2 around an attention layer, Granite multipliers)', { arch: 'granite' }),
  ...perType('granitemoehybrid with experts (softmax router over 4, top 2, shared expert)', { arch: 'granitemoe' }),
  // Its F16 differences run higher (measured max 1.25e-2): llama.cpp's f16 activations feed the
  // delta nets' projections, and the state carries each token's rounding to the next.
  ...perType('qwen3next (gated delta nets around gated attention, 4 experts and a gated shared expert)', { arch: 'qwen3next' }).map(
    (c): Case => ({ ...c, f16MaxAbs: QWEN3_NEXT_F16_MAX_ABS }),
  ),
  // F32 weights take no activation quantization: the delta rule's sums are seen unrounded.
  { name: 'qwen3next', type: 'F32', spec: varied({ arch: 'qwen3next' }) },
  // A softmax router of 8 experts takes the vectorised path of ggml's softmax.
  { name: 'deepseekv2, 8 experts', type: 'Q8_0', spec: varied({ arch: 'deepseekv2', experts: 8 }) },
  // The other types of the real models' files (Gemma 3's Q4_K_M mixes in Q5_0 and Q6_K; Q5_K_M
  // files Q5_K; Q2_K and Q3_K_M files Q2_K and Q3_K), Q4_0 and IQ4_NL, which llama.cpp repacks
  // like Q4_K (its own order of summation), and TQ1_0 and TQ2_0 (ternary weights: BitNet
  // b1.58's and TriLMs' GGUFs).
  ...(['Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q2_K', 'Q3_K', 'Q5_K', 'Q6_K', 'IQ4_NL', 'TQ1_0', 'TQ2_0'] as const).map(
    (type): Case => ({ name: 'llama', type, spec: varied({ arch: 'llama' }) }),
  ),
  { name: 'llama, linear RoPE scaling ×2', type: 'F16', spec: varied({ arch: 'llama', ropeScaling: { type: 'linear', factor: 2 } }) },
  {
    name: 'llama, Llama 3 RoPE frequency factors',
    type: 'F16',
    spec: varied({ arch: 'llama', ropeScaling: { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 64 } }),
  },
  {
    name: 'qwen2, YaRN ×4 over 64 tokens',
    type: 'F16',
    spec: varied({ arch: 'qwen2', ropeScaling: { type: 'yarn', factor: 4, originalContext: 64 } }),
  },
  {
    name: 'deepseekv3, YaRN ×4 with mscale_all_dim',
    type: 'Q8_0',
    spec: varied({ arch: 'deepseekv3', ropeScaling: { type: 'yarn', factor: 4, originalContext: 64, mscaleAllDim: 1 } }),
  },
  // The context (256) is past the original 64: the long factors; within 384: the short ones.
  {
    name: 'phi3, LongRoPE long factors',
    type: 'F16',
    spec: varied({ arch: 'phi3', ropeScaling: { type: 'longrope', originalContext: 64 } }),
  },
  {
    name: 'phi3, LongRoPE long factors',
    type: 'Q8_0',
    spec: varied({ arch: 'phi3', ropeScaling: { type: 'longrope', originalContext: 64 } }),
  },
  {
    name: 'phi3, LongRoPE short factors',
    type: 'Q8_0',
    spec: varied({ arch: 'phi3', ropeScaling: { type: 'longrope', originalContext: 384 } }),
  },
];

/** Windows far shorter than the prompt and the generation; generations of 96+ tokens. */
const WINDOWED_PROMPTS = [longPrompt(40), longPrompt(70)];
const gemma3Window8: TinySpec = { arch: 'gemma3', slidingWindow: 8, layers: 6, untiedOutput: true };
const LONG_CASES: Case[] = [
  // Six layers: five local ones, then a global one, as the real models alternate them.
  ...TYPES.map((type): Case => ({ name: 'gemma3, 6 layers, window 8', type, spec: gemma3Window8, prompts: WINDOWED_PROMPTS, tokens: 96 })),
  ...(['Q8_0', 'Q4_K'] as const).map(
    (type): Case => ({
      name: 'gemma2, window 8 on alternate layers',
      type,
      spec: { arch: 'gemma2', slidingWindow: 8, embeddingScale: 0.3 },
      prompts: WINDOWED_PROMPTS,
      tokens: 96,
    }),
  ),
  {
    name: 'gpt-oss, window 8 on even layers',
    type: 'Q8_0',
    spec: { arch: 'gptoss', slidingWindow: 8, layers: 4, ropeScaling: { type: 'yarn', factor: 4, originalContext: 64 } },
    prompts: WINDOWED_PROMPTS,
    tokens: 96,
  },
  { name: 'llama, 128 tokens', type: 'Q4_K', spec: varied({ arch: 'llama' }), prompts: [PROMPTS[1]!], tokens: 128 },
  { name: 'qwen3moe, 128 tokens', type: 'Q8_0', spec: varied({ arch: 'qwen3moe' }), prompts: [PROMPTS[0]!], tokens: 128 },
];

async function writeCase(c: Case): Promise<string> {
  const path = join(dir, `tiny-${c.name.replace(/\W+/g, '-')}-${c.type}.gguf`);
  await writeTinyGguf(path, c.spec, c.type);
  return path;
}

/** The assertions of one generation: exact for quantized types, within F16_MAX_ABS for F16. */
function expectFidelity(
  label: string,
  type: GgmlTypeName,
  peer: PeerRun,
  cmp: StepComparer,
  engineTokens: number[],
  f16MaxAbs = F16_MAX_ABS,
): void {
  const { tokenDifferences } = cmp.result;
  const firstDiff = engineTokens.findIndex((t, i) => t !== peer.tokens[i]);
  console.log(
    `${label}: max |Δ logit| over ${peer.logits.length} steps ${cmp.worst.toExponential(2)}; ` +
      (tokenDifferences.length === 0
        ? 'every greedy token equal'
        : `greedy tokens differ at steps ${tokenDifferences.map((d) => `${d.step} (llama.cpp's margin ${d.peerMargin.toExponential(2)})`).join(', ')}`),
  );
  expect(engineTokens).toHaveLength(peer.tokens.length);
  if (type !== 'F16') {
    expect(cmp.worst).toBe(0);
    expect(tokenDifferences).toEqual([]);
    expect(engineTokens).toEqual(peer.tokens);
    return;
  }
  expect(cmp.worst).toBeLessThanOrEqual(f16MaxAbs);
  for (const d of tokenDifferences) expect(d.peerMargin).toBeLessThanOrEqual(2 * f16MaxAbs);
  // The engine follows llama.cpp's path up to the first step where our greedy token differs.
  expect(firstDiff).toBe(tokenDifferences[0]?.step ?? -1);
}

async function compareCase(c: Case): Promise<void> {
  const path = await writeCase(c);
  const tokens = c.tokens ?? 32;
  const engine = await Engine.load({ model: path, kvTokens: CONTEXT });
  const model = await llama.loadModel({ modelPath: path });
  const context = await model.createContext({ contextSize: CONTEXT, threads: 2, flashAttention: false });
  const sequence = context.getSequence();
  try {
    for (const prompt of c.prompts ?? PROMPTS) {
      const peer = await peerSteps(sequence, prompt, { steps: tokens, vocab: VOCAB });
      const cmp = new StepComparer(peer);
      await ourSteps(path, [{ prompt, path: peer.tokens, steps: tokens }], (_, step, row) => cmp.add(step, row), { kvTokens: CONTEXT });
      const ours = await engine.complete({ prompt, maxTokens: tokens, ignoreEos: true }).result;
      expectFidelity(`${c.name} ${c.type}, prompt of ${prompt.length}`, c.type, peer, cmp, ours.tokenIds, c.f16MaxAbs);
    }
  } finally {
    engine.close();
    await context.dispose();
    await model.dispose();
  }
}

describe(`tiny models against llama.cpp${tierNote}`, () => {
  for (const c of [...CASES, ...LONG_CASES]) {
    gate.it(`${c.name}, ${c.type} weights: logits and greedy tokens at every step`, () => compareCase(c), WORK_BOUNDED);
  }
});

describe(`several sequences in the same steps${tierNote}`, () => {
  const BATCH: Case[] = [
    { name: 'gemma3, 6 layers, window 8', type: 'Q8_0', spec: gemma3Window8 },
    { name: 'gemma3, 6 layers, window 8', type: 'F16', spec: gemma3Window8 },
    { name: 'mixtral (4 experts, top 2)', type: 'Q4_K', spec: varied({ arch: 'mixtral' }) },
  ];
  const prompts = [PROMPTS[0]!, longPrompt(40), PROMPTS[1]!, longPrompt(70)];
  const tokens = 64;
  for (const c of BATCH) {
    gate.it(
      `${c.name}, ${c.type}: each sequence's logits and tokens equal its own alone, bit for bit, and llama.cpp's`,
      async () => {
        const path = await writeCase(c);
        const model = await llama.loadModel({ modelPath: path });
        const context = await model.createContext({ contextSize: CONTEXT, threads: 2, flashAttention: false });
        const sequence = context.getSequence();
        const peers: PeerRun[] = [];
        try {
          for (const prompt of prompts) peers.push(await peerSteps(sequence, prompt, { steps: tokens, vocab: VOCAB }));
        } finally {
          await context.dispose();
          await model.dispose();
        }
        const runs = prompts.map((prompt, i) => ({ prompt, path: peers[i]!.tokens, steps: tokens }));
        const alone: Float32Array[][] = runs.map(() => []);
        for (const [i, run] of runs.entries())
          await ourSteps(path, [run], (_, step, row) => (alone[i]![step] = row), { kvTokens: CONTEXT });
        const comparers = peers.map((p) => new StepComparer(p));
        let batchedRows = 0;
        await ourSteps(path, runs, (i, step, row) => {
          expect(Array.from(row)).toEqual(Array.from(alone[i]![step]!));
          comparers[i]!.add(step, row);
          batchedRows++;
        });
        expect(batchedRows).toBe(prompts.length * tokens);

        // The engine, all requests at once: each gets the tokens it gets alone.
        const engine = await Engine.load({ model: path, kvTokens: 1024 });
        try {
          const together = await Promise.all(
            prompts.map((prompt) => engine.complete({ prompt, maxTokens: tokens, ignoreEos: true }).result),
          );
          for (const [i, prompt] of prompts.entries()) {
            const single = await engine.complete({ prompt, maxTokens: tokens, ignoreEos: true }).result;
            expect(together[i]!.tokenIds).toEqual(single.tokenIds);
            expectFidelity(
              `${c.name} ${c.type}, batched, prompt of ${prompt.length}`,
              c.type,
              peers[i]!,
              comparers[i]!,
              together[i]!.tokenIds,
            );
          }
        } finally {
          engine.close();
        }
      },
      WORK_BOUNDED,
    );
  }
});
