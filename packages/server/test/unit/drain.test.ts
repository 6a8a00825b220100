/**
 * A graceful close (what SIGTERM and SIGINT do through the CLI): new requests get a 503 JSON
 * error at once, a request that finishes within the drain time is answered normally, and
 * whatever still runs when the time is up ends with an error, never silently: a stream with
 * an error event and `data: [DONE]`, any other request with a 503. A scripted engine plays
 * requests that would never end on their own.
 */
import { afterEach, expect, it } from '@jest/globals';

import { startServer, type RunningServer, type ServingEngine } from '../../src/index.js';
import { fakeEngine, type Step } from './fake-engine.js';

const chunk = (text: string): Step => ({ chunk: { text, tokenIds: [text.charCodeAt(0)] } });

let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const post = (url: string, path: string, body: Record<string, unknown>) =>
  fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const chat = (fields: Record<string, unknown> = {}) => ({ messages: [{ role: 'user', content: 'Hi' }], ...fields });

/** Resolves once the engine has been handed `n` generations. */
function startedCounter(): { started(): void; reached(n: number): Promise<void> } {
  let count = 0;
  const waiters: Array<[number, () => void]> = [];
  return {
    started() {
      count++;
      for (const [n, resolve] of waiters) if (count >= n) resolve();
    },
    reached: (n) => new Promise((resolve) => (count >= n ? resolve() : waiters.push([n, resolve]))),
  };
}

async function serveFake(engine: ServingEngine, drainTimeoutMs: number): Promise<RunningServer> {
  server = await startServer({ engine, modelId: 'fake', port: 0, drainTimeoutMs, onInternalError: (e) => console.error(e) });
  return server;
}

it('answers new requests 503 while draining, lets quick ones finish, and ends the rest with an error', async () => {
  let release!: () => void;
  const released = new Promise((resolve) => (release = () => resolve(undefined)));
  const counter = startedCounter();
  const engine = fakeEngine((call) => {
    counter.started();
    const prompt = String.fromCharCode(...call.prompt);
    // "quick" finishes once released (during the drain); the others run until cancelled.
    if (prompt.includes('quick')) return [chunk('d'), { waitFor: released }, chunk('one')];
    return [chunk('a'), chunk('b'), { waitForAbort: true }];
  });
  const { url } = await serveFake(engine, 1500);

  const stream = post(url, '/v1/chat/completions', chat({ stream: true })).then((r) => r.text());
  const whole = post(url, '/v1/chat/completions', chat());
  const completion = post(url, '/v1/completions', { prompt: 'Once upon a time' });
  const quick = post(url, '/v1/chat/completions', chat({ messages: [{ role: 'user', content: 'quick' }] }));
  await counter.reached(4);

  const closed = server!.close();
  const refused = await post(url, '/v1/chat/completions', chat());
  expect(refused.status).toBe(503);
  expect(await refused.json()).toEqual({
    error: { message: 'the server is shutting down', type: 'service_unavailable', param: null, code: 'server_shutting_down' },
  });
  release();

  // Finished within the drain time: a normal answer.
  const quickResponse = await quick;
  expect(quickResponse.status).toBe(200);
  expect(((await quickResponse.json()) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content).toBe('done');

  // Still running when the time was up: a 503 with the reason, never a reset connection.
  for (const response of [await whole, await completion]) {
    expect(response.status).toBe(503);
    expect(await response.json()).toMatchObject({ error: { type: 'service_unavailable', code: 'server_shutting_down' } });
  }
  const events = (await stream).split('\n\n').filter(Boolean);
  expect(events.at(-1)).toBe('data: [DONE]');
  const payloads = events.slice(0, -1).map((e) => JSON.parse(e.slice('data: '.length)) as Record<string, unknown>);
  expect(payloads.at(-1)).toMatchObject({ error: { type: 'service_unavailable', code: 'server_shutting_down' } });
  // The text generated before the cut came through; no chunk claims a normal finish.
  expect(payloads.some((p) => JSON.stringify(p).includes('"finish_reason":"stop"'))).toBe(false);
  expect(payloads.filter((p) => 'choices' in p).length).toBeGreaterThan(1);
  await closed;
});

it('closes at once when nothing is in flight, and a second close is the same drain', async () => {
  const { url } = await serveFake(
    fakeEngine(() => [chunk('a')]),
    60_000,
  );
  expect((await post(url, '/v1/chat/completions', chat())).status).toBe(200);
  const first = server!.close();
  expect(server!.close()).toBe(first);
  await first;
  await expect(fetch(`${url}/health`)).rejects.toThrow();
});
