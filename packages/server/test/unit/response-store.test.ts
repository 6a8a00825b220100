/** The `/v1/responses` store: least recently used first out, by count and by bytes. */
import { describe, expect, it } from '@jest/globals';

import { ResponseStore, type StoredResponse } from '../../src/responses/store.js';

const entry = (text: string): StoredResponse => ({ response: { text }, conversation: [], inputItems: [] });
const bytesOf = (value: StoredResponse) => Buffer.byteLength(JSON.stringify(value));

describe('ResponseStore', () => {
  it('evicts the least recently used past the count bound; get refreshes', () => {
    const store = new ResponseStore({ maxEntries: 2, maxBytes: 1 << 20 });
    store.set('a', entry('a'));
    store.set('b', entry('b'));
    expect(store.get('a')).toEqual(entry('a'));
    store.set('c', entry('c'));
    expect(store.get('b')).toBeUndefined();
    expect(store.get('a')).toBeDefined();
    expect(store.get('c')).toBeDefined();
    expect(store.size).toBe(2);
  });

  it('evicts past the byte bound, and never keeps one larger than the bound', () => {
    const one = bytesOf(entry('x'.repeat(100)));
    const store = new ResponseStore({ maxEntries: 100, maxBytes: 2 * one });
    store.set('a', entry('a'.repeat(100)));
    store.set('b', entry('b'.repeat(100)));
    expect(store.bytes).toBe(2 * one);
    store.set('c', entry('c'.repeat(100)));
    expect(store.get('a')).toBeUndefined();
    expect(store.bytes).toBe(2 * one);
    expect(store.set('huge', entry('h'.repeat(3 * one)))).toBe(false);
    expect(store.get('huge')).toBeUndefined();
    expect(store.size).toBe(2);
  });

  it('deletes, and counts bytes back', () => {
    const store = new ResponseStore({ maxEntries: 10, maxBytes: 1 << 20 });
    store.set('a', entry('a'));
    expect(store.delete('a')).toBe(true);
    expect(store.delete('a')).toBe(false);
    expect(store.bytes).toBe(0);
  });
});
