/**
 * A chat turn with tools: what the template is given, what grammar (if any) forces a call,
 * and how the output is read back into calls, whole or while it streams.
 *
 * Templates that render `tools` themselves get them as they are. For templates that do not
 * (SmolLM2's, Gemma's), the tools and the family's call syntax are described in a system
 * message, earlier calls are written into the assistant turns, and tool results become
 * `<tool_response>` user turns, so any template can hold the conversation.
 */
import type { ChatMessage, ChatTool, JsonValue } from '../chat-template/index.js';
import type { Grammar } from '../grammar/index.js';
import { detectToolCallFormat, type ParsedToolCall, type ToolCallFormat } from './tool-call-format.js';

/** OpenAI's `tool_choice`. */
export type ToolChoice = 'auto' | 'none' | 'required' | { type: 'function'; function: { name: string } };

export interface ToolChatPlan {
  messages: ChatMessage[];
  /** Tools for the template, when it renders them. */
  templateTools: ChatTool[] | undefined;
  /** How to read calls from the output; undefined when no call can come (`none`, no tools). */
  format: ToolCallFormat | undefined;
  /** Forces a call (`required`, a named function). */
  grammar: Grammar | undefined;
}

export interface ToolChatOptions {
  templateSource: string | undefined;
  messages: readonly ChatMessage[];
  tools: readonly ChatTool[] | undefined;
  toolChoice?: ToolChoice;
  /** A forced call (`required`, a named function) may be several calls only when this is
   * true: small models, once made to call, tend to repeat the call until the budget ends. */
  parallelToolCalls?: boolean;
}

export function planToolChat(o: ToolChatOptions): ToolChatPlan {
  const choice = o.toolChoice ?? 'auto';
  const tools = o.tools ?? [];
  if (tools.length === 0 || choice === 'none') {
    return { messages: [...o.messages], templateTools: undefined, format: undefined, grammar: undefined };
  }
  const format = detectToolCallFormat(o.templateSource);
  const offered = typeof choice === 'object' ? tools.filter((t) => t.function?.name === choice.function.name) : tools;
  const grammar: Grammar | undefined =
    choice === 'auto' ? undefined : { type: 'lark', value: format.grammar(offered, o.parallelToolCalls !== true) };
  const rendersTools = (o.templateSource ?? '').includes('tools');
  if (rendersTools) return { messages: [...o.messages], templateTools: [...tools], format, grammar };
  return { messages: describeTools(o.messages, tools, format), templateTools: undefined, format, grammar };
}

function describeTools(messages: readonly ChatMessage[], tools: readonly ChatTool[], format: ToolCallFormat): ChatMessage[] {
  const example = format.write([{ name: 'function_name', arguments: { argument: 'value' } }]);
  const guide =
    'You can call functions to help answer. The functions, as JSON schemas:\n<tools>\n' +
    tools.map((t) => JSON.stringify(t)).join('\n') +
    `\n</tools>\nTo call a function, reply with only:\n${example}\nThe results come back in <tool_response> tags.`;
  const out: ChatMessage[] = [];
  for (const m of messages) {
    if (m.role === 'assistant' && m.tool_calls?.length) {
      const calls = m.tool_calls.map((c) => ({ name: c.function.name, arguments: parseArguments(c.function.arguments) }));
      const text = typeof m.content === 'string' && m.content ? `${m.content}\n` : '';
      out.push({ role: 'assistant', content: text + format.write(calls) });
    } else if (m.role === 'tool') {
      out.push({ role: 'user', content: `<tool_response>\n${typeof m.content === 'string' ? m.content : ''}\n</tool_response>` });
    } else {
      out.push(m);
    }
  }
  const first = out[0];
  if (first?.role === 'system' && typeof first.content === 'string') {
    out[0] = { ...first, content: `${first.content}\n\n${guide}` };
  } else {
    out.unshift({ role: 'system', content: guide });
  }
  return out;
}

function parseArguments(args: string | JsonValue): JsonValue {
  if (typeof args !== 'string') return args;
  try {
    return JSON.parse(args) as JsonValue;
  } catch {
    return args;
  }
}

/**
 * Streams an output that may turn into tool calls: text is passed on until something that
 * may open a call appears, and held from there; `finish` reads the calls.
 */
export class ToolCallStream {
  #text = '';
  #shown = 0;

  constructor(readonly format: ToolCallFormat) {}

  /** The text that can be shown now. */
  push(text: string): string {
    this.#text += text;
    const hold = this.#holdFrom();
    if (hold <= this.#shown) return '';
    const visible = this.#text.slice(this.#shown, hold);
    this.#shown = hold;
    return visible;
  }

  /** The calls, and the text not yet shown (all of it when there are no calls). */
  finish(): { rest: string; calls: ParsedToolCall[] } {
    const { content, calls } = this.format.parse(this.#text);
    if (calls.length === 0) return { rest: this.#text.slice(this.#shown), calls };
    const shown = this.#text.slice(0, this.#shown);
    return { rest: content.startsWith(shown) ? content.slice(shown.length) : '', calls };
  }

  /** Where a call may begin: the opener, or a tail that could still grow into it. */
  #holdFrom(): number {
    const text = this.#text;
    const opener = this.format.opener;
    if (this.format.atStart) {
      const body = text.trimStart().replace(/^<\|python_tag\|>/, '');
      const lead = text.length - text.trimStart().length;
      return body === '' || body.startsWith(opener) || '<|python_tag|>'.startsWith(text.trimStart()) ? lead : text.length;
    }
    const at = text.indexOf(opener);
    if (at >= 0) return at;
    for (let n = Math.min(opener.length - 1, text.length); n > 0; n--) {
      if (text.endsWith(opener.slice(0, n))) return text.length - n;
    }
    return text.length;
  }
}
