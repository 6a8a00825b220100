/**
 * POST /v1/embeddings's shapes and refusals on a scripted embedding model (fake-engine.ts):
 * every input form, both encodings, `dimensions`, and the 400s of bad bodies and of a model
 * of the wrong kind. The real models are in ../native/embeddings.test.ts.
 */
import { afterEach, describe, expect, it } from '@jest/globals';

import { createApp, ModelPool, type AppOptions, type PoolEngine } from '../../src/index.js';
import { closeApp, fakeEmbedder, fakeEngine, listenOnLoopback } from './fake-engine.js';

const listen = (options: AppOptions) => listenOnLoopback(createApp(options));
afterEach(closeApp);

interface Answer {
  data: Array<{ embedding: number[] | string }>;
  error: { message: string };
}

async function post(url: string, path: string, body: unknown): Promise<{ status: number; body: Answer }> {
  const res = await fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Answer };
}

describe('POST /v1/embeddings', () => {
  it.each([
    ['a string', 'hey', [[3, 104, 121, 0]]],
    [
      'a list of strings',
      ['a', 'bc'],
      [
        [1, 97, 97, 0],
        [2, 98, 99, 0],
      ],
    ],
    ['a list of token ids', [5, 6, 7], [[3, 5, 7, 0]]],
    [
      'a list of token id lists',
      [[5], [6, 7]],
      [
        [1, 5, 5, 0],
        [2, 6, 7, 0],
      ],
    ],
  ])('embeds %s, one entry per input in order, with the token usage', async (_, input, expected) => {
    const url = await listen({ engine: fakeEmbedder(), modelId: 'embed' });
    const { status, body } = await post(url, '/v1/embeddings', { input, model: 'embed' });
    expect(status).toBe(200);
    expect(body).toEqual({
      object: 'list',
      data: expected.map((embedding, index) => ({ object: 'embedding', index, embedding })),
      model: 'embed',
      usage: { prompt_tokens: expected.reduce((n, e) => n + e[0]!, 0), total_tokens: expected.reduce((n, e) => n + e[0]!, 0) },
    });
  });

  it('encodes base64 as little-endian float32, and keeps the first `dimensions` values', async () => {
    const url = await listen({ engine: fakeEmbedder(), modelId: 'embed' });
    const { body } = await post(url, '/v1/embeddings', { input: 'hey', encoding_format: 'base64', dimensions: 2 });
    const bytes = Buffer.from(body.data[0]!.embedding as string, 'base64');
    expect(bytes.length).toBe(8);
    expect([bytes.readFloatLE(0), bytes.readFloatLE(4)]).toEqual([3, 104]);
  });

  it.each([
    [{}, 'input', 'missing_required_parameter'],
    [{ input: '' }, 'input', 'empty_string'],
    [{ input: [] }, 'input', 'empty_array'],
    [{ input: ['a', ''] }, 'input[1]', 'empty_string'],
    [{ input: [[1], []] }, 'input[1]', 'empty_array'],
    [{ input: ['a', 1] }, 'input', 'invalid_type'],
    [{ input: [1, -2] }, 'input', 'invalid_type'],
    [{ input: [[1.5]] }, 'input[0]', 'invalid_type'],
    [{ input: { text: 'a' } }, 'input', 'invalid_type'],
    [{ input: Array.from({ length: 2049 }, () => 'a') }, 'input', 'array_above_max_length'],
    [{ input: 'a', encoding_format: 'int8' }, 'encoding_format', 'invalid_value'],
    [{ input: 'a', dimensions: 0 }, 'dimensions', 'integer_below_min_value'],
    [{ input: 'a', dimensions: 5 }, 'dimensions', 'integer_above_max_value'],
    [{ input: 'a', dimensions: 1.5 }, 'dimensions', 'invalid_type'],
    [{ input: 'a', truncate_sequence: 'yes' }, 'truncate_sequence', 'invalid_type'],
  ])('refuses %j with a 400 naming %s', async (request, param, code) => {
    const url = await listen({ engine: fakeEmbedder(), modelId: 'embed' });
    const { status, body } = await post(url, '/v1/embeddings', request);
    expect(status).toBe(400);
    expect(body.error).toMatchObject({ type: 'invalid_request_error', param, code });
  });

  it('routes by model among generation and embedding models, each refusing the other kind of route', async () => {
    const models = new ModelPool<null>({
      models: [
        { id: 'chat', settings: null },
        { id: 'embed', settings: null },
      ],
      load: async (_, id) =>
        id === 'embed'
          ? fakeEmbedder()
          : (Object.assign(
              fakeEngine(() => []),
              { close: () => {} },
            ) as PoolEngine),
      footprintBytes: () => 0,
    });
    await models.load('chat');
    await models.load('embed');
    const url = await listen({ models });
    expect((await post(url, '/v1/embeddings', { model: 'embed', input: 'a' })).status).toBe(200);
    const chatEmbeds = await post(url, '/v1/embeddings', { model: 'chat', input: 'a' });
    expect(chatEmbeds.status).toBe(400);
    expect(chatEmbeds.body.error).toMatchObject({ code: 'model_not_supported', param: 'model' });
    expect(chatEmbeds.body.error.message).toMatch(/chat is a text generation model/);
    const embedChats = await post(url, '/v1/chat/completions', { model: 'embed', messages: [{ role: 'user', content: 'hi' }] });
    expect(embedChats.status).toBe(400);
    expect(embedChats.body.error).toMatchObject({ code: 'model_not_supported', param: 'model' });
    expect(embedChats.body.error.message).toMatch(
      /embed is an embedding model: it answers POST \/v1\/embeddings, not \/v1\/chat\/completions/,
    );
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).toMatch(/mistralrs_embedding_inputs_waiting\{model="embed"\} 0/);
    expect(metrics).toMatch(/mistralrs_requests_total\{[^}]*route="\/v1\/embeddings"[^}]*\} 1/);
  });
});
