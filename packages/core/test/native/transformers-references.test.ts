/**
 * The Hugging Face semantics no llama.cpp file can check, against transformers itself: tiny
 * checkpoints saved by transformers' `save_pretrained` (fixtures/transformers, built by its
 * make_fixtures.py) load through our HF loader and give transformers' logits and greedy tokens.
 * gpt-oss with YaRN's `truncate: false`, sinks, alternating windows and stacked experts; GLM-4's
 * half rotation in adjacent pairs; SmolLM3's `no_rope_layers` list; HunYuan's NTK `alpha`.
 *
 * Bound: transformers computes in f32 throughout; we round keys, values and queries to f16 as
 * llama.cpp does (the KV cache is f16), and rounds the attention probabilities to f16 before the values' product, as
 * llama.cpp does; over these models' logits (of magnitude ~4) that moves them by up to
 * LOGIT_TOL (measured at most 9.8e-3 here, SmolLM3's four layers). Fed transformers' own
 * greedy path, our best token equals its at every step where its margin between its two best
 * tokens exceeds twice that; the engine's free greedy generation follows it up to the first step
 * where the margin does not (the paths may part there legitimately).
 */
import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';

import { Engine } from '../../src/index.js';
import { ourSteps, WORK_BOUNDED } from '../support/fidelity.js';

const LOGIT_TOL = 2e-2;
const dir = new URL('../fixtures/transformers/', import.meta.url).pathname;

interface Case {
  prompt: number[];
  logits: number[];
  greedy: number[];
  margins: number[];
}
const refs = JSON.parse(readFileSync(`${dir}references.json`, 'utf8')) as {
  models: Record<string, { model_type: string; cases: Case[] }>;
};

describe('tiny transformers checkpoints give transformers’ logits and greedy tokens', () => {
  for (const [name, model] of Object.entries(refs.models)) {
    it(
      `${name} (${model.model_type})`,
      async () => {
        const engine = await Engine.load({ model: `${dir}${name}`, kvTokens: 128 });
        try {
          expect(engine.info.architecture).toBe(model.model_type);
          for (const c of model.cases) {
            const ours = await engine.nextTokenLogits(c.prompt);
            expect(ours).toHaveLength(c.logits.length);
            let worst = 0;
            for (const [i, v] of c.logits.entries()) worst = Math.max(worst, Math.abs(v - ours[i]!));
            const greedy = (await engine.complete({ prompt: c.prompt, maxTokens: c.greedy.length, ignoreEos: true }).result).tokenIds;
            const trusted = c.margins.findIndex((m) => m <= 2 * LOGIT_TOL);
            // Steps before the first close call: the tokens up to it must agree.
            const upTo = trusted < 0 ? c.greedy.length : trusted;
            console.log(
              `${name}, prompt of ${c.prompt.length}: max |Δ logit| ${worst.toExponential(2)}; greedy compared over ${upTo} of ${c.greedy.length} steps`,
            );
            expect(worst).toBeLessThanOrEqual(LOGIT_TOL);
            expect(greedy.slice(0, upTo)).toEqual(c.greedy.slice(0, upTo));
            // Along transformers' path: its token wherever its margin is clear.
            const best: number[] = [];
            await ourSteps(`${dir}${name}`, [{ prompt: c.prompt, path: c.greedy, steps: c.greedy.length }], (_, step, row) => {
              best[step] = row.indexOf(Math.max(...row));
            });
            const clear = c.greedy.map((t, i) => (c.margins[i]! > 2 * LOGIT_TOL ? t : -1));
            console.log(
              `${name}, prompt of ${c.prompt.length}: along transformers' path, ${clear.filter((t) => t >= 0).length} of ${c.greedy.length} steps with a clear best token`,
            );
            expect(best.map((t, i) => (clear[i] === -1 ? -1 : t))).toEqual(clear);
          }
        } finally {
          engine.close();
        }
      },
      WORK_BOUNDED,
    );
  }
});
