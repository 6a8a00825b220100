/**
 * GET /metrics after real requests, read with a real Prometheus parser: on the default model,
 * the request counts are the requests made, the token counters the sums of the usage the
 * responses reported, one time-to-first-token per generation, the gauges those of
 * /v1/stats; with two tiny models behind one server, each model's series under its own label.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Engine, type EngineOptions } from '@mistralrs/core';

import { vocabPath, writeTinyGguf } from '../../../core/test/fixtures/tiny-model.js';
import { needsFixtures } from '../../../../test-support/fixtures.js';
import { ModelPool, startServer, type RunningServer } from '../../src/index.js';
import { scrape } from '../fixtures/prometheus.js';
import { getStats, loadDefaultEngine, MODEL_ID, post, serve, sseData } from './helpers.js';

const KEY = 'sk-metrics';
const auth = { authorization: `Bearer ${KEY}` };
const jsonAuth = { 'content-type': 'application/json', ...auth };

interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
}

describe('GET /metrics on the default model', () => {
  let engine: Engine;
  let server: RunningServer;

  beforeAll(async () => {
    engine = await loadDefaultEngine();
    server = await serve(engine, { apiKey: KEY });
  }, 300_000);

  afterAll(async () => {
    await server?.close();
    engine?.close();
  });

  it('counts what was asked and generated, times every generation, and shows the engine as /v1/stats does', async () => {
    const url = server.url;
    // End-of-text banned: every generation runs to its max_tokens, so each has tokens to time.
    const logit_bias = Object.fromEntries(engine.tokenizer.eosIds.map((id) => [String(id), -100]));
    const messages = [{ role: 'user', content: 'Name three fruits.' }];
    const usages: Usage[] = [];

    const chat = await post(`${url}/v1/chat/completions`, { model: MODEL_ID, messages, n: 2, max_tokens: 6, logit_bias }, jsonAuth);
    expect(chat.status).toBe(200);
    usages.push((chat.json as { usage: Usage }).usage);
    const streamed = await post(
      `${url}/v1/chat/completions`,
      { messages, max_tokens: 5, logit_bias, stream: true, stream_options: { include_usage: true } },
      jsonAuth,
    );
    expect(streamed.status).toBe(200);
    const events = sseData(streamed.text);
    expect(events.at(-1)).toBe('[DONE]');
    usages.push((JSON.parse(events.at(-2)!) as { usage: Usage }).usage);
    const text = await post(`${url}/v1/completions`, { prompt: ['The sky is', 'Once upon a time'], max_tokens: 4, logit_bias }, jsonAuth);
    expect(text.status).toBe(200);
    usages.push((text.json as { usage: Usage }).usage);
    const generations = 2 + 1 + 2;

    expect((await post(`${url}/v1/chat/completions`, { messages, temperature: -1 }, jsonAuth)).status).toBe(400);
    expect((await post(`${url}/v1/completions`, { model: 'no-such-model', prompt: 'x' }, jsonAuth)).status).toBe(404);
    expect((await fetch(`${url}/v1/nothing/here`, { headers: auth })).status).toBe(404);
    expect((await fetch(`${url}/wp-login.php`, { headers: auth })).status).toBe(404);
    expect((await fetch(`${url}/metrics`)).status).toBe(401);

    const stats = await getStats(url, auth);
    const m = await scrape(url, auth);
    const requests = (labels: Record<string, string>) => m.value('mistralrs_requests_total', labels);
    expect(requests({ route: '/v1/chat/completions', status: '200', model: MODEL_ID })).toBe(2);
    expect(requests({ route: '/v1/completions', status: '200', model: MODEL_ID })).toBe(1);
    expect(requests({ route: '/v1/chat/completions', status: '400', model: MODEL_ID })).toBe(1);
    // An unknown model id never becomes a label.
    expect(requests({ route: '/v1/completions', status: '404', model: '' })).toBe(1);
    expect(requests({ route: 'unmatched', status: '404' })).toBe(2);
    expect(requests({ route: '/metrics', status: '401' })).toBe(1);
    expect(requests({ route: '/v1/stats', status: '200' })).toBe(1);
    expect(requests({})).toBe(9);

    const sum = (key: keyof Usage) => usages.reduce((s, u) => s + u[key], 0);
    expect(sum('completion_tokens')).toBe(2 * 6 + 5 + 2 * 4);
    expect(m.value('mistralrs_prompt_tokens_total', { model: MODEL_ID })).toBe(sum('prompt_tokens'));
    expect(m.value('mistralrs_generated_tokens_total', { model: MODEL_ID })).toBe(sum('completion_tokens'));

    const ttft = m.histogram('mistralrs_time_to_first_token_seconds', { model: MODEL_ID });
    expect(ttft.count).toBe(generations);
    expect(ttft.sum).toBeGreaterThan(0);
    // Each generation's tokens after its first chunk; usually one token per chunk.
    const itl = m.histogram('mistralrs_inter_token_latency_seconds', { model: MODEL_ID });
    expect(itl.count).toBeGreaterThan(0);
    expect(itl.count).toBeLessThanOrEqual(sum('completion_tokens') - generations);

    expect(m.value('mistralrs_requests_running', { model: MODEL_ID })).toBe(0);
    expect(m.value('mistralrs_requests_waiting', { model: MODEL_ID })).toBe(0);
    expect(m.value('mistralrs_kv_blocks_total', { model: MODEL_ID })).toBe(stats.total_blocks);
    expect(m.value('mistralrs_kv_blocks_used', { model: MODEL_ID })).toBe(stats.total_blocks - stats.free_blocks);
    expect(m.value('mistralrs_prefix_cache_queried_blocks_total', { model: MODEL_ID })).toBe(stats.prefix_cache.queried_blocks);
    expect(m.value('mistralrs_prefix_cache_hit_blocks_total', { model: MODEL_ID })).toBe(stats.prefix_cache.hit_blocks);
    expect(m.value('mistralrs_prefix_cache_cached_blocks', { model: MODEL_ID })).toBe(stats.prefix_cache.cached_blocks);
    expect(m.value('mistralrs_model_loaded', { model: MODEL_ID })).toBe(1);
  }, 300_000);
});

const tiny = needsFixtures('the Llama vocabulary (tiny models)', [vocabPath]);

tiny.describe('GET /metrics with two models', () => {
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'mistralrs-metrics-'));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  tiny.it(
    'labels each series with the model that answered; an unloaded model shows as not loaded, without gauges',
    async () => {
      const paths = { llama: join(dir, 'tiny-llama.gguf'), qwen: join(dir, 'tiny-qwen2.gguf'), spare: join(dir, 'tiny-spare.gguf') };
      await writeTinyGguf(paths.llama, { arch: 'llama' }, 'Q8_0');
      await writeTinyGguf(paths.qwen, { arch: 'qwen2' }, 'Q8_0');
      const pool = new ModelPool<EngineOptions>({
        models: [
          { id: 'llama', settings: { model: paths.llama, kvTokens: 256 } },
          { id: 'qwen', settings: { model: paths.qwen, kvTokens: 256 } },
          { id: 'spare', settings: { model: paths.llama, kvTokens: 256 } },
        ],
        load: (s) => Engine.load(s),
      });
      await Promise.all([pool.load('llama'), pool.load('qwen')]);
      const server = await startServer({ models: pool, port: 0, apiKey: KEY, onInternalError: () => undefined });
      try {
        const generated: Record<string, number> = {};
        for (const [model, times] of [
          ['llama', 1],
          ['qwen', 2],
        ] as const) {
          for (let i = 0; i < times; i++) {
            const r = await post(`${server.url}/v1/completions`, { model, prompt: 'The quick brown fox', max_tokens: 3 }, jsonAuth);
            expect(r.status).toBe(200);
            generated[model] = (generated[model] ?? 0) + (r.json as { usage: Usage }).usage.completion_tokens;
          }
        }
        const m = await scrape(server.url, auth);
        for (const [model, times] of [
          ['llama', 1],
          ['qwen', 2],
        ] as const) {
          expect(m.value('mistralrs_requests_total', { route: '/v1/completions', status: '200', model })).toBe(times);
          expect(m.value('mistralrs_generated_tokens_total', { model })).toBe(generated[model]);
          expect(m.value('mistralrs_model_loaded', { model })).toBe(1);
          expect(m.value('mistralrs_kv_blocks_total', { model })).toBeGreaterThan(0);
        }
        expect(m.value('mistralrs_model_loaded', { model: 'spare' })).toBe(0);
        expect(m.families.get('mistralrs_kv_blocks_total')!.metrics.map((s) => s.labels?.model)).toEqual(['llama', 'qwen']);
      } finally {
        await server.close();
        pool.close();
      }
    },
    120_000,
  );
});
