/**
 * Models from the Hugging Face hub, through `@huggingface/hub`: a file of a repository is
 * downloaded once into our cache and used from there. Tokens come from the seed's token
 * sources. (No hub is reachable from our machines; this code is tested against a loopback
 * fixture that speaks the same protocol.)
 */
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { downloadFile } from '@huggingface/hub';

import { cacheDir } from './registry-models.js';

/**
 * Where the token comes from, as mistral.rs spells it: `literal:TOKEN`, `env:VAR`,
 * `path:FILE`, `cache` (the Hugging Face CLI's token file), or `none`.
 */
export type TokenSource = string;

export class HubError extends Error {
  override readonly name = 'HubError';
  readonly code = 'HubError';
}

/** The token a source names; undefined for `none` (or an empty `cache`). */
export async function resolveToken(source: TokenSource = 'cache'): Promise<string | undefined> {
  const [kind, ...rest] = source.split(':');
  const value = rest.join(':');
  switch (kind) {
    case 'none':
      return undefined;
    case 'literal':
      if (!value) throw new HubError('token source literal: needs a token (literal:TOKEN)');
      return value;
    case 'env': {
      const token = process.env[value];
      if (!token) throw new HubError(`token source env:${value}: the variable is not set`);
      return token;
    }
    case 'path':
      try {
        return (await readFile(value, 'utf8')).trim();
      } catch (e) {
        throw new HubError(`token source path:${value}: ${(e as Error).message}`);
      }
    case 'cache': {
      const file = process.env.HF_TOKEN_PATH ?? join(process.env.HF_HOME ?? join(homedir(), '.cache', 'huggingface'), 'token');
      return existsSync(file) ? (await readFile(file, 'utf8')).trim() || undefined : undefined;
    }
    default:
      throw new HubError(`unknown token source ${JSON.stringify(source)}: use literal:TOKEN, env:VAR, path:FILE, cache or none`);
  }
}

/** `org/name` (no `./`, no absolute path): what names a hub repository. */
export function looksLikeRepoId(spec: string): boolean {
  return /^[\w.-]+\/[\w.-]+$/.test(spec) && !spec.startsWith('.') && !existsSync(spec);
}

export interface HubDownloadOptions {
  revision?: string;
  tokenSource?: TokenSource;
  /** The hub's address (`MISTRALRS_HUB_URL`, default https://huggingface.co). */
  hubUrl?: string;
  cacheDir?: string;
  log?: (line: string) => void;
}

/** The local path of `file` from hub repository `repo`, downloading it on first use. */
export async function downloadHubFile(repo: string, file: string, options: HubDownloadOptions = {}): Promise<string> {
  const revision = options.revision ?? 'main';
  if (file.split('/').some((part) => part === '..' || part === '') || file.startsWith('/')) {
    throw new HubError(`${repo}: bad file name ${JSON.stringify(file)}`);
  }
  const target = join(options.cacheDir ?? cacheDir(), 'hub', repo.replace('/', '--'), revision, file);
  if (existsSync(target)) return target;
  const accessToken = await resolveToken(options.tokenSource);
  const hubUrl = options.hubUrl ?? process.env.MISTRALRS_HUB_URL;
  (options.log ?? ((l: string) => process.stderr.write(`${l}\n`)))(`downloading ${repo}/${file} (${revision})`);
  let blob: Blob | null;
  try {
    blob = await downloadFile({
      repo,
      path: file,
      revision,
      ...(hubUrl ? { hubUrl } : {}),
      ...(accessToken ? { accessToken } : {}),
      xet: false,
    });
  } catch (e) {
    const message = (e as Error).message;
    const auth = /401|403|unauthori|forbidden|gated|private/i.test(message);
    throw new HubError(
      `${repo}/${file}: ${message}${auth ? ` (token source: ${options.tokenSource ?? 'cache'}; is the token valid for this repository?)` : ''}`,
    );
  }
  if (!blob) throw new HubError(`${repo}: no file ${JSON.stringify(file)} at revision ${revision}`);
  await mkdir(dirname(target), { recursive: true });
  const partial = `${target}.${process.pid}.${Date.now()}.partial`;
  try {
    await pipeline(Readable.fromWeb(blob.stream() as never), createWriteStream(partial));
    await rename(partial, target);
  } finally {
    await rm(partial, { force: true });
  }
  return target;
}
