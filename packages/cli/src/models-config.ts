/**
 * A multi-model config: `mistralrs-server from-config -f FILE` (or `toml -f FILE` when the file
 * has `[[models]]`). TOML, in the shape of mistral.rs's `from-config` file, or JSON with the
 * same keys (a `.json` file):
 *
 *   command = "serve"                  # optional; only "serve"
 *   default_model_id = "qwen"          # optional; the model `default` (or no model) means: else the first
 *
 *   [server]                           # optional; the flags override it
 *   port = 1234                        # default 1234, as mistral.rs
 *   max_memory = "12gb"                # the memory limit loads are checked against (default 90% of RAM)
 *   max_running = 16                   # scheduling defaults for every model (each may override)
 *   # host, api_key, cors_origins, max_body, drain_timeout, max_waiting, prefix_cache: as for `toml`
 *
 *   [[models]]
 *   id = "qwen"                        # the id requests name (default: as the CLI names -m)
 *   model = "path/or/registry-id/or/org/repo"   # or mistral.rs's model_id
 *   file = "model.Q4_K_M.gguf"         # the .gguf inside a folder or hub repository
 *   pa_ctxt_len = 4096                 # the KV cache, as the --pa-* flags (one size of three)
 *   load = false                       # listed, but loaded only when asked (POST /v1/models/load)
 *   # arch, dtype, chat_template, token_source, revision, kind ("text"/"auto"), pa_blk_size,
 *   # pa_gpu_mem, pa_gpu_mem_usage, pa_cache_type, max_running, max_waiting, prefix_cache
 *   [models.speculative]               # speculative decoding for this model, as [speculative]
 *   gamma = 4                          # of a `toml` file (kind, p_min, ngram_min, ngram_max,
 *                                      # and a draft_model table)
 *
 * Unknown keys are errors; every error names the file and the key (`models[1].pa_ctxt_len`).
 */
import { readFile as readFileText } from 'node:fs/promises';

import { unknownArchitecture, WEIGHT_DTYPES, type EngineOptions, type WeightDtype } from '@mistralrs/core';
import { parseByteSize } from '@mistralrs/server';
import { parse, TomlError } from 'smol-toml';

import type { EngineSettings } from './engine-flags.js';
import { readSpeculativeTable } from './speculative-flags.js';
import type { ModelKind } from './load-model.js';
import { servedModelId } from './commands/serve.js';
import {
  checkKeys,
  isTable,
  KV_KEYS,
  KV_SETTINGS,
  optionalString,
  readCacheType,
  readNumbers,
  readServer,
  SCHEDULER_SETTINGS,
  type Fail,
  type Table,
  type TomlServerSettings,
} from './toml-selector.js';

/** What `Engine.load` is given for one model. */
export type ModelLoadOptions = Pick<
  EngineOptions,
  'model' | 'file' | 'format' | 'tokenizerModel' | 'chatTemplate' | 'tokenSource' | 'revision' | 'dtype' | 'architecture'
> &
  EngineSettings;

export interface ConfiguredModel {
  /** The id requests name. */
  id: string;
  /** Loaded when the server starts (`load = false`: listed, loaded on request). */
  load: boolean;
  /** `text`, `embedding`, or `auto` (the default: an embedding model is told by its modules.json). */
  kind: ModelKind;
  options: ModelLoadOptions;
}

export interface ModelsConfig {
  /** The file, for messages. */
  path: string;
  defaultModel?: string;
  server: TomlServerSettings & {
    /** `max_memory` as written (`12gb`), and in bytes. */
    maxMemory?: { text: string; bytes: number };
  };
  models: ConfiguredModel[];
}

/** A config that cannot be used; the message names the file and the key. */
export class ModelsConfigError extends Error {
  override readonly name = 'ModelsConfigError';
}

/** mistral.rs's `kind`s that are text models (the only kind served here). */
const MODEL_KINDS = ['text', 'embedding', 'auto'] as const;
const TOP_KEYS = ['command', 'default_model_id', 'server', 'models'];
const MODEL_KEYS = [
  'id',
  'model',
  'model_id',
  'file',
  'format',
  'tok_model_id',
  'kind',
  'load',
  'arch',
  'dtype',
  'chat_template',
  'token_source',
  'revision',
  'max_running',
  'max_waiting',
  'prefix_cache',
  'speculative',
  ...KV_KEYS,
];

export async function readModelsConfig(path: string): Promise<ModelsConfig> {
  return parseModelsConfig(await readText(path), path);
}

/** Whether the file at `path` lists `[[models]]` (false when it cannot be read or parsed: the
 * single-model reader reports that). */
export async function isModelsConfig(path: string): Promise<boolean> {
  try {
    return parseDocument(await readText(path), path).models !== undefined;
  } catch {
    return false;
  }
}

/** `origin` names the file in errors (a `.json` one is read as JSON, any other as TOML). */
export function parseModelsConfig(text: string, origin: string): ModelsConfig {
  const doc = parseDocument(text, origin);
  const fail: Fail = (message) => {
    throw new ModelsConfigError(`${origin}: ${message}`);
  };
  checkKeys(doc, TOP_KEYS, '', fail);
  if (doc.command !== undefined && doc.command !== 'serve') {
    fail(`command must be "serve" (this server has no "run" from a config), got ${JSON.stringify(doc.command)}`);
  }
  const serverTable = doc.server === undefined ? {} : doc.server;
  const server: ModelsConfig['server'] = readServer(serverTable, fail, ['max_memory']);
  if (isTable(serverTable) && serverTable.max_memory !== undefined) server.maxMemory = readMaxMemory(serverTable.max_memory, fail);
  // [server]'s scheduling keys are every model's defaults.
  const defaults: EngineSettings = {};
  if (isTable(serverTable)) readScheduling(serverTable, '[server].', defaults, fail);

  const list = doc.models;
  if (list === undefined) fail('no models: list them in [[models]] tables (each with model = "…")');
  if (!Array.isArray(list) || list.length === 0 || !list.every(isTable)) fail('models must be a non-empty list of tables: [[models]]');
  const models = (list as Table[]).map((table, index) => readModel(table, `models[${index}].`, defaults, fail));
  const seen = new Map<string, number>();
  for (const [index, model] of models.entries()) {
    const first = seen.get(model.id);
    if (first !== undefined) fail(`models[${first}] and models[${index}] are both named ${JSON.stringify(model.id)}; give one an id`);
    seen.set(model.id, index);
  }

  const config: ModelsConfig = { path: origin, server, models };
  const defaultModel = optionalString(doc, 'default_model_id', '', fail);
  if (defaultModel !== undefined) {
    if (!seen.has(defaultModel))
      fail(`default_model_id ${JSON.stringify(defaultModel)} is not one of the models' ids (${[...seen.keys()].join(', ')})`);
    config.defaultModel = defaultModel;
  }
  return config;
}

function readModel(table: Table, where: string, defaults: EngineSettings, fail: Fail): ConfiguredModel {
  checkKeys(table, MODEL_KEYS, where, fail);
  const source = optionalString(table, 'model', where, fail);
  const modelId = optionalString(table, 'model_id', where, fail);
  if (source !== undefined && modelId !== undefined)
    fail(`${where}model and ${where}model_id name the same thing (model_id is mistral.rs's name); give one`);
  const model = source ?? modelId;
  if (model === undefined || model === '') fail(`${where}model is required: a .gguf path, a folder, a registry id or a hub repository`);
  const file = readFiles(table, where, fail);
  const id = optionalString(table, 'id', where, fail) ?? servedModelId(model, file?.[0]);
  if (id === '') fail(`${where}id may not be empty`);

  const kind = optionalString(table, 'kind', where, fail);
  if (kind !== undefined && !(MODEL_KINDS as readonly string[]).includes(kind))
    fail(`${where}kind must be "text", "embedding" or "auto" (told by the model's files), got ${JSON.stringify(kind)}`);
  if (table.load !== undefined && typeof table.load !== 'boolean') fail(`${where}load must be true or false`);

  const options: ModelLoadOptions = { ...defaults, model };
  if (file !== undefined) options.file = file.length === 1 ? file[0]! : file;
  const format = optionalString(table, 'format', where, fail);
  if (format !== undefined) {
    if (format !== 'gguf' && format !== 'plain') fail(`${where}format must be "gguf" or "plain", got ${JSON.stringify(format)}`);
    options.format = format;
  }
  const arch = optionalString(table, 'arch', where, fail);
  if (arch !== undefined) {
    const unknown = unknownArchitecture(arch);
    if (unknown) fail(`${where}arch: ${unknown}`);
    options.architecture = arch;
  }
  const dtype = optionalString(table, 'dtype', where, fail);
  if (dtype !== undefined) {
    if (!(WEIGHT_DTYPES as readonly string[]).includes(dtype))
      fail(`${where}dtype must be one of ${WEIGHT_DTYPES.join(', ')}, got ${JSON.stringify(dtype)}`);
    options.dtype = dtype as WeightDtype;
  }
  const strings = [
    ['chat_template', 'chatTemplate'],
    ['token_source', 'tokenSource'],
    ['revision', 'revision'],
    ['tok_model_id', 'tokenizerModel'],
  ] as const;
  for (const [key, option] of strings) {
    const value = optionalString(table, key, where, fail);
    if (value !== undefined) options[option] = value;
  }
  const settings: EngineSettings = {};
  readNumbers(table, KV_SETTINGS, where, settings, fail);
  readCacheType(table, where, settings, fail);
  readScheduling(table, where, settings, fail);
  if (table.speculative !== undefined) settings.speculative = readSpeculativeTable(table.speculative, `${where}speculative.`, fail);
  return { id, load: table.load !== false, kind: (kind ?? 'auto') as ModelKind, options: { ...options, ...settings } };
}

/** `file`: one name, or the parts of a split GGUF. */
function readFiles(table: Table, where: string, fail: Fail): string[] | undefined {
  const value = table.file;
  if (value === undefined) return undefined;
  const files = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(files) || files.length === 0 || !files.every((f) => typeof f === 'string' && f !== '')) {
    fail(`${where}file must be a file name or a list of them (the parts of a split GGUF)`);
  }
  return files as string[];
}

function readScheduling(table: Table, where: string, into: EngineSettings, fail: Fail): void {
  readNumbers(table, SCHEDULER_SETTINGS, where, into, fail);
  if (table.prefix_cache !== undefined) {
    if (typeof table.prefix_cache !== 'boolean') fail(`${where}prefix_cache must be true or false`);
    into.prefixCaching = table.prefix_cache as boolean;
  }
}

function readMaxMemory(value: unknown, fail: Fail): { text: string; bytes: number } {
  const text = typeof value === 'number' ? String(value) : typeof value === 'string' ? value : undefined;
  if (text === undefined) fail('[server].max_memory must be a size: a number of bytes or a string such as "12gb"');
  try {
    return { text: text!, bytes: parseByteSize(text!) };
  } catch (error) {
    return fail(`[server].max_memory: ${(error as Error).message}`);
  }
}

function parseDocument(text: string, origin: string): Table {
  let doc: unknown;
  try {
    doc = /\.json$/i.test(origin) ? JSON.parse(text) : parse(text);
  } catch (error) {
    const detail = error instanceof TomlError ? error.message.split('\n')[0] : (error as Error).message;
    throw new ModelsConfigError(`${origin}: not valid ${/\.json$/i.test(origin) ? 'JSON' : 'TOML'}: ${detail}`);
  }
  if (!isTable(doc)) throw new ModelsConfigError(`${origin}: the config must be an object with a models list`);
  return doc;
}

async function readText(path: string): Promise<string> {
  try {
    return await readFileText(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message;
    throw new ModelsConfigError(`${path}: ${reason}`);
  }
}
