/**
 * What a model takes in memory, and the limit the loaded models are held to (model-pool.ts):
 * a model's footprint is its weights plus its KV cache.
 */
import { readdirSync, statSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';

import { isEmbedder, type ServedModel } from './serving-engine.js';

/** 90% of the machine's memory: a tenth stays for the system and the server's own heap. */
export function defaultMemoryLimitBytes(): number {
  return Math.floor(totalmem() * 0.9);
}

/** The bytes a loaded engine takes: its weights (as stored, or the model file's size) and its
 * KV cache (an embedding model has none). */
export function engineFootprintBytes(engine: ServedModel): number {
  if (isEmbedder(engine)) return engine.info.weightBytes;
  const { weightBytes, path, kvCacheBytes } = engine.info;
  return (weightBytes ?? pathBytes(path)) + kvCacheBytes;
}

/** A file's size; a folder's weight files (`.gguf`, `.safetensors`) summed; 0 when unreadable. */
export function pathBytes(path: string): number {
  try {
    const stat = statSync(path);
    if (!stat.isDirectory()) return stat.size;
    return readdirSync(path)
      .filter((name) => /\.(gguf|safetensors)$/i.test(name))
      .reduce((sum, name) => sum + statSync(join(path, name)).size, 0);
  } catch {
    return 0;
  }
}
