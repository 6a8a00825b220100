/**
 * Every flag is implemented or refused: flags that the command line's other flags would make
 * ignored (server flags without --port, chat flags with it, a run's flags on inspect) are a
 * usage error naming them; --dtype, -a and the DRY flags do what they say.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { DEFAULT_MODEL_ID, Engine, fetchRegistryModel } from '@mistralrs/core';

import { writeTinyHf } from '../../core/test/fixtures/tiny-model.js';

const bin = new URL('../bin/mistralrs-server.js', import.meta.url).pathname;
function cli(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let modelPath: string;
let dir: string;
let tinyHf: string;
beforeAll(async () => {
  modelPath = await fetchRegistryModel(DEFAULT_MODEL_ID);
  dir = mkdtempSync(join(tmpdir(), 'cli-flags-'));
  tinyHf = join(dir, 'tiny-llama');
  await writeTinyHf(tinyHf, { arch: 'llama' }, { type: 'F32' });
}, 300_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('flags that would be ignored are refused', () => {
  it.each([
    [['--host', '0.0.0.0', '--prompt', 'Hi'], '--host apply to a server: add --port'],
    [['--api-key', 'k', '--cors-origin', '*'], '--api-key, --cors-origin apply to a server: add --port'],
    [
      ['--port', '0', '--temperature', '0.5', '--dry-multiplier', '1'],
      '--temperature, --dry-multiplier apply to the chat and --prompt; a server takes them per request',
    ],
    [['--port', '0', '--prompt', 'Hi'], '--prompt apply to the chat and --prompt'],
    [['--prompt', 'Hi', '-i'], 'give --prompt TEXT or -i, not both'],
    [['--json'], '--json prints the answer to --prompt; give --prompt TEXT'],
    [['--prompt', 'Hi', '-n', '0'], '--max-tokens must be a positive integer, got 0'],
    [['--prompt', 'Hi', '--top-p', '1.5'], '--top-p must be a number greater than 0 and at most 1, got 1.5'],
    [['--prompt', 'Hi', '--dtype', 'fp8'], '--dtype must be one of auto, f32, f16, bf16, got "fp8"'],
    [['inspect', '--temperature', '1'], '--temperature do not apply to inspect'],
    [['inspect', '--json', '--max-array', '3'], '--max-array shapes the text output; --json prints every item'],
    [['architectures', '--port', '8080'], '--port do not apply to architectures'],
    [['pull', 'smollm2-135m-instruct-q4_1', '--list'], 'give a model to pull or --list, not both'],
  ])('%j', (args, message) => {
    const result = cli(args);
    expect(result.stderr).toContain(`mistralrs-server: ${message}`);
    expect(result.code).toBe(1);
  });
});

describe('--dtype and -a', () => {
  it('a GGUF refuses a dtype other than auto', () => {
    const result = cli(['gguf', '-m', modelPath, '--dtype', 'bf16', '--prompt', 'Hi']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain("a GGUF's weights keep the types in the file, so dtype bf16 cannot apply");
    expect(cli(['gguf', '-m', modelPath, '--dtype', 'auto', '--prompt', 'Hi', '-n', '1']).code).toBe(0);
  }, 120_000);

  it('a safetensors folder loads in each dtype; -a must name its architecture', () => {
    for (const dtype of ['f32', 'f16', 'bf16']) {
      const result = cli(['plain', '-m', tinyHf, '-a', 'llama', '--dtype', dtype, '--prompt', 'Hi', '-n', '2', '--json']);
      expect(result.stderr).toBe('');
      expect(JSON.parse(result.stdout).token_ids).toHaveLength(2);
    }
    const wrong = cli(['plain', '-m', tinyHf, '-a', 'gemma2', '--prompt', 'Hi']);
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toContain("the architecture requested (`gemma2`, that is `gemma2`) is not the folder's: model_type `llama`");
    const unknown = cli(['plain', '-m', tinyHf, '-a', 'gpt5', '--prompt', 'Hi']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('unknown architecture "gpt5" (-a takes llama, mistral');
  }, 120_000);
});

describe('DRY flags', () => {
  it('change a repeating answer exactly as the same options do in the library', async () => {
    const prompt = 'Repeat after me: one two three one two three one two three one two three';
    const dry = ['--dry-multiplier', '0.8', '--dry-allowed-length', '2', '--dry-sequence-breaker', 'none'];
    const base = ['--prompt', prompt, '-n', '24', '--json'];
    const plain = JSON.parse(cli(base).stdout) as { token_ids: number[] };
    const withDry = JSON.parse(cli([...base, ...dry]).stdout) as { token_ids: number[] };
    expect(withDry.token_ids).not.toEqual(plain.token_ids);
    const engine = await Engine.load({ model: modelPath, kvTokens: 512 });
    try {
      const direct = await engine.chat({
        messages: [{ role: 'user', content: prompt }],
        maxTokens: 24,
        dryMultiplier: 0.8,
        dryAllowedLength: 2,
        drySequenceBreakers: [],
      }).result;
      expect(withDry.token_ids).toEqual(direct.tokenIds);
    } finally {
      engine.close();
    }
  }, 120_000);
});
