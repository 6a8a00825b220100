/**
 * `from-config -f FILE` (and `toml -f FILE` with `[[models]]`): serves every model the config
 * lists, each on its own engine (its own scheduler and KV cache), routed by the request's
 * `model`, within a memory limit; models marked `load = false` are listed and loaded on request.
 */
import { existsSync, statSync } from 'node:fs';
import { freemem } from 'node:os';
import { join } from 'node:path';

import { cacheDir, formatBytes, registryModel } from '@mistralrs/core';
import { ModelPool, parseByteSize, pathBytes } from '@mistralrs/server';

import { loadModel } from '../load-model.js';
import { type ConfiguredModel, type ModelLoadOptions, ModelsConfigError, readModelsConfig, type ModelsConfig } from '../models-config.js';
import type { TomlServerSettings } from '../toml-selector.js';
import { UsageError } from '../usage-error.js';
import { serveUntilSignal, type ServeCliOptions } from './serve.js';

/** mistral.rs's port for a config that names none. */
export const DEFAULT_CONFIG_PORT = 1234;

export interface FromConfigOptions {
  /** The config file. */
  file: string;
  /** The server settings from the flags over the config's `[server]` (main.ts's serveOptions). */
  serveOptions: (server: TomlServerSettings) => ServeCliOptions;
  /** `--max-memory`, over `[server].max_memory`. */
  maxMemory?: string | undefined;
}

export async function fromConfigCommand(o: FromConfigOptions): Promise<number> {
  let config: ModelsConfig;
  try {
    config = await readModelsConfig(o.file);
  } catch (error) {
    if (!(error instanceof ModelsConfigError)) throw error;
    process.stderr.write(`mistralrs-server: ${error.message}\n`);
    return 1;
  }
  const serve = o.serveOptions({ port: DEFAULT_CONFIG_PORT, ...config.server });
  const maxMemoryBytes = memoryLimit(o.maxMemory, config);

  const pool = new ModelPool<ConfiguredModel>({
    models: config.models.map((model) => ({ id: model.id, settings: model })),
    load: (model) => loadModel(model.options, model.kind),
    estimateBytes: async (model) => estimateModelBytes(model.options),
    ...(maxMemoryBytes !== undefined ? { maxMemoryBytes } : {}),
    ...(config.defaultModel !== undefined ? { defaultModel: config.defaultModel } : {}),
  });
  try {
    for (const model of config.models) {
      if (!model.load) continue;
      try {
        await pool.load(model.id);
      } catch (error) {
        // The pool's message says which model and why (a missing file, the memory limit).
        process.stderr.write(`mistralrs-server: ${config.path}: ${(error as Error).message}\n`);
        return 1;
      }
    }
    const states = pool
      .list()
      .map((m) => `${m.id} (${m.status}${m.memoryBytes !== null ? `, ${formatBytes(m.memoryBytes)}` : ''})`)
      .join(', ');
    process.stderr.write(`mistralrs-server: models: ${states}; memory limit ${formatBytes(pool.maxMemoryBytes)}\n`);
    return await serveUntilSignal({ models: pool }, pool.ids.join(', '), serve);
  } finally {
    pool.close();
  }
}

function memoryLimit(flag: string | undefined, config: ModelsConfig): number | undefined {
  if (flag === undefined) return config.server.maxMemory?.bytes;
  try {
    return parseByteSize(flag);
  } catch (error) {
    throw new UsageError(`--max-memory: ${(error as Error).message}`);
  }
}

/**
 * What a model should take before it loads, from what is on disk: its weight files (a local
 * path, or a registry model already in the cache), plus its KV cache when given in bytes
 * (`pa_gpu_mem`, or `pa_gpu_mem_usage` of the memory free now). A hub model not yet downloaded,
 * or a KV cache sized in tokens, counts 0 here: the pool measures the engine once loaded.
 */
export function estimateModelBytes(options: ModelLoadOptions): number {
  const kv =
    options.kvCacheMb !== undefined
      ? options.kvCacheMb * 2 ** 20
      : options.kvCacheFraction !== undefined
        ? options.kvCacheFraction * freemem()
        : 0;
  return Math.floor(weightBytesOnDisk(options.model, options.file) + kv);
}

function weightBytesOnDisk(model: string | undefined, file: ModelLoadOptions['file']): number {
  if (model === undefined) return 0;
  if (existsSync(model)) {
    // Several files are the parts of a split GGUF.
    const files = file === undefined ? [] : typeof file === 'string' ? [file] : file;
    if (files.length > 0 && statSync(model).isDirectory()) return files.reduce((sum, f) => sum + pathBytes(join(model, f)), 0);
    return pathBytes(model);
  }
  const registry = registryModel(model);
  if (registry) return pathBytes(join(cacheDir(), 'models', registry.fileName));
  return 0;
}
