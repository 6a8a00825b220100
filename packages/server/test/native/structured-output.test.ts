/**
 * Constrained output and tools through the official `openai` client, on the default model
 * (SmolLM2-135M): twenty JSON schemas validated by a real JSON Schema validator (ajv), greedy
 * and sampled; regex and Lark grammars; a tool round trip. Expected texts come from our own
 * engine API in the same process, never hard-coded.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import type { ChatMessage, ChatTool, Engine } from '@mistralrs/core';
import Ajv2020 from 'ajv/dist/2020.js';
import OpenAI from 'openai';
import type { ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources/chat/completions';

import type { RunningServer } from '../../src/index.js';
import { SCHEMA_CASES } from '../fixtures/json-schemas.js';
import { loadDefaultEngine, MODEL_ID, post, serve } from './helpers.js';

let engine: Engine;
let server: RunningServer;
let client: OpenAI;
const ajv = new Ajv2020({ strict: false, allErrors: true });

beforeAll(async () => {
  engine = await loadDefaultEngine();
  server = await serve(engine);
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 300_000);

afterAll(async () => {
  await server?.close();
  engine?.close();
});

/** The JSON in `text`, checked against `schema`; the validator's errors in the failure message. */
function expectValid(schema: object, text: string | null | undefined, what: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text ?? '');
  } catch {
    throw new Error(`${what}: not JSON: ${JSON.stringify(text)}`);
  }
  const valid = ajv.validate(schema, value);
  if (!valid) throw new Error(`${what}: ${ajv.errorsText()} in ${text}`);
  return value;
}

describe('response_format json_schema', () => {
  it('has twenty schemas', () => {
    expect(SCHEMA_CASES).toHaveLength(20);
  });

  // All twenty go at once (the engine batches them). A recursive schema does not bound the
  // output's length, and a 135M model can nest forever: the grammar guarantees well-formed
  // output, not that the model stops. The seeds (100 + index) are fixed for reproducibility.
  it.each([
    { mode: 'greedy', temperature: 0 },
    { mode: 'sampled', temperature: 0.7 },
  ])(
    'every output parses and validates ($mode)',
    async ({ temperature }) => {
      const responses = await Promise.all(
        SCHEMA_CASES.map((c, i) =>
          client.chat.completions.create({
            model: MODEL_ID,
            messages: [{ role: 'user', content: c.prompt }],
            response_format: { type: 'json_schema', json_schema: { name: `case_${i}`, schema: c.schema, strict: true } },
            max_tokens: 300,
            temperature,
            seed: 100 + i,
          }),
        ),
      );
      responses.forEach((response, i) => {
        const choice = response.choices[0]!;
        expect({ case: SCHEMA_CASES[i]!.name, finish: choice.finish_reason }).toEqual({ case: SCHEMA_CASES[i]!.name, finish: 'stop' });
        expectValid(SCHEMA_CASES[i]!.schema, choice.message.content, SCHEMA_CASES[i]!.name);
      });
    },
    300_000,
  );

  it('streams the same JSON as the whole response', async () => {
    const c = SCHEMA_CASES.find((s) => s.name === 'order document')!;
    const body = {
      model: MODEL_ID,
      messages: [{ role: 'user' as const, content: c.prompt }],
      response_format: { type: 'json_schema' as const, json_schema: { name: 'order', schema: c.schema } },
      max_tokens: 300,
    };
    const whole = await client.chat.completions.create(body);
    let streamed = '';
    for await (const chunk of await client.chat.completions.create({ ...body, stream: true })) {
      streamed += chunk.choices[0]?.delta.content ?? '';
    }
    expect(streamed).toBe(whole.choices[0]!.message.content);
    expectValid(c.schema, streamed, 'streamed order');
  }, 120_000);

  it('gives the engine API the same output', async () => {
    const c = SCHEMA_CASES.find((s) => s.name === 'nested object')!;
    const reference = await engine.chat({
      messages: [{ role: 'user', content: c.prompt }],
      maxTokens: 200,
      grammar: { type: 'json_schema', value: c.schema },
    }).result;
    const response = await client.chat.completions.create({
      model: MODEL_ID,
      messages: [{ role: 'user', content: c.prompt }],
      response_format: { type: 'json_schema', json_schema: { name: 'museum', schema: c.schema } },
      max_tokens: 200,
    });
    expect(response.choices[0]!.message.content).toBe(reference.text);
  }, 60_000);
});

describe('response_format json_object', () => {
  it('answers with a JSON object, where unconstrained output is not JSON', async () => {
    const messages: ChatCompletionMessageParam[] = [{ role: 'user', content: 'Tell me about cats.' }];
    const free = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 40 });
    expect(() => JSON.parse(free.choices[0]!.message.content ?? '')).toThrow();
    const response = await client.chat.completions.create({
      model: MODEL_ID,
      messages,
      response_format: { type: 'json_object' },
      max_tokens: 300,
    });
    expect(response.choices[0]!.finish_reason).toBe('stop');
    const value = JSON.parse(response.choices[0]!.message.content ?? '') as unknown;
    expect(value !== null && typeof value === 'object' && !Array.isArray(value)).toBe(true);
  }, 60_000);
});

describe('grammar extension', () => {
  const ask = (content: string, grammar: object, temperature = 0, seed?: number) =>
    post(`${server.url}/v1/chat/completions`, {
      model: MODEL_ID,
      messages: [{ role: 'user', content }],
      grammar,
      max_tokens: 60,
      temperature,
      ...(seed !== undefined ? { seed } : {}),
    });
  const content = (r: { json: unknown }) => (r.json as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content;

  it('matches a regex, greedy and sampled', async () => {
    const regex = '(yes|no), because [a-z ]{1,40}\\.';
    for (const [temperature, seed] of [
      [0, undefined],
      [0.8, 1],
      [0.8, 2],
    ] as const) {
      const r = await ask('Is the sky blue?', { type: 'regex', value: regex }, temperature, seed);
      expect(r.status).toBe(200);
      expect(content(r)).toMatch(new RegExp(`^${regex}$`));
    }
  }, 60_000);

  it('matches a regex on the completions endpoint', async () => {
    const r = await post(`${server.url}/v1/completions`, {
      model: MODEL_ID,
      prompt: 'The year the first moon landing happened:',
      grammar: { type: 'regex', value: ' [0-9]{4}' },
      max_tokens: 10,
    });
    expect(r.status).toBe(200);
    expect((r.json as { choices: Array<{ text: string }> }).choices[0]!.text).toMatch(/^ [0-9]{4}$/);
  }, 60_000);

  it('follows a Lark grammar', async () => {
    const lark = ['start: greeting ", " name "!"', 'greeting: "Hello" | "Good morning" | "Hi"', 'name: /[A-Z][a-z]{1,12}/'].join('\n');
    for (const [temperature, seed] of [
      [0, undefined],
      [0.9, 3],
    ] as const) {
      const r = await ask('Greet someone.', { type: 'lark', value: lark }, temperature, seed);
      expect(r.status).toBe(200);
      expect(content(r)).toMatch(/^(Hello|Good morning|Hi), [A-Z][a-z]{1,12}!$/);
    }
  }, 60_000);

  it('follows a Lark grammar with an embedded JSON schema (llguidance type)', async () => {
    const schema = {
      type: 'object',
      properties: { n: { type: 'integer', minimum: 1, maximum: 9 } },
      required: ['n'],
      additionalProperties: false,
    };
    const r = await ask('Give a number.', { type: 'llguidance', value: `start: "ANSWER: " %json ${JSON.stringify(schema)}` });
    expect(r.status).toBe(200);
    const text = content(r);
    expect(text.startsWith('ANSWER: ')).toBe(true);
    expectValid(schema, text.slice('ANSWER: '.length), 'embedded schema');
  }, 60_000);
});

const weatherTool: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'The current weather in a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
      required: ['city', 'unit'],
      additionalProperties: false,
    },
  },
};
const timeTool: ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_time',
    description: 'The current time in a time zone',
    parameters: { type: 'object', properties: { zone: { type: 'string' } }, required: ['zone'], additionalProperties: false },
  },
};

describe('tools', () => {
  it('calls a tool, takes its result and answers (round trip)', async () => {
    const messages: ChatCompletionMessageParam[] = [{ role: 'user', content: 'What is the weather in Paris?' }];
    const first = await client.chat.completions.create({
      model: MODEL_ID,
      messages,
      tools: [weatherTool, timeTool],
      tool_choice: 'required',
      max_tokens: 100,
    });
    const choice = first.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    expect(choice.message.content).toBeNull();
    const calls = choice.message.tool_calls ?? [];
    expect(calls).toHaveLength(1);
    const call = calls[0]!;
    expect(call.type).toBe('function');
    expect(call.id).toMatch(/^call_[0-9a-f]{24}$/);
    if (call.type !== 'function') throw new Error('not a function call');
    const tool = [weatherTool, timeTool].find((t) => t.function.name === call.function.name);
    expect(tool).toBeDefined();
    expectValid(tool!.function.parameters!, call.function.arguments, 'tool arguments');

    const toolResult = JSON.stringify({ temperature: 18, unit: 'celsius', sky: 'sunny' });
    messages.push(choice.message, { role: 'tool', tool_call_id: call.id, content: toolResult });
    const second = await client.chat.completions.create({ model: MODEL_ID, messages, tools: [weatherTool, timeTool], max_tokens: 40 });
    const answer = second.choices[0]!;
    expect(answer.message.tool_calls).toBeUndefined();

    // The engine API, given the same conversation, answers the same.
    const history: ChatMessage[] = [
      { role: 'user', content: 'What is the weather in Paris?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: call.id, type: 'function', function: { name: call.function.name, arguments: call.function.arguments } }],
      },
      { role: 'tool', tool_call_id: call.id, content: toolResult },
    ];
    const reference = await engine.chat({ messages: history, tools: [weatherTool, timeTool] as unknown as ChatTool[], maxTokens: 40 })
      .result;
    expect(answer.message.content).toBe(reference.text);
    expect(reference.text.length).toBeGreaterThan(0);
  }, 120_000);

  it('calls the function tool_choice names', async () => {
    const response = await client.chat.completions.create({
      model: MODEL_ID,
      messages: [{ role: 'user', content: 'What is the weather in Oslo?' }],
      tools: [weatherTool, timeTool],
      tool_choice: { type: 'function', function: { name: 'get_time' } },
      max_tokens: 100,
    });
    const call = response.choices[0]!.message.tool_calls?.[0];
    if (call?.type !== 'function') throw new Error('no function call');
    expect(call.function.name).toBe('get_time');
    expectValid(timeTool.function.parameters!, call.function.arguments, 'get_time arguments');
  }, 60_000);

  it('streams a call as a tool_calls delta, then finish_reason tool_calls', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL_ID,
      messages: [{ role: 'user', content: 'Weather in Rome, please.' }],
      tools: [weatherTool],
      tool_choice: 'required',
      max_tokens: 100,
      stream: true,
    });
    let content = '';
    const deltas: Array<{ index: number; id?: string; function?: { name?: string; arguments?: string } }> = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      if (!choice) continue;
      content += choice.delta.content ?? '';
      deltas.push(...(choice.delta.tool_calls ?? []));
      finish = choice.finish_reason ?? finish;
    }
    expect(content).toBe('');
    expect(finish).toBe('tool_calls');
    expect(deltas).toHaveLength(1);
    expect(deltas[0]!.index).toBe(0);
    expect(deltas[0]!.function?.name).toBe('get_weather');
    expectValid(weatherTool.function.parameters!, deltas[0]!.function?.arguments, 'streamed arguments');
  }, 60_000);

  it('with tool_choice none, answers as without tools', async () => {
    const messages: ChatMessage[] = [{ role: 'user', content: 'What is the weather in Paris?' }];
    const reference = await engine.chat({ messages, maxTokens: 20 }).result;
    const response = await client.chat.completions.create({
      model: MODEL_ID,
      messages: messages as ChatCompletionMessageParam[],
      tools: [weatherTool],
      tool_choice: 'none',
      max_tokens: 20,
    });
    expect(response.choices[0]!.message.content).toBe(reference.text);
    expect(response.choices[0]!.message.tool_calls).toBeUndefined();
  }, 60_000);

  it('answers a malformed schema in a forced tool with a 400, promptly', async () => {
    const r = await post(`${server.url}/v1/chat/completions`, {
      model: MODEL_ID,
      messages: [{ role: 'user', content: 'Hi' }],
      tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { a: { type: 'strnig' } } } } }],
      tool_choice: 'required',
    });
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ error: { param: 'tool_choice', code: 'invalid_grammar', type: 'invalid_request_error' } });
  }, 30_000);
});
