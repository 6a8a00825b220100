/**
 * Request validation: a JSON body in, a typed request out, or a 400 naming the field at fault.
 *
 * Unknown fields are ignored, as OpenAI does; a field that is present with `null` counts as
 * absent (clients send `"stop": null`). Known fields with a wrong type or out of range are a
 * 400 with `param` set to the field's name. Fields other servers read that we do not implement
 * (echo, suffix, mirostat, adapters, web_search_options, ... see unsupported-fields.ts) are a
 * 400 `unsupported_parameter` rather than silently ignored, since ignoring them would return a
 * plausible but wrong answer. OpenAI's metadata (user, metadata, safety_identifier,
 * prompt_cache_key) changes nothing here and is accepted once its shape is checked.
 */
import { MAX_DRY_BREAKER_BYTES, type ChatMessage, type GenerationOptions } from '@mistralrs/core';

import { readGrammar, readTools, type RequestedGrammar, type RequestedTools } from './constraints.js';
import { invalidRequest } from './errors.js';
import type { ServerLimits } from './limits.js';
import { readMessages } from './messages.js';
import { readTemplateArgs, type RequestedTemplateArgs } from './template-args.js';
import { rejectUnsupportedChatFields, rejectUnsupportedCompletionFields } from './unsupported-fields.js';

/** What validation needs to know of the model and the server. */
export interface ValidationContext {
  vocabSize: number;
  /** Tokens a sequence may hold: the prompt plus what is generated. */
  contextTokens: number;
  limits: ServerLimits;
}

/** The sampling options a request sets, in the engine's names. */
export type SamplingFields = Pick<
  GenerationOptions,
  | 'temperature'
  | 'topK'
  | 'topP'
  | 'minP'
  | 'repetitionPenalty'
  | 'frequencyPenalty'
  | 'presencePenalty'
  | 'logitBias'
  | 'seed'
  | 'ignoreEos'
  | 'dryMultiplier'
  | 'dryBase'
  | 'dryAllowedLength'
  | 'dryPenaltyLastN'
  | 'drySequenceBreakers'
>;

/** The fields chat and text completions share. */
export interface CommonRequest {
  /** As sent; checked against the served model by the route. */
  model: string | undefined;
  /** Choices per prompt. */
  n: number;
  maxTokens: number | undefined;
  stop: string[] | undefined;
  stream: boolean;
  /** `stream_options.include_usage`: a last chunk with the usage. */
  includeUsage: boolean;
  sampling: SamplingFields;
  /** `response_format` or `grammar`. */
  grammar: RequestedGrammar | undefined;
}

export interface ChatCompletionRequest extends CommonRequest {
  messages: ChatMessage[];
  logprobs: boolean;
  /** Alternatives per token (0 when only the chosen token's logprob is wanted). */
  topLogprobs: number;
  tools: RequestedTools | undefined;
  /** `chat_template_kwargs`, `enable_thinking`, `reasoning_effort`. */
  templateArgs: RequestedTemplateArgs;
}

export interface CompletionRequest extends CommonRequest {
  /** One entry per prompt: text, or token ids used as they are. */
  prompts: Array<string | number[]>;
  /** Alternatives per token; undefined means no logprobs at all. */
  logprobs: number | undefined;
}

/** The body as an object whose fields can be read; anything else is a 400. */
export type RequestBody = Readonly<Record<string, unknown>>;

export function requireObjectBody(body: unknown): RequestBody {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    throw invalidRequest('the request body must be a JSON object', null, 'invalid_type');
  }
  return body as RequestBody;
}

export function validateChatRequest(body: RequestBody, ctx: ValidationContext): ChatCompletionRequest {
  rejectUnsupportedChatFields(body);
  const logprobs = readBoolean(body, 'logprobs') ?? false;
  const topLogprobs = readInteger(body, 'top_logprobs', { min: 0, max: ctx.limits.maxTopLogprobs });
  if (topLogprobs !== undefined && !logprobs) {
    throw invalidRequest('top_logprobs requires logprobs to be true', 'top_logprobs', 'conflicting_parameters');
  }
  return {
    ...readCommon(body, ctx),
    messages: readMessages(body.messages),
    logprobs,
    topLogprobs: topLogprobs ?? 0,
    tools: readTools(body, ctx.limits.maxTools),
    templateArgs: readTemplateArgs(body),
  };
}

export function validateCompletionRequest(body: RequestBody, ctx: ValidationContext): CompletionRequest {
  rejectUnsupported(body, { echo: 'echo', suffix: 'suffix' });
  rejectUnsupportedCompletionFields(body);
  const common = readCommon(body, ctx);
  // best_of > n (generate more, return the best) is not offered; best_of = n changes nothing.
  const bestOf = readInteger(body, 'best_of', { min: 1 });
  if (bestOf !== undefined && bestOf !== 1 && bestOf !== common.n) {
    throw invalidRequest('best_of other than n is not supported by this server', 'best_of', 'unsupported_parameter');
  }
  const prompts = readPrompts(body.prompt, ctx.vocabSize);
  if (prompts.length * common.n > ctx.limits.maxChoices) {
    throw invalidRequest(
      `${prompts.length} prompts × n=${common.n} asks for ${prompts.length * common.n} choices; the limit is ${ctx.limits.maxChoices}`,
      'n',
      'integer_above_max_value',
    );
  }
  return {
    ...common,
    prompts,
    logprobs: readInteger(body, 'logprobs', { min: 0, max: ctx.limits.maxTopLogprobs }),
  };
}

function readCommon(body: RequestBody, ctx: ValidationContext): CommonRequest {
  const stream = readBoolean(body, 'stream') ?? false;
  const streamOptions = readObject(body, 'stream_options');
  if (streamOptions && !stream)
    throw invalidRequest('stream_options is only allowed when stream is true', 'stream_options', 'conflicting_parameters');
  const includeUsage = streamOptions ? (readBoolean(streamOptions, 'include_usage', 'stream_options.include_usage') ?? false) : false;
  readMetadata(body);

  return {
    model: readString(body, 'model'),
    n: readInteger(body, 'n', { min: 1, max: ctx.limits.maxChoices }) ?? 1,
    maxTokens: readMaxTokens(body, ctx.contextTokens),
    stop: readStop(body, ctx.limits),
    stream,
    includeUsage,
    sampling: readSampling(body, ctx),
    grammar: readGrammar(body),
  };
}

function readSampling(body: RequestBody, ctx: ValidationContext): SamplingFields {
  const topK = readInteger(body, 'top_k', { min: -1 });
  const seed = readInteger(body, 'seed', { min: -1, max: Number.MAX_SAFE_INTEGER - ctx.limits.maxChoices });
  const sampling: SamplingFields = {
    temperature: readNumber(body, 'temperature', { min: 0, max: 2 }),
    topP: readNumber(body, 'top_p', { min: 0, max: 1, minExclusive: true }),
    // -1 and 0 both mean "no top-k" (vLLM and llama.cpp spell it either way).
    topK: topK !== undefined && topK > 0 ? topK : undefined,
    minP: readNumber(body, 'min_p', { min: 0, max: 1 }),
    repetitionPenalty: readNumber(body, 'repetition_penalty', { min: 0, max: 10, minExclusive: true }),
    frequencyPenalty: readNumber(body, 'frequency_penalty', { min: -2, max: 2 }),
    presencePenalty: readNumber(body, 'presence_penalty', { min: -2, max: 2 }),
    logitBias: readLogitBias(body, ctx),
    // -1 is llama.cpp's "random seed"; the seed of choice i is seed + i, so leave room for n.
    seed: seed !== undefined && seed >= 0 ? seed : undefined,
    ignoreEos: readBoolean(body, 'ignore_eos'),
    ...readDry(body, ctx),
  };
  // Drop the unset ones so the engine's defaults apply.
  for (const key of Object.keys(sampling) as Array<keyof SamplingFields>) {
    if (sampling[key] === undefined) delete sampling[key];
  }
  return sampling;
}

/**
 * DRY (mistral.rs's and llama.cpp's names). `dry_penalty_last_n` is llama.cpp's: -1 the whole
 * history (the default, as mistral.rs searches it all), 0 turns DRY off.
 */
function readDry(body: RequestBody, ctx: ValidationContext): SamplingFields {
  const breakers = body.dry_sequence_breakers;
  let drySequenceBreakers: string[] | undefined;
  if (breakers !== undefined && breakers !== null) {
    const param = 'dry_sequence_breakers';
    if (!Array.isArray(breakers)) throw invalidRequest(`${param} must be an array of strings`, param, 'invalid_type');
    if (breakers.length > MAX_DRY_BREAKERS)
      throw invalidRequest(
        `${param} has ${breakers.length} strings; at most ${MAX_DRY_BREAKERS} are allowed`,
        param,
        'array_above_max_length',
      );
    for (const breaker of breakers) {
      if (typeof breaker !== 'string') throw invalidRequest(`${param} must hold strings`, param, 'invalid_type');
      if (breaker.length === 0) throw invalidRequest(`${param} must hold non-empty strings`, param, 'empty_string');
      const bytes = Buffer.byteLength(breaker);
      if (bytes > MAX_DRY_BREAKER_BYTES) {
        throw invalidRequest(
          `${param}: ${JSON.stringify(breaker)} has ${bytes} bytes; at most ${MAX_DRY_BREAKER_BYTES} are allowed`,
          param,
          'string_above_max_length',
        );
      }
    }
    drySequenceBreakers = breakers as string[];
  }
  return {
    dryMultiplier: readNumber(body, 'dry_multiplier', { min: 0, max: 100 }),
    dryBase: readNumber(body, 'dry_base', { min: 1, max: 100 }),
    dryAllowedLength: readInteger(body, 'dry_allowed_length', { min: 0, max: ctx.contextTokens }),
    dryPenaltyLastN: readInteger(body, 'dry_penalty_last_n', { min: -1, max: 2 ** 31 - 1 }),
    drySequenceBreakers,
  };
}

/** Most DRY sequence breakers a request may give. */
const MAX_DRY_BREAKERS = 32;

/** OpenAI's metadata, which changes nothing here: checked for shape, then dropped. */
function readMetadata(body: RequestBody): void {
  readString(body, 'user');
  readString(body, 'safety_identifier');
  readString(body, 'prompt_cache_key');
  const metadata = readObject(body, 'metadata');
  const entries = Object.entries(metadata ?? {});
  if (entries.length > 16) throw invalidRequest(`metadata has ${entries.length} keys; at most 16 are allowed`, 'metadata');
  for (const [key, value] of entries) {
    if (typeof value !== 'string') throw invalidRequest(`metadata.${key} must be a string`, `metadata.${key}`);
  }
}

/** `max_completion_tokens` is the newer name of `max_tokens`; both may come, if they agree. */
function readMaxTokens(body: RequestBody, contextTokens: number): number | undefined {
  const range = { min: 1, max: contextTokens };
  const maxTokens = readInteger(body, 'max_tokens', range);
  const maxCompletionTokens = readInteger(body, 'max_completion_tokens', range);
  if (maxTokens !== undefined && maxCompletionTokens !== undefined && maxTokens !== maxCompletionTokens) {
    throw invalidRequest('max_tokens and max_completion_tokens disagree; send one of them', 'max_tokens', 'conflicting_parameters');
  }
  return maxCompletionTokens ?? maxTokens;
}

function readStop(body: RequestBody, limits: ServerLimits): string[] | undefined {
  const value = body.stop;
  if (value === undefined || value === null) return undefined;
  const stops = typeof value === 'string' ? [value] : value;
  if (!Array.isArray(stops)) throw invalidRequest('stop must be a string or an array of strings', 'stop', 'invalid_type');
  if (stops.length > limits.maxStopStrings) {
    throw invalidRequest(
      `stop has ${stops.length} strings; at most ${limits.maxStopStrings} are allowed`,
      'stop',
      'array_above_max_length',
    );
  }
  for (const stop of stops) {
    if (typeof stop !== 'string') throw invalidRequest('stop must be a string or an array of strings', 'stop', 'invalid_type');
    if (stop.length === 0) throw invalidRequest('a stop string must not be empty', 'stop', 'empty_string');
    if (stop.length > limits.maxStopChars) {
      throw invalidRequest(
        `a stop string has ${stop.length} characters; at most ${limits.maxStopChars} are allowed`,
        'stop',
        'string_above_max_length',
      );
    }
  }
  return stops.length > 0 ? (stops as string[]) : undefined;
}

/** `{"50256": -100}`: keys are token ids written as decimal strings, values in [-100, 100]. */
function readLogitBias(body: RequestBody, ctx: ValidationContext): Record<number, number> | undefined {
  const bias = readObject(body, 'logit_bias');
  if (!bias) return undefined;
  const entries = Object.entries(bias);
  if (entries.length > ctx.limits.maxLogitBiasEntries) {
    throw invalidRequest(`logit_bias has ${entries.length} entries; at most ${ctx.limits.maxLogitBiasEntries} are allowed`, 'logit_bias');
  }
  const bad: string[] = [];
  // A null-prototype object: keys such as "__proto__" are rejected below, never assigned.
  const result: Record<number, number> = Object.create(null) as Record<number, number>;
  for (const [key, value] of entries) {
    const id = /^(0|[1-9]\d{0,9})$/.test(key) ? Number(key) : NaN;
    if (!(id < ctx.vocabSize)) {
      bad.push(`${JSON.stringify(key)} is not a token id (the vocabulary has ids 0 to ${ctx.vocabSize - 1})`);
    } else if (typeof value !== 'number' || !Number.isFinite(value) || value < -100 || value > 100) {
      bad.push(`the bias of token ${key} must be a number from -100 to 100, got ${JSON.stringify(value)}`);
    } else {
      result[id] = value;
    }
    if (bad.length >= 5) break;
  }
  if (bad.length > 0) throw invalidRequest(`invalid logit_bias: ${bad.join('; ')}`, 'logit_bias');
  return entries.length > 0 ? result : undefined;
}

/** `prompt`: a string, token ids, or a list of either (one choice set per prompt). */
function readPrompts(value: unknown, vocabSize: number): Array<string | number[]> {
  if (value === undefined || value === null) throw invalidRequest('prompt is required', 'prompt', 'missing_required_parameter');
  if (typeof value === 'string') return [nonEmptyText(value)];
  if (!Array.isArray(value) || value.length === 0) {
    throw invalidRequest('prompt must be a non-empty string, an array of token ids, or an array of those', 'prompt', 'invalid_type');
  }
  if (value.every((item) => typeof item === 'number')) return [tokenIds(value, vocabSize)];
  if (value.every((item) => typeof item === 'string')) return value.map((text: string) => nonEmptyText(text));
  if (value.every((item) => Array.isArray(item))) return value.map((ids: unknown[]) => tokenIds(ids, vocabSize));
  throw invalidRequest('prompt must not mix strings, token ids and arrays', 'prompt', 'invalid_type');
}

function nonEmptyText(text: string): string {
  if (text.length === 0) throw invalidRequest('prompt must not be empty', 'prompt', 'empty_string');
  return text;
}

function tokenIds(ids: unknown[], vocabSize: number): number[] {
  if (ids.length === 0) throw invalidRequest('prompt must not be empty', 'prompt', 'empty_array');
  for (const id of ids) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
      throw invalidRequest(`invalid token id ${JSON.stringify(id)} in prompt: out of vocabulary (ids 0 to ${vocabSize - 1})`, 'prompt');
    }
  }
  return ids as number[];
}

/** Fields we know but cannot honour yet: absent, null, empty or their neutral value pass. */
function rejectUnsupported(body: RequestBody, fields: Readonly<Record<string, string>>): void {
  for (const field of Object.keys(fields)) {
    const value = body[field];
    const neutral =
      value === undefined || value === null || value === false || value === '' || (Array.isArray(value) && value.length === 0);
    if (!neutral) throw invalidRequest(`${field} is not supported by this server`, field, 'unsupported_parameter');
  }
}

// ---- field readers: undefined when absent or null, a 400 naming the field when wrong ----

interface NumberRange {
  min?: number;
  max?: number;
  /** The minimum itself is not allowed (`top_p` > 0). */
  minExclusive?: boolean;
}

export function readNumber(body: RequestBody, field: string, range: NumberRange = {}, param = field): number | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) throw invalidRequest(`${param} must be a number`, param, 'invalid_type');
  checkRange(value, range, param, 'decimal');
  return value;
}

export function readInteger(body: RequestBody, field: string, range: NumberRange = {}, param = field): number | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw invalidRequest(`${param} must be an integer`, param, 'invalid_type');
  checkRange(value, range, param, 'integer');
  return value;
}

export function readBoolean(body: RequestBody, field: string, param = field): boolean | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') throw invalidRequest(`${param} must be true or false`, param, 'invalid_type');
  return value;
}

export function readString(body: RequestBody, field: string, param = field): string | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw invalidRequest(`${param} must be a string`, param, 'invalid_type');
  return value;
}

export function readObject(body: RequestBody, field: string, param = field): RequestBody | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'object' || Array.isArray(value)) throw invalidRequest(`${param} must be an object`, param, 'invalid_type');
  return value as RequestBody;
}

function checkRange(value: number, { min, max, minExclusive }: NumberRange, param: string, kind: 'integer' | 'decimal'): void {
  const tooLow = min !== undefined && (minExclusive ? value <= min : value < min);
  const tooHigh = max !== undefined && value > max;
  if (!tooLow && !tooHigh) return;
  const low = min === undefined ? '' : minExclusive ? `greater than ${min}` : `at least ${min}`;
  const high = max === undefined ? '' : `at most ${max}`;
  throw invalidRequest(
    `${param} must be ${[low, high].filter(Boolean).join(' and ')}, got ${value}`,
    param,
    `${kind}_${tooLow ? 'below_min' : 'above_max'}_value`,
  );
}
