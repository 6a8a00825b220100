/**
 * Models from a Hub repository, end to end: the tiny models the other suites build are served by
 * the Hub fixture (test-support/hub-server.ts) and loaded by id, as `gguf -m org/repo -f FILE`,
 * `org/repo:TAG`, a split GGUF, `plain -m org/repo` and `-t org/repo` do. Each must compute
 * exactly what the same files compute from a local folder.
 */
import { afterAll, beforeAll, expect } from '@jest/globals';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { needsFixtures } from '../../../../test-support/fixtures.js';
import { type HubFixture, startHubFixture } from '../../../../test-support/hub-server.js';
import { Engine, type EngineOptions, Tokenizer } from '../../src/index.js';
import { splitGguf } from '../fixtures/split-gguf.js';
import { hfTokenizerDir, vocabPath, writeTinyGguf, writeTinyHf } from '../fixtures/tiny-model.js';

const fixtures = needsFixtures('the tiny models', [vocabPath, join(hfTokenizerDir, 'tokenizer.json')]);

const PROMPT = [1, 450, 4996, 17354, 1701, 910, 338];
const TEMPLATE = '{% for m in messages %}[{{ m.role }}|{{ m.content }}]{% endfor %}{% if add_generation_prompt %}[assistant|{% endif %}';
let dir: string;
let local: string;
let hub: HubFixture;

function folder(path: string): Record<string, Buffer> {
  return Object.fromEntries(readdirSync(path).map((f) => [f, readFileSync(join(path, f))]));
}

beforeAll(async () => {
  if (!fixtures.present) return;
  dir = mkdtempSync(join(tmpdir(), 'hub-models-'));
  local = join(dir, 'local');
  mkdirSync(join(local, 'split'), { recursive: true });
  await writeTinyGguf(join(local, 'tiny-Q8_0.gguf'), { arch: 'llama' }, 'Q8_0');
  await writeTinyGguf(join(local, 'tiny-F16.gguf'), { arch: 'llama' }, 'F16');
  const parts = await splitGguf(join(local, 'tiny-Q8_0.gguf'), join(local, 'split'), 'tiny-Q8_0', 7);
  expect(parts.length).toBeGreaterThan(2);
  await writeTinyHf(join(local, 'hf'), { arch: 'qwen2' });
  hub = await startHubFixture({
    repos: [
      {
        id: 'org/tiny-GGUF',
        files: {
          'tiny-Q8_0.gguf': readFileSync(join(local, 'tiny-Q8_0.gguf')),
          'tiny-F16.gguf': readFileSync(join(local, 'tiny-F16.gguf')),
        },
      },
      { id: 'org/tiny-split-GGUF', files: folder(join(local, 'split')) },
      { id: 'org/tiny-qwen2', files: folder(join(local, 'hf')) },
      {
        id: 'org/tokenizer',
        files: {
          'tokenizer.json': readFileSync(join(hfTokenizerDir, 'tokenizer.json')),
          'tokenizer_config.json': JSON.stringify({ bos_token: '<s>', eos_token: '</s>', chat_template: TEMPLATE }),
        },
      },
    ],
  });
});
afterAll(async () => {
  await hub?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function fromHub(model: string, extra: EngineOptions = {}): Promise<Engine> {
  return Engine.load({
    model,
    kvTokens: 128,
    tokenSource: 'none',
    hub: { endpoint: hub.url, cacheDir: join(dir, 'cache'), progress: false },
    ...extra,
  });
}

/** Runs both engines on the same prompt: identical logits and greedy tokens. */
async function expectSameModel(a: Engine, b: Engine): Promise<void> {
  try {
    const [la, lb] = [await a.nextTokenLogits(PROMPT), await b.nextTokenLogits(PROMPT)];
    let maxAbs = 0;
    for (const [i, v] of la.entries()) maxAbs = Math.max(maxAbs, Math.abs(v - lb[i]!));
    expect(maxAbs).toBe(0);
    const ga = await a.complete({ prompt: PROMPT, maxTokens: 16, ignoreEos: true }).result;
    const gb = await b.complete({ prompt: PROMPT, maxTokens: 16, ignoreEos: true }).result;
    expect(gb.tokenIds).toEqual(ga.tokenIds);
  } finally {
    a.close();
    b.close();
  }
}

fixtures.it('gguf -m org/repo -f FILE computes what the local file computes, from the cache', async () => {
  const engine = await fromHub('org/tiny-GGUF', { file: 'tiny-Q8_0.gguf' });
  const commit = hub.commit('org/tiny-GGUF');
  expect(engine.info.path).toBe(join(dir, 'cache', 'models--org--tiny-GGUF', 'snapshots', commit, 'tiny-Q8_0.gguf'));
  await expectSameModel(await Engine.load({ model: join(local, 'tiny-Q8_0.gguf'), kvTokens: 128 }), engine);
});

fixtures.it("org/repo:TAG picks the file tagged with the quantization (llama.cpp's shorthand)", async () => {
  const engine = await fromHub('org/tiny-GGUF:F16');
  expect(engine.info.path.endsWith('tiny-F16.gguf')).toBe(true);
  await expectSameModel(await Engine.load({ model: join(local, 'tiny-F16.gguf'), kvTokens: 128 }), engine);
});

fixtures.it('a split GGUF downloads every part and loads as the whole file', async () => {
  const engine = await fromHub('org/tiny-split-GGUF', { file: 'tiny-Q8_0-00001-of-00003.gguf' });
  const snapshot = join(dir, 'cache', 'models--org--tiny-split-GGUF', 'snapshots', hub.commit('org/tiny-split-GGUF'));
  expect(readdirSync(snapshot).sort()).toEqual(readdirSync(join(local, 'split')).sort());
  await expectSameModel(await Engine.load({ model: join(local, 'tiny-Q8_0.gguf'), kvTokens: 128 }), engine);
  // The same split from a local folder, by its first part.
  const byFolder = await Engine.load({ model: join(local, 'split'), kvTokens: 128 });
  await expectSameModel(await Engine.load({ model: join(local, 'tiny-Q8_0.gguf'), kvTokens: 128 }), byFolder);
});

fixtures.it('plain -m org/repo downloads config, tokenizer and the shards its index names', async () => {
  const engine = await fromHub('org/tiny-qwen2', { format: 'plain' });
  const snapshot = join(dir, 'cache', 'models--org--tiny-qwen2', 'snapshots', hub.commit('org/tiny-qwen2'));
  expect(engine.info.path).toBe(snapshot);
  expect(readdirSync(snapshot).sort()).toEqual(readdirSync(join(local, 'hf')).sort());
  await expectSameModel(await Engine.load({ model: join(local, 'hf'), kvTokens: 128 }), engine);
  // Told apart by its files, as `run -m` does.
  const told = await fromHub('org/tiny-qwen2');
  expect(told.info.architecture).toBe('qwen2');
  told.close();
});

fixtures.it("-t org/repo: that repository's tokenizer and chat template win over the GGUF's", async () => {
  const engine = await fromHub('org/tiny-GGUF', { file: 'tiny-Q8_0.gguf', tokenizerModel: 'org/tokenizer' });
  try {
    expect(engine.chatTemplate?.text()).toBe(TEMPLATE);
    const text = await engine.chatTemplate!.render({ messages: [{ role: 'user', content: 'hi' }], addGenerationPrompt: true });
    expect(text).toBe('[user|hi][assistant|');
    // The tokenizer is the repository's tokenizer.json, not the GGUF's vocabulary.
    const encode = async (t: Tokenizer) => Array.from(await t.encodeAsync(text, { addSpecialTokens: false }));
    const own = await Tokenizer.fromFile(join(hfTokenizerDir, 'tokenizer.json'));
    const gguf = await Engine.load({ model: join(local, 'tiny-Q8_0.gguf'), kvTokens: 64 });
    try {
      expect(await encode(engine.tokenizer)).toEqual(await encode(own));
      expect(await encode(engine.tokenizer)).not.toEqual(await encode(gguf.tokenizer));
    } finally {
      gguf.close();
    }
  } finally {
    engine.close();
  }
});

fixtures.it('a plain request of a GGUF repository says how to load it instead', async () => {
  await expect(fromHub('org/tiny-GGUF', { format: 'plain' })).rejects.toThrow(
    /org\/tiny-GGUF holds no safetensors checkpoint .*use gguf -m org\/tiny-GGUF -f FILE \(tiny-F16\.gguf, tiny-Q8_0\.gguf\)/,
  );
  await expect(fromHub('org/tiny-GGUF')).rejects.toThrow(
    /org\/tiny-GGUF: name the file with -f, or the quantization as org\/repo:Q4_K_M; org\/tiny-GGUF has: tiny-F16\.gguf, tiny-Q8_0\.gguf/,
  );
});
