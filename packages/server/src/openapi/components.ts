/**
 * The document's shared schemas: request bodies as the validators read them (validate.ts,
 * unsupported-fields.ts, responses/request.ts, anthropic/request.ts), the bodies answered, and
 * the two error shapes. Fields a validator refuses (`unsupported_parameter`) are not listed.
 */
import { TEMPLATE_ARGUMENTS } from '@mistralrs/core';

import { anyObject, arr, bool, int, nullable, num, obj, oneOf, ref, type Schema, str } from './schema.js';

const model = str('The model to use: a served model id, or `default`. Optional when one model is served.');

const messageContent = oneOf(
  [str(), arr(obj({ type: str('`text`', { enum: ['text'] }), text: str() }, ['type', 'text'])), { type: 'null' }],
  'Text, or an array of text parts.',
);

const toolCall = obj(
  {
    id: str(),
    type: str(undefined, { enum: ['function'] }),
    function: obj({ name: str(), arguments: str('The arguments as a JSON text.') }, ['name', 'arguments']),
  },
  ['id', 'type', 'function'],
);

const functionTool = obj(
  {
    type: str(undefined, { enum: ['function'] }),
    function: obj({ name: str(), description: str(), parameters: anyObject('A JSON Schema of the arguments.'), strict: bool() }, ['name']),
  },
  ['type', 'function'],
);

/** Sampling and limits shared by chat and text completions (validate.ts `readCommon`). */
const commonFields: Readonly<Record<string, Schema>> = {
  model,
  n: int('Choices per prompt.', { minimum: 1, default: 1 }),
  max_tokens: nullable(int('Most tokens to generate.', { minimum: 1 })),
  max_completion_tokens: nullable(int('The newer name of `max_tokens`; if both are sent they must agree.', { minimum: 1 })),
  stop: nullable(oneOf([str(undefined, { minLength: 1 }), arr(str(undefined, { minLength: 1 }))], 'Strings that end the generation.')),
  stream: bool('Answer as server-sent events.', { default: false }),
  stream_options: nullable(obj({ include_usage: bool('A last chunk with the usage.') }, [], 'Only with `stream: true`.')),
  temperature: nullable(num(undefined, { minimum: 0, maximum: 2 })),
  top_p: nullable(num(undefined, { exclusiveMinimum: 0, maximum: 1 })),
  top_k: nullable(int('-1 or 0: off.', { minimum: -1 })),
  min_p: nullable(num(undefined, { minimum: 0, maximum: 1 })),
  repetition_penalty: nullable(num(undefined, { exclusiveMinimum: 0, maximum: 10 })),
  frequency_penalty: nullable(num(undefined, { minimum: -2, maximum: 2 })),
  presence_penalty: nullable(num(undefined, { minimum: -2, maximum: 2 })),
  logit_bias: nullable({
    type: 'object',
    description: 'Token ids (as decimal strings) to a bias from -100 to 100.',
    additionalProperties: num(undefined, { minimum: -100, maximum: 100 }),
  }),
  seed: nullable(int('-1: a random seed.', { minimum: -1 })),
  ignore_eos: nullable(bool()),
  dry_multiplier: nullable(num(undefined, { minimum: 0, maximum: 100 })),
  dry_base: nullable(num(undefined, { minimum: 1, maximum: 100 })),
  dry_allowed_length: nullable(int(undefined, { minimum: 0 })),
  dry_penalty_last_n: nullable(int('-1: the whole history; 0: DRY off.', { minimum: -1 })),
  dry_sequence_breakers: nullable(arr(str(undefined, { minLength: 1 }), undefined, { maxItems: 32 })),
  response_format: nullable(
    obj(
      {
        type: str(undefined, { enum: ['text', 'json_object', 'json_schema'] }),
        json_schema: obj({ name: str(), schema: anyObject(), strict: bool() }),
      },
      ['type'],
      'Constrain the output to JSON, or to a JSON Schema.',
    ),
  ),
  grammar: nullable(
    obj(
      { type: str(undefined, { enum: ['regex', 'lark', 'json_schema', 'gbnf'] }), value: {} },
      ['type', 'value'],
      'A grammar the output must match.',
    ),
  ),
  user: nullable(str()),
  metadata: nullable({ type: 'object', additionalProperties: str(), description: 'At most 16 keys; changes nothing.' }),
  safety_identifier: nullable(str()),
  prompt_cache_key: nullable(str()),
};

const chatCompletionRequest = obj(
  {
    ...commonFields,
    messages: arr(
      obj(
        {
          role: str(undefined, { enum: ['system', 'developer', 'user', 'assistant', 'tool'] }),
          content: messageContent,
          name: str(),
          tool_calls: arr(toolCall),
          tool_call_id: str(),
          reasoning_content: str('An assistant turn’s reasoning.'),
        },
        ['role'],
      ),
      'The conversation.',
      { minItems: 1 },
    ),
    logprobs: nullable(bool()),
    top_logprobs: nullable(int('Needs `logprobs: true`.', { minimum: 0 })),
    tools: nullable(arr(functionTool)),
    tool_choice: nullable(
      oneOf([
        str(undefined, { enum: ['none', 'auto', 'required'] }),
        obj({ type: str(undefined, { enum: ['function'] }), function: obj({ name: str() }, ['name']) }, ['type', 'function']),
      ]),
    ),
    parallel_tool_calls: nullable(bool()),
    chat_template_kwargs: nullable(anyObject('Extra variables for the chat template.')),
    enable_thinking: nullable(bool()),
    reasoning_effort: nullable(str(undefined, { enum: [...(TEMPLATE_ARGUMENTS.reasoning_effort?.values ?? [])] })),
  },
  ['messages'],
);

const completionRequest = obj(
  {
    ...commonFields,
    prompt: oneOf(
      [str(undefined, { minLength: 1 }), arr(int()), arr(str()), arr(arr(int()))],
      'A text, token ids, or an array of either (one set of choices per prompt).',
    ),
    logprobs: nullable(int('Alternatives per token.', { minimum: 0 })),
    best_of: nullable(int('Only 1 or `n`.', { minimum: 1 })),
  },
  ['prompt'],
);

const usage = obj({ prompt_tokens: int(), completion_tokens: int(), total_tokens: int() }, [
  'prompt_tokens',
  'completion_tokens',
  'total_tokens',
]);

const chatCompletion = obj(
  {
    id: str(),
    object: str(undefined, { enum: ['chat.completion'] }),
    created: int(),
    model: str(),
    choices: arr(
      obj({
        index: int(),
        message: obj({ role: str(), content: { type: ['string', 'null'] }, reasoning_content: str(), tool_calls: arr(toolCall) }),
        finish_reason: str(undefined, { enum: ['stop', 'length', 'tool_calls'] }),
        logprobs: { type: ['object', 'null'] },
      }),
    ),
    usage,
  },
  ['id', 'object', 'created', 'model', 'choices'],
  'Or, with `stream: true`, `text/event-stream` of `chat.completion.chunk` objects ending with `data: [DONE]`.',
);

const completion = obj(
  {
    id: str(),
    object: str(undefined, { enum: ['text_completion'] }),
    created: int(),
    model: str(),
    choices: arr(obj({ index: int(), text: str(), finish_reason: str(), logprobs: { type: ['object', 'null'] } })),
    usage,
  },
  ['id', 'object', 'created', 'model', 'choices'],
);

const inputItem = obj(
  {
    type: str(undefined, { enum: ['message', 'function_call', 'function_call_output', 'reasoning'] }),
    role: str(undefined, { enum: ['system', 'developer', 'user', 'assistant'] }),
    content: oneOf([str(), arr(obj({ type: str('`input_text` or `output_text`'), text: str() }, ['type']))]),
    call_id: str(),
    name: str(),
    arguments: str(),
    output: str(),
  },
  [],
  'A message, a function call, its output, or an earlier reasoning item.',
);

const responsesRequest = obj(
  {
    model,
    input: oneOf([str(), arr(inputItem)], 'A text (one user message) or input items.'),
    instructions: nullable(str('A system message for this request only.')),
    max_output_tokens: nullable(int(undefined, { minimum: 1 })),
    temperature: nullable(num(undefined, { minimum: 0, maximum: 2 })),
    top_p: nullable(num(undefined, { exclusiveMinimum: 0, maximum: 1 })),
    tools: nullable(
      arr(
        obj({ type: str(undefined, { enum: ['function'] }), name: str(), description: str(), parameters: anyObject(), strict: bool() }, [
          'type',
          'name',
        ]),
      ),
    ),
    tool_choice: nullable(oneOf([str(undefined, { enum: ['none', 'auto', 'required'] }), anyObject()])),
    parallel_tool_calls: nullable(bool()),
    text: nullable(obj({ format: anyObject('`{type: "text"}`, `{type: "json_object"}` or `{type: "json_schema", name, schema}`.') })),
    previous_response_id: nullable(str('Continue from a stored response.', { minLength: 1 })),
    store: nullable(bool(undefined, { default: true })),
    stream: nullable(bool(undefined, { default: false })),
    metadata: nullable({ type: 'object', additionalProperties: str() }),
    user: nullable(str()),
    safety_identifier: nullable(str()),
    prompt_cache_key: nullable(str()),
  },
  ['input'],
);

const response = obj(
  {
    id: str(),
    object: str(undefined, { enum: ['response'] }),
    created_at: int(),
    status: str(undefined, { enum: ['completed', 'incomplete', 'failed', 'in_progress'] }),
    model: str(),
    output: arr(anyObject('A `message`, `function_call` or `reasoning` item.')),
    usage: anyObject(),
  },
  ['id', 'object', 'status', 'model', 'output'],
);

const anthropicContent = oneOf(
  [str(), arr(obj({ type: str('`text`, `tool_use` or `tool_result`'), text: str(), cache_control: anyObject() }, ['type']))],
  'Text, or content blocks.',
);

/** Fields both Anthropic routes take; Anthropic refuses any other, and so does this server. */
const anthropicChatFields: Readonly<Record<string, Schema>> = {
  model: str(undefined, { minLength: 1 }),
  messages: arr(
    obj({ role: str(undefined, { enum: ['user', 'assistant'] }), content: anthropicContent }, ['role', 'content']),
    'A last assistant turn is a prefill the answer continues.',
  ),
  system: oneOf([str(), arr(obj({ type: str(undefined, { enum: ['text'] }), text: str() }, ['type', 'text']))]),
  tools: arr(obj({ name: str(), description: str(), input_schema: anyObject() }, ['name', 'input_schema'])),
  tool_choice: obj({ type: str(undefined, { enum: ['auto', 'any', 'tool', 'none'] }), name: str(), disable_parallel_tool_use: bool() }, [
    'type',
  ]),
  cache_control: anyObject('Accepted; changes nothing.'),
  thinking: obj(
    {
      type: str(undefined, { enum: ['enabled', 'disabled'] }),
      budget_tokens: int('With `enabled`: at least 1024 and less than `max_tokens`, which bounds thinking and text together.', {
        minimum: 1024,
      }),
    },
    ['type'],
    'Turns the chat template’s thinking on or off.',
  ),
};

const anthropicMessagesRequest: Schema = {
  ...obj(
    {
      ...anthropicChatFields,
      max_tokens: int(undefined, { minimum: 1 }),
      stop_sequences: arr(str()),
      temperature: num(undefined, { minimum: 0, maximum: 1 }),
      top_p: num(undefined, { minimum: 0, maximum: 1 }),
      top_k: int(undefined, { minimum: 0 }),
      metadata: obj({ user_id: str() }),
      stream: bool(undefined, { default: false }),
      service_tier: str(undefined, { enum: ['auto', 'standard_only'] }),
    },
    ['model', 'messages', 'max_tokens'],
  ),
  additionalProperties: false,
};

const anthropicCountTokensRequest: Schema = { ...obj(anthropicChatFields, ['model', 'messages']), additionalProperties: false };

const anthropicMessage = obj(
  {
    id: str(),
    type: str(undefined, { enum: ['message'] }),
    role: str(undefined, { enum: ['assistant'] }),
    content: arr(anyObject('A `text` or `tool_use` block.')),
    model: str(),
    stop_reason: str(undefined, { enum: ['end_turn', 'max_tokens', 'stop_sequence', 'tool_use'] }),
    stop_sequence: { type: ['string', 'null'] },
    usage: obj({ input_tokens: int(), output_tokens: int() }),
  },
  ['id', 'type', 'role', 'content', 'model'],
  'Or, with `stream: true`, Anthropic’s `text/event-stream` events.',
);

const model_ = obj({ id: str(), object: str(undefined, { enum: ['model'] }), created: int(), owned_by: str() }, ['id', 'object']);

const modelStatus = obj(
  {
    model_id: str(),
    status: str(),
    memory_bytes: int(),
    in_flight: int(),
    error: str(),
    memory: obj({ limit_bytes: { type: ['integer', 'null'] }, used_bytes: int() }),
  },
  ['model_id', 'status'],
);

/** Every schema the paths refer to, by name (`#/components/schemas/NAME`). */
export const SCHEMAS = {
  Error: obj(
    {
      error: obj(
        {
          message: str(),
          type: str('`invalid_request_error`, `authentication_error`, `not_found_error`, `rate_limit_error`, `server_error`, …'),
          param: { type: ['string', 'null'], description: 'The request field at fault.' },
          code: { type: ['string', 'null'], description: 'A stable reason (`invalid_type`, `model_not_found`, …; see docs/server.md).' },
        },
        ['message', 'type', 'param', 'code'],
      ),
    },
    ['error'],
    'OpenAI’s error object, answered by every route but the Anthropic ones.',
  ),
  AnthropicError: obj(
    {
      type: str(undefined, { enum: ['error'] }),
      error: obj(
        { type: str('`invalid_request_error`, `authentication_error`, `not_found_error`, `overloaded_error`, …'), message: str() },
        ['type', 'message'],
      ),
    },
    ['type', 'error'],
    'Anthropic’s error shape, answered on /v1/messages and below.',
  ),
  ChatCompletionRequest: chatCompletionRequest,
  ChatCompletion: chatCompletion,
  CompletionRequest: completionRequest,
  Completion: completion,
  ResponsesRequest: responsesRequest,
  Response: response,
  AnthropicMessagesRequest: anthropicMessagesRequest,
  AnthropicMessage: anthropicMessage,
  AnthropicCountTokensRequest: anthropicCountTokensRequest,
  Model: model_,
  ModelList: obj({ object: str(undefined, { enum: ['list'] }), data: arr(ref('Model')) }, ['object', 'data']),
  ModelActionRequest: obj({ model: str('Or `model_id`, mistral.rs’s name.') }, [], 'Names the model (`model` or `model_id`).'),
  ModelStatus: modelStatus,
  EmbeddingRequest: obj(
    {
      model,
      input: oneOf(
        [str(undefined, { minLength: 1 }), arr(str(undefined, { minLength: 1 })), arr(int()), arr(arr(int()))],
        'Texts or token ids to embed: one, or a list of up to 2048.',
      ),
      encoding_format: str('`float` numbers, or `base64`: each embedding’s little-endian float32 bytes.', {
        enum: ['float', 'base64'],
        default: 'float',
      }),
      dimensions: int('Keep the first values (Matryoshka), renormalised when the model normalises.'),
      user: str(),
      truncate_sequence: bool('Cut an input longer than the model takes (keeping its special tokens) instead of refusing it.', {
        default: false,
      }),
      prompt_name: str('One of the model’s sentence-transformers prompts (`query`, `document`…), put before each text.'),
      prompt: str('A text put before each text input.'),
    },
    ['input'],
  ),
  EmbeddingList: obj(
    {
      object: str(undefined, { enum: ['list'] }),
      data: arr(
        obj(
          {
            object: str(undefined, { enum: ['embedding'] }),
            index: int(),
            embedding: oneOf([arr(num()), str('base64 of little-endian float32 values')]),
          },
          ['object', 'index', 'embedding'],
        ),
      ),
      model: str(),
      usage: obj({ prompt_tokens: int(), total_tokens: int() }, ['prompt_tokens', 'total_tokens']),
    },
    ['object', 'data', 'model', 'usage'],
  ),
  TokenizeRequest: obj(
    {
      model,
      prompt: str('Text to tokenize (or send `messages`).'),
      add_special_tokens: bool(undefined, { default: true }),
      messages: arr(anyObject(), 'A chat, rendered with the chat template (instead of `prompt`).'),
      add_generation_prompt: bool(undefined, { default: true }),
      return_token_strs: bool('Also return each token’s text.', { default: false }),
    },
    [],
  ),
  TokenizeResponse: obj({ tokens: arr(int()), count: int(), max_model_len: int(), token_strs: arr(str()) }, ['tokens']),
  DetokenizeRequest: obj({ model, tokens: arr(int()), skip_special_tokens: bool(undefined, { default: false }) }, ['tokens']),
  DetokenizeResponse: obj({ prompt: str() }, ['prompt']),
  Health: obj({ status: str(undefined, { enum: ['ok'] }), model: str('The default model’s id.') }, ['status']),
  Stats: anyObject('The engine’s load and KV cache: running, waiting, free_blocks, total_blocks, block_size, prefix_cache, ….'),
} satisfies Record<string, Schema>;

export type SchemaName = keyof typeof SCHEMAS;
