/**
 * Chat template renders that run out of time: each is a 422 `template_render_failed` (a
 * request this template cannot render; never a 5xx that clients retry), however many come at
 * once, and a slow render holds only its own sandbox worker, so other chats are not held up.
 * The served model is the default one, with a template that spins when a message says "slow".
 */
import { afterAll, beforeAll, expect, it } from '@jest/globals';

import { ChatTemplate, RenderSandbox, type Engine } from '@mistralrs/core';

import type { RunningServer, ServingEngine } from '../../src/index.js';
import { loadDefaultEngine, MODEL_ID, post, serve } from './helpers.js';

/** 10^10 loop steps when the first message is "slow"; ChatML otherwise. */
const TEMPLATE =
  "{% if messages[0].content == 'slow' %}{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{% endif %}" +
  '{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n';

let engine: Engine;
const sandboxes: RenderSandbox[] = [];
const servers: RunningServer[] = [];

beforeAll(async () => {
  engine = await loadDefaultEngine();
}, 300_000);

afterAll(async () => {
  await Promise.all(sandboxes.map((s) => s.close()));
  await Promise.all(servers.map((s) => s.close()));
  engine?.close();
});

/** The default engine, serving `TEMPLATE` rendered in its own sandbox with these limits. */
async function serveWithTemplate(timeoutMs: number): Promise<{ server: RunningServer; sandbox: RenderSandbox }> {
  const sandbox = new RenderSandbox({ workers: 2, limits: { timeoutMs } });
  sandboxes.push(sandbox);
  const chatTemplate = ChatTemplate.fromString(TEMPLATE, { source: 'slow.jinja', sandbox });
  const served: ServingEngine = {
    complete: engine.complete.bind(engine),
    compileGrammar: engine.compileGrammar.bind(engine),
    encodeChatPromptAsync: engine.encodeChatPromptAsync.bind(engine),
    get info() {
      return engine.info;
    },
    get load() {
      return engine.load;
    },
    contextTokens: engine.contextTokens,
    tokenizer: engine.tokenizer,
    chatTemplate,
  };
  const server = await serve(engine, { engine: served });
  servers.push(server);
  return { server, sandbox };
}

const chat = (content: string) => ({ model: MODEL_ID, messages: [{ role: 'user', content }], max_tokens: 1 });

it('answers several renders that time out at once with 422 each, none with a 5xx', async () => {
  const { server } = await serveWithTemplate(300);
  const responses = await Promise.all(Array.from({ length: 5 }, () => post(`${server.url}/v1/chat/completions`, chat('slow'))));
  for (const response of responses) {
    expect(response.status).toBe(422);
    expect(response.json).toMatchObject({
      error: {
        type: 'invalid_request_error',
        param: 'messages',
        code: 'template_render_failed',
        message: expect.stringMatching(/longer than 300 ms/),
      },
    });
  }
  // And the next chat renders as usual.
  expect((await post(`${server.url}/v1/chat/completions`, chat('Hi'))).status).toBe(200);
});

it('completes a normal chat while a slow render is still running', async () => {
  // The slow render may run for a minute; the normal chat needs one render and one token.
  const { server, sandbox } = await serveWithTemplate(60_000);
  const leave = new AbortController();
  let slowSettled = false;
  const slow = fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(chat('slow')),
    signal: leave.signal,
  })
    .catch(() => undefined)
    .finally(() => (slowSettled = true));
  while (sandbox.running === 0) await new Promise((resolve) => setTimeout(resolve, 10));
  const normal = await post(`${server.url}/v1/chat/completions`, chat('Hi'));
  expect(normal.status).toBe(200);
  expect(slowSettled).toBe(false);
  leave.abort();
  await slow;
});
