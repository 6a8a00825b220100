/**
 * The Hub client against a Hub-compatible server on 127.0.0.1 (test-support/hub-server.ts):
 * huggingface_hub's cache layout, resumed and verified downloads, offline use, and the failures
 * a user meets (unreachable, gated, missing repository, revision or file, a full disk).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { createHash } from 'node:crypto';
import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { gitBlobOid, type HubFixture, startHubFixture } from '../../../../test-support/hub-server.js';
import { hubCacheDir, tryLoadFromCache } from '../../src/hub/cache.js';
import { HubError, type HubErrorKind } from '../../src/hub/errors.js';
import { chooseGgufFiles, checkpointShards, splitGgufParts } from '../../src/hub/model-files.js';
import { progressReporter } from '../../src/hub/progress.js';
import { HubRepository, type HubOptions, isRepoId } from '../../src/hub/repository.js';
import { resolveToken } from '../../src/hub/token.js';

const BIG = Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 7 + (i >> 9)) % 251));
const CONFIG = '{"model_type": "llama"}';
let hub: HubFixture;
let dir: string;
let cacheDir: string;
const logs: string[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hub-download-'));
  hub = await startHubFixture({
    repos: [
      {
        id: 'org/model',
        files: { 'model.gguf': BIG, 'config.json': CONFIG, 'sub/notes.txt': 'hello' },
        branches: { v2: { 'model.gguf': BIG.subarray(1000), 'config.json': '{}' } },
      },
      { id: 'org/gated', files: { 'model.gguf': BIG.subarray(0, 50_000) }, gated: true },
      { id: 'org/escape', files: { '../../outside.txt': 'x' } },
      // Listed as 1 PB: no disk holds it.
      { id: 'org/huge', files: { 'huge.gguf': 'x' }, listedSizes: { 'huge.gguf': 1e15 } },
    ],
  });
});
afterAll(async () => {
  await hub.close();
  rmSync(dir, { recursive: true, force: true });
});
let run = 0;
afterEach(() => {
  logs.length = 0;
  hub.requests.length = 0;
});

/** A fresh cache folder per test, and options pointing at the fixture. */
function fresh(extra: HubOptions = {}): HubOptions {
  cacheDir = join(dir, `cache-${++run}`);
  return options(extra);
}
function options(extra: HubOptions = {}): HubOptions {
  return { endpoint: hub.url, cacheDir, tokenSource: 'none', progress: false, log: (l) => logs.push(l), ...extra };
}
async function failure(promise: Promise<unknown>): Promise<HubError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(HubError);
  return error as HubError;
}
async function expectKind(promise: Promise<unknown>, kind: HubErrorKind, message: RegExp): Promise<void> {
  const error = await failure(promise);
  expect({ kind: error.kind, message: error.message }).toEqual({ kind, message: expect.stringMatching(message) });
}
/** An address where nothing listens: a port that was free a moment ago. */
async function closedEndpoint(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe("huggingface_hub's cache layout", () => {
  it('writes refs, blobs named by object id and relative snapshot links', async () => {
    const repo = await HubRepository.open('org/model', fresh());
    const commit = hub.commit('org/model');
    expect(repo.commit).toBe(commit);
    expect(repo.paths).toEqual(['config.json', 'model.gguf', 'sub/notes.txt']);
    const gguf = await repo.download('model.gguf');
    const notes = await repo.download('sub/notes.txt');
    const root = join(cacheDir, 'models--org--model');
    expect(readFileSync(join(root, 'refs', 'main'), 'utf8')).toBe(commit);
    expect(gguf).toBe(join(root, 'snapshots', commit, 'model.gguf'));
    expect(lstatSync(gguf).isSymbolicLink()).toBe(true);
    expect(readlinkSync(gguf)).toBe(`../../blobs/${sha256(BIG)}`);
    expect(readlinkSync(notes)).toBe(`../../../blobs/${gitBlobOid(Buffer.from('hello'))}`);
    expect(readFileSync(gguf).equals(BIG)).toBe(true);
    expect(readdirSync(join(root, 'blobs')).sort()).toEqual([gitBlobOid(Buffer.from('hello')), sha256(BIG)].sort());
    expect(tryLoadFromCache('org/model', 'model.gguf', { cacheDir })).toBe(gguf);
    expect(tryLoadFromCache('org/model', 'config.json', { cacheDir })).toBeUndefined();
  });

  it('downloads a file once: a second open finds it without fetching it again', async () => {
    const first = await HubRepository.open('org/model', fresh());
    await first.download('model.gguf');
    hub.requests.length = 0;
    const again = await HubRepository.open('org/model', options());
    await again.download('model.gguf');
    expect(hub.requests.filter((r) => r.url.includes('/resolve/') || r.url.startsWith('/lfs/'))).toEqual([]);
  });

  it('keeps each revision in its own snapshot and ref', async () => {
    const repo = await HubRepository.open('org/model', fresh({ revision: 'v2' }));
    expect(repo.commit).toBe(hub.commit('org/model', 'v2'));
    expect(readFileSync(await repo.download('model.gguf')).equals(BIG.subarray(1000))).toBe(true);
    expect(readFileSync(join(cacheDir, 'models--org--model', 'refs', 'v2'), 'utf8')).toBe(repo.commit);
    const byCommit = await HubRepository.open('org/model', options({ revision: repo.commit }));
    expect(byCommit.commit).toBe(repo.commit);
  });

  it('finds its folder from HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE and HF_HOME', () => {
    const saved = { ...process.env };
    try {
      delete process.env.HF_HUB_CACHE;
      delete process.env.HUGGINGFACE_HUB_CACHE;
      process.env.HF_HOME = '/data/hf';
      expect(hubCacheDir()).toBe('/data/hf/hub');
      process.env.HUGGINGFACE_HUB_CACHE = '/old';
      expect(hubCacheDir()).toBe('/old');
      process.env.HF_HUB_CACHE = '/new';
      expect(hubCacheDir()).toBe('/new');
    } finally {
      process.env = saved;
    }
  });
});

describe('downloads', () => {
  it('resume after an interruption with a range request, and verify the sha256', async () => {
    const repo = await HubRepository.open('org/model', fresh());
    hub.cutOnce('org/model', 'model.gguf', 70_000);
    const path = await repo.download('model.gguf');
    expect(readFileSync(path).equals(BIG)).toBe(true);
    const blobGets = hub.requests.filter((r) => r.url.startsWith('/lfs/') && r.method === 'GET');
    expect(blobGets.length).toBe(2);
    expect(blobGets[1]!.range).toMatch(/^bytes=\d+-199999$/);
    expect(Number(/bytes=(\d+)-/.exec(blobGets[1]!.range!)![1])).toBeGreaterThan(0);
    expect(logs.some((l) => /resuming at/.test(l))).toBe(true);
  });

  it('resume what an earlier process left in blobs/<id>.incomplete', async () => {
    const repo = await HubRepository.open('org/model', fresh());
    const blobs = join(cacheDir, 'models--org--model', 'blobs');
    mkdirSync(blobs, { recursive: true });
    writeFileSync(join(blobs, `${sha256(BIG)}.incomplete`), BIG.subarray(0, 123_456));
    expect(readFileSync(await repo.download('model.gguf')).equals(BIG)).toBe(true);
    expect(hub.requests.filter((r) => r.url.startsWith('/lfs/')).map((r) => r.range)).toEqual(['bytes=123456-199999']);
    expect(existsSync(join(blobs, `${sha256(BIG)}.incomplete`))).toBe(false);
  });

  it('delete a download whose bytes do not match the hash, leaving no blob and no link', async () => {
    const repo = await HubRepository.open('org/model', fresh());
    hub.corrupt('org/model', 'model.gguf');
    try {
      await expectKind(repo.download('model.gguf'), 'checksum_mismatch', /does not match the Hub's sha256/);
    } finally {
      hub.corrupt('org/model', 'model.gguf', false);
    }
    const root = join(cacheDir, 'models--org--model');
    expect(readdirSync(join(root, 'blobs'))).toEqual([]);
    expect(tryLoadFromCache('org/model', 'model.gguf', { cacheDir })).toBeUndefined();
  });

  // /dev/full answers every write with ENOSPC: a real full disk for the blob being written.
  it('remove the partial file when the disk fills up', async () => {
    expect(existsSync('/dev/full')).toBe(true);
    const repo = await HubRepository.open('org/model', fresh());
    const blobs = join(cacheDir, 'models--org--model', 'blobs');
    mkdirSync(blobs, { recursive: true });
    const incomplete = join(blobs, `${sha256(BIG)}.incomplete`);
    symlinkSync('/dev/full', incomplete);
    await expectKind(repo.download('model.gguf'), 'disk_full', /the disk is full .*the partial file was removed/);
    expect(readdirSync(blobs)).toEqual([]);
  });

  it('refuse a file the disk cannot hold before writing anything, saying how much is free', async () => {
    const repo = await HubRepository.open('org/huge', fresh());
    await expectKind(
      repo.download('huge.gguf'),
      'disk_full',
      /org\/huge\/huge\.gguf: needs 1000\.0 TB and .* has [\d.]+ [kMGT]?B free; free some space or set HF_HUB_CACHE/,
    );
    expect(readdirSync(join(cacheDir, 'models--org--huge', 'blobs'))).toEqual([]);
    expect(hub.requests.filter((r) => r.url.startsWith('/lfs/'))).toEqual([]);
  });

  it('report progress as a line per file off a terminal, and a bar with rate and time left on one', () => {
    const plain: string[] = [];
    let t = 0;
    const off = progressReporter({ isTTY: false, write: (s: string) => plain.push(s) }, () => t)('org/m/model.gguf', 2_000_000, 0);
    off.update(1_000_000);
    t = 2000;
    off.update(2_000_000);
    off.done();
    expect(plain).toEqual(['downloading org/m/model.gguf (2.0 MB)\n', 'downloaded org/m/model.gguf: 2.0 MB in 2.0 s\n']);
    const tty: string[] = [];
    t = 0;
    const on = progressReporter({ isTTY: true, columns: 200, write: (s: string) => tty.push(s) }, () => t)(
      'org/m/model.gguf',
      2_000_000,
      500_000,
    );
    t = 1000;
    on.update(1_000_000);
    expect(tty.at(-1)).toBe('\rorg/m/model.gguf [##########..........]  50% 1.0 MB/2.0 MB 500.0 kB/s 00:02 left\x1b[K');
    t = 3000;
    on.update(2_000_000);
    on.done();
    expect(tty.at(-1)).toBe('\rorg/m/model.gguf [####################] 100% 2.0 MB/2.0 MB 500.0 kB/s in 00:03\x1b[K\n');
  });
});

describe('offline and unreachable', () => {
  it('HF_HUB_OFFLINE uses the cache alone, and says what is missing', async () => {
    await (await HubRepository.open('org/model', fresh())).download('model.gguf');
    const requests = hub.requests.length;
    const saved = process.env.HF_HUB_OFFLINE;
    process.env.HF_HUB_OFFLINE = '1';
    try {
      const repo = await HubRepository.open('org/model', options());
      expect(repo.fromCache).toBe(true);
      expect(readFileSync(await repo.download('model.gguf')).equals(BIG)).toBe(true);
      await expectKind(repo.download('config.json'), 'not_cached', /config\.json is not in the cache/);
      await expectKind(
        HubRepository.open('org/other', options()),
        'not_cached',
        /org\/other@main is not in the cache .* HF_HUB_OFFLINE is set/,
      );
    } finally {
      if (saved === undefined) delete process.env.HF_HUB_OFFLINE;
      else process.env.HF_HUB_OFFLINE = saved;
    }
    expect(hub.requests.length).toBe(requests);
  });

  it('an unreachable Hub names the endpoint and the ways out, or falls back to the cache with a warning', async () => {
    const closed = await closedEndpoint();
    await expectKind(
      HubRepository.open('org/model', fresh({ endpoint: closed })),
      'unreachable',
      /cannot reach the Hugging Face Hub at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\).*HF_ENDPOINT.*HF_HUB_OFFLINE=1.*local path/,
    );
    await (await HubRepository.open('org/model', options())).download('model.gguf');
    const repo = await HubRepository.open('org/model', options({ endpoint: closed }));
    expect(repo.fromCache).toBe(true);
    expect(readFileSync(await repo.download('model.gguf')).equals(BIG)).toBe(true);
    expect(logs).toEqual([expect.stringMatching(/cannot reach .*; using the cached snapshot [0-9a-f]{12} of org\/model/)]);
  });
});

describe('clear failures', () => {
  it('a gated repository: 401 without a token, 403 with one lacking access, naming the token source', async () => {
    await expectKind(
      HubRepository.open('org/gated', fresh()),
      'unauthorized',
      /org\/gated is gated.*HTTP 401; token source none; no token was sent/,
    );
    await expectKind(
      HubRepository.open('org/gated', options({ tokenSource: 'literal:hf_wrong' })),
      'unauthorized',
      /HTTP 403; token source literal:…; a token was sent/,
    );
    hub.requests.length = 0;
    const repo = await HubRepository.open('org/gated', options({ tokenSource: `literal:${hub.token}` }));
    expect(readFileSync(await repo.download('model.gguf')).length).toBe(50_000);
    expect(hub.requests.filter((r) => r.url.startsWith('/api/')).every((r) => r.authorization === `Bearer ${hub.token}`)).toBe(true);
    // The token goes to the Hub only, never to the CDN its redirects point to.
    expect(hub.requests.filter((r) => r.url.startsWith('/lfs/')).map((r) => r.authorization)).toEqual([undefined]);
  });

  it('HF_TOKEN is the default token source', async () => {
    const saved = process.env.HF_TOKEN;
    process.env.HF_TOKEN = hub.token;
    try {
      expect(await resolveToken()).toBe(hub.token);
      const repo = await HubRepository.open('org/gated', fresh({ tokenSource: 'cache' }));
      expect(repo.paths).toEqual(['model.gguf']);
    } finally {
      if (saved === undefined) delete process.env.HF_TOKEN;
      else process.env.HF_TOKEN = saved;
    }
  });

  it('a missing repository, revision or file each say which', async () => {
    await expectKind(
      HubRepository.open('org/nothing', fresh()),
      'repository_not_found',
      /repository org\/nothing not found at http:\/\/127\.0\.0\.1:\d+ \(if it is private/,
    );
    await expectKind(HubRepository.open('org/model', options({ revision: 'v9' })), 'revision_not_found', /org\/model has no revision "v9"/);
    const repo = await HubRepository.open('org/model', options());
    await expectKind(repo.download('absent.gguf'), 'file_not_found', /org\/model@main has no file "absent\.gguf"/);
    await expectKind(repo.download('../../../refs/main'), 'invalid_argument', /bad file name/);
    await expectKind(HubRepository.open('not a repo', options()), 'invalid_argument', /is not a Hugging Face repository id/);
    // A listing whose paths would lead out of the cache is refused before anything is written.
    await expectKind(HubRepository.open('org/escape', options()), 'http', /names an unsafe path "\.\.\/\.\.\/outside\.txt"; refused/);
  });

  it('refuses a token source it cannot read', async () => {
    await expect(resolveToken('env:MISTRALRS_NOT_SET_ANYWHERE')).rejects.toThrow(/env:MISTRALRS_NOT_SET_ANYWHERE: the variable is not set/);
    await expect(resolveToken('path:/nonexistent/token')).rejects.toThrow(/path:\/nonexistent\/token/);
    await expect(resolveToken('vault')).rejects.toThrow(/unknown token source "vault"/);
    expect(await resolveToken('literal:abc')).toBe('abc');
    expect(await resolveToken('none')).toBeUndefined();
  });
});

describe('which files make a model', () => {
  const files = [
    'README.md',
    'mmproj-f16.gguf',
    'm-Q4_K_M.gguf',
    'm-Q4_K.gguf',
    'm-Q8_0-00001-of-00002.gguf',
    'm-Q8_0-00002-of-00002.gguf',
  ];

  it('picks a GGUF by its quantization tag as a whole word, with every part of a split file', () => {
    expect(chooseGgufFiles('o/r', files, [], 'Q4_K_M')).toEqual(['m-Q4_K_M.gguf']);
    expect(chooseGgufFiles('o/r', files, [], 'q4_k')).toEqual(['m-Q4_K.gguf']);
    expect(chooseGgufFiles('o/r', files, [], 'Q8_0')).toEqual(['m-Q8_0-00001-of-00002.gguf', 'm-Q8_0-00002-of-00002.gguf']);
    expect(chooseGgufFiles('o/r', files, ['m-Q8_0-00001-of-00002.gguf'], undefined)).toEqual([
      'm-Q8_0-00001-of-00002.gguf',
      'm-Q8_0-00002-of-00002.gguf',
    ]);
    expect(chooseGgufFiles('o/r', ['only.gguf', 'mmproj.gguf'], [], undefined)).toEqual(['only.gguf']);
    expect(splitGgufParts('a-00002-of-00003.gguf')).toEqual(['a-00001-of-00003.gguf', 'a-00002-of-00003.gguf', 'a-00003-of-00003.gguf']);
  });

  it('lists the GGUF files when -f is missing or wrong', () => {
    const listing = /o\/r has: m-Q4_K_M\.gguf, m-Q4_K\.gguf, m-Q8_0-00001-of-00002\.gguf$/;
    expect(() => chooseGgufFiles('o/r', files, [], undefined)).toThrow(listing);
    expect(() => chooseGgufFiles('o/r', files, ['m-q4.gguf'], undefined)).toThrow(/o\/r has no file "m-q4\.gguf"; o\/r has: m-Q4_K_M/);
    expect(() => chooseGgufFiles('o/r', files, [], 'IQ2_XS')).toThrow(/no GGUF file is tagged IQ2_XS; o\/r has/);
    expect(() => chooseGgufFiles('o/r', files, ['m-Q4_K.gguf', 'm-Q4_K_M.gguf'], undefined)).toThrow(/parts of one split GGUF/);
    expect(() => chooseGgufFiles('o/r', files, ['README.md'], undefined)).toThrow(/is not a \.gguf file/);
  });

  it("takes a checkpoint's shards from its index", () => {
    const paths = ['config.json', 'a.safetensors', 'b.safetensors', 'model.safetensors.index.json'];
    expect(checkpointShards('o/r', paths, { weight_map: { x: 'a.safetensors', y: 'b.safetensors', z: 'a.safetensors' } })).toEqual([
      'a.safetensors',
      'b.safetensors',
    ]);
    expect(() => checkpointShards('o/r', paths, { weight_map: { x: 'c.safetensors' } })).toThrow(
      /names "c\.safetensors", which the repository lacks/,
    );
    expect(checkpointShards('o/r', ['config.json', 'model.safetensors'], undefined)).toEqual(['model.safetensors']);
  });

  it('knows a repository id', () => {
    expect(isRepoId('org/model')).toBe(true);
    expect(isRepoId('HuggingFaceTB/SmolLM2-135M-Instruct')).toBe(true);
    for (const bad of ['./model.gguf', '/abs/path', 'org/../x', 'a/b/c', 'org/model.', 'model']) expect(isRepoId(bad)).toBe(false);
  });
});
