/**
 * A Hugging Face Hub on 127.0.0.1, for tests: the endpoints `@huggingface/hub` and Python's
 * `huggingface_hub` call to find and download a model's files, answered as huggingface.co
 * answers them.
 *
 * - `GET /api/models/{repo}/revision/{rev}`: the model info (`sha`, `siblings`);
 * - `GET /api/models/{repo}/tree/{rev}[/{path}]`: the file list with git and LFS object ids;
 * - `HEAD|GET /{repo}/resolve/{rev}/{path}`: a small (git) file directly, with its git object
 *   id as `ETag`; a large (LFS) file as a 302 to its blob URL, with `X-Linked-Etag` (the
 *   sha256) and `X-Linked-Size`. Both carry `X-Repo-Commit`;
 * - `HEAD|GET /lfs/{sha256}` on a second listener (the Hub's CDN: another origin, so clients
 *   stop at the redirect for the metadata and send no token there): the blob, with ranges;
 * - the hub's errors: 401 `RepoNotFound` for an unknown repository (without a token the hub
 *   cannot tell it from a private one), 404 `RevisionNotFound`, 404 `EntryNotFound`, and for a
 *   gated repository 401 without a token, 403 with one that has no access (`GatedRepo`).
 *
 * Faults for tests: `cutOnce` ends a blob's first GET after some bytes (an interrupted
 * download), `corrupt` serves other bytes than the listing's hash promises.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HubFixtureRepo {
  /** `org/name`. */
  id: string;
  /** The files of `main`: path → content. */
  files: Record<string, Uint8Array | string>;
  /** Other branches or tags, each with its own files (and so its own commit). */
  branches?: Record<string, Record<string, Uint8Array | string>>;
  /** Only a request with `HubFixture.token` may read it. */
  gated?: boolean;
  /** Sizes the tree listing gives instead of the real ones (a file too large for the disk). */
  listedSizes?: Record<string, number>;
}

export interface HubFixtureOptions {
  repos: HubFixtureRepo[];
  /** The token that opens gated repositories (default `hf_fixture_token`). */
  token?: string;
  /** Files of at least this many bytes, and every .gguf or .safetensors, are stored in LFS. */
  lfsThreshold?: number;
}

export interface HubRequestLog {
  method: string;
  url: string;
  authorization: string | undefined;
  range: string | undefined;
}

export interface HubFixture {
  /** `http://127.0.0.1:PORT`: the endpoint (`HF_ENDPOINT`). */
  readonly url: string;
  readonly token: string;
  readonly requests: HubRequestLog[];
  /** The commit a branch of a repository resolves to. */
  commit(repo: string, branch?: string): string;
  /** The next GET of this file's blob ends after `bytes` bytes (once). */
  cutOnce(repo: string, path: string, bytes: number): void;
  /** Serve other bytes than the listing's hash for this file (until called with `false`). */
  corrupt(repo: string, path: string, on?: boolean): void;
  close(): Promise<void>;
}

interface StoredFile {
  path: string;
  content: Buffer;
  gitOid: string;
  sha256: string;
  lfs: boolean;
}

interface StoredRevision {
  commit: string;
  files: Map<string, StoredFile>;
}

export function gitBlobOid(content: Uint8Array): string {
  return createHash('sha1').update(`blob ${content.length}\0`).update(content).digest('hex');
}

export async function startHubFixture(options: HubFixtureOptions): Promise<HubFixture> {
  const token = options.token ?? 'hf_fixture_token';
  const threshold = options.lfsThreshold ?? 10_000;
  const repos = new Map<string, { gated: boolean; listedSizes: Record<string, number>; revisions: Map<string, StoredRevision> }>();
  const blobs = new Map<string, Buffer>();
  for (const repo of options.repos) {
    const revisions = new Map<string, StoredRevision>();
    const branches = { main: repo.files, ...repo.branches };
    for (const [branch, files] of Object.entries(branches)) {
      const stored = new Map<string, StoredFile>();
      const commitHash = createHash('sha1').update(`${repo.id}\0${branch}`);
      for (const [path, raw] of Object.entries(files).sort(([a], [b]) => a.localeCompare(b))) {
        const content = Buffer.from(raw);
        const sha256 = createHash('sha256').update(content).digest('hex');
        const lfs = content.length >= threshold || /\.(gguf|safetensors)$/.test(path);
        stored.set(path, { path, content, gitOid: gitBlobOid(content), sha256, lfs });
        if (lfs) blobs.set(sha256, content);
        commitHash.update(`${path}\0${sha256}\0`);
      }
      const revision = { commit: commitHash.digest('hex'), files: stored };
      revisions.set(branch, revision);
      revisions.set(revision.commit, revision);
    }
    repos.set(repo.id, { gated: repo.gated ?? false, listedSizes: repo.listedSizes ?? {}, revisions });
  }
  const cuts = new Map<string, number>();
  const corrupted = new Set<string>();
  const requests: HubRequestLog[] = [];

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    requests.push({
      method: req.method ?? '',
      url: req.url ?? '',
      authorization: req.headers.authorization,
      range: req.headers.range,
    });
    try {
      route(req, res);
    } catch (error) {
      res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: String(error) }));
    }
  };
  const server: Server = createServer(handle);
  const cdn: Server = createServer(handle);

  function hubError(res: ServerResponse, status: number, code: string, message: string): void {
    res.writeHead(status, { 'content-type': 'application/json', 'x-error-code': code, 'x-error-message': message });
    res.end(JSON.stringify({ error: message }));
  }

  /** The revision of a repository the request may read, or undefined once it has answered. */
  function open(req: IncomingMessage, res: ServerResponse, repoId: string, rev: string): StoredRevision | undefined {
    const repo = repos.get(repoId);
    const auth = req.headers.authorization;
    if (!repo) {
      hubError(res, 401, 'RepoNotFound', `Repository Not Found for url: ${req.url}.`);
      return undefined;
    }
    if (repo.gated && auth !== `Bearer ${token}`) {
      const message = `Access to model ${repoId} is restricted. You must have access to it and be authenticated to access it.`;
      hubError(res, auth ? 403 : 401, 'GatedRepo', message);
      return undefined;
    }
    const revision = repo.revisions.get(decodeURIComponent(rev));
    if (!revision) hubError(res, 404, 'RevisionNotFound', `Invalid rev id: ${decodeURIComponent(rev)}`);
    return revision;
  }

  function route(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://fixture');
    const path = url.pathname;
    let m = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(path);
    if (m) {
      const revision = open(req, res, m[1]!, m[2]!);
      if (!revision) return;
      const info = {
        _id: createHash('sha1').update(m[1]!).digest('hex').slice(0, 24),
        id: m[1],
        modelId: m[1],
        sha: revision.commit,
        private: false,
        gated: repos.get(m[1]!)!.gated ? 'manual' : false,
        disabled: false,
        downloads: 0,
        likes: 0,
        tags: [],
        lastModified: '2026-01-01T00:00:00.000Z',
        createdAt: '2026-01-01T00:00:00.000Z',
        siblings: [...revision.files.values()].map((f) => ({ rfilename: f.path })),
      };
      json(res, info);
      return;
    }
    m = /^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)(?:\/(.*))?$/.exec(path);
    if (m) {
      const revision = open(req, res, m[1]!, m[2]!);
      if (!revision) return;
      const prefix = m[3] ? `${decodeURIComponent(m[3])}/` : '';
      const recursive = url.searchParams.get('recursive') === 'true';
      const entries = treeEntries(revision, prefix, recursive, repos.get(m[1]!)!.listedSizes);
      json(res, entries);
      return;
    }
    m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path);
    if (m) {
      const revision = open(req, res, m[1]!, m[2]!);
      if (!revision) return;
      const file = revision.files.get(decodeURIComponent(m[3]!));
      if (!file) {
        hubError(res, 404, 'EntryNotFound', `${decodeURIComponent(m[3]!)} does not exist on "${m[2]}"`);
        return;
      }
      const common = { 'x-repo-commit': revision.commit };
      if (file.lfs) {
        res.writeHead(302, {
          ...common,
          location: `${base(cdn)}/lfs/${file.sha256}`,
          etag: `"${file.gitOid}"`,
          'x-linked-etag': `"${file.sha256}"`,
          'x-linked-size': String(file.content.length),
          'content-length': '0',
        });
        res.end();
        return;
      }
      sendBytes(req, res, file.content, { ...common, etag: `"${file.gitOid}"` }, undefined);
      return;
    }
    m = /^\/lfs\/([0-9a-f]{64})$/.exec(path);
    if (m) {
      const content = blobs.get(m[1]!);
      if (!content) {
        res.writeHead(404).end();
        return;
      }
      const key = m[1]!;
      const bytes = corrupted.has(key) ? Buffer.from(content.map((b) => b ^ 0xff)) : content;
      const cut = req.method === 'GET' ? cuts.get(key) : undefined;
      if (cut !== undefined) cuts.delete(key);
      sendBytes(req, res, bytes, { etag: `"${key}"` }, cut);
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
  }

  function base(listener: Server = server): string {
    return `http://127.0.0.1:${(listener.address() as AddressInfo).port}`;
  }

  function fileOf(repoId: string, path: string): StoredFile {
    const file = repos.get(repoId)?.revisions.get('main')?.files.get(path);
    if (!file?.lfs) throw new Error(`hub fixture: ${repoId}/${path} is not an LFS file of main`);
    return file;
  }

  for (const listener of [server, cdn]) await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  return {
    url: base(),
    token,
    requests,
    commit: (repo, branch = 'main') => {
      const revision = repos.get(repo)?.revisions.get(branch);
      if (!revision) throw new Error(`hub fixture: no ${repo}@${branch}`);
      return revision.commit;
    },
    cutOnce: (repo, path, bytes) => void cuts.set(fileOf(repo, path).sha256, bytes),
    corrupt: (repo, path, on = true) => {
      const key = fileOf(repo, path).sha256;
      if (on) corrupted.add(key);
      else corrupted.delete(key);
    },
    close: async () => {
      for (const listener of [server, cdn]) {
        listener.closeAllConnections();
        await new Promise<void>((resolve) => listener.close(() => resolve()));
      }
    },
  };
}

function treeEntries(revision: StoredRevision, prefix: string, recursive: boolean, listedSizes: Record<string, number>): unknown[] {
  const entries: unknown[] = [];
  const folders = new Set<string>();
  for (const file of revision.files.values()) {
    if (!file.path.startsWith(prefix)) continue;
    const rest = file.path.slice(prefix.length);
    const slash = rest.indexOf('/');
    if (slash >= 0 && !recursive) {
      folders.add(prefix + rest.slice(0, slash));
      continue;
    }
    if (recursive) {
      const parts = rest.split('/');
      for (let i = 1; i < parts.length; i++) folders.add(prefix + parts.slice(0, i).join('/'));
    }
    const size = listedSizes[file.path] ?? file.content.length;
    entries.push({
      type: 'file',
      oid: file.gitOid,
      size,
      path: file.path,
      ...(file.lfs ? { lfs: { oid: file.sha256, size, pointerSize: 134 } } : {}),
    });
  }
  for (const folder of folders) entries.push({ type: 'directory', oid: gitBlobOid(Buffer.from(folder)), size: 0, path: folder });
  return entries;
}

function json(res: ServerResponse, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
}

/** A 200, or a 206 for `Range: bytes=a-b`; with `cut`, the connection ends after that many bytes. */
function sendBytes(
  req: IncomingMessage,
  res: ServerResponse,
  content: Buffer,
  headers: Record<string, string>,
  cut: number | undefined,
): void {
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
  let start = 0;
  let end = content.length - 1;
  let status = 200;
  const out: Record<string, string | number> = { ...headers, 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes' };
  if (range) {
    start = Number(range[1]);
    end = range[2] ? Math.min(Number(range[2]), content.length - 1) : content.length - 1;
    if (start >= content.length) {
      res.writeHead(416, { 'content-range': `bytes */${content.length}` }).end();
      return;
    }
    status = 206;
    out['content-range'] = `bytes ${start}-${end}/${content.length}`;
  }
  const body = content.subarray(start, end + 1);
  out['content-length'] = body.length;
  res.writeHead(status, out);
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  if (cut !== undefined && cut < body.length) {
    res.write(body.subarray(0, cut), () => res.destroy());
    return;
  }
  res.end(body);
}
