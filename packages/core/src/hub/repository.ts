/**
 * A repository of the Hugging Face Hub at one revision: its commit and file list (through
 * `@huggingface/hub`'s `modelInfo` and `listFiles`), and its files downloaded into
 * huggingface_hub's cache (`cache.ts`).
 *
 * A download streams into `blobs/<id>.incomplete` (resumed with a range request if a previous
 * one was cut), is checked against the listing's object id (the sha256 of an LFS file, the
 * git blob id of a small one) and only then renamed into place: no half or corrupt file is
 * ever used. Offline (`HF_HUB_OFFLINE=1`), or when the Hub cannot be reached, the cache alone
 * answers.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, createWriteStream, mkdirSync, rmSync, statfsSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { downloadFile, HubApiError, listFiles, modelInfo } from '@huggingface/hub';

import { CachedRepo, isCommitHash, sizeOf } from './cache.js';
import { HubError } from './errors.js';
import { lockFile } from './lock.js';
import { formatBytes, type ProgressFactory, progressReporter } from './progress.js';
import { describeTokenSource, resolveToken, type TokenSource } from './token.js';

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

export interface HubOptions {
  /** A branch, tag or commit (default `main`). */
  revision?: string;
  /** Where the token comes from (default `cache`: `HF_TOKEN`, then the token file). */
  tokenSource?: TokenSource;
  /** The Hub's address (default `HF_ENDPOINT`, then https://huggingface.co). */
  endpoint?: string;
  /** The cache folder (default `HF_HUB_CACHE`, … see `hubCacheDir`). */
  cacheDir?: string;
  /** Use the cache alone (default: `HF_HUB_OFFLINE` is 1 or true). */
  offline?: boolean;
  /** How downloads report progress (default: stderr, a bar on a terminal); false for silence. */
  progress?: ProgressFactory | false;
  /** Warnings (default: stderr). */
  log?: (line: string) => void;
}

/** A file of the repository as the Hub lists it. */
export interface HubFile {
  path: string;
  size: number;
  /** The blob's name in the cache: the sha256 for LFS files, else the git object id. */
  etag: string;
  lfs: boolean;
}

/** Retries of a download cut by the network, each resuming where the last one stopped. */
const DOWNLOAD_ATTEMPTS = 3;

export function hubEndpoint(options: Pick<HubOptions, 'endpoint'> = {}): string {
  return (options.endpoint ?? process.env.HF_ENDPOINT ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
}

function offlineByEnv(): boolean {
  return ['1', 'true', 'yes', 'on'].includes((process.env.HF_HUB_OFFLINE ?? '').toLowerCase());
}

/** `org/name`: letters, digits, `-`, `_`, `.`; no `..`, no leading or trailing separators. */
export function isRepoId(spec: string): boolean {
  return /^[\w][\w.-]*\/[\w][\w.-]*$/.test(spec) && !spec.includes('..') && !/[.-]$/.test(spec);
}

/** A relative path of plain names (no `..`, `.`, empty or absolute parts, no backslashes). */
function isSafeRepoPath(path: string): boolean {
  return path !== '' && !path.includes('\\') && path.split('/').every((part) => part !== '' && part !== '.' && part !== '..');
}

/** In-process downloads of a blob, so that two loads of one file share one transfer. */
const downloadsInFlight = new Map<string, Promise<void>>();

export class HubRepository {
  readonly #files: ReadonlyMap<string, HubFile> | undefined;

  private constructor(
    readonly repo: string,
    readonly revision: string,
    /** The commit the revision resolved to. */
    readonly commit: string,
    /** Every file path of the revision. */
    readonly paths: readonly string[],
    files: HubFile[] | undefined,
    readonly cache: CachedRepo,
    readonly endpoint: string,
    private readonly token: string | undefined,
    private readonly options: HubOptions,
  ) {
    this.#files = files && new Map(files.map((f) => [f.path, f]));
  }

  /** Whether the file list came from the cache alone (offline, or the Hub unreachable). */
  get fromCache(): boolean {
    return this.#files === undefined;
  }

  /** `snapshots/<commit>`: where the downloaded files are, under their repository paths. */
  get snapshotDir(): string {
    return this.cache.snapshotDir(this.commit);
  }

  /** Resolves `revision` of `repo` and lists its files, online or from the cache. */
  static async open(repo: string, options: HubOptions = {}): Promise<HubRepository> {
    if (!isRepoId(repo)) throw new HubError('invalid_argument', `${JSON.stringify(repo)} is not a Hugging Face repository id (org/name)`);
    const revision = options.revision ?? 'main';
    const cache = new CachedRepo(repo, options.cacheDir);
    const endpoint = hubEndpoint(options);
    const fromCache = (reason: string) => {
      const commit = cache.commitOf(revision);
      const paths = commit === undefined ? [] : cache.snapshotFiles(commit);
      if (commit === undefined || paths.length === 0) {
        throw new HubError('not_cached', `${repo}@${revision} is not in the cache (${cache.dir}) and ${reason}`);
      }
      return new HubRepository(repo, revision, commit, paths, undefined, cache, endpoint, undefined, options);
    };
    if (options.offline ?? offlineByEnv()) return fromCache('HF_HUB_OFFLINE is set: download it once with the Hub reachable');
    const token = await resolveToken(options.tokenSource);
    const http = new HubHttp(endpoint, repo, revision, options.tokenSource, token);
    let commit: string;
    let files: HubFile[];
    try {
      const info = await modelInfo({ name: repo, revision, hubUrl: endpoint, additionalFields: ['sha'], fetch: http.fetch, ...http.auth });
      if (typeof info.sha !== 'string' || !isCommitHash(info.sha)) {
        throw new HubError('http', `${endpoint}: the model info of ${repo}@${revision} has no commit (sha)`);
      }
      commit = info.sha;
      files = [];
      for await (const entry of listFiles({ repo, revision: commit, recursive: true, hubUrl: endpoint, fetch: http.fetch, ...http.auth })) {
        if (entry.type !== 'file') continue;
        const etag = entry.lfs?.oid ?? entry.oid;
        // Both become file names in the cache: nothing the listing says may lead out of it.
        if (!isSafeRepoPath(entry.path)) {
          throw new HubError('http', `${endpoint}: ${repo}: the listing names an unsafe path ${JSON.stringify(entry.path)}; refused`);
        }
        if (!etag || !/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(etag)) {
          throw new HubError('http', `${endpoint}: ${repo}: the listing gives no valid object id for ${entry.path}`);
        }
        files.push({ path: entry.path, size: entry.lfs?.size ?? entry.size, etag, lfs: entry.lfs !== undefined });
      }
    } catch (error) {
      const failure = http.failure(error);
      if (failure.kind !== 'unreachable') throw failure;
      // As huggingface_hub: what the cache already has is good enough to work offline.
      let cached: HubRepository;
      try {
        cached = fromCache('the Hub cannot be reached');
      } catch {
        throw failure;
      }
      (options.log ?? warn)(`${failure.message}; using the cached snapshot ${cached.commit.slice(0, 12)} of ${repo}`);
      return cached;
    }
    cache.writeRef(revision, commit);
    return new HubRepository(
      repo,
      revision,
      commit,
      files.map((f) => f.path),
      files,
      cache,
      endpoint,
      token,
      options,
    );
  }

  has(path: string): boolean {
    return this.paths.includes(path);
  }

  /** The local path of `path` (in `snapshots/<commit>/`), downloading it if the cache lacks it. */
  async download(path: string): Promise<string> {
    if (!isSafeRepoPath(path)) throw new HubError('invalid_argument', `${this.repo}: bad file name ${JSON.stringify(path)}`);
    const cached = this.cache.snapshotFile(this.commit, path);
    if (cached) return cached;
    if (!this.#files) throw new HubError('not_cached', `${this.repo}@${this.revision}: ${path} is not in the cache (${this.snapshotDir})`);
    const file = this.#files.get(path);
    if (!file) {
      throw new HubError('file_not_found', `${this.repo}@${this.revision} has no file ${JSON.stringify(path)}`);
    }
    const blob = this.cache.blobPath(file.etag);
    if (sizeOf(blob) !== file.size) {
      let inFlight = downloadsInFlight.get(blob);
      if (!inFlight) {
        inFlight = this.#downloadLocked(file, blob).finally(() => downloadsInFlight.delete(blob));
        downloadsInFlight.set(blob, inFlight);
      }
      await inFlight;
    }
    return this.cache.linkSnapshot(this.commit, path, file.etag);
  }

  /** One download of a blob at a time across processes, Python's included (their lock file). */
  async #downloadLocked(file: HubFile, blob: string): Promise<void> {
    const lockPath = this.cache.lockPath(file.etag);
    const lock = await lockFile(lockPath, () =>
      (this.options.log ?? warn)(`${this.repo}/${file.path}: another process is downloading it (${lockPath}); waiting`),
    );
    try {
      // The other process may have finished it.
      if (sizeOf(blob) !== file.size) await this.#downloadBlob(file, blob);
    } finally {
      lock.release();
    }
  }

  async #downloadBlob(file: HubFile, blob: string): Promise<void> {
    mkdirSync(dirname(blob), { recursive: true });
    const incomplete = `${blob}.incomplete`;
    const label = `${this.repo}/${file.path}`;
    let have = Math.max(sizeOf(incomplete), 0);
    if (have > file.size) {
      rmSync(incomplete, { force: true });
      have = 0;
    }
    refuseWhenDiskTooSmall(blob, file.size - have, label);
    // The hash covers what is on disk: the bytes a cut transfer had hashed but not yet written
    // are fetched again, so after a failure it is taken again from the file.
    let hash = await hashOfPrefix(file, incomplete, have);
    const progress = this.options.progress === false ? undefined : (this.options.progress ?? progressReporter())(label, file.size, have);
    const url = `${this.endpoint}/${this.repo}/resolve/${this.commit}/${file.path.split('/').map(encodeURIComponent).join('/')}`;
    const http = new HubHttp(this.endpoint, this.repo, this.revision, this.options.tokenSource, this.token);
    for (let attempt = 1; have < file.size; attempt++) {
      try {
        const remote = await downloadFile({
          repo: this.repo,
          path: file.path,
          revision: this.commit,
          hubUrl: this.endpoint,
          fetch: http.fetch,
          xet: false,
          downloadInfo: { size: file.size, etag: file.etag, url },
          ...http.auth,
        });
        if (!remote) throw new HubError('file_not_found', `${label}: gone from ${this.endpoint}`);
        const body = Readable.fromWeb((have > 0 ? remote.slice(have) : remote).stream() as never);
        let received = have;
        const count = new Transform({
          transform(chunk: Buffer, _encoding, done) {
            hash.update(chunk);
            received += chunk.length;
            progress?.update(received);
            done(null, chunk);
          },
        });
        try {
          await pipeline(body, count, createWriteStream(incomplete, { flags: 'a' }));
        } finally {
          have = Math.max(sizeOf(incomplete), 0);
        }
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOSPC') {
          rmSync(incomplete, { force: true });
          throw new HubError('disk_full', `${label}: the disk is full (writing ${incomplete}); the partial file was removed`, {
            cause: error,
          });
        }
        const failure = http.failure(error);
        // A cut transfer is resumed from what reached the disk; anything else is final.
        if (failure.kind !== 'unreachable' || attempt >= DOWNLOAD_ATTEMPTS) throw failure;
        (this.options.log ?? warn)(`${label}: ${failure.message}; resuming at ${formatBytes(have)}`);
        hash = await hashOfPrefix(file, incomplete, have);
      }
    }
    progress?.done();
    const digest = hash.digest('hex');
    if (have !== file.size || digest !== file.etag) {
      rmSync(incomplete, { force: true });
      throw new HubError(
        'checksum_mismatch',
        `${label}: the download does not match the Hub's ${file.lfs ? 'sha256' : 'git object id'} ` +
          `(expected ${file.etag}, got ${digest}, ${have} of ${file.size} bytes); it was deleted, try again`,
      );
    }
    await rename(incomplete, blob);
  }
}

function warn(line: string): void {
  process.stderr.write(`warning: ${line}\n`);
}

/** The object id's hash (sha256 for LFS, git's sha1 of `blob N\0…` otherwise) over the first `have` bytes on disk. */
async function hashOfPrefix(file: HubFile, incomplete: string, have: number): Promise<Hash> {
  const hash = file.lfs ? createHash('sha256') : createHash('sha1').update(`blob ${file.size}\0`);
  if (have > 0) await pipeline(createReadStream(incomplete, { end: have - 1 }), hashInto(hash));
  return hash;
}

function hashInto(hash: Hash): Transform {
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      done();
    },
  });
}

/** Refuses a download the disk cannot hold, before anything is written. */
function refuseWhenDiskTooSmall(blob: string, needed: number, label: string): void {
  let free: number;
  try {
    const stats = statfsSync(dirname(blob));
    free = stats.bavail * stats.bsize;
  } catch {
    return;
  }
  if (free < needed) {
    throw new HubError(
      'disk_full',
      `${label}: needs ${formatBytes(needed)} and ${dirname(blob)} has ${formatBytes(free)} free; free some space or set HF_HUB_CACHE to another disk`,
    );
  }
}

/**
 * The requests of one repository: the token as `@huggingface/hub` takes it, a fetch that keeps
 * the Hub's `X-Error-Code` (which tells a missing repository from a gated one), and the
 * translation of failures into `HubError`s that say what to do.
 */
class HubHttp {
  #errorCode: string | undefined;

  constructor(
    readonly endpoint: string,
    readonly repo: string,
    readonly revision: string,
    readonly tokenSource: TokenSource | undefined,
    readonly token: string | undefined,
  ) {}

  get auth(): { accessToken?: string } {
    return this.token === undefined ? {} : { accessToken: this.token };
  }

  readonly fetch: typeof fetch = async (input, init) => {
    const response = await fetch(input, init);
    if (!response.ok) this.#errorCode = response.headers.get('x-error-code') ?? undefined;
    return response;
  };

  failure(error: unknown): HubError {
    if (error instanceof HubError) return error;
    const where = `${this.repo}@${this.revision}`;
    if (error instanceof HubApiError) {
      const code = this.#errorCode;
      const tokens = describeTokenSource(this.tokenSource, this.token);
      if (code === 'RepoNotFound' || (error.statusCode === 404 && code === undefined)) {
        return new HubError(
          'repository_not_found',
          `repository ${this.repo} not found at ${this.endpoint} (if it is private, the token must have access: ${tokens})`,
        );
      }
      if (code === 'RevisionNotFound')
        return new HubError('revision_not_found', `${this.repo} has no revision ${JSON.stringify(this.revision)}`);
      if (code === 'EntryNotFound') return new HubError('file_not_found', `${where}: ${error.message}`);
      if (code === 'GatedRepo' || error.statusCode === 401 || error.statusCode === 403) {
        const gated =
          code === 'GatedRepo' ? ' is gated: accept its conditions on the Hub, then use a token with access' : ': access denied';
        return new HubError('unauthorized', `${this.repo}${gated} (HTTP ${error.statusCode}; ${tokens})`);
      }
      return new HubError('http', `${where}: ${this.endpoint} answered HTTP ${error.statusCode}: ${error.message}`);
    }
    const cause = (error as { cause?: { code?: string; message?: string } } | undefined)?.cause;
    const message = (error as Error | undefined)?.message ?? String(error);
    // fetch's network failures are TypeErrors ("fetch failed", "terminated") with the socket's error as the cause.
    if ((error as Error | undefined)?.name === 'TypeError' || cause?.code || /terminated|socket|ECONN|network/i.test(message)) {
      const detail = cause?.code ?? cause?.message ?? message;
      return new HubError(
        'unreachable',
        `cannot reach the Hugging Face Hub at ${this.endpoint} (${detail}): check the network, set HF_ENDPOINT to a mirror, ` +
          'set HF_HUB_OFFLINE=1 to use what the cache has, or give -m a local path',
        { cause: error },
      );
    }
    return new HubError('http', `${where}: ${message}`, { cause: error });
  }
}
