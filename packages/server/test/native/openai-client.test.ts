/**
 * The server as the official `openai` client sees it, on the default model (SmolLM2-135M).
 * Every expected text comes from our own engine API in the same process, never hard-coded.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { EventEmitter, once } from 'node:events';

import type { ChatMessage, Engine } from '@mistralrs/core';
import OpenAI from 'openai';

import type { CompletionDone, RunningServer } from '../../src/index.js';
import { loadDefaultEngine, MODEL_ID, post, serve, sseData } from './helpers.js';

let engine: Engine;
let server: RunningServer;
let client: OpenAI;
const finished = new EventEmitter();

const messages: ChatMessage[] = [{ role: 'user', content: 'What is the capital of France?' }];

beforeAll(async () => {
  engine = await loadDefaultEngine();
  server = await serve(engine, { onCompletionDone: (done) => finished.emit('done', done) });
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 300_000);

afterAll(async () => {
  await server?.close();
  engine?.close();
});

describe('chat completions', () => {
  it('answers greedily with exactly what engine.chat generates', async () => {
    const reference = await engine.chat({ messages, maxTokens: 12 }).result;
    const response = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 12, temperature: 0 });

    expect(response.object).toBe('chat.completion');
    expect(response.id).toMatch(/^chatcmpl-[0-9a-f]{24}$/);
    expect(response.model).toBe(MODEL_ID);
    expect(Number.isInteger(response.created)).toBe(true);
    expect(response.choices).toHaveLength(1);
    const [choice] = response.choices;
    expect(choice!.index).toBe(0);
    expect(choice!.message).toEqual({ role: 'assistant', content: reference.text });
    expect(choice!.finish_reason).toBe(reference.finishReason);
    expect(choice!.logprobs).toBeNull();
    expect(response.usage).toEqual({
      prompt_tokens: reference.promptTokenIds.length,
      completion_tokens: reference.tokenIds.length,
      total_tokens: reference.promptTokenIds.length + reference.tokenIds.length,
    });
  });

  it('streams the same text: a role delta first, content deltas, a finish chunk, then usage', async () => {
    const whole = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 10 });
    const stream = await client.chat.completions.create({
      model: MODEL_ID,
      messages,
      max_tokens: 10,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);

    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '' });
    const ids = new Set(chunks.map((c) => c.id));
    expect(ids.size).toBe(1);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === MODEL_ID)).toBe(true);
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe(whole.choices[0]!.message.content);

    const usageChunk = chunks.at(-1)!;
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage).toEqual(whole.usage);
    const finish = chunks.at(-2)!;
    expect(finish.choices[0]).toMatchObject({ index: 0, delta: {}, finish_reason: whole.choices[0]!.finish_reason });
  });

  it('frames the raw stream as OpenAI does and ends it with [DONE]', async () => {
    const response = await post(`${server.url}/v1/chat/completions`, { messages, max_tokens: 4, stream: true });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(response.text.endsWith('data: [DONE]\n\n')).toBe(true);
    const events = sseData(response.text);
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((data) => JSON.parse(data));
    // Without include_usage there is no usage field at all.
    expect(chunks.every((c) => !('usage' in c))).toBe(true);
    expect(chunks.at(-1).choices[0].finish_reason).toBe('length');
  });

  it('returns logprobs with bytes and top alternatives, the greedy token first', async () => {
    const response = await client.chat.completions.create({
      model: MODEL_ID,
      messages,
      max_tokens: 5,
      logprobs: true,
      top_logprobs: 3,
    });
    const content = response.choices[0]!.logprobs!.content!;
    expect(content).toHaveLength(response.usage!.completion_tokens);
    for (const entry of content) {
      expect(entry.logprob).toBeLessThanOrEqual(0);
      expect(Buffer.from(entry.bytes!).toString('utf8')).toBe(entry.token);
      expect(entry.top_logprobs).toHaveLength(3);
      expect(entry.top_logprobs[0]!.token).toBe(entry.token);
      expect(entry.top_logprobs[0]!.logprob).toBeCloseTo(entry.logprob, 5);
    }
    expect(content.map((e) => e.token).join('')).toBe(response.choices[0]!.message.content);
  });

  it('runs n choices: identical when greedy; seeded choice i uses seed + i', async () => {
    const greedy = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 6, n: 2 });
    expect(greedy.choices.map((c) => c.index)).toEqual([0, 1]);
    expect(greedy.choices[0]!.message.content).toBe(greedy.choices[1]!.message.content);
    expect(greedy.usage!.completion_tokens).toBe(12);

    const sampling = { model: MODEL_ID, messages, max_tokens: 8, temperature: 1.5, seed: 1234 };
    const pair = await client.chat.completions.create({ ...sampling, n: 2 });
    const first = await client.chat.completions.create({ ...sampling, seed: 1234 });
    const second = await client.chat.completions.create({ ...sampling, seed: 1235 });
    expect(pair.choices[0]!.message.content).toBe(first.choices[0]!.message.content);
    expect(pair.choices[1]!.message.content).toBe(second.choices[0]!.message.content);
  });

  it('stops at a stop string, leaving it out', async () => {
    const reference = await engine.chat({ messages, maxTokens: 12 }).result;
    // A stop string from the middle of the greedy answer: the text ends just before it.
    const at = Math.floor(reference.text.length / 2);
    const stop = reference.text.slice(at, at + 3);
    const expected = reference.text.slice(0, reference.text.indexOf(stop));
    const response = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 12, stop: ['@@@', stop] });
    expect(response.choices[0]!.message.content).toBe(expected);
    expect(response.choices[0]!.finish_reason).toBe('stop');
  });

  it('renders a history with a tool call (null content) and its result', async () => {
    const history: OpenAI.ChatCompletionMessageParam[] = [
      { role: 'user', content: 'What is the weather in Paris?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'weather', arguments: '{"city":"Paris"}' } }],
      },
      { role: 'tool', tool_call_id: 'call_1', content: 'sunny, 21 C' },
    ];
    const response = await client.chat.completions.create({ model: MODEL_ID, messages: history, max_tokens: 2 });
    expect(response.choices[0]!.finish_reason).toBe('length');
  });

  it('cancels a generation whose client leaves mid-stream; the next request completes', async () => {
    // Banning the end-of-text tokens makes this a long generation unless it is cancelled.
    const logitBias = Object.fromEntries(engine.tokenizer.eosIds.map((id) => [String(id), -100]));
    const stream = await client.chat.completions.create({
      model: MODEL_ID,
      messages: [{ role: 'user', content: 'Tell me a very long story.' }],
      max_tokens: 4000,
      logit_bias: logitBias,
      stream: true,
    });
    const done = once(finished, 'done') as Promise<[CompletionDone]>;
    let received = 0;
    for await (const _chunk of stream) {
      if (++received === 3) break; // the client aborts its request here
    }
    const [cancelled] = await done;
    expect(cancelled.clientGone).toBe(true);
    expect(cancelled.finishReasons).toEqual(['cancelled']);
    expect(cancelled.usage.completion_tokens).toBeLessThan(4000);

    const next = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 3 });
    expect(next.choices[0]!.finish_reason).toBe('length');
    expect(next.usage!.completion_tokens).toBe(3);
  });
});

describe('text completions', () => {
  const prompt = 'The capital of France is';

  it('completes a string prompt as engine.complete does', async () => {
    const reference = await engine.complete({ prompt, maxTokens: 8 }).result;
    const response = await client.completions.create({ model: MODEL_ID, prompt, max_tokens: 8 });
    expect(response.object).toBe('text_completion');
    expect(response.id).toMatch(/^cmpl-/);
    expect(response.choices[0]).toMatchObject({ index: 0, text: reference.text, finish_reason: 'length', logprobs: null });
    expect(response.usage).toEqual({
      prompt_tokens: reference.promptTokenIds.length,
      completion_tokens: 8,
      total_tokens: reference.promptTokenIds.length + 8,
    });
  });

  it('takes token ids as the prompt, and a list of prompts', async () => {
    const ids = Array.from(engine.tokenizer.encode(prompt));
    const fromText = await client.completions.create({ model: MODEL_ID, prompt, max_tokens: 6 });
    const fromIds = await client.completions.create({ model: MODEL_ID, prompt: ids, max_tokens: 6 });
    expect(fromIds.choices[0]!.text).toBe(fromText.choices[0]!.text);

    const other = 'Two plus two equals';
    const reference = await engine.complete({ prompt: other, maxTokens: 6 }).result;
    const both = await client.completions.create({ model: MODEL_ID, prompt: [prompt, other], max_tokens: 6 });
    expect(both.choices.map((c) => [c.index, c.text])).toEqual([
      [0, fromText.choices[0]!.text],
      [1, reference.text],
    ]);
    expect(both.usage!.prompt_tokens).toBe(ids.length + reference.promptTokenIds.length);
  });

  it('returns legacy logprobs: tokens, token_logprobs, top_logprobs, text_offset', async () => {
    const response = await client.completions.create({ model: MODEL_ID, prompt, max_tokens: 5, logprobs: 2 });
    const { text, logprobs } = response.choices[0]!;
    expect(logprobs!.tokens!.join('')).toBe(text);
    expect(logprobs!.token_logprobs).toHaveLength(5);
    expect(logprobs!.top_logprobs!.every((top) => Object.keys(top).length <= 2 && Object.keys(top).length >= 1)).toBe(true);
    let offset = 0;
    logprobs!.tokens!.forEach((token, i) => {
      expect(logprobs!.text_offset![i]).toBe(offset);
      offset += token.length;
    });
  });

  it('streams text chunks that add up to the whole', async () => {
    const whole = await client.completions.create({ model: MODEL_ID, prompt, max_tokens: 6 });
    const stream = await client.completions.create({ model: MODEL_ID, prompt, max_tokens: 6, stream: true });
    let text = '';
    let finish: string | null = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]!.text;
      finish = chunk.choices[0]!.finish_reason ?? finish;
    }
    expect(text).toBe(whole.choices[0]!.text);
    expect(finish).toBe('length');
  });
});

describe('models, health, tokenize', () => {
  it('lists and retrieves the served model', async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => [m.id, m.object, m.owned_by])).toEqual([[MODEL_ID, 'model', 'mistralrs']]);
    const model = await client.models.retrieve(MODEL_ID);
    expect(model.id).toBe(MODEL_ID);
    await expect(client.models.retrieve('other-model')).rejects.toMatchObject({ status: 404, code: 'model_not_found' });
  });

  it('reports health', async () => {
    const response = await fetch(`${server.url}/health`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok', model: MODEL_ID });
  });

  it('tokenizes and detokenizes: a round trip, and the chat prompt the completion counted', async () => {
    const text = 'Hello world, how are you?';
    const tokenized = await post(`${server.url}/tokenize`, { prompt: text, add_special_tokens: false, return_token_strs: true });
    expect(tokenized.status).toBe(200);
    const { tokens, count, max_model_len, token_strs } = tokenized.json as {
      tokens: number[];
      count: number;
      max_model_len: number;
      token_strs: string[];
    };
    expect(tokens).toEqual(Array.from(engine.tokenizer.encode(text, { addSpecialTokens: false })));
    expect(count).toBe(tokens.length);
    expect(max_model_len).toBe(Math.min(engine.info.contextLength, engine.info.nBlocks * engine.info.blockSize));
    expect(token_strs.join('')).toBe(text);

    const detokenized = await post(`${server.url}/detokenize`, { tokens });
    expect(detokenized.json).toEqual({ prompt: text });

    const chat = await post(`${server.url}/tokenize`, { messages });
    const completion = await client.chat.completions.create({ model: MODEL_ID, messages, max_tokens: 1 });
    expect((chat.json as { count: number }).count).toBe(completion.usage!.prompt_tokens);
  });

  it('accepts "default" and no model at all as the served model', async () => {
    const named = await client.chat.completions.create({ model: 'default', messages, max_tokens: 2 });
    expect(named.model).toBe(MODEL_ID);
    const unnamed = await post(`${server.url}/v1/chat/completions`, { messages, max_tokens: 2 });
    expect(unnamed.status).toBe(200);
    expect((unnamed.json as { model: string }).model).toBe(MODEL_ID);
  });
});
