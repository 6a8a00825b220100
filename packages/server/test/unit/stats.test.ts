/** GET /v1/stats: the engine's load and KV cache in snake case, behind the API key. */
import { afterEach, describe, expect, it } from '@jest/globals';

import { createApp, type AppOptions, type StatsBody } from '../../src/index.js';
import { closeApp, fakeEngine, idleLoad, listenOnLoopback } from './fake-engine.js';

const listen = (options: AppOptions) => listenOnLoopback(createApp(options));

afterEach(closeApp);

describe('GET /v1/stats', () => {
  it('reports engine.load and engine.info as they are at each request', async () => {
    const load = idleLoad();
    const url = await listen({ engine: fakeEngine(() => [], [], load), modelId: 'fake' });
    const idle = await fetch(`${url}/v1/stats`);
    expect(idle.status).toBe(200);
    expect(idle.headers.get('cache-control')).toBe('no-store');
    expect(await idle.json()).toEqual({
      model: 'fake',
      running: 0,
      waiting: 0,
      free_blocks: 4,
      total_blocks: 4,
      block_size: 16,
      kv_cache_bytes: 4096,
      preemptions: 0,
      prefix_cache: { queried_blocks: 0, hit_blocks: 0, evicted_blocks: 0, cached_blocks: 0 },
      speculation: { verify_steps: 0, proposed_tokens: 0, accepted_tokens: 0 },
    } satisfies StatsBody);

    Object.assign(load, {
      running: 2,
      waiting: 5,
      freeBlocks: 1,
      preemptions: 3,
      prefixCache: { queriedBlocks: 10, hitBlocks: 6, evictedBlocks: 2, cachedBlocks: 1 },
      speculation: { steps: 2, proposed: 8, accepted: 5 },
    });
    expect(await (await fetch(`${url}/v1/stats`)).json()).toMatchObject({
      speculation: { verify_steps: 2, proposed_tokens: 8, accepted_tokens: 5 },
      running: 2,
      waiting: 5,
      free_blocks: 1,
      preemptions: 3,
      prefix_cache: { queried_blocks: 10, hit_blocks: 6, evicted_blocks: 2, cached_blocks: 1 },
    });
  });

  it('needs the API key when one is set, and answers only GET', async () => {
    const url = await listen({ engine: fakeEngine(() => []), modelId: 'fake', apiKey: 'sk-stats' });
    const anonymous = await fetch(`${url}/v1/stats`);
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toMatchObject({ error: { code: 'invalid_api_key' } });
    const authorized = await fetch(`${url}/v1/stats`, { headers: { authorization: 'Bearer sk-stats' } });
    expect(authorized.status).toBe(200);
    const post = await fetch(`${url}/v1/stats`, { method: 'POST', headers: { authorization: 'Bearer sk-stats' } });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET');
  });
});
