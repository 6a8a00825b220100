/**
 * Constrained output and tools in a request: `response_format` (`text`, `json_object`,
 * `json_schema`), the seed's `grammar` extension (`regex`, `lark`, `json_schema`,
 * `llguidance`), and `tools` / `tool_choice` / `parallel_tool_calls`. Shapes are checked
 * here (a 400 naming the field); the grammar itself is compiled by the engine before the
 * request queues, and its errors name the field too.
 */
import { isGrammarTooComplex, type ChatTool, type CompiledGrammar, type Grammar, type JsonObject, type ToolChoice } from '@mistralrs/core';

import { invalidRequest, type ApiError } from './errors.js';
import type { ServingEngine } from './serving-engine.js';
import type { RequestBody } from './validate.js';

/** A grammar and the request field it came from (named in errors). */
export interface RequestedGrammar {
  grammar: Grammar;
  param: 'response_format' | 'grammar' | 'tool_choice' | 'text.format';
}

export interface RequestedTools {
  tools: ChatTool[];
  toolChoice: ToolChoice;
  /** Only an explicit `true` lets a forced call be several (see `planToolChat`). */
  parallelToolCalls: boolean;
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** `response_format` or `grammar` (not both); undefined for plain text. */
export function readGrammar(body: RequestBody): RequestedGrammar | undefined {
  const format = readResponseFormat(body.response_format);
  const grammar = readGrammarField(body.grammar);
  if (format && grammar) {
    throw invalidRequest('response_format and grammar both constrain the output; send one of them', 'grammar', 'conflicting_parameters');
  }
  if (format) return { grammar: format, param: 'response_format' };
  if (grammar) return { grammar, param: 'grammar' };
  return undefined;
}

function readResponseFormat(value: unknown): Grammar | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) throw invalidRequest('response_format must be an object', 'response_format', 'invalid_type');
  switch (value.type) {
    case 'text':
      return undefined;
    case 'json_object':
      return { type: 'json_object' };
    case 'json_schema': {
      const spec = value.json_schema;
      if (!isObject(spec)) {
        throw invalidRequest(
          'response_format.json_schema must be an object with name and schema',
          'response_format.json_schema',
          'invalid_type',
        );
      }
      if (spec.name !== undefined && typeof spec.name !== 'string') {
        throw invalidRequest('response_format.json_schema.name must be a string', 'response_format.json_schema.name', 'invalid_type');
      }
      // OpenAI allows a missing schema (any JSON object).
      const schema = spec.schema ?? { type: 'object' };
      if (!isObject(schema) && typeof schema !== 'boolean') {
        throw invalidRequest(
          'response_format.json_schema.schema must be a JSON Schema object',
          'response_format.json_schema.schema',
          'invalid_type',
        );
      }
      return { type: 'json_schema', value: schema };
    }
    default:
      throw invalidRequest(
        `response_format.type must be "text", "json_object" or "json_schema", got ${JSON.stringify(value.type)}`,
        'response_format.type',
        'invalid_value',
      );
  }
}

function readGrammarField(value: unknown): Grammar | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) throw invalidRequest('grammar must be an object {"type": …, "value": …}', 'grammar', 'invalid_type');
  const v = value.value;
  switch (value.type) {
    case 'json_schema':
      if (!isObject(v) && typeof v !== 'boolean' && typeof v !== 'string') {
        throw invalidRequest('grammar.value must be a JSON Schema (an object, or its JSON text)', 'grammar.value', 'invalid_type');
      }
      return { type: 'json_schema', value: v as JsonObject | boolean | string };
    case 'regex':
    case 'lark':
      if (typeof v !== 'string' || v.length === 0)
        throw invalidRequest(`grammar.value must be a non-empty ${value.type} string`, 'grammar.value', 'invalid_type');
      return { type: value.type, value: v };
    case 'llguidance':
      if (typeof v !== 'string' && !isObject(v))
        throw invalidRequest('grammar.value must be a string or an object', 'grammar.value', 'invalid_type');
      return { type: 'llguidance', value: v as string | JsonObject };
    default:
      throw invalidRequest(
        `grammar.type must be "regex", "lark", "json_schema" or "llguidance", got ${JSON.stringify(value.type)}`,
        'grammar.type',
        'invalid_value',
      );
  }
}

/** `tools`, `tool_choice`, `parallel_tool_calls`; undefined when no tools are offered. */
export function readTools(body: RequestBody, maxTools: number): RequestedTools | undefined {
  const value = body.tools;
  const choiceValue = body.tool_choice;
  if (value === undefined || value === null || (Array.isArray(value) && value.length === 0)) {
    if (choiceValue !== undefined && choiceValue !== null && choiceValue !== 'none' && choiceValue !== 'auto') {
      throw invalidRequest('tool_choice requires tools', 'tool_choice', 'missing_required_parameter');
    }
    return undefined;
  }
  if (!Array.isArray(value)) throw invalidRequest('tools must be an array of tool objects', 'tools', 'invalid_type');
  if (value.length > maxTools)
    throw invalidRequest(`tools has ${value.length} entries; at most ${maxTools} are allowed`, 'tools', 'array_above_max_length');
  const names = new Set<string>();
  const tools = value.map((tool: unknown, i): ChatTool => {
    const at = `tools[${i}]`;
    if (!isObject(tool) || tool.type !== 'function') throw invalidRequest(`${at}.type must be "function"`, `${at}.type`, 'invalid_value');
    const fn = tool.function;
    if (!isObject(fn) || typeof fn.name !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(fn.name)) {
      throw invalidRequest(`${at}.function.name must be 1 to 64 letters, digits, "_", "." or "-"`, `${at}.function.name`, 'invalid_value');
    }
    if (names.has(fn.name))
      throw invalidRequest(`${at}.function.name ${JSON.stringify(fn.name)} is given twice`, `${at}.function.name`, 'invalid_value');
    names.add(fn.name);
    if (fn.description !== undefined && typeof fn.description !== 'string') {
      throw invalidRequest(`${at}.function.description must be a string`, `${at}.function.description`, 'invalid_type');
    }
    if (fn.parameters !== undefined && !isObject(fn.parameters)) {
      throw invalidRequest(`${at}.function.parameters must be a JSON Schema object`, `${at}.function.parameters`, 'invalid_type');
    }
    const { name, description, parameters } = fn as { name: string; description?: string; parameters?: JsonObject };
    return {
      type: 'function',
      function: {
        name,
        ...(description !== undefined ? { description } : {}),
        parameters: parameters ?? { type: 'object', properties: {} },
      },
    };
  });
  const parallel = body.parallel_tool_calls;
  if (parallel !== undefined && parallel !== null && typeof parallel !== 'boolean') {
    throw invalidRequest('parallel_tool_calls must be true or false', 'parallel_tool_calls', 'invalid_type');
  }
  return { tools, toolChoice: readToolChoice(choiceValue, names), parallelToolCalls: parallel === true };
}

function readToolChoice(value: unknown, names: ReadonlySet<string>): ToolChoice {
  if (value === undefined || value === null) return 'auto';
  if (value === 'auto' || value === 'none' || value === 'required') return value;
  const name = isObject(value) && value.type === 'function' && isObject(value.function) ? value.function.name : undefined;
  if (typeof name !== 'string') {
    throw invalidRequest(
      'tool_choice must be "auto", "none", "required" or {"type": "function", "function": {"name": …}}',
      'tool_choice',
      'invalid_value',
    );
  }
  if (!names.has(name))
    throw invalidRequest(`tool_choice names ${JSON.stringify(name)}, which is not among the tools`, 'tool_choice', 'invalid_value');
  return { type: 'function', function: { name } };
}

/** The request field each compiled grammar came from, for errors raised while it runs. */
const grammarParams = new WeakMap<CompiledGrammar, RequestedGrammar['param']>();

/**
 * The compiled grammar, or a 400 naming the field: `invalid_grammar` for one that does not
 * compile, `grammar_too_complex` for one past the compile budget (docs/server.md).
 */
/**
 * The grammar a chat turn runs under: a forced tool call's (`toolGrammar`), or the one the
 * request asked for; both at once is a 400, since each would hold the output to another shape.
 */
export async function chatTurnGrammar(
  engine: ServingEngine,
  toolGrammar: Grammar | undefined,
  requested: RequestedGrammar | undefined,
): Promise<CompiledGrammar | undefined> {
  if (toolGrammar && requested) {
    throw invalidRequest(
      `tool_choice forces a tool call; it cannot be combined with ${requested.param}`,
      'tool_choice',
      'conflicting_parameters',
    );
  }
  const chosen: RequestedGrammar | undefined = toolGrammar ? { grammar: toolGrammar, param: 'tool_choice' } : requested;
  return chosen && (await compileRequestGrammar(engine, chosen));
}

export async function compileRequestGrammar(engine: ServingEngine, requested: RequestedGrammar): Promise<CompiledGrammar> {
  try {
    const compiled = await engine.compileGrammar(requested.grammar);
    grammarParams.set(compiled, requested.param);
    return compiled;
  } catch (error) {
    if (isArgumentError(error)) {
      throw invalidRequest(error.message, requested.param, isGrammarTooComplex(error) ? 'grammar_too_complex' : 'invalid_grammar');
    }
    throw error;
  }
}

/**
 * A generation that failed inside its grammar (a dead end, or a step past llguidance's
 * per-step budget) as a 400 naming the grammar's field; undefined for any other failure.
 */
export function grammarFailure(error: unknown, grammar: Grammar | CompiledGrammar | undefined): ApiError | undefined {
  const param = grammar && !('type' in grammar) ? grammarParams.get(grammar) : undefined;
  if (!param || !isArgumentError(error) || !/constrained generation failed|grammar/i.test(error.message)) return undefined;
  return invalidRequest(error.message, param, isGrammarTooComplex(error) ? 'grammar_too_complex' : 'invalid_grammar');
}

function isArgumentError(error: unknown): error is { message: string } {
  const { name, code, message } = (error ?? {}) as { name?: unknown; code?: unknown; message?: unknown };
  return (name === 'MistralrsError' || name === 'EngineError') && code === 'InvalidArgumentError' && typeof message === 'string';
}
