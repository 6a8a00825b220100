/**
 * `/v1/responses` as the official `openai` client's `responses` API sees it, on the default
 * model (SmolLM2-135M). Every expected text comes from the chat route of the same server, for
 * the same conversation, greedily: a response is a chat turn on the same machinery.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import type { Engine } from '@mistralrs/core';
import OpenAI from 'openai';
import type { ChatCompletionMessageParam, ChatCompletionTool } from 'openai/resources/chat/completions';
import type { FunctionTool, ResponseStreamEvent } from 'openai/resources/responses/responses';

import type { RunningServer } from '../../src/index.js';
import { loadDefaultEngine, MODEL_ID, post, serve } from './helpers.js';

let engine: Engine;
let server: RunningServer;
let client: OpenAI;

const question = 'What is the capital of France?';

beforeAll(async () => {
  engine = await loadDefaultEngine();
  server = await serve(engine, { limits: { maxStoredResponses: 3 } });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 300_000);

afterAll(async () => {
  await server?.close();
  engine?.close();
});

/** The chat route's greedy answer for the same conversation. */
async function chatAnswer(
  messages: ChatCompletionMessageParam[],
  maxTokens: number,
  extra: Partial<OpenAI.ChatCompletionCreateParamsNonStreaming> = {},
) {
  const response = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: maxTokens, temperature: 0, ...extra });
  return { choice: response.choices[0]!, usage: response.usage! };
}

async function apiError(promise: Promise<unknown>): Promise<InstanceType<typeof OpenAI.APIError>> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof OpenAI.APIError) return error;
    throw error;
  }
  throw new Error('expected an API error');
}

describe('POST /v1/responses', () => {
  it('answers a string input with what the chat route answers, greedily', async () => {
    const response = await client.responses.create({ model: MODEL_ID, input: question, max_output_tokens: 40, temperature: 0 });
    const chat = await chatAnswer([{ role: 'user', content: question }], 40);

    expect(response.id).toMatch(/^resp_[0-9a-f]{48}$/);
    expect(response.object).toBe('response');
    expect(response.model).toBe(MODEL_ID);
    expect(Number.isInteger(response.created_at)).toBe(true);
    expect(response.status).toBe(chat.choice.finish_reason === 'length' ? 'incomplete' : 'completed');
    expect(response.output).toHaveLength(1);
    const [item] = response.output;
    expect(item).toMatchObject({ type: 'message', role: 'assistant' });
    if (item?.type !== 'message') throw new Error('not a message');
    expect(item.id).toMatch(/^msg_/);
    expect(item.content).toEqual([{ type: 'output_text', text: chat.choice.message.content, annotations: [], logprobs: [] }]);
    expect(response.output_text).toBe(chat.choice.message.content);
    expect(response.usage).toMatchObject({
      input_tokens: chat.usage.prompt_tokens,
      output_tokens: chat.usage.completion_tokens,
      total_tokens: chat.usage.total_tokens,
    });
    expect(response.previous_response_id).toBeNull();
  }, 60_000);

  it('reads message items and instructions as the chat route reads system and user messages', async () => {
    const instructions = 'You are a geography teacher. Answer in one sentence.';
    const response = await client.responses.create({
      model: MODEL_ID,
      instructions,
      input: [{ type: 'message', role: 'user', content: [{ type: 'input_text', text: question }] }],
      max_output_tokens: 30,
      temperature: 0,
    });
    const chat = await chatAnswer(
      [
        { role: 'system', content: instructions },
        { role: 'user', content: question },
      ],
      30,
    );
    expect(response.output_text).toBe(chat.choice.message.content);
    expect(response.usage?.input_tokens).toBe(chat.usage.prompt_tokens);
    expect(response.instructions).toBe(instructions);
  }, 60_000);

  it('is incomplete (max_output_tokens) when cut by max_output_tokens', async () => {
    const response = await client.responses.create({ model: MODEL_ID, input: question, max_output_tokens: 3, temperature: 0 });
    expect(response.status).toBe('incomplete');
    expect(response.incomplete_details).toEqual({ reason: 'max_output_tokens' });
    expect(response.usage?.output_tokens).toBe(3);
    expect(response.output[0]).toMatchObject({ type: 'message', status: 'incomplete' });
  }, 60_000);
});

describe('streaming', () => {
  it('sends the typed events in order, numbered, with the text of the whole response', async () => {
    const whole = await client.responses.create({ model: MODEL_ID, input: question, max_output_tokens: 16, temperature: 0 });
    const stream = await client.responses.create({ model: MODEL_ID, input: question, max_output_tokens: 16, temperature: 0, stream: true });
    const events: ResponseStreamEvent[] = [];
    for await (const event of stream) events.push(event);

    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    const types = events.map((e) => e.type);
    const deltas = types.filter((t) => t === 'response.output_text.delta').length;
    expect(deltas).toBeGreaterThan(0);
    const last = whole.status === 'completed' ? 'response.completed' : 'response.incomplete';
    expect(types).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      ...Array<string>(deltas).fill('response.output_text.delta'),
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      last,
    ]);
    const text = events.flatMap((e) => (e.type === 'response.output_text.delta' ? [e.delta] : [])).join('');
    expect(text).toBe(whole.output_text);
    const done = events.find((e) => e.type === 'response.output_text.done');
    expect(done?.type === 'response.output_text.done' && done.text).toBe(whole.output_text);
    const created = events[0]!;
    const final = events.at(-1)!;
    if (created.type !== 'response.created' || (final.type !== 'response.completed' && final.type !== 'response.incomplete')) {
      throw new Error('unexpected lifecycle events');
    }
    expect(created.response.status).toBe('in_progress');
    expect(final.response.id).toBe(created.response.id);
    expect(final.response.usage).toEqual(whole.usage);
    expect(final.response.output).toHaveLength(1);
  }, 60_000);

  it('works with the client helper responses.stream and its final response', async () => {
    const whole = await client.responses.create({ model: MODEL_ID, input: question, max_output_tokens: 16, temperature: 0 });
    const stream = client.responses.stream({ model: MODEL_ID, input: question, max_output_tokens: 16, temperature: 0 });
    let text = '';
    stream.on('response.output_text.delta', (event) => {
      text += event.delta;
    });
    const final = await stream.finalResponse();
    expect(text).toBe(whole.output_text);
    expect(final.output_text).toBe(whole.output_text);
    // Streamed responses are stored too.
    expect((await client.responses.retrieve(final.id)).output_text).toBe(whole.output_text);
  }, 60_000);
});

describe('previous_response_id and the store', () => {
  it('continues a conversation: the prompt is the whole conversation', async () => {
    const first = await client.responses.create({ model: MODEL_ID, input: question, max_output_tokens: 20, temperature: 0 });
    const followUp = 'And what is the capital of Italy?';
    const second = await client.responses.create({
      model: MODEL_ID,
      previous_response_id: first.id,
      input: followUp,
      max_output_tokens: 20,
      temperature: 0,
    });
    const chat = await chatAnswer(
      [
        { role: 'user', content: question },
        { role: 'assistant', content: first.output_text },
        { role: 'user', content: followUp },
      ],
      20,
    );
    expect(second.previous_response_id).toBe(first.id);
    expect(second.usage?.input_tokens).toBe(chat.usage.prompt_tokens);
    expect(second.output_text).toBe(chat.choice.message.content);

    // The same history sent as items (the first response's output passed back) reads the same.
    const asItems = await client.responses.create({
      model: MODEL_ID,
      input: [{ role: 'user', content: question }, ...first.output, { role: 'user', content: followUp }] as OpenAI.Responses.ResponseInput,
      max_output_tokens: 20,
      temperature: 0,
    });
    expect(asItems.usage?.input_tokens).toBe(chat.usage.prompt_tokens);
    expect(asItems.output_text).toBe(second.output_text);
  }, 60_000);

  it('retrieves, lists the input items of, and deletes a stored response', async () => {
    const created = await client.responses.create({ model: MODEL_ID, input: question, max_output_tokens: 5, temperature: 0 });
    const retrieved = await client.responses.retrieve(created.id);
    expect(retrieved.id).toBe(created.id);
    expect(retrieved.output).toEqual(created.output);
    expect(retrieved.output_text).toBe(created.output_text);

    const items = await client.responses.inputItems.list(created.id);
    expect(items.data).toHaveLength(1);
    expect(items.data[0]).toMatchObject({ type: 'message', role: 'user', content: [{ type: 'input_text', text: question }] });

    const deleted = await client.responses.delete(created.id);
    expect(deleted).toEqual({ id: created.id, object: 'response.deleted', deleted: true });
    const gone = await apiError(client.responses.retrieve(created.id));
    expect(gone.status).toBe(404);
    expect(gone.code).toBe('response_not_found');
  }, 60_000);

  it('keeps nothing with store: false', async () => {
    const created = await client.responses.create({ model: MODEL_ID, input: question, max_output_tokens: 3, store: false });
    expect(created.store).toBe(false);
    expect((await apiError(client.responses.retrieve(created.id))).status).toBe(404);
    const next = await apiError(
      client.responses.create({ model: MODEL_ID, input: 'more', previous_response_id: created.id, max_output_tokens: 3 }),
    );
    expect(next.status).toBe(404);
    expect(next.code).toBe('previous_response_not_found');
    expect(next.param).toBe('previous_response_id');
  }, 60_000);

  it('evicts the least recently used response past the bound (3 here)', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      ids.push((await client.responses.create({ model: MODEL_ID, input: `Count to ${i}`, max_output_tokens: 2 })).id);
      // Using the first keeps it: the second becomes the least recently used.
      if (i === 2) await client.responses.retrieve(ids[0]!);
    }
    expect((await apiError(client.responses.retrieve(ids[1]!))).status).toBe(404);
    for (const id of [ids[0]!, ids[2]!, ids[3]!]) expect((await client.responses.retrieve(id)).id).toBe(id);
  }, 60_000);
});

describe('function tools', () => {
  const weather: FunctionTool = {
    type: 'function',
    name: 'get_weather',
    description: 'The current weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false },
    strict: true,
  };
  const chatWeather: ChatCompletionTool = {
    type: 'function',
    function: { name: weather.name, description: weather.description!, parameters: weather.parameters! },
  };
  const ask = 'What is the weather in Paris?';

  it('calls a forced function as the chat route does, then reads its output', async () => {
    const response = await client.responses.create({
      model: MODEL_ID,
      input: ask,
      tools: [weather],
      tool_choice: { type: 'function', name: 'get_weather' },
      max_output_tokens: 60,
      temperature: 0,
    });
    const chat = await chatAnswer([{ role: 'user', content: ask }], 60, {
      tools: [chatWeather],
      tool_choice: { type: 'function', function: { name: 'get_weather' } },
    });
    const chatCall = chat.choice.message.tool_calls?.[0];
    if (chatCall?.type !== 'function') throw new Error('the chat route made no call');

    const calls = response.output.filter((item) => item.type === 'function_call');
    expect(calls).toHaveLength(1);
    const call = calls[0]!;
    if (call.type !== 'function_call') throw new Error('not a call');
    expect(call.name).toBe('get_weather');
    expect(call.call_id).toMatch(/^call_/);
    expect(call.arguments).toBe(chatCall.function.arguments);
    expect(typeof (JSON.parse(call.arguments) as { city?: unknown }).city).toBe('string');

    const result = 'sunny, 21 C';
    const next = await client.responses.create({
      model: MODEL_ID,
      previous_response_id: response.id,
      input: [{ type: 'function_call_output', call_id: call.call_id, output: result }],
      tools: [weather],
      max_output_tokens: 30,
      temperature: 0,
    });
    const chatNext = await chatAnswer(
      [
        { role: 'user', content: ask },
        { role: 'assistant', content: '', tool_calls: [{ ...chatCall, id: call.call_id }] },
        { role: 'tool', tool_call_id: call.call_id, content: result },
      ],
      30,
      { tools: [chatWeather] },
    );
    expect(next.usage?.input_tokens).toBe(chatNext.usage.prompt_tokens);
    expect(next.output_text).toBe(chatNext.choice.message.content ?? '');
  }, 120_000);

  it('streams a call as function_call_arguments events', async () => {
    const stream = await client.responses.create({
      model: MODEL_ID,
      input: ask,
      tools: [weather],
      tool_choice: 'required',
      max_output_tokens: 60,
      temperature: 0,
      stream: true,
    });
    const events: ResponseStreamEvent[] = [];
    for await (const event of stream) events.push(event);
    const types = events.map((e) => e.type);
    expect(types).toContain('response.function_call_arguments.delta');
    const done = events.find((e) => e.type === 'response.function_call_arguments.done');
    if (done?.type !== 'response.function_call_arguments.done') throw new Error('no arguments.done');
    const deltas = events.flatMap((e) => (e.type === 'response.function_call_arguments.delta' ? [e.delta] : [])).join('');
    expect(deltas).toBe(done.arguments);
    const final = events.at(-1)!;
    if (final.type !== 'response.completed') throw new Error(`ended with ${final.type}`);
    expect(final.response.output.at(-1)).toMatchObject({ type: 'function_call', name: 'get_weather', arguments: done.arguments });
  }, 60_000);
});

describe('text.format', () => {
  it('holds the output to a json_schema, as response_format does on the chat route', async () => {
    const schema = { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false };
    const response = await client.responses.create({
      model: MODEL_ID,
      input: question,
      text: { format: { type: 'json_schema', name: 'city', schema, strict: true } },
      max_output_tokens: 40,
      temperature: 0,
    });
    const chat = await chatAnswer([{ role: 'user', content: question }], 40, {
      response_format: { type: 'json_schema', json_schema: { name: 'city', schema, strict: true } },
    });
    expect(response.output_text).toBe(chat.choice.message.content);
    if (response.status === 'completed') expect(typeof (JSON.parse(response.output_text) as { city?: unknown }).city).toBe('string');
  }, 60_000);
});

describe('bad requests', () => {
  const url = () => `${server.url}/v1/responses`;
  const cases: Array<{ name: string; body: Record<string, unknown>; status: number; code: string; param: string | null }> = [
    {
      name: 'an unknown previous_response_id',
      body: { input: 'hi', previous_response_id: 'resp_nope' },
      status: 404,
      code: 'previous_response_not_found',
      param: 'previous_response_id',
    },
    {
      name: 'a reasoning effort for a model whose template does not think',
      body: { input: 'hi', reasoning: { effort: 'high' } },
      status: 400,
      code: 'unsupported_parameter',
      param: 'reasoning.effort',
    },
    {
      name: 'a reasoning summary (nothing summarises here)',
      body: { input: 'hi', reasoning: { summary: 'detailed' } },
      status: 400,
      code: 'unsupported_parameter',
      param: 'reasoning.summary',
    },
    { name: 'background', body: { input: 'hi', background: true }, status: 400, code: 'unsupported_parameter', param: 'background' },
    {
      name: 'include',
      body: { input: 'hi', include: ['message.output_text.logprobs'] },
      status: 400,
      code: 'unsupported_parameter',
      param: 'include',
    },
    {
      name: 'a built-in tool',
      body: { input: 'hi', tools: [{ type: 'web_search' }] },
      status: 400,
      code: 'unsupported_parameter',
      param: 'tools[0].type',
    },
    {
      name: 'an image',
      body: { input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'https://example.com/a.png' }] }] },
      status: 400,
      code: 'unsupported_content',
      param: 'input[0].content[0].type',
    },
    { name: 'no input', body: {}, status: 400, code: 'missing_required_parameter', param: 'input' },
    { name: 'an empty input', body: { input: [] }, status: 400, code: 'empty_array', param: 'input' },
    { name: 'a bad role', body: { input: [{ role: 'wizard', content: 'x' }] }, status: 400, code: 'invalid_value', param: 'input[0].role' },
    {
      name: 'a bad tool name',
      body: { input: 'hi', tools: [{ type: 'function', name: 'a b' }] },
      status: 400,
      code: 'invalid_value',
      param: 'tools[0].name',
    },
    {
      name: 'a tool_choice naming no tool',
      body: { input: 'hi', tools: [{ type: 'function', name: 'a' }], tool_choice: { type: 'function', name: 'b' } },
      status: 400,
      code: 'invalid_value',
      param: 'tool_choice',
    },
    {
      name: 'a bad text.format',
      body: { input: 'hi', text: { format: { type: 'yaml' } } },
      status: 400,
      code: 'invalid_value',
      param: 'text.format.type',
    },
    {
      name: 'max_output_tokens of 0',
      body: { input: 'hi', max_output_tokens: 0 },
      status: 400,
      code: 'integer_below_min_value',
      param: 'max_output_tokens',
    },
  ];

  it.each(cases)('$name: $status $code ($param)', async ({ body, status, code, param }) => {
    const response = await post(url(), { model: MODEL_ID, ...body });
    expect(response.status).toBe(status);
    expect(response.json).toEqual({ error: { message: expect.any(String), type: 'invalid_request_error', param, code } });
  });

  it('raises the unsupported field through the client with its param', async () => {
    const error = await apiError(client.responses.create({ model: MODEL_ID, input: 'hi', reasoning: { summary: 'auto' } }));
    expect(error.status).toBe(400);
    expect(error.code).toBe('unsupported_parameter');
    expect(error.param).toBe('reasoning.summary');
  });

  it('answers 404 for GET and DELETE of an unknown id', async () => {
    expect((await fetch(`${url()}/resp_nope`)).status).toBe(404);
    const deleted = await fetch(`${url()}/resp_nope`, { method: 'DELETE' });
    expect(deleted.status).toBe(404);
    expect(((await deleted.json()) as { error: { code: string } }).error.code).toBe('response_not_found');
  });
});
