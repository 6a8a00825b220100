/**
 * Many models behind one server, with two real tiny models (random-weight Llama and Qwen 2
 * GGUFs): each request is answered by the model it names, exactly as that engine answers
 * alone; models load, unload and reload over HTTP; unloading waits for a generation in
 * flight, which ends whole; the memory limit refuses a model that would not fit, before
 * loading it (its file's size) and after (its measured weights and KV cache).
 */
import { afterAll, beforeAll, expect } from '@jest/globals';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { Engine, type EngineOptions } from '@mistralrs/core';

import { vocabPath, writeTinyGguf } from '../../../core/test/fixtures/tiny-model.js';
import { needsFixtures } from '../../../../test-support/fixtures.js';
import { ModelPool, startServer, type RunningServer } from '../../src/index.js';
import { post, sseData } from './helpers.js';

const tiny = needsFixtures('the Llama vocabulary (tiny models)', [vocabPath]);

let dir: string;
const paths = { llama: '', qwen: '' };
const KEY = 'sk-multi';
const auth = { 'content-type': 'application/json', authorization: `Bearer ${KEY}` };

beforeAll(async () => {
  if (!tiny.present) return;
  dir = mkdtempSync(join(tmpdir(), 'mistralrs-multi-'));
  paths.llama = join(dir, 'tiny-llama.gguf');
  paths.qwen = join(dir, 'tiny-qwen2.gguf');
  await writeTinyGguf(paths.llama, { arch: 'llama' }, 'Q8_0');
  await writeTinyGguf(paths.qwen, { arch: 'qwen2' }, 'Q8_0');
}, 120_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A pool of the two tiny models (as the CLI makes one: load through Engine.load, the file's size as the estimate). */
function tinyPool(maxMemoryBytes?: number, load: Record<string, boolean> = {}) {
  const settings: Record<string, EngineOptions> = {
    llama: { model: paths.llama, kvTokens: 256 },
    qwen: { model: paths.qwen, kvTokens: 256 },
  };
  const pool = new ModelPool<EngineOptions>({
    models: Object.entries(settings).map(([id, s]) => ({ id, settings: s })),
    load: (s) => Engine.load(s),
    estimateBytes: async (s) => statSync(s.model!).size,
    ...(maxMemoryBytes !== undefined ? { maxMemoryBytes } : {}),
  });
  return {
    pool,
    loadAll: () =>
      Promise.all(
        Object.keys(settings)
          .filter((id) => load[id] !== false)
          .map((id) => pool.load(id)),
      ),
  };
}

async function withServer(pool: ModelPool<EngineOptions>, run: (server: RunningServer) => Promise<void>): Promise<void> {
  const server = await startServer({ models: pool, port: 0, apiKey: KEY, onInternalError: () => undefined });
  try {
    await run(server);
  } finally {
    await server.close();
    pool.close();
  }
}

const completion = (model: string, fields: Record<string, unknown> = {}) => ({
  model,
  prompt: 'The quick brown fox',
  max_tokens: 8,
  temperature: 0,
  ...fields,
});

/** What the model's engine answers on its own. */
async function direct(pool: ModelPool<EngineOptions>, id: string): Promise<string> {
  const lease = pool.acquire(id);
  try {
    return (await lease.engine.complete({ prompt: 'The quick brown fox', maxTokens: 8, temperature: 0 }).result).text;
  } finally {
    lease.release();
  }
}

tiny.describe('two tiny models behind one server', () => {
  tiny.it(
    'routes each request to the model it names, which answers as it does alone; unknown ids are a 404 listing both',
    async () => {
      const { pool, loadAll } = tinyPool();
      await loadAll();
      const alone = { llama: await direct(pool, 'llama'), qwen: await direct(pool, 'qwen') };
      // The two models must tell apart, or the routing below would prove nothing.
      expect(alone.llama).not.toBe(alone.qwen);
      await withServer(pool, async (server) => {
        for (const id of ['llama', 'qwen'] as const) {
          const r = await post(`${server.url}/v1/completions`, completion(id), auth);
          expect(r.status).toBe(200);
          expect(r.json).toMatchObject({ model: id, choices: [{ text: alone[id] }] });
        }
        const byDefault = await post(`${server.url}/v1/completions`, completion('default'), auth);
        expect(byDefault.json).toMatchObject({ model: 'llama', choices: [{ text: alone.llama }] });
        const unknown = await post(`${server.url}/v1/completions`, completion('mistral'), auth);
        expect(unknown.status).toBe(404);
        expect(unknown.json).toMatchObject({
          error: {
            code: 'model_not_found',
            param: 'model',
            message: 'the model "mistral" does not exist; this server serves "llama", "qwen"',
          },
        });
        const stats = await fetch(`${server.url}/v1/stats?model=qwen`, { headers: auth });
        expect(await stats.json()).toMatchObject({ model: 'qwen', running: 0 });
      });
    },
    120_000,
  );

  tiny.it(
    'lists both with their status; loads, unloads and reloads a model over HTTP behind the API key',
    async () => {
      const { pool, loadAll } = tinyPool(undefined, { qwen: false });
      await loadAll();
      await withServer(pool, async (server) => {
        const statuses = async () =>
          (
            (await (await fetch(`${server.url}/v1/models`, { headers: auth })).json()) as { data: Array<{ id: string; status: string }> }
          ).data.map((m) => [m.id, m.status]);
        expect(await statuses()).toEqual([
          ['llama', 'loaded'],
          ['qwen', 'unloaded'],
        ]);
        const notLoaded = await post(`${server.url}/v1/completions`, completion('qwen'), auth);
        expect([notLoaded.status, (notLoaded.json as { error: { code: string } }).error.code]).toEqual([400, 'model_not_loaded']);

        const noKey = await post(`${server.url}/v1/models/load`, { model: 'qwen' });
        expect(noKey.status).toBe(401);
        const loaded = await post(`${server.url}/v1/models/load`, { model: 'qwen' }, auth);
        expect(loaded.status).toBe(200);
        const body = loaded.json as { status: string; memory_bytes: number; memory: { used_bytes: number } };
        expect(body.status).toBe('loaded');
        // Weights (the file) and the KV cache: more than the file alone.
        expect(body.memory_bytes).toBeGreaterThan(statSync(paths.qwen).size);
        expect(await statuses()).toEqual([
          ['llama', 'loaded'],
          ['qwen', 'loaded'],
        ]);
        expect((await post(`${server.url}/v1/completions`, completion('qwen'), auth)).status).toBe(200);

        const reloaded = await post(`${server.url}/v1/models/reload`, { model: 'llama' }, auth);
        expect([reloaded.status, (reloaded.json as { status: string }).status]).toEqual([200, 'loaded']);
        const unloaded = await post(`${server.url}/v1/models/unload`, { model: 'qwen' }, auth);
        expect([unloaded.status, (unloaded.json as { status: string }).status]).toEqual([200, 'unloaded']);
        expect(await statuses()).toEqual([
          ['llama', 'loaded'],
          ['qwen', 'unloaded'],
        ]);
        expect((await post(`${server.url}/v1/completions`, completion('llama'), auth)).status).toBe(200);
      });
    },
    120_000,
  );

  tiny.it(
    'unloading waits for a stream in flight, which ends whole, then frees the model',
    async () => {
      const { pool, loadAll } = tinyPool();
      await loadAll();
      await withServer(pool, async (server) => {
        const events: string[] = [];
        const stream = post(
          `${server.url}/v1/completions`,
          completion('qwen', { max_tokens: 200, ignore_eos: true, stream: true, stream_options: { include_usage: true } }),
          auth,
        ).then((r) => {
          events.push('stream done');
          return r;
        });
        // Unload once the request holds the model.
        while (pool.state('qwen').inFlight === 0) await new Promise((resolve) => setTimeout(resolve, 2));
        const unload = post(`${server.url}/v1/models/unload`, { model: 'qwen' }, auth).then((r) => {
          events.push('unloaded');
          return r;
        });
        // The unload has begun (new requests are refused) while the stream still runs.
        while (pool.state('qwen').status !== 'unloading' && events.length === 0) await new Promise((resolve) => setTimeout(resolve, 1));
        expect([pool.state('qwen').status, pool.state('qwen').inFlight, events]).toEqual(['unloading', 1, []]);
        const refused = await post(`${server.url}/v1/completions`, completion('qwen'), auth);
        expect((refused.json as { error: { code: string } }).error.code).toBe('model_not_loaded');
        const [streamed, unloaded] = await Promise.all([stream, unload]);
        expect(events).toEqual(['stream done', 'unloaded']);
        expect(streamed.status).toBe(200);
        const chunks = sseData(streamed.text);
        expect(chunks.at(-1)).toBe('[DONE]');
        const usage = JSON.parse(chunks.at(-2)!) as { usage: { completion_tokens: number } };
        expect(usage.usage.completion_tokens).toBe(200);
        expect(
          chunks
            .slice(0, -2)
            .some((c) => (JSON.parse(c) as { choices: Array<{ finish_reason: string | null }> }).choices[0]?.finish_reason === 'length'),
        ).toBe(true);
        expect([unloaded.status, (unloaded.json as { status: string }).status]).toEqual([200, 'unloaded']);
        expect(pool.memory().usedBytes).toBe(pool.state('llama').memoryBytes);
      });
    },
    120_000,
  );

  tiny.it(
    'refuses (507) a model that would pass the memory limit: by its file before loading, by its measured size after',
    async () => {
      const probe = tinyPool();
      await probe.pool.load('llama');
      const llamaBytes = probe.pool.state('llama').memoryBytes!;
      probe.pool.close();
      const qwenFile = statSync(paths.qwen).size;

      // The estimate (the file) alone is over: refused before loading.
      const { pool: small } = tinyPool(llamaBytes + 1024);
      await small.load('llama');
      await withServer(small, async (server) => {
        const refused = await post(`${server.url}/v1/models/load`, { model: 'qwen' }, auth);
        expect(refused.status).toBe(507);
        const error = (refused.json as { error: { code: string; message: string } }).error;
        expect(error.code).toBe('memory_limit_exceeded');
        expect(error.message).toContain('(estimated: weights and KV cache)');
        expect(error.message).toContain('loaded: llama');
        expect(small.state('qwen').status).toBe('unloaded');
      });

      // The file fits, the file and the KV cache do not: loaded, measured, closed, refused.
      const { pool: tight } = tinyPool(llamaBytes + qwenFile + 1024);
      await tight.load('llama');
      await expect(tight.load('qwen')).rejects.toMatchObject({
        status: 507,
        code: 'memory_limit_exceeded',
        message: expect.stringContaining('(measured: weights and KV cache)'),
      });
      expect(tight.memory().usedBytes).toBe(llamaBytes);
      tight.close();
    },
    120_000,
  );
});
