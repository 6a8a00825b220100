/**
 * reasoning_content through the real engine: the default model with Qwen 3's chat template
 * (test/fixtures/chat-templates/qwen3.jinja), its output held by a regex to the shape a
 * thinking model writes. `<think>` and `</think>` are plain text to this vocabulary, so the
 * tags arrive split over several tokens, as they do for many thinking models' fine-tunes.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { fileURLToPath } from 'node:url';

import type { Engine } from '@mistralrs/core';

import type { RunningServer } from '../../src/index.js';
import { loadDefaultEngine, post, serve, sseData } from './helpers.js';

const QWEN3_TEMPLATE = fileURLToPath(new URL('../fixtures/chat-templates/qwen3.jinja', import.meta.url));
const THINKING = String.raw`<think>\n[a-z]{2,8}( [a-z]{2,8}){1,3}\n</think>\n\n[A-Z][a-z]{2,8}\.`;

let engine: Engine;
let server: RunningServer;

beforeAll(async () => {
  engine = await loadDefaultEngine({ chatTemplate: QWEN3_TEMPLATE });
  server = await serve(engine);
}, 300_000);

afterAll(async () => {
  await server?.close();
  engine?.close();
});

const request = (fields: Record<string, unknown> = {}) => ({
  messages: [{ role: 'user', content: 'What is the capital of France?' }],
  temperature: 0,
  max_tokens: 64,
  grammar: { type: 'regex', value: THINKING },
  ...fields,
});

interface Message {
  content: string;
  reasoning_content?: string | null;
}

describe('reasoning_content on the default model with a thinking template', () => {
  it('splits the think block from the answer, whole and streamed alike, with the same usage', async () => {
    const whole = await post(`${server.url}/v1/chat/completions`, request());
    expect(whole.status).toBe(200);
    const body = whole.json as { choices: Array<{ message: Message }>; usage: { completion_tokens: number } };
    const message = body.choices[0]!.message;
    expect(message.reasoning_content).toMatch(/^[a-z]{2,8}( [a-z]{2,8}){1,3}$/);
    expect(message.content).toMatch(/^[A-Z][a-z]{2,8}\.$/);

    const streamed = await post(`${server.url}/v1/chat/completions`, request({ stream: true, stream_options: { include_usage: true } }));
    const events = sseData(streamed.text)
      .filter((d) => d !== '[DONE]')
      .map((d) => JSON.parse(d) as { choices: Array<{ delta: { content?: string; reasoning_content?: string } }>; usage?: unknown });
    const deltas = events.flatMap((e) => e.choices.map((c) => c.delta));
    expect(deltas.map((d) => d.reasoning_content ?? '').join('')).toBe(message.reasoning_content);
    expect(deltas.map((d) => d.content ?? '').join('')).toBe(message.content);
    expect(events.at(-1)!.usage).toMatchObject({ completion_tokens: body.usage.completion_tokens });
    // Reasoning came in several deltas, before any content.
    const firstContent = deltas.findIndex((d) => d.content);
    expect(deltas.filter((d) => d.reasoning_content).length).toBeGreaterThan(1);
    expect(deltas.findLastIndex((d) => d.reasoning_content)).toBeLessThan(firstContent);
  }, 120_000);

  it('enable_thinking: false leaves the whole output in content', async () => {
    const r = await post(`${server.url}/v1/chat/completions`, request({ enable_thinking: false }));
    expect(r.status).toBe(200);
    const message = (r.json as { choices: Array<{ message: Message }> }).choices[0]!.message;
    expect(message.content).toMatch(new RegExp(`^${THINKING}$`));
    expect(message).not.toHaveProperty('reasoning_content');
  }, 120_000);
});
