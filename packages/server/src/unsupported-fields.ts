/**
 * Request fields that other servers read (OpenAI, mistral.rs, llama.cpp, vLLM) and this one does
 * not implement. Unknown fields are ignored, as OpenAI ignores them; these are known, and
 * ignoring one would answer a different question than the client asked, so each is a 400
 * `unsupported_parameter` naming the field, unless its value asks for nothing (absent, null,
 * false, empty, or the field's own "off" value).
 */
import { invalidRequest } from './errors.js';
import type { RequestBody } from './validate.js';

interface UnsupportedField {
  /** Whose field it is, for the message. */
  from: string;
  /** Values that ask for nothing, beyond absent and null. */
  neutral: (value: unknown) => boolean;
}

const empty = (value: unknown) =>
  value === false ||
  value === '' ||
  (Array.isArray(value) && value.length === 0) ||
  (typeof value === 'object' && value !== null && !Array.isArray(value) && Object.keys(value).length === 0);
const equals =
  (...values: unknown[]) =>
  (value: unknown) =>
    values.includes(value);
const never = () => false;

/** Fields of both chat and text completions. */
const COMMON: Readonly<Record<string, UnsupportedField>> = {
  // llama.cpp's samplers beyond those implemented (each value listed is the sampler off).
  // mirostat_tau and mirostat_eta change nothing unless mirostat is on, so they pass.
  mirostat: { from: 'llama.cpp', neutral: equals(0) },
  typical_p: { from: 'llama.cpp', neutral: equals(1) },
  tfs_z: { from: 'llama.cpp', neutral: equals(1) },
  xtc_probability: { from: 'llama.cpp', neutral: equals(0) },
  dynatemp_range: { from: 'llama.cpp', neutral: equals(0) },
  top_n_sigma: { from: 'llama.cpp', neutral: (v) => typeof v === 'number' && v <= 0 },
  // mistral.rs: LoRA adapters (`adapters` before 0.6, `adapter` since), and truncation of a
  // prompt that does not fit (this server refuses it instead).
  adapters: { from: 'mistral.rs', neutral: empty },
  adapter: { from: 'mistral.rs', neutral: empty },
  truncate_sequence: { from: 'mistral.rs', neutral: empty },
  // vLLM's own sampling and structured-output fields.
  min_tokens: { from: 'vLLM', neutral: equals(0) },
  use_beam_search: { from: 'vLLM', neutral: empty },
  guided_json: { from: 'vLLM (use response_format)', neutral: never },
  guided_regex: { from: 'vLLM (use grammar)', neutral: never },
  guided_choice: { from: 'vLLM (use grammar)', neutral: never },
  guided_grammar: { from: 'vLLM (use grammar)', neutral: never },
  // OpenAI: nothing is stored, and predicted outputs are not used.
  store: { from: 'OpenAI (nothing is stored here)', neutral: empty },
  prediction: { from: 'OpenAI', neutral: never },
};

/** Fields of chat completions only. */
const CHAT: Readonly<Record<string, UnsupportedField>> = {
  ...COMMON,
  // Web search (OpenAI and mistral.rs): `{}` asks for a search with the defaults.
  web_search_options: { from: 'OpenAI and mistral.rs', neutral: never },
  audio: { from: 'OpenAI', neutral: never },
  modalities: { from: 'OpenAI', neutral: (v) => empty(v) || (Array.isArray(v) && v.length === 1 && v[0] === 'text') },
  functions: { from: 'OpenAI (deprecated; use tools)', neutral: empty },
  function_call: { from: 'OpenAI (deprecated; use tool_choice)', neutral: equals('none') },
  service_tier: { from: 'OpenAI', neutral: equals('auto', 'default') },
  verbosity: { from: 'OpenAI', neutral: equals('medium') },
  // mistral.rs's agents: tools the server runs itself, and their state.
  agent_permission: { from: 'mistral.rs', neutral: never },
  code_execution_permission: { from: 'mistral.rs', neutral: never },
  enable_shell: { from: 'mistral.rs', neutral: empty },
  session_id: { from: 'mistral.rs', neutral: empty },
  files: { from: 'mistral.rs', neutral: empty },
  max_tool_rounds: { from: 'mistral.rs', neutral: never },
  // A template from a request would run code of the client's choosing in the renderer;
  // templates come from the model or the command line only.
  chat_template: { from: 'vLLM (templates come from the model or --chat-template)', neutral: never },
  add_generation_prompt: { from: 'vLLM', neutral: equals(true) },
  continue_final_message: { from: 'vLLM', neutral: empty },
};

/** Text completions: also tools, which only chat completions call. */
const COMPLETION: Readonly<Record<string, UnsupportedField>> = {
  ...COMMON,
  tools: { from: 'mistral.rs (tools are for /v1/chat/completions)', neutral: empty },
  tool_choice: { from: 'mistral.rs (tools are for /v1/chat/completions)', neutral: equals('none', 'auto') },
};

/** The names refused, for the docs and tests. */
export const UNSUPPORTED_CHAT_FIELDS: readonly string[] = Object.keys(CHAT);
export const UNSUPPORTED_COMPLETION_FIELDS: readonly string[] = Object.keys(COMPLETION);

export function rejectUnsupportedChatFields(body: RequestBody): void {
  reject(body, CHAT);
}

export function rejectUnsupportedCompletionFields(body: RequestBody): void {
  reject(body, COMPLETION);
}

function reject(body: RequestBody, fields: Readonly<Record<string, UnsupportedField>>): void {
  for (const [field, rule] of Object.entries(fields)) {
    const value = body[field];
    if (value === undefined || value === null || rule.neutral(value)) continue;
    throw invalidRequest(`${field} (${rule.from}) is not supported by this server`, field, 'unsupported_parameter');
  }
}
