/**
 * Many models behind one server, with scripted engines: routing by `model`, `/v1/models` with
 * each model's status, loading, unloading and reloading over HTTP (and who may), unloading
 * while a request runs, the memory limit, and a load that fails.
 */
import { afterEach, describe, expect, it } from '@jest/globals';

import { createApp, ModelPool, startServer, type PoolEngine, type RunningServer } from '../../src/index.js';
import { closeApp, fakeEngine, listenOnLoopback, type Step } from './fake-engine.js';

const chunk = (text: string): Step => ({ chunk: { text, tokenIds: [text.charCodeAt(0)] } });

interface Settings {
  /** What the model answers. */
  answer: string;
  /** Its footprint, in bytes. */
  bytes: number;
  /** A step every request waits on (to hold a request in flight). */
  hold?: Promise<unknown>;
  fail?: string;
}

interface Loaded {
  engine: PoolEngine;
  closed: boolean;
}

/** A pool of scripted models; `loads` records each engine made, by id. */
function pool(models: Record<string, Settings>, options: { maxMemoryBytes?: number; estimate?: boolean; defaultModel?: string } = {}) {
  const loads: Record<string, Loaded[]> = {};
  const footprints = new Map<PoolEngine, number>();
  const modelPool = new ModelPool<Settings>({
    models: Object.entries(models).map(([id, settings]) => ({ id, settings })),
    load: async (settings, id) => {
      if (settings.fail) throw new Error(settings.fail);
      const record: Loaded = { engine: undefined as unknown as PoolEngine, closed: false };
      const served = fakeEngine(() => [...(settings.hold ? [{ waitFor: settings.hold }] : []), chunk(settings.answer)]);
      record.engine = Object.assign(served, {
        close: () => {
          record.closed = true;
        },
      });
      footprints.set(record.engine, settings.bytes);
      const records = loads[id] ?? [];
      loads[id] = records;
      records.push(record);
      return record.engine;
    },
    footprintBytes: (engine) => footprints.get(engine as PoolEngine) ?? 0,
    ...(options.estimate ? { estimateBytes: async (settings: Settings) => settings.bytes } : {}),
    ...(options.maxMemoryBytes !== undefined ? { maxMemoryBytes: options.maxMemoryBytes } : {}),
    ...(options.defaultModel !== undefined ? { defaultModel: options.defaultModel } : {}),
  });
  return { modelPool, loads };
}

async function loadAll(modelPool: ModelPool<Settings>): Promise<void> {
  for (const id of modelPool.ids) await modelPool.load(id);
}

const KEY = 'sk-test';

async function call(url: string, path: string, body?: unknown, key?: string) {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) };
  const response = await fetch(`${url}${path}`, body === undefined ? { headers } : { method: 'POST', headers, body: JSON.stringify(body) });
  // biome-ignore lint/suspicious/noExplicitAny: JSON bodies, read field by field in the assertions
  return { status: response.status, body: (await response.json()) as Record<string, any> };
}

const complete = (url: string, model?: string, key?: string) =>
  call(url, '/v1/completions', { ...(model !== undefined ? { model } : {}), prompt: 'Hi', max_tokens: 4 }, key);

let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
  await closeApp();
});

describe('routing by model', () => {
  it('answers each request with the model it names; default and a missing model mean the first; an unknown one is a 404 listing the ids', async () => {
    const { modelPool } = pool({ alpha: { answer: 'A', bytes: 1 }, beta: { answer: 'B', bytes: 1 } });
    await loadAll(modelPool);
    const url = await listenOnLoopback(createApp({ models: modelPool }));

    const alpha = await complete(url, 'alpha');
    expect([alpha.status, alpha.body.model, alpha.body.choices[0].text]).toEqual([200, 'alpha', 'A']);
    const beta = await complete(url, 'beta');
    expect([beta.status, beta.body.model, beta.body.choices[0].text]).toEqual([200, 'beta', 'B']);
    expect((await complete(url, 'default')).body.model).toBe('alpha');
    expect((await complete(url)).body.model).toBe('alpha');

    const unknown = await complete(url, 'gamma');
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toMatchObject({ code: 'model_not_found', param: 'model' });
    expect(unknown.body.error.message).toBe('the model "gamma" does not exist; this server serves "alpha", "beta"');
    const chat = await call(url, '/v1/chat/completions', { model: 'beta', messages: [{ role: 'user', content: 'Hi' }] });
    expect([chat.status, chat.body.model, chat.body.choices[0].message.content]).toEqual([200, 'beta', 'B']);
    const tokens = await call(url, '/tokenize', { model: 'gamma', prompt: 'Hi' });
    expect([tokens.status, tokens.body.error.code]).toEqual([404, 'model_not_found']);
    expect((await call(url, '/v1/stats?model=beta')).body.model).toBe('beta');
    expect((await call(url, '/v1/stats')).body.model).toBe('alpha');
  });

  it('takes defaultModel as the default, and refuses a default that is not listed', async () => {
    const { modelPool } = pool({ alpha: { answer: 'A', bytes: 1 }, beta: { answer: 'B', bytes: 1 } }, { defaultModel: 'beta' });
    await loadAll(modelPool);
    const url = await listenOnLoopback(createApp({ models: modelPool }));
    expect((await complete(url)).body.model).toBe('beta');
    expect((await call(url, '/health')).body).toEqual({ status: 'ok', model: 'beta' });
    expect(() => pool({ alpha: { answer: 'A', bytes: 1 } }, { defaultModel: 'zeta' })).toThrow(
      'the default model "zeta" is not one of "alpha"',
    );
  });

  it('lists every model with its status; a listed model that is not loaded is a 400 model_not_loaded saying how to load it', async () => {
    const { modelPool } = pool({ alpha: { answer: 'A', bytes: 1 }, beta: { answer: 'B', bytes: 1 } });
    await modelPool.load('alpha');
    const url = await listenOnLoopback(createApp({ models: modelPool }));
    const list = await call(url, '/v1/models');
    expect(list.body.data.map((m: { id: string; status: string }) => [m.id, m.object, m.status])).toEqual([
      ['alpha', 'model', 'loaded'],
      ['beta', 'model', 'unloaded'],
    ]);
    expect((await call(url, '/v1/models/beta')).body).toMatchObject({ id: 'beta', status: 'unloaded' });
    expect((await call(url, '/v1/models/nope')).status).toBe(404);
    expect((await call(url, '/v1/models/default')).body).toMatchObject({ id: 'alpha', status: 'loaded' });

    const refused = await complete(url, 'beta');
    expect(refused.status).toBe(400);
    expect(refused.body.error).toMatchObject({ code: 'model_not_loaded', param: 'model' });
    expect(refused.body.error.message).toContain('POST /v1/models/load {"model": "beta"}');
  });
});

describe('loading and unloading over HTTP', () => {
  it('loads, unloads and reloads a model behind the API key, and reports its status', async () => {
    const { modelPool, loads } = pool({ alpha: { answer: 'A', bytes: 100 }, beta: { answer: 'B', bytes: 50 } });
    await modelPool.load('alpha');
    const url = await listenOnLoopback(createApp({ models: modelPool, apiKey: KEY }));

    const noKey = await call(url, '/v1/models/load', { model: 'beta' });
    expect([noKey.status, noKey.body.error.code]).toEqual([401, 'invalid_api_key']);
    expect(loads.beta).toBeUndefined();

    const loaded = await call(url, '/v1/models/load', { model: 'beta' }, KEY);
    expect(loaded.status).toBe(200);
    expect(loaded.body).toEqual({
      model_id: 'beta',
      status: 'loaded',
      memory_bytes: 50,
      in_flight: 0,
      memory: { limit_bytes: modelPool.maxMemoryBytes, used_bytes: 150 },
    });
    expect((await complete(url, 'beta', KEY)).body.choices[0].text).toBe('B');
    // Loading a loaded model is a no-op.
    expect((await call(url, '/v1/models/load', { model: 'beta' }, KEY)).body.status).toBe('loaded');
    expect(loads.beta).toHaveLength(1);

    // mistral.rs's field name works too.
    const unloaded = await call(url, '/v1/models/unload', { model_id: 'beta' }, KEY);
    expect([unloaded.status, unloaded.body.status, unloaded.body.memory_bytes, unloaded.body.memory.used_bytes]).toEqual([
      200,
      'unloaded',
      null,
      100,
    ]);
    expect(loads.beta![0]!.closed).toBe(true);
    expect((await complete(url, 'beta', KEY)).body.error.code).toBe('model_not_loaded');

    const reloaded = await call(url, '/v1/models/reload', { model: 'alpha' }, KEY);
    expect([reloaded.status, reloaded.body.status]).toEqual([200, 'loaded']);
    expect(loads.alpha!.map((l) => l.closed)).toEqual([true, false]);
    expect((await complete(url, 'alpha', KEY)).body.choices[0].text).toBe('A');

    const status = await call(url, '/v1/models/status', { model: 'beta' }, KEY);
    expect(status.body).toMatchObject({ model_id: 'beta', status: 'unloaded', memory_bytes: null });
  });

  it('refuses a management request without a model, naming an unknown one, or with two different ids', async () => {
    const { modelPool } = pool({ alpha: { answer: 'A', bytes: 1 } });
    const url = await listenOnLoopback(createApp({ models: modelPool, apiKey: KEY }));
    const missing = await call(url, '/v1/models/load', {}, KEY);
    expect([missing.status, missing.body.error.code, missing.body.error.param]).toEqual([400, 'missing_required_parameter', 'model']);
    const unknown = await call(url, '/v1/models/unload', { model: 'omega' }, KEY);
    expect([unknown.status, unknown.body.error.code]).toEqual([404, 'model_not_found']);
    expect(unknown.body.error.message).toContain('this server serves "alpha"');
    const both = await call(url, '/v1/models/load', { model: 'alpha', model_id: 'omega' }, KEY);
    expect([both.status, both.body.error.code]).toEqual([400, 'conflicting_parameters']);
    const wrongType = await call(url, '/v1/models/load', { model: 3 }, KEY);
    expect([wrongType.status, wrongType.body.error.code, wrongType.body.error.param]).toEqual([400, 'invalid_type', 'model']);
    const get = await fetch(`${url}/v1/models/load`, { method: 'PUT', headers: { authorization: `Bearer ${KEY}` } });
    expect([get.status, get.headers.get('allow')]).toEqual([405, 'POST']);
  });

  it('without an API key: allowed on a loopback address, refused (403) when the server is reachable from other machines', async () => {
    const { modelPool } = pool({ alpha: { answer: 'A', bytes: 1 } });
    server = await startServer({ models: modelPool, port: 0, host: '127.0.0.1' });
    const loopback = await call(server.url, '/v1/models/load', { model: 'alpha' });
    expect([loopback.status, loopback.body.status]).toEqual([200, 'loaded']);

    // What startServer decides for 0.0.0.0 without a key; the app is on loopback here only to test it.
    const url = await listenOnLoopback(createApp({ models: modelPool, allowModelManagement: false }));
    const refused = await call(url, '/v1/models/unload', { model: 'alpha' });
    expect([refused.status, refused.body.error.code]).toEqual([403, 'model_management_disabled']);
    expect(refused.body.error.message).toContain('--api-key');
    // Reading the status and serving requests stay open.
    expect((await call(url, '/v1/models/status', { model: 'alpha' })).body.status).toBe('loaded');
    expect((await complete(url, 'alpha')).status).toBe(200);
  });

  it('retrieves a model whose id is a Hugging Face repository (two path segments)', async () => {
    const { modelPool } = pool({ 'Qwen/Qwen3-4B': { answer: 'Q', bytes: 1 } });
    const url = await listenOnLoopback(createApp({ models: modelPool }));
    expect((await call(url, '/v1/models/Qwen/Qwen3-4B')).body).toMatchObject({ id: 'Qwen/Qwen3-4B', status: 'unloaded' });
    expect((await call(url, '/v1/models/Qwen/Other')).body.error.message).toBe(
      'the model "Qwen/Other" does not exist; this server serves "Qwen/Qwen3-4B"',
    );
  });

  it('a server given one engine serves it as before and refuses to unload it', async () => {
    const engine = fakeEngine(() => [chunk('X')]);
    const url = await listenOnLoopback(createApp({ engine, modelId: 'solo', apiKey: KEY }));
    expect((await call(url, '/v1/models', undefined, KEY)).body.data).toEqual([expect.objectContaining({ id: 'solo', status: 'loaded' })]);
    const refused = await call(url, '/v1/models/unload', { model: 'solo' }, KEY);
    expect([refused.status, refused.body.error.code]).toEqual([400, 'model_not_manageable']);
    expect((await complete(url, 'solo', KEY)).body.choices[0].text).toBe('X');
  });
});

describe('unloading while requests run', () => {
  it('waits for the request in flight, which gets its whole answer; requests arriving meanwhile are refused', async () => {
    let finish!: () => void;
    const hold = new Promise<void>((resolve) => (finish = resolve));
    const { modelPool, loads } = pool({ alpha: { answer: 'A', bytes: 1 }, slow: { answer: 'S', bytes: 1, hold } });
    await loadAll(modelPool);
    const url = await listenOnLoopback(createApp({ models: modelPool, apiKey: KEY }));

    const running = complete(url, 'slow', KEY);
    await waitFor(() => modelPool.state('slow').inFlight === 1);
    let unloadDone = false;
    const unloading = call(url, '/v1/models/unload', { model: 'slow' }, KEY).then((r) => {
      unloadDone = true;
      return r;
    });
    await waitFor(() => modelPool.state('slow').status === 'unloading');
    const refused = await complete(url, 'slow', KEY);
    expect([refused.status, refused.body.error.code]).toEqual([400, 'model_not_loaded']);
    expect(refused.body.error.message).toContain('is being unloaded');
    // Another model is not held up.
    expect((await complete(url, 'alpha', KEY)).body.choices[0].text).toBe('A');
    // A reload cannot start mid-unload.
    expect((await call(url, '/v1/models/reload', { model: 'slow' }, KEY)).body.error.code).toBe('model_busy');
    expect(unloadDone).toBe(false);
    expect(loads.slow![0]!.closed).toBe(false);

    finish();
    const answer = await running;
    expect([answer.status, answer.body.choices[0].text]).toEqual([200, 'S']);
    const unloaded = await unloading;
    expect([unloaded.status, unloaded.body.status]).toEqual([200, 'unloaded']);
    expect(loads.slow![0]!.closed).toBe(true);
  });
});

describe('the memory limit', () => {
  it('refuses (507) a load whose estimate would pass the limit, naming the limit, the size and what is loaded', async () => {
    const MiB = 1024 * 1024;
    const { modelPool, loads } = pool(
      { alpha: { answer: 'A', bytes: 6 * MiB }, beta: { answer: 'B', bytes: 5 * MiB } },
      { maxMemoryBytes: 10 * MiB, estimate: true },
    );
    await modelPool.load('alpha');
    const url = await listenOnLoopback(createApp({ models: modelPool, apiKey: KEY }));
    const refused = await call(url, '/v1/models/load', { model: 'beta' }, KEY);
    expect(refused.status).toBe(507);
    expect(refused.body.error).toMatchObject({ code: 'memory_limit_exceeded', param: 'model' });
    expect(refused.body.error.message).toBe(
      'cannot load the model "beta": it takes 5.0 MiB (estimated: weights and KV cache), and the server\'s memory limit is ' +
        '10.0 MiB, of which 6.0 MiB is in use (loaded: alpha 6.0 MiB); unload a model first, or raise the limit (--max-memory)',
    );
    expect(loads.beta).toBeUndefined();
    const status = await call(url, '/v1/models/status', { model: 'beta' }, KEY);
    expect(status.body).toMatchObject({ status: 'unloaded', error: expect.stringContaining('memory limit') });

    // Once alpha is unloaded, beta fits.
    await call(url, '/v1/models/unload', { model: 'alpha' }, KEY);
    expect((await call(url, '/v1/models/load', { model: 'beta' }, KEY)).body).toMatchObject({ status: 'loaded', memory_bytes: 5 * MiB });
  });

  it('measures the engine after loading, and closes and refuses one larger than its estimate allowed', async () => {
    const { modelPool, loads } = pool({ alpha: { answer: 'A', bytes: 6 }, beta: { answer: 'B', bytes: 5 } }, { maxMemoryBytes: 10 });
    await modelPool.load('alpha');
    await expect(modelPool.load('beta')).rejects.toMatchObject({ status: 507, code: 'memory_limit_exceeded' });
    expect(loads.beta![0]!.closed).toBe(true);
    expect(modelPool.state('beta').status).toBe('unloaded');
    expect(modelPool.memory()).toEqual({ limitBytes: 10, usedBytes: 6 });
  });
});

it('a load that fails is a 500 model_load_failed with the reason, and leaves the model unloaded', async () => {
  const { modelPool } = pool({ broken: { answer: '', bytes: 1, fail: 'model "x.gguf": no such file or folder' } });
  const url = await listenOnLoopback(createApp({ models: modelPool, apiKey: KEY, onInternalError: () => undefined }));
  const failed = await call(url, '/v1/models/load', { model: 'broken' }, KEY);
  expect([failed.status, failed.body.error.code]).toEqual([500, 'model_load_failed']);
  expect(failed.body.error.message).toBe('the model "broken" failed to load: model "x.gguf": no such file or folder');
  expect((await call(url, '/v1/models', undefined, KEY)).body.data[0].status).toBe('unloaded');
});

async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}
