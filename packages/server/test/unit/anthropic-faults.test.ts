/**
 * The Anthropic Messages route over a scripted fake engine: how the conversation reaches the
 * template (system first, consecutive turns combined, tool results), and how every failure
 * is answered in Anthropic's shape: a full queue (529 overloaded_error), a fault before and
 * after the stream started (an `event: error` then), a template that rejects the
 * conversation, a wrong method, a drain whose time runs out. No addon or model is needed.
 */
import { afterEach, describe, expect, it } from '@jest/globals';

import Anthropic from '@anthropic-ai/sdk';

import { createApp, startServer, type CompletionDone, type RunningServer, type ServingEngine } from '../../src/index.js';
import { closeApp, fakeEngine, listenOnLoopback, type CompleteCall, type Step } from './fake-engine.js';

const engineError = (code: string, message: string) => Object.assign(new Error(message), { name: 'EngineError', code });
const chunk = (text: string): Step => ({ chunk: { text, tokenIds: [text.charCodeAt(0)] } });

const internalErrors: unknown[] = [];

function listen(engine: ServingEngine): Promise<string> {
  return listenOnLoopback(createApp({ engine, modelId: 'fake', onInternalError: (e) => internalErrors.push(e) }));
}

afterEach(async () => {
  await closeApp();
  internalErrors.length = 0;
});

const body = (fields: Record<string, unknown> = {}) => ({
  model: 'fake',
  max_tokens: 8,
  messages: [{ role: 'user', content: 'Hi' }],
  ...fields,
});
const postMessages = (url: string, fields: Record<string, unknown> = {}) =>
  fetch(`${url}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body(fields)) });

/** The `event:` names of an Anthropic stream, and its last event's data. */
function events(text: string): { names: string[]; last: unknown } {
  const frames = text.split('\n\n').filter(Boolean);
  const names = frames.map((f) => /^event: (\S+)\n/.exec(f)?.[1] ?? '?');
  const last = JSON.parse(/\ndata: (.*)$/s.exec(frames.at(-1) ?? '')?.[1] ?? 'null') as unknown;
  return { names, last };
}

describe('the conversation the template sees', () => {
  it('puts system first (text blocks joined by newlines) and combines consecutive turns of one role', async () => {
    const calls: CompleteCall[] = [];
    const url = await listen(fakeEngine(() => [chunk('ok')], calls));
    const response = await postMessages(url, {
      system: [
        { type: 'text', text: 'S1' },
        { type: 'text', text: 'S2' },
      ],
      messages: [
        { role: 'user', content: 'a' },
        {
          role: 'user',
          content: [
            { type: 'text', text: 'b' },
            { type: 'text', text: 'c' },
          ],
        },
        { role: 'assistant', content: 'd' },
        { role: 'user', content: 'e' },
      ],
    });
    expect(response.status).toBe(200);
    // The fake template prints each message's content on its own line; its tokens are the characters.
    expect(String.fromCharCode(...calls[0]!.prompt)).toBe('S1\nS2\na\nb\nc\nd\ne');
    expect(await response.json()).toMatchObject({
      type: 'message',
      content: [{ type: 'text', text: 'ok' }],
      stop_reason: 'max_tokens',
      usage: { input_tokens: 'S1\nS2\na\nb\nc\nd\ne'.length, output_tokens: 2 },
    });
  });

  it('counts the same prompt in count_tokens', async () => {
    const url = await listen(fakeEngine(() => [chunk('ok')]));
    const response = await fetch(`${url}/v1/messages/count_tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'fake', system: 'S', messages: [{ role: 'user', content: 'Hi' }] }),
    });
    expect(await response.json()).toEqual({ input_tokens: 'S\nHi'.length });
  });
});

describe('faults in Anthropic shape', () => {
  it('answers a full queue with 529 overloaded_error and Retry-After, streaming or not', async () => {
    const url = await listen(fakeEngine(() => engineError('OverloadedError', 'the queue is full (64 waiting)')));
    for (const stream of [false, true]) {
      const response = await postMessages(url, { stream });
      expect(response.status).toBe(529);
      expect(response.headers.get('retry-after')).toBe('1');
      expect(await response.json()).toEqual({
        type: 'error',
        error: { type: 'overloaded_error', message: 'the queue is full (64 waiting)' },
      });
    }
    const client = new Anthropic({ baseURL: url, apiKey: 'x', maxRetries: 0 });
    await expect(
      client.messages.create({ model: 'fake', max_tokens: 4, messages: [{ role: 'user', content: 'Hi' }] }),
    ).rejects.toBeInstanceOf(Anthropic.OverloadedError);
  });

  it('answers a fault before the first token with a 500 api_error, and logs it', async () => {
    const url = await listen(fakeEngine(() => [{ fail: new Error('boom') }]));
    const response = await postMessages(url, { stream: true });
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual({ type: 'error', error: { type: 'api_error', message: 'internal server error' } });
    expect(internalErrors).toHaveLength(1);
  });

  it('ends a stream that fails after its first token with an error event, which the SDK raises', async () => {
    const url = await listen(fakeEngine(() => [chunk('a'), chunk('b'), { fail: new Error('boom') }]));
    const response = await postMessages(url, { stream: true });
    expect(response.status).toBe(200);
    const { names, last } = events(await response.text());
    expect(names).toEqual(['message_start', 'content_block_start', 'ping', 'content_block_delta', 'content_block_delta', 'error']);
    expect(last).toEqual({ type: 'error', error: { type: 'api_error', message: 'internal server error' } });

    const client = new Anthropic({ baseURL: url, apiKey: 'x', maxRetries: 0 });
    const stream = client.messages.stream({ model: 'fake', max_tokens: 8, messages: [{ role: 'user', content: 'Hi' }] });
    await expect(stream.finalMessage()).rejects.toBeInstanceOf(Anthropic.APIError);
  });

  it('answers a conversation the template rejects with a 400 invalid_request_error', async () => {
    const url = await listen(fakeEngine(() => [chunk('x')]));
    const response = await postMessages(url, { messages: [{ role: 'user', content: 'forbidden' }] });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
  });

  it('answers another method with a 405 invalid_request_error, and max_tokens past the context with a 400', async () => {
    const url = await listen(fakeEngine(() => [chunk('x')]));
    const get = await fetch(`${url}/v1/messages`);
    expect(get.status).toBe(405);
    expect(get.headers.get('allow')).toBe('POST');
    expect(await get.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    const tooMany = await postMessages(url, { max_tokens: 65 });
    expect(tooMany.status).toBe(400);
    expect(await tooMany.json()).toMatchObject({ error: { message: expect.stringMatching(/^max_tokens: 65 > 64/) } });
  });
});

describe('a client that leaves', () => {
  it('cancels its generation mid-stream, and the request is reported done with clientGone', async () => {
    const calls: CompleteCall[] = [];
    const engine = fakeEngine(() => [chunk('a'), { waitForAbort: true }], calls);
    const done: CompletionDone[] = [];
    const url = await listenOnLoopback(createApp({ engine, modelId: 'fake', onCompletionDone: (d) => done.push(d) }));
    const controller = new AbortController();
    const response = await fetch(`${url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body({ stream: true })),
      signal: controller.signal,
    });
    const reader = response.body!.getReader();
    await reader.read(); // the stream has begun
    controller.abort();
    await reader.closed.catch(() => undefined);
    while (done.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(calls[0]!.signal.aborted).toBe(true);
    expect(done[0]).toMatchObject({ endpoint: '/v1/messages', stream: true, model: 'fake', clientGone: true });
  });
});

describe('refusals before the route', () => {
  it('answers a body over the limit with 413 request_too_large, and a missing API key with 401 authentication_error', async () => {
    const engine = fakeEngine(() => [chunk('x')]);
    const url = await listenOnLoopback(createApp({ engine, modelId: 'fake', apiKey: 'k', limits: { maxBodyBytes: 64 } }));
    const headers = { 'content-type': 'application/json', 'x-api-key': 'k' };
    const large = await fetch(`${url}/v1/messages`, { method: 'POST', headers, body: JSON.stringify(body({ system: 'x'.repeat(100) })) });
    expect(large.status).toBe(413);
    expect(await large.json()).toMatchObject({ type: 'error', error: { type: 'request_too_large' } });
    const anonymous = await fetch(`${url}/v1/messages/count_tokens`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toEqual({
      type: 'error',
      error: { type: 'authentication_error', message: expect.stringMatching(/^no API key provided/) },
    });
  });
});

describe('a drain whose time runs out', () => {
  let server: RunningServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('ends a running message with 529 overloaded_error, and a running stream with an error event', async () => {
    let started = 0;
    let bothStarted!: () => void;
    const ready = new Promise<void>((resolve) => (bothStarted = resolve));
    const engine = fakeEngine(() => {
      if (++started === 2) bothStarted();
      return [chunk('a'), { waitForAbort: true }];
    });
    server = await startServer({ engine, modelId: 'fake', port: 0, drainTimeoutMs: 200, onInternalError: () => undefined });
    const whole = postMessages(server.url);
    const stream = postMessages(server.url, { stream: true }).then((r) => r.text());
    await ready;
    await server.close();
    server = undefined;
    const answer = await whole;
    expect(answer.status).toBe(529);
    expect(await answer.json()).toMatchObject({ type: 'error', error: { type: 'overloaded_error' } });
    const { names, last } = events(await stream);
    expect(names.at(-1)).toBe('error');
    expect(last).toMatchObject({ type: 'error', error: { type: 'overloaded_error' } });
  });
});
