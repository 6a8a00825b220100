/**
 * GET /metrics with a scripted engine: every response counted once by route pattern and status
 * (refusals and unknown paths too, the latter under one label), tokens equal to the usage the
 * responses reported, one time-to-first-token observation per generation, gauges read from the
 * engine, label values escaped, the route behind the API key. Read with a real parser.
 */
import { afterEach, describe, expect, it } from '@jest/globals';

import { createApp, type AppOptions } from '../../src/index.js';
import { ServerMetrics } from '../../src/metrics.js';
import { Exposition, parsePrometheus, scrape } from '../fixtures/prometheus.js';
import { closeApp, fakeEngine, idleLoad, listenOnLoopback, type Step } from './fake-engine.js';

const listen = (options: AppOptions) => listenOnLoopback(createApp({ onInternalError: () => undefined, ...options }));
const chunk = (text: string): Step => ({ chunk: { text, tokenIds: [...text].map((c) => c.charCodeAt(0)) } });
const json = { 'content-type': 'application/json' };

afterEach(closeApp);

interface UsageBody {
  usage: { prompt_tokens: number; completion_tokens: number };
}

describe('GET /metrics', () => {
  it('counts requests by route and status, tokens as the usage said, one first token per generation', async () => {
    const load = idleLoad();
    // Four tokens per generation: one chunk of one, one of two held back together, one of one.
    const url = await listen({ engine: fakeEngine(() => [chunk('a'), chunk('bc'), chunk('d')], [], load), modelId: 'fake' });
    const post = (path: string, body: object) => fetch(`${url}${path}`, { method: 'POST', headers: json, body: JSON.stringify(body) });
    const usages: UsageBody['usage'][] = [];

    const messages = [{ role: 'user', content: 'Hello' }];
    const whole = await post('/v1/chat/completions', { messages, n: 2 });
    expect(whole.status).toBe(200);
    usages.push(((await whole.json()) as UsageBody).usage);
    const streamed = await post('/v1/chat/completions', { messages, stream: true, stream_options: { include_usage: true } });
    const events = (await streamed.text()).split('\n\n').filter((e) => e.startsWith('data: {'));
    usages.push((JSON.parse(events.at(-1)!.slice(6)) as UsageBody).usage);
    const text = await post('/v1/completions', { prompt: ['one', 'three'] });
    usages.push(((await text.json()) as UsageBody).usage);
    const generations = 2 + 1 + 2;

    expect((await post('/v1/chat/completions', { messages, temperature: 'hot' })).status).toBe(400);
    expect((await fetch(`${url}/no/such/path`)).status).toBe(404);
    expect((await fetch(`${url}/v1/secret-${Date.now()}`)).status).toBe(404);
    expect((await fetch(`${url}/metrics`, { method: 'POST' })).status).toBe(405);

    Object.assign(load, {
      running: 2,
      waiting: 1,
      freeBlocks: 1,
      preemptions: 3,
      prefixCache: { queriedBlocks: 10, hitBlocks: 6, evictedBlocks: 2, cachedBlocks: 1 },
      speculation: { steps: 5, proposed: 20, accepted: 12 },
    });
    const m = await scrape(url);
    const requests = (route: string, status: string) => m.value('mistralrs_requests_total', { route, status });
    expect(requests('/v1/chat/completions', '200')).toBe(2);
    expect(m.value('mistralrs_requests_total', { route: '/v1/chat/completions', status: '200', model: 'fake' })).toBe(2);
    expect(requests('/v1/completions', '200')).toBe(1);
    expect(requests('/v1/chat/completions', '400')).toBe(1);
    expect(requests('unmatched', '404')).toBe(2);
    expect(requests('/metrics', '405')).toBe(1);
    expect(requests('/metrics', '200')).toBe(0); // this scrape is counted when it ends
    expect(m.value('mistralrs_requests_total')).toBe(7);
    // No raw path ever becomes a label.
    for (const sample of m.families.get('mistralrs_requests_total')!.metrics)
      expect(sample.labels!.route).toMatch(/^(\/[a-z0-9/*]+|unmatched)$/);

    const sum = (key: 'prompt_tokens' | 'completion_tokens') => usages.reduce((s, u) => s + u[key], 0);
    expect(m.value('mistralrs_prompt_tokens_total', { model: 'fake' })).toBe(sum('prompt_tokens'));
    expect(m.value('mistralrs_generated_tokens_total', { model: 'fake' })).toBe(sum('completion_tokens'));
    expect(sum('completion_tokens')).toBe(4 * generations);

    expect(m.histogram('mistralrs_time_to_first_token_seconds', { model: 'fake' }).count).toBe(generations);
    // Each generation: 4 tokens, the first in its own chunk, so 3 gaps.
    expect(m.histogram('mistralrs_inter_token_latency_seconds', { model: 'fake' }).count).toBe(3 * generations);

    expect(m.families.get('mistralrs_requests_running')!.type).toBe('GAUGE');
    expect(m.value('mistralrs_requests_running', { model: 'fake' })).toBe(2);
    expect(m.value('mistralrs_requests_waiting', { model: 'fake' })).toBe(1);
    expect(m.value('mistralrs_kv_blocks_used', { model: 'fake' })).toBe(3);
    expect(m.value('mistralrs_kv_blocks_total', { model: 'fake' })).toBe(4);
    expect(m.value('mistralrs_model_loaded', { model: 'fake' })).toBe(1);
    expect(m.value('mistralrs_preemptions_total')).toBe(3);
    expect(m.value('mistralrs_prefix_cache_queried_blocks_total')).toBe(10);
    expect(m.value('mistralrs_prefix_cache_hit_blocks_total')).toBe(6);
    expect(m.value('mistralrs_prefix_cache_evicted_blocks_total')).toBe(2);
    expect(m.value('mistralrs_prefix_cache_cached_blocks')).toBe(1);
    expect(m.value('mistralrs_speculative_verify_steps_total', { model: 'fake' })).toBe(5);
    expect(m.value('mistralrs_speculative_proposed_tokens_total', { model: 'fake' })).toBe(20);
    expect(m.value('mistralrs_speculative_accepted_tokens_total', { model: 'fake' })).toBe(12);

    const again = await scrape(url);
    expect(again.value('mistralrs_requests_total', { route: '/metrics', status: '200' })).toBe(1);
  });

  it('times and counts the generations of /v1/responses and /v1/messages as those of the chat route', async () => {
    const url = await listen({ engine: fakeEngine(() => [chunk('a'), chunk('bc'), chunk('d')]), modelId: 'fake' });
    const post = (path: string, body: object) => fetch(`${url}${path}`, { method: 'POST', headers: json, body: JSON.stringify(body) });
    const response = (await (await post('/v1/responses', { model: 'fake', input: 'Hello' })).json()) as {
      usage: { input_tokens: number; output_tokens: number };
    };
    const message = (await (
      await post('/v1/messages', { model: 'fake', max_tokens: 16, messages: [{ role: 'user', content: 'Hello' }] })
    ).json()) as {
      usage: { input_tokens: number; output_tokens: number };
    };
    const m = await scrape(url);
    expect(m.value('mistralrs_prompt_tokens_total', { model: 'fake' })).toBe(response.usage.input_tokens + message.usage.input_tokens);
    expect(m.value('mistralrs_generated_tokens_total', { model: 'fake' })).toBe(response.usage.output_tokens + message.usage.output_tokens);
    expect(m.histogram('mistralrs_time_to_first_token_seconds', { model: 'fake' }).count).toBe(2);
    expect(m.value('mistralrs_requests_total', { route: '/v1/responses', status: '200', model: 'fake' })).toBe(1);
    expect(m.value('mistralrs_requests_total', { route: '/v1/messages', status: '200', model: 'fake' })).toBe(1);
  });

  it('is behind the API key when one is set (a Prometheus bearer token), and counts the refusal', async () => {
    const url = await listen({ engine: fakeEngine(() => []), modelId: 'fake', apiKey: 'sk-metrics' });
    const anonymous = await fetch(`${url}/metrics`);
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toMatchObject({ error: { code: 'invalid_api_key' } });
    const m = await scrape(url, { authorization: 'Bearer sk-metrics' });
    expect(m.value('mistralrs_requests_total', { route: '/metrics', status: '401', model: '' })).toBe(1);
  });

  it('counts a client that left before its response began as 499, once', async () => {
    const url = await listen({ engine: fakeEngine(() => [{ waitForAbort: true }]), modelId: 'fake' });
    const controller = new AbortController();
    const pending = fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], stream: true }),
      signal: controller.signal,
    }).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 50));
    controller.abort();
    await pending;
    const deadline = Date.now() + 5000;
    let m = await scrape(url);
    while (m.value('mistralrs_requests_total', { route: '/v1/chat/completions' }) === 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      m = await scrape(url);
    }
    expect(m.value('mistralrs_requests_total', { route: '/v1/chat/completions', status: '499', model: 'fake' })).toBe(1);
    expect(m.value('mistralrs_requests_total', { route: '/v1/chat/completions' })).toBe(1);
    expect(m.histogram('mistralrs_time_to_first_token_seconds', { model: 'fake' }).count).toBe(0);
  });

  it('shares a ServerMetrics given to createApp, and starts with every family present', async () => {
    const metrics = new ServerMetrics();
    const url = await listen({ engine: fakeEngine(() => []), modelId: 'fake', metrics });
    const m = await scrape(url);
    for (const name of [
      'mistralrs_requests_total',
      'mistralrs_prompt_tokens_total',
      'mistralrs_generated_tokens_total',
      'mistralrs_time_to_first_token_seconds',
      'mistralrs_inter_token_latency_seconds',
      'mistralrs_requests_running',
      'mistralrs_requests_waiting',
      'mistralrs_kv_blocks_used',
      'mistralrs_kv_blocks_total',
    ])
      expect(m.families.has(name)).toBe(true);
    metrics.recordRequest('/v1/completions', 200, 'fake');
    expect((await scrape(url)).value('mistralrs_requests_total', { route: '/v1/completions' })).toBe(1);
  });
});

describe('ServerMetrics exposition', () => {
  it('escapes backslashes, quotes and line feeds in label values', () => {
    const metrics = new ServerMetrics();
    const odd = 'org/we"ird\\model\nid';
    metrics.recordRequest('/v1/chat/completions', 200, odd);
    metrics.recordPromptTokens(odd, 5);
    const text = metrics.render();
    expect(text.endsWith('\n')).toBe(true);
    const families = new Map(parsePrometheus(text).map((f) => [f.name, f]));
    expect(families.get('mistralrs_requests_total')!.metrics).toEqual([
      { labels: { route: '/v1/chat/completions', status: '200', model: odd }, value: '1' },
    ]);
    expect(families.get('mistralrs_prompt_tokens_total')!.metrics).toEqual([{ labels: { model: odd }, value: '5' }]);
  });

  it('writes cumulative buckets, +Inf equal to the count', async () => {
    const metrics = new ServerMetrics();
    // A generation whose chunks are read 0, ~30 and ~60 ms after submission.
    const chunks = [
      { text: 'a', tokenIds: [1] },
      { text: 'b', tokenIds: [2] },
      { text: 'c', tokenIds: [3] },
    ];
    const result = Promise.resolve({ usage: { promptTokens: 1, completionTokens: 3, totalTokens: 4 } });
    const generation = {
      result: result as never,
      async *[Symbol.asyncIterator]() {
        for (const [i, c] of chunks.entries()) {
          if (i > 0) await new Promise((r) => setTimeout(r, 30));
          yield c;
        }
      },
    };
    const observed = metrics.observeGeneration('m', generation, performance.now());
    for await (const _ of observed);
    await result;
    const m = new Exposition(metrics.render());
    const itl = m.histogram('mistralrs_inter_token_latency_seconds', { model: 'm' });
    expect(itl.count).toBe(2);
    expect(itl.buckets.find(([le]) => le === 0.01)).toEqual([0.01, 0]);
    expect(itl.buckets.find(([le]) => le === 0.1)).toEqual([0.1, 2]);
    expect(itl.sum).toBeGreaterThan(0.05);
    expect(m.value('mistralrs_generated_tokens_total', { model: 'm' })).toBe(3);
    expect(m.histogram('mistralrs_time_to_first_token_seconds', { model: 'm' }).count).toBe(1);
  });
});
