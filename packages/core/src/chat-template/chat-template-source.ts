/**
 * Where chat templates come from: a GGUF's metadata, a `tokenizer_config.json`, or a file the
 * operator names (`--chat-template FILE`). Each reader returns the templates it found by
 * variant name, with the text that names each one in errors.
 */
import { readFile, stat } from 'node:fs/promises';
import { basename, extname } from 'node:path';

import { ChatTemplateError } from './chat-template-error.js';

/** The unnamed template of a model. */
export const DEFAULT_VARIANT = 'default';
/** The variant transformers picks when tools are given (Hermes, Command R, ...). */
export const TOOL_USE_VARIANT = 'tool_use';

export interface ChatTemplateVariant {
  template: string;
  /** Names it in errors, e.g. `model.gguf (tokenizer.chat_template.tool_use)`. */
  source: string;
}

/** The templates of one model file and the special tokens they print. */
export interface ChatTemplateSource {
  /** By variant name; the unnamed template is `default`. */
  variants: Map<string, ChatTemplateVariant>;
  bosToken?: string;
  eosToken?: string;
}

/**
 * What `chatTemplatesFromGguf` reads: `GgufFile` from `@mistralrs/quant` fits, and so does
 * any object with its `metadata` entries (values as GgufFile gives them: arrays are
 * `{itemType, items}`, 64-bit integers bigints).
 */
export interface GgufMetadataSource {
  readonly path?: string;
  readonly metadata: ReadonlyArray<{ readonly key: string; readonly value: unknown }>;
}

const GGUF_TEMPLATE_KEY = 'tokenizer.chat_template';

/**
 * The templates in a GGUF's metadata: `tokenizer.chat_template` (default) and
 * `tokenizer.chat_template.<name>` (named variants, as llama.cpp's converter writes them),
 * with the BOS/EOS token text looked up in `tokenizer.ggml.tokens`.
 */
export function chatTemplatesFromGguf(file: GgufMetadataSource): ChatTemplateSource {
  const origin = file.path ? basename(file.path) : 'GGUF metadata';
  const values = new Map(file.metadata.map((entry) => [entry.key, entry.value]));
  const entries: GgufTemplateEntry[] = [];
  for (const [key, value] of values) {
    if (typeof value === 'string' && (key === GGUF_TEMPLATE_KEY || key.startsWith(`${GGUF_TEMPLATE_KEY}.`))) {
      entries.push({ key, template: value });
    }
  }
  const tokens = arrayItems(values.get('tokenizer.ggml.tokens'));
  const tokenText = (idKey: string): string | undefined => {
    const id = values.get(idKey);
    const index = typeof id === 'bigint' ? Number(id) : id;
    const text = typeof index === 'number' ? tokens?.[index] : undefined;
    return typeof text === 'string' ? text : undefined;
  };
  return chatTemplatesFromGgufEntries(origin, entries, tokenText('tokenizer.ggml.bos_token_id'), tokenText('tokenizer.ggml.eos_token_id'));
}

/** One `tokenizer.chat_template` or `tokenizer.chat_template.<name>` entry of a GGUF. */
export interface GgufTemplateEntry {
  key: string;
  template: string;
}

/**
 * The templates of a GGUF's template entries (the default under `tokenizer.chat_template`,
 * named variants under `tokenizer.chat_template.<name>`), with its BOS/EOS token text; `origin`
 * names the file in errors. What `chatTemplatesFromGguf` reads, and what a loaded model hands
 * over from its own open file.
 */
export function chatTemplatesFromGgufEntries(
  origin: string,
  entries: readonly GgufTemplateEntry[],
  bosToken: string | undefined,
  eosToken: string | undefined,
): ChatTemplateSource {
  const variants = new Map<string, ChatTemplateVariant>();
  for (const { key, template } of entries) {
    if (key === GGUF_TEMPLATE_KEY) variants.set(DEFAULT_VARIANT, { template, source: `${origin} (${key})` });
    else if (key.startsWith(`${GGUF_TEMPLATE_KEY}.`)) {
      variants.set(key.slice(GGUF_TEMPLATE_KEY.length + 1), { template, source: `${origin} (${key})` });
    }
  }
  if (variants.size === 0) {
    throw new ChatTemplateError('invalid_template', origin, `the GGUF has no ${GGUF_TEMPLATE_KEY}; give one with --chat-template`);
  }
  return withTokens(variants, bosToken, eosToken);
}

/**
 * The templates in a parsed `tokenizer_config.json` (or `chat_template.json`): `chat_template`
 * is a string or a list of `{name, template}`; `bos_token`/`eos_token` are strings or
 * `{content}` objects (serialized `AddedToken`s).
 */
export function chatTemplatesFromTokenizerConfig(config: unknown, origin = 'tokenizer_config.json'): ChatTemplateSource {
  if (!isRecord(config)) throw new ChatTemplateError('invalid_template', origin, 'not a JSON object');
  const field = config.chat_template;
  const variants = new Map<string, ChatTemplateVariant>();
  if (typeof field === 'string') {
    variants.set(DEFAULT_VARIANT, { template: field, source: `${origin} (chat_template)` });
  } else if (Array.isArray(field)) {
    for (const item of field) {
      if (!isRecord(item) || typeof item.name !== 'string' || typeof item.template !== 'string') {
        throw new ChatTemplateError('invalid_template', origin, 'chat_template list entries must be {name, template} with string values');
      }
      variants.set(item.name, { template: item.template, source: `${origin} (chat_template ${JSON.stringify(item.name)})` });
    }
  } else if (isRecord(field)) {
    // Not what transformers writes, but an unambiguous spelling of the same thing.
    for (const [name, template] of Object.entries(field)) {
      if (typeof template !== 'string') {
        throw new ChatTemplateError('invalid_template', origin, `chat_template ${JSON.stringify(name)} is not a string`);
      }
      variants.set(name, { template, source: `${origin} (chat_template ${JSON.stringify(name)})` });
    }
  }
  if (variants.size === 0) throw new ChatTemplateError('invalid_template', origin, 'no chat_template field');
  return withTokens(variants, specialTokenText(config.bos_token), specialTokenText(config.eos_token));
}

/** Files over this size are not templates or tokenizer configs we should read. */
const MAX_FILE_BYTES = 64 * 1024 * 1024;

/**
 * A template file named by the operator: a `.json` file is read as a `tokenizer_config.json`
 * (or `chat_template.json`); anything else (`.jinja`) is the template text itself.
 */
export async function readChatTemplateFile(path: string): Promise<ChatTemplateSource> {
  const origin = basename(path);
  let text: string;
  try {
    const info = await stat(path);
    if (info.size > MAX_FILE_BYTES) throw new Error(`${info.size} bytes is more than a template file should hold`);
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new ChatTemplateError('invalid_template', path, `cannot read: ${messageOf(error)}`, { cause: error });
  }
  if (extname(path).toLowerCase() !== '.json') {
    return { variants: new Map([[DEFAULT_VARIANT, { template: text, source: origin }]]) };
  }
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (error) {
    throw new ChatTemplateError('invalid_template', origin, `invalid JSON: ${messageOf(error)}`, { cause: error });
  }
  return chatTemplatesFromTokenizerConfig(config, origin);
}

/** A special token as tokenizer_config.json writes it: a string, or `{content: string, ...}`. */
export function specialTokenText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (isRecord(value) && typeof value.content === 'string') return value.content;
  return undefined;
}

function withTokens(
  variants: Map<string, ChatTemplateVariant>,
  bosToken: string | undefined,
  eosToken: string | undefined,
): ChatTemplateSource {
  return {
    variants,
    ...(bosToken === undefined ? {} : { bosToken }),
    ...(eosToken === undefined ? {} : { eosToken }),
  };
}

/** GGUF arrays come as `{itemType, items}` from GgufFile, plain arrays from elsewhere. */
function arrayItems(value: unknown): readonly unknown[] | undefined {
  if (Array.isArray(value)) return value;
  if (isRecord(value) && Array.isArray(value.items)) return value.items as unknown[];
  return undefined;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
