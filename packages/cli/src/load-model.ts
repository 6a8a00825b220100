/**
 * Loads what `-m` names as the model it is: a sentence-transformers folder (its `modules.json`)
 * is an embedding model, served on `/v1/embeddings`; anything else is a generation engine.
 * The path is resolved once (a Hub repository listed and downloaded once), then loaded.
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { EmbeddingModel, Engine, EngineError, type EngineOptions, modelSourceOptions, resolveModelPath } from '@mistralrs/core';

/** What a model must be: `text` (generation), `embedding`, or `auto` (told by its files). */
export type ModelKind = 'text' | 'embedding' | 'auto';

export type LoadedModel = Engine | EmbeddingModel;

/** A folder with `modules.json` beside `config.json`: a sentence-transformers model. */
export function isEmbeddingFolder(path: string): boolean {
  return existsSync(join(path, 'modules.json')) && existsSync(join(path, 'config.json')) && statSync(path).isDirectory();
}

export async function loadModel(options: EngineOptions, kind: ModelKind = 'auto'): Promise<LoadedModel> {
  const { model, file, format, revision, tokenSource, hub, ...rest } = options;
  const source = modelSourceOptions(options);
  const path = await resolveModelPath(model, file, { ...source, ...(format !== undefined ? { format } : {}) });
  const embedding = isEmbeddingFolder(path);
  if (kind === 'embedding' && !embedding) {
    throw new EngineError(
      'InvalidArgumentError',
      `${path} is not an embedding model: a sentence-transformers folder has a modules.json beside its config.json`,
    );
  }
  if (kind === 'text' && embedding) {
    throw new EngineError(
      'InvalidArgumentError',
      `${path} is an embedding model (sentence-transformers: modules.json), not a text generation model`,
    );
  }
  if (embedding) {
    return EmbeddingModel.load({
      model: path,
      ...source,
      ...(rest.tokenizerModel !== undefined ? { tokenizerModel: rest.tokenizerModel } : {}),
      ...(rest.dtype !== undefined ? { dtype: rest.dtype } : {}),
      ...(rest.architecture !== undefined ? { architecture: rest.architecture } : {}),
    });
  }
  return Engine.load({ ...rest, ...source, model: path });
}
