/**
 * The command line with Hub ids, against the Hub fixture (test-support/hub-server.ts) as
 * `HF_ENDPOINT` and a fresh `HF_HUB_CACHE`: the seed's `gguf`/`plain` forms, mistral.rs's
 * `run -m`/`serve -m`, llama.cpp's `org/repo:QUANT`, `pull`, offline use and the failures.
 * The CLI runs as a child process, asynchronously: the fixture answers from this process.
 */
import { afterAll, beforeAll, expect } from '@jest/globals';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { needsFixtures } from '../../../test-support/fixtures.js';
import { type HubFixture, startHubFixture } from '../../../test-support/hub-server.js';
import { hfTokenizerDir, vocabPath, writeTinyGguf, writeTinyHf } from '../../core/test/fixtures/tiny-model.js';

const bin = new URL('../bin/mistralrs-server.js', import.meta.url).pathname;
const fixtures = needsFixtures('the tiny models', [vocabPath, join(hfTokenizerDir, 'tokenizer.json')]);
let dir: string;
let hub: HubFixture;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [bin, ...args],
      {
        encoding: 'utf8',
        env: {
          PATH: process.env.PATH,
          HOME: dir,
          HF_ENDPOINT: hub.url,
          HF_HUB_CACHE: join(dir, 'cache'),
          ...env,
        },
      },
      (error, stdout, stderr) => resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr }),
    );
  });
}

const PROMPT = ['--prompt', 'Once upon a time', '-n', '6', '--json'];
const tokens = (run: Run) => (JSON.parse(run.stdout) as { token_ids: number[] }).token_ids;

beforeAll(async () => {
  if (!fixtures.present) return;
  dir = mkdtempSync(join(tmpdir(), 'cli-hub-'));
  await writeTinyGguf(join(dir, 'tiny-Q8_0.gguf'), { arch: 'llama' }, 'Q8_0');
  await writeTinyGguf(join(dir, 'tiny-F16.gguf'), { arch: 'llama' }, 'F16');
  await writeTinyHf(join(dir, 'hf'), { arch: 'qwen2' });
  const hf = Object.fromEntries(readdirSync(join(dir, 'hf')).map((f) => [f, readFileSync(join(dir, 'hf', f))]));
  hub = await startHubFixture({
    repos: [
      {
        id: 'org/tiny-GGUF',
        files: { 'tiny-Q8_0.gguf': readFileSync(join(dir, 'tiny-Q8_0.gguf')), 'tiny-F16.gguf': readFileSync(join(dir, 'tiny-F16.gguf')) },
      },
      { id: 'org/tiny-qwen2', files: hf },
      { id: 'org/gated-GGUF', files: { 'tiny-Q8_0.gguf': readFileSync(join(dir, 'tiny-Q8_0.gguf')) }, gated: true },
    ],
  });
});
afterAll(async () => {
  await hub?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

fixtures.it('gguf -m org/repo -f FILE downloads once, reports it, and answers as the local file does', async () => {
  const local = await cli(['gguf', '-m', join(dir, 'tiny-Q8_0.gguf'), ...PROMPT]);
  expect(local.code).toBe(0);
  const first = await cli(['gguf', '-m', 'org/tiny-GGUF', '-f', 'tiny-Q8_0.gguf', ...PROMPT]);
  expect(first.stderr).toMatch(
    /^downloading org\/tiny-GGUF\/tiny-Q8_0\.gguf \(\d+(\.\d)? [kM]B\)\ndownloaded org\/tiny-GGUF\/tiny-Q8_0\.gguf: .* in \d+\.\d s\n$/,
  );
  expect(first.code).toBe(0);
  expect(tokens(first)).toEqual(tokens(local));
  const again = await cli(['gguf', '-m', 'org/tiny-GGUF', '-f', 'tiny-Q8_0.gguf', ...PROMPT]);
  expect(again.stderr).toBe('');
  expect(tokens(again)).toEqual(tokens(local));

  // Offline, the cache alone answers; what it lacks is named.
  const requests = hub.requests.length;
  const offline = await cli(['gguf', '-m', 'org/tiny-GGUF', '-f', 'tiny-Q8_0.gguf', ...PROMPT], { HF_HUB_OFFLINE: '1' });
  expect(tokens(offline)).toEqual(tokens(local));
  expect(hub.requests.length).toBe(requests);
  const missing = await cli(['gguf', '-m', 'org/tiny-GGUF', '-f', 'tiny-F16.gguf', ...PROMPT], { HF_HUB_OFFLINE: '1' });
  expect(missing).toMatchObject({
    code: 1,
    stderr: expect.stringMatching(/has no file "tiny-F16\.gguf"; .* \(working offline: these are the files the cache holds, in .*\)\n$/),
  });
});

fixtures.it('org/repo:QUANT, run -m and pull pick the file; a missing or wrong -f lists the GGUF files', async () => {
  const local = await cli(['gguf', '-m', join(dir, 'tiny-F16.gguf'), ...PROMPT]);
  const tagged = await cli(['gguf', '-m', 'org/tiny-GGUF:F16', ...PROMPT]);
  expect(tokens(tagged)).toEqual(tokens(local));
  const run = await cli(['run', '-m', 'org/tiny-GGUF:f16', ...PROMPT]);
  expect(tokens(run)).toEqual(tokens(local));
  const pulled = await cli(['pull', 'org/tiny-GGUF:F16']);
  expect(pulled.code).toBe(0);
  expect(pulled.stdout).toMatch(/models--org--tiny-GGUF\/snapshots\/[0-9a-f]{40}\/tiny-F16\.gguf\n$/);

  const listing = 'org/tiny-GGUF has: tiny-F16.gguf, tiny-Q8_0.gguf';
  for (const args of [
    ['gguf', '-m', 'org/tiny-GGUF'],
    ['gguf', '-m', 'org/tiny-GGUF', '-f', 'tiny-Q4_K_M.gguf'],
    ['gguf', '-m', 'org/tiny-GGUF:Q4_K_M'],
  ]) {
    const refused = await cli([...args, ...PROMPT]);
    expect(refused).toMatchObject({ code: 1, stdout: '' });
    expect(refused.stderr).toContain(listing);
  }
});

fixtures.it('plain -m org/repo and run -m org/repo load a safetensors checkpoint; plain on a GGUF repository says what to do', async () => {
  const local = await cli(['plain', '-m', join(dir, 'hf'), ...PROMPT]);
  expect(local.code).toBe(0);
  const plain = await cli(['plain', '-m', 'org/tiny-qwen2', '-a', 'qwen2', ...PROMPT]);
  expect(plain.code).toBe(0);
  expect(tokens(plain)).toEqual(tokens(local));
  const run = await cli(['run', '-m', 'org/tiny-qwen2', ...PROMPT]);
  expect(tokens(run)).toEqual(tokens(local));
  const wrong = await cli(['plain', '-m', 'org/tiny-GGUF', ...PROMPT]);
  expect(wrong.code).toBe(1);
  expect(wrong.stderr).toContain('org/tiny-GGUF holds no safetensors checkpoint');
  expect(wrong.stderr).toContain('use gguf -m org/tiny-GGUF -f FILE');
});

fixtures.it('serve -m org/repo:QUANT -p PORT serves the model under that id', async () => {
  const child = spawn(process.execPath, [bin, 'serve', '-m', 'org/tiny-GGUF:Q8_0', '-p', '0'], {
    env: { PATH: process.env.PATH, HOME: dir, HF_ENDPOINT: hub.url, HF_HUB_CACHE: join(dir, 'cache') },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  try {
    let stderr = '';
    const url = await new Promise<string>((resolve, reject) => {
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        const m = /listening on (http:\/\/\S+)/.exec(stderr);
        if (m) resolve(m[1]!);
      });
      child.on('exit', (code) => reject(new Error(`exited ${code}: ${stderr}`)));
    });
    const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: Array<{ id: string }> };
    expect(models.data.map((m) => m.id)).toEqual(['org/tiny-GGUF:Q8_0']);
  } finally {
    child.kill('SIGTERM');
  }
});

fixtures.it('a gated repository, a missing one and an unreachable Hub each get one line saying what to do', async () => {
  const gated = await cli(['gguf', '-m', 'org/gated-GGUF', '-f', 'tiny-Q8_0.gguf', ...PROMPT]);
  expect(gated).toMatchObject({ code: 1, stdout: '' });
  expect(gated.stderr).toMatch(
    /^mistralrs-server: org\/gated-GGUF is gated: .*HTTP 401; token source cache: HF_TOKEN \(unset\), then .*token; no token was sent\)\n$/,
  );
  const withToken = await cli(['gguf', '-m', 'org/gated-GGUF', '-f', 'tiny-Q8_0.gguf', ...PROMPT], { HF_TOKEN: hub.token });
  expect(withToken.code).toBe(0);

  const missing = await cli(['gguf', '-m', 'org/nothing', '-f', 'x.gguf', ...PROMPT]);
  expect(missing.stderr).toMatch(/^mistralrs-server: repository org\/nothing not found at http:\/\/127\.0\.0\.1:\d+/);

  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const closed = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  await new Promise((resolve) => server.close(resolve));
  const unreachable = await cli(['gguf', '-m', 'org/elsewhere', '-f', 'x.gguf', ...PROMPT], { HF_ENDPOINT: closed });
  expect(unreachable.code).toBe(1);
  expect(unreachable.stderr).toContain(`cannot reach the Hugging Face Hub at ${closed} (ECONNREFUSED)`);
  expect(unreachable.stderr).toContain('set HF_HUB_OFFLINE=1 to use what the cache has, or give -m a local path');
});
