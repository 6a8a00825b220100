/**
 * `mistralrs-server --port N …` and `mistralrs-server toml -f FILE`: the real command, spawned,
 * serving the default model until it gets a signal.
 */
import { beforeAll, describe, expect, it } from '@jest/globals';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';

import { DEFAULT_MODEL_ID, fetchRegistryModel } from '@mistralrs/core';
import OpenAI from 'openai';

import { getStats } from './helpers.js';

const bin = new URL('../../../cli/bin/mistralrs-server.js', import.meta.url).pathname;
let modelPath: string;
let dir: string;

beforeAll(async () => {
  modelPath = await fetchRegistryModel(DEFAULT_MODEL_ID);
  dir = mkdtempSync(join(tmpdir(), 'mistralrs-serve-'));
}, 300_000);

interface Running {
  child: ChildProcess;
  url: string;
  modelId: string;
  /** Sends `signal` and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  /** Resolves once the command's stderr matches `pattern`. */
  stderrMatch(pattern: RegExp): Promise<void>;
  /** Resolves with the exit code. */
  exited: Promise<number | null>;
}

/** Spawns the command and waits for its `listening on URL (ID)` line. */
function start(args: string[]): Promise<Running> {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    let stderr = '';
    const watchers: Array<[RegExp, () => void]> = [];
    child.stderr!.setEncoding('utf8').on('data', (text: string) => {
      stderr += text;
      for (const [pattern, matched] of watchers) if (pattern.test(stderr)) matched();
      const match = /listening on (http:\/\/\S+) \((.+)\)\n/.exec(stderr);
      if (match) {
        resolve({
          child,
          url: match[1]!,
          modelId: match[2]!,
          stop: (signal = 'SIGINT') => {
            child.kill(signal);
            return exited;
          },
          stderrMatch: (pattern) => new Promise((matched) => (pattern.test(stderr) ? matched() : watchers.push([pattern, matched]))),
          exited,
        });
      }
    });
    void exited.then((code) => reject(new Error(`exited ${code} before listening: ${stderr}`)));
  });
}

function run(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stderr: r.stderr };
}

describe('mistralrs-server --port', () => {
  it('serves a GGUF file on 127.0.0.1 and closes cleanly on SIGINT', async () => {
    const server = await start(['--port', '0', 'gguf', '-m', modelPath]);
    try {
      expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      // A file's base name, never its absolute path, is the model id clients see.
      expect(server.modelId).toBe(basename(modelPath, '.gguf'));
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      expect((await client.models.list()).data.map((m) => m.id)).toEqual([server.modelId]);
      const response = await client.chat.completions.create({
        model: server.modelId,
        messages: [{ role: 'user', content: 'Hi' }],
        max_tokens: 3,
      });
      expect(response.usage!.completion_tokens).toBe(3);
    } finally {
      expect(await server.stop('SIGINT')).toBe(0);
    }
  }, 120_000);

  it('serves the default model with an API key, and stops on SIGTERM', async () => {
    const server = await start(['--port', '0', '--api-key', 'sk-cli']);
    try {
      expect(server.modelId).toBe(DEFAULT_MODEL_ID);
      expect((await fetch(`${server.url}/v1/models`)).status).toBe(401);
      expect((await fetch(`${server.url}/health`)).status).toBe(200);
      const ok = await fetch(`${server.url}/v1/models`, { headers: { authorization: 'Bearer sk-cli' } });
      expect(ok.status).toBe(200);
    } finally {
      expect(await server.stop('SIGTERM')).toBe(0);
    }
  }, 120_000);

  it('passes the scheduling and KV cache flags to the engine (/v1/stats shows them)', async () => {
    const server = await start(['--port', '0', '--max-running', '2', '--pa-blk-size', '16', '--no-prefix-cache', 'gguf', '-m', modelPath]);
    try {
      const stats = await getStats(server.url);
      expect(stats).toMatchObject({ model: server.modelId, running: 0, waiting: 0, block_size: 16 });
      expect(stats.free_blocks).toBe(stats.total_blocks);
      // Prefix caching off: a prompt of several blocks, sent twice, is never looked up (with
      // caching on the second would hit: concurrency.test.ts).
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
      const prompt = `Count with me: ${'one two three four five six seven eight nine ten '.repeat(5)}`;
      for (let i = 0; i < 2; i++) await client.completions.create({ model: server.modelId, prompt, max_tokens: 1 });
      const after = await getStats(server.url);
      expect(after.prefix_cache).toEqual({ queried_blocks: 0, hit_blocks: 0, evicted_blocks: 0, cached_blocks: 0 });
    } finally {
      expect(await server.stop()).toBe(0);
    }
  }, 120_000);

  it('rejects bad scheduling and KV cache values with exit code 1 and one line naming the flag', () => {
    for (const [args, message] of [
      [['--pa-gpu-mem-usage', '2'], '--pa-gpu-mem-usage must be a fraction greater than 0 and at most 1, got 2'],
      [['--max-running', '0'], '--max-running must be a positive integer, got 0'],
      [['--pa-ctxt-len', '512', '--pa-gpu-mem', '64'], '--pa-ctxt-len and --pa-gpu-mem each size the KV cache'],
    ] as const) {
      const result = run(['--port', '0', ...args, 'gguf', '-m', modelPath]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain(`mistralrs-server: ${message}`);
      expect(result.stderr).not.toMatch(/\n\s+at /); // no stack trace
    }
  }, 120_000);

  it('rejects a bad port and an unusable --max-body with exit code 1', () => {
    const port = run(['--port', 'abc']);
    expect(port.code).toBe(1);
    expect(port.stderr).toContain('--port');
    const body = run(['--port', '0', '--max-body', 'lots', 'gguf', '-m', modelPath]);
    expect(body.code).toBe(1);
    expect(body.stderr).toContain('--max-body');
  }, 120_000);
});

describe('draining on SIGTERM', () => {
  it('answers new requests 503, ends a stream with an error event and [DONE] and a whole request with 503, then exits 0', async () => {
    const server = await start(['--port', '0', '--drain-timeout', '1', 'gguf', '-m', modelPath]);
    // End-of-text banned and 4000 tokens asked for: far more than the 1 s drain lets finish.
    const endless = { model: server.modelId, max_tokens: 4000, logit_bias: { '0': -100, '2': -100 } };
    const post = (path: string, body: object) =>
      fetch(`${server.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    try {
      const streamed = await post('/v1/chat/completions', {
        ...endless,
        messages: [{ role: 'user', content: 'Tell a story.' }],
        stream: true,
      });
      expect(streamed.status).toBe(200);
      const whole = post('/v1/completions', { ...endless, prompt: 'Once upon a time' });
      // Both generating before the signal.
      while ((await getStats(server.url)).running < 2) await new Promise((resolve) => setTimeout(resolve, 50));

      server.child.kill('SIGTERM');
      await server.stderrMatch(/SIGTERM: draining \(requests in flight get 1 s to finish\)/);
      const refused = await post('/v1/chat/completions', { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1 });
      expect(refused.status).toBe(503);
      expect(await refused.json()).toMatchObject({ error: { type: 'service_unavailable', code: 'server_shutting_down', param: null } });

      const events = (await streamed.text()).split('\n\n').filter(Boolean);
      expect(events.at(-1)).toBe('data: [DONE]');
      expect(JSON.parse(events.at(-2)!.slice('data: '.length))).toMatchObject({ error: { code: 'server_shutting_down' } });
      expect(events.length).toBeGreaterThan(3); // text was streamed before the cut
      const wholeResponse = await whole;
      expect(wholeResponse.status).toBe(503);
      expect(await wholeResponse.json()).toMatchObject({ error: { type: 'service_unavailable', code: 'server_shutting_down' } });
      expect(await server.exited).toBe(0);
    } finally {
      server.child.kill('SIGKILL');
    }
  }, 180_000);

  it('refuses a drain time that is not a number of seconds', () => {
    const result = run(['--port', '0', '--drain-timeout', '-1', 'gguf', '-m', modelPath]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('--drain-timeout must be a number of seconds');
  });
});

describe('mistralrs-server toml -f FILE', () => {
  it("serves mistral.rs's [model] selector with the [server] table's port and key", async () => {
    const file = join(dir, 'selector.toml');
    writeFileSync(
      file,
      [
        '[model]',
        `quantized_model_id = ${JSON.stringify(dirname(modelPath))}`,
        `quantized_filename = ${JSON.stringify(basename(modelPath))}`,
        '',
        'pa_blk_size = 16',
        '',
        '[server]',
        'port = 0',
        'api_key = "sk-toml"',
        'max_running = 2',
        '',
      ].join('\n'),
    );
    const server = await start(['toml', '-f', file]);
    try {
      expect(server.modelId).toBe(basename(modelPath, '.gguf'));
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'sk-toml', maxRetries: 0 });
      const response = await client.completions.create({ model: server.modelId, prompt: 'Hello', max_tokens: 2 });
      expect(response.choices).toHaveLength(1);
      expect((await fetch(`${server.url}/v1/models`)).status).toBe(401);
      expect((await fetch(`${server.url}/v1/stats`)).status).toBe(401);
      expect(await getStats(server.url, { authorization: 'Bearer sk-toml' })).toMatchObject({ block_size: 16 });
    } finally {
      expect(await server.stop()).toBe(0);
    }
  }, 120_000);

  it('takes the short form (model = …) with --port from the command line', async () => {
    const file = join(dir, 'short.toml');
    writeFileSync(file, `model = ${JSON.stringify(modelPath)}\n`);
    const server = await start(['--port', '0', 'toml', '-f', file]);
    try {
      expect((await fetch(`${server.url}/health`)).status).toBe(200);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  }, 120_000);

  it('names the file in every error: missing, not TOML, unknown keys, wrong types', () => {
    const missing = run(['--port', '0', 'toml', '-f', join(dir, 'absent.toml')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`${join(dir, 'absent.toml')}: no such file`);

    const cases: Array<[string, string, RegExp]> = [
      ['broken.toml', '[model\nmodel_id = ', /broken\.toml: not valid TOML/],
      ['typo.toml', '[model]\nmodle_id = "x"\n', /typo\.toml: unknown key \[model\]\.modle_id/],
      ['port.toml', 'model = "x"\n[server]\nport = "80"\n', /port\.toml: \[server\]\.port must be an integer/],
      ['empty-model.toml', '[model]\narch = "llama"\n', /empty-model\.toml: \[model\] needs model_id/],
      ['usage.toml', 'model = "x"\npa_gpu_mem_usage = 2\n', /usage\.toml: pa_gpu_mem_usage must be a fraction/],
      [
        'drain.toml',
        'model = "x"\n[server]\ndrain_timeout = "soon"\n',
        /drain\.toml: \[server\]\.drain_timeout must be a number of seconds/,
      ],
    ];
    for (const [name, text, expected] of cases) {
      const file = join(dir, name);
      writeFileSync(file, text);
      const result = run(['toml', '-f', file]);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(expected);
    }
  }, 120_000);
});
