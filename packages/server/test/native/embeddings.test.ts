/**
 * `/v1/embeddings` as the official `openai` client sees it, on the tiny EmbeddingGemma and
 * Qwen3-Embedding models of @mistralrs/core's fixtures (those are checked against
 * sentence-transformers in core's embeddings test). Expected vectors come from the same
 * `EmbeddingModel` in this process, never hard-coded; then the real command: `serve -m FOLDER`
 * tells an embedding model by its modules.json and serves it, `embedding --prompt` prints one.
 */
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, spawnSync } from 'node:child_process';

import { EmbeddingModel } from '@mistralrs/core';
import OpenAI from 'openai';

import { startServer, type RunningServer } from '../../src/index.js';

const fixtures = new URL('../../../core/test/fixtures/embeddings/', import.meta.url).pathname;
const bin = new URL('../../../cli/bin/mistralrs-server.js', import.meta.url).pathname;
const texts = ['Paris', 'What is the capital of France?', 'café — naïve 🙂'];

describe.each(['embeddinggemma-tiny', 'qwen3-embedding-tiny'])('%s through the openai client', (name) => {
  let model: EmbeddingModel;
  let server: RunningServer;
  let client: OpenAI;
  beforeAll(async () => {
    model = await EmbeddingModel.load({ model: `${fixtures}${name}` });
    server = await startServer({ engine: model, modelId: name, port: 0, onInternalError: () => undefined });
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  });
  afterAll(async () => {
    await server?.close();
    await model?.close();
  });

  it("returns the model's embeddings, base64 as the client asks by default, floats when asked", async () => {
    const expected = (await model.embed(texts)).embeddings.map((e) => Array.from(e));
    const base64 = await client.embeddings.create({ model: name, input: texts });
    const floats = await client.embeddings.create({ model: name, input: texts, encoding_format: 'float' });
    for (const response of [base64, floats]) {
      expect(response.object).toBe('list');
      expect(response.model).toBe(name);
      expect(response.data.map((d) => d.index)).toEqual([0, 1, 2]);
      expect(response.data.map((d) => d.embedding)).toEqual(expected);
      expect(response.usage.prompt_tokens).toBe((await model.tokenize(texts)).reduce((n, ids) => n + ids.length, 0));
      expect(response.usage.total_tokens).toBe(response.usage.prompt_tokens);
    }
  });

  it('takes token ids, dimensions and a prompt name as the model does', async () => {
    const ids = Array.from((await model.tokenize('hello world'))[0]!);
    const byIds = await client.embeddings.create({ model: name, input: [ids], encoding_format: 'float' });
    expect(byIds.data[0]!.embedding).toEqual(Array.from((await model.embed([ids])).embeddings[0]!));
    const short = await client.embeddings.create({ model: name, input: 'hello world', dimensions: 16, encoding_format: 'float' });
    expect(short.data[0]!.embedding).toEqual(Array.from((await model.embed('hello world', { dimensions: 16 })).embeddings[0]!));
    const query = await client.embeddings.create({
      model: name,
      input: 'hello world',
      encoding_format: 'float',
      prompt_name: 'query',
    } as OpenAI.EmbeddingCreateParams);
    expect(query.data[0]!.embedding).toEqual(Array.from((await model.embed('hello world', { promptName: 'query' })).embeddings[0]!));
  });

  it('answers concurrent requests each with its own inputs', async () => {
    const answers = await Promise.all(
      texts.map((t) => client.embeddings.create({ model: name, input: [t, ...texts], encoding_format: 'float' })),
    );
    const alone = (await model.embed(texts)).embeddings.map((e) => Array.from(e));
    answers.forEach((answer, i) => {
      expect(answer.data.map((d) => d.embedding)).toEqual([alone[i], ...alone]);
    });
  });

  it('refuses what it cannot embed with a 400 the client raises', async () => {
    const tooLong = client.embeddings.create({ model: name, input: [Array.from({ length: 600 }, () => 5)] });
    await expect(tooLong).rejects.toMatchObject({ status: 400 });
    await expect(tooLong).rejects.toThrow(/600 tokens, more than the 512/);
    await expect(client.embeddings.create({ model: name, input: [[999999]] })).rejects.toThrow(/token id 999999 is not in the vocabulary/);
    await expect(client.chat.completions.create({ model: name, messages: [{ role: 'user', content: 'hi' }] })).rejects.toMatchObject({
      status: 400,
      code: 'model_not_supported',
    });
  });
});

describe('the command', () => {
  it('serves an embedding folder given to serve -m, told by its modules.json', async () => {
    const folder = `${fixtures}qwen3-embedding-tiny`;
    const child = spawn(process.execPath, [bin, 'serve', '-m', folder, '-p', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let stderr = '';
        child.stderr!.setEncoding('utf8').on('data', (text: string) => {
          stderr += text;
          const match = /listening on (http:\/\/\S+) \(qwen3-embedding-tiny, embeddings\)/.exec(stderr);
          if (match) resolve(match[1]!);
        });
        child.once('exit', () => reject(new Error(`exited before listening: ${stderr}`)));
      });
      const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const answer = await client.embeddings.create({ model: 'qwen3-embedding-tiny', input: 'hello world', encoding_format: 'float' });
      const model = await EmbeddingModel.load({ model: folder });
      try {
        expect(answer.data[0]!.embedding).toEqual(Array.from((await model.embed('hello world')).embeddings[0]!));
      } finally {
        await model.close();
      }
    } finally {
      child.kill('SIGINT');
      expect(await exited).toBe(0);
    }
  });

  it('prints one embedding as JSON with embedding --prompt, and refuses a chat on an embedding model', async () => {
    const folder = `${fixtures}embeddinggemma-tiny`;
    const printed = spawnSync(process.execPath, [bin, 'embedding', '-m', folder, '--prompt', 'hello world'], { encoding: 'utf8' });
    expect(printed.status).toBe(0);
    const model = await EmbeddingModel.load({ model: folder });
    try {
      expect(JSON.parse(printed.stdout)).toEqual(Array.from((await model.embed('hello world')).embeddings[0]!));
    } finally {
      await model.close();
    }
    const chat = spawnSync(process.execPath, [bin, 'run', '-m', folder, '-i'], { encoding: 'utf8', input: '' });
    expect(chat.status).toBe(1);
    expect(chat.stderr).toMatch(/is an embedding model: it has no chat; serve it/);
    const notEmbedding = spawnSync(process.execPath, [bin, 'embedding', '-m', `${fixtures}`, '--prompt', 'x'], { encoding: 'utf8' });
    expect(notEmbedding.status).toBe(1);
    expect(notEmbedding.stderr).toMatch(/mistralrs-server: /);
  });
});
