/**
 * The extra template variables a request may set (vLLM's and mistral.rs's
 * `chat_template_kwargs`, mistral.rs's `enable_thinking` and `reasoning_effort`): an allow-list
 * of names that real chat templates read, each with the values it takes. A request never
 * supplies a template, and never sets a variable outside this list: templates see `messages`,
 * `tools` and these, nothing else a client chose.
 */
import type { JsonValue } from './chat-message.js';

export interface TemplateArgumentRule {
  type: 'boolean' | 'string' | 'integer';
  /** The strings allowed, when the set is closed. */
  values?: readonly string[];
  /** Values that ask for nothing (a template that does not read the variable may get them). */
  neutral: readonly JsonValue[];
  /** Which templates read it. */
  readBy: string;
}

/** Longest string value accepted. */
export const MAX_TEMPLATE_ARGUMENT_CHARS = 256;

export const TEMPLATE_ARGUMENTS: Readonly<Record<string, TemplateArgumentRule>> = {
  enable_thinking: {
    type: 'boolean',
    neutral: [false],
    readBy: 'Qwen 3, SmolLM3, GLM-4.5, Hunyuan (think before answering)',
  },
  thinking: { type: 'boolean', neutral: [false], readBy: 'DeepSeek V3.1, Granite 3.2 and 3.3' },
  reasoning_effort: {
    type: 'string',
    // gpt-oss reads low/medium/high; mistral.rs adds off (alias none) and xhigh.
    values: ['none', 'off', 'minimal', 'low', 'medium', 'high', 'xhigh'],
    neutral: ['none', 'off'],
    readBy: 'gpt-oss',
  },
  thinking_budget: { type: 'integer', neutral: [], readBy: 'Seed-OSS' },
  model_identity: { type: 'string', neutral: [], readBy: "gpt-oss (the system message's first line)" },
  date_string: { type: 'string', neutral: [], readBy: 'Llama 3.1 to 3.3 ("Today Date")' },
  tools_in_user_message: { type: 'boolean', neutral: [], readBy: 'Llama 3.1 to 3.3 (tools in the first user turn)' },
};

/** Why `value` cannot be given to the template variable `name`, or undefined when it can. */
export function templateArgumentProblem(name: string, value: unknown): string | undefined {
  const rule = Object.hasOwn(TEMPLATE_ARGUMENTS, name) ? TEMPLATE_ARGUMENTS[name] : undefined;
  if (!rule) {
    return `${JSON.stringify(name)} is not a template variable this server passes (it passes ${Object.keys(TEMPLATE_ARGUMENTS).join(', ')})`;
  }
  switch (rule.type) {
    case 'boolean':
      return typeof value === 'boolean' ? undefined : `${name} must be true or false`;
    case 'integer':
      return Number.isSafeInteger(value) && (value as number) >= 0 ? undefined : `${name} must be a non-negative integer`;
    case 'string':
      if (typeof value !== 'string') return `${name} must be a string`;
      if (value.length > MAX_TEMPLATE_ARGUMENT_CHARS)
        return `${name} has ${value.length} characters; at most ${MAX_TEMPLATE_ARGUMENT_CHARS} are allowed`;
      if (rule.values && !rule.values.includes(value))
        return `${name} must be one of ${rule.values.join(', ')}; got ${JSON.stringify(value)}`;
      return undefined;
  }
}

/** Whether `value` asks nothing of a template that does not read `name` (false, `none`, ...). */
export function isNeutralTemplateArgument(name: string, value: JsonValue): boolean {
  return value === null || (TEMPLATE_ARGUMENTS[name]?.neutral.includes(value) ?? false);
}

/** Whether the template text uses the variable `name` (as a whole identifier). */
export function templateReadsVariable(templateText: string, name: string): boolean {
  return new RegExp(`(?<![\\w.])${name}(?!\\w)`).test(templateText);
}
