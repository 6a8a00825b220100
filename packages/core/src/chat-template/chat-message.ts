/**
 * The data a chat template sees, in the shapes transformers passes to `apply_chat_template`
 * (which are the OpenAI chat-completions shapes). Templates read whatever fields they like,
 * so every object also carries unknown fields through unchanged.
 */

export type JsonValue = string | number | boolean | null | JsonValue[] | JsonObject;
export interface JsonObject {
  [key: string]: JsonValue;
}

/** One part of a multi-part message: `{type: 'text', text}`, `{type: 'image'}`, `{type: 'image_url', ...}`. */
export interface ChatContentPart {
  type: string;
  text?: string;
  [key: string]: JsonValue | undefined;
}

/** A call the assistant made. `arguments` may be a JSON string (OpenAI) or an object (transformers). */
export interface ChatToolCall {
  id?: string;
  type?: string;
  function: {
    name: string;
    arguments: string | JsonObject;
    [key: string]: JsonValue | undefined;
  };
  [key: string]: JsonValue | ChatToolCall['function'] | undefined;
}

export type ChatRole = 'system' | 'user' | 'assistant' | 'tool' | (string & {});

export interface ChatMessage {
  role: ChatRole;
  /** `null` on an assistant turn that only calls tools, as OpenAI clients send it. */
  content?: string | ChatContentPart[] | null;
  /** Tool result messages: the function's name (some templates print it). */
  name?: string;
  /** Tool result messages: the id of the call answered. */
  tool_call_id?: string;
  tool_calls?: ChatToolCall[];
  /** Thinking of an earlier assistant turn (Qwen 3, DeepSeek R1 templates read it). */
  reasoning_content?: string;
  [key: string]: JsonValue | ChatContentPart[] | ChatToolCall[] | undefined;
}

/** An OpenAI-style tool: `{type: 'function', function: {name, description, parameters}}`. */
export interface ChatTool {
  type: string;
  function?: {
    name: string;
    description?: string;
    /** A JSON schema. */
    parameters?: JsonObject;
    [key: string]: JsonValue | undefined;
  };
  [key: string]: JsonValue | ChatTool['function'] | undefined;
}

/**
 * The messages as templates expect them. The only change: tool-call `arguments` given as a
 * JSON string become the object it encodes, because HF templates write
 * `tool_call.arguments | tojson` and would otherwise print a quoted string. A string that is
 * not a JSON object stays as it is (Qwen's template, for one, prints strings verbatim).
 * The input is not modified.
 */
export function normalizeMessages(messages: readonly ChatMessage[]): ChatMessage[] {
  return messages.map((message) => {
    if (!Array.isArray(message.tool_calls)) return message;
    const toolCalls = message.tool_calls.map((call) => {
      const args = call.function?.arguments;
      const parsed = typeof args === 'string' ? parseJsonObject(args) : undefined;
      return parsed === undefined ? call : { ...call, function: { ...call.function, arguments: parsed } };
    });
    return { ...message, tool_calls: toolCalls };
  });
}

function parseJsonObject(text: string): JsonObject | undefined {
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as JsonObject) : undefined;
  } catch {
    return undefined;
  }
}
