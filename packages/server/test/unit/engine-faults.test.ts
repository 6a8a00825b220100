/**
 * How the server answers what the engine does: a full queue (429 + Retry-After), a closed
 * engine (503), a template that rejects the conversation (400), a fault before and after the
 * stream started, and clients that leave while their request waits. A scripted fake engine
 * plays each case, so no addon or model is needed.
 */
import { afterEach, describe, expect, it } from '@jest/globals';

import OpenAI from 'openai';

import { createApp, type ServingEngine } from '../../src/index.js';
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

const messages = [{ role: 'user' as const, content: 'Hi' }];
const postChat = (url: string, fields: Record<string, unknown> = {}, signal?: AbortSignal) =>
  fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages, ...fields }),
    ...(signal ? { signal } : {}),
  });

describe('engine faults', () => {
  it('answers a full queue with 429, Retry-After and a rate_limit_error, streaming or not', async () => {
    const url = await listen(fakeEngine(() => engineError('OverloadedError', 'the queue is full (64 waiting)')));
    for (const stream of [false, true]) {
      const response = await postChat(url, { stream });
      expect(response.status).toBe(429);
      expect(response.headers.get('retry-after')).toBe('1');
      expect(await response.json()).toEqual({
        error: { message: 'the queue is full (64 waiting)', type: 'rate_limit_error', param: null, code: 'server_overloaded' },
      });
    }
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'x', maxRetries: 0 });
    await expect(client.chat.completions.create({ model: 'fake', messages })).rejects.toBeInstanceOf(OpenAI.RateLimitError);
  });

  it('answers 429 too when the queue refuses after submission, before the first chunk of a stream', async () => {
    const url = await listen(fakeEngine(() => [{ fail: engineError('OverloadedError', 'full') }]));
    const response = await postChat(url, { stream: true });
    expect(response.status).toBe(429);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  });

  it('answers a closed engine with 503', async () => {
    const url = await listen(fakeEngine(() => [{ fail: engineError('EngineClosedError', 'the engine is closed') }]));
    const response = await postChat(url);
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ error: { code: 'server_shutting_down' } });
  });

  it("answers a template's raise_exception with 400 on messages", async () => {
    const url = await listen(fakeEngine(() => [chunk('a')]));
    const response = await postChat(url, { messages: [{ role: 'user', content: 'forbidden' }] });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: { param: 'messages', message: expect.stringContaining('roles must alternate') } });
  });

  it('answers a conversation the template cannot render with 422, not a retried 5xx', async () => {
    const url = await listen(fakeEngine(() => [chunk('a')]));
    const response = await postChat(url, { messages: [{ role: 'user', content: 'unrenderable' }] });
    expect(response.status).toBe(422);
    expect(await response.json()).toMatchObject({ error: { param: 'messages', code: 'template_render_failed' } });
    expect(internalErrors).toHaveLength(0);
  });

  it('answers an internal fault with 500 without leaking its message, and reports it', async () => {
    const url = await listen(fakeEngine(() => [{ fail: new Error('secret /home/user/model.gguf detail') }]));
    const response = await postChat(url);
    expect(response.status).toBe(500);
    const body = await response.json();
    expect(body).toEqual({ error: { message: 'internal server error', type: 'server_error', param: null, code: 'internal_error' } });
    expect(internalErrors).toHaveLength(1);
  });

  it('ends a stream that fails midway with an error event and [DONE]; the openai client raises it', async () => {
    const engine = fakeEngine(() => [chunk('a'), chunk('b'), { fail: new Error('kernel fault') }]);
    const url = await listen(engine);
    const raw = await (await postChat(url, { stream: true })).text();
    const events = raw.split('\n\n').filter(Boolean);
    expect(events.at(-1)).toBe('data: [DONE]');
    const payloads = events.slice(0, -1).map((e) => JSON.parse(e.slice('data: '.length)));
    expect(payloads.map((p) => p.choices?.[0]?.delta)).toEqual([
      { role: 'assistant', content: '' },
      { content: 'a' },
      { content: 'b' },
      undefined,
    ]);
    expect(payloads.at(-1)).toEqual({
      error: { message: 'internal server error', type: 'server_error', param: null, code: 'internal_error' },
    });

    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'x', maxRetries: 0 });
    const stream = await client.chat.completions.create({ model: 'fake', messages, stream: true });
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const c of stream) seen.push(c.choices[0]?.delta.content ?? '');
      })(),
    ).rejects.toBeInstanceOf(OpenAI.APIError);
    expect(seen.join('')).toBe('ab');
  });

  it('cancels a request whose client leaves while it waits in the queue', async () => {
    const calls: CompleteCall[] = [];
    let submitted!: () => void;
    const isSubmitted = new Promise<void>((resolve) => (submitted = resolve));
    const url = await listen(
      fakeEngine(() => {
        submitted();
        return [{ waitForAbort: true }];
      }, calls),
    );
    const client = new AbortController();
    const pending = postChat(url, {}, client.signal).catch(() => 'aborted');
    await isSubmitted;
    expect(calls[0]!.signal.aborted).toBe(false);
    client.abort();
    expect(await pending).toBe('aborted');
    await new Promise((resolve) => calls[0]!.signal.addEventListener('abort', resolve, { once: true }));
    expect(calls[0]!.signal.aborted).toBe(true);
  });

  it('stops the other choices when one fails', async () => {
    const calls: CompleteCall[] = [];
    const url = await listen(
      fakeEngine((_call, i) => (i === 0 ? [{ waitForAbort: true }] : [{ fail: engineError('InvalidArgumentError', 'bad') }]), calls),
    );
    const response = await postChat(url, { n: 2 });
    expect(response.status).toBe(400);
    expect(calls).toHaveLength(2);
    expect(calls[0]!.signal.aborted).toBe(true);
  });
});
