/**
 * Anthropic's client tools and `tool_choice`, as the OpenAI-shaped tools and tool choice that
 * core's tool plan reads (`planChatPrompt`): `input_schema` is the function's parameters.
 */
import type { ChatTool, JsonObject, ToolChoice } from '@mistralrs/core';

import { checkBlockFields, fail, isObject } from './fields.js';

/** Client tools, as the OpenAI-shaped tools core's tool plan reads. */
export function readTools(value: unknown, maxTools: number): ChatTool[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) throw fail('tools', 'Input should be a valid list', 'invalid_type');
  if (value.length > maxTools)
    throw fail('tools', `has ${value.length} entries; at most ${maxTools} are allowed`, 'array_above_max_length');
  const names = new Set<string>();
  const tools = value.map((tool: unknown, i): ChatTool => {
    const at = `tools.${i}`;
    if (!isObject(tool)) throw fail(at, 'Input should be a tool object', 'invalid_type');
    if (tool.type !== undefined && tool.type !== null && tool.type !== 'custom') {
      throw fail(
        `${at}.type`,
        `${JSON.stringify(tool.type)}: server tools are not supported by this server; define a client tool`,
        'unsupported_parameter',
      );
    }
    checkBlockFields(tool, at, ['name', 'input_schema'], ['description', 'strict', 'eager_input_streaming']);
    const { name, description, input_schema: schema } = tool;
    if (typeof name !== 'string' || !/^[A-Za-z0-9_-]{1,128}$/.test(name)) {
      throw fail(`${at}.name`, 'must be 1 to 128 letters, digits, "_" or "-"', 'invalid_value');
    }
    if (names.has(name)) throw fail(`${at}.name`, `${JSON.stringify(name)} is given twice`, 'invalid_value');
    names.add(name);
    if (description !== undefined && typeof description !== 'string')
      throw fail(`${at}.description`, 'Input should be a valid string', 'invalid_type');
    if (!isObject(schema) || schema.type !== 'object') {
      throw fail(`${at}.input_schema`, `Input should be a JSON Schema object with "type": "object"`, 'invalid_type');
    }
    if (tool.strict === true) {
      throw fail(
        `${at}.strict`,
        'strict tools are not supported by this server (tool_choice "any" or "tool" forces a well-formed call)',
        'unsupported_parameter',
      );
    }
    return {
      type: 'function',
      function: { name, ...(description !== undefined ? { description } : {}), parameters: schema as JsonObject },
    };
  });
  return tools.length > 0 ? tools : undefined;
}

/**
 * Anthropic's `tool_choice` as the chat route's: `auto`, `any` (→ `required`), `tool` (→ the
 * named function), `none`. A forced call is one call unless `disable_parallel_tool_use` is
 * given as false, as the chat route forces one unless `parallel_tool_calls` is true: small
 * models, once made to call, repeat the call until the budget ends.
 */
export function readToolChoice(
  value: unknown,
  tools: ChatTool[] | undefined,
): { toolChoice: ToolChoice | undefined; parallelToolCalls: boolean } {
  if (value === undefined || value === null) return { toolChoice: undefined, parallelToolCalls: false };
  if (!isObject(value)) throw fail('tool_choice', 'Input should be an object', 'invalid_type');
  const allowed =
    value.type === 'tool'
      ? ['type', 'name', 'disable_parallel_tool_use']
      : value.type === 'none'
        ? ['type']
        : ['type', 'disable_parallel_tool_use'];
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) throw fail(`tool_choice.${key}`, 'Extra inputs are not permitted', 'unsupported_parameter');
  }
  const disable = value.disable_parallel_tool_use;
  if (disable !== undefined && typeof disable !== 'boolean') {
    throw fail('tool_choice.disable_parallel_tool_use', 'Input should be a valid boolean', 'invalid_type');
  }
  const parallelToolCalls = disable === false;
  switch (value.type) {
    case 'auto':
      return { toolChoice: 'auto', parallelToolCalls };
    case 'none':
      return { toolChoice: 'none', parallelToolCalls };
    case 'any':
      if (!tools) throw fail('tool_choice', `"any" requires tools`, 'missing_required_parameter');
      return { toolChoice: 'required', parallelToolCalls };
    case 'tool': {
      if (typeof value.name !== 'string') throw fail('tool_choice.name', 'Field required', 'missing_required_parameter');
      const name = value.name;
      if (!tools?.some((t) => t.function?.name === name)) {
        throw fail('tool_choice.name', `${JSON.stringify(name)} is not among the tools`, 'invalid_value');
      }
      return { toolChoice: { type: 'function', function: { name } }, parallelToolCalls };
    }
    default:
      throw fail('tool_choice.type', `Input should be 'auto', 'any', 'tool' or 'none', got ${JSON.stringify(value.type)}`, 'invalid_value');
  }
}
