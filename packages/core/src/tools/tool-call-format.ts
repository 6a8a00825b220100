/**
 * How model families write tool calls, and how we read them back: Hermes / Qwen
 * `<tool_call>{…}</tool_call>`, Mistral `[TOOL_CALLS][{…}]`, Llama 3.x bare JSON
 * `{"name": …, "parameters": …}` (after `<|python_tag|>` or alone), Gemma-style
 * ```` ```tool_code ```` blocks (a Python-style call or JSON). Each format also writes calls
 * (earlier assistant turns, for templates that cannot) and a Lark grammar that admits only
 * well-formed calls to the given tools (`tool_choice: required` or a named function).
 */
import type { ChatTool, JsonObject, JsonValue } from '../chat-template/index.js';

export type ToolCallFormatName = 'hermes' | 'mistral' | 'llama3' | 'gemma';

/** A call read from the model's output; `arguments` is JSON text, as OpenAI returns it. */
export interface ParsedToolCall {
  name: string;
  arguments: string;
}

export interface ToolCallFormat {
  readonly name: ToolCallFormatName;
  /** Text that opens a call; `atStart`: only recognised at the start of the output. */
  readonly opener: string;
  readonly atStart: boolean;
  /** The calls in a finished output and the text outside them; no calls when it does not call. */
  parse(text: string): { content: string; calls: ParsedToolCall[] };
  /** Calls as this family writes them. */
  write(calls: ReadonlyArray<{ name: string; arguments: JsonValue }>): string;
  /** A Lark grammar for one or more calls (one when `single`) to `tools`. */
  grammar(tools: readonly ChatTool[], single: boolean): string;
}

/** Finds the family's format from its chat template; Hermes for templates that name none. */
export function detectToolCallFormat(templateSource: string | undefined): ToolCallFormat {
  const src = templateSource ?? '';
  if (src.includes('[TOOL_CALLS]')) return MISTRAL;
  if (src.includes('<tool_call>')) return HERMES;
  if (src.includes('<|python_tag|>') || (src.includes('<|eot_id|>') && src.includes('"parameters"'))) return LLAMA3;
  if (src.includes('tool_code') || src.includes('<start_of_turn>')) return GEMMA;
  return HERMES;
}

/** The JSON schema of a call `{"name": …, <argsKey>: …}` to any of `tools`. */
function callSchema(tools: readonly ChatTool[], argsKey: string): JsonObject {
  const variants: JsonObject[] = tools.map((tool) => ({
    type: 'object',
    properties: {
      name: { const: tool.function?.name ?? '' },
      [argsKey]: tool.function?.parameters ?? { type: 'object' },
    },
    required: ['name', argsKey],
    additionalProperties: false,
  }));
  const schema: JsonObject = variants.length === 1 ? variants[0]! : { anyOf: variants };
  // Compact, as models write it; no free whitespace to wander into.
  return { ...schema, 'x-guidance': { whitespace_flexible: false, item_separator: ', ', key_separator: ': ' } };
}

const lark = (s: string) => JSON.stringify(s);

function repeated(call: string, separator: string, single: boolean): string {
  return single ? `start: ${call}` : `start: ${call} (${lark(separator)} ${call})*`;
}

/** `{"name": …, "arguments"|"parameters": …}` objects → calls; undefined if any is malformed. */
function callsFromJson(values: unknown[]): ParsedToolCall[] | undefined {
  const calls: ParsedToolCall[] = [];
  for (const value of values) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
    const v = value as { name?: unknown; arguments?: unknown; parameters?: unknown };
    if (typeof v.name !== 'string') return undefined;
    const args = v.arguments ?? v.parameters ?? {};
    calls.push({ name: v.name, arguments: typeof args === 'string' ? args : JSON.stringify(args) });
  }
  return calls;
}

function tryJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/**
 * Calls in delimited blocks (`blocks` captures the body, then the closing delimiter or the
 * end). A closed block that does not parse means the output is not a call; an unclosed last
 * block (the output ran out of tokens) is dropped when it does not parse.
 */
function parseBlocks(
  text: string,
  blocks: RegExp,
  read: (body: string) => ParsedToolCall[] | undefined,
): { content: string; calls: ParsedToolCall[] } {
  const calls: ParsedToolCall[] = [];
  for (const m of text.matchAll(blocks)) {
    const parsed = read(m[1]!.trim());
    if (parsed) calls.push(...parsed);
    else if (m[2]) return { content: text, calls: [] };
  }
  return { content: calls.length ? text.replace(blocks, '').trim() : text, calls };
}

const HERMES: ToolCallFormat = {
  name: 'hermes',
  opener: '<tool_call>',
  atStart: false,
  parse: (text) => parseBlocks(text, /<tool_call>\s*([\s\S]*?)\s*(<\/tool_call>|$)/g, (body) => callsFromJson([tryJson(body)])),
  write: (calls) => calls.map((c) => `<tool_call>\n${JSON.stringify({ name: c.name, arguments: c.arguments })}\n</tool_call>`).join('\n'),
  grammar: (tools, single) =>
    `${repeated('call', '\n', single)}\ncall: "<tool_call>\\n" %json ${JSON.stringify(callSchema(tools, 'arguments'))} "\\n</tool_call>"`,
};

const MISTRAL: ToolCallFormat = {
  name: 'mistral',
  opener: '[TOOL_CALLS]',
  atStart: false,
  parse(text) {
    const at = text.indexOf('[TOOL_CALLS]');
    if (at < 0) return { content: text, calls: [] };
    const body = text.slice(at + '[TOOL_CALLS]'.length).trim();
    const value = tryJson(body);
    // Newer templates write `[TOOL_CALLS]name[ARGS]{…}`.
    const named = /^([\w.-]+)\[ARGS\]([\s\S]*)$/.exec(body);
    const calls = Array.isArray(value)
      ? callsFromJson(value)
      : named
        ? callsFromJson([{ name: named[1], arguments: tryJson(named[2]!) ?? named[2] }])
        : callsFromJson([value]);
    return calls ? { content: text.slice(0, at).trim(), calls } : { content: text, calls: [] };
  },
  write: (calls) => `[TOOL_CALLS]${JSON.stringify(calls.map((c) => ({ name: c.name, arguments: c.arguments })))}`,
  grammar: (tools, single) => {
    const call = `%json ${JSON.stringify(callSchema(tools, 'arguments'))}`;
    return single ? `start: "[TOOL_CALLS][" ${call} "]"` : `start: "[TOOL_CALLS][" ${call} (", " ${call})* "]"`;
  },
};

const LLAMA3: ToolCallFormat = {
  name: 'llama3',
  opener: '{',
  atStart: true,
  parse(text) {
    const body = text.replace(/^\s*(<\|python_tag\|>)?/, '').trim();
    if (!body.startsWith('{')) return { content: text, calls: [] };
    // One object, or several separated by ";" (as Llama 3.2's template describes).
    const calls = callsFromJson(body.split(/\s*;\s*(?=\{)/).map(tryJson));
    return calls ? { content: '', calls } : { content: text, calls: [] };
  },
  write: (calls) => calls.map((c) => JSON.stringify({ name: c.name, parameters: c.arguments })).join('; '),
  grammar: (tools, single) => repeated(`%json ${JSON.stringify(callSchema(tools, 'parameters'))}`, '; ', single),
};

const GEMMA: ToolCallFormat = {
  name: 'gemma',
  opener: '```tool_code',
  atStart: false,
  parse: (text) =>
    parseBlocks(text, /```tool_code\s*([\s\S]*?)\s*(```|$)/g, (body) =>
      body.startsWith('{') ? callsFromJson([tryJson(body)]) : pythonCall(body),
    ),
  write: (calls) => calls.map((c) => `\`\`\`tool_code\n${JSON.stringify({ name: c.name, arguments: c.arguments })}\n\`\`\``).join('\n'),
  grammar: (tools, single) =>
    `${repeated('call', '\n', single)}\ncall: "\`\`\`tool_code\\n" %json ${JSON.stringify(callSchema(tools, 'arguments'))} "\\n\`\`\`"`,
};

/** `name(a=1, b="x", c=[1, 2], d=True)` → one call; undefined when it is not that shape. */
function pythonCall(text: string): ParsedToolCall[] | undefined {
  const m = /^([A-Za-z_][\w.]*)\(([\s\S]*)\)$/.exec(text.trim());
  if (!m) return undefined;
  const args: Record<string, JsonValue> = {};
  let rest = m[2]!.trim();
  while (rest.length > 0) {
    const key = /^([A-Za-z_]\w*)\s*=\s*/.exec(rest);
    if (!key) return undefined;
    rest = rest.slice(key[0].length);
    const value = pythonLiteral(rest);
    if (!value) return undefined;
    args[key[1]!] = value.value;
    rest = rest.slice(value.length).replace(/^\s*,?\s*/, '');
  }
  return [{ name: m[1]!, arguments: JSON.stringify(args) }];
}

/** The Python literal at the start of `text` (strings, numbers, booleans, None, lists, dicts). */
function pythonLiteral(text: string): { value: JsonValue; length: number } | undefined {
  const str = /^("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')/.exec(text);
  if (str) {
    const raw = str[1]!;
    // A single-quoted string becomes a double-quoted one: \' unescaped, " escaped.
    const json = raw.startsWith('"') ? raw : `"${raw.slice(1, -1).replace(/\\'/g, "'").replace(/"/g, '\\"')}"`;
    const value = tryJson(json);
    return typeof value === 'string' ? { value, length: raw.length } : undefined;
  }
  const word = /^(True|False|None|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(text);
  if (word) {
    const w = word[1]!;
    const value = w === 'True' ? true : w === 'False' ? false : w === 'None' ? null : Number(w);
    return { value, length: w.length };
  }
  if (text.startsWith('[') || text.startsWith('{')) {
    // A JSON-compatible container: the shortest prefix that parses, tried only where a
    // bracket closes.
    const json = text
      .replace(/\bTrue\b/g, 'true')
      .replace(/\bFalse\b/g, 'false')
      .replace(/\bNone\b/g, 'null');
    for (let end = 1; end < json.length; end++) {
      if (json[end] !== ']' && json[end] !== '}') continue;
      const value = tryJson(json.slice(0, end + 1));
      if (value !== undefined) return { value: value as JsonValue, length: end + 1 };
    }
  }
  return undefined;
}
