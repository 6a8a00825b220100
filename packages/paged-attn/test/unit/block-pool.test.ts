import { describe, expect, it } from '@jest/globals';

import { BlockPool } from '../../src/index.js';

const tokens = (n: number, start = 0) => Array.from({ length: n }, (_, i) => start + i);

describe('BlockPool', () => {
  it('hands out and takes back blocks, refusing what it does not have', () => {
    const pool = new BlockPool(4, 16, { prefixCaching: false });
    const a = pool.allocate(3)!;
    expect(new Set(a).size).toBe(3);
    expect(pool.allocate(2)).toBeUndefined();
    expect(pool.freeBlocks).toBe(1);
    pool.release(a);
    expect(pool.freeBlocks).toBe(4);
  });

  it('shares cached prefix blocks and keeps them until the pool needs them', () => {
    const pool = new BlockPool(4, 4, { prefixCaching: true });
    const prompt = tokens(10);
    const hashes = pool.hashes(prompt, 2);
    const first = pool.allocate(3)!;
    pool.register(first[0]!, hashes[0]!);
    pool.register(first[1]!, hashes[1]!);
    pool.release(first);
    expect(pool.cachedBlocks).toBe(2);
    expect(pool.freeBlocks).toBe(4); // cached but evictable

    const second = pool.acquireCached(pool.hashes(prompt, 2));
    expect(second).toEqual(first.slice(0, 2));
    // A prompt that differs in its second block shares only the first.
    const third = pool.acquireCached(pool.hashes([...tokens(4), 99, ...tokens(5, 5)], 2));
    expect(third).toEqual([first[0]]);
    expect(pool.stats).toMatchObject({ queriedBlocks: 4, hitBlocks: 3 });
    pool.release(second);
    pool.release(third);

    // Filling the pool evicts the least recently used cached blocks.
    const all = pool.allocate(4)!;
    expect(all).toHaveLength(4);
    expect(pool.cachedBlocks).toBe(0);
    expect(pool.stats.evictedBlocks).toBe(2);
    expect(pool.acquireCached(hashes)).toEqual([]);
  });

  it('hashes a block by everything before it', () => {
    const pool = new BlockPool(8, 2, { prefixCaching: true });
    const [a0, a1] = pool.hashes([1, 2, 3, 4], 2);
    const [b0, b1] = pool.hashes([9, 9, 3, 4], 2);
    expect(a0).not.toBe(b0);
    expect(a1).not.toBe(b1); // same tokens, different prefix
  });

  it('caches nothing when prefix caching is off', () => {
    const pool = new BlockPool(2, 2, { prefixCaching: false });
    const [block] = pool.allocate(1)!;
    const [hash] = pool.hashes([1, 2], 1);
    pool.register(block!, hash!);
    pool.release([block!]);
    expect(pool.acquireCached([hash!])).toEqual([]);
  });
});
