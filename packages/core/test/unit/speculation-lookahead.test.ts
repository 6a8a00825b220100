/** How many tokens a sequence asks to have proposed, step after step, from what was kept. */
import { describe, expect, it } from '@jest/globals';

import { Sequence } from '../../src/engine/sequence.js';
import { StopStringMatcher } from '../../src/engine/stop-strings.js';

function sequence(): Sequence {
  return new Sequence({
    id: 1,
    promptIds: [1, 2, 3],
    options: {},
    maxTokens: 100,
    stopIds: new Set(),
    stops: new StopStringMatcher([]),
    decoder: { push: () => '', flush: () => '' },
    emit: () => {},
    logitsOnly: false,
    sampling: {},
  });
}

describe('speculative lookahead', () => {
  it('starts at the limit, doubles after a run kept whole, and is one past the kept part otherwise', () => {
    const seq = sequence();
    expect(seq.lookahead(4)).toBe(4);
    seq.recordSpeculation(4, 2);
    expect(seq.lookahead(8)).toBe(3);
    seq.recordSpeculation(3, 3);
    expect(seq.lookahead(8)).toBe(6);
    expect(seq.lookahead(5)).toBe(5); // never past the step's limit
    expect(seq.speculation).toEqual({ proposed: 7, accepted: 5 });
  });

  it('pauses for 1, 2, 4, … 32 steps while single proposals keep being refused', () => {
    const seq = sequence();
    seq.recordSpeculation(4, 0);
    expect(seq.lookahead(4)).toBe(1);
    const pauses = [];
    for (let round = 0; round < 7; round++) {
      seq.recordSpeculation(1, 0);
      let paused = 0;
      while (seq.lookahead(4) === 0) paused++;
      pauses.push(paused);
    }
    expect(pauses).toEqual([1, 2, 4, 8, 16, 32, 32]);
    // A kept proposal ends the backoff.
    seq.recordSpeculation(1, 1);
    expect(seq.lookahead(4)).toBe(2);
    seq.recordSpeculation(2, 0);
    seq.recordSpeculation(1, 0);
    expect(seq.lookahead(4)).toBe(0);
    expect(seq.lookahead(4)).toBe(1);
  });
});
