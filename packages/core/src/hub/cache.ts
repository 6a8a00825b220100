/**
 * huggingface_hub's cache, read and written as it does, so that what Python tools downloaded
 * is found here and what we download serves them:
 *
 *   $HF_HUB_CACHE/models--org--name/
 *     refs/main                       the commit `main` pointed to when last resolved
 *     blobs/<sha256 or git oid>       each file's content, named by its Hub object id
 *     snapshots/<commit>/<path>       relative links into blobs/ (copies where links fail)
 *
 * The cache folder is `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `$HF_HOME/hub`
 * (`HF_HOME` defaults to `$XDG_CACHE_HOME/huggingface`, then `~/.cache/huggingface`).
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';

const COMMIT_HASH = /^[0-9a-f]{40}$/;

export function hfHome(): string {
  return process.env.HF_HOME ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'huggingface');
}

export function hubCacheDir(): string {
  return process.env.HF_HUB_CACHE ?? process.env.HUGGINGFACE_HUB_CACHE ?? join(hfHome(), 'hub');
}

export function isCommitHash(revision: string): boolean {
  return COMMIT_HASH.test(revision);
}

/** One repository's folder in the cache. */
export class CachedRepo {
  readonly dir: string;
  /** Where huggingface_hub keeps the lock files of this repository's downloads. */
  readonly lockDir: string;

  constructor(
    readonly repo: string,
    cacheDir: string = hubCacheDir(),
  ) {
    const folder = `models--${repo.split('/').join('--')}`;
    this.dir = join(cacheDir, folder);
    this.lockDir = join(cacheDir, '.locks', folder);
  }

  /** The commit a revision names: itself if it is one, else what `refs/<revision>` holds. */
  commitOf(revision: string): string | undefined {
    if (isCommitHash(revision)) return revision;
    const ref = join(this.dir, 'refs', revision);
    if (!existsSync(ref)) return undefined;
    const commit = readFileSync(ref, 'utf8').trim();
    return isCommitHash(commit) ? commit : undefined;
  }

  /** Records that `revision` (a branch or tag) points to `commit`, as huggingface_hub does. */
  writeRef(revision: string, commit: string): void {
    if (isCommitHash(revision) || this.commitOf(revision) === commit) return;
    const ref = join(this.dir, 'refs', revision);
    mkdirSync(dirname(ref), { recursive: true });
    const partial = `${ref}.${process.pid}.tmp`;
    writeFileSync(partial, commit);
    renameSync(partial, ref);
  }

  snapshotDir(commit: string): string {
    return join(this.dir, 'snapshots', commit);
  }

  blobPath(etag: string): string {
    return join(this.dir, 'blobs', etag);
  }

  /** The lock huggingface_hub holds while it downloads a blob: `.locks/models--org--name/<id>.lock`. */
  lockPath(etag: string): string {
    return join(this.lockDir, `${etag}.lock`);
  }

  /** The file of a snapshot, if the cache has it (a dangling link counts as absent). */
  snapshotFile(commit: string, path: string): string | undefined {
    const file = join(this.snapshotDir(commit), ...path.split('/'));
    return existsSync(file) ? file : undefined;
  }

  /** Every file a snapshot holds, as repository paths (`a/b.json`). */
  snapshotFiles(commit: string): string[] {
    const root = this.snapshotDir(commit);
    if (!existsSync(root)) return [];
    const files: string[] = [];
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const path = join(dir, entry.name);
        if (entry.isDirectory()) walk(path);
        else if (existsSync(path)) files.push(relative(root, path).split(sep).join('/'));
      }
    };
    walk(root);
    return files.sort();
  }

  /** Points `snapshots/<commit>/<path>` at a blob: a relative link, or a copy where links fail. */
  linkSnapshot(commit: string, path: string, etag: string): string {
    const pointer = join(this.snapshotDir(commit), ...path.split('/'));
    mkdirSync(dirname(pointer), { recursive: true });
    const blob = this.blobPath(etag);
    rmSync(pointer, { force: true });
    try {
      symlinkSync(relative(dirname(pointer), blob), pointer);
    } catch {
      copyFileSync(blob, pointer);
    }
    return pointer;
  }
}

/**
 * huggingface_hub's `try_to_load_from_cache`: the local path of `file` of `repo` at
 * `revision` (default `main`) if the cache holds it, without any network access.
 */
export function tryLoadFromCache(repo: string, file: string, options: { revision?: string; cacheDir?: string } = {}): string | undefined {
  const cached = new CachedRepo(repo, options.cacheDir);
  const commit = cached.commitOf(options.revision ?? 'main');
  return commit === undefined ? undefined : cached.snapshotFile(commit, file);
}

/** Size of a file, or -1 when there is none. */
export function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return -1;
  }
}
