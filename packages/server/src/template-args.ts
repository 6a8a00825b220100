/**
 * The template variables a chat request sets: `chat_template_kwargs` (vLLM's and mistral.rs's
 * object) and mistral.rs's `enable_thinking` and `reasoning_effort` fields. Names outside core's
 * allow-list (`TEMPLATE_ARGUMENTS`) are refused, never passed on: a request cannot feed the
 * template arbitrary variables, and never a template of its own.
 */
import { TEMPLATE_ARGUMENTS, templateArgumentProblem, type JsonValue } from '@mistralrs/core';

import { invalidRequest, type ApiErrorCode } from './errors.js';
import type { RequestBody } from './validate.js';

export interface RequestedTemplateArgs {
  /** Variable name → value. */
  values: Record<string, JsonValue>;
  /** Variable name → the request field that set it (named in errors). */
  params: Record<string, string>;
}

/** The variables, checked against the allow-list and each name's type; a field and a kwarg
 * that set one variable differently are refused. */
export function readTemplateArgs(body: RequestBody): RequestedTemplateArgs {
  const templateArgs: Record<string, JsonValue> = Object.create(null) as Record<string, JsonValue>;
  const templateArgParams: Record<string, string> = Object.create(null) as Record<string, string>;
  const set = (name: string, value: unknown, param: string, unknownCode: ApiErrorCode) => {
    if (value === undefined || value === null) return;
    const problem = templateArgumentProblem(name, value);
    if (problem) throw invalidRequest(problem, param, Object.hasOwn(TEMPLATE_ARGUMENTS, name) ? 'invalid_value' : unknownCode);
    if (name in templateArgs && templateArgs[name] !== value) {
      throw invalidRequest(`${templateArgParams[name]} and ${param} disagree; send one of them`, param, 'conflicting_parameters');
    }
    templateArgs[name] = value as JsonValue;
    templateArgParams[name] ??= param;
  };
  const kwargs = body.chat_template_kwargs;
  if (kwargs !== undefined && kwargs !== null && (typeof kwargs !== 'object' || Array.isArray(kwargs))) {
    throw invalidRequest('chat_template_kwargs must be an object', 'chat_template_kwargs', 'invalid_type');
  }
  const entries = Object.entries(kwargs ?? {});
  if (entries.length > MAX_TEMPLATE_KWARGS) {
    throw invalidRequest(
      `chat_template_kwargs has ${entries.length} entries; at most ${MAX_TEMPLATE_KWARGS} are allowed`,
      'chat_template_kwargs',
      'array_above_max_length',
    );
  }
  for (const [name, value] of entries) set(name, value, `chat_template_kwargs.${name}`, 'unsupported_parameter');
  set('enable_thinking', body.enable_thinking, 'enable_thinking', 'invalid_value');
  set('reasoning_effort', body.reasoning_effort, 'reasoning_effort', 'invalid_value');
  return { values: templateArgs, params: templateArgParams };
}

/** More kwargs than the allow-list has names cannot all be valid. */
const MAX_TEMPLATE_KWARGS = Object.keys(TEMPLATE_ARGUMENTS).length;
