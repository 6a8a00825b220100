/**
 * The `messages` of a chat request, checked and reduced to what chat templates read.
 *
 * Templates index into messages freely, so a message of the wrong shape would surface as a
 * template error (or, worse, a silently odd prompt). Checking here gives a 400 that names the
 * message at fault (`messages[2].content`). Only known fields are passed on: a request cannot
 * feed arbitrary variables to the template.
 */
import type { ChatMessage, ChatToolCall, JsonObject } from '@mistralrs/core';

import { invalidRequest } from './errors.js';

/** OpenAI's roles; `developer` is its newer name for `system`, which templates know. */
const ROLES: ReadonlySet<string> = new Set(['system', 'developer', 'user', 'assistant', 'tool']);

export function readMessages(value: unknown): ChatMessage[] {
  if (value === undefined || value === null) throw invalidRequest('messages is required', 'messages', 'missing_required_parameter');
  if (!Array.isArray(value)) throw invalidRequest('messages must be an array of message objects', 'messages', 'invalid_type');
  if (value.length === 0) throw invalidRequest('messages must contain at least one message', 'messages', 'empty_array');
  return value.map((message: unknown, index) => readMessage(message, `messages[${index}]`));
}

function readMessage(value: unknown, at: string): ChatMessage {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidRequest(`${at} must be an object with a role and content`, at, 'invalid_type');
  }
  const m = value as Record<string, unknown>;
  if (typeof m.role !== 'string') throw invalidRequest(`${at}.role must be a string`, `${at}.role`, 'invalid_type');
  if (!ROLES.has(m.role)) {
    throw invalidRequest(
      `${at}.role must be one of ${[...ROLES].join(', ')}; got ${JSON.stringify(m.role)}`,
      `${at}.role`,
      'invalid_value',
    );
  }
  const role = m.role === 'developer' ? 'system' : m.role;
  const toolCalls = role === 'assistant' ? readToolCalls(m.tool_calls, `${at}.tool_calls`) : undefined;
  // An assistant turn that only calls tools has no content (OpenAI clients send null). It
  // becomes '': most templates concatenate content and fail on null, and '' is falsy in Jinja
  // as null is, so templates that test it decide the same way.
  const contentOptional = role === 'assistant';
  const message: ChatMessage = { role, content: readContent(m.content, `${at}.content`, contentOptional) ?? '' };
  if (m.name !== undefined && m.name !== null) {
    if (typeof m.name !== 'string') throw invalidRequest(`${at}.name must be a string`, `${at}.name`, 'invalid_type');
    message.name = m.name;
  }
  if (role === 'tool' && m.tool_call_id !== undefined && m.tool_call_id !== null) {
    if (typeof m.tool_call_id !== 'string')
      throw invalidRequest(`${at}.tool_call_id must be a string`, `${at}.tool_call_id`, 'invalid_type');
    message.tool_call_id = m.tool_call_id;
  }
  if (toolCalls) message.tool_calls = toolCalls;
  if (role === 'assistant' && typeof m.reasoning_content === 'string') message.reasoning_content = m.reasoning_content;
  return message;
}

/** A string, or text parts joined by newlines (as vLLM joins them); this server reads text only. */
function readContent(value: unknown, at: string, optional: boolean): string | null {
  if (value === undefined || value === null) {
    if (optional) return null;
    throw invalidRequest(`${at} is required`, at, 'missing_required_parameter');
  }
  if (typeof value === 'string') return value;
  if (!Array.isArray(value)) throw invalidRequest(`${at} must be a string or an array of content parts`, at, 'invalid_type');
  const texts = value.map((part: unknown, index) => {
    const partAt = `${at}[${index}]`;
    if (part === null || typeof part !== 'object' || Array.isArray(part))
      throw invalidRequest(`${partAt} must be an object`, partAt, 'invalid_type');
    const { type, text } = part as { type?: unknown; text?: unknown };
    if (type === 'text') {
      if (typeof text !== 'string') throw invalidRequest(`${partAt}.text must be a string`, `${partAt}.text`, 'invalid_type');
      return text;
    }
    if (typeof type === 'string' && /^(image_url|input_image|input_audio|file)$/.test(type)) {
      throw invalidRequest(
        `${partAt}: this model reads text only; ${type} parts are not supported`,
        `${partAt}.type`,
        'unsupported_content',
      );
    }
    throw invalidRequest(`${partAt}.type must be "text", got ${JSON.stringify(type)}`, `${partAt}.type`, 'invalid_value');
  });
  return texts.join('\n');
}

/** Earlier tool calls in the history, passed on for templates that print them. */
function readToolCalls(value: unknown, at: string): ChatToolCall[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) throw invalidRequest(`${at} must be an array`, at, 'invalid_type');
  return value.map((call: unknown, index) => {
    const callAt = `${at}[${index}]`;
    const fn = (call as { function?: unknown } | null)?.function as { name?: unknown; arguments?: unknown } | undefined;
    if (fn === null || typeof fn !== 'object' || typeof fn.name !== 'string') {
      throw invalidRequest(`${callAt}.function.name must be a string`, `${callAt}.function`, 'invalid_type');
    }
    const args = fn.arguments ?? '{}';
    if (typeof args !== 'string' && (args === null || typeof args !== 'object' || Array.isArray(args))) {
      throw invalidRequest(
        `${callAt}.function.arguments must be a JSON string or an object`,
        `${callAt}.function.arguments`,
        'invalid_type',
      );
    }
    const { id, type } = call as { id?: unknown; type?: unknown };
    return {
      ...(typeof id === 'string' ? { id } : {}),
      type: typeof type === 'string' ? type : 'function',
      function: { name: fn.name, arguments: args as string | JsonObject },
    };
  });
}
