/**
 * The Hub token, from the seed's token sources (mistral.rs's `--token-source`):
 * `literal:TOKEN`, `env:VAR`, `path:FILE`, `cache` (the default) or `none`. `cache` is what
 * `huggingface_hub` does: `HF_TOKEN` if set, else the token file `hf auth login` writes
 * (`HF_TOKEN_PATH`, or `$HF_HOME/token`).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { hfHome } from './cache.js';
import { HubError } from './errors.js';

export type TokenSource = string;

export const DEFAULT_TOKEN_SOURCE = 'cache';

/** The token a source names; undefined for `none` (or a `cache` with neither variable nor file). */
export async function resolveToken(source: TokenSource = DEFAULT_TOKEN_SOURCE): Promise<string | undefined> {
  const [kind, ...rest] = source.split(':');
  const value = rest.join(':');
  switch (kind) {
    case 'none':
      return undefined;
    case 'literal':
      if (!value) throw new HubError('invalid_argument', 'token source literal: needs a token (literal:TOKEN)');
      return value;
    case 'env': {
      const token = process.env[value];
      if (!token) throw new HubError('invalid_argument', `token source env:${value}: the variable is not set`);
      return token;
    }
    case 'path':
      try {
        return (await readFile(value, 'utf8')).trim();
      } catch (e) {
        throw new HubError('invalid_argument', `token source path:${value}: ${(e as Error).message}`);
      }
    case 'cache': {
      const fromEnv = process.env.HF_TOKEN?.trim();
      if (fromEnv) return fromEnv;
      const file = tokenFile();
      return existsSync(file) ? (await readFile(file, 'utf8')).trim() || undefined : undefined;
    }
    default:
      throw new HubError(
        'invalid_argument',
        `unknown token source ${JSON.stringify(source)}: use literal:TOKEN, env:VAR, path:FILE, cache or none`,
      );
  }
}

/** Where `cache` looks for a token, in words, for the message of a 401/403. */
export function describeTokenSource(source: TokenSource = DEFAULT_TOKEN_SOURCE, token: string | undefined): string {
  const used = token === undefined ? 'no token was sent' : 'a token was sent';
  if (source === DEFAULT_TOKEN_SOURCE) {
    const where = process.env.HF_TOKEN?.trim() ? 'HF_TOKEN' : `HF_TOKEN (unset), then ${tokenFile()}`;
    return `token source cache: ${where}; ${used}`;
  }
  return `token source ${source.startsWith('literal:') ? 'literal:…' : source}; ${used}`;
}

function tokenFile(): string {
  return process.env.HF_TOKEN_PATH ?? join(hfHome(), 'token');
}
