/**
 * Bad requests: each is answered before the engine with the status OpenAI would give and an
 * OpenAI error object with a code, naming the field at fault (param is null only where no
 * field is). None may be a 5xx: clients retry those.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';

import type { Engine } from '@mistralrs/core';
import OpenAI from 'openai';

import type { RunningServer } from '../../src/index.js';
import { loadDefaultEngine, MODEL_ID, post, serve } from './helpers.js';

let engine: Engine;
let server: RunningServer;

beforeAll(async () => {
  engine = await loadDefaultEngine();
  server = await serve(engine);
}, 300_000);

afterAll(async () => {
  await server?.close();
  engine?.close();
});

const chat = (fields: Record<string, unknown>) => ({
  model: MODEL_ID,
  messages: [{ role: 'user', content: 'Hi' }],
  max_tokens: 2,
  ...fields,
});
const completion = (fields: Record<string, unknown>) => ({ model: MODEL_ID, prompt: 'Hi', max_tokens: 2, ...fields });

interface BadCase {
  name: string;
  path?: string;
  /** Sent as JSON, or as is when a string or bytes. */
  body: unknown;
  headers?: Record<string, string>;
  status: number;
  param: string | null;
  code?: string;
}

const longText = 'word '.repeat(9000);
/** Past the context on its byte length alone (SmolLM2's tokens stand for at most 162 bytes). */
const hugeText = 'word '.repeat(300_000);
/** A body whose `field` (a dotted path into `chat({})`) holds `depth` nested objects. */
const nestedJson = (depth: number) => `${'{"type":"object","properties":{"a":'.repeat(depth)}{"type":"string"}${'}}'.repeat(depth)}`;
const rawChat = (fields: string) => `{"model":"${MODEL_ID}","messages":[{"role":"user","content":"Hi"}],"max_tokens":2,${fields}}`;
const alternatives = (n: number) => `start: ${Array.from({ length: n }, (_, i) => `"a${i}"`).join(' | ')}`;
const wideSchema = (n: number) => ({
  type: 'object',
  properties: Object.fromEntries(Array.from({ length: n }, (_, i) => [`p${i}`, { type: 'integer' }])),
});
const gzipJson = { 'content-type': 'application/json', 'content-encoding': 'gzip' };

const cases: BadCase[] = [
  { name: 'truncated JSON', body: '{"model":', status: 400, param: null, code: 'invalid_json' },
  { name: 'a JSON array as the body', body: '[]', status: 400, param: null },
  { name: 'a JSON string as the body', body: '"hello"', status: 400, param: null },
  { name: 'a form body', body: 'a=1', headers: { 'content-type': 'application/x-www-form-urlencoded' }, status: 415, param: null },
  { name: 'a text/plain body (the fetch default)', body: '{}', headers: {}, status: 415, param: null },
  { name: 'missing messages', body: { model: MODEL_ID }, status: 400, param: 'messages' },
  { name: 'empty messages', body: chat({ messages: [] }), status: 400, param: 'messages' },
  { name: 'messages a string', body: chat({ messages: 'Hi' }), status: 400, param: 'messages' },
  { name: 'a message that is a number', body: chat({ messages: [123] }), status: 400, param: 'messages[0]' },
  { name: 'an unknown role', body: chat({ messages: [{ role: 'wizard', content: 'x' }] }), status: 400, param: 'messages[0].role' },
  { name: 'a numeric role', body: chat({ messages: [{ role: 1, content: 'x' }] }), status: 400, param: 'messages[0].role' },
  { name: 'numeric content', body: chat({ messages: [{ role: 'user', content: 5 }] }), status: 400, param: 'messages[0].content' },
  { name: 'user message without content', body: chat({ messages: [{ role: 'user' }] }), status: 400, param: 'messages[0].content' },
  {
    name: 'an image part for a text model',
    body: chat({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'http://169.254.169.254/' } }] }] }),
    status: 400,
    param: 'messages[0].content[0].type',
  },
  {
    name: 'a text part without text',
    body: chat({ messages: [{ role: 'user', content: [{ type: 'text' }] }] }),
    status: 400,
    param: 'messages[0].content[0].text',
  },
  { name: 'temperature as a string', body: chat({ temperature: 'hot' }), status: 400, param: 'temperature' },
  { name: 'temperature above 2', body: chat({ temperature: 3 }), status: 400, param: 'temperature' },
  { name: 'top_p of 0', body: chat({ top_p: 0 }), status: 400, param: 'top_p' },
  { name: 'top_k below -1', body: chat({ top_k: -5 }), status: 400, param: 'top_k' },
  { name: 'min_p above 1', body: chat({ min_p: 1.5 }), status: 400, param: 'min_p' },
  { name: 'frequency_penalty out of range', body: chat({ frequency_penalty: 3 }), status: 400, param: 'frequency_penalty' },
  { name: 'presence_penalty out of range', body: chat({ presence_penalty: -5 }), status: 400, param: 'presence_penalty' },
  { name: 'repetition_penalty of 0', body: chat({ repetition_penalty: 0 }), status: 400, param: 'repetition_penalty' },
  { name: 'n of 0', body: chat({ n: 0 }), status: 400, param: 'n' },
  { name: 'n of a million', body: chat({ n: 1_000_000 }), status: 400, param: 'n' },
  { name: 'n fractional', body: chat({ n: 1.5 }), status: 400, param: 'n' },
  { name: 'max_tokens of 0', body: chat({ max_tokens: 0 }), status: 400, param: 'max_tokens' },
  { name: 'max_tokens negative', body: chat({ max_tokens: -1 }), status: 400, param: 'max_tokens' },
  { name: 'max_tokens beyond the context', body: chat({ max_tokens: 1e12 }), status: 400, param: 'max_tokens' },
  { name: 'max_tokens as a string', body: chat({ max_tokens: '10' }), status: 400, param: 'max_tokens' },
  {
    name: 'max_completion_tokens out of range',
    body: chat({ max_tokens: undefined, max_completion_tokens: 0 }),
    status: 400,
    param: 'max_completion_tokens',
  },
  {
    name: 'max_tokens and max_completion_tokens disagreeing',
    body: chat({ max_tokens: 2, max_completion_tokens: 3 }),
    status: 400,
    param: 'max_tokens',
  },
  { name: 'five stop strings', body: chat({ stop: ['a', 'b', 'c', 'd', 'e'] }), status: 400, param: 'stop' },
  { name: 'an empty stop string', body: chat({ stop: [''] }), status: 400, param: 'stop' },
  { name: 'a 300-character stop string', body: chat({ stop: 'x'.repeat(300) }), status: 400, param: 'stop' },
  { name: 'a numeric stop', body: chat({ stop: [1] }), status: 400, param: 'stop' },
  { name: 'logit_bias beyond the vocabulary', body: chat({ logit_bias: { '999999': 1 } }), status: 400, param: 'logit_bias' },
  { name: 'logit_bias with a negative id', body: chat({ logit_bias: { '-1': 1 } }), status: 400, param: 'logit_bias' },
  { name: 'logit_bias with a non-numeric key', body: chat({ logit_bias: { abc: 1 } }), status: 400, param: 'logit_bias' },
  { name: 'logit_bias above 100', body: chat({ logit_bias: { '1': 500 } }), status: 400, param: 'logit_bias' },
  { name: 'logit_bias with a string value', body: chat({ logit_bias: { '1': 'x' } }), status: 400, param: 'logit_bias' },
  { name: 'logit_bias as an array', body: chat({ logit_bias: [1, 2] }), status: 400, param: 'logit_bias' },
  { name: 'top_logprobs above 20', body: chat({ logprobs: true, top_logprobs: 21 }), status: 400, param: 'top_logprobs' },
  { name: 'top_logprobs without logprobs', body: chat({ top_logprobs: 2 }), status: 400, param: 'top_logprobs' },
  { name: 'logprobs as a number (chat)', body: chat({ logprobs: 1 }), status: 400, param: 'logprobs' },
  { name: 'stream as a string', body: chat({ stream: 'yes' }), status: 400, param: 'stream' },
  { name: 'stream_options without stream', body: chat({ stream_options: { include_usage: true } }), status: 400, param: 'stream_options' },
  {
    name: 'include_usage as a string',
    body: chat({ stream: true, stream_options: { include_usage: 'y' } }),
    status: 400,
    param: 'stream_options.include_usage',
  },
  { name: 'seed as a string', body: chat({ seed: 'x' }), status: 400, param: 'seed' },
  { name: 'seed past 2^53', body: chat({ seed: 2 ** 64 }), status: 400, param: 'seed' },
  { name: 'user as a number', body: chat({ user: 5 }), status: 400, param: 'user' },
  { name: 'model as a number', body: chat({ model: 5 }), status: 400, param: 'model' },
  { name: 'an unknown model', body: chat({ model: 'gpt-4o' }), status: 404, param: 'model', code: 'model_not_found' },
  { name: 'a path as the model', body: chat({ model: '../../etc/passwd' }), status: 404, param: 'model', code: 'model_not_found' },
  { name: 'tools as an object', body: chat({ tools: { type: 'function' } }), status: 400, param: 'tools' },
  { name: 'a tool that is not a function', body: chat({ tools: [{ type: 'code_interpreter' }] }), status: 400, param: 'tools[0].type' },
  {
    name: 'a tool without a name',
    body: chat({ tools: [{ type: 'function', function: {} }] }),
    status: 400,
    param: 'tools[0].function.name',
  },
  {
    name: 'a tool name with spaces',
    body: chat({ tools: [{ type: 'function', function: { name: 'get weather' } }] }),
    status: 400,
    param: 'tools[0].function.name',
  },
  {
    name: 'a tool given twice',
    body: chat({
      tools: [
        { type: 'function', function: { name: 'f' } },
        { type: 'function', function: { name: 'f' } },
      ],
    }),
    status: 400,
    param: 'tools[1].function.name',
  },
  {
    name: 'tool parameters as a string',
    body: chat({ tools: [{ type: 'function', function: { name: 'f', parameters: 'x' } }] }),
    status: 400,
    param: 'tools[0].function.parameters',
  },
  {
    name: 'tool_choice naming no tool',
    body: chat({ tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: { type: 'function', function: { name: 'g' } } }),
    status: 400,
    param: 'tool_choice',
  },
  {
    name: 'tool_choice as a number',
    body: chat({ tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: 3 }),
    status: 400,
    param: 'tool_choice',
  },
  { name: 'tool_choice required without tools', body: chat({ tool_choice: 'required' }), status: 400, param: 'tool_choice' },
  {
    name: 'parallel_tool_calls as a string',
    body: chat({ tools: [{ type: 'function', function: { name: 'f' } }], parallel_tool_calls: 'yes' }),
    status: 400,
    param: 'parallel_tool_calls',
  },
  {
    name: 'a forced tool call with a grammar',
    body: chat({ tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: 'required', grammar: { type: 'regex', value: 'a' } }),
    status: 400,
    param: 'tool_choice',
  },
  {
    name: 'a json_schema response format without json_schema',
    body: chat({ response_format: { type: 'json_schema' } }),
    status: 400,
    param: 'response_format.json_schema',
  },
  { name: 'an unknown response format', body: chat({ response_format: { type: 'xml' } }), status: 400, param: 'response_format.type' },
  { name: 'a response format as a string', body: chat({ response_format: 'json' }), status: 400, param: 'response_format' },
  {
    name: 'a schema as a number',
    body: chat({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: 5 } } }),
    status: 400,
    param: 'response_format.json_schema.schema',
  },
  {
    name: 'response_format and grammar together',
    body: chat({ response_format: { type: 'json_object' }, grammar: { type: 'regex', value: 'a' } }),
    status: 400,
    param: 'grammar',
  },
  { name: 'an unknown grammar type', body: chat({ grammar: { type: 'gbnf', value: 'root ::= "a"' } }), status: 400, param: 'grammar.type' },
  { name: 'an empty regex', body: chat({ grammar: { type: 'regex', value: '' } }), status: 400, param: 'grammar.value' },
  {
    name: 'a malformed regex',
    body: chat({ grammar: { type: 'regex', value: '[0-9' } }),
    status: 400,
    param: 'grammar',
    code: 'invalid_grammar',
  },
  {
    name: 'a malformed regex (completion)',
    path: '/v1/completions',
    body: completion({ grammar: { type: 'regex', value: '(a' } }),
    status: 400,
    param: 'grammar',
    code: 'invalid_grammar',
  },
  {
    name: 'a Lark grammar with an unknown rule',
    body: chat({ grammar: { type: 'lark', value: 'start: missing' } }),
    status: 400,
    param: 'grammar',
    code: 'invalid_grammar',
  },
  {
    name: 'a Lark grammar that does not parse',
    body: chat({ grammar: { type: 'lark', value: 'start: ("a"' } }),
    status: 400,
    param: 'grammar',
    code: 'invalid_grammar',
  },
  {
    name: 'a schema with an unknown type',
    body: chat({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'frob' } } } }),
    status: 400,
    param: 'response_format',
    code: 'invalid_grammar',
  },
  {
    name: 'an unsatisfiable schema',
    body: chat({
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'integer', minimum: 5, maximum: 3 } } },
    }),
    status: 400,
    param: 'response_format',
    code: 'invalid_grammar',
  },
  {
    name: 'a schema with a dangling $ref',
    body: chat({ grammar: { type: 'json_schema', value: { $ref: '#/$defs/none' } } }),
    status: 400,
    param: 'grammar',
    code: 'invalid_grammar',
  },
  {
    name: 'a schema as text that is not JSON',
    body: chat({ grammar: { type: 'json_schema', value: '{"type": ' } }),
    status: 400,
    param: 'grammar',
    code: 'invalid_grammar',
  },
  {
    name: 'a false schema',
    body: chat({ grammar: { type: 'json_schema', value: false } }),
    status: 400,
    param: 'grammar',
    code: 'invalid_grammar',
  },
  {
    name: 'a tool with an unsatisfiable schema, forced',
    body: chat({
      tools: [
        {
          type: 'function',
          function: {
            name: 'f',
            parameters: { type: 'object', properties: { n: { type: 'integer', minimum: 2, maximum: 1 } }, required: ['n'] },
          },
        },
      ],
      tool_choice: 'required',
    }),
    status: 400,
    param: 'tool_choice',
    code: 'invalid_grammar',
  },
  {
    name: 'a chat prompt longer than the context',
    body: chat({ messages: [{ role: 'user', content: longText }] }),
    status: 400,
    param: 'messages',
    code: 'context_length_exceeded',
  },
  {
    name: 'a chat prompt of 1.5 MB',
    body: chat({ messages: [{ role: 'user', content: hugeText }] }),
    status: 400,
    param: 'messages',
    code: 'context_length_exceeded',
  },
  {
    name: 'a text prompt of 1.5 MB',
    path: '/v1/completions',
    body: completion({ prompt: hugeText }),
    status: 400,
    param: 'prompt',
    code: 'context_length_exceeded',
  },
  // Bodies nested too deep: the JSON parses, but nothing may recurse into it.
  {
    name: 'a schema nested 10,000 levels deep',
    body: rawChat(`"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":${nestedJson(10_000)}}}`),
    status: 400,
    param: 'response_format.json_schema.schema',
    code: 'json_too_deep',
  },
  {
    name: 'tool parameters nested 10,000 levels deep',
    body: rawChat(`"tools":[{"type":"function","function":{"name":"f","parameters":${nestedJson(10_000)}}}]`),
    status: 400,
    param: 'tools[0].function.parameters',
    code: 'json_too_deep',
  },
  {
    name: 'a grammar schema nested 60 levels (past 100 in the body)',
    body: rawChat(`"grammar":{"type":"json_schema","value":${nestedJson(60)}}`),
    status: 400,
    param: 'grammar.value',
    code: 'json_too_deep',
  },
  {
    name: 'a schema as text nested past the native parser',
    body: chat({ grammar: { type: 'json_schema', value: nestedJson(100) } }),
    status: 400,
    param: 'grammar',
    code: 'grammar_too_complex',
  },
  {
    name: 'a body of 100,000 nested arrays',
    body: `{"messages":${'['.repeat(100_000)}${']'.repeat(100_000)}}`,
    status: 400,
    param: 'messages[0]',
    code: 'json_too_deep',
  },
  // Grammars past the compile budget (they took seconds to tens of seconds, or crashed).
  {
    name: 'a Lark grammar of 20,000 alternatives',
    body: chat({ grammar: { type: 'lark', value: alternatives(20_000) } }),
    status: 400,
    param: 'grammar',
    code: 'grammar_too_complex',
  },
  {
    name: 'a schema object of 8,000 properties',
    body: chat({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: wideSchema(8000) } } }),
    status: 400,
    param: 'response_format',
    code: 'grammar_too_complex',
  },
  {
    name: 'forced tools with 2,000 properties',
    body: chat({
      tools: [{ type: 'function', function: { name: 'f', parameters: { ...wideSchema(2000), required: ['p0'] } } }],
      tool_choice: 'required',
    }),
    status: 400,
    param: 'tool_choice',
    code: 'grammar_too_complex',
  },
  {
    name: 'a Lark grammar nesting 10,000 rules',
    body: chat({
      grammar: {
        type: 'lark',
        value: `start: r0\n${Array.from({ length: 10_000 }, (_, i) => `r${i}: r${i + 1}`).join('\n')}\nr10000: "a"`,
      },
    }),
    status: 400,
    param: 'grammar',
    code: 'grammar_too_complex',
  },
  // Bodies whose Content-Encoding lies, or names what the server cannot decode.
  { name: 'a plain body labelled gzip', body: chat({}), headers: gzipJson, status: 400, param: null, code: 'invalid_content_encoding' },
  {
    name: 'a plain body labelled deflate',
    body: chat({}),
    headers: { ...gzipJson, 'content-encoding': 'deflate' },
    status: 400,
    param: null,
    code: 'invalid_content_encoding',
  },
  {
    name: 'a plain body labelled br',
    body: chat({}),
    headers: { ...gzipJson, 'content-encoding': 'br' },
    status: 400,
    param: null,
    code: 'invalid_content_encoding',
  },
  {
    name: 'a truncated gzip body',
    body: gzipSync(JSON.stringify(chat({}))).subarray(0, 30),
    headers: gzipJson,
    status: 400,
    param: null,
    code: 'invalid_content_encoding',
  },
  {
    name: 'an unknown Content-Encoding',
    body: chat({}),
    headers: { ...gzipJson, 'content-encoding': 'lzma' },
    status: 415,
    param: null,
    code: 'unsupported_encoding',
  },
  {
    name: 'an unknown charset',
    body: chat({}),
    headers: { 'content-type': 'application/json; charset=koi8-r' },
    status: 415,
    param: null,
    code: 'unsupported_encoding',
  },
  {
    name: 'a text prompt longer than the context',
    path: '/v1/completions',
    body: completion({ prompt: longText }),
    status: 400,
    param: 'prompt',
    code: 'context_length_exceeded',
  },
  { name: 'a missing prompt', path: '/v1/completions', body: { model: MODEL_ID }, status: 400, param: 'prompt' },
  { name: 'an empty prompt', path: '/v1/completions', body: completion({ prompt: '' }), status: 400, param: 'prompt' },
  { name: 'an empty token prompt', path: '/v1/completions', body: completion({ prompt: [] }), status: 400, param: 'prompt' },
  { name: 'a token id of -1', path: '/v1/completions', body: completion({ prompt: [-1] }), status: 400, param: 'prompt' },
  { name: 'a token id past the vocabulary', path: '/v1/completions', body: completion({ prompt: [49152] }), status: 400, param: 'prompt' },
  { name: 'a fractional token id', path: '/v1/completions', body: completion({ prompt: [1.5] }), status: 400, param: 'prompt' },
  { name: 'a prompt mixing text and ids', path: '/v1/completions', body: completion({ prompt: ['a', 1] }), status: 400, param: 'prompt' },
  { name: 'completions logprobs above 20', path: '/v1/completions', body: completion({ logprobs: 50 }), status: 400, param: 'logprobs' },
  { name: 'echo', path: '/v1/completions', body: completion({ echo: true }), status: 400, param: 'echo' },
  { name: 'best_of above n', path: '/v1/completions', body: completion({ best_of: 3 }), status: 400, param: 'best_of' },
  {
    name: '5 prompts x n=4 past 16 choices',
    path: '/v1/completions',
    body: completion({ prompt: ['a', 'b', 'c', 'd', 'e'], n: 4 }),
    status: 400,
    param: 'n',
  },
  { name: 'detokenize an out-of-vocabulary id', path: '/detokenize', body: { tokens: [1, 99999999] }, status: 400, param: 'tokens' },
  { name: 'tokenize without a prompt', path: '/tokenize', body: {}, status: 400, param: 'prompt' },
];

describe('bad requests', () => {
  it.each(cases)('$name → $status ($param)', async ({ path = '/v1/chat/completions', body, headers, status, param, code }) => {
    const response = await post(`${server.url}${path}`, body, headers);
    expect(response.status).toBe(status);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    const { error } = response.json as { error: { message: string; type: string; param: string | null; code: string | null } };
    expect(Object.keys(error).sort()).toEqual(['code', 'message', 'param', 'type']);
    expect(error.message.length).toBeGreaterThan(0);
    expect(error.type).toBe('invalid_request_error');
    expect(error.param).toBe(param);
    // Every 4xx says why in a stable code; the table pins the ones clients branch on.
    expect(error.code).toMatch(/^[a-z_]+$/);
    if (code !== undefined) expect(error.code).toBe(code);
  });

  it('has more than 20 cases, none answered with a 5xx', () => {
    expect(cases.length).toBeGreaterThan(20);
    expect(cases.every((c) => c.status < 500)).toBe(true);
  });

  it('answers a gzip body that is what it says normally, and one that inflates past the limit with 413', async () => {
    const ok = await post(`${server.url}/v1/chat/completions`, gzipSync(JSON.stringify(chat({}))), gzipJson);
    expect(ok.status).toBe(200);
    const bomb = await post(`${server.url}/v1/chat/completions`, gzipSync(Buffer.alloc(50_000_000, 32)), gzipJson);
    expect(bomb.status).toBe(413);
    expect(bomb.json).toMatchObject({ error: { code: 'request_too_large', param: null } });
  });

  it('answers headers past 16 KiB with a JSON 431, and a malformed request with a JSON 400', async () => {
    const raw = (request: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(server.port, '127.0.0.1', () => socket.end(request));
        let answer = '';
        socket.setEncoding('utf8').on('data', (text: string) => (answer += text));
        socket.on('end', () => resolve(answer)).on('error', reject);
      });
    const bodyOf = (answer: string) => JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { error: Record<string, unknown> };

    const big = await raw(`GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'x'.repeat(20_000)}\r\n\r\n`);
    expect(big).toMatch(/^HTTP\/1\.1 431 /);
    expect(big).toMatch(/\r\nContent-Type: application\/json\r\n/);
    expect(bodyOf(big)).toEqual({
      error: { message: expect.any(String), type: 'invalid_request_error', param: null, code: 'request_header_fields_too_large' },
    });
    const malformed = await raw('GET /health HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n');
    expect(malformed).toMatch(/^HTTP\/1\.1 400 /);
    expect(bodyOf(malformed).error).toMatchObject({ type: 'invalid_request_error', code: 'bad_request' });
  });

  it('compiles grammars within the budget that used to overflow the native stack (the process lives)', async () => {
    // ~2,800 chained rules killed the process (8 MiB worker stack); 5,000 are within the budget.
    const rules = `start: r0\n${Array.from({ length: 5000 }, (_, i) => `r${i}: r${i + 1}`).join('\n')}\nr5000: "a"`;
    const response = await post(`${server.url}/v1/chat/completions`, chat({ grammar: { type: 'lark', value: rules } }));
    expect(response.status).toBe(200);
    expect((response.json as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content).toBe('a');
  });

  it('refuses a prompt on its byte length alone, before tokenizing it', async () => {
    const response = await post(`${server.url}/v1/completions`, completion({ prompt: hugeText }));
    // "at least": the count is the bound's, not a tokenization's.
    expect((response.json as { error: { message: string } }).error.message).toMatch(/has at least \d+ tokens \(1500000 bytes of text\)/);
  });

  it('answers a body over the limit with 413', async () => {
    const huge = JSON.stringify(chat({ messages: [{ role: 'user', content: 'x'.repeat(5 * 1024 * 1024) }] }));
    const response = await post(`${server.url}/v1/chat/completions`, huge);
    expect(response.status).toBe(413);
    expect(response.json).toMatchObject({ error: { type: 'invalid_request_error', code: 'request_too_large', param: null } });
  });

  it('answers unknown routes with 404 and a wrong method with 405, as JSON', async () => {
    const unknown = await post(`${server.url}/v1/foo`, {});
    expect(unknown.status).toBe(404);
    expect(unknown.json).toMatchObject({ error: { message: 'Invalid URL (POST /v1/foo)', type: 'invalid_request_error' } });
    const wrongMethod = await fetch(`${server.url}/v1/chat/completions`);
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('POST');
  });

  it('reports errors through the openai client as typed errors with param and code', async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    await expect(
      client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: longText }] }),
    ).rejects.toMatchObject({ status: 400, param: 'messages', code: 'context_length_exceeded' });
    await expect(client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'Hi' }] })).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );
  });

  it('does not let __proto__ keys pollute objects', async () => {
    const body =
      '{"__proto__":{"polluted":1},"model":"smollm2-test","messages":[{"role":"user","content":"Hi"}],"max_tokens":1,"logit_bias":{"__proto__":5}}';
    const response = await post(`${server.url}/v1/chat/completions`, body);
    expect(response.status).toBe(400);
    expect((response.json as { error: { param: string } }).error.param).toBe('logit_bias');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('access control', () => {
  it('requires the API key on every route but /health', async () => {
    const guarded = await serve(engine, { apiKey: 'sk-test-key' });
    try {
      const body = chat({});
      const missing = await post(`${guarded.url}/v1/chat/completions`, body);
      expect(missing.status).toBe(401);
      expect(missing.headers.get('www-authenticate')).toBe('Bearer');
      expect(missing.json).toMatchObject({ error: { type: 'invalid_request_error', code: 'invalid_api_key', param: null } });

      const wrong = await post(`${guarded.url}/v1/chat/completions`, body, {
        'content-type': 'application/json',
        authorization: 'Bearer sk-wrong',
      });
      expect(wrong.status).toBe(401);
      // Other routes and spellings are guarded too; /health is not.
      for (const path of ['/tokenize', '/V1/chat/completions', '/v1/chat/completions/', '/v1/models', '/nowhere']) {
        expect((await post(`${guarded.url}${path}`, {})).status).toBe(401);
      }
      expect((await fetch(`${guarded.url}/health`)).status).toBe(200);

      const client = new OpenAI({ baseURL: `${guarded.url}/v1`, apiKey: 'sk-test-key', maxRetries: 0 });
      const ok = await client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1 });
      expect(ok.choices).toHaveLength(1);
      const badClient = new OpenAI({ baseURL: `${guarded.url}/v1`, apiKey: 'sk-other', maxRetries: 0 });
      await expect(badClient.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    } finally {
      await guarded.close();
    }
  });

  it('sends CORS headers only to configured origins', async () => {
    const open = await serve(engine, { cors: { origins: ['https://app.example'] } });
    try {
      const preflight = (origin: string) =>
        fetch(`${open.url}/v1/chat/completions`, {
          method: 'OPTIONS',
          headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' },
        });
      const allowed = await preflight('https://app.example');
      expect(allowed.status).toBe(204);
      expect(allowed.headers.get('access-control-allow-origin')).toBe('https://app.example');
      expect(allowed.headers.get('access-control-allow-headers')).toBe('authorization, content-type');
      expect(allowed.headers.get('access-control-allow-credentials')).toBeNull();
      const denied = await preflight('https://evil.example');
      expect(denied.headers.get('access-control-allow-origin')).toBeNull();
    } finally {
      await open.close();
    }
    // Without the option, no CORS headers at all.
    const plain = await fetch(`${server.url}/health`, { headers: { origin: 'https://app.example' } });
    expect(plain.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('refuses a foreign Host header on a loopback server (DNS rebinding)', async () => {
    const status = (host: string) =>
      new Promise<number>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port: server.port, path: '/health', headers: { host } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on('error', reject);
        req.end();
      });
    expect(await status('evil.example')).toBe(403);
    expect(await status(`localhost:${server.port}`)).toBe(200);
    expect(await status(`127.0.0.1:${server.port}`)).toBe(200);
  });
});
