/**
 * `GET /openapi.json`: an OpenAPI 3.1 document of every route app.ts registers. The paths are
 * written here by hand, beside the schemas in components.ts; a unit test walks the express
 * router and fails when a route answers that this document does not describe.
 */
import { SCHEMAS, type SchemaName } from './components.js';
import {
  type MediaType,
  type OpenApiDocument,
  type Operation,
  type Parameter,
  type PathItem,
  ref,
  type ResponseObject,
  str,
} from './schema.js';

/** Example bodies: shown by /docs, and sent to the routes by the unit test. */
export const EXAMPLES = {
  ChatCompletionRequest: { model: 'default', messages: [{ role: 'user', content: 'Say hello.' }], max_tokens: 16 },
  CompletionRequest: { model: 'default', prompt: 'Once upon a time', max_tokens: 16 },
  ResponsesRequest: { model: 'default', input: 'Say hello.', max_output_tokens: 16 },
  AnthropicMessagesRequest: { model: 'default', max_tokens: 16, messages: [{ role: 'user', content: 'Say hello.' }] },
  AnthropicCountTokensRequest: { model: 'default', messages: [{ role: 'user', content: 'Say hello.' }] },
  EmbeddingRequest: { model: 'default', input: ['Hello', 'world'] },
  TokenizeRequest: { prompt: 'Hello' },
  DetokenizeRequest: { tokens: [72, 105] },
  ModelActionRequest: { model: 'default' },
} as const satisfies Partial<Record<SchemaName, object>>;

const json = (schema: SchemaName, example?: unknown): Readonly<Record<string, MediaType>> => ({
  'application/json': example === undefined ? { schema: ref(schema) } : { schema: ref(schema), example },
});

const body = (schema: keyof typeof EXAMPLES): Operation['requestBody'] => ({ required: true, content: json(schema, EXAMPLES[schema]) });

const ok = (description: string, schema: SchemaName, eventStream = false): ResponseObject => ({
  description,
  content: eventStream ? { ...json(schema), 'text/event-stream': { schema: str('Server-sent events.') } } : json(schema),
});

/** The errors every OpenAI-shaped route may answer. */
const errors = (anthropic = false): Readonly<Record<string, ResponseObject>> => {
  const shape: SchemaName = anthropic ? 'AnthropicError' : 'Error';
  return {
    '400': { description: 'The request is invalid: `param` names the field, `code` the reason.', content: json(shape) },
    '401': { description: 'No or a wrong API key (when the server has one).', content: json(shape) },
    '404': { description: 'Unknown model or path.', content: json(shape) },
    '503': { description: 'Busy, shutting down, or the model is loading.', content: json(shape) },
  };
};

const modelParam: Parameter = {
  name: 'model',
  in: 'path',
  required: true,
  description: 'A model id; a Hugging Face id (`org/name`) may span two segments.',
  schema: str(),
};
const responseIdParam: Parameter = { name: 'id', in: 'path', required: true, description: 'A `resp_…` id.', schema: str() };

const open: Operation['security'] = [];

const PATHS: Readonly<Record<string, PathItem>> = {
  '/v1/chat/completions': {
    post: {
      tags: ['OpenAI'],
      summary: 'Create a chat completion',
      operationId: 'createChatCompletion',
      requestBody: body('ChatCompletionRequest'),
      responses: { '200': ok('The completion (or a stream of chunks).', 'ChatCompletion', true), ...errors() },
    },
  },
  '/v1/completions': {
    post: {
      tags: ['OpenAI'],
      summary: 'Create a text completion',
      operationId: 'createCompletion',
      requestBody: body('CompletionRequest'),
      responses: { '200': ok('The completion (or a stream of chunks).', 'Completion', true), ...errors() },
    },
  },
  '/v1/responses': {
    post: {
      tags: ['Responses'],
      summary: 'Create a response',
      operationId: 'createResponse',
      requestBody: body('ResponsesRequest'),
      responses: { '200': ok('The response (or a stream of Responses events).', 'Response', true), ...errors() },
    },
  },
  '/v1/responses/{id}': {
    get: {
      tags: ['Responses'],
      summary: 'Retrieve a stored response',
      operationId: 'getResponse',
      parameters: [responseIdParam],
      responses: { '200': ok('The stored response.', 'Response'), ...errors() },
    },
    delete: {
      tags: ['Responses'],
      summary: 'Delete a stored response',
      operationId: 'deleteResponse',
      parameters: [responseIdParam],
      responses: {
        '200': {
          description: 'Deleted.',
          content: {
            'application/json': { schema: { type: 'object', properties: { id: str(), object: str(), deleted: { type: 'boolean' } } } },
          },
        },
        ...errors(),
      },
    },
  },
  '/v1/responses/{id}/input_items': {
    get: {
      tags: ['Responses'],
      summary: 'List a stored response’s input items',
      operationId: 'listResponseInputItems',
      parameters: [responseIdParam],
      responses: {
        '200': {
          description: 'A list of input items.',
          content: { 'application/json': { schema: { type: 'object', properties: { object: str(), data: { type: 'array' } } } } },
        },
        ...errors(),
      },
    },
  },
  '/v1/messages': {
    post: {
      tags: ['Anthropic'],
      summary: 'Create a message (Anthropic Messages API)',
      description: 'Takes `x-api-key` as well as a bearer key; errors are in Anthropic’s shape.',
      operationId: 'createMessage',
      requestBody: body('AnthropicMessagesRequest'),
      responses: { '200': ok('The message (or a stream of Anthropic events).', 'AnthropicMessage', true), ...errors(true) },
    },
  },
  '/v1/messages/count_tokens': {
    post: {
      tags: ['Anthropic'],
      summary: 'Count a request’s input tokens',
      operationId: 'countMessageTokens',
      requestBody: body('AnthropicCountTokensRequest'),
      responses: {
        '200': {
          description: 'The count.',
          content: {
            'application/json': {
              schema: { type: 'object', properties: { input_tokens: { type: 'integer' } }, required: ['input_tokens'] },
            },
          },
        },
        ...errors(true),
      },
    },
  },
  '/v1/models': {
    get: {
      tags: ['Models'],
      summary: 'List the served models',
      operationId: 'listModels',
      responses: { '200': ok('The models.', 'ModelList'), ...errors() },
    },
  },
  '/v1/models/{model}': {
    get: {
      tags: ['Models'],
      summary: 'Retrieve a model',
      operationId: 'getModel',
      parameters: [modelParam],
      responses: { '200': ok('The model.', 'Model'), ...errors() },
    },
  },
  '/v1/models/status': {
    post: {
      tags: ['Models'],
      summary: 'A model’s state (changes nothing)',
      operationId: 'modelStatus',
      requestBody: body('ModelActionRequest'),
      responses: { '200': ok('The model’s state.', 'ModelStatus'), ...errors() },
    },
  },
  ...Object.fromEntries(
    (['load', 'unload', 'reload'] as const).map((action): [string, PathItem] => [
      `/v1/models/${action}`,
      {
        post: {
          tags: ['Models'],
          summary: `${action[0]!.toUpperCase()}${action.slice(1)} a model`,
          description: 'A 403 `model_management_disabled` unless model management is on (see docs/server.md).',
          operationId: `${action}Model`,
          requestBody: body('ModelActionRequest'),
          responses: {
            '200': ok('The model’s state afterwards.', 'ModelStatus'),
            '403': { description: 'Model management is off.', content: json('Error') },
            ...errors(),
          },
        },
      },
    ]),
  ),
  '/v1/embeddings': {
    post: {
      tags: ['OpenAI'],
      summary: 'Embed texts or token ids (an embedding model)',
      operationId: 'createEmbedding',
      requestBody: body('EmbeddingRequest'),
      responses: { '200': ok('One embedding per input.', 'EmbeddingList'), ...errors() },
    },
  },
  '/tokenize': {
    post: {
      tags: ['Tokens'],
      summary: 'Tokenize a text or a chat',
      operationId: 'tokenize',
      requestBody: body('TokenizeRequest'),
      responses: { '200': ok('The token ids.', 'TokenizeResponse'), ...errors() },
    },
  },
  '/detokenize': {
    post: {
      tags: ['Tokens'],
      summary: 'Turn token ids back into text',
      operationId: 'detokenize',
      requestBody: body('DetokenizeRequest'),
      responses: { '200': ok('The text.', 'DetokenizeResponse'), ...errors() },
    },
  },
  '/health': {
    get: {
      tags: ['Server'],
      summary: 'Whether the server takes requests (open without the API key)',
      operationId: 'health',
      security: open,
      responses: { '200': ok('Up.', 'Health') },
    },
  },
  '/v1/stats': {
    get: {
      tags: ['Server'],
      summary: 'The engine’s load and KV cache',
      operationId: 'stats',
      parameters: [{ name: 'model', in: 'query', description: 'Another served model than the default.', schema: str() }],
      responses: { '200': ok('The stats.', 'Stats'), ...errors() },
    },
  },
  '/metrics': {
    get: {
      tags: ['Server'],
      summary: 'Prometheus metrics',
      operationId: 'metrics',
      responses: {
        '200': { description: 'The Prometheus text format.', content: { 'text/plain': { schema: str() } } },
        ...errors(),
      },
    },
  },
  '/openapi.json': {
    get: {
      tags: ['Server'],
      summary: 'This document (open without the API key)',
      operationId: 'openapi',
      security: open,
      responses: { '200': { description: 'OpenAPI 3.1.', content: { 'application/json': { schema: { type: 'object' } } } } },
    },
  },
  '/docs': {
    get: {
      tags: ['Server'],
      summary: 'A page that renders this document (open without the API key)',
      operationId: 'docs',
      security: open,
      responses: { '200': { description: 'HTML.', content: { 'text/html': { schema: str() } } } },
    },
  },
  // Its script, renderer and style (/ui/…) are files of the page, not routes of the API: not listed.
  '/': {
    get: {
      tags: ['Server'],
      summary: 'A chat page over these routes (open without the API key; its API calls send the key it is given)',
      operationId: 'chatPage',
      security: open,
      responses: { '200': { description: 'HTML.', content: { 'text/html': { schema: str() } } } },
    },
  },
};

/** The document, with `servers` set to `serverUrl` (the origin the request came to). */
export function openApiDocument(serverUrl: string, version: string): OpenApiDocument {
  return {
    openapi: '3.1.0',
    info: {
      title: 'mistralrs-ts server',
      version,
      description:
        'OpenAI-compatible chat and text completions, the Responses API and Anthropic’s Messages API over local models. ' +
        'Fields a route does not implement are refused with a 400 `unsupported_parameter` rather than ignored.',
    },
    servers: [{ url: serverUrl }],
    tags: [
      { name: 'OpenAI', description: 'OpenAI’s chat and text completions.' },
      { name: 'Responses', description: 'OpenAI’s Responses API.' },
      { name: 'Anthropic', description: 'Anthropic’s Messages API.' },
      { name: 'Models', description: 'The served models, and loading them at run time.' },
      { name: 'Tokens', description: 'The tokenizer of a model.' },
      { name: 'Server', description: 'Health, load, metrics and this document.' },
    ],
    paths: PATHS,
    components: {
      schemas: SCHEMAS,
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'The server’s `--api-key`, when it has one.' },
        apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key', description: 'The same key, as Anthropic’s clients send it.' },
      },
    },
    // Either header will do; with no `--api-key` neither is needed.
    security: [{ bearer: [] }, { apiKey: [] }, {}],
  };
}
