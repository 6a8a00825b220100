/** Where a model comes from: a file, a folder, or a registry model id. */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { downloadHubFile, looksLikeRepoId, type TokenSource } from '../hub.js';
import { DEFAULT_MODEL_ID, fetchRegistryModel, registryModel } from '../registry-models.js';

export interface ModelSourceOptions {
  /** Token for the hub: literal:TOKEN, env:VAR, path:FILE, cache (default) or none. */
  tokenSource?: TokenSource;
  revision?: string;
}

/**
 * Resolves a model argument to a GGUF file: a `.gguf` path as it is; a folder with exactly one
 * `.gguf` (or the one named `file`); a registry model id (or nothing, for the default model),
 * fetched into the cache on first use; a Hugging Face repository id with `file`, downloaded.
 */
export async function resolveGgufPath(model: string | undefined, file?: string, options: ModelSourceOptions = {}): Promise<string> {
  const spec = model ?? DEFAULT_MODEL_ID;
  if (registryModel(spec) && !existsSync(spec)) return fetchRegistryModel(spec);
  if (looksLikeRepoId(spec)) {
    if (!file) throw new ModelNotFoundError(`${spec}: name the .gguf file of this repository with -f`);
    return downloadHubFile(spec, file, options);
  }
  if (!existsSync(spec)) throw new ModelNotFoundError(`model ${JSON.stringify(spec)}: no such file or folder`);
  if (!statSync(spec).isDirectory()) return spec;
  // A Hugging Face folder (config.json + safetensors) is loaded as it is.
  if (!file && isHfFolder(spec)) return spec;
  if (file) {
    const path = join(spec, file);
    if (!existsSync(path)) throw new ModelNotFoundError(`${path}: no such file`);
    return path;
  }
  const ggufs = readdirSync(spec).filter((f) => f.endsWith('.gguf'));
  if (ggufs.length === 1) return join(spec, ggufs[0]!);
  throw new ModelNotFoundError(
    ggufs.length === 0 ? `${spec}: no .gguf file in this folder` : `${spec}: several .gguf files (${ggufs.join(', ')}); name one with -f`,
  );
}

export class ModelNotFoundError extends Error {
  override readonly name = 'ModelNotFoundError';
  readonly code = 'ModelNotFoundError';
}

/** A folder in Hugging Face layout: `config.json` beside the safetensors. */
export function isHfFolder(path: string): boolean {
  return existsSync(join(path, 'config.json')) && statSync(path).isDirectory();
}
