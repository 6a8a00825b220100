/** The sampling flags (llama.cpp's names, DRY's included): each value checked, mapped to the engine's options. */
import { describe, expect, it } from '@jest/globals';

import { samplingFromFlags } from '../../src/sampling-flags.js';

describe('sampling flags', () => {
  it("map to the engine's sampling options", () => {
    expect(
      samplingFromFlags({
        temperature: 0.7,
        'top-k': 40,
        'top-p': 0.9,
        'min-p': 0.05,
        'repetition-penalty': 1.1,
        seed: 7,
        'dry-multiplier': 0.8,
        'dry-base': 1.75,
        'dry-allowed-length': 2,
        'dry-penalty-last-n': -1,
        'dry-sequence-breaker': ['\\n', ':', 'the end'],
      }),
    ).toEqual({
      temperature: 0.7,
      topK: 40,
      topP: 0.9,
      minP: 0.05,
      repetitionPenalty: 1.1,
      seed: 7,
      dryMultiplier: 0.8,
      dryBase: 1.75,
      dryAllowedLength: 2,
      dryPenaltyLastN: -1,
      drySequenceBreakers: ['\n', ':', 'the end'],
    });
    expect(samplingFromFlags({})).toEqual({});
    // llama.cpp's "none": no breakers at all.
    expect(samplingFromFlags({ 'dry-sequence-breaker': ['none'] })).toEqual({ drySequenceBreakers: [] });
  });

  it.each([
    [{ temperature: -1 }, '--temperature must be a number of at least 0, got -1'],
    [{ 'top-k': 2.5 }, '--top-k must be a non-negative integer, got 2.5'],
    [{ 'top-p': 0 }, '--top-p must be a number greater than 0 and at most 1, got 0'],
    [{ 'min-p': 2 }, '--min-p must be a number from 0 to 1, got 2'],
    [{ 'repetition-penalty': 0 }, '--repetition-penalty must be a number greater than 0, got 0'],
    [{ seed: NaN }, '--seed must be a non-negative integer'],
    [{ 'dry-multiplier': -0.5 }, '--dry-multiplier must be a number of at least 0, got -0.5'],
    [{ 'dry-base': 0.9 }, '--dry-base must be a number of at least 1, got 0.9'],
    [{ 'dry-allowed-length': -1 }, '--dry-allowed-length must be a non-negative integer, got -1'],
    [{ 'dry-penalty-last-n': -2 }, '--dry-penalty-last-n must be -1 (all tokens), 0 (off) or a positive integer, got -2'],
    [{ 'dry-sequence-breaker': [''] }, '--dry-sequence-breaker must not be empty'],
    [{ 'dry-sequence-breaker': ['x'.repeat(41)] }, 'has 41 bytes; at most 40 are allowed'],
    [{ 'dry-sequence-breaker': ['none', ':'] }, '--dry-sequence-breaker none means no breakers; it cannot be given with others'],
  ])('rejects %j', (args, message) => {
    expect(() => samplingFromFlags(args)).toThrow(message);
  });
});
