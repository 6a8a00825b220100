import { DEFAULT_MODEL_ID, fetchRegistryModel, REGISTRY_MODELS, registryModel } from '@mistralrs/core';

/**
 * A model argument: a path is used as it is; a registry model id (or nothing, for the
 * default model) is fetched into the cache first.
 */
export async function resolveModelFile(modelOrPath: string | undefined): Promise<string> {
  const id = modelOrPath ?? DEFAULT_MODEL_ID;
  return registryModel(id) ? fetchRegistryModel(id) : id;
}

/** `mistralrs-server pull [MODEL]`: fetches a registry model and prints its path. */
export async function pullCommand(options: { model: string | undefined; list: boolean }): Promise<number> {
  if (options.list) {
    for (const m of REGISTRY_MODELS) process.stdout.write(`${m.id}\t${m.description}\n`);
    return 0;
  }
  const id = options.model ?? DEFAULT_MODEL_ID;
  if (!registryModel(id)) {
    process.stderr.write(`mistralrs-server pull: unknown model ${JSON.stringify(id)} (see --list)\n`);
    return 1;
  }
  try {
    process.stdout.write(`${await fetchRegistryModel(id)}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`mistralrs-server pull: ${(error as Error).message}\n`);
    return 1;
  }
}
