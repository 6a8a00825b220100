/**
 * The DRY sampler against llama.cpp's (node-llama-cpp's `dryRepeatPenalty`), greedy, on the
 * same GGUF: a tiny Llama in Q8_0 (the tiny-model fixture) and the default SmolLM2 (Q4_1).
 * Our tokens with DRY must equal llama.cpp's with the same settings, token for token, and differ
 * from our tokens without DRY (greedy decoding of these prompts goes round a loop), except where
 * the loop's repeats all end at a breaker.
 *
 * How the reference sees the prompt: llama.cpp's server feeds the prompt to the sampler, so DRY
 * searches the prompt too, as ours does; node-llama-cpp's sampler sees only what it samples. So
 * the reference is given the first prompt token and then made to sample the rest of the prompt
 * (a logit bias of 10^6 on each prompt token in turn; it ignores a bias on end-of-turn tokens,
 * so the prompts have none), which puts the prompt into its DRY history as llama.cpp's server has
 * it (the first token aside: it is BOS or `<|im_start|>`, which no repeat reaches back to). llama.cpp then runs the prompt one token per step, so ours does too
 * (`prefillChunk: 1`): the same kernels, so the same logits bit for bit.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TokenBias, type Llama, type LlamaModel } from 'node-llama-cpp';

import { needsFixtures, type FixtureGate } from '../../../../test-support/fixtures.js';
import { Engine, fetchRegistryModel, type SamplingOptions } from '../../src/index.js';
import { vocabPath, writeTinyGguf } from '../fixtures/tiny-model.js';
import { kernelTiers, loadPeer } from '../support/fidelity.js';

const GENERATED = 48;
/** node-llama-cpp's DRY settings for ours. */
interface Dry {
  strength: number;
  base: number;
  allowedLength: number;
  lastTokens: number;
  sequenceBreakers: string[];
}
const DEFAULT_BREAKERS = 'default breakers, whole history';
const SETTINGS: Array<[string, Dry]> = [
  [DEFAULT_BREAKERS, { strength: 0.8, base: 1.75, allowedLength: 2, lastTokens: 4096, sequenceBreakers: ['\n', ':', '"', '*'] }],
  // Breakers of several characters: tokens that end with a breaker's beginning head a sequence.
  [
    'multi-character breakers, last 32 tokens',
    { strength: 1.5, base: 2, allowedLength: 3, lastTokens: 32, sequenceBreakers: ['the', ', ', 'ing'] },
  ],
  ['no breakers, last 64 tokens', { strength: 0.8, base: 1.75, allowedLength: 2, lastTokens: 64, sequenceBreakers: [] }],
];

function ourDry(d: Dry, wholeHistory: boolean): SamplingOptions {
  return {
    dryMultiplier: d.strength,
    dryBase: d.base,
    dryAllowedLength: d.allowedLength,
    dryPenaltyLastN: wholeHistory ? -1 : d.lastTokens,
    drySequenceBreakers: d.sequenceBreakers,
  };
}

const llama: Llama = await loadPeer();
// Equal tokens need equal logits, which the kernels give on the tier the claims are made on.
const tiers = kernelTiers(llama);
const tierNote = tiers.claimed ? '' : ` [skipped: our tier ${tiers.ours}, llama.cpp's ${tiers.peer}; the claims are made on avx2]`;
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'dry-'));
});
afterAll(async () => {
  await llama?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/** llama.cpp's greedy tokens after `prompt`, the prompt fed through its sampler first. */
async function reference(model: LlamaModel, prompt: number[], dry: Dry | undefined): Promise<number[]> {
  const context = await model.createContext({ contextSize: 512, threads: 2, flashAttention: false });
  const seq = context.getSequence();
  const forced = prompt.slice(1);
  const out: number[] = [];
  try {
    const noBias = new TokenBias(model.tokenizer);
    const tokens = seq.evaluate([prompt[0]!], {
      temperature: 0,
      ...(dry ? { dryRepeatPenalty: dry } : {}),
      tokenBias: () => (out.length < forced.length ? new TokenBias(model.tokenizer).set(forced[out.length]!, { logit: 1e6 }) : noBias),
      yieldEogToken: true,
    });
    for await (const token of tokens) {
      out.push(token);
      if (out.length === forced.length + GENERATED) break;
    }
  } finally {
    seq.dispose();
    await context.dispose();
  }
  expect(out.slice(0, forced.length)).toEqual(forced);
  return out.slice(forced.length);
}

/** Some run of 4 tokens occurs twice: greedy decoding went round a loop. */
function repeats(tokens: number[]): boolean {
  const seen = new Set<string>();
  for (let i = 0; i + 4 <= tokens.length; i++) {
    const key = tokens.slice(i, i + 4).join(',');
    if (seen.has(key)) return true;
    seen.add(key);
  }
  return false;
}

const vocab = needsFixtures('the Llama vocabulary', [vocabPath]);

/** Each model: its path, a prompt that repeats, the settings under which DRY changes nothing,
 * and the gate of its fixtures. */
const MODELS: Array<[string, () => Promise<string>, (engine: Engine) => number[], string[], FixtureGate['describe']]> = [
  [
    'a tiny Llama (Q8_0)',
    async () => {
      const path = join(dir, 'tiny-llama-q8_0.gguf');
      await writeTinyGguf(path, { arch: 'llama' }, 'Q8_0');
      return path;
    },
    (_engine: Engine) => [1, 450, 4996, 17354, 1701, 432, 29892, 278, 4996, 17354, 1701, 432],
    [],
    vocab.describe,
  ],
  [
    'the default model (SmolLM2, Q4_1)',
    () => fetchRegistryModel('smollm2-135m-instruct-q4_1'),
    // No end-of-turn token: node-llama-cpp's token bias cannot force one.
    (engine: Engine) => engine.encodeChatPrompt('<|im_start|>The days of the week, one per line:\nMonday:\n"Tuesday"\n*Wednesday*\n'),
    // It loops on `:\n` lines: every repeat ends at a default breaker, so DRY changes nothing.
    [DEFAULT_BREAKERS],
    describe,
  ],
];

for (const [name, modelPath, promptOf, unchangedBy, describeModel] of MODELS)
  (tiers.claimed ? describeModel : describeModel.skip)(`DRY on ${name}${tierNote}`, () => {
    let engine: Engine | undefined;
    let model: LlamaModel | undefined;
    let prompt: number[] = [];
    beforeAll(async () => {
      const path = await modelPath();
      engine = await Engine.load({ model: path, kvTokens: 512, prefillChunk: 1 });
      model = await llama.loadModel({ modelPath: path });
      prompt = promptOf(engine);
    }, 300_000);
    afterAll(async () => {
      engine?.close();
      await model?.dispose();
    });

    it('generates what llama.cpp generates without DRY, and repeats itself', async () => {
      if (!engine || !model) throw new Error('the model did not load');
      const ours = (await engine.complete({ prompt, maxTokens: GENERATED, ignoreEos: true }).result).tokenIds;
      expect(ours).toEqual(await reference(model, prompt, undefined));
      expect(repeats(ours)).toBe(true);
    }, 600_000);

    it.each(SETTINGS)(
      'generates what llama.cpp generates with DRY (%s)',
      async (label, dry) => {
        if (!engine || !model) throw new Error('the model did not load');
        const plain = (await engine.complete({ prompt, maxTokens: GENERATED, ignoreEos: true }).result).tokenIds;
        const expected = await reference(model, prompt, dry);
        const ours = (await engine.complete({ prompt, maxTokens: GENERATED, ignoreEos: true, ...ourDry(dry, false) }).result).tokenIds;
        expect(ours).toEqual(expected);
        if (unchangedBy.includes(label)) expect(ours).toEqual(plain);
        else expect(ours).not.toEqual(plain);
        // A window longer than everything is the whole history (-1).
        if (dry.lastTokens >= prompt.length + GENERATED) {
          const whole = await engine.complete({ prompt, maxTokens: GENERATED, ignoreEos: true, ...ourDry(dry, true) }).result;
          expect(whole.tokenIds).toEqual(expected);
        }
      },
      600_000,
    );
  });

vocab.describe('DRY options', () => {
  it('are checked before anything is queued', async () => {
    const path = join(dir, 'tiny-llama-q8_0-options.gguf');
    await writeTinyGguf(path, { arch: 'llama' }, 'Q8_0');
    const engine = await Engine.load({ model: path, kvTokens: 256 });
    try {
      const run = (o: SamplingOptions) => engine.complete({ prompt: [1, 450], maxTokens: 2, ...o }).result;
      await expect(run({ dryMultiplier: -1 })).rejects.toThrow(/dryMultiplier must be a number of at least 0/);
      await expect(run({ dryMultiplier: 1, dryBase: 0.5 })).rejects.toThrow(/dryBase must be a number of at least 1/);
      await expect(run({ dryMultiplier: 1, dryAllowedLength: 1.5 })).rejects.toThrow(/dryAllowedLength/);
      await expect(run({ dryMultiplier: 1, dryPenaltyLastN: -2 })).rejects.toThrow(/dryPenaltyLastN/);
      await expect(run({ dryMultiplier: 1, drySequenceBreakers: [''] })).rejects.toThrow(/non-empty/);
      await expect(run({ dryMultiplier: 1, drySequenceBreakers: ['x'.repeat(41)] })).rejects.toThrow(/41 bytes; at most 40/);
      // Off (multiplier 0, or a window of 0) whatever the rest says.
      const plain = await run({});
      expect((await run({ dryMultiplier: 0, dryBase: 3 })).tokenIds).toEqual(plain.tokenIds);
      expect((await run({ dryMultiplier: 5, dryPenaltyLastN: 0 })).tokenIds).toEqual(plain.tokenIds);
      expect(engine.load.running).toBe(0);
    } finally {
      engine.close();
    }
  }, 120_000);
});
