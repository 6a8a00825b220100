/**
 * One cache for us and Python: the real `huggingface_hub` (PyPI, in the test environment
 * `scripts/setup.sh` makes) and our Hub client share `HF_HUB_CACHE` against the Hub fixture.
 * What Python downloaded, we load offline; what we downloaded, Python finds
 * (`try_to_load_from_cache`, `local_files_only`), reuses and scans without warnings.
 */
import { afterAll, beforeAll, expect } from '@jest/globals';
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { needsFixtures } from '../../../../test-support/fixtures.js';
import { type HubFixture, startHubFixture } from '../../../../test-support/hub-server.js';
import { HubRepository } from '../../src/hub/repository.js';
import { Engine } from '../../src/index.js';
import { hfTokenizerDir, vocabPath, writeTinyGguf, writeTinyHf } from '../fixtures/tiny-model.js';

const root = fileURLToPath(new URL('../../../../', import.meta.url));
const python = join(root, '.venv', 'bin', 'python');
const script = join(root, 'test-support', 'hf_hub_interop.py');
const fixtures = needsFixtures('the tiny models and the Python test environment with huggingface_hub (./scripts/setup.sh)', [
  vocabPath,
  join(hfTokenizerDir, 'tokenizer.json'),
  python,
]);

let dir: string;
let cacheDir: string;
let hub: HubFixture;

function folder(path: string): Record<string, Buffer> {
  return Object.fromEntries(readdirSync(path).map((f) => [f, readFileSync(join(path, f))]));
}

/** Runs the Python side with the fixture as the Hub and our cache as its cache (asynchronously:
 * the fixture answers from this process's event loop). */
function huggingfaceHub(...args: string[]): Promise<Record<string, unknown>> {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: dir,
    HF_ENDPOINT: hub.url,
    HF_HUB_CACHE: cacheDir,
    HF_HUB_DISABLE_TELEMETRY: '1',
    HF_HUB_DISABLE_PROGRESS_BARS: '1',
    // The bridge's Runner starts the CLI with this environment: the same Hub and cache.
    NODE_NO_WARNINGS: '1',
  };
  return new Promise((resolve, reject) => {
    execFile(python, [script, ...args], { env, encoding: 'utf8' }, (error, stdout, stderr) => {
      if (error) reject(new Error(`huggingface_hub ${args.join(' ')} failed: ${error.message}: ${stderr}`));
      else resolve(JSON.parse(stdout) as Record<string, unknown>);
    });
  });
}

const ours = { endpoint: '', cacheDir: '', progress: false as const, tokenSource: 'none' };

beforeAll(async () => {
  if (!fixtures.present) return;
  dir = mkdtempSync(join(tmpdir(), 'hub-interop-'));
  cacheDir = join(dir, 'hub-cache');
  const local = join(dir, 'local');
  await writeTinyGguf(join(dir, 'tiny-Q8_0.gguf'), { arch: 'llama' }, 'Q8_0');
  await writeTinyHf(local, { arch: 'qwen2' });
  const gguf = readFileSync(join(dir, 'tiny-Q8_0.gguf'));
  hub = await startHubFixture({
    repos: [
      { id: 'py/tiny-GGUF', files: { 'tiny-Q8_0.gguf': gguf, 'README.md': '# tiny' } },
      { id: 'py/tiny-qwen2', files: folder(local) },
      { id: 'ts/tiny-GGUF', files: { 'tiny-Q8_0.gguf': gguf, 'README.md': '# tiny' } },
      { id: 'ts/tiny-qwen2', files: folder(local) },
      { id: 'ts/locked-GGUF', files: { 'tiny-Q8_0.gguf': gguf } },
    ],
  });
  Object.assign(ours, { endpoint: hub.url, cacheDir });
});
afterAll(async () => {
  await hub?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

fixtures.it('what huggingface_hub downloaded, we load offline without a request', async () => {
  const file = (await huggingfaceHub('download', 'py/tiny-GGUF', 'tiny-Q8_0.gguf')).path as string;
  const snapshot = (await huggingfaceHub('snapshot', 'py/tiny-qwen2')).path as string;
  const requests = hub.requests.length;
  const repo = await HubRepository.open('py/tiny-GGUF', { ...ours, offline: true });
  expect(await repo.download('tiny-Q8_0.gguf')).toBe(file);
  const gguf = await Engine.load({ model: 'py/tiny-GGUF', file: 'tiny-Q8_0.gguf', kvTokens: 64, hub: { ...ours, offline: true } });
  const plain = await Engine.load({ model: 'py/tiny-qwen2', format: 'plain', kvTokens: 64, hub: { ...ours, offline: true } });
  try {
    expect(gguf.info.path).toBe(file);
    expect(plain.info.path).toBe(snapshot);
    expect(plain.info.architecture).toBe('qwen2');
    const ids = (await plain.complete({ prompt: [1, 450, 4996], maxTokens: 4, ignoreEos: true }).result).tokenIds;
    expect(ids.length).toBe(4);
  } finally {
    gguf.close();
    plain.close();
  }
  expect(hub.requests.length).toBe(requests);
});

fixtures.it('what we downloaded, huggingface_hub finds, reuses and scans as its own', async () => {
  const gguf = await Engine.load({ model: 'ts/tiny-GGUF', file: 'tiny-Q8_0.gguf', kvTokens: 64, hub: ours });
  const plain = await Engine.load({ model: 'ts/tiny-qwen2', kvTokens: 64, hub: ours });
  gguf.close();
  plain.close();
  const found = await huggingfaceHub('find', 'ts/tiny-GGUF', 'tiny-Q8_0.gguf');
  expect(found).toEqual({ cached: gguf.info.path, local: gguf.info.path });
  const config = await huggingfaceHub('find', 'ts/tiny-qwen2', 'config.json');
  expect(realpathSync(config.local as string)).toBe(realpathSync(join(plain.info.path, 'config.json')));

  // Online, huggingface_hub asks for the metadata only: the blob it would fetch is there.
  hub.requests.length = 0;
  expect((await huggingfaceHub('download', 'ts/tiny-GGUF', 'tiny-Q8_0.gguf')).path).toBe(gguf.info.path);
  expect(hub.requests.filter((r) => r.method === 'GET' && (r.url.startsWith('/lfs/') || r.url.includes('/resolve/')))).toEqual([]);

  const scan = (await huggingfaceHub('scan')) as { repos: Array<Record<string, unknown>>; warnings: string[] };
  expect(scan.warnings).toEqual([]);
  const repo = scan.repos.find((r) => r.repo_id === 'ts/tiny-GGUF');
  expect(repo).toEqual({
    repo_id: 'ts/tiny-GGUF',
    size_on_disk: readFileSync(gguf.info.path).length,
    nb_files: 1,
    revisions: [{ commit_hash: hub.commit('ts/tiny-GGUF'), refs: ['main'], files: ['tiny-Q8_0.gguf'] }],
  });
});

fixtures.it("the Python bridge's Which.GGUF and Which.Plain take Hub ids", async () => {
  for (const [which, model, file] of [
    ['GGUF', 'ts/tiny-GGUF', 'tiny-Q8_0.gguf'],
    ['Plain', 'ts/tiny-qwen2', undefined],
  ] as const) {
    const engine = await Engine.load({ model, ...(file ? { file } : {}), kvTokens: 64, hub: ours });
    try {
      const expected = (await engine.complete({ prompt: 'Once upon a time', maxTokens: 6 }).result).text;
      const answer = await huggingfaceHub('bridge', model, ...(file ? [file] : []));
      expect({ which, ...answer }).toEqual({ which, model, text: expected });
    } finally {
      engine.close();
    }
  }
});

fixtures.it('a download waits while huggingface_hub holds its lock on that blob, then fetches it once', async () => {
  const bytes = readFileSync(join(dir, 'tiny-Q8_0.gguf'));
  const logs: string[] = [];
  const repo = await HubRepository.open('ts/locked-GGUF', { ...ours, log: (line) => logs.push(line) });
  const lockPath = repo.cache.lockPath(createHash('sha256').update(bytes).digest('hex'));
  expect(lockPath).toBe(join(cacheDir, '.locks', 'models--ts--locked-GGUF', `${createHash('sha256').update(bytes).digest('hex')}.lock`));
  const holder = spawn(python, [script, 'hold-lock', lockPath], { env: { PATH: process.env.PATH }, stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    holder.stdout.once('data', () => resolve());
    holder.once('exit', (code) => reject(new Error(`the lock holder exited ${code}`)));
  });
  hub.requests.length = 0;
  const download = repo.download('tiny-Q8_0.gguf');
  // The first try found the lock taken: it said so, and fetched nothing.
  expect(logs).toEqual([
    expect.stringMatching(/^ts\/locked-GGUF\/tiny-Q8_0\.gguf: another process is downloading it \(.*\.lock\); waiting$/),
  ]);
  expect(hub.requests).toEqual([]);
  const released = new Promise((resolve) => holder.once('exit', resolve));
  holder.stdin.end();
  await released;
  expect(readFileSync(await download).equals(bytes)).toBe(true);
  expect(hub.requests.filter((r) => r.url.startsWith('/lfs/') && r.method === 'GET').length).toBe(1);
});
