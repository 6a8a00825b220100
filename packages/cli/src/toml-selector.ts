/**
 * `mistralrs-server toml -f FILE.toml`: the model (and optionally the server) described in a
 * TOML file. Two spellings of the model are accepted: mistral.rs's selector table
 *
 *   [model]
 *   model_id = "HuggingFaceTB/SmolLM2-135M-Instruct"   # plain: a Hugging Face folder
 *   quantized_model_id = "org/repo-GGUF"               # gguf: a folder, .gguf, registry id or repo
 *   quantized_filename = "model.Q4_K_M.gguf"           # the .gguf inside it
 *
 * or the short top-level form `model = "…"` with `file = "…"`. Top level also takes
 * `chat_template` and `token_source`; an optional `[server]` table takes `port`, `host`,
 * `api_key`, `cors_origins`, `max_body` and `drain_timeout` (seconds). Unknown keys are errors (a typo must not be
 * silently ignored). Paths are relative to the current directory, as on the command line.
 *
 * Engine settings sit with what they belong to: the KV cache is the model's (`pa_blk_size`,
 * `pa_ctxt_len`, `pa_gpu_mem`, `pa_gpu_mem_usage, pa_cache_type` in `[model]`, or at the top level beside a
 * short-form `model`); how many requests run and wait, and prefix caching, are the server's
 * (`max_running`, `max_waiting`, `prefix_cache` in `[server]`). Both apply to a chat as well.
 * Speculative decoding is `[speculative]` (see speculative-flags.ts), as in mistral.rs's files.
 */
import { readFile } from 'node:fs/promises';

import { parse, TomlError } from 'smol-toml';

import { badValue, KV_CACHE_TYPES, KV_SIZE_SETTINGS, NUMERIC_SETTINGS, type EngineSettings } from './engine-flags.js';
import { readSpeculativeTable } from './speculative-flags.js';

export interface TomlServerSettings {
  port?: number;
  host?: string;
  apiKey?: string;
  corsOrigins?: string[];
  maxBody?: string;
  /** Seconds requests in flight may finish in after SIGINT or SIGTERM. */
  drainTimeout?: number;
}

export interface TomlSelector {
  /** `-m`: a .gguf path, a folder, a registry id or a hub repository. */
  model?: string;
  /** `-f`: the file inside `model`. */
  file?: string;
  /** `[model].arch` (`-a`): the architecture the model must be. */
  arch?: string;
  /** `[model].tok_model_id` (`-t`): another tokenizer, a folder or a Hub repository. */
  tokenizerModel?: string;
  chatTemplate?: string;
  tokenSource?: string;
  server: TomlServerSettings;
  /** From `[server]` and `[model]` (or the top level); checked as the flags are. */
  engine: EngineSettings;
}

/** A selector file that cannot be used; the message names the file. */
export class TomlSelectorError extends Error {
  override readonly name = 'TomlSelectorError';
}

export type Table = Record<string, unknown>;
export type Fail = (message: string) => never;

type KvSetting = 'blockSize' | 'kvTokens' | 'kvCacheMb' | 'kvCacheFraction';
type SchedulerSetting = 'maxRunning' | 'maxWaiting';
export const KV_SETTINGS: readonly KvSetting[] = ['blockSize', 'kvTokens', 'kvCacheMb', 'kvCacheFraction'];
export const SCHEDULER_SETTINGS: readonly SchedulerSetting[] = ['maxRunning', 'maxWaiting'];
/** The TOML keys of the KV cache's settings. */
export const KV_KEYS = [...KV_SETTINGS.map((key) => NUMERIC_SETTINGS[key].tomlKey), 'pa_cache_type'];

const TOP_KEYS = ['model', 'file', 'chat_template', 'token_source', 'server', 'speculative', ...KV_KEYS];
// tok_model_id is -t (its tokenizer and chat template win over the model's); arch is -a.
const MODEL_KEYS = ['model_id', 'quantized_model_id', 'quantized_filename', 'tok_model_id', 'arch', ...KV_KEYS];
/** The keys of `[server]`. */
export const SERVER_KEYS = [
  'port',
  'host',
  'api_key',
  'cors_origins',
  'max_body',
  'drain_timeout',
  'max_running',
  'max_waiting',
  'prefix_cache',
];

export async function readTomlSelector(path: string): Promise<TomlSelector> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message;
    throw new TomlSelectorError(`${path}: ${reason}`);
  }
  return parseTomlSelector(text, path);
}

/** `origin` names the file in errors. */
export function parseTomlSelector(text: string, origin: string): TomlSelector {
  let doc: Table;
  try {
    doc = parse(text) as Table;
  } catch (error) {
    const detail = error instanceof TomlError ? error.message.split('\n')[0] : (error as Error).message;
    throw new TomlSelectorError(`${origin}: not valid TOML: ${detail}`);
  }
  const fail = (message: string): never => {
    throw new TomlSelectorError(`${origin}: ${message}`);
  };
  checkKeys(doc, TOP_KEYS, '', fail);
  const selector: TomlSelector = { server: readServer(doc.server, fail), engine: {} };

  if (isTable(doc.model)) {
    const m = doc.model;
    checkKeys(m, MODEL_KEYS, '[model].', fail);
    if (doc.file !== undefined) fail('"file" belongs in [model] as quantized_filename when [model] is a table');
    const modelId = optionalString(m, 'model_id', '[model].', fail);
    const quantizedId = optionalString(m, 'quantized_model_id', '[model].', fail);
    const quantizedFile = optionalString(m, 'quantized_filename', '[model].', fail);
    const tokenizerModel = optionalString(m, 'tok_model_id', '[model].', fail);
    if (tokenizerModel !== undefined) selector.tokenizerModel = tokenizerModel;
    const arch = optionalString(m, 'arch', '[model].', fail);
    if (arch !== undefined) selector.arch = arch;
    const model = quantizedId ?? modelId;
    if (model === undefined) fail('[model] needs model_id (a Hugging Face folder) or quantized_model_id (where the .gguf is)');
    selector.model = model;
    if (quantizedFile !== undefined) selector.file = quantizedFile;
  } else {
    const model = optionalString(doc, 'model', '', fail);
    const file = optionalString(doc, 'file', '', fail);
    if (model !== undefined) selector.model = model;
    if (file !== undefined) selector.file = file;
  }
  selector.engine = readEngineSettings(doc, fail);
  const chatTemplate = optionalString(doc, 'chat_template', '', fail);
  const tokenSource = optionalString(doc, 'token_source', '', fail);
  if (chatTemplate !== undefined) selector.chatTemplate = chatTemplate;
  if (tokenSource !== undefined) selector.tokenSource = tokenSource;
  return selector;
}

/** `[server]`; `extraKeys` are allowed and left to the caller to read. */
export function readServer(value: unknown, fail: (message: string) => never, extraKeys: readonly string[] = []): TomlServerSettings {
  if (value === undefined) return {};
  if (!isTable(value)) fail('server must be a table: [server]');
  const s = value as Table;
  checkKeys(s, [...SERVER_KEYS, ...extraKeys], '[server].', fail);
  const settings: TomlServerSettings = {};
  if (s.port !== undefined) {
    const port = s.port;
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
      fail('[server].port must be an integer from 0 to 65535');
    }
    settings.port = port as number;
  }
  const host = optionalString(s, 'host', '[server].', fail);
  const apiKey = optionalString(s, 'api_key', '[server].', fail);
  const maxBody =
    s.max_body === undefined
      ? undefined
      : typeof s.max_body === 'number'
        ? String(s.max_body)
        : optionalString(s, 'max_body', '[server].', fail);
  if (host !== undefined) settings.host = host;
  if (apiKey !== undefined) settings.apiKey = apiKey;
  if (maxBody !== undefined) settings.maxBody = maxBody;
  if (s.drain_timeout !== undefined) {
    const seconds = s.drain_timeout;
    if (typeof seconds !== 'number' || !Number.isFinite(seconds) || seconds < 0)
      fail('[server].drain_timeout must be a number of seconds, 0 or more');
    settings.drainTimeout = seconds as number;
  }
  if (s.cors_origins !== undefined) {
    const origins = s.cors_origins;
    if (!Array.isArray(origins) || !origins.every((o) => typeof o === 'string')) fail('[server].cors_origins must be an array of strings');
    settings.corsOrigins = origins as string[];
  }
  return settings;
}

export function readCacheType(table: Table, where: string, engine: EngineSettings, fail: (message: string) => never): void {
  const value = table.pa_cache_type;
  if (value === undefined) return;
  if (typeof value !== 'string' || !(KV_CACHE_TYPES as readonly string[]).includes(value)) {
    fail(`${where}pa_cache_type must be one of ${KV_CACHE_TYPES.join(', ')}`);
  }
  engine.kvCacheType = value as (typeof KV_CACHE_TYPES)[number];
}

/** The scheduler's settings from [server]; the KV cache's from [model], or the top level beside a short-form model. */
function readEngineSettings(doc: Table, fail: (message: string) => never): EngineSettings {
  const engine: EngineSettings = {};
  const server = isTable(doc.server) ? doc.server : {};
  readNumbers(server, SCHEDULER_SETTINGS, '[server].', engine, fail);
  if (server.prefix_cache !== undefined) {
    if (typeof server.prefix_cache !== 'boolean') fail('[server].prefix_cache must be true or false');
    engine.prefixCaching = server.prefix_cache as boolean;
  }
  if (isTable(doc.model)) {
    const misplaced = KV_KEYS.filter((key) => doc[key] !== undefined);
    if (misplaced.length > 0) fail(`${misplaced.join(', ')} belong${misplaced.length > 1 ? '' : 's'} in [model] when [model] is a table`);
    readNumbers(doc.model, KV_SETTINGS, '[model].', engine, fail);
    readCacheType(doc.model, '[model].', engine, fail);
  } else {
    readNumbers(doc, KV_SETTINGS, '', engine, fail);
    readCacheType(doc, '', engine, fail);
  }
  if (doc.speculative !== undefined) engine.speculative = readSpeculativeTable(doc.speculative, '[speculative].', fail);
  return engine;
}

/** Reads the TOML keys of `settings` from `table` into `into`, checked as their flags are. */
export function readNumbers(
  table: Table,
  settings: readonly (KvSetting | SchedulerSetting)[],
  where: string,
  into: EngineSettings,
  fail: (message: string) => never,
): void {
  for (const key of settings) {
    const { tomlKey } = NUMERIC_SETTINGS[key];
    const value = table[tomlKey];
    if (value === undefined) continue;
    const problem = badValue(value, NUMERIC_SETTINGS[key].rule);
    if (problem) fail(`${where}${tomlKey} ${problem}`);
    into[key] = value as number;
  }
  const sizes = KV_SIZE_SETTINGS.filter((key) => into[key] !== undefined).map((key) => `${where}${NUMERIC_SETTINGS[key].tomlKey}`);
  if (sizes.length > 1) fail(`${sizes.join(' and ')} each size the KV cache; give one of them`);
}

export function checkKeys(table: Table, known: readonly string[], where: string, fail: (message: string) => never): void {
  const unknown = Object.keys(table).filter((key) => !known.includes(key));
  if (unknown.length > 0) {
    fail(`unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `${where}${k}`).join(', ')} (known: ${known.join(', ')})`);
  }
}

export function optionalString(table: Table, key: string, where: string, fail: (message: string) => never): string | undefined {
  const value = table[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') fail(`${where}${key} must be a string`);
  return value as string;
}

export function isTable(value: unknown): value is Table {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date);
}
