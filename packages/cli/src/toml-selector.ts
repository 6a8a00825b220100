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
 * `api_key`, `cors_origins` and `max_body`. Unknown keys are errors (a typo must not be
 * silently ignored). Paths are relative to the current directory, as on the command line.
 */
import { readFile } from 'node:fs/promises';

import { parse, TomlError } from 'smol-toml';

export interface TomlServerSettings {
  port?: number;
  host?: string;
  apiKey?: string;
  corsOrigins?: string[];
  maxBody?: string;
}

export interface TomlSelector {
  /** `-m`: a .gguf path, a folder, a registry id or a hub repository. */
  model?: string;
  /** `-f`: the file inside `model`. */
  file?: string;
  chatTemplate?: string;
  tokenSource?: string;
  server: TomlServerSettings;
}

/** A selector file that cannot be used; the message names the file. */
export class TomlSelectorError extends Error {
  override readonly name = 'TomlSelectorError';
}

type Table = Record<string, unknown>;

const TOP_KEYS = ['model', 'file', 'chat_template', 'token_source', 'server'];
// tok_model_id and arch are mistral.rs's; our GGUF and config.json name both themselves.
const MODEL_KEYS = ['model_id', 'quantized_model_id', 'quantized_filename', 'tok_model_id', 'arch'];
const SERVER_KEYS = ['port', 'host', 'api_key', 'cors_origins', 'max_body'];

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
  const selector: TomlSelector = { server: readServer(doc.server, fail) };

  if (isTable(doc.model)) {
    const m = doc.model;
    checkKeys(m, MODEL_KEYS, '[model].', fail);
    if (doc.file !== undefined) fail('"file" belongs in [model] as quantized_filename when [model] is a table');
    const modelId = optionalString(m, 'model_id', '[model].', fail);
    const quantizedId = optionalString(m, 'quantized_model_id', '[model].', fail);
    const quantizedFile = optionalString(m, 'quantized_filename', '[model].', fail);
    optionalString(m, 'tok_model_id', '[model].', fail);
    optionalString(m, 'arch', '[model].', fail);
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
  const chatTemplate = optionalString(doc, 'chat_template', '', fail);
  const tokenSource = optionalString(doc, 'token_source', '', fail);
  if (chatTemplate !== undefined) selector.chatTemplate = chatTemplate;
  if (tokenSource !== undefined) selector.tokenSource = tokenSource;
  return selector;
}

function readServer(value: unknown, fail: (message: string) => never): TomlServerSettings {
  if (value === undefined) return {};
  if (!isTable(value)) fail('server must be a table: [server]');
  const s = value as Table;
  checkKeys(s, SERVER_KEYS, '[server].', fail);
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
  const maxBody = s.max_body === undefined ? undefined : typeof s.max_body === 'number' ? String(s.max_body) : optionalString(s, 'max_body', '[server].', fail);
  if (host !== undefined) settings.host = host;
  if (apiKey !== undefined) settings.apiKey = apiKey;
  if (maxBody !== undefined) settings.maxBody = maxBody;
  if (s.cors_origins !== undefined) {
    const origins = s.cors_origins;
    if (!Array.isArray(origins) || !origins.every((o) => typeof o === 'string')) fail('[server].cors_origins must be an array of strings');
    settings.corsOrigins = origins as string[];
  }
  return settings;
}

function checkKeys(table: Table, known: readonly string[], where: string, fail: (message: string) => never): void {
  const unknown = Object.keys(table).filter((key) => !known.includes(key));
  if (unknown.length > 0) {
    fail(`unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `${where}${k}`).join(', ')} (known: ${known.join(', ')})`);
  }
}

function optionalString(table: Table, key: string, where: string, fail: (message: string) => never): string | undefined {
  const value = table[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') fail(`${where}${key} must be a string`);
  return value as string;
}

function isTable(value: unknown): value is Table {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && !(value instanceof Date);
}
