/**
 * A file's tokenizer is shared while it is alive: loading a model again (an engine closed and
 * reopened) must not build a second copy of a large vocabulary's tables, and a file changed on
 * disk must not get the old tables. An engine's tokenizer and template come from its model's
 * own open file (a GGUF is opened once per model).
 */
import { afterAll, beforeAll, expect, it } from '@jest/globals';
import { copyFileSync, mkdtempSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { GgufFile } from '@mistralrs/quant';

import { needsFixtures } from '../../../../test-support/fixtures.js';
import { ChatTemplate, Engine, fetchRegistryModel, Tokenizer } from '../../src/index.js';
import { vocabPath } from '../fixtures/tiny-model.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tokenizer-sharing-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

needsFixtures('the Llama vocabulary', [vocabPath]).it(
  'shares one file’s live tokenizer, and builds anew for another file or a changed one',
  async () => {
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
  },
);

it('gives an engine the tokenizer and chat template of its model’s own open file, and shares them', async () => {
  const path = await fetchRegistryModel('smollm2-135m-instruct-q4_1');
  const first = await Engine.load({ model: path, kvTokens: 64 });
  const second = await Engine.load({ model: path, kvTokens: 64 });
  const file = await GgufFile.open(path);
  try {
    // Built once, while the first model loaded, and registered like Tokenizer.fromGguf's.
    expect(second.tokenizer).toBe(first.tokenizer);
    expect(await Tokenizer.fromGguf(path)).toBe(first.tokenizer);
    // The template as the file's metadata has it, with its BOS and EOS text.
    const reference = ChatTemplate.fromGgufMetadata(file);
    expect(first.chatTemplate?.text()).toBe(reference.text());
    expect([first.chatTemplate?.bosToken, first.chatTemplate?.eosToken]).toEqual([reference.bosToken, reference.eosToken]);
    const messages = [{ role: 'user' as const, content: 'Hi' }];
    expect(await first.chatTemplate!.render({ messages, addGenerationPrompt: true })).toBe(
      await reference.render({ messages, addGenerationPrompt: true }),
    );
  } finally {
    file.close();
    first.close();
    second.close();
  }
}, 300_000);
