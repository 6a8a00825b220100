/**
 * A file's tokenizer is shared while it is alive: loading a model again (an engine closed and
 * reopened) must not build a second copy of a large vocabulary's tables, and a file changed on
 * disk must not get the old tables.
 */
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { copyFileSync, mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { needsFixtures } from '../../../../test-support/fixtures.js';
import { Tokenizer } from '../../src/index.js';
import { vocabPath } from '../fixtures/tiny-model.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tokenizer-sharing-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

needsFixtures('the Llama vocabulary', [vocabPath]).it('shares one file’s live tokenizer, and builds anew for another file or a changed one', async () => {
  const [a, b] = ['a.gguf', 'b.gguf'].map((name) => join(dir, name));
  copyFileSync(vocabPath, a);
  copyFileSync(vocabPath, b);

  const first = await Tokenizer.fromGguf(a);
  const [again, viaRelative] = await Promise.all([Tokenizer.fromGguf(a), Tokenizer.fromGguf(join(dir, '.', 'a.gguf'))]);
  expect(again).toBe(first);
  expect(viaRelative).toBe(first);

  const other = await Tokenizer.fromGguf(b);
  expect(other).not.toBe(first);
  expect(Array.from(other.encode('Hello world'))).toEqual(Array.from(first.encode('Hello world')));

  // Same size, new modification time: a rewritten file.
  const later = new Date(Date.now() + 60_000);
  utimesSync(a, later, later);
  const rewritten = await Tokenizer.fromGguf(a);
  expect(rewritten).not.toBe(first);
});
