/**
 * The hub download code against a loopback server that answers as the hub does for
 * `/{repo}/resolve/{revision}/{file}` (HEAD and ranged GET). No network is involved.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { resolveGgufPath } from '../../src/engine/model-source.js';
import { downloadHubFile, HubError, looksLikeRepoId, resolveToken } from '../../src/hub.js';

const FILE = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 7) % 251));
const TOKEN = 'hf_test_token';
let server: Server;
let hubUrl: string;
let dir: string;
const seen: Array<{ method: string; url: string; auth: string | undefined }> = [];

function handle(req: IncomingMessage, res: import('node:http').ServerResponse) {
  seen.push({ method: req.method ?? '', url: req.url ?? '', auth: req.headers.authorization });
  const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(req.url ?? '');
  if (!m) {
    res.writeHead(404).end('not found');
    return;
  }
  const [, repo, , file] = m;
  if (repo === 'org/private' && req.headers.authorization !== `Bearer ${TOKEN}`) {
    res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'Unauthorized' }));
    return;
  }
  if (file !== 'model.gguf') {
    res
      .writeHead(404, { 'content-type': 'application/json', 'x-error-code': 'EntryNotFound' })
      .end(JSON.stringify({ error: 'Entry not found' }));
    return;
  }
  const headers = { etag: '"abc"', 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes' };
  const range = /bytes=(\d+)-(\d*)/.exec(req.headers.range ?? '');
  if (range) {
    const start = Number(range[1]);
    const end = range[2] ? Number(range[2]) : FILE.length - 1;
    const body = FILE.subarray(start, end + 1);
    res.writeHead(206, { ...headers, 'content-length': body.length, 'content-range': `bytes ${start}-${end}/${FILE.length}` });
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  res.writeHead(200, { ...headers, 'content-length': FILE.length });
  res.end(req.method === 'HEAD' ? undefined : FILE);
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hub-test-'));
  server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  hubUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

describe('token sources', () => {
  it('reads literal, env, path and none', async () => {
    expect(await resolveToken('literal:abc')).toBe('abc');
    process.env.MISTRALRS_TEST_TOKEN = 'from-env';
    expect(await resolveToken('env:MISTRALRS_TEST_TOKEN')).toBe('from-env');
    const file = join(dir, 'token');
    writeFileSync(file, 'from-file\n');
    expect(await resolveToken(`path:${file}`)).toBe('from-file');
    expect(await resolveToken('none')).toBeUndefined();
    process.env.HF_TOKEN_PATH = file;
    expect(await resolveToken('cache')).toBe('from-file');
    delete process.env.HF_TOKEN_PATH;
  });

  it('names the problem with a bad source', async () => {
    await expect(resolveToken('env:MISTRALRS_NOT_SET_ANYWHERE')).rejects.toThrow(/env:MISTRALRS_NOT_SET_ANYWHERE: the variable is not set/);
    await expect(resolveToken('path:/nonexistent/token')).rejects.toThrow(/path:\/nonexistent\/token/);
    await expect(resolveToken('vault:x')).rejects.toThrow(/unknown token source/);
  });
});

describe('hub downloads', () => {
  it('tells repository ids from paths', () => {
    expect(looksLikeRepoId('org/model')).toBe(true);
    expect(looksLikeRepoId('./model.gguf')).toBe(false);
    expect(looksLikeRepoId('/abs/path')).toBe(false);
  });

  it('downloads a file into the cache once, with the token', async () => {
    const path = await downloadHubFile('org/private', 'model.gguf', {
      hubUrl,
      cacheDir: dir,
      tokenSource: `literal:${TOKEN}`,
      log: () => undefined,
    });
    expect(readFileSync(path).equals(FILE)).toBe(true);
    expect(seen.some((r) => r.auth === `Bearer ${TOKEN}`)).toBe(true);
    const requests = seen.length;
    const again = await downloadHubFile('org/private', 'model.gguf', { hubUrl, cacheDir: dir, tokenSource: 'none' });
    expect(again).toBe(path);
    expect(seen.length).toBe(requests); // served from the cache
  });

  it('reports a missing file, a refused token and a bad file name clearly', async () => {
    const opts = { hubUrl, cacheDir: dir, log: () => undefined };
    await expect(downloadHubFile('org/public', 'missing.gguf', { ...opts, tokenSource: 'none' })).rejects.toThrow(
      /org\/public.*missing\.gguf/,
    );
    await expect(
      downloadHubFile('org/private', 'model.gguf', { ...opts, cacheDir: join(dir, 'b'), tokenSource: 'literal:wrong' }),
    ).rejects.toBeInstanceOf(HubError);
    await expect(downloadHubFile('org/private', '../escape', { ...opts, tokenSource: 'none' })).rejects.toThrow(/bad file name/);
  });
});

describe('model resolution through the hub', () => {
  it('resolves ORG/REPO with -f to the downloaded file, and asks for -f without it', async () => {
    process.env.MISTRALRS_HUB_URL = hubUrl;
    process.env.MISTRALRS_CACHE = join(dir, 'cache');
    try {
      const path = await resolveGgufPath('org/public', 'model.gguf', { tokenSource: 'none' });
      expect(path.startsWith(join(dir, 'cache', 'hub', 'org--public'))).toBe(true);
      expect(readFileSync(path).equals(FILE)).toBe(true);
      await expect(resolveGgufPath('org/public', undefined, { tokenSource: 'none' })).rejects.toThrow(/name the \.gguf file/);
    } finally {
      delete process.env.MISTRALRS_HUB_URL;
      delete process.env.MISTRALRS_CACHE;
    }
  });
});
