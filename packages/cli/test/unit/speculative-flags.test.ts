/** Speculative decoding's settings: the flags and `[speculative]` (mistral.rs's TOML table), checked alike. */
import { describe, expect, it } from '@jest/globals';

import { readSpeculativeTable, speculativeFromFlags } from '../../src/speculative-flags.js';
import { parseTomlSelector } from '../../src/toml-selector.js';
import { UsageError } from '../../src/usage-error.js';

describe('speculative flags', () => {
  it('turns the flags into Engine.load options', () => {
    expect(speculativeFromFlags({})).toBeUndefined();
    expect(speculativeFromFlags({ speculative: 'ngram' })).toEqual({ kind: 'ngram' });
    expect(speculativeFromFlags({ speculative: 'ngram', gamma: 6, 'ngram-min': 1, 'ngram-max': 3 })).toEqual({
      kind: 'ngram',
      gamma: 6,
      minN: 1,
      maxN: 3,
    });
    // A draft model alone implies --speculative draft.
    expect(speculativeFromFlags({ 'draft-model': 'small.gguf', gamma: 3, 'draft-p-min': 0.6 })).toEqual({
      kind: 'draft',
      draftModel: 'small.gguf',
      gamma: 3,
      pMin: 0.6,
    });
  });

  it.each([
    [{ speculative: 'draft' }, 'a draft needs --draft-model'],
    [{ speculative: 'eagle' }, '--speculative must be ngram or draft, got "eagle"'],
    [{ speculative: 'ngram', gamma: 0 }, '--gamma must be an integer from 1 to 32, got 0'],
    [{ speculative: 'ngram', gamma: 40 }, '--gamma must be an integer from 1 to 32, got 40'],
    [{ speculative: 'ngram', 'ngram-min': 5, 'ngram-max': 3 }, '--ngram-min (5) must not exceed --ngram-max (3)'],
    [{ speculative: 'ngram', 'draft-model': 'x.gguf' }, '--draft-model and --draft-p-min apply to a draft model only'],
    [{ 'draft-model': 'x.gguf', 'ngram-min': 2 }, '--ngram-min and --ngram-max apply to prompt lookup (ngram) only'],
    [{ 'draft-model': 'x.gguf', 'draft-p-min': 1.5 }, '--draft-p-min must be from 0 to 1, got 1.5'],
    [{ gamma: 4 }, '--speculative is needed (ngram or draft)'],
  ])('rejects %j', (args, message) => {
    expect(() => speculativeFromFlags(args)).toThrow(UsageError);
    expect(() => speculativeFromFlags(args)).toThrow(message);
  });

  it("puts the flags over the file's: numbers alone adjust it, a kind replaces it", () => {
    const toml = { kind: 'draft' as const, draftModel: 'small.gguf', gamma: 4 };
    expect(speculativeFromFlags({}, toml)).toBe(toml);
    expect(speculativeFromFlags({ gamma: 8 }, toml)).toEqual({ ...toml, gamma: 8 });
    expect(speculativeFromFlags({ speculative: 'ngram' }, toml)).toEqual({ kind: 'ngram' });
  });
});

describe('[speculative] in a TOML selector', () => {
  it("reads mistral.rs's draft_model table and the ngram keys", () => {
    const selector = parseTomlSelector(
      [
        '[model]',
        'quantized_model_id = "qwen2.5-coder-1.5b-instruct-q4_k_m"',
        '[speculative]',
        'gamma = 5',
        '[speculative.draft_model]',
        'quantized_model_id = "models"',
        'quantized_filename = "small.gguf"',
      ].join('\n'),
      'a.toml',
    );
    expect(selector.engine.speculative).toEqual({ kind: 'draft', draftModel: 'models', draftFile: 'small.gguf', gamma: 5 });
    const ngram = parseTomlSelector('model = "m.gguf"\n[speculative]\nkind = "ngram"\nngram_min = 1\n', 'b.toml');
    expect(ngram.engine.speculative).toEqual({ kind: 'ngram', minN: 1 });
  });

  it.each([
    ['[speculative]\ngamma = 4\n', 'c.toml: [speculative].kind is needed (ngram or draft)'],
    [
      '[speculative]\nkind = "ngram"\ngama = 4\n',
      'c.toml: unknown key [speculative].gama (known: kind, gamma, p_min, ngram_min, ngram_max, draft_model)',
    ],
    ['[speculative]\nkind = "draft"\n', 'c.toml: a draft needs [speculative].draft_model'],
    ['[speculative.draft_model]\nfile = "x.gguf"\n', 'c.toml: [speculative].draft_model needs quantized_model_id, model_id or model'],
    ['[speculative]\nkind = "ngram"\ngamma = 2.5\n', 'c.toml: [speculative].gamma must be an integer from 1 to 32, got 2.5'],
    ['speculative = 3\n', 'c.toml: [speculative] must be a table'],
  ])('rejects %j', (text, message) => {
    expect(() => parseTomlSelector(`model = "m.gguf"\n${text}`, 'c.toml')).toThrow(message);
  });

  it('reads a from-config model table the same way', () => {
    const fail = (message: string): never => {
      throw new Error(message);
    };
    expect(readSpeculativeTable({ kind: 'ngram', gamma: 3 }, 'models[0].speculative.', fail)).toEqual({ kind: 'ngram', gamma: 3 });
    expect(() => readSpeculativeTable({ kind: 'draft' }, 'models[0].speculative.', fail)).toThrow(
      'a draft needs models[0].speculative.draft_model',
    );
  });
});
