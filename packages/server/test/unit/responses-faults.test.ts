/**
 * `/v1/responses` when the engine fails or the client leaves, on a scripted fake engine: a
 * refusal before the first event is a status code, a fault after it is `response.failed` then
 * an `error` event the client raises, and a response whose client left is not kept.
 */
import { afterEach, describe, expect, it } from '@jest/globals';

import OpenAI from 'openai';

import { createApp, type ServingEngine } from '../../src/index.js';
import { closeApp, fakeEngine, listenOnLoopback, type CompleteCall, type Step } from './fake-engine.js';

const engineError = (code: string, message: string) => Object.assign(new Error(message), { name: 'EngineError', code });
const chunk = (text: string): Step => ({ chunk: { text, tokenIds: [text.charCodeAt(0)] } });

function listen(engine: ServingEngine, limits = {}): Promise<string> {
  return listenOnLoopback(createApp({ engine, modelId: 'fake', limits, onInternalError: () => undefined }));
}

afterEach(closeApp);

const create = (url: string, fields: Record<string, unknown> = {}, signal?: AbortSignal) =>
  fetch(`${url}/v1/responses`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ input: 'Hi', ...fields }),
    ...(signal ? { signal } : {}),
  });

/** The `event:` names of a Responses stream, in order. */
const eventNames = (text: string) => [...text.matchAll(/^event: (.+)$/gm)].map((m) => m[1]);

describe('/v1/responses on a fake engine', () => {
  it('answers a full queue with 429 before the first event, streaming or not', async () => {
    const url = await listen(fakeEngine(() => [{ fail: engineError('OverloadedError', 'full') }]));
    for (const stream of [false, true]) {
      const response = await create(url, { stream });
      expect(response.status).toBe(429);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe('server_overloaded');
    }
  });

  it('ends a stream that fails midway with response.failed, then an error event the client raises', async () => {
    const url = await listen(fakeEngine(() => [chunk('a'), { fail: engineError('ModelOutputError', 'logits went NaN') }]));
    const response = await create(url, { stream: true });
    expect(response.status).toBe(200);
    const text = await response.text();
    expect(eventNames(text)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.failed',
      'error',
    ]);
    expect(text).toContain('"status":"failed"');
    expect(text).toContain('"code":"model_output_invalid"');

    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'x', maxRetries: 0 });
    const stream = await client.responses.create({ model: 'fake', input: 'Hi', stream: true });
    await expect(
      (async () => {
        for await (const _event of stream) {
          // read to the error
        }
      })(),
    ).rejects.toBeInstanceOf(OpenAI.APIError);
  });

  it('cancels the generation of a client that leaves mid-stream, and keeps nothing', async () => {
    const calls: CompleteCall[] = [];
    const url = await listen(fakeEngine(() => [chunk('a'), { waitForAbort: true }], calls));
    const controller = new AbortController();
    const response = await create(url, { stream: true }, controller.signal);
    const id = response.headers.get('x-request-id');
    expect(id).toMatch(/^resp_/);
    const reader = response.body!.getReader();
    await reader.read(); // the first events arrived
    controller.abort();
    await new Promise((resolve) => calls[0]!.signal.addEventListener('abort', resolve, { once: true }));
    expect(calls[0]!.signal.aborted).toBe(true);
    expect((await fetch(`${url}/v1/responses/${id}`)).status).toBe(404);
  });

  it('keeps no response larger than maxStoredResponseBytes', async () => {
    const url = await listen(
      fakeEngine(() => [chunk('a')]),
      { maxStoredResponseBytes: 100 },
    );
    const response = (await (await create(url)).json()) as { id: string; status: string };
    expect(response.status).toBe('incomplete'); // the fake finishes by length
    expect((await fetch(`${url}/v1/responses/${response.id}`)).status).toBe(404);
  });
});
