/**
 * A `POST /v1/responses` body, checked and turned into what the chat machinery takes: input
 * items become chat messages, function tools become chat tools (checked by the chat route's
 * own `readTools`), `text.format` becomes a grammar. Every error is a 400 naming the field in
 * the Responses API's own terms (`input[2].content[0].type`, `tools[0].name`).
 *
 * Fields of the Responses API this server does not implement are refused (`unsupported_parameter`)
 * unless their value asks for nothing; see `UNSUPPORTED_RESPONSES_FIELDS`.
 */
import { randomBytes } from 'node:crypto';

import type { ChatMessage, ChatToolCall, GenerationOptions, JsonObject } from '@mistralrs/core';

import { readTools, type RequestedGrammar, type RequestedTools } from '../constraints.js';
import { ApiError, invalidRequest } from '../errors.js';
import { readBoolean, readInteger, readNumber, readObject, readString, type RequestBody, type ValidationContext } from '../validate.js';

export interface ResponsesRequest {
  model: string | undefined;
  /** This request's input as chat messages (without instructions or earlier responses). */
  input: ChatMessage[];
  /** This request's input items as the API lists them, each with an id. */
  inputItems: Array<Record<string, unknown>>;
  instructions: string | undefined;
  maxOutputTokens: number | undefined;
  sampling: Pick<GenerationOptions, 'temperature' | 'topP'>;
  tools: RequestedTools | undefined;
  /** `tools` and `tool_choice` as the response echoes them. */
  toolsEcho: object[];
  toolChoiceEcho: object | string;
  parallelToolCalls: boolean;
  grammar: RequestedGrammar | undefined;
  /** `text` as the response echoes it. */
  textEcho: { format: object };
  previousResponseId: string | undefined;
  store: boolean;
  stream: boolean;
  metadata: Record<string, string>;
  user: string | undefined;
  /** `reasoning.effort`: the template's thinking switch (see `readReasoning`); undefined leaves its default. */
  reasoningEffort: ReasoningEffort | undefined;
  /** `reasoning` as the response echoes it. */
  reasoningEcho: { effort: ReasoningEffort | null; summary: null };
}

/** OpenAI's reasoning efforts; each is also a value of the template variable `reasoning_effort`. */
export const REASONING_EFFORTS = ['none', 'minimal', 'low', 'medium', 'high', 'xhigh'] as const;
export type ReasoningEffort = (typeof REASONING_EFFORTS)[number];

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isAbsent = (v: unknown) => v === undefined || v === null;
const isEmpty = (v: unknown) =>
  isAbsent(v) || v === false || v === '' || (Array.isArray(v) && v.length === 0) || (isObject(v) && Object.keys(v).length === 0);

/** Fields refused unless absent, null or the value given (a predicate of "asks for nothing"). */
const UNSUPPORTED: Readonly<Record<string, (value: unknown) => boolean>> = {
  background: isEmpty,
  include: isEmpty,
  conversation: isEmpty,
  prompt: isEmpty,
  context_management: isEmpty,
  max_tool_calls: isAbsent,
  top_logprobs: (v) => isAbsent(v) || v === 0,
  truncation: (v) => isAbsent(v) || v === 'disabled',
  service_tier: (v) => isAbsent(v) || v === 'auto' || v === 'default',
};

/** The names refused, for the docs and tests. */
export const UNSUPPORTED_RESPONSES_FIELDS: readonly string[] = Object.keys(UNSUPPORTED);

/** `msg_…`, `fc_…`, `resp_…`, `call_…`, `rs_…`: a prefix and 48 random hex digits. */
export function newItemId(prefix: 'msg' | 'fc' | 'fco' | 'resp' | 'call' | 'rs'): string {
  return `${prefix}_${randomBytes(24).toString('hex')}`;
}

export function readResponsesRequest(body: RequestBody, ctx: ValidationContext): ResponsesRequest {
  for (const [field, asksNothing] of Object.entries(UNSUPPORTED)) {
    if (!asksNothing(body[field])) {
      throw invalidRequest(`${field} is not supported by this server's /v1/responses`, field, 'unsupported_parameter');
    }
  }
  const { messages, items } = readInput(body.input);
  const tools = readResponsesTools(body, ctx.limits.maxTools);
  const previousResponseId = readString(body, 'previous_response_id');
  if (previousResponseId === '') throw invalidRequest('previous_response_id must not be empty', 'previous_response_id', 'empty_string');
  const sampling: ResponsesRequest['sampling'] = {};
  const temperature = readNumber(body, 'temperature', { min: 0, max: 2 });
  const topP = readNumber(body, 'top_p', { min: 0, max: 1, minExclusive: true });
  if (temperature !== undefined) sampling.temperature = temperature;
  if (topP !== undefined) sampling.topP = topP;
  const text = readText(body);
  const reasoningEffort = readReasoning(body.reasoning);
  return {
    model: readString(body, 'model'),
    input: messages,
    inputItems: items,
    instructions: readString(body, 'instructions'),
    maxOutputTokens: readInteger(body, 'max_output_tokens', { min: 1, max: ctx.contextTokens }),
    sampling,
    tools: tools.requested,
    toolsEcho: tools.echo,
    toolChoiceEcho: tools.choiceEcho,
    parallelToolCalls: readBoolean(body, 'parallel_tool_calls') ?? true,
    grammar: text.grammar,
    textEcho: { format: text.echo },
    previousResponseId,
    store: readBoolean(body, 'store') ?? true,
    stream: readBoolean(body, 'stream') ?? false,
    metadata: readMetadata(body),
    user: readString(body, 'user'),
    reasoningEffort,
    reasoningEcho: { effort: reasoningEffort ?? null, summary: null },
  };
}

/**
 * `reasoning: {effort, summary}`. The effort is the thinking switch of the template, as the
 * chat route's `reasoning_effort`: `none` turns thinking off, any other turns it on (and is
 * given to a template that reads `reasoning_effort`, gpt-oss). A summary cannot be made here
 * (the reasoning item carries the model's reasoning whole, as `reasoning_text` content), so
 * asking for one is refused.
 */
function readReasoning(value: unknown): ReasoningEffort | undefined {
  if (isAbsent(value)) return undefined;
  if (!isObject(value)) throw invalidRequest('reasoning must be an object', 'reasoning', 'invalid_type');
  for (const [key, v] of Object.entries(value)) {
    if (key === 'effort') continue;
    if (key !== 'summary' && key !== 'generate_summary') {
      throw invalidRequest(`reasoning.${key} is not a field of reasoning`, `reasoning.${key}`, 'unsupported_parameter');
    }
    if (!isAbsent(v)) {
      throw invalidRequest(
        `reasoning.${key} is not supported by this server: it does not summarise reasoning; the reasoning item carries the model's reasoning whole, as reasoning_text content`,
        `reasoning.${key}`,
        'unsupported_parameter',
      );
    }
  }
  const effort = value.effort;
  if (isAbsent(effort)) return undefined;
  if (typeof effort !== 'string' || !(REASONING_EFFORTS as readonly string[]).includes(effort)) {
    throw invalidRequest(
      `reasoning.effort must be one of ${REASONING_EFFORTS.map((e) => JSON.stringify(e)).join(', ')}, got ${JSON.stringify(effort)}`,
      'reasoning.effort',
      'invalid_value',
    );
  }
  return effort as ReasoningEffort;
}

function readMetadata(body: RequestBody): Record<string, string> {
  readString(body, 'safety_identifier');
  readString(body, 'prompt_cache_key');
  const metadata = readObject(body, 'metadata') ?? {};
  const entries = Object.entries(metadata);
  if (entries.length > 16) throw invalidRequest(`metadata has ${entries.length} keys; at most 16 are allowed`, 'metadata');
  for (const [key, value] of entries) {
    if (typeof value !== 'string') throw invalidRequest(`metadata.${key} must be a string`, `metadata.${key}`, 'invalid_type');
  }
  return { ...(metadata as Record<string, string>) };
}

// ---- input ----

/** `input`: a string (one user message) or a list of items. */
function readInput(value: unknown): { messages: ChatMessage[]; items: Array<Record<string, unknown>> } {
  if (isAbsent(value)) throw invalidRequest('input is required', 'input', 'missing_required_parameter');
  if (typeof value === 'string') {
    const item = { id: newItemId('msg'), type: 'message', role: 'user', content: [{ type: 'input_text', text: value }] };
    return { messages: [{ role: 'user', content: value }], items: [item] };
  }
  if (!Array.isArray(value)) throw invalidRequest('input must be a string or an array of input items', 'input', 'invalid_type');
  if (value.length === 0) throw invalidRequest('input must contain at least one item', 'input', 'empty_array');
  const messages: ChatMessage[] = [];
  const items: Array<Record<string, unknown>> = [];
  const callNames = new Map<string, string>();
  value.forEach((item: unknown, index) => {
    const at = `input[${index}]`;
    if (!isObject(item)) throw invalidRequest(`${at} must be an object`, at, 'invalid_type');
    const type = item.type ?? 'message';
    if (type === 'message') {
      const { message, listed } = readMessageItem(item, at);
      messages.push(message);
      items.push(listed);
    } else if (type === 'function_call') {
      const call = readFunctionCall(item, at);
      callNames.set(call.call_id, call.name);
      const chatCall: ChatToolCall = { id: call.call_id, type: 'function', function: { name: call.name, arguments: call.arguments } };
      // Calls right after an assistant turn (or after each other) belong to that turn.
      const last = messages.at(-1);
      if (last?.role === 'assistant') last.tool_calls = [...(last.tool_calls ?? []), chatCall];
      else messages.push({ role: 'assistant', content: '', tool_calls: [chatCall] });
      items.push({ id: typeof item.id === 'string' ? item.id : newItemId('fc'), type, status: 'completed', ...call });
    } else if (type === 'function_call_output') {
      const callId = requireString(item, 'call_id', at);
      const output = readOutput(item.output, `${at}.output`);
      const name = callNames.get(callId);
      messages.push({ role: 'tool', tool_call_id: callId, content: output, ...(name !== undefined ? { name } : {}) });
      items.push({ id: typeof item.id === 'string' ? item.id : newItemId('fco'), type, call_id: callId, output, status: 'completed' });
    } else if (type === 'reasoning') {
      // An earlier response's reasoning, sent back: listed, but not given to the template
      // (thinking templates drop the reasoning of earlier turns).
      const summary = item.summary ?? [];
      if (!Array.isArray(summary)) throw invalidRequest(`${at}.summary must be an array`, `${at}.summary`, 'invalid_type');
      const content = item.content ?? [];
      if (!Array.isArray(content)) throw invalidRequest(`${at}.content must be an array`, `${at}.content`, 'invalid_type');
      if (!isAbsent(item.encrypted_content)) {
        throw invalidRequest(
          `${at}.encrypted_content: this server makes no encrypted reasoning`,
          `${at}.encrypted_content`,
          'unsupported_content',
        );
      }
      items.push({ id: typeof item.id === 'string' ? item.id : newItemId('rs'), type, summary, content });
    } else if (typeof type === 'string' && KNOWN_ITEMS.has(type)) {
      throw invalidRequest(`${at}: ${type} items are not supported by this server`, `${at}.type`, 'unsupported_content');
    } else {
      throw invalidRequest(
        `${at}.type must be "message", "function_call", "function_call_output" or "reasoning", got ${JSON.stringify(type)}`,
        `${at}.type`,
        'invalid_value',
      );
    }
  });
  return { messages, items };
}

/** Input items of the API that this server does not read. */
const KNOWN_ITEMS: ReadonlySet<string> = new Set([
  'item_reference',
  'file_search_call',
  'web_search_call',
  'computer_call',
  'computer_call_output',
  'image_generation_call',
  'code_interpreter_call',
  'local_shell_call',
  'local_shell_call_output',
  'mcp_list_tools',
  'mcp_approval_request',
  'mcp_approval_response',
  'mcp_call',
  'custom_tool_call',
  'custom_tool_call_output',
  'compaction',
]);

const ROLES: ReadonlySet<string> = new Set(['user', 'assistant', 'system', 'developer']);

function readMessageItem(item: Record<string, unknown>, at: string): { message: ChatMessage; listed: Record<string, unknown> } {
  const role = item.role;
  if (typeof role !== 'string' || !ROLES.has(role)) {
    throw invalidRequest(`${at}.role must be one of ${[...ROLES].join(', ')}; got ${JSON.stringify(role)}`, `${at}.role`, 'invalid_value');
  }
  const content = item.content;
  let parts: Array<{ type: string; text: string }>;
  if (typeof content === 'string') {
    parts = [{ type: role === 'assistant' ? 'output_text' : 'input_text', text: content }];
  } else if (Array.isArray(content)) {
    parts = content.map((part: unknown, i) => readContentPart(part, `${at}.content[${i}]`));
  } else {
    throw invalidRequest(`${at}.content must be a string or an array of content parts`, `${at}.content`, 'invalid_type');
  }
  const text = parts.map((p) => p.text).join('\n');
  const listedContent = parts.map((p) => (p.type === 'output_text' ? { ...p, annotations: [] } : p));
  const listed = {
    id: typeof item.id === 'string' ? item.id : newItemId('msg'),
    type: 'message',
    role,
    content: listedContent,
    status: 'completed',
  };
  return { message: { role: role === 'developer' ? 'system' : role, content: text }, listed };
}

function readContentPart(part: unknown, at: string): { type: string; text: string } {
  if (!isObject(part)) throw invalidRequest(`${at} must be an object`, at, 'invalid_type');
  const { type, text } = part;
  if (type === 'input_text' || type === 'output_text') {
    if (typeof text !== 'string') throw invalidRequest(`${at}.text must be a string`, `${at}.text`, 'invalid_type');
    return { type, text };
  }
  if (type === 'refusal') {
    const refusal = part.refusal;
    if (typeof refusal !== 'string') throw invalidRequest(`${at}.refusal must be a string`, `${at}.refusal`, 'invalid_type');
    return { type: 'output_text', text: refusal };
  }
  if (type === 'input_image' || type === 'input_file' || type === 'input_audio') {
    throw invalidRequest(`${at}: this model reads text only; ${type} parts are not supported`, `${at}.type`, 'unsupported_content');
  }
  throw invalidRequest(`${at}.type must be "input_text" or "output_text", got ${JSON.stringify(type)}`, `${at}.type`, 'invalid_value');
}

function readFunctionCall(item: Record<string, unknown>, at: string): { call_id: string; name: string; arguments: string } {
  const args = item.arguments ?? '{}';
  if (typeof args !== 'string') throw invalidRequest(`${at}.arguments must be a JSON string`, `${at}.arguments`, 'invalid_type');
  return { call_id: requireString(item, 'call_id', at), name: requireString(item, 'name', at), arguments: args };
}

/** A function's output: a string, or text parts (joined by newlines). */
function readOutput(value: unknown, at: string): string {
  if (typeof value === 'string') return value;
  if (!Array.isArray(value)) throw invalidRequest(`${at} must be a string or an array of input_text parts`, at, 'invalid_type');
  return value.map((part: unknown, i) => readContentPart(part, `${at}[${i}]`).text).join('\n');
}

function requireString(item: Record<string, unknown>, field: string, at: string): string {
  const value = item[field];
  if (isAbsent(value)) throw invalidRequest(`${at}.${field} is required`, `${at}.${field}`, 'missing_required_parameter');
  if (typeof value !== 'string' || value === '') {
    throw invalidRequest(`${at}.${field} must be a non-empty string`, `${at}.${field}`, 'invalid_type');
  }
  return value;
}

// ---- tools ----

/**
 * Function tools (`{type: "function", name, description, parameters, strict}`) in the chat
 * route's shape, checked by its `readTools`; its errors are renamed to this API's fields.
 * Built-in tools (web search, file search, ...) are refused.
 */
function readResponsesTools(
  body: RequestBody,
  maxTools: number,
): { requested: RequestedTools | undefined; echo: object[]; choiceEcho: object | string } {
  const value = body.tools;
  const echo: object[] = [];
  let chatTools: unknown = value;
  if (Array.isArray(value)) {
    chatTools = value.map((tool: unknown, i) => {
      const at = `tools[${i}]`;
      if (!isObject(tool)) throw invalidRequest(`${at} must be an object`, at, 'invalid_type');
      if (tool.type !== 'function') {
        throw invalidRequest(
          `${at}.type ${JSON.stringify(tool.type)}: only function tools are supported by this server`,
          `${at}.type`,
          'unsupported_parameter',
        );
      }
      if (!isAbsent(tool.strict) && typeof tool.strict !== 'boolean') {
        throw invalidRequest(`${at}.strict must be true or false`, `${at}.strict`, 'invalid_type');
      }
      const { name, description, parameters } = tool;
      echo.push({ type: 'function', name, description: description ?? null, parameters: parameters ?? null, strict: tool.strict ?? true });
      return {
        type: 'function',
        function: { name, ...(isAbsent(description) ? {} : { description }), ...(isAbsent(parameters) ? {} : { parameters }) },
      };
    });
  }
  const choice = body.tool_choice;
  let chatChoice: unknown = choice;
  if (isObject(choice)) {
    if (choice.type !== 'function') {
      throw invalidRequest(
        `tool_choice ${JSON.stringify(choice.type)}: only "auto", "none", "required" and {"type": "function", "name": …} are supported`,
        'tool_choice',
        'unsupported_parameter',
      );
    }
    chatChoice = { type: 'function', function: { name: choice.name } };
  }
  try {
    const requested = readTools({ tools: chatTools, tool_choice: chatChoice, parallel_tool_calls: body.parallel_tool_calls }, maxTools);
    const choiceEcho = isObject(choice) ? { type: 'function', name: choice.name } : ((choice as string | undefined | null) ?? 'auto');
    return { requested, echo, choiceEcho };
  } catch (error) {
    if (!(error instanceof ApiError) || error.param === null) throw error;
    const param = error.param.replace(/\.function\./, '.');
    return rethrow(new ApiError(error.status, error.type, error.message.replaceAll('.function.', '.'), param, error.code));
  }
}

function rethrow(error: ApiError): never {
  throw error;
}

// ---- text.format ----

/** `text.format`: text, json_object, or json_schema (`{type, name, schema, strict}`), as a grammar. */
function readText(body: RequestBody): { grammar: RequestedGrammar | undefined; echo: object } {
  const text = readObject(body, 'text');
  if (!text) return { grammar: undefined, echo: { type: 'text' } };
  const verbosity = text.verbosity;
  if (!isAbsent(verbosity) && verbosity !== 'medium') {
    throw invalidRequest('text.verbosity is not supported by this server', 'text.verbosity', 'unsupported_parameter');
  }
  const format = text.format;
  if (isAbsent(format)) return { grammar: undefined, echo: { type: 'text' } };
  if (!isObject(format)) throw invalidRequest('text.format must be an object', 'text.format', 'invalid_type');
  const param = 'text.format';
  switch (format.type) {
    case 'text':
      return { grammar: undefined, echo: { type: 'text' } };
    case 'json_object':
      return { grammar: { grammar: { type: 'json_object' }, param }, echo: { type: 'json_object' } };
    case 'json_schema': {
      if (typeof format.name !== 'string' || format.name === '') {
        throw invalidRequest('text.format.name is required for json_schema', 'text.format.name', 'missing_required_parameter');
      }
      const schema = format.schema;
      if (!isObject(schema)) throw invalidRequest('text.format.schema must be a JSON Schema object', 'text.format.schema', 'invalid_type');
      if (!isAbsent(format.strict) && typeof format.strict !== 'boolean') {
        throw invalidRequest('text.format.strict must be true or false', 'text.format.strict', 'invalid_type');
      }
      const echo = {
        type: 'json_schema',
        name: format.name,
        schema,
        strict: format.strict ?? false,
        ...(typeof format.description === 'string' ? { description: format.description } : {}),
      };
      return { grammar: { grammar: { type: 'json_schema', value: schema as JsonObject }, param }, echo };
    }
    default:
      throw invalidRequest(
        `text.format.type must be "text", "json_object" or "json_schema", got ${JSON.stringify(format.type)}`,
        'text.format.type',
        'invalid_value',
      );
  }
}
