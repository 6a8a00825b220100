/**
 * An Anthropic Messages request (`POST /v1/messages`, `/v1/messages/count_tokens`), checked
 * and turned into the server's own chat request: the messages and tools chat templates read
 * (OpenAI's shapes, which templates expect), the tool choice, and the generation options. From
 * there the request takes the chat route's path (prompt.ts, constraints.ts, core's tool plan).
 *
 * Anthropic's API refuses fields it does not know ("Extra inputs are not permitted"), and so
 * does this one. `thinking` turns the template's thinking on or off (see `readThinking`).
 * Fields Anthropic has that this server does not implement (`container`, `mcp_servers`, images, server tools, ...) are a 400 saying so, never silently
 * ignored; `cache_control` and `service_tier`, which change nothing in the answer, are
 * accepted. Paths in messages are written as Anthropic writes them: `messages.0.content.1.type`.
 */
import type { ChatMessage, ChatTool, ChatToolCall, GenerationOptions, JsonObject, ToolChoice } from '@mistralrs/core';

import type { ServerLimits } from '../limits.js';
import type { RequestBody } from '../validate.js';
import { checkBlockFields, fail, isObject, readCacheControl } from './fields.js';
import { readToolChoice, readTools } from './tools.js';

/** What both routes read: the conversation and its tools. */
export interface AnthropicChat {
  model: string;
  messages: ChatMessage[];
  tools: ChatTool[] | undefined;
  toolChoice: ToolChoice | undefined;
  parallelToolCalls: boolean;
  /** The text of a last assistant turn, which the answer continues (Anthropic's prefill); that
   * turn is the last of `messages`. */
  prefill: string | undefined;
  /** `thinking`: enabled or disabled; undefined leaves the template's default. */
  thinking: AnthropicThinking | undefined;
}

/** `thinking: {type: "enabled", budget_tokens}` or `{type: "disabled"}`. */
export interface AnthropicThinking {
  enabled: boolean;
  /** Checked as Anthropic checks it (at least 1024, less than max_tokens); not a separate
   * limit here: the whole output, thinking and text, is bounded by max_tokens. */
  budgetTokens: number | undefined;
}

/** `POST /v1/messages`. */
export interface AnthropicMessagesRequest extends AnthropicChat {
  maxTokens: number;
  stop: string[] | undefined;
  sampling: Pick<GenerationOptions, 'temperature' | 'topP' | 'topK'>;
  stream: boolean;
}

/** Fields both routes take; a value other than `neutral` of an `unsupported` field is refused. */
const CHAT_FIELDS = new Set(['model', 'messages', 'system', 'tools', 'tool_choice', 'cache_control', 'thinking']);
const MESSAGES_FIELDS = new Set([
  ...CHAT_FIELDS,
  'max_tokens',
  'stop_sequences',
  'temperature',
  'top_p',
  'top_k',
  'metadata',
  'stream',
  'service_tier',
]);

/** Anthropic's fields that this server does not implement, and the values that ask for nothing. */
const UNSUPPORTED: Readonly<Record<string, (value: unknown) => boolean>> = {
  container: () => false,
  mcp_servers: (v) => Array.isArray(v) && v.length === 0,
  output_config: (v) => isObject(v) && Object.keys(v).length === 0,
  context_management: () => false,
  diagnostics: () => false,
  inference_geo: () => false,
  speed: (v) => v === 'standard',
};

export function readMessagesRequest(body: RequestBody, limits: ServerLimits): AnthropicMessagesRequest {
  checkFields(body, MESSAGES_FIELDS);
  const maxTokens = body.max_tokens;
  if (maxTokens === undefined) throw fail('max_tokens', 'Field required', 'missing_required_parameter');
  if (typeof maxTokens !== 'number' || !Number.isSafeInteger(maxTokens)) {
    throw fail('max_tokens', 'Input should be a valid integer', 'invalid_type');
  }
  if (maxTokens < 1) {
    throw fail(
      'max_tokens',
      `must be at least 1, got ${maxTokens} (0, which only warms a prompt cache, is not supported by this server)`,
      'integer_below_min_value',
    );
  }
  readMetadata(body.metadata);
  const tier = body.service_tier;
  if (tier !== undefined && tier !== 'auto' && tier !== 'standard_only') {
    throw fail('service_tier', `Input should be 'auto' or 'standard_only'`, 'invalid_value');
  }
  const topK = readNumber(body, 'top_k', 0, Number.MAX_SAFE_INTEGER, true);
  const sampling: AnthropicMessagesRequest['sampling'] = {};
  const temperature = readNumber(body, 'temperature', 0, 1);
  const topP = readNumber(body, 'top_p', 0, 1);
  if (temperature !== undefined) sampling.temperature = temperature;
  if (topP !== undefined && topP > 0) sampling.topP = topP;
  if (topK !== undefined && topK > 0) sampling.topK = topK;
  const stream = body.stream;
  if (stream !== undefined && stream !== null && typeof stream !== 'boolean')
    throw fail('stream', 'Input should be a valid boolean', 'invalid_type');
  const chat = readChat(body, limits);
  const budget = chat.thinking?.budgetTokens;
  if (budget !== undefined && budget >= maxTokens) {
    throw fail('thinking.budget_tokens', `must be less than max_tokens (${maxTokens}), got ${budget}`, 'integer_above_max_value');
  }
  return {
    ...chat,
    maxTokens,
    stop: readStopSequences(body.stop_sequences, limits),
    sampling,
    stream: stream ?? false,
  };
}

export function readCountTokensRequest(body: RequestBody, limits: ServerLimits): AnthropicChat {
  checkFields(body, CHAT_FIELDS);
  return readChat(body, limits);
}

function readChat(body: RequestBody, limits: ServerLimits): AnthropicChat {
  const model = body.model;
  if (model === undefined) throw fail('model', 'Field required', 'missing_required_parameter');
  if (typeof model !== 'string' || model === '') throw fail('model', 'Input should be a non-empty string', 'invalid_type');
  readCacheControl(body.cache_control, 'cache_control');
  const tools = readTools(body.tools, limits.maxTools);
  const { toolChoice, parallelToolCalls } = readToolChoice(body.tool_choice, tools);
  const messages = mergeTurns([...readSystem(body.system), ...readMessages(body.messages)]);
  const prefill = readPrefill(messages, (body.messages as unknown[]).length - 1);
  return { model, messages, tools, toolChoice, parallelToolCalls, prefill, thinking: readThinking(body.thinking) };
}

/** Anthropic's least thinking budget. */
const MIN_THINKING_BUDGET = 1024;

/**
 * `thinking`: `{type: "enabled", budget_tokens}` turns the template's thinking on (Qwen 3's
 * `enable_thinking`), `{type: "disabled"}` off; the route refuses `enabled` for a template that
 * does not think. `budget_tokens` is checked as Anthropic checks it (an integer, at least 1024,
 * and, on /v1/messages, less than max_tokens) but not enforced apart: max_tokens bounds the
 * thinking and the text together.
 */
function readThinking(value: unknown): AnthropicThinking | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) throw fail('thinking', 'Input should be an object', 'invalid_type');
  if (value.type === 'disabled') {
    checkBlockFields(value, 'thinking', [], []);
    return { enabled: false, budgetTokens: undefined };
  }
  if (value.type !== 'enabled') {
    throw fail('thinking.type', `Input should be 'enabled' or 'disabled', got ${JSON.stringify(value.type)}`, 'invalid_value');
  }
  checkBlockFields(value, 'thinking', ['budget_tokens'], []);
  const budget = value.budget_tokens;
  if (typeof budget !== 'number' || !Number.isSafeInteger(budget)) {
    throw fail('thinking.budget_tokens', 'Input should be a valid integer', 'invalid_type');
  }
  if (budget < MIN_THINKING_BUDGET) {
    throw fail('thinking.budget_tokens', `must be at least ${MIN_THINKING_BUDGET}, got ${budget}`, 'integer_below_min_value');
  }
  return { enabled: true, budgetTokens: budget };
}

/** Unknown fields are refused, as Anthropic refuses them; known unimplemented ones name themselves. */
function checkFields(body: RequestBody, known: ReadonlySet<string>): void {
  for (const [field, value] of Object.entries(body)) {
    const neutral = UNSUPPORTED[field];
    if (neutral) {
      if (value === null || neutral(value)) continue;
      throw fail(field, 'is not supported by this server', 'unsupported_parameter');
    }
    if (!known.has(field)) throw fail(field, 'Extra inputs are not permitted', 'unsupported_parameter');
  }
}

function readSystem(value: unknown): ChatMessage[] {
  if (value === undefined || value === null) return [];
  const text = typeof value === 'string' ? value : readTextBlocks(value, 'system');
  return text === '' ? [] : [{ role: 'system', content: text }];
}

function readMessages(value: unknown): ChatMessage[] {
  if (value === undefined) throw fail('messages', 'Field required', 'missing_required_parameter');
  if (!Array.isArray(value)) throw fail('messages', 'Input should be a valid list', 'invalid_type');
  if (value.length === 0) throw fail('messages', 'List should have at least 1 item', 'empty_array');
  const toolNames = new Map<string, string>(); // tool_use id → the tool's name
  const out: ChatMessage[] = [];
  value.forEach((message: unknown, i) => {
    const at = `messages.${i}`;
    if (!isObject(message)) throw fail(at, 'Input should be an object with role and content', 'invalid_type');
    for (const key of Object.keys(message)) {
      if (key !== 'role' && key !== 'content') throw fail(`${at}.${key}`, 'Extra inputs are not permitted', 'unsupported_parameter');
    }
    const { role, content } = message;
    if (role !== 'user' && role !== 'assistant' && role !== 'system') {
      throw fail(`${at}.role`, `Input should be 'user' or 'assistant', got ${JSON.stringify(role)}`, 'invalid_value');
    }
    if (content === undefined) throw fail(`${at}.content`, 'Field required', 'missing_required_parameter');
    if (role === 'system') out.push({ role, content: typeof content === 'string' ? content : readTextBlocks(content, `${at}.content`) });
    else if (typeof content === 'string') out.push({ role, content });
    else if (!Array.isArray(content)) throw fail(`${at}.content`, 'Input should be a string or a list of content blocks', 'invalid_type');
    else if (content.length === 0) throw fail(`${at}.content`, 'List should have at least 1 item', 'empty_array');
    else out.push(...readBlocks(role, content, `${at}.content`, toolNames));
  });
  return out;
}

/**
 * A last assistant turn is a prefill: the answer continues its text. It must be text only,
 * and, as Anthropic requires, not end in whitespace; an empty one asks for nothing and is dropped.
 */
function readPrefill(messages: ChatMessage[], lastIndex: number): string | undefined {
  const last = messages.at(-1);
  if (last?.role !== 'assistant') return undefined;
  const at = `messages.${lastIndex}`;
  if (last.tool_calls) throw fail(`${at}.content`, 'a final assistant turn (a prefill) cannot hold tool_use blocks', 'invalid_value');
  const text = typeof last.content === 'string' ? last.content : '';
  if (text === '') {
    messages.pop();
    return undefined;
  }
  if (/\s$/.test(text)) throw fail(`${at}.content`, 'final assistant content cannot end with trailing whitespace', 'invalid_value');
  return text;
}

/** A turn's content blocks: a user's text and tool results, an assistant's text and tool calls. */
function readBlocks(role: 'user' | 'assistant', blocks: unknown[], at: string, toolNames: Map<string, string>): ChatMessage[] {
  const out: ChatMessage[] = [];
  const texts: string[] = [];
  const calls: ChatToolCall[] = [];
  const flushText = () => {
    if (texts.length > 0) out.push({ role: 'user', content: texts.splice(0).join('\n') });
  };
  blocks.forEach((block: unknown, j) => {
    const blockAt = `${at}.${j}`;
    if (!isObject(block)) throw fail(blockAt, 'Input should be a content block object', 'invalid_type');
    switch (block.type) {
      case 'text':
        texts.push(readTextBlock(block, blockAt));
        return;
      case 'tool_use': {
        if (role !== 'assistant') throw fail(`${blockAt}.type`, 'tool_use blocks belong in assistant turns', 'invalid_value');
        checkBlockFields(block, blockAt, ['id', 'name', 'input'], ['caller']);
        const { id, name, input } = block;
        if (typeof id !== 'string' || id === '') throw fail(`${blockAt}.id`, 'Input should be a non-empty string', 'invalid_type');
        if (typeof name !== 'string' || name === '') throw fail(`${blockAt}.name`, 'Input should be a non-empty string', 'invalid_type');
        if (!isObject(input)) throw fail(`${blockAt}.input`, 'Input should be an object', 'invalid_type');
        if (block.caller !== undefined && !(isObject(block.caller) && block.caller.type === 'direct')) {
          throw fail(`${blockAt}.caller`, 'only direct calls are supported by this server', 'unsupported_content');
        }
        toolNames.set(id, name);
        calls.push({ id, type: 'function', function: { name, arguments: input as JsonObject } });
        return;
      }
      case 'thinking':
      case 'redacted_thinking':
        // An earlier answer's thinking, sent back as Anthropic asks: checked, then dropped, as
        // thinking templates (Qwen 3, the R1 distills) drop the reasoning of earlier turns.
        if (role !== 'assistant') throw fail(`${blockAt}.type`, `${block.type} blocks belong in assistant turns`, 'invalid_value');
        if (block.type === 'thinking') {
          checkBlockFields(block, blockAt, ['thinking', 'signature'], []);
          if (typeof block.thinking !== 'string') throw fail(`${blockAt}.thinking`, 'Input should be a valid string', 'invalid_type');
          if (typeof block.signature !== 'string') throw fail(`${blockAt}.signature`, 'Input should be a valid string', 'invalid_type');
        } else {
          checkBlockFields(block, blockAt, ['data'], []);
          if (typeof block.data !== 'string') throw fail(`${blockAt}.data`, 'Input should be a valid string', 'invalid_type');
        }
        return;
      case 'tool_result': {
        if (role !== 'user') throw fail(`${blockAt}.type`, 'tool_result blocks belong in user turns', 'invalid_value');
        checkBlockFields(block, blockAt, ['tool_use_id'], ['content', 'is_error']);
        const id = block.tool_use_id;
        if (typeof id !== 'string') throw fail(`${blockAt}.tool_use_id`, 'Input should be a valid string', 'invalid_type');
        const name = toolNames.get(id);
        if (name === undefined) {
          throw fail(
            `${blockAt}.tool_use_id`,
            `${JSON.stringify(id)} names no tool_use block of an earlier assistant turn`,
            'invalid_value',
          );
        }
        const content = block.content;
        let text = content === undefined || content === null ? '' : typeof content === 'string' ? content : undefined;
        text ??= readTextBlocks(content, `${blockAt}.content`);
        const isError = block.is_error;
        if (isError !== undefined && isError !== null && typeof isError !== 'boolean') {
          throw fail(`${blockAt}.is_error`, 'Input should be a valid boolean', 'invalid_type');
        }
        // Templates have no field for a failed call: the result says so in words.
        if (isError === true) text = `Error: ${text}`;
        flushText();
        out.push({ role: 'tool', tool_call_id: id, name, content: text });
        return;
      }
      default:
        throw unsupportedBlock(block.type, `${blockAt}.type`);
    }
  });
  if (role === 'assistant') {
    const message: ChatMessage = { role, content: texts.join('\n') };
    if (calls.length > 0) message.tool_calls = calls;
    return [message];
  }
  flushText();
  return out;
}

/** Kinds of Anthropic content this server cannot read yet. */
const UNSUPPORTED_BLOCKS = new Set([
  'image',
  'document',
  'search_result',
  'server_tool_use',
  'web_search_tool_result',
  'web_fetch_tool_result',
  'code_execution_tool_result',
  'bash_code_execution_tool_result',
  'text_editor_code_execution_tool_result',
  'tool_search_tool_result',
  'container_upload',
  'tool_reference',
]);

function unsupportedBlock(type: unknown, at: string) {
  if (typeof type === 'string' && UNSUPPORTED_BLOCKS.has(type)) {
    return fail(
      at,
      `${type} blocks are not supported by this server (it reads text, tool_use, tool_result and thinking)`,
      'unsupported_content',
    );
  }
  return fail(at, `Input should be 'text', 'tool_use' or 'tool_result', got ${JSON.stringify(type)}`, 'invalid_value');
}

/** `system`, or a tool result's content: a list of text blocks, joined by newlines. */
function readTextBlocks(value: unknown, at: string): string {
  if (!Array.isArray(value)) throw fail(at, 'Input should be a string or a list of text blocks', 'invalid_type');
  return value
    .map((block: unknown, j) => {
      const blockAt = `${at}.${j}`;
      if (!isObject(block)) throw fail(blockAt, 'Input should be a text block object', 'invalid_type');
      if (block.type !== 'text') throw unsupportedBlock(block.type, `${blockAt}.type`);
      return readTextBlock(block, blockAt);
    })
    .join('\n');
}

function readTextBlock(block: Record<string, unknown>, at: string): string {
  checkBlockFields(block, at, ['text'], ['citations']);
  if (typeof block.text !== 'string') throw fail(`${at}.text`, 'Input should be a valid string', 'invalid_type');
  const citations = block.citations;
  if (citations !== undefined && citations !== null && !(Array.isArray(citations) && citations.length === 0)) {
    throw fail(`${at}.citations`, 'citations are not supported by this server', 'unsupported_content');
  }
  return block.text;
}
/** Anthropic combines consecutive turns of one role into one turn; templates that insist on
 * alternating roles would otherwise refuse them. */
function mergeTurns(messages: ChatMessage[]): ChatMessage[] {
  const out: ChatMessage[] = [];
  for (const message of messages) {
    const prev = out.at(-1);
    if (prev && prev.role === message.role && (message.role === 'user' || message.role === 'assistant')) {
      const joined = [prev.content, message.content].filter((c): c is string => typeof c === 'string' && c !== '').join('\n');
      const calls = [...(prev.tool_calls ?? []), ...(message.tool_calls ?? [])];
      out[out.length - 1] = { ...prev, content: joined, ...(calls.length > 0 ? { tool_calls: calls } : {}) };
    } else {
      out.push(message);
    }
  }
  return out;
}
function readStopSequences(value: unknown, limits: ServerLimits): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) throw fail('stop_sequences', 'Input should be a valid list', 'invalid_type');
  if (value.length > limits.maxStopStrings) {
    throw fail('stop_sequences', `has ${value.length} strings; at most ${limits.maxStopStrings} are allowed`, 'array_above_max_length');
  }
  value.forEach((stop: unknown, i) => {
    if (typeof stop !== 'string') throw fail(`stop_sequences.${i}`, 'Input should be a valid string', 'invalid_type');
    if (stop === '') throw fail(`stop_sequences.${i}`, 'must not be empty', 'empty_string');
    if (stop.length > limits.maxStopChars) {
      throw fail(
        `stop_sequences.${i}`,
        `has ${stop.length} characters; at most ${limits.maxStopChars} are allowed`,
        'string_above_max_length',
      );
    }
  });
  return value.length > 0 ? (value as string[]) : undefined;
}

/** `metadata.user_id`, which changes nothing here: checked for shape, then dropped. */
function readMetadata(value: unknown): void {
  if (value === undefined || value === null) return;
  if (!isObject(value)) throw fail('metadata', 'Input should be an object', 'invalid_type');
  for (const [key, v] of Object.entries(value)) {
    if (key !== 'user_id') throw fail(`metadata.${key}`, 'Extra inputs are not permitted', 'unsupported_parameter');
    if (v !== null && typeof v !== 'string') throw fail('metadata.user_id', 'Input should be a valid string', 'invalid_type');
  }
}

function readNumber(body: RequestBody, field: string, min: number, max: number, integer = false): number | undefined {
  const value = body[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || (integer && !Number.isSafeInteger(value))) {
    throw fail(field, `Input should be a valid ${integer ? 'integer' : 'number'}`, 'invalid_type');
  }
  if (value < min)
    throw fail(field, `must be at least ${min}, got ${value}`, integer ? 'integer_below_min_value' : 'decimal_below_min_value');
  if (value > max)
    throw fail(field, `must be at most ${max}, got ${value}`, integer ? 'integer_above_max_value' : 'decimal_above_max_value');
  return value;
}
