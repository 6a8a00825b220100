/**
 * Concurrent requests through the server, on the default model: the engine batches them step by
 * step, and no request's answer may depend on what runs beside it. Also: a client that leaves
 * gives its KV blocks back, seeded sampling repeats, and a KV cache too small for every request
 * at once makes them wait or be preempted, never fail. `/v1/stats` shows each of these.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';

import type { Engine } from '@mistralrs/core';
import OpenAI from 'openai';

import type { RunningServer, StatsBody } from '../../src/index.js';
import { getStats, loadDefaultEngine, MODEL_ID, serve } from './helpers.js';

let engine: Engine;
let server: RunningServer;
let client: OpenAI;

beforeAll(async () => {
  engine = await loadDefaultEngine();
  server = await serve(engine);
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 300_000);

afterAll(async () => {
  await server?.close();
  engine?.close();
});

const QUESTIONS = [
  'What is the capital of France?',
  'Write a haiku about the sea.',
  'Explain what a prime number is.',
  'Name three fruits.',
  'Why is the sky blue?',
  'How do I boil an egg?',
  'What does a compiler do?',
  'Tell me a fact about whales.',
];

/** The end-of-text tokens banned, so a generation runs to its max_tokens. */
function noEos(e: Engine): Record<string, number> {
  return Object.fromEntries(e.tokenizer.eosIds.map((id) => [String(id), -100]));
}

/** Polls /v1/stats until `done` holds; fails with the last stats after `timeoutMs`. */
async function waitForStats(url: string, done: (stats: StatsBody) => boolean, timeoutMs = 30_000): Promise<StatsBody> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const stats = await getStats(url);
    if (done(stats)) return stats;
    if (Date.now() > deadline) throw new Error(`/v1/stats never settled: ${JSON.stringify(stats)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('continuous batching through the server', () => {
  it('answers 8 concurrent greedy requests exactly as it answers them one at a time', async () => {
    const request = (content: string) => ({
      model: MODEL_ID,
      messages: [{ role: 'user' as const, content }],
      max_tokens: 16,
      temperature: 0,
    });
    const alone: string[] = [];
    for (const q of QUESTIONS) alone.push((await client.chat.completions.create(request(q))).choices[0]!.message.content!);

    let peak = 0;
    let midRun: Promise<StatsBody> | undefined;
    const together = await Promise.all(
      QUESTIONS.map(async (q) => {
        const stream = await client.chat.completions.create({ ...request(q), stream: true });
        let text = '';
        for await (const chunk of stream) {
          const piece = chunk.choices[0]?.delta.content ?? '';
          if (piece === '') continue;
          text += piece;
          // Sampled while this stream is open: more than one sequence shares the steps.
          peak = Math.max(peak, engine.load.running);
          midRun ??= getStats(server.url);
        }
        return text;
      }),
    );

    expect(together).toEqual(alone);
    expect(peak).toBeGreaterThan(1);
    const during = await midRun!;
    expect(during.running).toBeGreaterThanOrEqual(1);
    expect(during.running + during.waiting).toBeLessThanOrEqual(QUESTIONS.length);
    expect(during.free_blocks).toBeLessThan(during.total_blocks);

    const after = await getStats(server.url);
    expect(after).toMatchObject({
      model: MODEL_ID,
      running: 0,
      waiting: 0,
      total_blocks: engine.info.nBlocks,
      block_size: engine.info.blockSize,
    });
    expect(after.free_blocks).toBe(after.total_blocks);
    expect(after.kv_cache_bytes).toBe(engine.info.kvCacheBytes);
  }, 300_000);

  it('gives the KV blocks of a client that leaves mid-stream back; the next request completes', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL_ID,
      messages: [{ role: 'user', content: 'Tell me a very long story.' }],
      max_tokens: 4000,
      logit_bias: noEos(engine),
      stream: true,
    });
    let received = 0;
    for await (const chunk of stream) {
      if ((chunk.choices[0]?.delta.content ?? '') === '') continue;
      if (++received === 3) {
        // Still generating: it holds blocks.
        const open = await getStats(server.url);
        expect(open.running).toBe(1);
        expect(open.free_blocks).toBeLessThan(open.total_blocks);
        break; // the client aborts its request here
      }
    }

    const settled = await waitForStats(server.url, (s) => s.running === 0 && s.waiting === 0 && s.free_blocks === s.total_blocks);
    expect(settled.free_blocks).toBe(engine.info.nBlocks);

    const next = await client.chat.completions.create({ model: MODEL_ID, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 });
    expect(next.usage!.completion_tokens).toBeGreaterThan(0);
    expect((await getStats(server.url)).free_blocks).toBe(engine.info.nBlocks);
  }, 120_000);

  it('repeats a seeded sampled answer, alone or beside another request with the same seed', async () => {
    const request = {
      model: MODEL_ID,
      messages: [{ role: 'user' as const, content: 'Invent a name for a cat.' }],
      max_tokens: 16,
      temperature: 0.9,
      seed: 7,
    };
    const first = await client.chat.completions.create(request);
    const second = await client.chat.completions.create(request);
    expect(second.choices[0]!.message.content).toBe(first.choices[0]!.message.content);
    const pair = await Promise.all([client.chat.completions.create(request), client.chat.completions.create(request)]);
    expect(pair.map((r) => r.choices[0]!.message.content)).toEqual([first.choices[0]!.message.content, first.choices[0]!.message.content]);
  }, 120_000);

  it('hits the prefix cache (on by default) when a long prompt comes again', async () => {
    const system = 'You are a careful assistant. Answer in one short sentence, and never make things up. '.repeat(4);
    const ask = (content: string) =>
      client.chat.completions.create({
        model: MODEL_ID,
        messages: [
          { role: 'system', content: system },
          { role: 'user', content },
        ],
        max_tokens: 4,
      });
    await ask('What is the capital of France?');
    const before = (await getStats(server.url)).prefix_cache;
    await ask('Name a prime number.');
    const after = (await getStats(server.url)).prefix_cache;
    expect(after.queried_blocks).toBeGreaterThan(before.queried_blocks);
    expect(after.hit_blocks).toBeGreaterThan(before.hit_blocks);
  }, 120_000);
});

describe('a KV cache smaller than the requests need', () => {
  // 8 blocks of 16 tokens: the context (and every request's room) is 128 tokens.
  let small: Engine;
  let smallServer: RunningServer;
  let smallClient: OpenAI;

  beforeAll(async () => {
    small = await loadDefaultEngine({ kvTokens: 128, blockSize: 16 });
    smallServer = await serve(small);
    smallClient = new OpenAI({ baseURL: `${smallServer.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  }, 300_000);

  afterAll(async () => {
    await smallServer?.close();
    small?.close();
  });

  it('completes a request whose prompt plus max_tokens exceeds the cache, stopping where the cache ends', async () => {
    // About 100 prompt tokens: the prompt fits, the prompt plus max_tokens does not.
    const content = `Summarise this: ${'the quick brown fox jumps over the lazy dog. '.repeat(6)}`;
    const response = await smallClient.chat.completions.create({
      model: MODEL_ID,
      messages: [{ role: 'user', content }],
      max_tokens: 40,
      logit_bias: noEos(small),
    });
    const { prompt_tokens, completion_tokens } = response.usage!;
    expect(prompt_tokens).toBeLessThan(128);
    expect(prompt_tokens + 40).toBeGreaterThan(128);
    expect(response.choices[0]!.finish_reason).toBe('length');
    expect(prompt_tokens + completion_tokens).toBe(128);
  }, 120_000);

  it('runs concurrent requests that cannot all fit: they wait or are preempted, and answer as they do alone', async () => {
    const request = (content: string) => ({
      model: MODEL_ID,
      messages: [{ role: 'user' as const, content }],
      max_tokens: 30,
      logit_bias: noEos(small),
    });
    // Prompts of ~37 tokens (3 blocks each): both are admitted, then grow to 5 blocks each.
    const questions = QUESTIONS.slice(0, 2);
    const alone: string[] = [];
    for (const q of questions) alone.push((await smallClient.chat.completions.create(request(q))).choices[0]!.message.content!);
    const preemptionsBefore = (await getStats(smallServer.url)).preemptions;

    const together = await Promise.all(questions.map((q) => smallClient.chat.completions.create(request(q))));
    expect(together.map((r) => r.choices[0]!.message.content)).toEqual(alone);
    expect(together.every((r) => r.usage!.completion_tokens === 30)).toBe(true);

    const after = await getStats(smallServer.url);
    // 10 blocks wanted of 8: the later-admitted one gave its blocks back and was recomputed.
    expect(after.preemptions).toBeGreaterThan(preemptionsBefore);
    expect(after).toMatchObject({ running: 0, waiting: 0, total_blocks: 8, block_size: 16 });
    expect(after.free_blocks).toBe(8);
  }, 300_000);
});
