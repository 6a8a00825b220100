import { DEFAULT_MODEL_ID, fetchRegistryModel, REGISTRY_MODELS, registryModel, resolveModelPath } from '@mistralrs/core';

/**
 * A model argument: a path is used as it is; a registry model id (or nothing, for the
 * default model) is fetched into the cache first.
 */
export async function resolveModelFile(modelOrPath: string | undefined): Promise<string> {
  const id = modelOrPath ?? DEFAULT_MODEL_ID;
  return registryModel(id) ? fetchRegistryModel(id) : id;
}

export interface PullOptions {
  model: string | undefined;
  list: boolean;
  /** `-f`: the GGUF file(s) of a Hub repository. */
  files?: readonly string[] | undefined;
  tokenSource?: string | undefined;
  revision?: string | undefined;
}

/**
 * `mistralrs-server pull [MODEL]`: fetches a registry model, or downloads a Hub repository's
 * model into the Hugging Face cache, and prints its path (the GGUF, or the checkpoint's
 * snapshot folder).
 */
export async function pullCommand(options: PullOptions): Promise<number> {
  if (options.list) {
    for (const m of REGISTRY_MODELS) process.stdout.write(`${m.id}\t${m.description}\n`);
    return 0;
  }
  const id = options.model ?? DEFAULT_MODEL_ID;
  try {
    const path = registryModel(id)
      ? await fetchRegistryModel(id)
      : await resolveModelPath(id, options.files, {
          ...(options.tokenSource !== undefined ? { tokenSource: options.tokenSource } : {}),
          ...(options.revision !== undefined ? { revision: options.revision } : {}),
        });
    process.stdout.write(`${path}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`mistralrs-server pull: ${(error as Error).message}\n`);
    return 1;
  }
}
