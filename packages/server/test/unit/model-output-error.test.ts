/**
 * A model whose logits go NaN or infinite for a request (the engine fails that request with
 * `ModelOutputError`) is answered as the model's fault: a 500 whose message says what
 * happened (not a bare internal error), before a stream starts and as an error event after.
 */
import { afterEach, describe, expect, it } from '@jest/globals';

import { createApp } from '../../src/index.js';
import { closeApp, fakeEngine, listenOnLoopback, type Step } from './fake-engine.js';

const MESSAGE =
  "the model's logits after 5 tokens are not finite (32000 NaN, 0 infinite of 32000): its weights or activations overflow; this sequence was stopped";
const modelOutputError = () => Object.assign(new Error(MESSAGE), { name: 'EngineError', code: 'ModelOutputError' });
const chunk = (text: string): Step => ({ chunk: { text, tokenIds: [text.charCodeAt(0)] } });
const expected = { error: { message: MESSAGE, type: 'server_error', param: null, code: 'model_output_invalid' } };

const internalErrors: unknown[] = [];
afterEach(async () => {
  await closeApp();
  internalErrors.length = 0;
});

async function post(steps: Step[], stream: boolean): Promise<Response> {
  const url = await listenOnLoopback(
    createApp({ engine: fakeEngine(() => steps), modelId: 'fake', onInternalError: (e) => internalErrors.push(e) }),
  );
  return fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], stream }),
  });
}

describe('non-finite model output', () => {
  it.each([false, true])('is a 500 with a clear message and its own code (stream: %s)', async (stream) => {
    const response = await post([{ fail: modelOutputError() }], stream);
    expect(response.status).toBe(500);
    expect(await response.json()).toEqual(expected);
    // A fault of the model, not the request: the server reports it.
    expect(internalErrors).toHaveLength(1);
  });

  it('ends a stream that already started with an error event carrying the message', async () => {
    const raw = await (await post([chunk('a'), { fail: modelOutputError() }], true)).text();
    const events = raw.split('\n\n').filter(Boolean);
    expect(events.at(-1)).toBe('data: [DONE]');
    expect(JSON.parse(events.at(-2)!.slice('data: '.length))).toEqual(expected);
  });
});
