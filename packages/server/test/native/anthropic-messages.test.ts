/**
 * `/v1/messages` and `/v1/messages/count_tokens` as the official `@anthropic-ai/sdk` client
 * sees them, on the default model (SmolLM2-135M). Expected texts and token counts come from
 * our own engine API in the same process (greedy decoding), never hard-coded.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import Anthropic from '@anthropic-ai/sdk';
import type { ChatMessage, ChatTool, Engine, JsonObject } from '@mistralrs/core';

import type { RunningServer } from '../../src/index.js';
import { loadDefaultEngine, MODEL_ID, post, serve } from './helpers.js';

let engine: Engine;
let server: RunningServer;
let client: Anthropic;

const question = 'What is the capital of France?';

beforeAll(async () => {
  engine = await loadDefaultEngine();
  server = await serve(engine);
  client = new Anthropic({ baseURL: server.url, apiKey: 'unused', maxRetries: 0 });
}, 300_000);

afterAll(async () => {
  await server?.close();
  engine?.close();
});

/** The text of a message's text blocks. */
function textOf(message: Anthropic.Message): string {
  return message.content.map((block) => (block.type === 'text' ? block.text : '')).join('');
}

/** Anthropic's server-sent events, each `event:` line paired with its `data:` JSON. */
function anthropicEvents(text: string): Array<{ event: string; data: { type: string; [key: string]: unknown } }> {
  return text
    .split('\n\n')
    .filter((frame) => frame.length > 0)
    .map((frame) => {
      const match = /^event: (\S+)\ndata: (.*)$/s.exec(frame);
      if (!match) throw new Error(`not an Anthropic SSE event: ${JSON.stringify(frame)}`);
      return { event: match[1]!, data: JSON.parse(match[2]!) as { type: string } };
    });
}

describe('messages', () => {
  it('answers a plain message with what engine.chat generates', async () => {
    const reference = await engine.chat({ messages: [{ role: 'user', content: question }], maxTokens: 12 }).result;
    const message = await client.messages.create({ model: MODEL_ID, max_tokens: 12, messages: [{ role: 'user', content: question }] });

    expect(message.id).toMatch(/^msg_[0-9a-f]{24}$/);
    expect(message.type).toBe('message');
    expect(message.role).toBe('assistant');
    expect(message.model).toBe(MODEL_ID);
    expect(message.content).toEqual([{ type: 'text', text: reference.text }]);
    expect(message.stop_reason).toBe(reference.finishReason === 'length' ? 'max_tokens' : 'end_turn');
    expect(message.stop_sequence).toBeNull();
    expect(message.usage).toEqual({ input_tokens: reference.promptTokenIds.length, output_tokens: reference.tokenIds.length });
  });

  it('puts the system prompt (a string or text blocks) first', async () => {
    const system = 'You are a pirate. Answer in one sentence.';
    const reference = await engine.chat({
      messages: [
        { role: 'system', content: system },
        { role: 'user', content: question },
      ],
      maxTokens: 15,
    }).result;
    const asString = await client.messages.create({
      model: MODEL_ID,
      max_tokens: 15,
      system,
      messages: [{ role: 'user', content: question }],
    });
    const asBlocks = await client.messages.create({
      model: MODEL_ID,
      max_tokens: 15,
      system: [{ type: 'text', text: system, cache_control: { type: 'ephemeral' } }],
      messages: [{ role: 'user', content: [{ type: 'text', text: question }] }],
    });
    expect(textOf(asString)).toBe(reference.text);
    expect(textOf(asBlocks)).toBe(reference.text);
    expect(asString.usage.input_tokens).toBe(reference.promptTokenIds.length);
  });

  it('holds a multi-turn conversation', async () => {
    const turns: ChatMessage[] = [
      { role: 'user', content: 'My name is Ada.' },
      { role: 'assistant', content: 'Nice to meet you, Ada!' },
      { role: 'user', content: 'What is my name?' },
    ];
    const reference = await engine.chat({ messages: turns, maxTokens: 12 }).result;
    const message = await client.messages.create({
      model: MODEL_ID,
      max_tokens: 12,
      messages: [
        { role: 'user', content: 'My name is Ada.' },
        { role: 'assistant', content: [{ type: 'text', text: 'Nice to meet you, Ada!' }] },
        { role: 'user', content: 'What is my name?' },
      ],
    });
    expect(textOf(message)).toBe(reference.text);
    expect(message.usage.input_tokens).toBe(reference.promptTokenIds.length);
  });

  it('stops at a stop sequence: stop_reason stop_sequence, the sequence named, the text before it', async () => {
    const reference = await engine.chat({ messages: [{ role: 'user', content: question }], maxTokens: 12 }).result;
    const at = Math.floor(reference.text.length / 2);
    const stop = reference.text.slice(at, at + 3);
    const expected = reference.text.slice(0, reference.text.indexOf(stop));
    const message = await client.messages.create({
      model: MODEL_ID,
      max_tokens: 12,
      stop_sequences: ['@@@', stop],
      messages: [{ role: 'user', content: question }],
    });
    expect(textOf(message)).toBe(expected);
    expect(message.stop_reason).toBe('stop_sequence');
    expect(message.stop_sequence).toBe(stop);
  });

  it('continues a prefilled assistant turn: the turn is cut after its text, the prefill left out of the answer', async () => {
    const prefill = 'The capital of France is';
    const turns: ChatMessage[] = [
      { role: 'user', content: question },
      { role: 'assistant', content: prefill },
    ];
    // transformers' continue_final_message: render the whole turn, cut right after its text.
    const rendered = await engine.chatTemplate!.render({ messages: turns, addGenerationPrompt: false });
    expect(rendered.endsWith(prefill)).toBe(false); // the template closes the turn: the cut matters
    const ids = await engine.encodeChatPromptAsync(rendered.slice(0, rendered.lastIndexOf(prefill) + prefill.length));
    const reference = await engine.complete({ prompt: ids, maxTokens: 8 }).result;
    const message = await client.messages.create({
      model: MODEL_ID,
      max_tokens: 8,
      messages: [
        { role: 'user', content: question },
        { role: 'assistant', content: [{ type: 'text', text: prefill }] },
      ],
    });
    expect(reference.text.length).toBeGreaterThan(0);
    expect(textOf(message)).toBe(reference.text);
    expect(message.usage.input_tokens).toBe(ids.length);
    const counted = await client.messages.countTokens({ model: MODEL_ID, messages: turns as Anthropic.MessageParam[] });
    expect(counted.input_tokens).toBe(ids.length);
  });

  it('stops at max_tokens: stop_reason max_tokens', async () => {
    const message = await client.messages.create({ model: MODEL_ID, max_tokens: 3, messages: [{ role: 'user', content: question }] });
    expect(message.stop_reason).toBe('max_tokens');
    expect(message.stop_sequence).toBeNull();
    expect(message.usage.output_tokens).toBe(3);
  });
});

describe('streaming', () => {
  const params = { model: MODEL_ID, max_tokens: 12, messages: [{ role: 'user' as const, content: question }] };

  it('client.messages.stream gives the same message as the whole answer', async () => {
    const whole = await client.messages.create(params);
    const stream = client.messages.stream(params);
    const types: string[] = [];
    let text = '';
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
    }
    const final = await stream.finalMessage();
    expect(text).toBe(textOf(whole));
    // The SDK adds fields of its own (parsed_output) to the message it assembles.
    const { content, model, role, stop_reason, stop_sequence, type, usage } = final;
    const { id: _id, ...rest } = whole;
    expect({ content, model, role, stop_reason, stop_sequence, type, usage }).toEqual(rest);
    expect(types[0]).toBe('message_start');
    expect(types[1]).toBe('content_block_start');
    expect(new Set(types.slice(2, -3))).toEqual(new Set(['content_block_delta']));
    expect(types.slice(-3)).toEqual(['content_block_stop', 'message_delta', 'message_stop']);
  });

  it('create({stream: true}) streams the events in order with the greedy text', async () => {
    const whole = await client.messages.create(params);
    const stream = await client.messages.create({ ...params, stream: true });
    const events: Anthropic.RawMessageStreamEvent[] = [];
    for await (const event of stream) events.push(event);
    const text = events.map((e) => (e.type === 'content_block_delta' && e.delta.type === 'text_delta' ? e.delta.text : '')).join('');
    expect(text).toBe(textOf(whole));
    const start = events[0];
    if (start?.type !== 'message_start') throw new Error('the stream does not open with message_start');
    expect(start.message).toMatchObject({ type: 'message', role: 'assistant', model: MODEL_ID, content: [], stop_reason: null });
    expect(start.message.usage.input_tokens).toBe(whole.usage.input_tokens);
    const delta = events.at(-2);
    if (delta?.type !== 'message_delta') throw new Error('no message_delta before message_stop');
    expect(delta.delta).toMatchObject({ stop_reason: whole.stop_reason, stop_sequence: null });
    expect(delta.usage.output_tokens).toBe(whole.usage.output_tokens);
    expect(events.at(-1)?.type).toBe('message_stop');
  });

  it('frames each event with an event: line naming its type, and pings after the first block opens', async () => {
    const response = await post(`${server.url}/v1/messages`, { ...params, stream: true });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const events = anthropicEvents(response.text);
    for (const { event, data } of events) expect(data.type).toBe(event);
    const names = events.map((e) => e.event);
    expect(names.slice(0, 3)).toEqual(['message_start', 'content_block_start', 'ping']);
    expect(new Set(names.slice(3, -3))).toEqual(new Set(['content_block_delta']));
    expect(names.slice(-3)).toEqual(['content_block_stop', 'message_delta', 'message_stop']);
  });

  it('streams with a stop sequence: message_delta names it', async () => {
    const whole = await client.messages.create(params);
    const text = textOf(whole);
    const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 3);
    const stream = client.messages.stream({ ...params, stop_sequences: [stop] });
    const final = await stream.finalMessage();
    expect(textOf(final)).toBe(text.slice(0, text.indexOf(stop)));
    expect(final.stop_reason).toBe('stop_sequence');
    expect(final.stop_sequence).toBe(stop);
  });
});

const weatherTool: Anthropic.Tool = {
  name: 'get_weather',
  description: 'Get the current weather in a city',
  input_schema: {
    type: 'object',
    properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
    required: ['city'],
  },
};
const timeTool: Anthropic.Tool = {
  name: 'get_time',
  description: 'Get the current time in a timezone',
  input_schema: { type: 'object', properties: { timezone: { type: 'string' } }, required: ['timezone'] },
};

/** The same tools as the chat templates see them (what the route turns Anthropic's into). */
const chatTools: ChatTool[] = [weatherTool, timeTool].map((t) => ({
  type: 'function',
  function: { name: t.name, description: t.description!, parameters: t.input_schema as unknown as JsonObject },
}));

describe('tools', () => {
  it('calls the tool tool_choice names: a tool_use block with its input parsed', async () => {
    const message = await client.messages.create({
      model: MODEL_ID,
      max_tokens: 100,
      tools: [weatherTool, timeTool],
      tool_choice: { type: 'tool', name: 'get_weather' },
      messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
    });
    expect(message.stop_reason).toBe('tool_use');
    expect(message.stop_sequence).toBeNull();
    const uses = message.content.filter((b) => b.type === 'tool_use');
    expect(uses).toHaveLength(1);
    const use = uses[0]!;
    if (use.type !== 'tool_use') throw new Error('not a tool_use block');
    expect(use.id).toMatch(/^toolu_[0-9a-f]{24}$/);
    expect(use.name).toBe('get_weather');
    expect(typeof (use.input as { city?: unknown }).city).toBe('string');
  }, 60_000);

  it('streams a call: a tool_use block, its input as input_json_delta, stop_reason tool_use', async () => {
    const stream = client.messages.stream({
      model: MODEL_ID,
      max_tokens: 100,
      tools: [weatherTool],
      tool_choice: { type: 'any' },
      messages: [{ role: 'user', content: 'Weather in Rome, please.' }],
    });
    const deltas: string[] = [];
    for await (const event of stream) {
      if (event.type === 'content_block_delta' && event.delta.type === 'input_json_delta') deltas.push(event.delta.partial_json);
    }
    const final = await stream.finalMessage();
    expect(final.stop_reason).toBe('tool_use');
    const use = final.content.find((b) => b.type === 'tool_use');
    if (use?.type !== 'tool_use') throw new Error('no tool_use block');
    expect(use.name).toBe('get_weather');
    expect(JSON.parse(deltas.join(''))).toEqual(use.input);
    expect(typeof (use.input as { city?: unknown }).city).toBe('string');
  }, 60_000);

  it('takes the tool_result back and answers as engine.chat does with the same history', async () => {
    const first = await client.messages.create({
      model: MODEL_ID,
      max_tokens: 100,
      tools: [weatherTool, timeTool],
      tool_choice: { type: 'tool', name: 'get_weather' },
      messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
    });
    const use = first.content.find((b) => b.type === 'tool_use');
    if (use?.type !== 'tool_use') throw new Error('no tool_use block');
    const result = JSON.stringify({ temperature: 18, unit: 'celsius', sky: 'sunny' });
    const second = await client.messages.create({
      model: MODEL_ID,
      max_tokens: 40,
      tools: [weatherTool, timeTool],
      messages: [
        { role: 'user', content: 'What is the weather in Paris?' },
        { role: 'assistant', content: first.content },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: [{ type: 'text', text: result }] }] },
      ],
    });
    expect(second.content.every((b) => b.type === 'text')).toBe(true);

    const history: ChatMessage[] = [
      { role: 'user', content: 'What is the weather in Paris?' },
      {
        role: 'assistant',
        content: '',
        tool_calls: [{ id: use.id, type: 'function', function: { name: use.name, arguments: JSON.stringify(use.input) } }],
      },
      { role: 'tool', tool_call_id: use.id, name: use.name, content: result },
    ];
    const reference = await engine.chat({ messages: history, tools: chatTools, maxTokens: 40 }).result;
    expect(reference.text.length).toBeGreaterThan(0);
    expect(textOf(second)).toBe(reference.text);
    expect(second.usage.input_tokens).toBe(reference.promptTokenIds.length);
  }, 120_000);

  it('with tool_choice none, answers as without tools', async () => {
    const messages = [{ role: 'user' as const, content: question }];
    const without = await client.messages.create({ model: MODEL_ID, max_tokens: 10, messages });
    const none = await client.messages.create({
      model: MODEL_ID,
      max_tokens: 10,
      messages,
      tools: [weatherTool],
      tool_choice: { type: 'none' },
    });
    expect(none.content).toEqual(without.content);
  });
});

describe('count_tokens', () => {
  it('counts the prompt /v1/messages gives the model', async () => {
    const system = 'Be brief.';
    const reference = await engine.chat({
      messages: [
        { role: 'system', content: system },
        { role: 'user', content: question },
      ],
      maxTokens: 1,
    }).result;
    const counted = await client.messages.countTokens({ model: MODEL_ID, system, messages: [{ role: 'user', content: question }] });
    expect(counted).toEqual({ input_tokens: reference.promptTokenIds.length });
  });

  it('counts tools too: equal to the input_tokens of the message', async () => {
    const request = { model: MODEL_ID, tools: [weatherTool, timeTool], messages: [{ role: 'user' as const, content: 'Weather in Oslo?' }] };
    const counted = await client.messages.countTokens(request);
    const message = await client.messages.create({ ...request, max_tokens: 2 });
    expect(counted.input_tokens).toBe(message.usage.input_tokens);
    const withoutTools = await client.messages.countTokens({ model: MODEL_ID, messages: request.messages });
    expect(counted.input_tokens).toBeGreaterThan(withoutTools.input_tokens);
  });
});

describe('errors in Anthropic shape', () => {
  /** The SDK's error for a request (as sent, past its types). */
  async function refusal(body: Record<string, unknown>): Promise<InstanceType<typeof Anthropic.APIError>> {
    try {
      await client.messages.create(body as unknown as Anthropic.MessageCreateParamsNonStreaming);
    } catch (error) {
      if (error instanceof Anthropic.APIError) return error;
      throw error;
    }
    throw new Error('the request was not refused');
  }
  const valid = { model: MODEL_ID, max_tokens: 5, messages: [{ role: 'user', content: 'Hi' }] };

  it.each([
    ['missing max_tokens', { model: MODEL_ID, messages: valid.messages }, /^max_tokens: Field required/],
    ['a bad role', { ...valid, messages: [{ role: 'robot', content: 'Hi' }] }, /^messages\.0\.role: /],
    ['an unknown field', { ...valid, frobnicate: true }, /^frobnicate: Extra inputs are not permitted/],
    [
      'a thinking budget not below max_tokens',
      { ...valid, thinking: { type: 'enabled', budget_tokens: 1024 } },
      /^thinking\.budget_tokens: must be less than max_tokens/,
    ],
    [
      'thinking on a model whose template does not think',
      { ...valid, max_tokens: 2048, thinking: { type: 'enabled', budget_tokens: 1024 } },
      /^thinking: this model's chat template does not think/,
    ],
    [
      'an image',
      { ...valid, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'url', url: 'http://x/y.png' } }] }] },
      /^messages\.0\.content\.0\.type: image blocks are not supported/,
    ],
    ['mcp_servers', { ...valid, mcp_servers: [{ type: 'url', url: 'http://x', name: 'x' }] }, /^mcp_servers: is not supported/],
    ['temperature above 1', { ...valid, temperature: 1.5 }, /^temperature: must be at most 1/],
    [
      'a prefill ending in whitespace',
      { ...valid, messages: [...valid.messages, { role: 'assistant', content: 'The ' }] },
      /^messages\.1\.content: final assistant content cannot end with trailing whitespace/,
    ],
    [
      'a tool_result naming no call',
      { ...valid, messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_x', content: 'r' }] }] },
      /tool_use_id: "toolu_x" names no tool_use/,
    ],
    ['tool_choice naming no tool', { ...valid, tools: [weatherTool], tool_choice: { type: 'tool', name: 'nope' } }, /^tool_choice\.name: /],
  ])('%s is a BadRequestError (400 invalid_request_error)', async (_name, body, message) => {
    const error = await refusal(body);
    expect(error).toBeInstanceOf(Anthropic.BadRequestError);
    expect(error.status).toBe(400);
    expect(error.error).toEqual({ type: 'error', error: { type: 'invalid_request_error', message: expect.stringMatching(message) } });
  });

  it('an unknown model is a NotFoundError (404 not_found_error)', async () => {
    const error = await refusal({ ...valid, model: 'claude-none' });
    expect(error).toBeInstanceOf(Anthropic.NotFoundError);
    expect(error.type).toBe('not_found_error');
  });

  it('a body that is not JSON, and an unknown path below /v1/messages, answer in Anthropic shape', async () => {
    const broken = await post(`${server.url}/v1/messages`, '{"model":', { 'content-type': 'application/json' });
    expect(broken.status).toBe(400);
    expect(broken.json).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    const missing = await post(`${server.url}/v1/messages/nope`, valid);
    expect(missing.status).toBe(404);
    expect(missing.json).toMatchObject({ type: 'error', error: { type: 'not_found_error' } });
  });

  it('takes the API key as x-api-key or as a Bearer token; a wrong one is an AuthenticationError', async () => {
    const guarded = await serve(engine, { apiKey: 'sk-ant-test' });
    try {
      const bearer = new Anthropic({ baseURL: guarded.url, apiKey: 'sk-ant-test', maxRetries: 0 });
      const counted = await bearer.messages.countTokens({ model: MODEL_ID, messages: [{ role: 'user', content: 'Hi' }] });
      expect(counted.input_tokens).toBeGreaterThan(0);

      const header = await post(
        `${guarded.url}/v1/messages/count_tokens`,
        { model: MODEL_ID, messages: [{ role: 'user', content: 'Hi' }] },
        {
          'content-type': 'application/json',
          'x-api-key': 'sk-ant-test',
        },
      );
      expect(header.json).toEqual(counted);

      const wrong = new Anthropic({ baseURL: guarded.url, apiKey: 'sk-ant-other', maxRetries: 0 });
      const error = await wrong.messages
        .create({ model: MODEL_ID, max_tokens: 2, messages: [{ role: 'user', content: 'Hi' }] })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(Anthropic.AuthenticationError);
      expect((error as InstanceType<typeof Anthropic.APIError>).error).toEqual({
        type: 'error',
        error: { type: 'authentication_error', message: 'incorrect API key provided' },
      });
    } finally {
      await guarded.close();
    }
  });
});
